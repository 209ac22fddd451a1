//! Import jobs: a people import ([`crate::service::import::run`]) started by one request and
//! followed by others, so a large file neither holds a request open nor needs the same server
//! for the dry run, the apply and the progress.
//!
//! - The uploaded file is stored in the database (`import_files`) for [`FILE_KEPT_MS`]: later
//!   jobs can run over it (apply after a dry run, check again with another mapping) on any node.
//!   A file whose import was applied is deleted at once.
//! - The job runs in a task of the process that created it. Its progress is kept in this
//!   process ([`LIVE`]); on PostgreSQL it is also written to the row every
//!   [`HEARTBEAT`] (on SQLite the import's transaction holds the only writer, and an SQLite
//!   database has one server process, which answers from memory).
//! - A job whose process stopped shows as `interrupted`: nothing of it was written, an import
//!   being one transaction. Finished jobs are kept [`JOB_KEPT_MS`].
//! - One import per organisation at a time, across nodes (a running job with a fresh heartbeat
//!   refuses a second one with 409 `import_running`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use carebridge_domain::auth::Actor;
use carebridge_domain::time::{Clock, from_millis};
use carebridge_domain::{Timestamp, Violations, new_v7};
use carebridge_proto::Page;
use carebridge_proto::directory::{ImportJob, ImportOptions, ImportReport};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Backend, Db};
use carebridge_web::{ApiError, CursorKey, ServiceError};
use uuid::Uuid;

use crate::repo::jobs::{self as repo, File, Job};
use crate::service::import;

/// How long an uploaded file can be run again.
pub const FILE_KEPT_MS: i64 = 60 * 60 * 1000;
/// How long a finished job (and its report) is kept.
pub const JOB_KEPT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// How often a running job's row is touched on PostgreSQL.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A running job whose row was not touched for this long (PostgreSQL) stopped with its process.
const STALE_MS: i64 = 30_000;
/// Attempts at storing a finished job's state.
const FINISH_TRIES: u32 = 5;

/// The jobs running in this process: job id → (organisation, progress).
static LIVE: Mutex<Option<HashMap<Uuid, (Uuid, f64)>>> = Mutex::new(None);

/// Registers a job of `org` unless one of that organisation is running here already.
fn live_claim(id: Uuid, org: Uuid) -> bool {
    let mut m = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    let m = m.get_or_insert_with(HashMap::new);
    if m.values().any(|(o, _)| *o == org) {
        return false;
    }
    m.insert(id, (org, 0.0));
    true
}

fn live_progress(id: Uuid, p: f64) {
    let mut m = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = m.as_mut().and_then(|m| m.get_mut(&id)) {
        e.1 = p;
    }
}

fn live_end(id: Uuid) {
    let mut m = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(m) = m.as_mut() {
        m.remove(&id);
    }
}

fn live_get(id: Uuid) -> Option<f64> {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(&id).map(|e| e.1))
}

/// Ends a claim when a job could not be started.
struct Claim(Option<Uuid>);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            live_end(id);
        }
    }
}

/// What a new job runs over: a fresh upload, or the file of an earlier job.
pub enum Source {
    Upload { name: String, bytes: Vec<u8> },
    File(Uuid),
}

/// Everything a job needs to run by itself.
pub struct Runner {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
}

fn invalid(pointer: &str, code: &'static str, detail: &str) -> ServiceError {
    ServiceError::Invalid(Violations::single(pointer, code, detail))
}

fn corrupt(what: &str, e: &dyn std::fmt::Display) -> ServiceError {
    ServiceError::Store(carebridge_store::StoreError::Corrupt(format!(
        "import job {what}: {e}"
    )))
}

/// The progress of the jobs running in this process, taken before their rows are read (see
/// [`to_proto`]).
fn live_snapshot() -> HashMap<Uuid, f64> {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|m| m.iter().map(|(id, (_, p))| (*id, *p)).collect())
        .unwrap_or_default()
}

/// `j` as the API shows it; `live_before` is the job's entry in [`LIVE`] taken before `j` was
/// read. A row that says `running` is live if the job was in [`LIVE`] before the read or is
/// now: a job stores its final state before it leaves `LIVE`, and is claimed in `LIVE` before
/// its row is stored, so a row read just before the job finished (or just after it started)
/// is not taken for an interrupted one.
fn to_proto(
    j: Job,
    live_before: Option<f64>,
    backend: Backend,
    now: i64,
) -> Result<ImportJob, ServiceError> {
    let options: ImportOptions =
        serde_json::from_str(&j.options).map_err(|e| corrupt("options", &e))?;
    let report: Option<ImportReport> = j
        .report
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| corrupt("report", &e))?;
    let problem = j
        .problem
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| corrupt("problem", &e))?;
    let (state, progress) = if j.state == "running" {
        match live_get(j.id).or(live_before) {
            Some(p) => ("running".to_string(), p),
            None if backend == Backend::Postgres && now - j.updated_at < STALE_MS => {
                ("running".to_string(), j.progress)
            }
            None => ("interrupted".to_string(), j.progress),
        }
    } else {
        (j.state, j.progress)
    };
    Ok(ImportJob {
        id: j.id,
        file_id: j.file_id,
        file_name: j.file_name,
        file_size: j.file_size,
        file_expires_at: j.file_expires_at.filter(|t| *t > now).map(from_millis),
        options,
        state,
        progress,
        created_by: j.owner,
        created_at: from_millis(j.created_at),
        finished_at: j.finished_at.map(from_millis),
        report,
        problem,
    })
}

