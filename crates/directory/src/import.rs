//! Reading people from the files organisations have: CSV as Excel and other tools write it.
//!
//! - Encoding: UTF-8 (with or without BOM), UTF-16 LE/BE with BOM, and otherwise Windows-1252
//!   (a superset of ISO-8859-1, what Excel writes in German, Swiss and Finnish locales), decoded
//!   with `encoding_rs`.
//! - Delimiter `,`, `;` or tab, detected from the header line (outside quotes); quoted fields
//!   may hold delimiters, quotes (`""`) and line breaks (the `csv` crate).
//! - Headers are matched to fields by built-in aliases in English, German, French, Italian,
//!   Finnish and Swedish, case and accents ignored (`Vorname`, `Prénom`, `Etunimi`, `Förnamn` →
//!   given name), or by an explicit mapping that wins over the aliases.
//! - Every row becomes a [`PersonInput`] checked by the same rules as the API
//!   (`PersonInput::validate`: E.164 phones in the organisation's region, e-mail syntax, bounded
//!   texts); a failure is reported as line, column, value and reason.
//!
//! XLSX workbooks (detected by content) are read through `calamine`, first sheet or a named
//! one; whole-number cells as integers, dates as ISO dates.
//!
//! Nothing here writes; `service::import` applies the [`Parsed`] rows.

use std::borrow::Cow;

use carebridge_domain::person::{Address, Contact, PersonDraft, PersonInput};
use carebridge_domain::search::fold;

/// A target of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    ExternalId,
    GivenName,
    FamilyName,
    Kind,
    Language,
    Email,
    Mobile,
    Phone,
    Street,
    PostalCode,
    Locality,
    Country,
    Unit,
    Groups,
    Skills,
    Roles,
    /// A column to leave out.
    Ignore,
}

impl Field {
    /// The field's name in explicit mappings (`--map "Handy=mobile"`) and reports.
    pub fn name(self) -> &'static str {
        match self {
            Field::ExternalId => "external_id",
            Field::GivenName => "given_name",
            Field::FamilyName => "family_name",
            Field::Kind => "kind",
            Field::Language => "language",
            Field::Email => "email",
            Field::Mobile => "mobile",
            Field::Phone => "phone",
            Field::Street => "street",
            Field::PostalCode => "postal_code",
            Field::Locality => "locality",
            Field::Country => "country",
            Field::Unit => "unit",
            Field::Groups => "groups",
            Field::Skills => "skills",
            Field::Roles => "roles",
            Field::Ignore => "ignore",
        }
    }

    pub fn parse(s: &str) -> Option<Field> {
        ALL.iter().copied().find(|f| f.name() == s.trim())
    }

    /// Fields that may appear in several columns (each adds a value).
    fn repeats(self) -> bool {
        matches!(
            self,
            Field::Email | Field::Mobile | Field::Phone | Field::Ignore
        )
    }
}

const ALL: &[Field] = &[
    Field::ExternalId,
    Field::GivenName,
    Field::FamilyName,
    Field::Kind,
    Field::Language,
    Field::Email,
    Field::Mobile,
    Field::Phone,
    Field::Street,
    Field::PostalCode,
    Field::Locality,
    Field::Country,
    Field::Unit,
    Field::Groups,
    Field::Skills,
    Field::Roles,
    Field::Ignore,
];

