//! Set-based writes for bulk paths (directory import, later SCIM batches): many rows per
//! statement.
//!
//! - SQLite: multi-row `VALUES` lists with anonymous `?` placeholders, up to [`SQLITE_ROWS`]
//!   rows per statement. Anonymous on purpose: for `$N` placeholders sqlx looks each one up by
//!   name (`sqlite3_bind_parameter_name`, a linear scan), which is quadratic in the number of
//!   parameters; for `?` it does not. (A single JSON parameter unpacked with `json_each` was
//!   tried first: SQLite re-parses a row's JSON for every `->>`, which cost more than the
//!   inserts.)
//! - PostgreSQL: a plain insert is a `COPY … FROM STDIN` in binary format (no statement to parse
//!   or plan per chunk, no arrays to build); the other statements bind one array per column,
//!   unpacked with `UNNEST` (`$N::uuid[]`, …), so a statement has as many parameters as
//!   columns whatever the row count.
//!
//! Rows are collected with [`Rows`]; each cell's type must match the column's [`Col`] (a
//! mismatch is an error, not a panic).

use uuid::Uuid;

use crate::{Exec, Raw, StoreError, Tx};

/// Rows per SQLite statement (SQLite allows 32,766 parameters).
pub const SQLITE_ROWS: usize = 500;
/// Rows per PostgreSQL statement.
pub const PG_ROWS: usize = 10_000;

/// The SQL type of a column in a bulk statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Uuid,
    Text,
    Int,
    Bool,
}

impl Col {
    fn pg_array(self) -> &'static str {
        match self {
            Col::Uuid => "uuid[]",
            Col::Text => "text[]",
            Col::Int => "bigint[]",
            Col::Bool => "boolean[]",
        }
    }
}

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Null,
    Uuid(Uuid),
    Text(String),
    Int(i64),
    Bool(bool),
}

/// Rows being collected, row by row, cell by cell.
#[derive(Debug, Default)]
pub struct Rows {
    cells: Vec<Val>,
    /// Cells in the first finished row (all rows must have as many).
    width: Option<usize>,
    in_row: usize,
    rows: usize,
    /// A row had another width than the first.
    ragged: bool,
}

impl Rows {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `rows` rows of `width` cells (no regrowing, and no copying, while collecting).
    pub fn with_capacity(rows: usize, width: usize) -> Self {
        Self {
            cells: Vec::with_capacity(rows.saturating_mul(width)),
            ..Self::default()
        }
    }

    /// Number of finished rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn push(&mut self, v: Val) -> &mut Self {
        self.cells.push(v);
        self.in_row += 1;
        self
    }

    pub fn uuid(&mut self, v: Uuid) -> &mut Self {
        self.push(Val::Uuid(v))
    }

    pub fn opt_uuid(&mut self, v: Option<Uuid>) -> &mut Self {
        self.push(v.map_or(Val::Null, Val::Uuid))
    }

    pub fn text(&mut self, v: &str) -> &mut Self {
        self.push(Val::Text(v.to_string()))
    }

    pub fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        self.push(v.map_or(Val::Null, |s| Val::Text(s.to_string())))
    }

    /// [`Rows::text`], moved in rather than copied.
    pub fn text_owned(&mut self, v: String) -> &mut Self {
        self.push(Val::Text(v))
    }

    /// [`Rows::opt_text`], moved in rather than copied.
    pub fn opt_text_owned(&mut self, v: Option<String>) -> &mut Self {
        self.push(v.map_or(Val::Null, Val::Text))
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        self.push(Val::Int(v))
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.push(Val::Bool(v))
    }

    pub fn null(&mut self) -> &mut Self {
        self.push(Val::Null)
    }

    /// Ends the current row.
    pub fn end(&mut self) -> &mut Self {
        if self.in_row > 0 {
            match self.width {
                None => self.width = Some(self.in_row),
                Some(w) if w != self.in_row => self.ragged = true,
                Some(_) => {}
            }
            self.rows += 1;
            self.in_row = 0;
        }
        self
    }

    /// The rows, checked against the columns.
    fn checked(mut self, cols: &[Col]) -> Result<Vec<Val>, StoreError> {
        self.end();
        let w = cols.len();
        if self.ragged || self.cells.len() != self.rows * w {
            return Err(StoreError::Corrupt(format!(
                "bulk rows: {} cells for {} rows of {w} columns",
                self.cells.len(),
                self.rows
            )));
        }
        for (i, v) in self.cells.iter().enumerate() {
            let ok = matches!(
                (v, cols[i % w]),
                (Val::Null, _)
                    | (Val::Uuid(_), Col::Uuid)
                    | (Val::Text(_), Col::Text)
                    | (Val::Int(_), Col::Int)
                    | (Val::Bool(_), Col::Bool)
            );
            if !ok {
                return Err(StoreError::Corrupt(format!(
                    "bulk rows: cell {i} is {v:?}, the column is {:?}",
                    cols[i % w]
                )));
            }
        }
        Ok(self.cells)
    }
}

