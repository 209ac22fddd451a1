//! Applying a people import (CSV or XLSX): match each row to a person who exists (external key,
//! else e-mail), work out created / updated / unchanged, optionally deactivate the people of a
//! unit who are missing from the file, and write it all in one transaction.
//!
//! Shape of a run:
//! - a blocking thread reads and checks the file ([`crate::import::read_each`]: decoding, CSV or
//!   XLSX, phone and e-mail normalisation — the CPU-heavy part) and hands rows on in chunks
//!   through a bounded channel, so reading overlaps writing and memory does not grow with the
//!   file;
//! - this task (the planner) matches each chunk against the organisation's people (read once,
//!   in three set queries) and builds the chunk's rows (`repo::people::ManyRows`);
//! - a writer task ([`Writer`]) owns the transaction and writes chunk after chunk with set
//!   statements (`repo::people::write_many`, `audit::append_rows`: a few statements per chunk,
//!   not per row) while the planner works on the next one; a chunk's audit events are hashed
//!   on a blocking thread while its people are written. Units a row names and that do not
//!   exist yet are created by the writer too, in order, on the planner's request.
//!
//! Rules:
//! - only the file's columns change a person; a column the file lacks keeps what is stored; an
//!   empty cell in a mapped column clears the field (except the external key, which is never
//!   cleared by an import);
//! - the unit column replaces the person's unit memberships, groups and skills columns replace
//!   those lists; roles are only ever added;
//! - a row whose person would not change writes nothing and no audit event, so re-importing a
//!   file is a no-op;
//! - a person listed in the file is active (a deactivated one is reactivated);
//! - any bad row stops the whole import unless `skip_bad_rows`; a dry run writes nothing but
//!   reports exactly what an apply would do.

use std::collections::{HashMap, HashSet};

use carebridge_domain::audit::AuditEntry;
use carebridge_domain::auth::Actor;
use carebridge_domain::person::PersonDraft;
use carebridge_domain::role::Role;
use carebridge_domain::search::{fold, sort_key};
use carebridge_domain::{IdSequence, OrgId, PersonId, Timestamp};
use carebridge_proto::directory::{
    Contact, CreateUnit, ImportColumn, ImportError, ImportMatch, ImportOptions, ImportReport,
    Person, RoleAssignment, Unit, UnitRef,
};
use carebridge_store::audit;
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Exec, Tx, rosters, run, sqlx};
use carebridge_web::ServiceError;
use uuid::Uuid;

use crate::import::{Field, Item, Mapping, Parsed, ReadOptions, RowError, parse_map, read_each};
use crate::repo::people::{self as repo, Links};
use crate::repo::roles as roles_repo;

/// Rows handed from the reader to the planner, and so to the writer, at a time: the first
/// chunk is small, so that the writer starts early; each next one is twice as large, up to
/// [`CHUNK`]. Large chunks are cheaper to write: a chunk's search tokens are written in key
/// order (neighbours share B-tree pages), and each table's pages and indexes stay in the CPU
/// caches for longer before the next table's turn. Replaying a 100k import's rows with SQLite
/// alone, 5,000-row chunks took 16% longer to write than 10,000-row ones, 2,000-row chunks 36%.
const FIRST_CHUNK: usize = 2_000;
/// The largest chunk (see [`FIRST_CHUNK`]).
const CHUNK: usize = 10_000;
/// Chunks the reader may run ahead of the planner: while the existing people are loaded (over a
/// second for 100k) it reads and checks the first 34k rows instead of waiting.
const READ_AHEAD: usize = 4;
/// Problems listed in a report (all are counted).
const MAX_ERRORS: usize = 1_000;

/// What the reader thread sends.
enum Msg {
    Header(Mapping),
    Columns(Vec<(String, Option<Field>)>),
    Items(Vec<Item>, f64),
    Done(Result<(), Vec<RowError>>),
}

/// Where an import comes from and what it may do.
pub struct Request {
    pub bytes: Vec<u8>,
    pub options: ImportOptions,
    /// The caller may assign roles (a `roles` column needs it).
    pub may_assign_roles: bool,
}

/// Organisations with an import running in this process.
static RUNNING: std::sync::Mutex<Vec<Uuid>> = std::sync::Mutex::new(Vec::new());

/// Marks an organisation's import as running until dropped.
struct Running(Uuid);

impl Running {
    fn start(org: Uuid) -> Result<Running, ServiceError> {
        let mut r = RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if r.contains(&org) {
            return Err(ServiceError::Conflict {
                code: "import_running",
                detail:
                    "an import into this organisation is running; try again when it has finished"
                        .into(),
            });
        }
        r.push(org);
        Ok(Running(org))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut r = RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        r.retain(|o| *o != self.0);
    }
}

/// Whether an import into `org` is running in this process.
pub fn running(org: Uuid) -> bool {
    RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(&org)
}

/// Runs an import; `progress` gets the fraction of the file done after every chunk. One import
/// per organisation at a time (per process): a second gets 409 `import_running` at once rather
/// than waiting for the first one's transaction.
pub async fn run(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    req: Request,
    now: Timestamp,
    progress: &(dyn Fn(f64) + Send + Sync),
) -> Result<ImportReport, ServiceError> {
    let _running = Running::start(org.id.0)?;
    import(db, actor, org, req, now, progress).await
}

