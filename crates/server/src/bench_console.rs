//! `carebridge bench --scenario console`: the admin console's pages against the real server
//! (a child process) with `--people` people (default 100,000) in 20 teams, 200 duties and the
//! audit events of creating them. The benchmark signs in like a browser (the provider's form,
//! cookies, redirects) and then times each page `--requests / 10` times, one request at a
//! time: the whole answer as the browser gets it, so the figures include every in-process API
//! call the page makes.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, bail};
use carebridge_domain::Clock;
use carebridge_domain::time::SystemClock;
use carebridge_proto::org::CreateOrg;
use serde_json::json;

use crate::bench::{BenchArgs, percentiles, rss_kib, seed, seed_teams, spawn_server};

const SLUG: &str = "console";
const LOGIN: &str = "admin@console.example";
const PASSWORD: &str = "bench password that is long";

/// A browser's cookies and its way through redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let Some((kv, _)) = v.to_str().ok().and_then(|s| s.split_once(';')) else {
                continue;
            };
            if let Some((k, v)) = kv.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
    }

    fn abs(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_string()
        }
    }

    /// `(status, location, body)`.
    async fn get(&mut self, url: &str) -> anyhow::Result<(u16, Option<String>, String)> {
        let r = self
            .http
            .get(self.abs(url))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await?;
        self.keep(&r);
        let loc = r
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((r.status().as_u16(), loc, r.text().await?))
    }

    /// Follows redirects from `url` to a page.
    async fn follow(&mut self, url: &str) -> anyhow::Result<(u16, String, String)> {
        let mut url = url.to_string();
        for _ in 0..10 {
            let (st, loc, body) = self.get(&url).await?;
            match loc {
                Some(l) if (300..400).contains(&st) => url = l,
                _ => return Ok((st, url, body)),
            }
        }
        bail!("too many redirects")
    }
}

/// The value of the hidden field `name` in a page.
fn field(body: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = body.find(&needle)? + needle.len();
    let end = body[start..].find('"')? + start;
    Some(
        body[start..end]
            .replace("&#x2f;", "/")
            .replace("&#x2F;", "/")
            .replace("&amp;", "&")
            .replace("&#38;", "&")
            .replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&#39;", "'")
            .replace("&#x27;", "'"),
    )
}

