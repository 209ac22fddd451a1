//! Operator commands that work on the database directly (no server needed): organisations,
//! administrators, API keys, audit verification, backup. They call the same service functions
//! as the API, with a `system:cli` actor, so validation and audit are identical.

use anyhow::{Context, bail};
use carebridge_domain::auth::{Actor, Permission, Source};
use carebridge_domain::{OrgId, Timestamp};
use carebridge_proto::directory::{Contact, CreatePerson, CreateRoleAssignment};
use carebridge_proto::identity::{CreateApiKey, CreatedApiKey};
use carebridge_proto::org::{CreateOrg, Org};
use carebridge_store::Db;
use carebridge_store::orgs::OrgRef;
use carebridge_web::ServiceError;

fn cli() -> Actor {
    Actor::system("cli", Source::Cli)
}

/// Turns a service error into a readable message for the terminal.
pub fn explain(e: ServiceError) -> anyhow::Error {
    match e {
        ServiceError::Invalid(v) => anyhow::anyhow!("invalid input: {v}"),
        e => anyhow::anyhow!(e),
    }
}

pub async fn resolve(db: &Db, org: &str) -> anyhow::Result<OrgRef> {
    let mut c = db.read().await?;
    carebridge_store::orgs::resolve(&mut c, org)
        .await?
        .with_context(|| format!("no organisation '{org}'"))
}

pub async fn org_create(db: &Db, input: CreateOrg, now: Timestamp) -> anyhow::Result<Org> {
    let d = carebridge_backend::service::draft(&input).map_err(|v| explain(v.into()))?;
    let mut tx = db.begin().await?;
    let o = carebridge_backend::service::create_in(&mut tx, &cli(), d, now)
        .await
        .map_err(explain)?;
    tx.commit().await?;
    Ok(o)
}

/// Creates an administrator: person + account (password) + `org_admin` role.
pub async fn admin_create(
    db: &Db,
    org: &str,
    given: &str,
    family: &str,
    email: &str,
    password: String,
    now: Timestamp,
) -> anyhow::Result<uuid::Uuid> {
    let o = resolve(db, org).await?;
    carebridge_identity::accounts::check_password("/password", &password)
        .map_err(|v| explain(v.into()))?;
    let hash = carebridge_identity::accounts::hash_password(password)
        .await
        .map_err(explain)?;
    let actor = cli();
    let mut tx = db.begin().await?;
    let p = carebridge_directory::service::people::create_in(
        &mut tx,
        &actor,
        &o,
        &CreatePerson {
            given_name: given.into(),
            family_name: family.into(),
            emails: vec![Contact {
                value: email.into(),
                kind: "work".into(),
            }],
            ..Default::default()
        },
        now,
    )
    .await
    .map_err(explain)?;
    let login = p
        .emails
        .first()
        .map(|e| e.value.clone())
        .unwrap_or_default();
    let account = carebridge_identity::accounts::create_in(&mut tx, &login, Some(&hash), now)
        .await
        .map_err(explain)?;
    carebridge_directory::repo::people::set_account(&mut tx, o.id, p.id, account.0).await?;
    carebridge_directory::service::roles::create_in(
        &mut tx,
        &actor,
        &o,
        &CreateRoleAssignment {
            person_id: p.id,
            role: "org_admin".into(),
            unit_id: None,
        },
        now,
    )
    .await
    .map_err(explain)?;
    tx.commit().await?;
    Ok(p.id)
}

/// Creates an API key for an organisation, or a platform key with `org = None`.
pub async fn apikey_create(
    db: &Db,
    org: Option<&str>,
    name: &str,
    permissions: Vec<String>,
    now: Timestamp,
) -> anyhow::Result<CreatedApiKey> {
    let org_id: Option<OrgId> = match org {
        Some(o) => Some(resolve(db, o).await?.id),
        None => None,
    };
    let permissions = if permissions.is_empty() {
        match org_id {
            Some(_) => Permission::org_admin()
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            None => vec![Permission::Platform.as_str().to_string()],
        }
    } else {
        permissions
    };
    let mut tx = db.begin().await?;
    let k = carebridge_identity::apikeys::create_in(
        &mut tx,
        &cli(),
        org_id,
        &CreateApiKey {
            name: name.into(),
            permissions,
            expires_at: None,
            person_id: None,
        },
        now,
    )
    .await
    .map_err(explain)?;
    tx.commit().await?;
    Ok(k)
}

