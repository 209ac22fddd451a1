//! `carebridge bench --scenario contacts`: contact access and the offline sync feed against the
//! real server. `--people` people are seeded into 20 teams under one region; person 0 is unit
//! admin of team 0, and a grant lets team 0 see names and phones of team 1. Timed:
//! - the full snapshot of the feed for an organisation key (everyone), in pages of 1,000;
//! - the delta after 200 people were changed through the API;
//! - the snapshot for the restricted viewer (their team whole, the other team's two fields);
//! - the restricted viewer's first page of the people list and a name search.

use std::time::{Duration, Instant};

use anyhow::bail;
use carebridge_domain::Clock;
use carebridge_domain::time::SystemClock;
use carebridge_proto::org::CreateOrg;
use carebridge_store::bulk::{Col, Rows, insert};
use serde_json::{Value, json};

use crate::bench::{BenchArgs, percentiles, rss_kib, seed, spawn_server};

const TEAMS: usize = 20;

pub async fn run(args: BenchArgs, config: crate::config::Config) -> anyhow::Result<()> {
    let db = crate::open_db(&config, None).await?;
    let now = SystemClock.now();
    let ms = now.as_millisecond();
    let slug = "contacts";
    if crate::commands::resolve(&db, slug).await.is_ok() {
        bail!("organisation 'contacts' exists; use a fresh database");
    }
    let org = crate::commands::org_create(
        &db,
        CreateOrg {
            slug: slug.into(),
            name: "Contacts".into(),
            default_region: "CH".into(),
            default_language: "de".into(),
            contact_email: None,
        },
        now,
    )
    .await?;
    let t = Instant::now();
    let ids = seed(&db, org.id, args.people, ms).await?;
    let (_, teams) = crate::bench::seed_teams(&db, org.id, &ids, TEAMS, now).await?;
    let mut tx = db.begin().await?;
    let mut role = Rows::new();
    role.uuid(carebridge_domain::new_v7(now))
        .uuid(org.id)
        .uuid(ids[0])
        .text("unit_admin")
        .uuid(teams[0])
        .int(ms)
        .end();
    insert(
        &mut tx,
        "role_assignments",
        &[
            ("id", Col::Uuid),
            ("org_id", Col::Uuid),
            ("person_id", Col::Uuid),
            ("role", Col::Text),
            ("unit_id", Col::Uuid),
            ("created_at", Col::Int),
        ],
        role,
        "",
    )
    .await?;
    tx.commit().await?;
    println!(
        "seeded {} people in {TEAMS} teams in {:.1}s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    if let Some(pool) = db.pg_pool() {
        carebridge_store::sqlx::query("VACUUM ANALYZE")
            .execute(pool)
            .await?;
    }
    let admin = crate::commands::apikey_create(&db, Some(slug), "bench", vec![], now)
        .await?
        .secret;
    db.close().await;

    let (mut child, base, pid, client) = spawn_server(&config).await?;
    let call = |method: reqwest::Method, path: String, key: String, body: Option<Value>| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let mut r = client.request(method, url).bearer_auth(key);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await?;
            let st = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if !st.is_success() {
                bail!("{st}: {v}");
            }
            Ok::<_, anyhow::Error>(v)
        }
    };
    let get = |path: String, key: String| call(reqwest::Method::GET, path, key, None);
    let grant = json!({"viewer": {"kind": "unit", "id": teams[0]}, "target": {"kind": "unit", "id": teams[1]},
        "fields": ["name", "phones"]});
    call(
        reqwest::Method::POST,
        format!("/api/v1/orgs/{slug}/contact-grants"),
        admin.clone(),
        Some(grant),
    )
    .await?;
    let k = call(
        reqwest::Method::POST,
        format!("/api/v1/orgs/{slug}/api-keys"),
        admin.clone(),
        Some(json!({"name": "viewer", "permissions": ["directory:read"], "person_id": ids[0]})),
    )
    .await?;
    let viewer = k["secret"].as_str().unwrap_or_default().to_string();

    // A whole sync: pages until `more` is false. Returns (time, upserts, removals, cursor).
    let sync = |key: String, cursor: Option<String>| {
        let get = &get;
        async move {
            let t = Instant::now();
            let (mut up, mut rm, mut pages) = (0usize, 0usize, 0usize);
            let mut cursor = cursor;
            loop {
                let mut path = format!("/api/v1/orgs/{slug}/contacts/changes?limit=1000");
                if let Some(c) = &cursor {
                    path += &format!("&cursor={c}");
                }
                let r = get(path, key.clone()).await?;
                pages += 1;
                up += r["upserts"].as_array().map_or(0, Vec::len);
                rm += r["removals"].as_array().map_or(0, Vec::len);
                cursor = r["next_cursor"].as_str().map(String::from);
                if r["more"] != true {
                    break;
                }
            }
            Ok::<_, anyhow::Error>((t.elapsed(), up, rm, pages, cursor))
        }
    };
    let (d, up, _, pages, admin_cursor) = sync(admin.clone(), None).await?;
    println!(
        "feed snapshot, organisation key: {up} people in {pages} pages, {:.2}s ({:.0} people/s)",
        d.as_secs_f64(),
        up as f64 / d.as_secs_f64()
    );
    let (d, up, _, pages, viewer_cursor) = sync(viewer.clone(), None).await?;
    println!(
        "feed snapshot, restricted viewer: {up} people in {pages} pages, {:.2}s",
        d.as_secs_f64()
    );
    // 200 changes through the API.
    let t = Instant::now();
    for (i, id) in ids
        .iter()
        .step_by((ids.len() / 200).max(1))
        .take(200)
        .enumerate()
    {
        let path = format!("/api/v1/orgs/{slug}/people/{id}");
        let cur = get(path.clone(), admin.clone()).await?;
        let r = client
            .patch(format!("{base}{path}"))
            .bearer_auth(&admin)
            .header("if-match", format!("\"{}\"", cur["version"]))
            .json(&json!({"phones": [{"value": format!("+41 78 {:03} {:02} {:02}", i, i % 100, i % 97), "type": "mobile"}]}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("update failed: {}", r.text().await?);
        }
    }
    println!(
        "200 updates through the API: {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let (d, up, rm, _, _) = sync(admin.clone(), admin_cursor).await?;
    println!(
        "feed delta after 200 changes, organisation key: {up} upserts, {rm} removals, {:.1} ms",
        d.as_secs_f64() * 1000.0
    );
    let (d, up, rm, _, _) = sync(viewer.clone(), viewer_cursor).await?;
    println!(
        "feed delta after 200 changes, restricted viewer: {up} upserts, {rm} removals, {:.1} ms",
        d.as_secs_f64() * 1000.0
    );
    let n = args.requests.clamp(1, 500);
    let mut lat: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        get(
            format!("/api/v1/orgs/{slug}/people?limit=50"),
            viewer.clone(),
        )
        .await?;
        lat.push(t.elapsed());
    }
    println!("restricted list, page of 50:  {}", percentiles(lat));
    let mut lat: Vec<Duration> = Vec::with_capacity(n);
    for k in 0..n {
        let t = Instant::now();
        let q = ["mül", "kel", "ros", "ann", "luc"][k % 5];
        get(
            format!("/api/v1/orgs/{slug}/people?limit=50&q={}", url_q(q)),
            viewer.clone(),
        )
        .await?;
        lat.push(t.elapsed());
    }
    println!("restricted search, page of 50: {}", percentiles(lat));
    println!("server RSS: {} KiB", rss_kib(pid).unwrap_or(0));
    let _ = child.kill().await;
    Ok(())
}

fn url_q(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
