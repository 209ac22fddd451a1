//! The ERP feed as CSV files (`carebridge portal import`): one file per kind, a header row
//! naming the same fields as the JSON feed (`id,given_name,family_name,active` for clients;
//! `id,client,start,end,service,carer_first_name,carer_photo_url,cancelled` for appointments;
//! `client,subject,relation,appointments,messages,active` for links). UTF-8 with or without
//! BOM, `,` `;` or tab as delimiter (detected from the header), quoted fields as Excel writes
//! them. Empty cells are absent values. Every row is checked before anything is written; the
//! rows then go through the same service as the JSON feed, in one transaction.

use carebridge_proto::portal::{ErpAppointment, ErpClient, ErpLink};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Clients,
    Appointments,
    Links,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "clients" => Some(Kind::Clients),
            "appointments" => Some(Kind::Appointments),
            "links" => Some(Kind::Links),
            _ => None,
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Clients => &["id", "given_name", "family_name", "active"],
            Kind::Appointments => &[
                "id",
                "client",
                "start",
                "end",
                "service",
                "carer_first_name",
                "carer_photo_url",
                "cancelled",
            ],
            Kind::Links => &[
                "client",
                "subject",
                "relation",
                "appointments",
                "messages",
                "active",
            ],
        }
    }
}

const BOOLEAN: &[&str] = &["active", "cancelled", "appointments", "messages"];

/// The parsed rows of a file.
#[derive(Debug)]
pub enum Rows {
    Clients(Vec<ErpClient>),
    Appointments(Vec<ErpAppointment>),
    Links(Vec<ErpLink>),
}

/// Everything wrong with a file: `(line, column, reason)`; line 1 is the header.
#[derive(Debug, PartialEq, Eq)]
pub struct FileErrors(pub Vec<(u64, String, String)>);

impl std::fmt::Display for FileErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (line, col, why) in &self.0 {
            if col.is_empty() {
                writeln!(f, "line {line}: {why}")?;
            } else {
                writeln!(f, "line {line}, column {col}: {why}")?;
            }
        }
        Ok(())
    }
}

fn delimiter(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or("");
    [b';', b'\t', b',']
        .into_iter()
        .max_by_key(|d| header.bytes().filter(|b| b == d).count())
        .unwrap_or(b',')
}

fn boolean(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "ja" | "oui" | "si" | "kyllä" => Some(true),
        "false" | "0" | "no" | "nein" | "non" | "ei" | "nej" => Some(false),
        _ => None,
    }
}

/// Parses a whole file of `kind`; all rows or every error.
pub fn parse(kind: Kind, bytes: &[u8]) -> Result<Rows, FileErrors> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        FileErrors(vec![(
            0,
            String::new(),
            format!(
                "the file is not UTF-8 (byte {}): save it as CSV UTF-8",
                e.valid_up_to()
            ),
        )])
    })?;
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter(text))
        .flexible(false)
        .from_reader(text.as_bytes());
    let mut errors = Vec::new();
    let header: Vec<String> = match r.headers() {
        Ok(h) => h.iter().map(|c| c.trim().to_ascii_lowercase()).collect(),
        Err(e) => return Err(FileErrors(vec![(1, String::new(), e.to_string())])),
    };
    for c in &header {
        if !kind.columns().contains(&c.as_str()) {
            errors.push((
                1,
                c.clone(),
                format!("unknown column; known: {}", kind.columns().join(", ")),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(FileErrors(errors));
    }
    let mut values = Vec::new();
    for rec in r.records() {
        let rec = match rec {
            Ok(x) => x,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push((line, String::new(), e.to_string()));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let mut obj = Map::new();
        for (col, cell) in header.iter().zip(rec.iter()) {
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            let v = if BOOLEAN.contains(&col.as_str()) {
                match boolean(cell) {
                    Some(b) => Value::Bool(b),
                    None => {
                        errors.push((line, col.clone(), format!("`{cell}` is not yes/no")));
                        continue;
                    }
                }
            } else {
                Value::String(cell.to_string())
            };
            obj.insert(col.clone(), v);
        }
        values.push((line, Value::Object(obj)));
    }
    fn rows<T: DeserializeOwned>(
        values: Vec<(u64, Value)>,
        errors: &mut Vec<(u64, String, String)>,
    ) -> Vec<T> {
        values
            .into_iter()
            .filter_map(|(line, v)| match serde_json::from_value::<T>(v) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push((line, String::new(), e.to_string()));
                    None
                }
            })
            .collect()
    }
    let out = match kind {
        Kind::Clients => Rows::Clients(rows(values, &mut errors)),
        Kind::Appointments => Rows::Appointments(rows(values, &mut errors)),
        Kind::Links => Rows::Links(rows(values, &mut errors)),
    };
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(FileErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_bom_quotes_and_booleans() {
        let f = "\u{feff}id;given_name;family_name;active\nK1;\"Anna; Maria\";Muster;ja\nK2;Beat;Beispiel;\n";
        let Rows::Clients(c) = parse(Kind::Clients, f.as_bytes()).unwrap() else {
            panic!("clients")
        };
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].given_name, "Anna; Maria");
        assert!(c[0].active && c[1].active);
    }

    #[test]
    fn every_bad_row_is_named() {
        let f = "id,client,start,end,service,cancelled\nA1,K1,2026-12-01T08:00:00Z,2026-12-01T09:00:00Z,Pflege,vielleicht\nA2,K1,gestern,2026-12-01T09:00:00Z,Pflege,no\n";
        let e = parse(Kind::Appointments, f.as_bytes()).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert_eq!((e.0[0].0, e.0[0].1.as_str()), (2, "cancelled"));
        assert_eq!(e.0[1].0, 3);
        let e = parse(Kind::Clients, b"id,vorname\n").unwrap_err();
        assert_eq!(e.0[0].1, "vorname");
        assert!(parse(Kind::Clients, b"id,given_name\n\xff\n").is_err());
    }
}