/// Runs SQLite statements `(sql, cells)` one after the other and returns the rows they
/// affected. Each statement's arguments are built while the one before runs on the
/// connection's worker thread: building them (a few thousand cells) took about a fifth of the
/// time of running them, which otherwise adds to every bulk write on the single writer.
async fn run_sqlite(
    c: &mut sqlx::SqliteConnection,
    mut statements: impl Iterator<Item = (String, Vec<Val>)>,
) -> Result<u64, StoreError> {
    let Some((mut sql, cells)) = statements.next() else {
        return Ok(0);
    };
    let mut args = sqlite_args(cells)?;
    let mut n = 0;
    loop {
        let run = sqlx::query_with(&sql, args).execute(&mut *c);
        // `biased`: `run` is polled first, which hands the statement to the worker thread; the
        // next one is then built here while the worker runs it.
        let (done, next) = tokio::join!(biased; run, async {
            statements
                .next()
                .map(|(sql, cells)| sqlite_args(cells).map(|a| (sql, a)))
        });
        n += done?.rows_affected();
        match next {
            Some(built) => (sql, args) = built?,
            None => return Ok(n),
        }
    }
}

/// A statement's arguments, the cells moved in by value: sqlx sends a statement's arguments to
/// its SQLite worker thread as owned values, so a borrowed text would be copied once more on
/// the way (on the import's critical path, between two statements of the writer).
fn sqlite_args(cells: Vec<Val>) -> Result<sqlx::sqlite::SqliteArguments<'static>, StoreError> {
    use sqlx::Arguments;
    let mut args = sqlx::sqlite::SqliteArguments::default();
    args.reserve(cells.len(), 0);
    for v in cells {
        match v {
            Val::Null => args.add(None::<String>),
            Val::Uuid(u) => args.add(u),
            Val::Text(s) => args.add(s),
            Val::Int(i) => args.add(i),
            Val::Bool(b) => args.add(b),
        }
        .map_err(|e| StoreError::Corrupt(format!("bulk rows: a cell cannot be bound: {e}")))?;
    }
    Ok(args)
}

