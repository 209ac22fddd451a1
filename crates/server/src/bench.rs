//! `carebridge bench`: drives the real server over HTTP and reports latency percentiles and
//! memory. It seeds an organisation of N people straight into the database (multi-row inserts;
//! the import path has its own benchmark), starts `carebridge serve` as a child process on that
//! database, reads its resident memory after start, then times person lookups by id and name
//! searches (one request at a time, keep-alive) from an HTTP client.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use carebridge_domain::search::{person_tokens, sort_key};
use carebridge_domain::{Clock, PersonId, SystemClock};
use carebridge_proto::org::CreateOrg;
use carebridge_store::{Db, Tx, sqlx};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// People in the benchmark organisation.
    #[arg(long, default_value_t = 100_000)]
    pub people: usize,
    /// Timed requests per scenario.
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
    /// Reuse the database if the benchmark organisation exists already.
    #[arg(long)]
    pub reuse: bool,
    /// `people` (lookup and search), `duties` (my duties, week view, save assignment) or
    /// `tokens` (client-credentials grant under concurrent load), `refresh` (refresh grant with
    /// rotation, concurrent chains) or `signin` (password sign-in against Argon2id alone, and
    /// the latency of other requests meanwhile), `portal` (ERP feed throughput, appointments
    /// under concurrent load), `import` (a CSV of `--people` rows imported end to end, and again unchanged),
    /// `contacts` (the contacts sync feed and restricted listings), `chat` (duty chat fan-out,
    /// throughput, membership latency, commit validation cost and idle WebSockets), `console`
    /// (the admin console's pages with `--people` people, signed in through the provider).
    #[arg(long, default_value = "people")]
    pub scenario: String,
    /// Concurrent requests (the `tokens` scenario).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

const GIVEN: &[&str] = &[
    "Anna", "Luca", "Sophie", "Noah", "Mia", "Elias", "Léa", "Jonas", "Zoë", "Matteo", "Aino",
    "Eero", "Maja", "Lukas", "Chiara", "Björn",
];
const FAMILY: &[&str] = &[
    "Müller",
    "Meier",
    "Schmid",
    "Keller",
    "Weber",
    "Huber",
    "Schneider",
    "Meyer",
    "Steiner",
    "Fischer",
    "Brunner",
    "Baumann",
    "Gerber",
    "Frei",
    "Zimmermann",
    "Moser",
    "Widmer",
    "Wyss",
    "Graf",
    "Roth",
    "Virtanen",
    "Korhonen",
    "Lindqvist",
    "Rossi",
    "Bianchi",
    "Dubois",
];

/// A deterministic family name for person `i`: a base name plus a suffix, so searches hit
/// realistic result sizes (a few dozen to a few hundred people per prefix).
fn family(i: usize) -> String {
    format!(
        "{}{}",
        FAMILY[i % FAMILY.len()],
        ["", "er", "mann", "li", "berg", "i", "son", "ová"][(i / FAMILY.len()) % 8]
    )
}

pub(crate) async fn seed(db: &Db, org: Uuid, n: usize, now_ms: i64) -> anyhow::Result<Vec<Uuid>> {
    let clock = SystemClock;
    let mut ids = Vec::with_capacity(n);
    let batch = 400;
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let mut tx: Tx = db.begin().await?;
        let mut people_sql = String::from(
            "INSERT INTO people (id, org_id, kind, given_name, family_name, sort_key, external_id, language, emails, phones, address, active, version, created_at, updated_at, search) VALUES ",
        );
        let mut token_rows: Vec<(Uuid, String, String)> = Vec::new();
        let mut rows = Vec::new();
        for k in i..end {
            let id = PersonId::generate(clock.now()).0;
            let given = GIVEN[k % GIVEN.len()].to_string();
            let fam = family(k);
            let email = format!(
                "{}.{}{}@bench.example.ch",
                given.to_lowercase(),
                carebridge_domain::search::fold(&fam),
                k
            );
            let phone = format!("+4179{:07}", k);
            let tokens = person_tokens(
                &given,
                &fam,
                std::slice::from_ref(&email),
                std::slice::from_ref(&phone),
            );
            let search = carebridge_domain::search::search_text(&tokens);
            for t in tokens {
                token_rows.push((id, t, sort_key(&given, &fam)));
            }
            rows.push((id, given, fam, email, phone, search));
            ids.push(id);
        }
        let mut ph = Vec::new();
        for r in 0..rows.len() {
            let b = r * 11;
            ph.push(format!(
                "(${}, ${}, 'staff', ${}, ${}, ${}, ${}, 'de', ${}, ${}, '{{}}', TRUE, 1, ${}, ${}, ${})",
                b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, b + 11
            ));
        }
        people_sql.push_str(&ph.join(", "));
        carebridge_store::run!(&mut tx, c => {
            let mut q = sqlx::query(&people_sql);
            for (k, (id, given, fam, email, phone, search)) in rows.iter().enumerate() {
                q = q.bind(*id).bind(org).bind(given.clone()).bind(fam.clone()).bind(sort_key(given, fam))
                    .bind(format!("B{}", i + k))
                    .bind(format!("[{{\"value\":\"{email}\",\"type\":\"work\"}}]"))
                    .bind(format!("[{{\"value\":\"{phone}\",\"type\":\"mobile\"}}]"))
                    .bind(now_ms).bind(now_ms).bind(search.clone());
            }
            q.execute(c).await.map(|_| ())
        })?;
        for chunk in token_rows.chunks(1000) {
            let sql = format!(
                "INSERT INTO person_tokens (org_id, token, sort_key, person_id) VALUES {}",
                (0..chunk.len())
                    .map(|r| format!("($1, ${}, ${}, ${})", r * 3 + 2, r * 3 + 3, r * 3 + 4))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            carebridge_store::run!(&mut tx, c => {
                let mut q = sqlx::query(&sql).bind(org);
                for (id, t, sk) in chunk {
                    q = q.bind(t.clone()).bind(sk.clone()).bind(*id);
                }
                q.execute(c).await.map(|_| ())
            })?;
        }
        tx.commit().await?;
        i = end;
    }
    Ok(ids)
}