pub async fn apikey_revoke(
    db: &Db,
    org: &str,
    id: uuid::Uuid,
    now: Timestamp,
) -> anyhow::Result<()> {
    let o = resolve(db, org).await?;
    carebridge_identity::apikeys::revoke(db, &cli(), &o, id, now)
        .await
        .map_err(explain)?;
    Ok(())
}

/// Verifies the audit chain of one organisation or of all; returns whether all are intact.
pub async fn audit_verify(db: &Db, org: Option<&str>) -> anyhow::Result<bool> {
    let orgs: Vec<(OrgId, String)> = match org {
        Some(o) => {
            let r = resolve(db, o).await?;
            vec![(r.id, r.slug)]
        }
        None => {
            let mut c = db.read().await?;
            let ids = carebridge_store::audit::orgs(&mut c).await?;
            ids.into_iter().map(|id| (id, id.to_string())).collect()
        }
    };
    let mut all_ok = true;
    for (id, label) in orgs {
        let v = carebridge_backend::service::verify_chain(db, id)
            .await
            .map_err(explain)?;
        if v.ok {
            println!("{label}: ok, {} events", v.events_checked);
        } else {
            all_ok = false;
            println!("{label}: TAMPERED: {}", v.error.unwrap_or_default());
        }
    }
    Ok(all_ok)
}

/// Consistent copy of the embedded database while the server runs.
pub async fn backup(db: &Db, dest: &std::path::Path) -> anyhow::Result<()> {
    if dest.exists() {
        bail!("{} exists already; choose a new file", dest.display());
    }
    db.backup_sqlite(dest).await.context("backup")?;
    Ok(())
}

/// `carebridge duties list`: duties overlapping `[from, to)` (default: the coming week).
pub async fn duties_list(
    db: &Db,
    org: &str,
    from: Option<String>,
    to: Option<String>,
    now: Timestamp,
) -> anyhow::Result<Vec<carebridge_proto::duties::Duty>> {
    let o = resolve(db, org).await?;
    let key = carebridge_web::CursorKey::new(carebridge_identity::random_bytes::<32>().to_vec());
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let q = carebridge_proto::duties::DutiesQuery {
            from: from.clone(),
            to: to.clone(),
            cursor,
            ..Default::default()
        };
        let page = carebridge_duties::service::duties::list(db, &cli(), &o, &key, &q, 200, now)
            .await
            .map_err(explain)?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// `carebridge duties create`.
pub async fn duty_create(
    db: &Db,
    org: &str,
    input: carebridge_proto::duties::CreateDuty,
    now: Timestamp,
) -> anyhow::Result<carebridge_proto::duties::Duty> {
    let o = resolve(db, org).await?;
    let mut tx = db.begin().await?;
    let d = carebridge_duties::service::duties::create_in(&mut tx, &cli(), &o, &input, now)
        .await
        .map_err(explain)?;
    tx.commit().await?;
    Ok(d)
}

/// `carebridge duties assign`: the dispatcher's "save assignment".
pub async fn duty_assign(
    db: &Db,
    org: &str,
    duty: uuid::Uuid,
    input: carebridge_proto::duties::CreateAssignment,
    now: Timestamp,
) -> anyhow::Result<carebridge_proto::duties::Assignment> {
    let o = resolve(db, org).await?;
    let mut tx = db.begin().await?;
    let a =
        carebridge_duties::service::assignments::assign_in(&mut tx, &cli(), &o, duty, &input, now)
            .await
            .map_err(explain)?;
    tx.commit().await?;
    Ok(a)
}

/// `carebridge client create`.
pub async fn client_create(
    db: &Db,
    org: &str,
    input: carebridge_proto::identity::CreateOAuthClient,
    now: Timestamp,
) -> anyhow::Result<carebridge_proto::identity::CreatedOAuthClient> {
    let o = resolve(db, org).await?;
    let mut tx = db.begin().await?;
    let c = carebridge_identity::clients::create_in(&mut tx, &cli(), o.id, &input, now)
        .await
        .map_err(explain)?;
    tx.commit().await?;
    Ok(c)
}

/// The app settings of an organisation (what discovery publishes).
pub async fn app_settings_get(
    db: &Db,
    org: &str,
) -> anyhow::Result<carebridge_proto::org::AppSettings> {
    let o = resolve(db, org).await?;
    let mut c = db.read().await?;
    let j: String = carebridge_store::run!(&mut c, c => carebridge_store::sqlx::query_scalar("SELECT settings FROM organisations WHERE id = $1")
        .bind(o.id.0).fetch_one(c).await)?;
    Ok(serde_json::from_str(&j).unwrap_or_default())
}

/// Replaces the app settings from a JSON document (validated like the API, audited as the CLI).
pub async fn app_settings_set(
    db: &Db,
    org: &str,
    json: &str,
    now: Timestamp,
) -> anyhow::Result<carebridge_proto::org::AppSettings> {
    let o = resolve(db, org).await?;
    let input: carebridge_proto::org::AppSettings = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("the settings file is not valid: {e}"))?;
    let checked = carebridge_backend::discovery::check(input).map_err(|v| explain(v.into()))?;
    carebridge_backend::discovery::save(db, &cli(), &o, checked, now)
        .await
        .map_err(explain)
}