/// Starts a job; the returned handle finishes with it (await it to wait for the result).
#[allow(clippy::too_many_arguments)]
pub async fn start(
    runner: Runner,
    actor: Actor,
    created_by: String,
    org: &OrgRef,
    source: Source,
    mut options: ImportOptions,
    may_assign_roles: bool,
    now: Timestamp,
) -> Result<(ImportJob, tokio::task::JoinHandle<()>), ServiceError> {
    let now_ms = now.as_millisecond();
    let db = runner.db.clone();
    // Refused before anything is stored: one import per organisation, on any node.
    let job_id = new_v7(now);
    let busy = import::running(org.id.0)
        || !live_claim(job_id, org.id.0)
        || (db.backend() == Backend::Postgres && {
            let mut c = db.read().await?;
            repo::running_since(&mut c, org.id, now_ms - STALE_MS).await?
        });
    // Released when this function fails; handed to the job's task when it starts.
    let mut claim = Claim(Some(job_id));
    if busy {
        // Not our claim when another job holds the organisation.
        if live_get(job_id).is_none() {
            claim.0 = None;
        }
        return Err(ServiceError::Conflict {
            code: "import_running",
            detail: "an import into this organisation is running; try again when it has finished"
                .into(),
        });
    }
    let mut tx = db.begin().await?;
    let (file, bytes) = match source {
        Source::Upload { name, bytes } => {
            if bytes.is_empty() {
                return Err(invalid("/body", "empty_file", "the file is empty"));
            }
            let name = name.trim();
            let name = if name.is_empty() {
                "upload".to_string()
            } else {
                name.chars().take(200).collect()
            };
            let f = File {
                id: new_v7(now),
                owner: created_by.clone(),
                name,
                size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                expires_at: now_ms + FILE_KEPT_MS,
            };
            repo::insert_file(&mut tx, org.id, &f, &bytes, now_ms).await?;
            (f, Some(bytes))
        }
        Source::File(id) => {
            let f = repo::file(&mut tx, org.id, id, now_ms).await?.ok_or_else(|| {
                invalid(
                    "/query/file",
                    "file_expired",
                    "no such uploaded file: it expired (files are kept an hour) or never existed; upload it again",
                )
            })?;
            (f, None)
        }
    };
    options.file = None;
    options.name = None;
    let j = Job {
        id: job_id,
        file_id: file.id,
        file_name: file.name.clone(),
        file_size: file.size,
        owner: created_by,
        options: serde_json::to_string(&options).map_err(|e| corrupt("options", &e))?,
        state: "running".into(),
        progress: 0.0,
        created_at: now_ms,
        updated_at: now_ms,
        finished_at: None,
        report: None,
        problem: None,
        file_expires_at: Some(file.expires_at),
    };
    repo::insert_job(&mut tx, org.id, &j).await?;
    tx.commit().await?;
    let out = to_proto(j.clone(), None, db.backend(), now_ms)?;
    let org = org.clone();
    // The task ends the claim.
    claim.0 = None;
    let handle = tokio::spawn(run(runner, actor, org, j, bytes, options, may_assign_roles));
    Ok((out, handle))
}

