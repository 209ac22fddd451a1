//! Secrets never reach the logs: the real binary runs with debug logging, is set up, used and
//! stopped; its whole output is searched for the password, the API-key secrets and the
//! calendar-feed secret it handled.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

#[tokio::test]
async fn no_secret_in_the_logs_of_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carebridge"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "debug")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            // A database of its own, so its first start is really a first start.
            let name = format!("t_logs_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let base = url.rsplit_once('/').unwrap().0;
            cmd.env("CAREBRIDGE_DATABASE_URL", format!("{base}/{name}"));
        }
        _ => {}
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let mut base = String::new();
    let mut token = String::new();
    while token.is_empty() {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "server exited early: {printed}"
        );
        printed.push_str(&line);
        if let Some(b) = line.strip_prefix("listening on ") {
            base = b.trim().to_string();
        }
        if let Some((_, t)) = line.split_once("/setup?token=") {
            token = t.trim().to_string();
        }
    }
    let password = "Sup3r-secret horse battery";
    let http = reqwest::Client::new();
    let r: Value = http
        .post(format!("{base}/api/v1/setup"))
        .json(&json!({
            "token": token,
            "org": {"slug": "logs", "name": "Logs"},
            "admin": {"given_name": "A", "family_name": "B", "email": "a@b.ch", "password": password}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = r["api_key"]["secret"]
        .as_str()
        .expect("setup worked")
        .to_string();
    for path in [
        "/api/v1/orgs/logs/people",
        "/api/v1/orgs/logs/audit",
        "/api/v1/orgs/nope/people",
    ] {
        http.get(format!("{base}{path}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
    }
    // A personal key and its calendar feed: the feed's secret is in the URL path, which the
    // request log records only as the route template.
    let person: Value = http
        .post(format!("{base}/api/v1/orgs/logs/people"))
        .bearer_auth(&key)
        .json(&json!({"given_name": "Feed", "family_name": "Owner"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let personal: Value = http
        .post(format!("{base}/api/v1/orgs/logs/api-keys"))
        .bearer_auth(&key)
        .json(&json!({"name": "mine", "permissions": ["duties:read"], "person_id": person["id"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let personal = personal["secret"]
        .as_str()
        .expect("personal key")
        .to_string();
    let feed: Value = http
        .post(format!("{base}/api/v1/me/calendar-feeds"))
        .bearer_auth(&personal)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let feed_url = feed["url"].as_str().expect("feed url").to_string();
    let r = http.get(format!("{base}{feed_url}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The secret is everything after the first '_' (base64url may contain '_' itself).
    let feed_secret = feed_url
        .trim_start_matches("/calendar/v1/")
        .trim_end_matches(".ics")
        .split_once('_')
        .unwrap()
        .1
        .to_string();
    // A wrong key, and a key in a query string, are not logged either.
    http.get(format!("{base}/api/v1/orgs/logs/people?cursor={key}"))
        .bearer_auth(format!("{key}x"))
        .send()
        .await
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown on SIGTERM exits 0");
    out.read_to_string(&mut printed).unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let all = format!("{printed}{logs}");
    assert!(all.contains("request"), "the request log is there: {all}");
    // `cbk_<id>_<secret>`: the secret may contain '_' itself.
    let secret_of = |k: &str| {
        k.trim_start_matches("cbk_")
            .split_once('_')
            .unwrap()
            .1
            .to_string()
    };
    let secret_part = secret_of(&key);
    assert!(!all.contains(password), "password in logs");
    assert!(!all.contains(&secret_part), "API-key secret in logs");
    assert!(!all.contains(&secret_of(&personal)), "personal key in logs");
    assert!(!all.contains(&feed_secret), "calendar feed secret in logs");
}