/// Header aliases (folded: lower case, no accents, letters and digits only).
const ALIASES: &[(Field, &[&str])] = &[
    (
        Field::ExternalId,
        &[
            "externalid",
            "externalkey",
            "externekennung",
            "id",
            "key",
            "erpid",
            "hrid",
            "employeenumber",
            "employeeid",
            "staffnumber",
            "personalnummer",
            "personalnr",
            "mitarbeiternummer",
            "matricule",
            "numeroemploye",
            "identifiantexterne",
            "matricola",
            "numeromatricola",
            "henkilonumero",
            "tyontekijanumero",
            "anstallningsnummer",
            "personnummer",
        ],
    ),
    (
        Field::GivenName,
        &[
            "givenname",
            "firstname",
            "forename",
            "vorname",
            "prenom",
            "nome",
            "etunimi",
            "fornamn",
        ],
    ),
    (
        Field::FamilyName,
        &[
            "familyname",
            "lastname",
            "surname",
            "name",
            "nachname",
            "familienname",
            "nom",
            "nomdefamille",
            "cognome",
            "sukunimi",
            "efternamn",
        ],
    ),
    (
        Field::Kind,
        &[
            "kind",
            "persontype",
            "personentyp",
            "typ",
            "typedepersonne",
            "tipo",
            "tyyppi",
        ],
    ),
    (
        Field::Language,
        &["language", "sprache", "langue", "lingua", "kieli", "sprak"],
    ),
    (
        Field::Email,
        &[
            "email",
            "emailaddress",
            "mail",
            "emailadresse",
            "adresseemail",
            "courriel",
            "indirizzoemail",
            "posta",
            "sahkoposti",
            "sahkopostiosoite",
            "epost",
            "epostadress",
            "email1",
            "email2",
            "email3",
        ],
    ),
    (
        Field::Mobile,
        &[
            "mobile",
            "mobilephone",
            "mobilenumber",
            "cellphone",
            "handy",
            "natel",
            "mobil",
            "mobiltelefon",
            "handynummer",
            "portable",
            "telephoneportable",
            "cellulare",
            "telefonocellulare",
            "matkapuhelin",
            "kannykka",
            "mobilnummer",
        ],
    ),
    (
        Field::Phone,
        &[
            "phone",
            "telephone",
            "phonenumber",
            "telefon",
            "telefonnummer",
            "festnetz",
            "telefono",
            "puhelin",
            "puhelinnumero",
            "phone2",
            "telefon2",
        ],
    ),
    (
        Field::Street,
        &[
            "street",
            "address",
            "streetaddress",
            "strasse",
            "adresse",
            "rue",
            "via",
            "indirizzo",
            "katuosoite",
            "osoite",
            "gatuadress",
            "adress",
        ],
    ),
    (
        Field::PostalCode,
        &[
            "postalcode",
            "postcode",
            "zip",
            "zipcode",
            "plz",
            "postleitzahl",
            "npa",
            "codepostal",
            "cap",
            "postinumero",
            "postnummer",
        ],
    ),
    (
        Field::Locality,
        &[
            "locality",
            "city",
            "town",
            "ort",
            "wohnort",
            "stadt",
            "ville",
            "localite",
            "localita",
            "citta",
            "comune",
            "kaupunki",
            "postitoimipaikka",
            "paikkakunta",
            "postort",
        ],
    ),
    (
        Field::Country,
        &["country", "land", "pays", "paese", "nazione", "maa"],
    ),
    (
        Field::Unit,
        &[
            "unit",
            "team",
            "department",
            "einheit",
            "organisationseinheit",
            "abteilung",
            "unite",
            "equipe",
            "service",
            "unita",
            "reparto",
            "squadra",
            "yksikko",
            "tiimi",
            "enhet",
            "avdelning",
        ],
    ),
    (
        Field::Groups,
        &[
            "groups", "group", "gruppen", "gruppe", "groupes", "groupe", "gruppi", "gruppo",
            "ryhmat", "ryhma", "grupper", "grupp",
        ],
    ),
    (
        Field::Skills,
        &[
            "skills",
            "skill",
            "qualifications",
            "qualifikationen",
            "fahigkeiten",
            "kompetenzen",
            "competences",
            "qualifications",
            "competenze",
            "qualifiche",
            "taidot",
            "patevyydet",
            "kompetenser",
            "fardigheter",
        ],
    ),
    (
        Field::Roles,
        &[
            "roles", "role", "rollen", "rolle", "ruoli", "ruolo", "roolit", "rooli", "roller",
            "roll",
        ],
    ),
];

fn key(header: &str) -> String {
    fold(header)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// The field a header means by the built-in aliases.
pub fn guess(header: &str) -> Option<Field> {
    let k = key(header);
    ALIASES
        .iter()
        .find(|(_, names)| names.contains(&k.as_str()))
        .map(|(f, _)| *f)
}

/// One problem in a file: where (line 1 is the header; 0 is the file itself), which column,
/// what value, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub column: String,
    pub value: String,
    pub reason: String,
}