/// The job's task: the import, the heartbeat on PostgreSQL, and the row's final state.
async fn run(
    runner: Runner,
    actor: Actor,
    org: OrgRef,
    j: Job,
    bytes: Option<Vec<u8>>,
    options: ImportOptions,
    may_assign_roles: bool,
) {
    let Runner { db, clock } = runner;
    let id = j.id;
    // Whatever happens to this task (a panic included), the heartbeat stops and the claim
    // ends: the organisation can import again, and the row reads as interrupted.
    let mut running = Running { id, beat: None };
    running.beat = (db.backend() == Backend::Postgres).then(|| {
        let (db, clock, org_id) = (db.clone(), clock.clone(), org.id);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                let p = live_get(id).unwrap_or(0.0);
                let now = clock.now().as_millisecond();
                if let Ok(mut c) = db.write().await
                    && let Err(e) = repo::touch(&mut c, org_id, id, p, now).await
                {
                    tracing::warn!(job = %id, error = %e, "import job heartbeat failed");
                }
            }
        })
    });
    // The import runs in a task of its own, so that a panic in it (a bug) ends the job as
    // failed with a problem, not as a row left running that reads as interrupted.
    let work = {
        let (db, clock, org, file_id) = (db.clone(), clock.clone(), org.clone(), j.file_id);
        tokio::spawn(async move {
            let bytes = match bytes {
                Some(b) => b,
                None => {
                    let mut c = db.read().await?;
                    repo::file_bytes(&mut c, org.id, file_id)
                        .await?
                        .ok_or_else(|| {
                            invalid(
                                "/query/file",
                                "file_expired",
                                "the uploaded file expired before the import could read it",
                            )
                        })?
                }
            };
            let req = import::Request {
                bytes,
                options,
                may_assign_roles,
            };
            let progress = move |p: f64| live_progress(id, p.clamp(0.0, 1.0));
            import::run(&db, &actor, &org, req, clock.now(), &progress).await
        })
    };
    let result = match work.await {
        Ok(r) => r,
        Err(e) => Err(corrupt("run", &e)),
    };
    if let Some(b) = running.beat.take() {
        b.abort();
    }
    // An applied file is deleted at once: its people are in the directory now, and a copy of
    // their data should not wait an hour.
    let applied = matches!(&result, Ok(r) if r.applied);
    let (state, report, problem) = match result {
        Ok(r) => ("done", serde_json::to_string(&r).ok(), None),
        Err(e) => {
            let e = ApiError::from(e);
            let p = e.problem();
            if p.status >= 500 {
                tracing::error!(job = %id, code = %p.code, error = ?e, "import job failed");
            }
            ("failed", None, serde_json::to_string(&p).ok())
        }
    };
    // The final state is retried a few times: a row left `running` would read as interrupted
    // although the import finished.
    for attempt in 1..=FINISH_TRIES {
        let now = clock.now().as_millisecond();
        let written = async {
            let mut tx = db.begin().await?;
            repo::finish(
                &mut tx,
                org.id,
                id,
                state,
                report.as_deref(),
                problem.as_deref(),
                now,
            )
            .await?;
            if applied {
                repo::delete_file(&mut tx, org.id, j.file_id).await?;
            }
            tx.commit().await
        }
        .await;
        match written {
            Ok(()) => break,
            Err(e) if attempt < FINISH_TRIES => {
                tracing::warn!(job = %id, attempt, error = %e, "import job: storing the result failed; trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(e) => {
                tracing::error!(job = %id, error = %e, "import job: the result could not be stored");
            }
        }
    }
    drop(running);
}

/// A job's task while it runs: stops the heartbeat and ends the claim when dropped.
struct Running {
    id: Uuid,
    beat: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(b) = self.beat.take() {
            b.abort();
        }
        live_end(self.id);
    }
}

/// Housekeeping: deletes expired files and jobs finished over a week ago.
pub async fn prune(db: &Db, now: Timestamp) -> Result<(), ServiceError> {
    let now = now.as_millisecond();
    let mut tx = db.begin().await?;
    repo::prune(&mut tx, now, now - JOB_KEPT_MS).await?;
    tx.commit().await?;
    Ok(())
}

/// One job.
pub async fn get(
    db: &Db,
    org: &OrgRef,
    id: Uuid,
    now: Timestamp,
) -> Result<ImportJob, ServiceError> {
    let live = live_get(id);
    let mut c = db.read().await?;
    let j = repo::get(&mut c, org.id, id)
        .await?
        .ok_or(ServiceError::NotFound { what: "import job" })?;
    to_proto(j, live, db.backend(), now.as_millisecond())
}

/// Jobs, newest first.
pub async fn list(
    db: &Db,
    org: &OrgRef,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
    now: Timestamp,
) -> Result<Page<ImportJob>, ServiceError> {
    let before: Option<(i64, Uuid)> = cursor.decode_opt("import-jobs", after)?;
    let live = live_snapshot();
    let mut c = db.read().await?;
    let rows = repo::page(
        &mut c,
        org.id,
        before.unwrap_or((i64::MAX, Uuid::max())),
        limit + 1,
    )
    .await?;
    let page = cursor.page("import-jobs", rows, limit, |j| (j.created_at, j.id));
    let now = now.as_millisecond();
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|j| {
                let l = live.get(&j.id).copied();
                to_proto(j, l, db.backend(), now)
            })
            .collect::<Result<_, _>>()?,
        next_cursor: page.next_cursor,
    })
}

/// Deletes a finished job (and its file when no other job uses it); a running one is 409.
pub async fn delete(db: &Db, org: &OrgRef, id: Uuid, now: Timestamp) -> Result<(), ServiceError> {
    if get(db, org, id, now).await?.state == "running" {
        return Err(ServiceError::Conflict {
            code: "import_running",
            detail: "the job is running; delete it when it has finished".into(),
        });
    }
    let mut tx = db.begin().await?;
    if !repo::delete(&mut tx, org.id, id).await? {
        return Err(ServiceError::NotFound { what: "import job" });
    }
    tx.commit().await?;
    Ok(())
}