/// `carebridge portal import`: a CSV file of the ERP feed, checked whole, then upserted in one
/// transaction. The error lists every bad line (parse errors) or item (rule violations; item
/// `/N` is on line N+2).
pub async fn portal_import(
    db: &Db,
    org: uuid::Uuid,
    kind: &str,
    bytes: &[u8],
    now: Timestamp,
) -> anyhow::Result<carebridge_proto::portal::UpsertReport> {
    use carebridge_portal::import::{self, Kind, Rows};
    use carebridge_portal::service;
    let Some(k) = Kind::parse(kind) else {
        bail!("the kind must be clients, appointments or links");
    };
    let rows = import::parse(k, bytes).map_err(|e| anyhow::anyhow!("nothing imported:\n{e}"))?;
    let erp = carebridge_portal::auth::Erp {
        org,
        client_id: "cli".into(),
    };
    let r = match rows {
        Rows::Clients(x) => service::upsert_clients(db, &erp, x, now).await,
        Rows::Appointments(x) => service::upsert_appointments(db, &erp, x, now).await,
        Rows::Links(x) => service::upsert_links(db, &erp, x, now).await,
    };
    r.map_err(|e| match e {
        ServiceError::Invalid(v) => {
            let lines: Vec<String> =
                v.0.iter()
                    .map(|x| {
                        let mut parts = x.pointer.trim_start_matches('/').splitn(2, '/');
                        let item = parts.next().and_then(|n| n.parse::<u64>().ok());
                        let field = parts.next().unwrap_or("");
                        match item {
                            Some(n) => format!("line {}, column {field}: {}", n + 2, x.message),
                            None => format!("{}: {}", x.pointer, x.message),
                        }
                    })
                    .collect();
            anyhow::anyhow!("nothing imported:\n{}", lines.join("\n"))
        }
        e => anyhow::anyhow!(e),
    })
}

/// `carebridge import`: a people file through the same service as the upload endpoint, with a
/// progress bar on the terminal.
pub async fn import_people(
    db: &Db,
    org: &str,
    bytes: Vec<u8>,
    options: carebridge_proto::directory::ImportOptions,
    show_progress: bool,
    now: Timestamp,
) -> anyhow::Result<carebridge_proto::directory::ImportReport> {
    use carebridge_directory::service::import;
    let o = resolve(db, org).await?;
    let bar = if show_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(1000);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let progress = {
        let bar = bar.clone();
        move |f: f64| bar.set_position((f * 1000.0) as u64)
    };
    let req = import::Request {
        bytes,
        options,
        may_assign_roles: true,
    };
    let r = import::run(db, &cli(), &o, req, now, &progress)
        .await
        .map_err(explain);
    bar.finish_and_clear();
    r
}

/// The import report for a terminal.
pub fn describe_import(r: &carebridge_proto::directory::ImportReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verb = if r.dry_run {
        "dry run, nothing written"
    } else if r.applied {
        "applied"
    } else {
        "NOT applied (the file has errors; fix them or use --skip-bad-rows)"
    };
    let _ = writeln!(
        out,
        "{} rows: {} created, {} updated, {} unchanged, {} deactivated, {} bad; {} roles assigned — {verb}",
        r.rows, r.created, r.updated, r.unchanged, r.deactivated, r.bad_rows, r.roles_assigned
    );
    if !r.units_created.is_empty() {
        let _ = writeln!(out, "units created: {}", r.units_created.join(", "));
    }
    for e in &r.errors {
        let _ = if e.line == 0 {
            writeln!(out, "file: {}", e.reason)
        } else if e.column.is_empty() {
            writeln!(out, "line {}: {}", e.line, e.reason)
        } else {
            writeln!(
                out,
                "line {}, column {}, value {:?}: {}",
                e.line, e.column, e.value, e.reason
            )
        };
    }
    if r.errors_total > r.errors.len() as u64 {
        let _ = writeln!(out, "… and {} more", r.errors_total - r.errors.len() as u64);
    }
    out
}
