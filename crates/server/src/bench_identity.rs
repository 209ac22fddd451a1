//! `carebridge bench --scenario refresh|signin`: the identity role under load, against the
//! real server as a child process (the load generator shares the two cores, so figures are
//! floors).
//!
//! - `refresh`: `--concurrency` token grants, each a refresh chain; every task rotates its own
//!   chain (each refresh is the compare-and-swap `UPDATE` plus signing a token).
//! - `signin`: first Argon2id alone (verifications per second on all cores, in this process),
//!   then `POST /oauth2/login` with the right password at `--concurrency` (throughput), then
//!   the same again while one probe task reads a person through the API every 5 ms: its p99
//!   shows whether hashing starves the async workers.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use carebridge_domain::{Clock, OrgId, PersonId, SystemClock};
use carebridge_proto::identity::CreateOAuthClient;

use crate::bench::{BenchArgs, percentiles, rss_kib, spawn_server};
use crate::config::Config;

const SLUG: &str = "bench-identity";
const PASSWORD: &str = "bench password that is long";

async fn org(db: &carebridge_store::Db) -> anyhow::Result<OrgId> {
    crate::bench::ensure_org(db, SLUG, "Bench identity", SystemClock.now()).await
}

/// A person with an account and password (an org admin, created as the CLI does).
async fn person(db: &carebridge_store::Db) -> anyhow::Result<(PersonId, String)> {
    let login = format!("bench-{}@example.org", uuid::Uuid::new_v4().simple());
    let id = crate::commands::admin_create(
        db,
        SLUG,
        "Bench",
        "Person",
        &login,
        PASSWORD.into(),
        SystemClock.now(),
    )
    .await?;
    Ok((PersonId(id), login))
}

pub async fn refresh(args: BenchArgs, config: Config) -> anyhow::Result<()> {
    let db = crate::open_db(&config, None).await?;
    let org = org(&db).await?;
    let (person, _) = person(&db).await?;
    let now = SystemClock.now();
    let mut tx = db.begin().await?;
    let client = carebridge_identity::clients::create_in(
        &mut tx,
        &carebridge_domain::auth::Actor::system("bench", carebridge_domain::auth::Source::Cli),
        org,
        &CreateOAuthClient {
            name: "bench refresh".into(),
            public: false,
            redirect_uris: vec!["https://app.example/cb".into()],
            scopes: vec![
                "openid".into(),
                "offline_access".into(),
                "duties:read".into(),
            ],
            grants: vec!["authorization_code".into(), "refresh_token".into()],
            first_party: true,
        },
        now,
    )
    .await
    .map_err(crate::commands::explain)?;
    let conc = args.concurrency.max(1);
    let scopes = vec!["offline_access".to_string(), "duties:read".to_string()];
    let mut chains = Vec::with_capacity(conc);
    for _ in 0..conc {
        let (_, rt) = carebridge_identity::grants::create(
            &mut tx,
            org,
            person,
            &client.client.client_id,
            None,
            &scopes,
            now.as_millisecond(),
            &["pwd".to_string()],
            true,
            now,
        )
        .await?;
        chains.push(rt.context("a refresh token")?);
    }
    tx.commit().await?;
    db.close().await;
    let id = client.client.client_id.clone();
    let secret = client.client_secret.unwrap_or_default();

    let (mut child, base, pid, http) = spawn_server(&config).await?;
    println!("server RSS after start: {} KiB", rss_kib(pid).unwrap_or(0));
    let url = format!("{base}/oauth2/token");
    let per = args.requests.div_ceil(conc);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut rt in chains {
        let (http, url, id, secret) = (http.clone(), url.clone(), id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut v = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .basic_auth(&id, Some(&secret))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", rt.as_str()),
                    ])
                    .send()
                    .await?;
                let ok = r.status().is_success();
                let body: serde_json::Value = r.json().await?;
                if !ok {
                    bail!("refresh failed: {body}");
                }
                rt = body["refresh_token"]
                    .as_str()
                    .context("a rotated refresh token")?
                    .to_string();
                v.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(v)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "refresh_token with rotation, {conc} concurrent chains: {:.0} refreshes/s over {} requests; latency {}",
        all.len() as f64 / secs,
        all.len(),
        percentiles(all)
    );
    let _ = child.kill().await;
    Ok(())
}

