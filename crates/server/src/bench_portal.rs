//! `carebridge bench --scenario portal`: the customer portal on the real server. An ERP client
//! (client credentials, `portal:erp`) feeds 1,000 clients and a visit a day for each over six
//! months (180,000 appointments) through `PUT /portal/v1/erp/appointments` in calls of 5,000
//! — timed as created, then the same feed again (unchanged), then with every visit moved
//! (updated). Then `--concurrency` tasks read a client's coming 31 days
//! (`GET /portal/v1/clients/{id}/appointments`, about 31 visits each) with person tokens of
//! scope `portal`, signed with the server's own key (the portal checks them against the JWKS
//! like any other). The load generator shares the two cores, so figures are floors.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use carebridge_domain::auth::{Actor, Source};
use carebridge_domain::{Clock, SystemClock};
use carebridge_proto::identity::CreateOAuthClient;
use serde_json::{Value, json};

use crate::bench::{BenchArgs, percentiles, rss_kib, spawn_server};
use crate::config::Config;

const SLUG: &str = "bench-portal";
const CLIENTS: usize = 1_000;
const DAYS: i64 = 180;
const CHUNK: usize = 5_000;

pub async fn run(args: BenchArgs, config: Config) -> anyhow::Result<()> {
    let db = crate::open_db(&config, None).await?;
    let now = SystemClock.now();
    let org = crate::bench::ensure_org(&db, SLUG, "Bench portal", now).await?;
    let mut tx = db.begin().await?;
    let created = carebridge_identity::clients::create_in(
        &mut tx,
        &Actor::system("bench", Source::Cli),
        org,
        &CreateOAuthClient {
            name: "ERP".into(),
            public: false,
            redirect_uris: vec![],
            scopes: vec!["portal:erp".into()],
            grants: vec!["client_credentials".into()],
            first_party: true,
        },
        now,
    )
    .await
    .map_err(crate::commands::explain)?;
    tx.commit().await?;
    let (id, secret) = (
        created.client.client_id,
        created.client_secret.unwrap_or_default(),
    );

    let (mut child, base, pid, http) = spawn_server(&config).await?;
    println!("server RSS after start: {} KiB", rss_kib(pid).unwrap_or(0));
    let t: Value = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "portal:erp"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let erp = t["access_token"]
        .as_str()
        .context("no ERP token")?
        .to_string();
    let put = |path: &str, body: Value| {
        let (http, erp, url) = (http.clone(), erp.clone(), format!("{base}{path}"));
        async move {
            let r = http.put(url).bearer_auth(erp).json(&body).send().await?;
            let ok = r.status().is_success();
            let v: Value = r.json().await?;
            if !ok {
                bail!("feed refused: {v}");
            }
            Ok::<Value, anyhow::Error>(v)
        }
    };
    put(
        "/portal/v1/erp/settings",
        json!({"name": "Bench", "language": "de", "time_zone": "Europe/Zurich", "show_photos": true}),
    )
    .await?;
    let clients: Vec<Value> = (0..CLIENTS)
        .map(|i| json!({"id": format!("K{i}"), "given_name": "Klient", "family_name": format!("Nr {i}")}))
        .collect();
    put("/portal/v1/erp/clients", Value::Array(clients)).await?;
    let subjects: Vec<uuid::Uuid> = (0..CLIENTS).map(|_| uuid::Uuid::new_v4()).collect();
    let links: Vec<Value> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"client": format!("K{i}"), "subject": s, "relation": "self"}))
        .collect();
    put("/portal/v1/erp/links", Value::Array(links)).await?;
    let day0 = now.as_second() / 86_400 * 86_400;
    let visits = |shift_min: i64| -> Vec<Value> {
        let mut v = Vec::with_capacity(CLIENTS * DAYS as usize);
        for d in 0..DAYS {
            for c in 0..CLIENTS {
                let start = day0 + d * 86_400 + 6 * 3600 + (c as i64 % 48) * 600 + shift_min * 60;
                v.push(json!({"id": format!("T{c}-{d}"), "client": format!("K{c}"),
                    "start": jiff::Timestamp::from_second(start).unwrap_or_default(),
                    "end": jiff::Timestamp::from_second(start + 2700).unwrap_or_default(),
                    "service": "Grundpflege", "carer_first_name": "Petra"}));
            }
        }
        v
    };
    for (label, shift) in [("created", 0), ("unchanged", 0), ("updated", 15)] {
        let all = visits(shift);
        let n = all.len();
        let start = Instant::now();
        let mut lat = Vec::new();
        for chunk in all.chunks(CHUNK) {
            let t = Instant::now();
            put("/portal/v1/erp/appointments", Value::Array(chunk.to_vec())).await?;
            lat.push(t.elapsed());
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "ERP feed, {n} appointments {label} in calls of {CHUNK}: {:.0} items/s ({secs:.1} s); per call {}",
            n as f64 / secs,
            percentiles(lat)
        );
    }

    // Person tokens signed with the server's key (the server created it on start).
    let key = carebridge_identity::keys::active(&db).await?;
    let exp = SystemClock.now().as_second() + 3_000;
    let tokens: Vec<String> = subjects
        .iter()
        .map(|s| {
            key.sign(&json!({"iss": base, "sub": s.to_string(), "aud": "portal", "exp": exp,
                "org": org.0.to_string(), "scope": "openid portal", "gid": uuid::Uuid::new_v4().to_string()}))
        })
        .collect::<Result<_, _>>()?;
    db.close().await;
    // Each subject's client id.
    let mut targets = Vec::with_capacity(CLIENTS);
    for t in &tokens {
        let v: Value = http
            .get(format!("{base}/portal/v1/clients"))
            .bearer_auth(t)
            .send()
            .await?
            .json()
            .await?;
        let cid = v[0]["id"].as_str().context("a client")?.to_string();
        targets.push((t.clone(), cid));
    }
    let one = |http: reqwest::Client, url: String, token: String| async move {
        let t = Instant::now();
        let r = http.get(url).bearer_auth(token).send().await?;
        if !r.status().is_success() {
            bail!("appointments: {}", r.status());
        }
        let v: Value = r.json().await?;
        if v.as_array().is_none_or(|a| a.len() < 20) {
            bail!("too few appointments: {v}");
        }
        Ok::<Duration, anyhow::Error>(t.elapsed())
    };
    let url = |cid: &str| format!("{base}/portal/v1/clients/{cid}/appointments");
    for (t, cid) in targets.iter().take(200) {
        one(http.clone(), url(cid), t.clone()).await?;
    }
    let conc = args.concurrency.max(1);
    let per = args.requests.div_ceil(conc);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..conc {
        let http = http.clone();
        let mine: Vec<(String, String)> = (0..per)
            .map(|i| {
                let (t, cid) = &targets[(k * per + i) % targets.len()];
                (t.clone(), url(cid))
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut v = Vec::with_capacity(mine.len());
            for (t, u) in mine {
                v.push(one(http.clone(), u, t).await?);
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
        "appointments (31 days, ~31 visits), {conc} concurrent: {:.0} requests/s; latency {}",
        all.len() as f64 / secs,
        percentiles(all)
    );
    println!(
        "server RSS after the run: {} KiB",
        rss_kib(pid).unwrap_or(0)
    );
    let _ = child.kill().await;
    Ok(())
}