fn file_error(reason: impl Into<String>) -> RowError {
    RowError {
        line: 0,
        column: String::new(),
        value: String::new(),
        reason: reason.into(),
    }
}

/// The text of a file: by BOM (UTF-8, UTF-16 LE/BE), else UTF-8 when it is valid, else
/// Windows-1252.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    if let Some((enc, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom..]);
        return text;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
        }
    }
}

/// The delimiter of the header line (`;`, tab or `,`; outside quotes), `,` when none appears.
pub fn delimiter(text: &str) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '\n' | '\r' if !quoted => break,
            ';' if !quoted => counts[0] += 1,
            '\t' if !quoted => counts[1] += 1,
            ',' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|&i| (counts[i], i)).unwrap_or(2);
    if counts[best] == 0 {
        b','
    } else {
        [b';', b'\t', b','][best]
    }
}

/// Parses an explicit mapping: `Header=field` pairs separated by `;` or new lines.
pub fn parse_map(s: &str) -> Result<Vec<(String, Field)>, Vec<RowError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for part in s
        .split([';', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match part.rsplit_once('=') {
            Some((h, f)) => match Field::parse(f) {
                Some(f) => out.push((h.trim().to_string(), f)),
                None => errors.push(RowError {
                    line: 0,
                    column: h.trim().to_string(),
                    value: f.trim().to_string(),
                    reason: format!(
                        "unknown field; one of: {}",
                        ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
                    ),
                }),
            },
            None => errors.push(RowError {
                line: 0,
                column: String::new(),
                value: part.to_string(),
                reason: "a mapping is `Header=field`".into(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Which field each column feeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub headers: Vec<String>,
    pub fields: Vec<Field>,
}

/// Maps headers: explicit `(header, field)` pairs first, then the aliases. Unknown headers,
/// fields named twice (other than e-mail and phone columns) and a missing name column are
/// errors.
pub fn map_headers(
    headers: &[String],
    explicit: &[(String, Field)],
) -> Result<Mapping, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut fields = Vec::with_capacity(headers.len());
    for h in headers {
        let f = explicit
            .iter()
            .find(|(name, _)| key(name) == key(h))
            .map(|(_, f)| *f)
            .or_else(|| guess(h));
        match f {
            Some(f) => {
                if !f.repeats() && fields.contains(&f) {
                    errors.push(RowError {
                        line: 1,
                        column: h.clone(),
                        value: h.clone(),
                        reason: format!("a second column for {}", f.name()),
                    });
                }
                fields.push(f);
            }
            None => {
                errors.push(RowError {
                    line: 1,
                    column: h.clone(),
                    value: h.clone(),
                    reason:
                        "unknown column: map it (e.g. --map \"<header>=given_name\") or to `ignore`"
                            .into(),
                });
                fields.push(Field::Ignore);
            }
        }
    }
    for need in [Field::GivenName, Field::FamilyName] {
        if !fields.contains(&need) {
            errors.push(RowError {
                line: 1,
                column: String::new(),
                value: String::new(),
                reason: format!("no column for {}", need.name()),
            });
        }
    }
    for (h, _) in explicit {
        if !headers.iter().any(|x| key(x) == key(h)) {
            errors.push(RowError {
                line: 1,
                column: h.clone(),
                value: String::new(),
                reason: "the mapping names a column the file does not have".into(),
            });
        }
    }
    if errors.is_empty() {
        Ok(Mapping {
            headers: headers.to_vec(),
            fields,
        })
    } else {
        Err(errors)
    }
}

/// A checked row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub line: u64,
    pub person: PersonDraft,
    /// Unit path, e.g. `Region Nord/Team 3`.
    pub unit: Option<String>,
    pub roles: Vec<String>,
}

fn list(s: &str) -> Vec<String> {
    s.split(['|', ',', ';'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// The format of an uploaded file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    /// By content: an XLSX file is a ZIP archive (`PK\x03\x04`); anything else is read as CSV.
    pub fn detect(bytes: &[u8]) -> Format {
        if bytes.starts_with(b"PK\x03\x04") {
            Format::Xlsx
        } else {
            Format::Csv
        }
    }
}

/// How to read a file.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Explicit `(header, field)` pairs; they win over the aliases.
    pub map: Vec<(String, Field)>,
    /// XLSX: the sheet to read (default: the first).
    pub sheet: Option<String>,
}

/// What the reader hands on, record by record (rows are the common case: not boxed).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Item {
    /// The columns, before any row.
    Header(Mapping),
    /// The header row could not be mapped: each header with the field it would be read into
    /// (`None`: unknown), so that a caller can offer a corrected mapping. Sent just before
    /// the file-level errors are returned.
    Columns(Vec<(String, Option<Field>)>),
    Row(Parsed),
    Errors(Vec<RowError>),
}

/// Reads a whole file: every good row, and every error (with `skip`-mode callers using the
/// good rows, all-or-nothing callers refusing when there is any error).
pub fn read(
    bytes: &[u8],
    explicit: &[(String, Field)],
    region: &str,
) -> (Option<Mapping>, Vec<Parsed>, Vec<RowError>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let opts = ReadOptions {
        map: explicit.to_vec(),
        sheet: None,
    };
    let m = read_each(bytes, &opts, region, |item, _| match item {
        Item::Row(p) => rows.push(p),
        Item::Errors(e) => errors.extend(e),
        Item::Header(_) | Item::Columns(_) => {}
    });
    match m {
        Ok(m) => (Some(m), rows, errors),
        Err(e) => (None, vec![], e),
    }
}

/// Streams a file (CSV or XLSX, detected by content) record by record into `each`, with the
/// fraction of the file read so far; returns the mapping, or the file-level errors (nothing
/// was handed on then).
pub fn read_each(
    bytes: &[u8],
    opts: &ReadOptions,
    region: &str,
    each: impl FnMut(Item, f64),
) -> Result<Mapping, Vec<RowError>> {
    match Format::detect(bytes) {
        Format::Csv => read_csv(bytes, opts, region, each),
        Format::Xlsx => read_xlsx(bytes, opts, region, each),
    }
}

/// Each header with the field an explicit mapping or the aliases give it.
fn guesses(headers: &[String], explicit: &[(String, Field)]) -> Vec<(String, Option<Field>)> {
    headers
        .iter()
        .map(|h| {
            let f = explicit
                .iter()
                .find(|(name, _)| key(name) == key(h))
                .map(|(_, f)| *f)
                .or_else(|| guess(h));
            (h.clone(), f)
        })
        .collect()
}

fn mapping_of(headers: &[String], explicit: &[(String, Field)]) -> Result<Mapping, Vec<RowError>> {
    if headers.iter().all(String::is_empty) {
        return Err(vec![file_error("the file has no header row")]);
    }
    map_headers(headers, explicit)
}

fn check_record(
    mapping: &Mapping,
    line: u64,
    rec: &csv::StringRecord,
    region: &str,
) -> Option<Item> {
    if rec.iter().all(|c| c.trim().is_empty()) {
        return None;
    }
    if rec.len() > mapping.headers.len()
        && rec
            .iter()
            .skip(mapping.headers.len())
            .any(|c| !c.trim().is_empty())
    {
        return Some(Item::Errors(vec![RowError {
            line,
            column: String::new(),
            value: String::new(),
            reason: format!(
                "{} fields, the header has {}",
                rec.len(),
                mapping.headers.len()
            ),
        }]));
    }
    Some(match row(mapping, line, rec, region) {
        Ok(p) => Item::Row(p),
        Err(e) => Item::Errors(e),
    })
}

fn read_csv(
    bytes: &[u8],
    opts: &ReadOptions,
    region: &str,
    mut each: impl FnMut(Item, f64),
) -> Result<Mapping, Vec<RowError>> {
    let text = decode(bytes);
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter(&text))
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = match r.headers() {
        Ok(h) => h.iter().map(|c| c.trim().to_string()).collect(),
        Err(e) => return Err(vec![file_error(e.to_string())]),
    };
    let mapping = match mapping_of(&headers, &opts.map) {
        Ok(m) => m,
        Err(e) => {
            each(Item::Columns(guesses(&headers, &opts.map)), 0.0);
            return Err(e);
        }
    };
    each(Item::Header(mapping.clone()), 0.0);
    let total = text.len().max(1) as f64;
    // Line numbers from byte offsets (the reader's own count is off with CRLF line ends),
    // counted incrementally so a large file stays linear.
    let (mut at_byte, mut at_line) = (0usize, 1u64);
    let mut line_of = |byte: u64| {
        let mut b = (byte as usize).min(text.len());
        // A record after a CRLF starts at its LF.
        while b < text.len() && matches!(text.as_bytes()[b], b'\r' | b'\n') {
            b += 1;
        }
        if b >= at_byte {
            at_line += text.as_bytes()[at_byte..b]
                .iter()
                .filter(|&&c| c == b'\n')
                .count() as u64;
            at_byte = b;
        }
        (at_line, b as f64 / total)
    };
    for rec in r.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let (line, done) = e.position().map_or((0, 0.0), |p| line_of(p.byte()));
                each(
                    Item::Errors(vec![RowError {
                        line,
                        column: String::new(),
                        value: String::new(),
                        reason: e.to_string(),
                    }]),
                    done,
                );
                continue;
            }
        };
        let (line, done) = rec.position().map_or((0, 0.0), |p| line_of(p.byte()));
        if let Some(item) = check_record(&mapping, line, &rec, region) {
            each(item, done);
        }
    }
    Ok(mapping)
}

