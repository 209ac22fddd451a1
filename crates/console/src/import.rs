//! Import: upload a CSV or XLSX file, see the dry-run report (the columns as the importer read
//! them, with a choice per column to correct the mapping; counts; every row error), then apply
//! it. The file is kept in this process's memory between the steps (30 minutes, at most
//! [`MAX_KEPT`] bytes for all uploads together; the oldest go first), so the report and the
//! apply read the same bytes. The work is the API's `POST …/people/import`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Multipart, State};
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::directory::ImportReport;
use carebridge_proto::problem::Problem;
use uuid::Uuid;

use crate::Console;
use crate::api::{Fail, with_query};
use crate::web::{Chrome, Ctx, Fields, html, see};

/// The largest file (as the API's import endpoint).
pub const MAX_FILE: usize = 64 * 1024 * 1024;
/// All kept uploads together.
const MAX_KEPT: usize = 256 * 1024 * 1024;
const KEEP_FOR: Duration = Duration::from_secs(30 * 60);

/// The fields a column can be read into (the API's `map` names).
const TARGETS: &[&str] = &[
    "ignore",
    "external_id",
    "given_name",
    "family_name",
    "kind",
    "language",
    "email",
    "mobile",
    "phone",
    "street",
    "postal_code",
    "locality",
    "country",
    "unit",
    "groups",
    "skills",
    "roles",
];

struct Kept {
    owner: Uuid,
    name: String,
    bytes: Vec<u8>,
    at: Instant,
}

/// Uploads between the dry run and the apply, by random id.
#[derive(Default)]
pub struct Uploads(Mutex<HashMap<String, Kept>>);

impl Uploads {
    fn keep(&self, owner: Uuid, name: String, bytes: Vec<u8>) -> Option<String> {
        let id = crate::session::random();
        let mut map = self.0.lock().ok()?;
        map.retain(|_, k| k.at.elapsed() < KEEP_FOR);
        while map.values().map(|k| k.bytes.len()).sum::<usize>() + bytes.len() > MAX_KEPT {
            let oldest = map
                .iter()
                .min_by_key(|(_, k)| k.at)
                .map(|(id, _)| id.clone())?;
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Kept {
                owner,
                name,
                bytes,
                at: Instant::now(),
            },
        );
        Some(id)
    }

    /// The file and its name, for its owner only.
    fn get(&self, id: &str, owner: Uuid) -> Option<(String, Vec<u8>)> {
        let map = self.0.lock().ok()?;
        map.get(id)
            .filter(|k| k.owner == owner && k.at.elapsed() < KEEP_FOR)
            .map(|k| (k.name.clone(), k.bytes.clone()))
    }

    fn forget(&self, id: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(id);
        }
    }
}

/// Files of more lines (or bytes) than this are applied in the background: the answer is a
/// page that refreshes itself until the report is there.
const BACKGROUND_LINES: usize = 5_000;
const BACKGROUND_BYTES: usize = 1024 * 1024;

fn long(bytes: &[u8]) -> bool {
    bytes.len() > BACKGROUND_BYTES
        || bytes.iter().filter(|b| **b == b'\n').count() > BACKGROUND_LINES
}

/// An apply running in this process: its owner, file, start, options and, once done, the
/// report (or why there is none).
struct Job {
    owner: Uuid,
    name: String,
    size: usize,
    started: Instant,
    o: Options,
    done: Option<Result<ImportReport, Vec<String>>>,
}

/// Background applies by random id (kept [`KEEP_FOR`] after they start, this process only).
#[derive(Default)]
pub struct Jobs(Mutex<HashMap<String, Job>>);

impl Jobs {
    fn start(&self, owner: Uuid, name: String, size: usize, o: Options) -> Option<String> {
        let id = crate::session::random();
        let mut map = self.0.lock().ok()?;
        map.retain(|_, j| j.started.elapsed() < KEEP_FOR || j.done.is_none());
        map.insert(
            id.clone(),
            Job {
                owner,
                name,
                size,
                started: Instant::now(),
                o,
                done: None,
            },
        );
        Some(id)
    }

    fn finish(&self, id: &str, r: Result<ImportReport, Vec<String>>) {
        if let Ok(mut map) = self.0.lock()
            && let Some(j) = map.get_mut(id)
        {
            j.done = Some(r);
        }
    }