pub async fn run(args: BenchArgs, config: crate::config::Config) -> anyhow::Result<()> {
    let db = crate::open_db(&config, None).await?;
    let now = SystemClock.now();
    if crate::commands::resolve(&db, SLUG).await.is_ok() {
        bail!("organisation '{SLUG}' exists; use a fresh database");
    }
    let org = crate::commands::org_create(
        &db,
        CreateOrg {
            slug: SLUG.into(),
            name: "Console bench".into(),
            default_region: "CH".into(),
            default_language: "en".into(),
            contact_email: None,
        },
        now,
    )
    .await?;
    let t = Instant::now();
    let ids = seed(&db, org.id, args.people, now.as_millisecond()).await?;
    let (_, teams) = seed_teams(&db, org.id, &ids, 20, now).await?;
    crate::commands::admin_create(&db, SLUG, "Ada", "Admin", LOGIN, PASSWORD.into(), now).await?;
    let key = crate::commands::apikey_create(&db, Some(SLUG), "bench", vec![], now)
        .await?
        .secret;
    println!(
        "seeded {} people in 20 teams in {:.1}s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    if let Some(pool) = db.pg_pool() {
        carebridge_store::sqlx::query("VACUUM ANALYZE")
            .execute(pool)
            .await?;
    }
    db.close().await;

    let (mut child, base, pid, http) = spawn_server(&config).await?;
    let api = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let (http, url, key) = (http.clone(), format!("{base}{path}"), key.clone());
        async move {
            let r = http
                .request(method, url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await?;
            let st = r.status();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if !st.is_success() {
                bail!("{st}: {v}");
            }
            Ok::<_, anyhow::Error>(v)
        }
    };
    api(
        reqwest::Method::PUT,
        format!("/api/v1/orgs/{SLUG}/mfa-policy"),
        json!({"required_for": []}),
    )
    .await?;
    // 200 duties over the next 100 days, five people on each.
    let mut duty_id = String::new();
    for d in 0..200usize {
        let day = now
            .checked_add(jiff::SignedDuration::from_hours(24 * (1 + d as i64 / 2)))
            .context("date")?
            .strftime("%Y-%m-%d")
            .to_string();
        let duty = api(
            reqwest::Method::POST,
            format!("/api/v1/orgs/{SLUG}/duties"),
            json!({"unit_id": teams[d % 20], "title": format!("Duty {d}"), "time_zone": "Europe/Zurich",
                   "starts_at": format!("{day}T08:00"), "ends_at": format!("{day}T16:00")}),
        )
        .await?;
        duty_id = duty["id"].as_str().unwrap_or_default().to_string();
        for p in 0..5 {
            api(
                reqwest::Method::POST,
                format!("/api/v1/orgs/{SLUG}/duties/{duty_id}/assignments"),
                json!({"person_id": ids[(d * 5 + p) * 20 % ids.len()]}),
            )
            .await?;
        }
    }

    // The portal, fed by an ERP: 2,000 clients, each with a relative from the directory.
    let erp = api(
        reqwest::Method::POST,
        format!("/api/v1/orgs/{SLUG}/oauth-clients"),
        json!({"name": "ERP", "grants": ["client_credentials"], "scopes": ["portal:erp"]}),
    )
    .await?;
    let tok: serde_json::Value = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth(
            erp["client"]["client_id"].as_str().unwrap_or_default(),
            erp["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "portal:erp"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let erp_token = tok["access_token"]
        .as_str()
        .context("an ERP token")?
        .to_string();
    for chunk in 0..2usize {
        let clients: Vec<serde_json::Value> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| json!({"id": format!("K{i}"), "given_name": format!("Client{i}"), "family_name": format!("Keller{i:04}")}))
            .collect();
        let links: Vec<serde_json::Value> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| json!({"client": format!("K{i}"), "subject": ids[i * 37 % ids.len()], "relation": "relative", "messages": true}))
            .collect();
        for (path, body) in [("clients", clients), ("links", links)] {
            let r = http
                .put(format!("{base}/portal/v1/erp/{path}"))
                .bearer_auth(&erp_token)
                .json(&body)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("ERP feed {path}: {}", r.status());
            }
        }
    }

    let mut b = Browser {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        base: base.clone(),
        cookies: HashMap::new(),
    };
    let (st, _, login) = b.follow("/console").await?;
    if st != 200 || !login.contains("name=\"password\"") {
        bail!("expected the sign-in page, got {st}");
    }
    let form = [
        ("csrf", field(&login, "csrf").context("csrf field")?),
        ("next", field(&login, "next").context("next field")?),
        ("login", LOGIN.to_string()),
        ("password", PASSWORD.to_string()),
    ];
    let r = b
        .http
        .post(format!("{base}/oauth2/login"))
        .header(reqwest::header::COOKIE, b.cookie_header())
        .form(&form)
        .send()
        .await?;
    b.keep(&r);
    let next = r
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("a redirect after signing in")?
        .to_string();
    let (st, landed, _) = b.follow(&next).await?;
    if st != 200 || !landed.ends_with("/console") {
        bail!("sign-in did not reach the console: {st} {landed}");
    }
    println!(
        "signed in through the provider; server RSS {} KiB",
        rss_kib(pid).unwrap_or(0)
    );

    let (_, _, first) = b.get("/console/people").await?;
    let next_page = first
        .split("href=\"")
        .filter_map(|x| x.split('"').next())
        .find(|h| h.contains("cursor="))
        .map(|h| h.replace("&amp;", "&"))
        .context("a next-page link")?;
    let person = ids[ids.len() / 2];
    let pages = [
        (
            "people, first page (50 of all)",
            "/console/people".to_string(),
        ),
        ("people, next page (cursor)", next_page),
        (
            "people, search 'müll'",
            "/console/people?q=m%C3%BCll".to_string(),
        ),
        (
            "people, one team (5,000)",
            format!("/console/people?unit={}", teams[7]),
        ),
        (
            "person page (with roles and history)",
            format!("/console/people/{person}"),
        ),
        ("person edit form", format!("/console/people/{person}/edit")),
        ("units (21)", "/console/units".to_string()),
        ("duties from today", "/console/duties".to_string()),
        (
            "duty page (roster of 5)",
            format!("/console/duties/{duty_id}"),
        ),
        (
            "duty page with a person search",
            format!("/console/duties/{duty_id}?q=weber"),
        ),
        ("audit log, first page", "/console/audit".to_string()),
        (
            "portal (2,000 links: 50 with names)",
            "/console/portal".to_string(),
        ),
        (
            "portal, clients 'keller00'",
            "/console/portal?q=keller00".to_string(),
        ),
        ("import form", "/console/import".to_string()),
        ("access rights", "/console/access".to_string()),
        ("outbox", "/console/outbox".to_string()),
        ("integrations", "/console/integrations".to_string()),
        (
            "settings (with discovery preview)",
            "/console/settings".to_string(),
        ),
    ];
    let n = (args.requests / 10).max(20);
    println!("each page {n} times, one at a time; p50 / p90 / p99 / max");
    for (name, path) in pages {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let (st, _, body) = b.get(&path).await?;
            v.push(t.elapsed());
            if st != 200 || body.len() < 500 {
                bail!("{name}: {st}");
            }
        }
        println!("  {name:<40} {}", percentiles(v));
    }
    println!("server RSS at the end: {} KiB", rss_kib(pid).unwrap_or(0));
    child.kill().await.ok();
    Ok(())
}