/// The widest sheet read (columns A to IV).
const MAX_COLUMNS: usize = 256;

/// A cell as text the way a person reads it in Excel: whole numbers without `.0` (phone and
/// employee numbers are often stored as numbers), dates as ISO dates.
fn cell_text(c: &calamine::Data) -> String {
    use calamine::Data;
    match c {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) if d.is_datetime() => {
            let (y, mo, da, h, mi, se, _) = d.to_ymd_hms_milli();
            if (h, mi, se) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{da:02}")
            } else {
                format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{se:02}")
            }
        }
        Data::DateTime(d) => d.as_f64().to_string(),
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

fn read_xlsx(
    bytes: &[u8],
    opts: &ReadOptions,
    region: &str,
    mut each: impl FnMut(Item, f64),
) -> Result<Mapping, Vec<RowError>> {
    use calamine::Reader;
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes))
        .map_err(|e| vec![file_error(format!("not a readable XLSX file: {e}"))])?;
    let names = book.sheet_names();
    let name = match &opts.sheet {
        Some(want) => names
            .iter()
            .find(|n| fold(n) == fold(want))
            .cloned()
            .ok_or_else(|| {
                vec![file_error(format!(
                    "the workbook has no sheet '{want}' (it has: {})",
                    names.join(", ")
                ))]
            })?,
        None => names
            .first()
            .cloned()
            .ok_or_else(|| vec![file_error("the workbook has no sheet")])?,
    };
    // Cells one by one: a sparse sheet (A1 and XFD1048576) must not become a dense range of
    // billions of cells. Columns beyond MAX_COLUMNS are refused; rows are kept as read.
    let mut cells = book
        .worksheet_cells_reader(&name)
        .map_err(|e| vec![file_error(format!("sheet '{name}': {e}"))])?;
    let mut rows: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    loop {
        let cell = match cells.next_cell() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(vec![file_error(format!("sheet '{name}': {e}"))]),
        };
        let (r, c) = cell.get_position();
        let text = cell_text(&calamine::Data::from(cell.get_value().clone()));
        if text.is_empty() {
            continue;
        }
        if c as usize >= MAX_COLUMNS {
            return Err(vec![file_error(format!(
                "sheet '{name}' has a value in column {} (at most {MAX_COLUMNS} columns are read)",
                c + 1
            ))]);
        }
        let row = rows.entry(r).or_default();
        if row.len() <= c as usize {
            row.resize(c as usize + 1, String::new());
        }
        row[c as usize] = text;
    }
    drop(cells);
    let mut rows = rows.into_iter();
    let Some((_, header)) = rows.next() else {
        return Err(vec![file_error(format!("sheet '{name}' is empty"))]);
    };
    let headers: Vec<String> = header.iter().map(|c| c.trim().to_string()).collect();
    let mapping = match mapping_of(&headers, &opts.map) {
        Ok(m) => m,
        Err(e) => {
            each(Item::Columns(guesses(&headers, &opts.map)), 0.0);
            return Err(e);
        }
    };
    each(Item::Header(mapping.clone()), 0.0);
    let total = rows.len().max(1) as f64;
    for (i, (r, cells)) in rows.enumerate() {
        // Line numbers are the sheet's row numbers.
        let line = u64::from(r) + 1;
        let rec = csv::StringRecord::from(cells);
        if let Some(item) = check_record(&mapping, line, &rec, region) {
            each(item, (i + 1) as f64 / total);
        }
    }
    Ok(mapping)
}