pub async fn signin(args: BenchArgs, config: Config) -> anyhow::Result<()> {
    let db = crate::open_db(&config, None).await?;
    org(&db).await?;
    let (probe_person, login) = person(&db).await?;
    let key = crate::commands::apikey_create(
        &db,
        Some(SLUG),
        "bench",
        vec!["directory:read".into()],
        SystemClock.now(),
    )
    .await?
    .secret;
    // The hash as stored, to time Argon2id alone on the same parameters.
    let (_, hash) = {
        let mut c = db.read().await?;
        carebridge_identity::accounts::find(&mut c, &login)
            .await?
            .context("account")?
    };
    let hash = hash.context("password hash")?;
    db.close().await;

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let n_alone = (args.requests / 4).max(cores * 20);
    let start = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..cores {
        let h = hash.clone();
        let n = n_alone / cores;
        threads.push(std::thread::spawn(move || {
            // The same code the server's hashing threads run (one memory block, reused).
            let mut memory = Vec::new();
            for _ in 0..n {
                if !carebridge_identity::hashing::verify_with(PASSWORD.as_bytes(), &h, &mut memory)
                {
                    bail!("the password did not verify");
                }
            }
            Ok::<_, anyhow::Error>(n)
        }));
    }
    let mut done = 0;
    for t in threads {
        done += t
            .join()
            .map_err(|_| anyhow::anyhow!("hash thread panicked"))??;
    }
    let alone = done as f64 / start.elapsed().as_secs_f64();
    println!(
        "Argon2id alone (m=19456 KiB, t=2, p=1) on {cores} threads: {alone:.1} verifications/s"
    );

    let (mut child, base, pid, http) = spawn_server(&config).await?;
    println!("server RSS after start: {} KiB", rss_kib(pid).unwrap_or(0));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or(http);
    let conc = args.concurrency.max(1);
    let total = n_alone;
    let per = total.div_ceil(conc);
    // First sign-ins alone (throughput), then with a probe of other requests (latency).
    for with_probe in [false, true] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = with_probe.then(|| {
            let (http, stop, key) = (http.clone(), stop.clone(), key.clone());
            let url = format!("{base}/api/v1/orgs/{SLUG}/people/{}", probe_person.0);
            tokio::spawn(async move {
                let mut v = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = http.get(&url).bearer_auth(&key).send().await?;
                    if !r.status().is_success() {
                        bail!("probe failed: {}", r.status());
                    }
                    r.bytes().await?;
                    v.push(t.elapsed());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<_, anyhow::Error>(v)
            })
        });
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let (http, url, login) = (http.clone(), format!("{base}/oauth2/login"), login.clone());
            tasks.push(tokio::spawn(async move {
                let mut v = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    let r = http
                        .post(&url)
                        .header(
                            "cookie",
                            "cb_csrf=benchbenchbenchbenchbenchbenchbenchbenchben",
                        )
                        .form(&[
                            ("csrf", "benchbenchbenchbenchbenchbenchbenchbenchben"),
                            ("next", "/oauth2/device"),
                            ("login", login.as_str()),
                            ("password", PASSWORD),
                        ])
                        .send()
                        .await?;
                    if r.status() != reqwest::StatusCode::SEE_OTHER {
                        bail!("sign-in failed: {}", r.status());
                    }
                    r.bytes().await?;
                    v.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(v)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let secs = start.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let probes = match probe {
            Some(p) => Some(p.await??),
            None => None,
        };
        let rate = all.len() as f64 / secs;
        let phase = if with_probe {
            "with the probe"
        } else {
            "alone"
        };
        println!(
            "password sign-in ({phase}), {conc} concurrent: {rate:.1} sign-ins/s ({:.0}% of Argon2id alone) over {} requests; latency {}",
            100.0 * rate / alone,
            all.len(),
            percentiles(all)
        );
        if let Some(p) = probes {
            println!(
                "meanwhile, person lookups through the API (one every 5 ms): {}",
                percentiles(p)
            );
        }
    }
    let _ = child.kill().await;
    Ok(())
}