/// The cells in statements' worth for SQLite ([`SQLITE_ROWS`] rows of `width`), moved, not
/// copied.
fn sqlite_chunks(cells: Vec<Val>, width: usize) -> impl Iterator<Item = Vec<Val>> {
    let per = SQLITE_ROWS * width.max(1);
    let mut cells = cells.into_iter();
    std::iter::from_fn(move || {
        let chunk: Vec<Val> = cells.by_ref().take(per).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
}

fn values_list(rows: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; rows].join(", ")
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds column `c` of `cells` (rows of `width`) as one array.
fn bind_pg_column<'q>(
    q: PgQuery<'q>,
    cells: &[Val],
    width: usize,
    c: usize,
    t: Col,
) -> PgQuery<'q> {
    let column = cells.iter().skip(c).step_by(width);
    match t {
        Col::Uuid => q.bind(
            column
                .map(|v| match v {
                    Val::Uuid(u) => Some(*u),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Col::Text => q.bind(
            column
                .map(|v| match v {
                    Val::Text(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Col::Int => q.bind(
            column
                .map(|v| match v {
                    Val::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Col::Bool => q.bind(
            column
                .map(|v| match v {
                    Val::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
    }
}

fn unnest(from: usize, cols: &[(&str, Col)]) -> String {
    let args = cols
        .iter()
        .enumerate()
        .map(|(i, (_, t))| format!("${}::{}", from + i, t.pg_array()))
        .collect::<Vec<_>>()
        .join(", ");
    format!("UNNEST({args})")
}

/// `c0, c1, …`: the names of a row's `w` columns in a `VALUES` or `UNNEST` alias.
fn aliases(w: usize) -> String {
    (0..w)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `sql` once per [`PG_ROWS`] rows of `cells`, with `$1` = `org` when given and then one
/// array per column of `cols`. Returns the rows affected.
async fn pg_chunks(
    c: &mut sqlx::PgConnection,
    sql: &str,
    org: Option<Uuid>,
    cells: &[Val],
    cols: &[(&str, Col)],
) -> Result<u64, StoreError> {
    let w = cols.len();
    let mut n = 0;
    for chunk in cells.chunks(PG_ROWS * w) {
        let mut q = sqlx::query(sql);
        if let Some(org) = org {
            q = q.bind(org);
        }
        for (i, (_, t)) in cols.iter().enumerate() {
            q = bind_pg_column(q, chunk, w, i, *t);
        }
        n += q.execute(&mut *c).await?.rows_affected();
    }
    Ok(n)
}

/// `INSERT INTO table (cols) VALUES …` with `suffix` appended (e.g. `ON CONFLICT DO NOTHING`).
/// Returns the rows inserted. On an error the caller must roll the transaction back (every
/// caller does, by returning the error): the rows before the failing one may have been written.
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
    let types: Vec<Col> = cols.iter().map(|c| c.1).collect();
    let cells = rows.checked(&types)?;
    let w = cols.len();
    let names = cols.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
    let mut n = 0;
    match Exec::raw(&mut *tx) {
        Raw::Sqlite(c) => {
            // `OR FAIL`: a row that breaks a constraint fails the statement but does not undo
            // the statement's earlier rows, so SQLite keeps no statement journal (a copy of
            // every page the statement touches; it still does for a table with immediate
            // foreign keys). Nothing is lost: a failed bulk insert fails its whole
            // transaction, which is rolled back.
            let or_fail = if suffix.is_empty() { "OR FAIL " } else { "" };
            let statement = |chunk: Vec<Val>| {
                let sql = format!(
                    "INSERT {or_fail}INTO {table} ({names}) VALUES {} {suffix}",
                    values_list(chunk.len() / w, w)
                );
                (sql, chunk)
            };
            n += run_sqlite(c, sqlite_chunks(cells, w).map(statement)).await?;
        }
        Raw::Postgres(c) if suffix.is_empty() => {
            let mut copy = c
                .copy_in_raw(&format!(
                    "COPY {table} ({names}) FROM STDIN (FORMAT binary)"
                ))
                .await?;
            let mut buf = Vec::with_capacity(COPY_BUFFER + 4096);
            buf.extend_from_slice(COPY_HEADER);
            for row in cells.chunks(w) {
                if let Err(e) = copy_row(&mut buf, row) {
                    // Ends the COPY; the caller rolls the transaction back.
                    let _ = copy.abort("bad row").await;
                    return Err(e);
                }
                if buf.len() >= COPY_BUFFER {
                    copy.send(std::mem::take(&mut buf)).await?;
                }
            }
            buf.extend_from_slice(COPY_TRAILER);
            copy.send(buf).await?;
            n = copy.finish().await?;
        }
        Raw::Postgres(c) => {
            let sql = format!(
                "INSERT INTO {table} ({names}) SELECT * FROM {} {suffix}",
                unnest(1, cols)
            );
            n += pg_chunks(c, &sql, None, &cells, cols).await?;
        }
    }
    Ok(n)
}

/// Bytes of `COPY` data sent to PostgreSQL at a time.
const COPY_BUFFER: usize = 1 << 20;

/// The start of `COPY … (FORMAT binary)` data: the signature, then 32-bit flags and header
/// extension length, both zero.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end of binary `COPY` data: a field count of -1.
const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// Appends one row in `COPY`'s binary format: the field count, then each field as its length
/// (-1 for NULL) and the value as the type's binary form (`uuid`: 16 bytes, `bigint`: 8 bytes
/// big-endian, `boolean`: 1 byte, `text`: its UTF-8 bytes). Nothing is escaped, and the server
/// parses no text: in text format `uuid_in` was 9% of an import's server time.
fn copy_row(buf: &mut Vec<u8>, row: &[Val]) -> Result<(), StoreError> {
    let too_big = || StoreError::Corrupt("bulk rows: a row or a text is too large for COPY".into());
    let fields = i16::try_from(row.len()).map_err(|_| too_big())?;
    buf.extend_from_slice(&fields.to_be_bytes());
    for v in row {
        match v {
            Val::Null => buf.extend_from_slice(&(-1i32).to_be_bytes()),
            Val::Uuid(u) => {
                buf.extend_from_slice(&16i32.to_be_bytes());
                buf.extend_from_slice(u.as_bytes());
            }
            Val::Int(n) => {
                buf.extend_from_slice(&8i32.to_be_bytes());
                buf.extend_from_slice(&n.to_be_bytes());
            }
            Val::Bool(b) => {
                buf.extend_from_slice(&1i32.to_be_bytes());
                buf.push(u8::from(*b));
            }
            Val::Text(s) => {
                let len = i32::try_from(s.len()).map_err(|_| too_big())?;
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
        }
    }
    Ok(())
}

/// For every row: `UPDATE table SET col = value, … WHERE org_id = $org AND key = row key [AND
/// check = row value]`. `key` is the first column of `cols`; `check` (optional) is a further
/// column compared, not set (e.g. the version read). Returns the rows updated, so callers
/// detect rows changed meanwhile.
pub async fn update(
    tx: &mut Tx,
    table: &str,
    org: Uuid,
    cols: &[(&str, Col)],
    check: Option<(&str, Col)>,
    rows: Rows,
) -> Result<u64, StoreError> {
    if rows.is_empty() || cols.is_empty() {
        return Ok(0);
    }
    let mut all = cols.to_vec();
    if let Some(c) = check {
        all.push(c);
    }
    let types: Vec<Col> = all.iter().map(|c| c.1).collect();
    let cells = rows.checked(&types)?;
    let w = all.len();
    let set = cols
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, (name, _))| format!("{name} = v.c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let key = cols[0].0;
    let mut cond = format!("{table}.{key} = v.c0");
    if let Some((name, _)) = check {
        cond += &format!(" AND {table}.{name} = v.c{}", cols.len());
    }
    let aliases = aliases(w);
    let mut n = 0;
    match Exec::raw(&mut *tx) {
        Raw::Sqlite(c) => {
            for chunk in sqlite_chunks(cells, w) {
                // The CTE names the VALUES columns; `+org_id` keeps SQLite from choosing an
                // organisation-wide index over the primary key.
                let sql = format!(
                    "WITH v ({aliases}) AS (VALUES {}) UPDATE {table} SET {set} FROM v \
                     WHERE {cond} AND +{table}.org_id = ?",
                    values_list(chunk.len() / w, w)
                );
                n += sqlx::query_with(&sql, sqlite_args(chunk)?)
                    .bind(org)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
            }
        }
        Raw::Postgres(c) => {
            let sql = format!(
                "UPDATE {table} SET {set} FROM {} AS v ({aliases}) WHERE {table}.org_id = $1 AND {cond}",
                unnest(2, &all)
            );
            n += pg_chunks(c, &sql, Some(org), &cells, &all).await?;
        }
    }
    Ok(n)
}

/// For every row: `DELETE FROM table WHERE org_id = $org AND (cols) = row`: rows found by a
/// key (an index that starts with `org_id`, then `cols`), without an index per row's owner.
/// Returns the rows deleted.
pub async fn delete_keys(
    tx: &mut Tx,
    table: &str,
    org: Uuid,
    cols: &[(&str, Col)],
    rows: Rows,
) -> Result<u64, StoreError> {
    if rows.is_empty() || cols.is_empty() {
        return Ok(0);
    }
    let types: Vec<Col> = cols.iter().map(|c| c.1).collect();
    let cells = rows.checked(&types)?;
    let w = cols.len();
    let names = cols.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
    let aliases = aliases(w);
    let mut n = 0;
    match Exec::raw(&mut *tx) {
        Raw::Sqlite(c) => {
            for chunk in sqlite_chunks(cells, w) {
                // A vector `IN` over a subquery is looked up key by key; over a plain VALUES
                // list SQLite would walk all of the organisation's rows.
                let sql = format!(
                    "WITH v ({aliases}) AS (VALUES {}) DELETE FROM {table} \
                     WHERE (org_id, {names}) IN (SELECT ?, {aliases} FROM v)",
                    values_list(chunk.len() / w, w)
                );
                n += sqlx::query_with(&sql, sqlite_args(chunk)?)
                    .bind(org)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
            }
        }
        Raw::Postgres(c) => {
            let cond = cols
                .iter()
                .enumerate()
                .map(|(i, (name, _))| format!(" AND {table}.{name} = v.c{i}"))
                .collect::<String>();
            let sql = format!(
                "DELETE FROM {table} USING {} AS v ({aliases}) WHERE {table}.org_id = $1{cond}",
                unnest(2, cols)
            );
            n += pg_chunks(c, &sql, Some(org), &cells, cols).await?;
        }
    }
    Ok(n)
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
    let mut n = 0;
    match Exec::raw(&mut *tx) {
        Raw::Sqlite(c) => {
            for chunk in ids.chunks(SQLITE_ROWS) {
                // `+org_id`: the id list drives the plan, not an organisation-wide index.
                let sql = format!(
                    "DELETE FROM {table} WHERE {col} IN ({}) AND +org_id = ?",
                    vec!["?"; chunk.len()].join(", ")
                );
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                n += q.bind(org).execute(&mut *c).await?.rows_affected();
            }
        }
        Raw::Postgres(c) => {
            let sql = format!("DELETE FROM {table} WHERE org_id = $1 AND {col} = ANY($2)");
            n += sqlx::query(&sql)
                .bind(org)
                .bind(ids)
                .execute(&mut *c)
                .await?
                .rows_affected();
        }
    }
    Ok(n)
}

/// Checks that every id of `ids` (distinct) is a row of `table` in organisation `org`, and on
/// PostgreSQL locks those rows `FOR KEY SHARE` until the transaction ends, as a foreign-key
/// check would: they can then neither be deleted nor change their key meanwhile. A bulk writer
/// calls it for the few parents (units, labels) that many new rows name, before
/// [`fk_triggers_off`]. An id that is missing is a [`StoreError::ForeignKey`].
pub async fn lock_parents(
    tx: &mut Tx,
    table: &str,
    org: Uuid,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut found = 0;
    match Exec::raw(&mut *tx) {
        Raw::Sqlite(c) => {
            // The writer holds the database's write lock: nobody can delete them meanwhile.
            for chunk in ids.chunks(SQLITE_ROWS) {
                let sql = format!(
                    "SELECT count(*) FROM {table} WHERE id IN ({}) AND org_id = ?",
                    vec!["?"; chunk.len()].join(", ")
                );
                let mut q = sqlx::query_scalar::<_, i64>(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                found += q.bind(org).fetch_one(&mut *c).await?;
            }
        }
        Raw::Postgres(c) => {
            let sql = format!(
                "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE id = ANY($1) AND org_id = $2 \
                 FOR KEY SHARE) AS locked"
            );
            found = sqlx::query_scalar::<_, i64>(&sql)
                .bind(ids)
                .bind(org)
                .fetch_one(&mut *c)
                .await?;
        }
    }
    if found != ids.len() as i64 {
        return Err(StoreError::ForeignKey {
            what: format!(
                "{} of the {} {table} named do not exist (any more)",
                ids.len() as i64 - found,
                ids.len()
            ),
        });
    }
    Ok(())
}

/// [`lock_parents`] for an organisation itself: checks that `org` exists and on PostgreSQL
/// locks it `FOR KEY SHARE` until the transaction ends, so that rows naming it (new people)
/// can be inserted after [`fk_triggers_off`]. A missing organisation is a
/// [`StoreError::ForeignKey`].
pub async fn lock_organisation(tx: &mut Tx, org: Uuid) -> Result<(), StoreError> {
    let found: i64 =
        match Exec::raw(&mut *tx) {
            Raw::Sqlite(c) => {
                sqlx::query_scalar("SELECT count(*) FROM organisations WHERE id = ?")
                    .bind(org)
                    .fetch_one(&mut *c)
                    .await?
            }
            Raw::Postgres(c) => sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT 1 FROM organisations WHERE id = $1 FOR KEY SHARE) \
                 AS locked",
            )
            .bind(org)
            .fetch_one(&mut *c)
            .await?,
        };
    if found != 1 {
        return Err(StoreError::ForeignKey {
            what: "the organisation named does not exist (any more)".into(),
        });
    }
    Ok(())
}

/// SQLite: checks every foreign key of every row of `tables` (`PRAGMA foreign_key_check`), for
/// a [`crate::Db::begin_bulk`] transaction, which writes without them, before it commits. A
/// row naming a missing parent is a [`StoreError::ForeignKey`]. Each call reads the whole of
/// each table: for small tables (units, labels), or where a bulk writer did not check its
/// rows otherwise. Nothing to do on PostgreSQL, which checks as usual.
pub async fn check_foreign_keys(tx: &mut Tx, tables: &[&str]) -> Result<(), StoreError> {
    let Raw::Sqlite(c) = Exec::raw(&mut *tx) else {
        return Ok(());
    };
    for table in tables {
        // Rows of (table, rowid, parent, key index); the first is enough to refuse.
        let bad: Option<(String, Option<i64>, String)> = sqlx::query_as(&format!(
            "SELECT \"table\", rowid, parent FROM pragma_foreign_key_check('{table}') LIMIT 1"
        ))
        .fetch_optional(&mut *c)
        .await?;
        if let Some((child, row, parent)) = bad {
            return Err(StoreError::ForeignKey {
                what: format!(
                    "a row of {child} (rowid {}) names a missing {parent}",
                    row.map_or_else(|| "none".to_string(), |r| r.to_string())
                ),
            });
        }
    }
    Ok(())
}

/// PostgreSQL: turns the foreign-key triggers off for the rest of the transaction or until
/// [`fk_triggers_on`], where the role may (`session_replication_role = replica`: a superuser,
/// or a role granted `SET` on that parameter). Returns whether it did; on SQLite, or without
/// the right, it does nothing (the checks then run as usual).
///
/// Each foreign key of each inserted row otherwise costs a trigger call that runs a
/// `SELECT … FOR KEY SHARE` on the parent: for an import's link rows (a person's unit, groups
/// and skills) that was 40% of the server's work, for its new people (their organisation)
/// another tenth. Only for inserts whose every key the caller has made sure of in this
/// transaction: rows written in it, or parents checked and locked with [`lock_parents`] or
/// [`lock_organisation`]. Other triggers are off meanwhile too (the schema has none).
pub async fn fk_triggers_off(tx: &mut Tx) -> Result<bool, StoreError> {
    let Raw::Postgres(c) = Exec::raw(&mut *tx) else {
        return Ok(false);
    };
    // Asked first rather than tried: a refused `SET` would abort the transaction (or need a
    // savepoint) and log an error on the server for every chunk.
    let (superuser, version): (bool, i32) = sqlx::query_as(
        "SELECT current_setting('is_superuser') = 'on', \
         current_setting('server_version_num')::int",
    )
    .fetch_one(&mut *c)
    .await?;
    // Privileges on parameters exist from PostgreSQL 15 (the function, too).
    let may = superuser
        || (version >= 150_000
            && sqlx::query_scalar::<_, bool>(
                "SELECT has_parameter_privilege('session_replication_role', 'SET')",
            )
            .fetch_one(&mut *c)
            .await?);
    if may {
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *c)
            .await?;
    }
    Ok(may)
}

/// Undoes [`fk_triggers_off`] (`was_off`: what it returned).
pub async fn fk_triggers_on(tx: &mut Tx, was_off: bool) -> Result<(), StoreError> {
    if let (true, Raw::Postgres(c)) = (was_off, Exec::raw(&mut *tx)) {
        sqlx::query("SET LOCAL session_replication_role = origin")
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_in_binary_format() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let mut buf = Vec::new();
        copy_row(
            &mut buf,
            &[
                Val::Uuid(id),
                Val::Text("a\tb\\ü".into()),
                Val::Null,
                Val::Int(-42),
                Val::Bool(true),
                Val::Text(String::new()),
            ],
        )
        .unwrap();
        let mut want: Vec<u8> = vec![0, 6, 0, 0, 0, 16];
        want.extend_from_slice(id.as_bytes());
        want.extend_from_slice(&[0, 0, 0, 6, b'a', b'\t', b'b', b'\\', 0xc3, 0xbc]);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd6]);
        want.extend_from_slice(&[0, 0, 0, 1, 1, 0, 0, 0, 0]);
        assert_eq!(buf, want);
        assert_eq!(COPY_HEADER.len(), 19);
    }

    #[test]
    fn rows_are_checked_against_the_columns() {
        let mut r = Rows::new();
        r.uuid(Uuid::nil()).text("a'b").int(3).end();
        r.null().opt_text(None).int(4).end();
        let cells = r.checked(&[Col::Uuid, Col::Text, Col::Int]).unwrap();
        assert_eq!(cells.len(), 6);
        let mut r = Rows::new();
        r.uuid(Uuid::nil()).text("x").end();
        assert!(r.checked(&[Col::Uuid, Col::Int]).is_err());
        let mut r = Rows::new();
        r.uuid(Uuid::nil()).end();
        assert!(r.checked(&[Col::Uuid, Col::Int]).is_err());
        // Rows of 1 and 3 cells make 4 cells: two rows of two, but ragged.
        let mut r = Rows::new();
        r.int(1).end();
        r.int(2).int(3).int(4).end();
        assert!(r.checked(&[Col::Int, Col::Int]).is_err());
    }

    #[test]
    fn sqlite_values_lists() {
        assert_eq!(values_list(2, 3), "(?, ?, ?), (?, ?, ?)");
    }
}
