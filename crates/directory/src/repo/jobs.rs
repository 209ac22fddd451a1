//! SQL of import jobs: uploaded files (`import_files`, kept an hour) and the runs over them
//! (`import_jobs`, kept a week). Times are Unix milliseconds.

use carebridge_domain::OrgId;
use carebridge_store::{Exec, StoreError, exec, run, sqlx};
use uuid::Uuid;

/// An uploaded file without its bytes.
#[derive(Clone, Debug)]
pub struct File {
    pub id: Uuid,
    pub owner: String,
    pub name: String,
    pub size: i64,
    pub expires_at: i64,
}

/// A job row as stored.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: Uuid,
    pub file_id: Uuid,
    pub file_name: String,
    pub file_size: i64,
    pub owner: String,
    pub options: String,
    pub state: String,
    pub progress: f64,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub report: Option<String>,
    pub problem: Option<String>,
    /// When the job's file expires (`None`: it is gone).
    pub file_expires_at: Option<i64>,
}

type JobRow = (
    Uuid,
    Uuid,
    String,
    i64,
    String,
    String,
    String,
    f64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

const JOB_COLS: &str = "j.id, j.file_id, j.file_name, j.file_size, j.owner, j.options, j.state, \
     j.progress, j.created_at, j.updated_at, j.finished_at, j.report, j.problem, f.expires_at";

fn job(r: JobRow) -> Job {
    Job {
        id: r.0,
        file_id: r.1,
        file_name: r.2,
        file_size: r.3,
        owner: r.4,
        options: r.5,
        state: r.6,
        progress: r.7,
        created_at: r.8,
        updated_at: r.9,
        finished_at: r.10,
        report: r.11,
        problem: r.12,
        file_expires_at: r.13,
    }
}

/// Deletes expired files and jobs older than `jobs_before`, interrupted ones included (every
/// organisation's).
pub async fn prune(x: &mut impl Exec, now: i64, jobs_before: i64) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query("DELETE FROM import_files WHERE expires_at <= $1")
        .bind(now).execute(c).await)?;
    // A row still `running` that long ago was interrupted (its process stopped).
    exec!(x, c => sqlx::query("DELETE FROM import_jobs WHERE created_at < $1 AND updated_at < $1")
        .bind(jobs_before).execute(c).await)?;
    Ok(())
}

pub async fn insert_file(
    x: &mut impl Exec,
    org: OrgId,
    f: &File,
    bytes: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query(
        "INSERT INTO import_files (id, org_id, owner, name, size, bytes, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(f.id).bind(org.0).bind(&f.owner).bind(&f.name).bind(f.size).bind(bytes)
        .bind(now).bind(f.expires_at).execute(c).await)?;
    Ok(())
}

/// A file that has not expired, without its bytes.
pub async fn file(
    x: &mut impl Exec,
    org: OrgId,
    id: Uuid,
    now: i64,
) -> Result<Option<File>, StoreError> {
    let r: Option<(Uuid, String, String, i64, i64)> = run!(x, c => sqlx::query_as(
        "SELECT id, owner, name, size, expires_at FROM import_files \
         WHERE org_id = $1 AND id = $2 AND expires_at > $3")
        .bind(org.0).bind(id).bind(now).fetch_optional(c).await)?;
    Ok(r.map(|(id, owner, name, size, expires_at)| File {
        id,
        owner,
        name,
        size,
        expires_at,
    }))
}

/// A file's bytes (`None` once it is gone).
pub async fn file_bytes(
    x: &mut impl Exec,
    org: OrgId,
    id: Uuid,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar(
        "SELECT bytes FROM import_files WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).fetch_optional(c).await)?)
}

pub async fn insert_job(x: &mut impl Exec, org: OrgId, j: &Job) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query(
        "INSERT INTO import_jobs (id, org_id, file_id, file_name, file_size, owner, options, state, \
         progress, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
        .bind(j.id).bind(org.0).bind(j.file_id).bind(&j.file_name).bind(j.file_size)
        .bind(&j.owner).bind(&j.options).bind(&j.state).bind(j.progress).bind(j.created_at)
        .bind(j.updated_at).execute(c).await)?;
    Ok(())
}

