//! Import: upload a CSV or XLSX file, see the dry-run report (the columns as the importer read
//! them, with a choice per column to correct the mapping; counts; every row error), then apply
//! it. Each step is an import job of the API (`POST …/import-jobs`): the file is kept by the
//! API for an hour, so a check and the apply read the same bytes on any node, and a long file
//! shows its progress on a page that refreshes itself (`/console/import/jobs/{id}`).

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Multipart;
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::directory::{ImportJob, ImportMatch, ImportOptions, ImportReport};
use carebridge_proto::problem::Problem;
use uuid::Uuid;

use crate::api::{Fail, with_query};
use crate::web::{Chrome, Ctx, Fields, html, see};

/// The largest file (as the API's import endpoint).
pub const MAX_FILE: usize = 64 * 1024 * 1024;

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

/// How long the console waits for a job before showing its progress page instead.
const WAIT: &str = "wait=2";

#[derive(Template)]
#[template(path = "import_job.html")]
struct JobPage {
    c: Chrome,
    name: String,
    kib: i64,
    seconds: i64,
    percent: u32,
}

/// `GET /console/import/jobs/{id}`: an import job — refreshing with its progress while it
/// runs, then its report with the forms to check again or apply.
pub async fn job(
    Extension(ctx): Extension<Ctx>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let t = ctx.t();
    let Ok(id) = Uuid::parse_str(&id) else {
        return crate::web::message(ctx.chrome("import", t.import), 404, t.not_found);
    };
    let j = match ctx
        .api
        .get::<ImportJob>(&ctx.s.org_path(&format!("/import-jobs/{id}")))
        .await
    {
        Ok(g) => g.value,
        Err(f) if f.status() == 404 => {
            return crate::web::message(ctx.chrome("import", t.import), 404, t.not_found);
        }
        Err(f) => return ctx.fail(&f),
    };
    show(&ctx, j)
}

/// A job as a page: its progress while it runs, else its report or why there is none.
fn show(ctx: &Ctx, j: ImportJob) -> Response {
    let t = ctx.t();
    let o = Options::of(&j.options);
    // The file can be run again while it is kept.
    let file = j.file_expires_at.map(|_| j.file_id.to_string());
    match j.state.as_str() {
        "running" => html(
            &JobPage {
                c: ctx.chrome("import", t.import),
                name: j.file_name,
                kib: (j.file_size + 1023) / 1024,
                seconds: ctx.now.duration_since(j.created_at).as_secs().max(0),
                // Whole percent, never 100 before the report is there.
                percent: ((j.progress * 100.0).floor().clamp(0.0, 99.0)) as u32,
            },
            200,
        ),
        "done" => match j.report {
            Some(r) => {
                let status = if r.dry_run || r.applied { 200 } else { 422 };
                let file = if r.applied { None } else { file };
                page(ctx, o, file, j.file_name, Some(r), Vec::new(), status)
            }
            None => ctx.fail(&Fail::Broken("import job without a report".into())),
        },
        "interrupted" => page(
            ctx,
            o,
            file,
            j.file_name,
            None,
            vec![t.import_interrupted.into()],
            409,
        ),
        _ => {
            let lines = match j.problem {
                Some(p) => problem_lines(&Fail::Problem(p)),
                None => vec![t.not_applied.to_string()],
            };
            page(ctx, o, file, j.file_name, None, lines, 422)
        }
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

    /// The options a job ran with.
    fn of(o: &ImportOptions) -> Options {
        Options {
            match_by: match o.match_by {
                ImportMatch::Auto => "auto",
                ImportMatch::ExternalId => "external_id",
                ImportMatch::Email => "email",
            }
            .into(),
            create_units: o.create_units,
            skip_bad_rows: o.skip_bad_rows,
            deactivate_missing: o.deactivate_missing.clone().unwrap_or_default(),
            sheet: o.sheet.clone().unwrap_or_default(),
            map: o.map.clone().unwrap_or_default(),
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

/// Starts an import job (over `upload`'s bytes, or the kept file `file`) and waits up to
/// [`WAIT`] for it: its report, or a redirect to the page that follows it.
async fn start(
    ctx: &Ctx,
    o: &Options,
    dry_run: bool,
    upload: Option<(&str, Vec<u8>)>,
    file: Option<&str>,
) -> Result<Response, Fail> {
    let mut q = o.query(dry_run);
    match (&upload, file) {
        (Some((name, _)), _) => q.push(("name", Some((*name).to_string()))),
        (None, f) => q.push(("file", f.map(str::to_string))),
    }
    let pairs: Vec<(&str, Option<&str>)> = q.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    let path = with_query(&ctx.s.org_path("/import-jobs"), &pairs);
    let body = upload.map(|(_, b)| b).unwrap_or_default();
    let (status, _, body) = ctx
        .api
        .raw_with(
            Method::POST,
            &path,
            Some("text/csv"),
            body,
            None,
            &[("prefer", WAIT)],
        )
        .await?;
    if status.as_u16() == 401 {
        return Err(Fail::SignedOut);
    }
    if status.is_success()
        && let Ok(j) = serde_json::from_slice::<ImportJob>(&body)
    {
        // Finished within the wait: the report at once; else the page that follows it.
        return Ok(if j.state == "running" {
            see(&format!("/console/import/jobs/{}", j.id))
        } else {
            show(ctx, j)
        });
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
pub async fn upload(Extension(ctx): Extension<Ctx>, mut form: Multipart) -> Response {
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
    match start(&ctx, &o, true, Some((&name, bytes)), None).await {
        Ok(r) => r,
        Err(f @ Fail::Problem(_)) => {
            let status = if f.status() == 409 { 409 } else { 422 };
            page(&ctx, o, None, name, None, problem_lines(&f), status)
        }
        Err(f) => ctx.fail(&f),
    }
}

/// `POST /console/import/run`: with the kept file, check again (with a corrected column
/// mapping) or apply.
pub async fn again(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
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
    let file = f.get("file").unwrap_or_default();
    let apply = f.get("mode").as_deref() == Some("apply");
    match start(&ctx, &o, !apply, None, Some(&file)).await {
        Ok(r) => r,
        Err(e @ Fail::Problem(_))
            if file.is_empty() || e.fields().iter().any(|v| v.code == "file_expired") =>
        {
            page(
                &ctx,
                o,
                None,
                String::new(),
                None,
                vec![t.import_expired.into()],
                410,
            )
        }
        Err(e @ Fail::Problem(_)) => {
            let status = if e.status() == 409 { 409 } else { 422 };
            page(
                &ctx,
                o,
                Some(file),
                String::new(),
                None,
                problem_lines(&e),
                status,
            )
        }
        Err(e) => ctx.fail(&e),
    }
}