/// One region with `n` teams under it; person `i` of `ids` joins team `i % n`. Returns the
/// region's id and the teams' (named `Team 0`, `Team 1`, …).
pub(crate) async fn seed_teams(
    db: &Db,
    org: Uuid,
    ids: &[Uuid],
    n: usize,
    now: carebridge_domain::Timestamp,
) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
    use carebridge_store::bulk::{Col, Rows, insert};
    let ms = now.as_millisecond();
    let region = carebridge_domain::new_v7(now);
    let teams: Vec<Uuid> = (0..n).map(|_| carebridge_domain::new_v7(now)).collect();
    let mut tx = db.begin().await?;
    let mut units = Rows::new();
    units
        .uuid(region)
        .uuid(org)
        .null()
        .text("Region")
        .text(&format!("/{region}/"))
        .int(1)
        .int(ms)
        .int(ms)
        .end();
    for (i, t) in teams.iter().enumerate() {
        units
            .uuid(*t)
            .uuid(org)
            .uuid(region)
            .text(&format!("Team {i}"))
            .text(&format!("/{region}/{t}/"))
            .int(1)
            .int(ms)
            .int(ms)
            .end();
    }
    insert(
        &mut tx,
        "units",
        &[
            ("id", Col::Uuid),
            ("org_id", Col::Uuid),
            ("parent_id", Col::Uuid),
            ("name", Col::Text),
            ("path", Col::Text),
            ("version", Col::Int),
            ("created_at", Col::Int),
            ("updated_at", Col::Int),
        ],
        units,
        "",
    )
    .await?;
    let mut members = Rows::new();
    for (i, p) in ids.iter().enumerate() {
        members.uuid(*p).uuid(teams[i % n]).uuid(org).end();
    }
    insert(
        &mut tx,
        "person_units",
        &[
            ("person_id", Col::Uuid),
            ("unit_id", Col::Uuid),
            ("org_id", Col::Uuid),
        ],
        members,
        "",
    )
    .await?;
    tx.commit().await?;
    Ok((region, teams))
}

/// Starts `carebridge serve` on `config`'s database as a child process on a free port and
/// waits until it is ready: `(child, base URL, pid, client)`.
pub(crate) async fn spawn_server(
    config: &Config,
) -> anyhow::Result<(tokio::process::Child, String, u32, reqwest::Client)> {
    let exe = std::env::current_exe().context("locating the carebridge binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &config.database_url,
        ])
        .env("RUST_LOG", "warn")
        // The load comes from one address: lift the per-source sign-in limit.
        .env("CAREBRIDGE_SIGNIN_PER_MINUTE", "100000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the server")?;
    let pid = child.id().context("server pid")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        match lines.next_line().await? {
            Some(l) if l.starts_with("listening on ") => {
                break l.trim_start_matches("listening on ").to_string();
            }
            Some(_) => continue,
            None => bail!("the server exited before listening"),
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    for _ in 0..50 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((child, base, pid, client))
}

/// The benchmark organisation `slug`: the existing one, or a new one (region CH, German).
pub(crate) async fn ensure_org(
    db: &Db,
    slug: &str,
    name: &str,
    now: carebridge_domain::Timestamp,
) -> anyhow::Result<carebridge_domain::OrgId> {
    Ok(match crate::commands::resolve(db, slug).await {
        Ok(o) => o.id,
        Err(_) => crate::commands::org_create(
            db,
            CreateOrg {
                slug: slug.into(),
                name: name.into(),
                default_region: "CH".into(),
                default_language: "de".into(),
                contact_email: None,
            },
            now,
        )
        .await?
        .id
        .into(),
    })
}