/// [`run`] without the bookkeeping around it.
async fn import(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    req: Request,
    now: Timestamp,
    progress: &(dyn Fn(f64) + Send + Sync),
) -> Result<ImportReport, ServiceError> {
    let opts = req.options;
    let mut report = ImportReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let map = match opts.map.as_deref().map(parse_map).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return Ok(with_errors(report, e)),
    };
    let read = ReadOptions {
        map,
        sheet: opts.sheet.clone(),
    };
    let region = org.default_region.clone();
    let (send, mut recv) = tokio::sync::mpsc::channel::<Msg>(READ_AHEAD);
    let bytes = req.bytes;
    let reader = tokio::task::spawn_blocking(move || {
        let mut size = FIRST_CHUNK;
        let mut buf = Vec::with_capacity(size);
        let mut last = 0.0;
        // When the writer has gone (error, client gone), the rest of the file is skipped.
        let mut gone = false;
        let res = read_each(&bytes, &read, &region, |item, done| {
            if gone {
                return;
            }
            if let Item::Header(m) = item {
                gone = send.blocking_send(Msg::Header(m)).is_err();
                return;
            }
            if let Item::Columns(c) = item {
                gone = send.blocking_send(Msg::Columns(c)).is_err();
                return;
            }
            buf.push(item);
            last = done;
            if buf.len() >= size {
                size = (size * 2).min(CHUNK);
                let full = std::mem::replace(&mut buf, Vec::with_capacity(size));
                gone = send.blocking_send(Msg::Items(full, done)).is_err();
            }
        });
        if !buf.is_empty() {
            let _ = send.blocking_send(Msg::Items(buf, last));
        }
        let _ = send.blocking_send(Msg::Done(res.map(|_| ())));
    });

    // The mapping (or the file-level errors) comes first.
    let mut first = recv.recv().await;
    if let Some(Msg::Columns(c)) = first {
        // The header row failed: report how each column would be read, with the errors.
        report.columns = c
            .into_iter()
            .map(|(header, f)| ImportColumn {
                header,
                field: f.map_or("unknown", |f| f.name()).to_string(),
            })
            .collect();
        first = recv.recv().await;
    }
    let mapping = match first {
        Some(Msg::Header(m)) => m,
        Some(Msg::Done(Err(e))) => return Ok(with_errors(report, e)),
        _ => {
            return Ok(with_errors(
                report,
                vec![file_error("the file could not be read")],
            ));
        }
    };
    report.columns = mapping
        .headers
        .iter()
        .zip(&mapping.fields)
        .map(|(h, f)| ImportColumn {
            header: h.clone(),
            field: f.name().to_string(),
        })
        .collect();
    if mapping.fields.contains(&Field::Roles) && !req.may_assign_roles {
        return Ok(with_errors(
            report,
            vec![file_error(
                "the file has a roles column; assigning roles needs the roles:write permission",
            )],
        ));
    }

    let mut tx = if opts.dry_run {
        None
    } else {
        Some(db.begin_bulk().await?)
    };
    // Read on connections of their own, before the one below is taken.
    let people = repo::all(db, org.id).await?;
    let mut state = match &mut tx {
        Some(tx) => State::load(tx, people, org, &mapping, &opts, now).await?,
        None => State::load(&mut db.read().await?, people, org, &mapping, &opts, now).await?,
    };
    if let Some(path) = &opts.deactivate_missing
        && !state.units.contains_key(&path_key(path))
    {
        return Ok(with_errors(
            report,
            vec![file_error(format!(
                "deactivate_missing: no unit '{path}' in this organisation"
            ))],
        ));
    }

    // The first MAX_ERRORS problems are kept, all are counted (a file of bad rows must not
    // fill the memory).
    let mut errors: Vec<RowError> = Vec::new();
    let mut errors_total: u64 = 0;
    let mut fatal = false;
    let mut done_fraction = 0.0;
    // Only the reader's own end message says the whole file was read.
    let mut read_result = Err(vec![file_error("the file could not be read to the end")]);
    // From here the transaction belongs to the writer task: it writes one chunk while this
    // task plans the next.
    let writer = match tx {
        Some(tx) => Some(Writer::start(tx, actor.clone(), org.clone(), now).await?),
        None => None,
    };
    let planned: Result<(), ServiceError> = async {
        while let Some(msg) = recv.recv().await {
            match msg {
                // Only ever sent before the rows (handled above).
                Msg::Header(_) | Msg::Columns(_) => {}
                Msg::Items(items, done) => {
                    let mut batch = Batch::with_capacity(items.len());
                    for item in items {
                        match item {
                            Item::Header(_) | Item::Columns(_) => {}
                            Item::Errors(e) => {
                                report.rows += 1;
                                report.bad_rows += 1;
                                keep(&mut errors, &mut errors_total, e);
                            }
                            Item::Row(p) => {
                                report.rows += 1;
                                if let Err(e) = state
                                    .plan(writer.as_ref(), actor, p, &mut batch, &mut report, now)
                                    .await?
                                {
                                    report.bad_rows += 1;
                                    keep(&mut errors, &mut errors_total, e);
                                }
                            }
                        }
                    }
                    // All or nothing: after the first bad row nothing more is written (the
                    // rest is still read, for the report).
                    let writing = opts.skip_bad_rows || errors_total == 0;
                    if let (Some(w), true) = (&writer, writing) {
                        w.write(prepare(org.id, w.seq, batch)).await?;
                    }
                    done_fraction = done;
                    progress(done_fraction);
                }
                Msg::Done(r) => read_result = r,
            }
        }
        Ok(())
    }
    .await;
    let mut tx: Option<(Tx, i64)> = match (writer, planned) {
        (Some(w), Ok(())) => Some(w.finish().await?),
        (Some(w), Err(e)) => return Err(w.error_or(e).await),
        (None, Ok(())) => None,
        (None, Err(e)) => return Err(e),
    };
    if reader.await.is_err() {
        read_result = Err(vec![file_error("the file could not be read to the end")]);
    }
    if let Err(e) = read_result {
        errors_total += e.len() as u64;
        errors.extend(e);
        // Not even skip mode applies a file that was not read to the end.
        fatal = true;
    }
    if opts.deactivate_missing.is_some() && !fatal {
        if errors_total == 0 {
            state
                .deactivate_missing(&mut tx, actor, org, &mut report, now)
                .await?;
        } else {
            // A bad row may name someone who is still there: deactivating "the missing" would
            // hit them.
            errors_total += 1;
            errors.push(file_error(
                "nobody was deactivated: with bad rows in the file, who is missing is not known",
            ));
        }
    }
    progress(done_fraction.max(1.0));
    let ok = !fatal && (opts.skip_bad_rows || errors_total == 0);
    if let (Some((mut tx, _)), true) = (tx, ok) {
        // The bulk transaction wrote without the database's foreign-key checks on SQLite (see
        // `Db::begin_bulk`). Link rows and role assignments named people, units and labels
        // checked chunk by chunk (`repo::write_many`, `write`); people name only their
        // organisation (never deleted) and no account; the small tables it wrote are checked
        // whole here (all organisations' units and labels: a few ms for thousands).
        carebridge_store::bulk::check_foreign_keys(&mut tx, &["units", "labels"]).await?;
        tx.commit().await?;
        report.applied = true;
    }
    let mut report = with_errors(report, errors);
    report.errors_total = errors_total;
    Ok(report)
}

