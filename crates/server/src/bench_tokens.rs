//! `carebridge bench --scenario tokens`: the client-credentials grant under concurrent load.
//! Registers a confidential client straight in the database, starts the real server, then
//! `--concurrency` tasks post token requests over keep-alive connections for `--requests`
//! requests in all; reports tokens per second and latency percentiles. The load generator
//! runs on the same two cores as the server, so the figure is a floor.

use std::time::Instant;

use anyhow::bail;
use carebridge_domain::auth::{Actor, Source};
use carebridge_domain::{Clock, SystemClock};
use carebridge_proto::identity::CreateOAuthClient;

use crate::bench::{BenchArgs, percentiles, rss_kib, spawn_server};
use crate::config::Config;

const SLUG: &str = "bench-tokens";

pub async fn run(args: BenchArgs, config: Config) -> anyhow::Result<()> {
    let db = crate::open_db(&config, None).await?;
    let now = SystemClock.now();
    let org = crate::bench::ensure_org(&db, SLUG, "Bench tokens", now).await?;
    let mut tx = db.begin().await?;
    let created = carebridge_identity::clients::create_in(
        &mut tx,
        &Actor::system("bench", Source::Cli),
        org,
        &CreateOAuthClient {
            name: "bench".into(),
            public: false,
            redirect_uris: vec![],
            scopes: vec!["directory:read".into(), "duties:read".into()],
            grants: vec!["client_credentials".into()],
            first_party: true,
        },
        now,
    )
    .await
    .map_err(crate::commands::explain)?;
    tx.commit().await?;
    let id = created.client.client_id;
    let secret = created.client_secret.unwrap_or_default();
    db.close().await;

    let (mut child, base, pid, client) = spawn_server(&config).await?;
    println!("server RSS after start: {} KiB", rss_kib(pid).unwrap_or(0));
    let url = format!("{base}/oauth2/token");
    let one = |client: reqwest::Client, url: String, id: String, secret: String| async move {
        let t = Instant::now();
        let r = client
            .post(url)
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?;
        let ok = r.status().is_success();
        let body = r.bytes().await?;
        if !ok {
            bail!("token request failed: {}", String::from_utf8_lossy(&body));
        }
        Ok::<_, anyhow::Error>(t.elapsed())
    };
    for _ in 0..200 {
        one(client.clone(), url.clone(), id.clone(), secret.clone()).await?;
    }
    let conc = args.concurrency.max(1);
    let per = args.requests.div_ceil(conc);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (c, u, i, s) = (client.clone(), url.clone(), id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut v = Vec::with_capacity(per);
            for _ in 0..per {
                v.push(one(c.clone(), u.clone(), i.clone(), s.clone()).await?);
            }
            Ok::<_, anyhow::Error>(v)
        }));
    }
    let mut all = Vec::with_capacity(per * conc);
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "client_credentials, {conc} concurrent: {:.0} tokens/s over {} requests; latency {}",
        all.len() as f64 / secs,
        all.len(),
        percentiles(all)
    );
    println!(
        "server RSS after the run: {} KiB",
        rss_kib(pid).unwrap_or(0)
    );
    let _ = child.kill().await;
    Ok(())
}
