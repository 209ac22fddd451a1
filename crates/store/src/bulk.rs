//! Set-based writes for bulk paths (directory import, SCIM batches): many rows in one statement,
//! passed as a single JSON parameter.
//!
//! Why JSON: a multi-row `VALUES` list needs one bind parameter per cell, and sqlx's SQLite
//! driver looks parameters up by name in time quadratic in their number, so statements beyond a
//! few hundred parameters get slower per row. One JSON array of row arrays is one parameter on
//! both backends; SQLite unpacks it with `json_each`, PostgreSQL with `json_array_elements`.
//! Each row is a JSON array whose positions follow the column list; ids are written as 32 hex
//! digits (`unhex` on SQLite, where ids are 16-byte BLOBs; `::uuid` on PostgreSQL).

use std::fmt::Write as _;

use uuid::Uuid;

use crate::{Exec, Raw, StoreError, Tx, exec};

/// The SQL type of a column in a bulk statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Uuid,
    Text,
    Int,
    Bool,
}

/// Rows being collected as one JSON array (`[[…],[…]]`).
#[derive(Debug, Default)]
pub struct Rows {
    buf: String,
    rows: usize,
    in_row: bool,
    cells: usize,
}

impl Rows {
    pub fn new() -> Self {
        Self {
            buf: String::from("["),
            ..Default::default()
        }
    }

    /// Number of finished rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn cell(&mut self) -> &mut String {
        if !self.in_row {
            if self.rows > 0 {
                self.buf.push(',');
            }
            self.buf.push('[');
            self.in_row = true;
            self.cells = 0;
        } else if self.cells > 0 {
            self.buf.push(',');
        }
        self.cells += 1;
        &mut self.buf
    }

    pub fn uuid(&mut self, v: Uuid) -> &mut Self {
        let b = self.cell();
        let _ = write!(b, "\"{}\"", v.simple());
        self
    }

    pub fn opt_uuid(&mut self, v: Option<Uuid>) -> &mut Self {
        match v {
            Some(v) => self.uuid(v),
            None => self.null(),
        }
    }

    pub fn text(&mut self, v: &str) -> &mut Self {
        let b = self.cell();
        // Writing a str as JSON cannot fail.
        let escaped = serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
        b.push_str(&escaped);
        self
    }

    pub fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        let b = self.cell();
        let _ = write!(b, "{v}");
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        let b = self.cell();
        b.push_str(if v { "true" } else { "false" });
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.cell().push_str("null");
        self
    }

    /// Ends the current row.
    pub fn end(&mut self) -> &mut Self {
        if self.in_row {
            self.buf.push(']');
            self.in_row = false;
            self.rows += 1;
        }
        self
    }

    /// The JSON document (ends an open row).
    pub fn finish(mut self) -> String {
        self.end();
        self.buf.push(']');
        self.buf
    }
}

fn sqlite_expr(i: usize, t: Col) -> String {
    match t {
        Col::Uuid => format!("unhex(j.value->>{i})"),
        _ => format!("j.value->>{i}"),
    }
}

fn pg_expr(i: usize, t: Col) -> String {
    match t {
        Col::Uuid => format!("(j->>{i})::uuid"),
        Col::Text => format!("j->>{i}"),
        Col::Int => format!("(j->>{i})::bigint"),
        Col::Bool => format!("(j->>{i})::boolean"),
    }
}

/// `INSERT INTO table (cols) SELECT … FROM <rows>` with `suffix` appended (e.g.
/// `ON CONFLICT DO NOTHING`). Returns the rows inserted.
pub async fn insert(
    tx: &mut Tx,
    table: &str,
    cols: &[(&str, Col)],
    rows: Rows,
    suffix: &str,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let names = cols.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
    let json = rows.finish();
    match Exec::raw(&mut *tx) {
        Raw::Sqlite(c) => {
            let exprs = cols
                .iter()
                .enumerate()
                .map(|(i, c)| sqlite_expr(i, c.1))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO {table} ({names}) SELECT {exprs} FROM json_each($1) j WHERE true {suffix}"
            );
            Ok(sqlx::query(&sql)
                .bind(json)
                .execute(c)
                .await?
                .rows_affected())
        }
        Raw::Postgres(c) => {
            let exprs = cols
                .iter()
                .enumerate()
                .map(|(i, c)| pg_expr(i, c.1))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO {table} ({names}) SELECT {exprs} FROM json_array_elements($1::json) j {suffix}"
            );
            Ok(sqlx::query(&sql)
                .bind(json)
                .execute(c)
                .await?
                .rows_affected())
        }
    }
}

/// `UPDATE table SET col = row value, … WHERE org_id = $org AND key = row key [AND check = row
/// value]` for every row. `key` is the first column of `cols`; `check` (optional) names a
/// further column compared instead of set (e.g. the expected version). Returns the rows
/// updated, so callers detect rows changed meanwhile.
pub async fn update(
    tx: &mut Tx,
    table: &str,
    org: Uuid,
    cols: &[(&str, Col)],
    check: Option<(&str, Col)>,
    rows: Rows,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let json = rows.finish();
    let Some(((key, key_t), sets)) = cols.split_first() else {
        return Ok(0);
    };
    let sqlite = matches!(Exec::raw(&mut *tx), Raw::Sqlite(_));
    let expr = |i: usize, t: Col| {
        if sqlite {
            sqlite_expr(i, t)
        } else {
            pg_expr(i, t)
        }
    };
    let set = sets
        .iter()
        .enumerate()
        .map(|(i, (name, t))| format!("{name} = {}", expr(i + 1, *t)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut cond = format!("{table}.{key} = {}", expr(0, *key_t));
    if let Some((name, t)) = check {
        cond += &format!(" AND {table}.{name} = {}", expr(cols.len(), t));
    }
    let from = if sqlite {
        "json_each($2) j"
    } else {
        "json_array_elements($2::json) j"
    };
    let sql =
        format!("UPDATE {table} SET {set} FROM {from} WHERE {table}.org_id = $1 AND {cond}");
    Ok(exec!(tx, c => sqlx::query(&sql).bind(org).bind(&json).execute(c).await)?)
}

/// `DELETE FROM table WHERE org_id = $org AND col IN (ids)`.
pub async fn delete_in(
    tx: &mut Tx,
    table: &str,
    org: Uuid,
    col: &str,
    ids: &[Uuid],
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    match Exec::raw(&mut *tx) {
        Raw::Sqlite(c) => {
            let mut json = String::from("[");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                let _ = write!(json, "\"{}\"", id.simple());
            }
            json.push(']');
            let sql = format!(
                "DELETE FROM {table} WHERE org_id = $1 AND {col} IN (SELECT unhex(value) FROM json_each($2))"
            );
            Ok(sqlx::query(&sql)
                .bind(org)
                .bind(json)
                .execute(c)
                .await?
                .rows_affected())
        }
        Raw::Postgres(c) => {
            let sql = format!("DELETE FROM {table} WHERE org_id = $1 AND {col} = ANY($2)");
            Ok(sqlx::query(&sql)
                .bind(org)
                .bind(ids)
                .execute(c)
                .await?
                .rows_affected())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_json_arrays() {
        let mut r = Rows::new();
        r.uuid(Uuid::nil()).text("a\"b").int(3).end();
        r.bool(true).null().opt_text(Some("x")).end();
        let v: serde_json::Value = serde_json::from_str(&r.finish()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                ["00000000000000000000000000000000", "a\"b", 3],
                [true, null, "x"]
            ])
        );
        assert_eq!(Rows::new().finish(), "[]");
    }
}