    /// `(name, size, seconds running, options, result when done)`, for its owner only.
    #[allow(clippy::type_complexity)]
    fn view(
        &self,
        id: &str,
        owner: Uuid,
    ) -> Option<(
        String,
        usize,
        u64,
        Options,
        Option<Result<ImportReport, Vec<String>>>,
    )> {
        let map = self.0.lock().ok()?;
        map.get(id).filter(|j| j.owner == owner).map(|j| {
            (
                j.name.clone(),
                j.size,
                j.started.elapsed().as_secs(),
                j.o.clone(),
                j.done.clone(),
            )
        })
    }
}

#[derive(Template)]
#[template(path = "import_job.html")]
struct JobPage {
    c: Chrome,
    name: String,
    kib: usize,
    seconds: u64,
}

/// `GET /console/import/jobs/{id}`: a background apply — refreshing while it runs, then its
/// report.
pub async fn job(
    State(c): State<Console>,
    Extension(ctx): Extension<Ctx>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let Some((name, size, seconds, o, done)) = c.0.jobs.view(&id, ctx.s.me) else {
        return crate::web::message(ctx.chrome("import", ctx.t().import), 404, ctx.t().not_found);
    };
    match done {
        None => html(
            &JobPage {
                c: ctx.chrome("import", ctx.t().import),
                name,
                kib: size.div_ceil(1024),
                seconds,
            },
            200,
        ),
        Some(Ok(r)) => {
            let status = if r.applied { 200 } else { 422 };
            page(&ctx, o, None, name, Some(r), Vec::new(), status)
        }
        Some(Err(lines)) => page(&ctx, o, None, name, None, lines, 422),
    }
}

/// The import options as the forms carry them.
#[derive(Default, Clone)]
struct Options {
    match_by: String,
    create_units: bool,
    skip_bad_rows: bool,
    deactivate_missing: String,
    sheet: String,
    map: String,
}

impl Options {
    fn from(f: &Fields) -> Options {
        Options {
            match_by: f
                .get("match")
                .filter(|m| matches!(m.as_str(), "auto" | "external_id" | "email"))
                .unwrap_or_else(|| "auto".into()),
            create_units: f.get("create_units").is_some(),
            skip_bad_rows: f.get("skip_bad_rows").is_some(),
            deactivate_missing: f.get("deactivate_missing").unwrap_or_default(),
            sheet: f.get("sheet").unwrap_or_default(),
            map: f.get("map").unwrap_or_default(),
        }
    }

    fn query(&self, dry_run: bool) -> Vec<(&'static str, Option<String>)> {
        let flag = |b: bool| b.then(|| "true".to_string());
        vec![
            ("dry_run", flag(dry_run)),
            ("match", Some(self.match_by.clone())),
            ("create_units", flag(self.create_units)),
            ("skip_bad_rows", flag(self.skip_bad_rows)),
            ("deactivate_missing", Some(self.deactivate_missing.clone())),
            ("sheet", Some(self.sheet.clone())),
            ("map", Some(self.map.clone())),
        ]
    }
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    c: Chrome,
    o: Options,
    upload: Option<String>,
    file_name: String,
    report: Option<ImportReport>,
    targets: &'static [&'static str],
    errors: Vec<String>,
}

fn page(
    ctx: &Ctx,
    o: Options,
    upload: Option<String>,
    file_name: String,
    report: Option<ImportReport>,
    errors: Vec<String>,
    status: u16,
) -> Response {
    html(
        &ImportPage {
            c: ctx.chrome("import", ctx.t().import),
            o,
            upload,
            file_name,
            report,
            targets: TARGETS,
            errors,
        },
        status,
    )
}

/// `GET /console/import`.
pub async fn form(Extension(ctx): Extension<Ctx>) -> Response {
    let o = Options {
        match_by: "auto".into(),
        ..Default::default()
    };
    page(&ctx, o, None, String::new(), None, Vec::new(), 200)
}

/// Runs the API's import on `bytes`; the report, or the reason there is none.
async fn run(ctx: &Ctx, bytes: Vec<u8>, o: &Options, dry_run: bool) -> Result<ImportReport, Fail> {
    let q = o.query(dry_run);
    let pairs: Vec<(&str, Option<&str>)> = q.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    let path = with_query(&ctx.s.org_path("/people/import"), &pairs);
    let (status, _, body) = ctx
        .api
        .raw(Method::POST, &path, Some("text/csv"), bytes, None)
        .await?;
    if status.as_u16() == 401 {
        return Err(Fail::SignedOut);
    }
    // 422 with a report: the file has errors and nothing was applied.
    if let Ok(r) = serde_json::from_slice::<ImportReport>(&body)
        && (status.is_success() || status.as_u16() == 422)
    {
        return Ok(r);
    }
    Err(match serde_json::from_slice::<Problem>(&body) {
        Ok(p) => Fail::Problem(p),
        Err(_) => Fail::Broken(format!("import: status {status}")),
    })
}