fn keep(errors: &mut Vec<RowError>, total: &mut u64, new: Vec<RowError>) {
    *total += new.len() as u64;
    let room = MAX_ERRORS.saturating_sub(errors.len());
    errors.extend(new.into_iter().take(room));
}

fn file_error(reason: impl Into<String>) -> RowError {
    RowError {
        line: 0,
        column: String::new(),
        value: String::new(),
        reason: reason.into(),
    }
}

fn with_errors(mut r: ImportReport, mut e: Vec<RowError>) -> ImportReport {
    e.sort_by_key(|x| x.line);
    r.errors_total = e.len() as u64;
    r.errors = e
        .into_iter()
        .take(MAX_ERRORS)
        .map(|e| ImportError {
            line: e.line,
            column: e.column,
            value: e.value,
            reason: e.reason,
        })
        .collect();
    r
}

/// `Region Nord / Team 3` → `region nord/team 3`.
fn path_key(path: &str) -> String {
    path.split('/')
        .map(|p| fold(p.trim()))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// A unit as the import sees it.
#[derive(Clone)]
struct UnitInfo {
    id: Uuid,
    name: String,
    /// Stored materialised path (`/id/id/`), for subtree tests.
    stored_path: String,
}

/// Rows of one chunk, ready to write.
#[derive(Default)]
struct Batch {
    /// New people with their label ids.
    created: Vec<(Person, Vec<Uuid>)>,
    /// Changed people with the version they were read at and their label ids.
    updated: Vec<(Person, i64, Vec<Uuid>)>,
    labels: Vec<(Uuid, &'static str, String)>,
    roles: Vec<RoleAssignment>,
    audit: Vec<AuditEntry>,
}

impl Batch {
    /// Room for `rows` rows' people and audit events: the vectors are not regrown (each
    /// regrowth of a chunk-sized vector is a copy into fresh memory).
    fn with_capacity(rows: usize) -> Self {
        Batch {
            created: Vec::with_capacity(rows),
            updated: Vec::with_capacity(rows),
            audit: Vec::with_capacity(rows),
            ..Batch::default()
        }
    }
}

/// What the import knows while it runs.
struct State {
    has: HashSet<Field>,
    /// The file's header of each field (for error reports).
    headers: std::sync::Arc<HashMap<Field, String>>,
    match_by: ImportMatch,
    create_units: bool,
    deactivate_under: Option<String>,
    people: Vec<Person>,
    by_ext: HashMap<String, usize>,
    /// Folded e-mail → person; `None` when several people share it.
    by_email: HashMap<String, Option<usize>>,
    /// People of `people` a row has already matched, with that row's line.
    matched: HashMap<usize, u64>,
    /// Keys of rows that created people, with their line.
    new_keys: HashMap<String, u64>,
    /// External keys of the rows so far, with their line.
    seen_ext: HashMap<String, u64>,
    /// Folded unit path → unit.
    units: HashMap<String, UnitInfo>,
    /// `(kind, folded name)` → label id.
    labels: HashMap<(&'static str, String), Uuid>,
    /// `(person, role, unit)` assigned.
    roles: HashSet<(Uuid, String, Option<Uuid>)>,
    /// The new rows' ids (people, units, labels, role assignments), ascending.
    ids: IdSequence,
}

impl State {
    async fn load(
        x: &mut impl Exec,
        people: Vec<Person>,
        org: &OrgRef,
        mapping: &Mapping,
        opts: &ImportOptions,
        _now: Timestamp,
    ) -> Result<State, ServiceError> {
        let mut by_ext = HashMap::with_capacity(people.len());
        let mut by_email: HashMap<String, Option<usize>> = HashMap::with_capacity(people.len());
        for (i, p) in people.iter().enumerate() {
            if let Some(x) = &p.external_id {
                by_ext.insert(x.clone(), i);
            }
            for e in &p.emails {
                by_email
                    .entry(fold(&e.value))
                    .and_modify(|v| {
                        if *v != Some(i) {
                            *v = None
                        }
                    })
                    .or_insert(Some(i));
            }
        }
        let rows: Vec<(Uuid, Option<Uuid>, String, String)> = run!(x, c => sqlx::query_as(
            "SELECT id, parent_id, name, path FROM units WHERE org_id = $1 ORDER BY path")
            .bind(org.id.0).fetch_all(c).await)?;
        let mut key_of: HashMap<Uuid, String> = HashMap::new();
        let mut units = HashMap::new();
        // Parents sort before children (a parent's path is a prefix of its children's).
        for (id, parent, name, stored_path) in rows {
            let key = match parent.and_then(|p| key_of.get(&p)) {
                Some(pk) => format!("{pk}/{}", fold(&name)),
                None => fold(&name),
            };
            key_of.insert(id, key.clone());
            units.insert(
                key,
                UnitInfo {
                    id,
                    name,
                    stored_path,
                },
            );
        }
        let mut labels = HashMap::new();
        for (id, kind, key) in repo::all_labels(x, org.id).await? {
            let kind: &'static str = if kind == "group" { "group" } else { "skill" };
            labels.insert((kind, key), id);
        }
        let roles: Vec<(Uuid, String, Option<Uuid>)> = run!(x, c => sqlx::query_as(
            "SELECT person_id, role, unit_id FROM role_assignments WHERE org_id = $1")
            .bind(org.id.0).fetch_all(c).await)?;
        let deactivate_under = opts
            .deactivate_missing
            .as_deref()
            .and_then(|p| units.get(&path_key(p)))
            .map(|u: &UnitInfo| u.stored_path.clone());
        let mut headers = HashMap::new();
        for (h, f) in mapping.headers.iter().zip(&mapping.fields) {
            headers.entry(*f).or_insert_with(|| h.clone());
        }
        Ok(State {
            has: mapping.fields.iter().copied().collect(),
            headers: std::sync::Arc::new(headers),
            match_by: opts.match_by,
            create_units: opts.create_units,
            deactivate_under,
            people,
            by_ext,
            by_email,
            matched: HashMap::new(),
            new_keys: HashMap::new(),
            seen_ext: HashMap::new(),
            units,
            labels,
            roles: roles.into_iter().collect(),
            ids: IdSequence::new(),
        })
    }

    /// Whether a unit path exists or may be created.
    fn unit_ok(&self, path: &str) -> Result<(), String> {
        let key = path_key(path);
        if key.is_empty() {
            return Err("an empty unit path".into());
        }
        if self.units.contains_key(&key) {
            return Ok(());
        }
        if !self.create_units {
            return Err("no such unit (create it first, or import with create_units)".into());
        }
        let names: Vec<&str> = path
            .split('/')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if names.len() > carebridge_domain::unit::MAX_DEPTH {
            return Err(format!(
                "the unit tree has at most {} levels",
                carebridge_domain::unit::MAX_DEPTH
            ));
        }
        for n in names {
            if let Err(v) = carebridge_domain::unit::check_name(n) {
                let why = v.0.first().map(|x| x.message.clone()).unwrap_or_default();
                return Err(format!("cannot create unit '{n}': {why}"));
            }
        }
        Ok(())
    }

    /// The unit of a path, created (with missing parents) when allowed.
    async fn unit(
        &mut self,
        writer: Option<&Writer>,
        path: &str,
        report: &mut ImportReport,
        now: Timestamp,
    ) -> Result<Result<UnitInfo, String>, ServiceError> {
        let key = path_key(path);
        if key.is_empty() {
            return Ok(Err("an empty unit path".into()));
        }
        if let Some(u) = self.units.get(&key) {
            return Ok(Ok(u.clone()));
        }
        if !self.create_units {
            return Ok(Err(
                "no such unit (create it first, or import with create_units)".into(),
            ));
        }
        let names: Vec<&str> = path
            .split('/')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let mut parent: Option<UnitInfo> = None;
        let mut k = String::new();
        for name in names {
            if !k.is_empty() {
                k.push('/');
            }
            k.push_str(&fold(name));
            if let Some(u) = self.units.get(&k) {
                parent = Some(u.clone());
                continue;
            }
            let info = match writer {
                Some(w) => {
                    let input = CreateUnit {
                        name: name.to_string(),
                        parent_id: parent.as_ref().map(|p| p.id),
                    };
                    match w.create_unit(input).await {
                        Ok(u) => {
                            let stored_path = format!(
                                "/{}/",
                                u.path
                                    .iter()
                                    .map(Uuid::to_string)
                                    .collect::<Vec<_>>()
                                    .join("/")
                            );
                            UnitInfo {
                                id: u.id,
                                name: u.name,
                                stored_path,
                            }
                        }
                        Err(ServiceError::Invalid(v)) => {
                            let why = v.0.first().map(|x| x.message.clone()).unwrap_or_default();
                            return Ok(Err(format!("cannot create unit '{name}': {why}")));
                        }
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    if let Err(v) = carebridge_domain::unit::check_name(name) {
                        let why = v.0.first().map(|x| x.message.clone()).unwrap_or_default();
                        return Ok(Err(format!("cannot create unit '{name}': {why}")));
                    }
                    let id = self.ids.next(now);
                    UnitInfo {
                        id,
                        name: name.to_string(),
                        stored_path: format!(
                            "{}{id}/",
                            parent.as_ref().map_or("/", |p| p.stored_path.as_str())
                        ),
                    }
                }
            };
            report.units_created.push(
                path.split('/')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .take(k.matches('/').count() + 1)
                    .collect::<Vec<_>>()
                    .join("/"),
            );
            self.units.insert(k.clone(), info.clone());
            parent = Some(info);
        }
        Ok(parent.ok_or_else(|| "an empty unit path".to_string()))
    }

    /// Plans one row into `batch`; `Ok(Err(_))` is a bad row.
    async fn plan(
        &mut self,
        writer: Option<&Writer>,
        actor: &Actor,
        row: Parsed,
        batch: &mut Batch,
        report: &mut ImportReport,
        now: Timestamp,
    ) -> Result<Result<(), Vec<RowError>>, ServiceError> {
        let headers = self.headers.clone();
        let err = |column: Field, value: &str, reason: String| {
            vec![RowError {
                line: row.line,
                column: headers
                    .get(&column)
                    .cloned()
                    .unwrap_or_else(|| column.name().to_string()),
                value: value.to_string(),
                reason,
            }]
        };
        let d = &row.person;
        // Roles.
        let mut roles = Vec::new();
        for r in &row.roles {
            let Some(role) = Role::parse(&fold(r)) else {
                return Ok(Err(err(
                    Field::Roles,
                    r,
                    "unknown role; one of org_admin, unit_admin, dispatcher, member, client, relative"
                        .into(),
                )));
            };
            if role == Role::UnitAdmin && row.unit.is_none() {
                return Ok(Err(err(
                    Field::Roles,
                    r,
                    "unit_admin needs a unit in the row".into(),
                )));
            }
            roles.push(role);
        }
        // Unit: known, or creatable (created only once the row is known to be good).
        if let Some(path) = &row.unit
            && let Err(why) = self.unit_ok(path)
        {
            return Ok(Err(err(Field::Unit, path, why)));
        }
        // Match.
        let ext = d.external_id.as_deref();
        let email = d.emails.first().map(|e| fold(&e.value));
        let by_email = |e: &String| -> Result<Option<usize>, Vec<RowError>> {
            match self.by_email.get(e) {
                Some(Some(i)) => Ok(Some(*i)),
                Some(None) => Err(err(
                    Field::Email,
                    e,
                    "several people have this e-mail address; add an external key column".into(),
                )),
                None => Ok(None),
            }
        };
        let found: Option<usize> = match (self.match_by, ext, &email) {
            (ImportMatch::Email, _, None) | (ImportMatch::ExternalId, None, _) => {
                let f = if self.match_by == ImportMatch::Email {
                    Field::Email
                } else {
                    Field::ExternalId
                };
                return Ok(Err(err(
                    f,
                    "",
                    format!("the import matches by {}; this row has none", f.name()),
                )));
            }
            (ImportMatch::ExternalId, Some(x), _) => self.by_ext.get(x).copied(),
            (ImportMatch::Auto, Some(x), _) => match self.by_ext.get(x) {
                Some(i) => Some(*i),
                // A key not seen yet: the person may exist without one (entered by hand);
                // then the e-mail finds them and they take the file's key.
                None => match email.as_ref().map(by_email).transpose() {
                    Err(e) => return Ok(Err(e)),
                    Ok(Some(Some(i))) => match &self.people[i].external_id {
                        None => Some(i),
                        Some(other) => {
                            return Ok(Err(err(
                                Field::Email,
                                d.emails.first().map_or("", |e| e.value.as_str()),
                                format!(
                                    "this e-mail belongs to the person with external key {other}"
                                ),
                            )));
                        }
                    },
                    Ok(_) => None,
                },
            },
            (_, _, Some(e)) => match by_email(e) {
                Ok(i) => i,
                Err(e) => return Ok(Err(e)),
            },
            (_, None, None) => {
                return Ok(Err(err(
                    Field::GivenName,
                    &d.given_name,
                    "neither an external key nor an e-mail: a later import could not find this \
                     person again (add an external key or e-mail column)"
                        .into(),
                )));
            }
        };
        // An external key names one person.
        if let Some(x) = ext {
            if let Some(first) = self.seen_ext.get(x) {
                return Ok(Err(err(
                    Field::ExternalId,
                    x,
                    format!("the same external key as line {first}"),
                )));
            }
            if let Some(&j) = self.by_ext.get(x)
                && Some(j) != found
            {
                return Ok(Err(err(
                    Field::ExternalId,
                    x,
                    "another person has this external key".into(),
                )));
            }
        }
        // A person is named by one row only.
        if let Some(i) = found
            && let Some(first) = self.matched.get(&i)
        {
            return Ok(Err(err(
                Field::GivenName,
                &d.given_name,
                format!("the same person as line {first}"),
            )));
        }
        let keys: Vec<String> = email.iter().map(|e| format!("e:{e}")).collect();
        if found.is_none() {
            for k in &keys {
                if let Some(first) = self.new_keys.get(k) {
                    let (f, v) = if k.starts_with("x:") {
                        (Field::ExternalId, ext.unwrap_or(""))
                    } else {
                        (
                            Field::Email,
                            d.emails.first().map_or("", |e| e.value.as_str()),
                        )
                    };
                    return Ok(Err(err(f, v, format!("the same person as line {first}"))));
                }
            }
        }
        let unit = match &row.unit {
            Some(path) => match self.unit(writer, path, report, now).await? {
                Ok(u) => Some(u),
                Err(why) => return Ok(Err(err(Field::Unit, path, why))),
            },
            None => None,
        };
        if let Some(x) = ext {
            self.seen_ext.insert(x.to_string(), row.line);
        }
        match found {
            Some(i) => {
                self.matched.insert(i, row.line);
            }
            None => {
                for k in keys {
                    self.new_keys.insert(k, row.line);
                }
            }
        }
        let roles: Vec<(Role, Option<Uuid>)> = roles
            .into_iter()
            .map(|role| match role {
                Role::OrgAdmin => (role, None),
                _ => (role, unit.as_ref().map(|u| u.id)),
            })
            .collect();
        // The person as it will be.
        let cur = found.map(|i| &self.people[i]);
        let mut next = match cur {
            Some(c) => c.clone(),
            None => crate::service::people::blank(PersonId(self.ids.next(now)), now),
        };
        self.merge(&mut next, row.person, cur.is_none());
        if self.has.contains(&Field::Unit) || cur.is_none() {
            next.units = unit
                .iter()
                .map(|u| UnitRef {
                    id: u.id,
                    name: u.name.clone(),
                })
                .collect();
        }
        next.active = true;
        // Labels: stored names win over the file's spelling ("fahrer" is the label "Fahrer").
        let mut label_ids = Vec::new();
        for (kind, names) in [("group", &mut next.groups), ("skill", &mut next.skills)] {
            let mut seen = HashSet::new();
            names.retain(|n| seen.insert(fold(n)));
            for n in names.iter() {
                let key = (kind, fold(n));
                let id = match self.labels.get(&key) {
                    Some(id) => *id,
                    None => {
                        let id = self.ids.next(now);
                        self.labels.insert(key, id);
                        batch.labels.push((id, kind, n.clone()));
                        id
                    }
                };
                label_ids.push(id);
            }
        }
        let changed = match cur {
            Some(c) => !same(c, &next),
            None => true,
        };
        let id = next.id;
        if changed {
            match cur {
                Some(c) => {
                    let before = c.clone();
                    next.version = c.version + 1;
                    next.updated_at = now;
                    let action = if c.active {
                        "person.update"
                    } else {
                        "person.reactivate"
                    };
                    batch.audit.push(audit::entry(
                        actor,
                        action,
                        "person",
                        &next.id.to_string(),
                        Some(&before),
                        Some(&next),
                    ));
                    report.updated += 1;
                    if let Some(i) = found {
                        self.people[i] = next.clone();
                    }
                    batch.updated.push((next, before.version, label_ids));
                }
                None => {
                    batch.audit.push(audit::entry(
                        actor,
                        "person.create",
                        "person",
                        &next.id.to_string(),
                        None::<&Person>,
                        Some(&next),
                    ));
                    report.created += 1;
                    batch.created.push((next, label_ids));
                }
            }
        } else {
            report.unchanged += 1;
        }
        for (role, unit) in roles {
            if self.roles.insert((id, role.as_str().to_string(), unit)) {
                let r = RoleAssignment {
                    id: self.ids.next(now),
                    person_id: id,
                    role: role.as_str().to_string(),
                    unit_id: unit,
                    created_at: now,
                };
                batch.audit.push(audit::entry(
                    actor,
                    "role.assign",
                    "role_assignment",
                    &r.id.to_string(),
                    None::<&RoleAssignment>,
                    Some(&r),
                ));
                report.roles_assigned += 1;
                batch.roles.push(r);
            }
        }
        Ok(Ok(()))
    }

    /// Moves the file's columns of `d` onto `p`.
    fn merge(&self, p: &mut Person, d: PersonDraft, new: bool) {
        let has = |f: Field| new || self.has.contains(&f);
        let contacts = |c: Vec<carebridge_domain::person::Contact>| {
            c.into_iter().map(|c| Contact {
                value: c.value,
                kind: c.kind,
            })
        };
        p.given_name = d.given_name;
        p.family_name = d.family_name;
        if self.has.contains(&Field::Kind) || new {
            p.kind = d.kind.as_str().to_string();
        }
        if d.external_id.is_some() {
            p.external_id = d.external_id;
        }
        if has(Field::Language) {
            p.language = d.language;
        }
        if has(Field::Email) {
            p.emails = contacts(d.emails).collect();
        }
        if has(Field::Mobile) || has(Field::Phone) {
            // Stored numbers of a kind the file has no column for stay (a file with only a
            // mobile column keeps the landline).
            let from_file: Vec<&str> = [(Field::Mobile, "mobile"), (Field::Phone, "work")]
                .into_iter()
                .filter(|(f, _)| has(*f))
                .map(|(_, k)| k)
                .collect();
            p.phones.retain(|c| !from_file.contains(&c.kind.as_str()));
            p.phones.extend(contacts(d.phones));
        }
        let a = d.address;
        if has(Field::Street) {
            p.address.street = a.street;
        }
        if has(Field::PostalCode) {
            p.address.postal_code = a.postal_code;
        }
        if has(Field::Locality) {
            p.address.locality = a.locality;
        }
        if has(Field::Country) {
            p.address.country = a.country;
        }
        if has(Field::Groups) {
            p.groups = d.groups;
        }
        if has(Field::Skills) {
            p.skills = d.skills;
        }
    }

    /// The ids of a stored person's groups and skills.
    fn label_ids(&self, p: &Person) -> Vec<Uuid> {
        [("group", &p.groups), ("skill", &p.skills)]
            .into_iter()
            .flat_map(|(kind, list)| list.iter().map(move |n| (kind, fold(n))))
            .filter_map(|key| self.labels.get(&key).copied())
            .collect()
    }

    /// Full sync: deactivates active people under the chosen unit whom no row named.
    async fn deactivate_missing(
        &mut self,
        tx: &mut Option<(Tx, i64)>,
        actor: &Actor,
        org: &OrgRef,
        report: &mut ImportReport,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let Some(under) = self.deactivate_under.clone() else {
            return Ok(());
        };
        let paths: HashMap<Uuid, &str> = self
            .units
            .values()
            .map(|u| (u.id, u.stored_path.as_str()))
            .collect();
        let mut batch = Batch::default();
        for (i, p) in self.people.iter().enumerate() {
            if !p.active || self.matched.contains_key(&i) {
                continue;
            }
            // Only people whose every unit is in the subtree: someone who also belongs
            // elsewhere stays active.
            let inside = !p.units.is_empty()
                && p.units.iter().all(|u| {
                    paths
                        .get(&u.id)
                        .is_some_and(|path| path.starts_with(under.as_str()))
                });
            if !inside {
                continue;
            }
            let mut next = p.clone();
            next.active = false;
            next.version += 1;
            next.updated_at = now;
            batch.audit.push(audit::entry(
                actor,
                "person.deactivate",
                "person",
                &p.id.to_string(),
                Some(p),
                Some(&next),
            ));
            let labels = self.label_ids(p);
            batch.updated.push((next, p.version, labels));
            report.deactivated += 1;
        }
        if let Some((tx, seq)) = tx {
            for (p, _, _) in &batch.updated {
                // A deactivated person leaves every roster that has not ended yet.
                rosters::remove_person(
                    tx,
                    org.id.0,
                    p.id,
                    now.as_millisecond(),
                    now.as_millisecond(),
                )
                .await?;
            }
            let seq = *seq;
            write(tx, org, seq, prepare(org.id, seq, batch), &mut None, now).await?;
        }
        Ok(())
    }
}

/// A person with their derived rows: sort key, search tokens, unit and label ids.
fn derived(p: Person, labels: Vec<Uuid>) -> Links {
    let tokens = carebridge_domain::search::person_tokens_from(
        &p.given_name,
        &p.family_name,
        p.emails.iter().map(|e| e.value.as_str()),
        p.phones.iter().map(|e| e.value.as_str()),
    );
    Links {
        sort_key: sort_key(&p.given_name, &p.family_name),
        tokens,
        units: p.units.iter().map(|u| u.id).collect(),
        labels,
        person: p,
    }
}

/// A chunk ready for the writer: its rows built, only the steps that read the database left.
struct Prepared {
    labels: Vec<(Uuid, &'static str, String)>,
    rows: repo::ManyRows,
    roles: Vec<RoleAssignment>,
    audit: Vec<AuditEntry>,
}

/// Builds a chunk's rows (CPU only: done by the planner while the writer writes).
fn prepare(org: OrgId, seq: i64, batch: Batch) -> Prepared {
    let created: Vec<Links> = batch
        .created
        .into_iter()
        .map(|(p, l)| derived(p, l))
        .collect();
    let updated: Vec<(Links, i64)> = batch
        .updated
        .into_iter()
        .map(|(p, v, l)| (derived(p, l), v))
        .collect();
    Prepared {
        rows: repo::ManyRows::new(org, seq, created, updated),
        labels: batch.labels,
        roles: batch.roles,
        audit: batch.audit,
    }
}

/// Writes one chunk, marked changed at `seq` for the sync feed (one change number for the
/// whole import: its changes become visible together). `head` is the organisation's audit
/// chain head, kept by the writer between chunks (read when `None`); the chunk's events are
/// hashed on another thread while its people are written.
async fn write(
    tx: &mut Tx,
    org: &OrgRef,
    seq: i64,
    p: Prepared,
    head: &mut Option<audit::ChainHead>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let from = match head.take() {
        Some(h) => h,
        None => audit::head_for_append(tx, org.id).await?,
    };
    let chain = {
        let (org, from, entries) = (org.id, from.clone(), p.audit);
        tokio::task::spawn_blocking(move || audit::chain_rows(org, &from, now, entries))
    };
    let labels: Vec<(Uuid, &str, &str)> = p
        .labels
        .iter()
        .map(|(id, k, n)| (*id, *k, n.as_str()))
        .collect();
    repo::insert_labels(tx, org.id, &labels, now.as_millisecond()).await?;
    // For the sync feed: the updated people's state before (their units, groups or activity
    // may change).
    let ids = p.rows.updated_ids();
    if !ids.is_empty() {
        let priors = crate::repo::feed::priors_now(tx, org.id, ids).await?;
        crate::repo::feed::log_priors(tx, org.id, seq, &priors).await?;
    }
    if !repo::write_many(tx, org.id, p.rows).await? {
        return Err(ServiceError::Conflict {
            code: "changed_during_import",
            detail: "people changed while the import ran; run it again".into(),
        });
    }
    if !p.roles.is_empty() {
        // A bulk transaction on SQLite checks no foreign keys (`Db::begin_bulk`): the people
        // and units the roles name are checked here (and locked on PostgreSQL).
        use std::collections::BTreeSet;
        let people: BTreeSet<Uuid> = p.roles.iter().map(|r| r.person_id).collect();
        let units: BTreeSet<Uuid> = p.roles.iter().filter_map(|r| r.unit_id).collect();
        for (table, ids) in [("people", people), ("units", units)] {
            let ids: Vec<Uuid> = ids.into_iter().collect();
            carebridge_store::bulk::lock_parents(tx, table, org.id.0, &ids).await?;
        }
    }
    for r in &p.roles {
        roles_repo::insert(tx, org.id, r).await?;
    }
    let (rows, to) = match chain.await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => return Err(writer_gone()),
    };
    audit::append_rows(tx, org.id, &from, rows, &to).await?;
    *head = Some(to);
    Ok(())
}

/// What the planner asks of the writer task.
enum Job {
    /// One chunk's rows.
    Write(Box<Prepared>),
    /// A unit a row names and that does not exist yet; the answer goes back at once.
    Unit(
        CreateUnit,
        tokio::sync::oneshot::Sender<Result<Unit, ServiceError>>,
    ),
}

/// The task that owns an applying import's transaction and runs its jobs in order, so that a
/// chunk is written while the next one is planned (on SQLite the statements run on the
/// connection's own thread; on PostgreSQL in the server process).
struct Writer {
    /// The import's change number (see [`write`]).
    seq: i64,
    jobs: tokio::sync::mpsc::Sender<Job>,
    task: tokio::task::JoinHandle<Result<Tx, ServiceError>>,
}

/// What a planner's request gets when the writer has stopped (it failed; [`Writer::error_or`]
/// then has its error).
fn writer_gone() -> ServiceError {
    ServiceError::Store(carebridge_store::StoreError::Corrupt(
        "the import's writer stopped".into(),
    ))
}

impl Writer {
    async fn start(
        mut tx: Tx,
        actor: Actor,
        org: OrgRef,
        now: Timestamp,
    ) -> Result<Writer, ServiceError> {
        let seq = crate::repo::feed::next_seq(&mut tx, org.id).await?;
        // One chunk queued while one is written: memory stays bounded.
        let (jobs, mut recv) = tokio::sync::mpsc::channel::<Job>(1);
        let task = tokio::spawn(async move {
            let mut head = None;
            while let Some(job) = recv.recv().await {
                match job {
                    Job::Write(p) => write(&mut tx, &org, seq, *p, &mut head, now).await?,
                    Job::Unit(input, reply) => {
                        // Creating a unit appends to the audit chain itself.
                        head = None;
                        match crate::service::units::create_in(&mut tx, &actor, &org, &input, now)
                            .await
                        {
                            // Invalid input is the row's problem.
                            Ok(u) => drop(reply.send(Ok(u))),
                            Err(ServiceError::Invalid(v)) => {
                                drop(reply.send(Err(ServiceError::Invalid(v))))
                            }
                            // Anything else ends the import with this error.
                            Err(e) => {
                                drop(reply.send(Err(writer_gone())));
                                return Err(e);
                            }
                        }
                    }
                }
            }
            Ok(tx)
        });
        Ok(Writer { seq, jobs, task })
    }

    /// Queues a chunk (waits while the previous one is still queued).
    async fn write(&self, p: Prepared) -> Result<(), ServiceError> {
        self.jobs
            .send(Job::Write(Box::new(p)))
            .await
            .map_err(|_| writer_gone())
    }

    /// Creates a unit after the chunks queued so far.
    async fn create_unit(&self, input: CreateUnit) -> Result<Unit, ServiceError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Unit(input, reply))
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Waits for the queued jobs and takes the transaction back, with the import's change
    /// number.
    async fn finish(self) -> Result<(Tx, i64), ServiceError> {
        drop(self.jobs);
        match self.task.await {
            Ok(r) => r.map(|tx| (tx, self.seq)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(writer_gone()),
        }
    }

    /// The planner failed with `e`: the writer's own error if it failed (the planner's is
    /// then only its echo, [`writer_gone`]), else `e`. The transaction is dropped, i.e. rolled
    /// back.
    async fn error_or(self, e: ServiceError) -> ServiceError {
        match self.finish().await {
            Err(first) => first,
            Ok(_) => e,
        }
    }
}

/// Equal as far as an import can tell: contact data, kind, activity, unit set, label sets.
fn same(a: &Person, b: &Person) -> bool {
    let units = |p: &Person| {
        let mut v: Vec<Uuid> = p.units.iter().map(|u| u.id).collect();
        v.sort();
        v
    };
    let labels = |l: &[String]| {
        let mut v: Vec<String> = l.iter().map(|s| fold(s)).collect();
        v.sort();
        v.dedup();
        v
    };
    a.kind == b.kind
        && a.given_name == b.given_name
        && a.family_name == b.family_name
        && a.external_id == b.external_id
        && a.language == b.language
        && a.emails == b.emails
        && a.phones == b.phones
        && a.address == b.address
        && a.active == b.active
        && units(a) == units(b)
        && labels(&a.groups) == labels(&b.groups)
        && labels(&a.skills) == labels(&b.skills)
}