pub(crate) fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0;
    format!(
        "n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        v.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0)
    )
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub async fn run(args: BenchArgs, config: Config) -> anyhow::Result<()> {
    match args.scenario.as_str() {
        "people" => {}
        "duties" => return crate::bench_duties::run(args, config).await,
        "tokens" => return crate::bench_tokens::run(args, config).await,
        "refresh" => return crate::bench_identity::refresh(args, config).await,
        "signin" => return crate::bench_identity::signin(args, config).await,
        "portal" => return crate::bench_portal::run(args, config).await,
        "import" => return crate::bench_import::run(&args, &config).await,
        "contacts" => return crate::bench_contacts::run(args, config).await,
        "chat" => return crate::bench_chat::run(args, config).await,
        "console" => return crate::bench_console::run(args, config).await,
        other => {
            bail!(
                "unknown scenario '{other}': people, duties, tokens, refresh, signin, portal, import, contacts, chat or console"
            )
        }
    }
    let db = crate::open_db(&config, None).await?;
    let now = SystemClock.now();
    let slug = "bench";
    let existing = crate::commands::resolve(&db, slug).await.ok();
    let ids = match existing {
        Some(o) if args.reuse => {
            let mut c = db.read().await?;
            let ids: Vec<Uuid> = carebridge_store::run!(&mut c, c => sqlx::query_scalar("SELECT id FROM people WHERE org_id = $1").bind(o.id.0).fetch_all(c).await)?;
            ids
        }
        Some(_) => bail!("organisation 'bench' exists; use a fresh database or --reuse"),
        None => {
            let o = crate::commands::org_create(
                &db,
                CreateOrg {
                    slug: slug.into(),
                    name: "Bench".into(),
                    default_region: "CH".into(),
                    default_language: "de".into(),
                    contact_email: None,
                },
                now,
            )
            .await?;
            let t = Instant::now();
            let ids = seed(&db, o.id, args.people, now.as_millisecond()).await?;
            println!(
                "seeded {} people in {:.1}s",
                ids.len(),
                t.elapsed().as_secs_f64()
            );
            // Autovacuum does this soon after a bulk load; without it PostgreSQL cannot use
            // index-only scans yet, and the figures would describe a state that does not last.
            if let Some(pool) = db.pg_pool() {
                sqlx::query("VACUUM ANALYZE").execute(pool).await?;
            }
            ids
        }
    };
    let key = crate::commands::apikey_create(
        &db,
        Some(slug),
        "bench",
        vec!["directory:read".into()],
        now,
    )
    .await?
    .secret;
    db.close().await;

    let (mut child, base, pid, client) = spawn_server(&config).await?;
    println!("server RSS after start: {} KiB", rss_kib(pid).unwrap_or(0));

    let auth = format!("Bearer {key}");
    let get = |url: String| {
        let client = client.clone();
        let auth = auth.clone();
        async move {
            let t = Instant::now();
            let r = client.get(url).header("authorization", auth).send().await?;
            let ok = r.status().is_success();
            let body = r.bytes().await?;
            if !ok {
                bail!("request failed: {}", String::from_utf8_lossy(&body));
            }
            Ok::<_, anyhow::Error>((t.elapsed(), body.len()))
        }
    };
    // Warm up.
    for k in 0..200 {
        get(format!(
            "{base}/api/v1/orgs/{slug}/people/{}",
            ids[(k * 7919) % ids.len()]
        ))
        .await?;
    }
    let mut lookups = Vec::with_capacity(args.requests);
    for k in 0..args.requests {
        let id = ids[(k * 104_729 + 13) % ids.len()];
        lookups.push(
            get(format!("{base}/api/v1/orgs/{slug}/people/{id}"))
                .await?
                .0,
        );
    }
    println!("person lookup by id:        {}", percentiles(lookups));
    let mut searches = Vec::with_capacity(args.requests);
    let mut hits = 0usize;
    for k in 0..args.requests {
        let q = family(k * 31 + 5);
        let (d, len) = get(format!(
            "{base}/api/v1/orgs/{slug}/people?q={}&limit=50",
            urlencode(&q)
        ))
        .await?;
        hits += len;
        searches.push(d);
    }
    println!(
        "name search, page of 50:    {} (avg body {} bytes)",
        percentiles(searches),
        hits / args.requests.max(1)
    );
    let mut listing = Vec::with_capacity(args.requests);
    for k in 0..args.requests {
        let q = &FAMILY[k % FAMILY.len()][..3];
        listing.push(
            get(format!(
                "{base}/api/v1/orgs/{slug}/people?q={}&limit=50",
                urlencode(q)
            ))
            .await?
            .0,
        );
    }
    println!("3-letter prefix search, 50: {}", percentiles(listing));
    println!(
        "server RSS after the run:   {} KiB",
        rss_kib(pid).unwrap_or(0)
    );
    let _ = child.kill().await;
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