fn problem_lines(f: &Fail) -> Vec<String> {
    let mut out = vec![f.message()];
    out.extend(
        f.fields()
            .iter()
            .map(|e| format!("{}: {}", e.pointer, e.detail)),
    );
    out
}

/// `POST /console/import` (multipart: the file and the options): keeps the file and shows the
/// dry run.
pub async fn upload(
    State(c): State<Console>,
    Extension(ctx): Extension<Ctx>,
    mut form: Multipart,
) -> Response {
    let t = ctx.t();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut file: Option<(String, Vec<u8>)> = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                if name == "file" {
                    let fname = field.file_name().unwrap_or("upload").to_string();
                    match field.bytes().await {
                        Ok(b) => file = Some((fname, b.to_vec())),
                        Err(_) => {
                            return page(
                                &ctx,
                                Options::default(),
                                None,
                                String::new(),
                                None,
                                vec![t.import_too_large.into()],
                                413,
                            );
                        }
                    }
                } else if let Ok(v) = field.text().await {
                    pairs.push((name, v));
                }
            }
            Ok(None) => break,
            Err(_) => {
                return page(
                    &ctx,
                    Options::default(),
                    None,
                    String::new(),
                    None,
                    vec![t.import_too_large.into()],
                    400,
                );
            }
        }
    }
    let body = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let o = Options::from(&Fields::parse(body.as_bytes()));
    let Some((name, bytes)) = file.filter(|(_, b)| !b.is_empty()) else {
        return page(
            &ctx,
            o,
            None,
            String::new(),
            None,
            vec![t.import_no_file.into()],
            422,
        );
    };
    let kept = c.0.uploads.keep(ctx.s.me, name.clone(), bytes.clone());
    match run(&ctx, bytes, &o, true).await {
        Ok(r) => page(&ctx, o, kept, name, Some(r), Vec::new(), 200),
        Err(f @ Fail::Problem(_)) => page(&ctx, o, None, name, None, problem_lines(&f), 422),
        Err(f) => ctx.fail(&f),
    }
}

/// `POST /console/import/run`: with the kept file, check again (with a corrected column
/// mapping) or apply.
pub async fn again(
    State(c): State<Console>,
    Extension(ctx): Extension<Ctx>,
    body: Bytes,
) -> Response {
    let t = ctx.t();
    let f = Fields::parse(&body);
    let mut o = Options::from(&f);
    // The per-column choices become the API's `Header=field;…` mapping.
    let headers = f.all("header");
    let chosen = f.all("target");
    if !headers.is_empty() && headers.len() == chosen.len() {
        o.map = headers
            .iter()
            .zip(&chosen)
            .filter(|(h, t)| !h.contains(['=', ';']) && TARGETS.contains(&t.as_str()))
            .map(|(h, t)| format!("{h}={t}"))
            .collect::<Vec<_>>()
            .join(";");
    }
    let id = f.get("upload").unwrap_or_default();
    let Some((name, bytes)) = c.0.uploads.get(&id, ctx.s.me) else {
        return page(
            &ctx,
            o,
            None,
            String::new(),
            None,
            vec![t.import_expired.into()],
            410,
        );
    };
    let apply = f.get("mode").as_deref() == Some("apply");
    if apply && long(&bytes) {
        let Some(job) = c.0.jobs.start(ctx.s.me, name, bytes.len(), o.clone()) else {
            return ctx.fail(&Fail::Broken("import jobs unavailable".into()));
        };
        let (c2, ctx2, job2) = (c.clone(), ctx.clone(), job.clone());
        tokio::spawn(async move {
            let r = run(&ctx2, bytes, &o, false).await;
            if matches!(&r, Ok(r) if r.applied) {
                c2.0.uploads.forget(&id);
            }
            c2.0.jobs.finish(&job2, r.map_err(|f| problem_lines(&f)));
        });
        return see(&format!("/console/import/jobs/{job}"));
    }
    match run(&ctx, bytes, &o, !apply).await {
        Ok(r) => {
            let upload = if r.applied {
                c.0.uploads.forget(&id);
                None
            } else {
                Some(id)
            };
            let status = if apply && !r.applied { 422 } else { 200 };
            page(&ctx, o, upload, name, Some(r), Vec::new(), status)
        }
        Err(e @ Fail::Problem(_)) => page(&ctx, o, Some(id), name, None, problem_lines(&e), 422),
        Err(e) => ctx.fail(&e),
    }
}