/// One record → a checked person; the violations' pointers are turned back into columns.
fn row(
    m: &Mapping,
    line: u64,
    rec: &csv::StringRecord,
    region: &str,
) -> Result<Parsed, Vec<RowError>> {
    let mut input = PersonInput {
        kind: "staff".into(),
        ..Default::default()
    };
    let mut address = Address::default();
    let mut unit = None;
    let mut roles = Vec::new();
    // Which column each e-mail and phone came from, for error messages.
    let (mut email_cols, mut phone_cols) = (Vec::new(), Vec::new());
    for (i, cell) in rec.iter().enumerate() {
        // Line breaks inside a cell (an address typed over two lines) become ", ".
        let joined;
        let v = if cell.contains(['\r', '\n']) {
            joined = cell
                .split(['\r', '\n'])
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            joined.as_str()
        } else {
            cell.trim()
        };
        if v.is_empty() {
            continue;
        }
        let f = m.fields.get(i).copied().unwrap_or(Field::Ignore);
        match f {
            Field::ExternalId => input.external_id = Some(v.into()),
            Field::GivenName => input.given_name = v.into(),
            Field::FamilyName => input.family_name = v.into(),
            Field::Kind => input.kind = v.to_lowercase(),
            Field::Language => input.language = Some(v.to_lowercase()),
            Field::Email => {
                for e in list(v) {
                    input.emails.push(Contact {
                        value: e,
                        kind: "work".into(),
                    });
                    email_cols.push(i);
                }
            }
            Field::Mobile | Field::Phone => {
                input.phones.push(Contact {
                    value: v.into(),
                    kind: if f == Field::Mobile { "mobile" } else { "work" }.into(),
                });
                phone_cols.push(i);
            }
            Field::Street => address.street = Some(v.into()),
            Field::PostalCode => address.postal_code = Some(v.into()),
            Field::Locality => address.locality = Some(v.into()),
            Field::Country => address.country = Some(v.into()),
            Field::Unit => unit = Some(v.to_string()),
            Field::Groups => input.groups = list(v),
            Field::Skills => input.skills = list(v),
            Field::Roles => roles = list(v),
            Field::Ignore => {}
        }
    }
    if !address.is_empty() {
        input.address = Some(address);
    }
    match input.validate(region) {
        Ok(person) => Ok(Parsed {
            line,
            person,
            unit,
            roles,
        }),
        Err(v) => {
            let mut out: Vec<(usize, RowError)> =
                v.0.into_iter()
                    .map(|x| {
                        let col = column_of(m, &x.pointer, &email_cols, &phone_cols);
                        let e = RowError {
                            line,
                            value: col
                                .and_then(|c| rec.get(c))
                                .unwrap_or("")
                                .trim()
                                .to_string(),
                            column: col
                                .and_then(|c| m.headers.get(c))
                                .cloned()
                                .unwrap_or_else(|| x.pointer.clone()),
                            reason: x.message,
                        };
                        (col.unwrap_or(usize::MAX), e)
                    })
                    .collect();
            // In the file's column order.
            out.sort_by_key(|(c, _)| *c);
            Err(out.into_iter().map(|(_, e)| e).collect())
        }
    }
}

