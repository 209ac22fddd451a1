//! `carebridge bench --scenario duties`: an organisation with 2,000 people in 10 units and
//! 5,000 duties a month (three months: one past, two ahead; 5 confirmed people each), seeded
//! straight into the database; then, against the real server over HTTP, one request at a time:
//! a member's "my duties", a unit dispatcher's week view, and "save assignment" on a duty that
//! already has 500 people (each save writes the assignment, the audit event and a roster event
//! carrying the full roster).

use std::time::Instant;

use anyhow::bail;
use carebridge_domain::auth::Actor;
use carebridge_domain::{Clock, SystemClock};
use carebridge_proto::identity::CreateApiKey;
use carebridge_proto::org::CreateOrg;
use carebridge_store::{Db, sqlx};
use serde_json::json;
use uuid::Uuid;

use crate::bench::{BenchArgs, percentiles, rss_kib, seed, spawn_server};
use crate::config::Config;

const SLUG: &str = "bench-duties";
const PEOPLE: usize = 2_000;
const UNITS: usize = 10;
const DUTIES_PER_MONTH: usize = 5_000;
const PER_DUTY: usize = 5;
const BIG_ROSTER: usize = 500;
const DAY_MS: i64 = 86_400_000;

/// Runs multi-row inserts of `rows` (each a list of values) in chunks.
async fn insert_rows(db: &Db, head: &str, rows: Vec<Vec<Value>>) -> anyhow::Result<()> {
    let width = rows.first().map_or(1, Vec::len);
    for chunk in rows.chunks(30_000 / width) {
        let values = (0..chunk.len())
            .map(|r| {
                let cols: Vec<String> = (0..width)
                    .map(|c| format!("${}", r * width + c + 1))
                    .collect();
                format!("({})", cols.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("{head} VALUES {values}");
        let mut tx = db.begin().await?;
        carebridge_store::run!(&mut tx, c => {
            let mut q = sqlx::query(&sql);
            for row in chunk {
                for v in row {
                    q = match v {
                        Value::Id(u) => q.bind(*u),
                        Value::Int(i) => q.bind(*i),
                        Value::Bool(b) => q.bind(*b),
                        Value::Text(t) => q.bind(t.clone()),
                        Value::Null => q.bind(None::<Uuid>),
                    };
                }
            }
            q.execute(c).await.map(|_| ())
        })?;
        tx.commit().await?;
    }
    Ok(())
}

#[derive(Clone)]
enum Value {
    Id(Uuid),
    Int(i64),
    Bool(bool),
    Text(String),
    Null,
}

struct Seeded {
    org: Uuid,
    people: Vec<Uuid>,
    big: Uuid,
}

async fn seed_duties(db: &Db, now_ms: i64) -> anyhow::Result<Seeded> {
    let now = SystemClock.now();
    let o = crate::commands::org_create(
        db,
        CreateOrg {
            slug: SLUG.into(),
            name: "Bench duties".into(),
            default_region: "CH".into(),
            default_language: "de".into(),
            contact_email: None,
        },
        now,
    )
    .await?;
    let org = o.id;
    let people = seed(db, org, PEOPLE, now_ms).await?;
    let units: Vec<Uuid> = (0..UNITS)
        .map(|_| carebridge_domain::ids::new_v7(now))
        .collect();
    insert_rows(
        db,
        "INSERT INTO units (id, org_id, parent_id, name, path, version, created_at, updated_at)",
        units
            .iter()
            .enumerate()
            .map(|(i, u)| {
                vec![
                    Value::Id(*u),
                    Value::Id(org),
                    Value::Null,
                    Value::Text(format!("Wache {i}")),
                    Value::Text(format!("/{u}/")),
                    Value::Int(1),
                    Value::Int(now_ms),
                    Value::Int(now_ms),
                ]
            })
            .collect(),
    )
    .await?;
    insert_rows(
        db,
        "INSERT INTO person_units (person_id, unit_id, org_id)",
        people
            .iter()
            .enumerate()
            .map(|(i, p)| vec![Value::Id(*p), Value::Id(units[i % UNITS]), Value::Id(org)])
            .collect(),
    )
    .await?;
    // Three months of duties: one past, two ahead.
    let n = DUTIES_PER_MONTH * 3;
    let start0 = now_ms - 30 * DAY_MS;
    let span = 90 * DAY_MS;
    let mut duties = Vec::with_capacity(n + 1);
    let mut positions = Vec::with_capacity(n + 1);
    let mut assignments = Vec::with_capacity(n * PER_DUTY + BIG_ROSTER);
    for i in 0..n {
        let id = carebridge_domain::ids::new_v7(now);
        let pos = carebridge_domain::ids::new_v7(now);
        let starts = start0 + (span / n as i64) * i as i64;
        let ends = starts + (4 + (i % 9) as i64) * 3_600_000;
        duties.push((id, units[i % UNITS], format!("Dienst {i}"), starts, ends));
        positions.push((pos, id, 10i64));
        for j in 0..PER_DUTY {
            let person = people[(i * 7 + j * 389) % PEOPLE];
            assignments.push((id, person, pos, starts));
        }
    }
    let big = carebridge_domain::ids::new_v7(now);
    let big_pos = carebridge_domain::ids::new_v7(now);
    let big_start = now_ms + DAY_MS;
    duties.push((
        big,
        units[0],
        "Grossanlass".into(),
        big_start,
        big_start + 12 * 3_600_000,
    ));
    positions.push((big_pos, big, PEOPLE as i64));
    for p in &people[..BIG_ROSTER] {
        assignments.push((big, *p, big_pos, big_start));
    }
    insert_rows(
        db,
        "INSERT INTO duties (id, org_id, unit_id, title, location, description, starts_at, ends_at, time_zone, state, chat, roster_version, version, created_at, updated_at)",
        duties
            .iter()
            .map(|(id, unit, title, s, e)| {
                vec![
                    Value::Id(*id), Value::Id(org), Value::Id(*unit), Value::Text(title.clone()),
                    Value::Text("Zürich".into()), Value::Null, Value::Int(*s), Value::Int(*e),
                    Value::Text("Europe/Zurich".into()), Value::Text("planned".into()),
                    Value::Bool(false), Value::Int(1), Value::Int(1), Value::Int(now_ms), Value::Int(now_ms),
                ]
            })
            .collect(),
    )
    .await?;
    insert_rows(
        db,
        "INSERT INTO duty_positions (id, duty_id, org_id, name, qualification_id, needed, ordinal)",
        positions
            .iter()
            .map(|(id, duty, needed)| {
                vec![
                    Value::Id(*id),
                    Value::Id(*duty),
                    Value::Id(org),
                    Value::Text("Helfer".into()),
                    Value::Null,
                    Value::Int(*needed),
                    Value::Int(0),
                ]
            })
            .collect(),
    )
    .await?;
    insert_rows(
        db,
        "INSERT INTO assignments (id, org_id, duty_id, person_id, position_id, role, status, qualification_override, note, starts_at, version, created_at, updated_at)",
        assignments
            .iter()
            .map(|(duty, person, pos, starts)| {
                vec![
                    Value::Id(carebridge_domain::ids::new_v7(now)), Value::Id(org), Value::Id(*duty), Value::Id(*person),
                    Value::Id(*pos), Value::Text("helper".into()), Value::Text("confirmed".into()), Value::Bool(false),
                    Value::Null, Value::Int(*starts), Value::Int(1), Value::Int(now_ms), Value::Int(now_ms),
                ]
            })
            .collect(),
    )
    .await?;
    insert_rows(
        db,
        "INSERT INTO duty_spans (org_id, max_ms)",
        vec![vec![Value::Id(org), Value::Int(12 * 3_600_000)]],
    )
    .await?;
    // The member and the dispatcher of unit 0.
    insert_rows(
        db,
        "INSERT INTO role_assignments (id, org_id, person_id, role, unit_id, created_at)",
        vec![
            vec![
                Value::Id(carebridge_domain::ids::new_v7(now)),
                Value::Id(org),
                Value::Id(people[0]),
                Value::Text("member".into()),
                Value::Id(units[0]),
                Value::Int(now_ms),
            ],
            vec![
                Value::Id(carebridge_domain::ids::new_v7(now)),
                Value::Id(org),
                Value::Id(people[1]),
                Value::Text("dispatcher".into()),
                Value::Id(units[0]),
                Value::Int(now_ms),
            ],
        ],
    )
    .await?;
    if let Some(pool) = db.pg_pool() {
        sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    }
    Ok(Seeded { org, people, big })
}

pub(crate) async fn personal_key(
    db: &Db,
    org: Uuid,
    person: Uuid,
    perms: &[&str],
) -> anyhow::Result<String> {
    let mut tx = db.begin().await?;
    let k = carebridge_identity::apikeys::create_in(
        &mut tx,
        &Actor::system("bench", carebridge_domain::auth::Source::Cli),
        Some(carebridge_domain::OrgId(org)),
        &CreateApiKey {
            name: "bench".into(),
            permissions: perms.iter().map(|p| p.to_string()).collect(),
            expires_at: None,
            person_id: Some(person),
        },
        SystemClock.now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.commit().await?;
    Ok(k.secret)
}

pub async fn run(args: BenchArgs, config: Config) -> anyhow::Result<()> {
    let db = crate::open_db(&config, None).await?;
    let now = SystemClock.now();
    if crate::commands::resolve(&db, SLUG).await.is_ok() {
        bail!(
            "organisation '{SLUG}' exists: the duties scenario needs a fresh database (it changes the big roster)"
        );
    }
    let t = Instant::now();
    let seeded = seed_duties(&db, now.as_millisecond()).await?;
    println!(
        "seeded {PEOPLE} people, {} duties, {} assignments in {:.1}s",
        DUTIES_PER_MONTH * 3 + 1,
        DUTIES_PER_MONTH * 3 * PER_DUTY + BIG_ROSTER,
        t.elapsed().as_secs_f64()
    );
    let member = personal_key(&db, seeded.org, seeded.people[0], &["duties:read"]).await?;
    let dispatcher = personal_key(
        &db,
        seeded.org,
        seeded.people[1],
        &["duties:read", "duties:write"],
    )
    .await?;
    let admin = crate::commands::apikey_create(
        &db,
        Some(SLUG),
        "bench",
        vec!["duties:read".into(), "duties:write".into()],
        now,
    )
    .await?
    .secret;
    db.close().await;

    let (mut child, base, pid, client) = spawn_server(&config).await?;
    println!("server RSS after start: {} KiB", rss_kib(pid).unwrap_or(0));
    let timed_get = |url: String, key: String| {
        let client = client.clone();
        async move {
            let t = Instant::now();
            let r = client.get(url).bearer_auth(key).send().await?;
            let ok = r.status().is_success();
            let body = r.bytes().await?;
            if !ok {
                bail!("request failed: {}", String::from_utf8_lossy(&body));
            }
            Ok::<_, anyhow::Error>((t.elapsed(), body.len()))
        }
    };
    for _ in 0..100 {
        timed_get(format!("{base}/api/v1/me/duties"), member.clone()).await?;
    }
    let mut mine = Vec::with_capacity(args.requests);
    let mut bytes = 0;
    for _ in 0..args.requests {
        let (d, n) = timed_get(format!("{base}/api/v1/me/duties?limit=50"), member.clone()).await?;
        mine.push(d);
        bytes = n;
    }
    println!(
        "my duties (upcoming, 50):        {} ({bytes} bytes)",
        percentiles(mine)
    );
    let mut week = Vec::with_capacity(args.requests);
    let mut count = 0usize;
    for k in 0..args.requests {
        let from = now + jiff::SignedDuration::from_hours(24 * (k as i64 % 56) - 24 * 28);
        let to = from + jiff::SignedDuration::from_hours(24 * 7);
        let (d, n) = timed_get(
            format!("{base}/api/v1/orgs/{SLUG}/duties?from={from}&to={to}&limit=200"),
            dispatcher.clone(),
        )
        .await?;
        week.push(d);
        count = n;
    }
    println!(
        "dispatcher week view (1 unit):   {} ({count} bytes)",
        percentiles(week)
    );
    let mut week_all = Vec::with_capacity(args.requests);
    for k in 0..args.requests {
        let from = now + jiff::SignedDuration::from_hours(24 * (k as i64 % 56) - 24 * 28);
        let to = from + jiff::SignedDuration::from_hours(24 * 7);
        week_all.push(
            timed_get(
                format!("{base}/api/v1/orgs/{SLUG}/duties?from={from}&to={to}&limit=100"),
                admin.clone(),
            )
            .await?
            .0,
        );
    }
    println!("org-wide week view, page of 100: {}", percentiles(week_all));
    // Each timed save puts one more person on the 500-person roster; the (untimed) removal
    // afterwards keeps the roster at 500 for the next save.
    let mut save = Vec::with_capacity(args.requests);
    let pool = &seeded.people[BIG_ROSTER..PEOPLE - 2];
    for k in 0..args.requests {
        let p = pool[k % pool.len()];
        let t = Instant::now();
        let r = client
            .post(format!(
                "{base}/api/v1/orgs/{SLUG}/duties/{}/assignments",
                seeded.big
            ))
            .bearer_auth(&dispatcher)
            .json(&json!({"person_id": p}))
            .send()
            .await?;
        let st = r.status();
        let body = r.text().await?;
        if st.as_u16() != 201 {
            bail!("save assignment failed: {st} {body}");
        }
        save.push(t.elapsed());
        let a: serde_json::Value = serde_json::from_str(&body)?;
        let id = a["id"].as_str().unwrap_or_default();
        let r = client
            .delete(format!(
                "{base}/api/v1/orgs/{SLUG}/duties/{}/assignments/{id}",
                seeded.big
            ))
            .bearer_auth(&dispatcher)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("removing the assignment failed: {}", r.status());
        }
    }
    println!("save assignment, 500 roster:     {}", percentiles(save));
    println!(
        "server RSS after the run: {} KiB",
        rss_kib(pid).unwrap_or(0)
    );
    let _ = child.kill().await;
    Ok(())
}