pub async fn get(x: &mut impl Exec, org: OrgId, id: Uuid) -> Result<Option<Job>, StoreError> {
    let sql = format!(
        "SELECT {JOB_COLS} FROM import_jobs j LEFT JOIN import_files f ON f.id = j.file_id \
         WHERE j.org_id = $1 AND j.id = $2"
    );
    let r: Option<JobRow> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(id).fetch_optional(c).await)?;
    Ok(r.map(job))
}

/// Jobs newest first, before `before` (`(created_at, id)`).
pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    before: (i64, Uuid),
    limit: i64,
) -> Result<Vec<Job>, StoreError> {
    let sql = format!(
        "SELECT {JOB_COLS} FROM import_jobs j LEFT JOIN import_files f ON f.id = j.file_id \
         WHERE j.org_id = $1 AND (j.created_at < $2 OR (j.created_at = $2 AND j.id < $3)) \
         ORDER BY j.created_at DESC, j.id DESC LIMIT $4"
    );
    let rows: Vec<JobRow> = run!(x, c => sqlx::query_as(&sql).bind(org.0)
        .bind(before.0).bind(before.1).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(job).collect())
}

/// Whether a job of `org` is running with a heartbeat after `since`.
pub async fn running_since(x: &mut impl Exec, org: OrgId, since: i64) -> Result<bool, StoreError> {
    let n: i64 = run!(x, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM import_jobs WHERE org_id = $1 AND state = 'running' AND updated_at > $2")
        .bind(org.0).bind(since).fetch_one(c).await)?;
    Ok(n > 0)
}

/// The heartbeat of a running job.
pub async fn touch(
    x: &mut impl Exec,
    org: OrgId,
    id: Uuid,
    progress: f64,
    now: i64,
) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query(
        "UPDATE import_jobs SET progress = $3, updated_at = $4 WHERE org_id = $1 AND id = $2 AND state = 'running'")
        .bind(org.0).bind(id).bind(progress).bind(now).execute(c).await)?;
    Ok(())
}

/// Records how a job ended: `done` with a report or `failed` with a problem (JSON texts).
pub async fn finish(
    x: &mut impl Exec,
    org: OrgId,
    id: Uuid,
    state: &str,
    report: Option<&str>,
    problem: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query(
        "UPDATE import_jobs SET state = $3, progress = 1.0, report = $4, problem = $5, \
         updated_at = $6, finished_at = $6 WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).bind(state).bind(report).bind(problem).bind(now)
        .execute(c).await)?;
    Ok(())
}

/// Deletes a file (jobs over it keep their reports).
pub async fn delete_file(x: &mut impl Exec, org: OrgId, id: Uuid) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query("DELETE FROM import_files WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).execute(c).await)?;
    Ok(())
}

/// Deletes a job; its file too when no other job of the organisation uses it.
pub async fn delete(x: &mut impl Exec, org: OrgId, id: Uuid) -> Result<bool, StoreError> {
    let file: Option<Uuid> = run!(x, c => sqlx::query_scalar(
        "SELECT file_id FROM import_jobs WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).fetch_optional(c).await)?;
    let Some(file) = file else {
        return Ok(false);
    };
    exec!(x, c => sqlx::query("DELETE FROM import_jobs WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).execute(c).await)?;
    exec!(x, c => sqlx::query(
        "DELETE FROM import_files WHERE org_id = $1 AND id = $2 \
         AND NOT EXISTS (SELECT 1 FROM import_jobs WHERE org_id = $1 AND file_id = $2)")
        .bind(org.0).bind(file).execute(c).await)?;
    Ok(true)
}