/// The column a violation's JSON pointer came from.
fn column_of(m: &Mapping, pointer: &str, emails: &[usize], phones: &[usize]) -> Option<usize> {
    let mut parts = pointer.trim_start_matches('/').split('/');
    let head = parts.next()?;
    let nth = |cols: &[usize]| {
        parts
            .clone()
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| cols.get(n).copied())
    };
    let field = match head {
        "emails" => return nth(emails),
        "phones" => return nth(phones),
        "given_name" => Field::GivenName,
        "family_name" => Field::FamilyName,
        "kind" => Field::Kind,
        "language" => Field::Language,
        "external_id" => Field::ExternalId,
        "groups" => Field::Groups,
        "skills" => Field::Skills,
        "address" => match parts.next()? {
            "street" => Field::Street,
            "postal_code" => Field::PostalCode,
            "locality" => Field::Locality,
            _ => Field::Country,
        },
        _ => return None,
    };
    m.fields.iter().position(|f| *f == field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_ch(bytes: &[u8]) -> (Vec<Parsed>, Vec<RowError>) {
        let (_, rows, errors) = read(bytes, &[], "CH");
        (rows, errors)
    }

    #[test]
    fn german_excel_export_in_windows_1252_with_semicolons() {
        // "Vorname;Nachname;Handy;E-Mail;Einheit\r\nJürg;Müller;079 123 45 67;…" as Windows-1252.
        let text = "Vorname;Nachname;Handy;E-Mail;Einheit;Fähigkeiten\r\nJ\u{fc}rg;M\u{fc}ller;079 123 45 67;jm@example.ch;Region Nord/Team 3;\"Fahrer, Sanit\u{e4}ter\"\r\n";
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(text);
        let (rows, errors) = read_ch(&bytes);
        assert_eq!(errors, vec![]);
        let p = &rows[0].person;
        assert_eq!(p.given_name, "Jürg");
        assert_eq!(p.family_name, "Müller");
        assert_eq!(p.phones[0].value, "+41791234567");
        assert_eq!(p.skills, ["Fahrer", "Sanitäter"]);
        assert_eq!(rows[0].unit.as_deref(), Some("Region Nord/Team 3"));
        assert_eq!(rows[0].line, 2);
    }

    #[test]
    fn utf16_with_bom_tabs_and_quoted_newlines() {
        let text = "Etunimi\tSukunimi\tSähköposti\tOsoite\nAino\tVirtanen\taino@example.fi\t\"Katu 1\nA 5\"\n";
        let mut bytes = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            bytes.extend(u.to_le_bytes());
        }
        let (rows, errors) = read_ch(&bytes);
        assert_eq!(errors, vec![]);
        assert_eq!(rows[0].person.given_name, "Aino");
        assert_eq!(
            rows[0].person.address.street.as_deref(),
            Some("Katu 1, A 5")
        );
    }

    #[test]
    fn aliases_in_six_languages() {
        for (h, f) in [
            ("Vorname", Field::GivenName),
            ("Prénom", Field::GivenName),
            ("Nome", Field::GivenName),
            ("Etunimi", Field::GivenName),
            ("Förnamn", Field::GivenName),
            ("First name", Field::GivenName),
            ("Nachname", Field::FamilyName),
            ("Nom de famille", Field::FamilyName),
            ("Cognome", Field::FamilyName),
            ("Efternamn", Field::FamilyName),
            ("Natel", Field::Mobile),
            ("Téléphone portable", Field::Mobile),
            ("E-Mail", Field::Email),
            ("Courriel", Field::Email),
            ("PLZ", Field::PostalCode),
            ("Postinumero", Field::PostalCode),
            ("Personalnummer", Field::ExternalId),
        ] {
            assert_eq!(guess(h), Some(f), "{h}");
        }
        assert_eq!(guess("Lieblingsfarbe"), None);
    }

    /// Rows and errors of a long file come out in the file's order, each with its own line.
    #[test]
    fn a_long_file_comes_out_in_order() {
        const ROWS: usize = 2_321;
        let mut f = String::from("Personalnummer,First name,Last name,Mobile\n");
        for i in 0..ROWS {
            // Every 97th row has a bad phone number; every 101st a field too many.
            let phone = if i % 97 == 5 { "12" } else { "079 123 45 67" };
            let extra = if i % 101 == 7 { ",x" } else { "" };
            f.push_str(&format!("P{i},Anna,N{i},{phone}{extra}\n"));
        }
        let (rows, errors) = read_ch(f.as_bytes());
        let bad = |i: usize| i % 97 == 5 || i % 101 == 7;
        let want: Vec<(u64, String)> = (0..ROWS)
            .filter(|&i| !bad(i))
            .map(|i| (i as u64 + 2, format!("N{i}")))
            .collect();
        let got: Vec<(u64, String)> = rows
            .iter()
            .map(|r| (r.line, r.person.family_name.clone()))
            .collect();
        assert_eq!(got, want);
        let want: Vec<u64> = (0..ROWS)
            .filter(|&i| bad(i))
            .map(|i| i as u64 + 2)
            .collect();
        let got: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn every_bad_cell_is_named_by_line_column_and_value() {
        let f = "First name,Last name,Mobile,Email\n,Meier,0791234567,anna@example.ch\nBeat,Bauer,12,beat@\n";
        let (rows, errors) = read_ch(f.as_bytes());
        assert!(rows.is_empty());
        let got: Vec<(u64, &str, &str)> = errors
            .iter()
            .map(|e| (e.line, e.column.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "First name", ""),
                (3, "Mobile", "12"),
                (3, "Email", "beat@")
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn explicit_mapping_wins_and_unknown_headers_are_refused() {
        let f = "Rufname,Name,Farbe\nAnna,Muster,blau\n";
        let (m, _, e) = read(f.as_bytes(), &[], "CH");
        assert!(m.is_none());
        assert_eq!(e.len(), 3, "{e:?}"); // Rufname and Farbe unknown, no given name
        let map = vec![
            ("Rufname".to_string(), Field::GivenName),
            ("Name".to_string(), Field::FamilyName),
            ("Farbe".to_string(), Field::Ignore),
        ];
        let (_, rows, e) = read(f.as_bytes(), &map, "CH");
        assert_eq!(e, vec![]);
        assert_eq!(rows[0].person.family_name, "Muster");
    }

    #[test]
    fn a_damaged_xlsx_is_a_file_error() {
        let mut bytes = include_bytes!("../../server/tests/it/fixtures/people.xlsx").to_vec();
        bytes.truncate(bytes.len() / 2);
        let (m, _, e) = read(&bytes, &[], "CH");
        assert!(m.is_none());
        assert_eq!(e[0].line, 0);
        assert!(e[0].reason.contains("XLSX"), "{e:?}");
    }

    #[test]
    fn a_sparse_sheet_is_not_made_dense() {
        // A1:B2 and one value in XFD1048576: read cell by cell, refused by its column.
        let bytes = include_bytes!("../../server/tests/it/fixtures/sparse.xlsx");
        let (m, rows, e) = read(bytes, &[], "CH");
        assert!(m.is_none() && rows.is_empty());
        assert!(e[0].reason.contains("column 16384"), "{e:?}");
    }

    #[test]
    fn empty_fields_after_the_last_column_are_fine() {
        let (rows, errors) = read_ch(b"Vorname;Nachname\nAnna;Muster;\nBeat;Frei;;x\n");
        assert_eq!(rows.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 3);
    }

    #[test]
    fn delimiters() {
        assert_eq!(delimiter("a;b;c\n1,2"), b';');
        assert_eq!(delimiter("a\tb\n"), b'\t');
        assert_eq!(delimiter("\"x;y\",b,c\n"), b',');
        assert_eq!(delimiter("single\n"), b',');
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        #[test]
        fn no_input_makes_the_reader_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = read(&bytes, &[], "CH");
        }

        #[test]
        fn no_zip_like_bytes_make_the_xlsx_reader_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut bytes = b"PK\x03\x04".to_vec();
            bytes.extend(tail);
            let (_, rows, errors) = read(&bytes, &[], "CH");
            proptest::prop_assert!(rows.is_empty() && !errors.is_empty());
        }

        #[test]
        fn no_csv_like_text_makes_it_panic(s in "[a-zA-Zäö0-9 ;,\t\"\n\r+@./|-]{0,300}") {
            let with_header = format!("Vorname;Nachname;Handy;E-Mail;Einheit\n{s}");
            let _ = read(with_header.as_bytes(), &[], "CH");
        }
    }
}
