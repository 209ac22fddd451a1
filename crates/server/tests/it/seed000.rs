//! Seed 000's promise, end to end, against real processes of the `carebridge` binary:
//!
//! - identity (with directory and notify) in one process,
//! - the backend in a second process on the same database, behind a proxy that records every
//!   request it receives,
//! - the customer portal in a third process with a database of its own, trusting identity
//!   through its published keys only.
//!
//! The app's five steps run in order: sign in with password + SMS code (read from the SMS
//! sink), token, discovery, settings, appointments from the portal. Then: no request the backend
//! received carried an `Authorization` header or the access token.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use carebridge_testkit::Browser;
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

/// A child process of the real binary; killed on drop.
struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `carebridge serve` with `args`, waits for its address (and, with `setup`, for the
/// set-up token of a first start); its log goes to `log`.
fn serve(args: &[&str], db: &str, log: &std::path::Path, setup: bool) -> (Proc, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_carebridge"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("CAREBRIDGE_DATABASE_URL", db)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut base, mut token) = (String::new(), None);
    let mut seen = String::new();
    while base.is_empty() || (setup && token.is_none()) {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "server exited early: {seen}"
        );
        seen.push_str(&line);
        if let Some((_, t)) = line.split_once("/setup?token=") {
            token = Some(t.trim().to_string());
        }
        if let Some(b) = line.strip_prefix("listening on ") {
            base = b.trim().to_string();
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    (Proc { child, base }, token)
}

/// A fresh database URL: a SQLite file in `dir`, or a new PostgreSQL database.
async fn database(dir: &std::path::Path, name: &str) -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let db = format!("t_{name}_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            format!("{}/{db}", url.rsplit_once('/').unwrap().0)
        }
        _ => format!("sqlite://{}/{name}.db", dir.display()),
    }
}

/// The newest outbox message to `recipient` in the database at `url` (the development sink).
async fn sink(url: &str, recipient: &str) -> String {
    let db = carebridge_store::Db::connect(&carebridge_store::DbOptions::new(url))
        .await
        .unwrap();
    let mut c = db.read().await.unwrap();
    let m = carebridge_store::outbox::to_recipient(&mut c, recipient, 1)
        .await
        .unwrap();
    drop(c);
    db.close().await;
    m.into_iter().next().expect("a message").body
}

/// What the recording proxy saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A reverse proxy in front of `upstream` that records every request; returns its base URL.
async fn recording_proxy(upstream: String, log: Arc<Mutex<Vec<Seen>>>) -> String {
    use axum::body::{Body, to_bytes};
    use axum::extract::Request;
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (http, upstream, log) = (http.clone(), upstream.clone(), log.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
            log.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect(),
                body: body.to_vec(),
            });
            let mut fwd = http.request(parts.method.clone(), format!("{upstream}{}", parts.uri));
            for (k, v) in &parts.headers {
                if k != "host" {
                    fwd = fwd.header(k, v);
                }
            }
            let r = fwd.body(body).send().await.unwrap();
            let mut out = axum::http::Response::builder().status(r.status().as_u16());
            for (k, v) in r.headers() {
                out = out.header(k, v);
            }
            out.body(Body::from(r.bytes().await.unwrap())).unwrap()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn seed_000_the_token_never_reaches_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let main_db = database(dir.path(), "main").await;
    let portal_db = database(dir.path(), "portal").await;

    // Identity (+ directory, notify) — first start prints the set-up token.
    let (id, setup) = serve(
        &["--roles", "identity,directory,notify"],
        &main_db,
        &dir.path().join("identity.log"),
        true,
    );
    let http = reqwest::Client::new();
    let r: Value = http
        .post(format!("{}/api/v1/setup", id.base))
        .json(&json!({"token": setup.expect("set-up token on first start"),
            "org": {"slug": "spitex", "name": "Spitex Seeland"},
            "admin": {"given_name": "A", "family_name": "Admin", "email": "admin@spitex.example", "password": PW}}))
        .send().await.unwrap().json().await.unwrap();
    let admin = r["api_key"]["secret"].as_str().expect("set up").to_string();
    let api = |m: reqwest::Method, p: &str| {
        http.request(m, format!("{}/api/v1/orgs/spitex{p}", id.base))
            .bearer_auth(&admin)
    };
    // The client: a person with a mobile number, invited, with a password.
    let clara: Value = api(reqwest::Method::POST, "/people")
        .json(
            &json!({"given_name": "Clara", "family_name": "Keller", "kind": "client",
            "emails": [{"value": "clara@example.org", "type": "home"}],
            "phones": [{"value": "+41 79 555 00 11", "type": "mobile"}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let clara_id = clara["id"].as_str().expect("person").to_string();
    let st = api(
        reqwest::Method::POST,
        &format!("/people/{clara_id}/invitation"),
    )
    .send()
    .await
    .unwrap()
    .status();
    assert_eq!(st, 201);
    let mail = sink(&main_db, "clara@example.org").await;
    let link = mail
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .expect("a link in the invitation")
        .to_string();
    let b = Browser::at(&id.base);
    let page = b.get(&link).await;
    let r = b
        .submit(
            &page,
            "/account/password",
            &[("password", PW), ("repeat", PW)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The ERP: a client-credentials client of the organisation.
    let erp: Value = api(reqwest::Method::POST, "/oauth-clients")
        .json(&json!({"name": "ERP", "grants": ["client_credentials"], "scopes": ["portal:erp"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // The portal, apart, with its own database.
    let (portal, _) = serve(
        &["--roles", "portal", "--identity-issuer", &id.base],
        &portal_db,
        &dir.path().join("portal.log"),
        false,
    );
    // The backend, apart, on the main database, behind the recording proxy.
    let (backend, _) = serve(
        &["--roles", "backend", "--identity-issuer", &id.base],
        &main_db,
        &dir.path().join("backend.log"),
        false,
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let backend_url = recording_proxy(backend.base.clone(), seen.clone()).await;
    // The operator publishes the portal's URL for the apps (the CLI, on the database).
    let file = dir.path().join("settings.json");
    std::fs::write(
        &file,
        json!({"languages": ["de", "fr"], "portal_url": portal.base,
            "branding": {"primary_color": "#0a5c8a"}, "app": {"appointments_days": 14}})
        .to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_carebridge"))
        .args(["org", "settings", "--org", "spitex", "--set"])
        .arg(&file)
        .env("CAREBRIDGE_DATABASE_URL", &main_db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The ERP feeds the portal.
    let t: Value = http
        .post(format!("{}/oauth2/token", id.base))
        .basic_auth(
            erp["client"]["client_id"].as_str().unwrap(),
            erp["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "portal:erp"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let erp_token = t["access_token"].as_str().expect("ERP token").to_string();
    // Real processes run on the wall clock.
    #[allow(clippy::disallowed_methods)]
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(26);
    for (path, body) in [
        (
            "/portal/v1/erp/clients",
            json!([{"id": "K-100", "given_name": "Clara", "family_name": "Keller"}]),
        ),
        (
            "/portal/v1/erp/appointments",
            json!([{"id": "T-1", "client": "K-100", "start": start,
            "end": start + jiff::SignedDuration::from_mins(45), "service": "Grundpflege", "carer_first_name": "Petra"}]),
        ),
        (
            "/portal/v1/erp/links",
            json!([{"client": "K-100", "subject": clara_id, "relation": "self"}]),
        ),
    ] {
        let r = http
            .put(format!("{}{path}", portal.base))
            .bearer_auth(&erp_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }

    // 1. Sign in: password, then the SMS code from the sink (public app client, PKCE).
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let redirect = format!("{}/app/callback", id.base);
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", id.base)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "carebridge-app")
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", "openid portal")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("org", "spitex");
    let app = Browser::at(&id.base);
    let p = app.get(u.as_str()).await;
    let mfa = app.sign_in(&p, "clara@example.org", PW).await;
    assert!(mfa.body.contains("name=\"code\""), "{}", mfa.body);
    let sms = sink(&main_db, "+41795550011").await;
    let code = sms
        .split_whitespace()
        .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
        .expect("a code in the SMS")
        .to_string();
    let mut r = app
        .submit(&mfa, "/oauth2/mfa", &[("method", "sms"), ("code", &code)])
        .await;
    // Follow the provider's own redirects up to the one back to the app.
    while let Some(l) = r.location.clone().filter(|l| !l.starts_with(&redirect)) {
        r = app.get(&l).await;
    }
    let loc = r.location.expect("back to the app");
    assert!(loc.starts_with(&redirect), "{loc}");
    let code = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    // 2. The token.
    let t: Value = http
        .post(format!("{}/oauth2/token", id.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("client_id", "carebridge-app"),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = t["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    // 3. Discovery from the backend, without the token.
    let d: Value = http
        .get(format!("{backend_url}/discovery/spitex"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], id.base.as_str(), "{d}");
    assert_eq!(d["portal_url"], portal.base.as_str());
    assert_eq!(d["languages"], json!(["de", "fr"]));
    // 4. The organisation's app settings.
    let settings: Value = http
        .get(format!("{backend_url}/discovery/spitex/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings, json!({"appointments_days": 14}));
    // 5. Appointments straight from the portal, with the token.
    let portal_url = d["portal_url"].as_str().unwrap();
    let clients: Value = http
        .get(format!("{portal_url}/portal/v1/clients"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(clients[0]["given_name"], "Clara", "{clients}");
    let appts: Value = http
        .get(format!(
            "{portal_url}/portal/v1/clients/{}/appointments",
            clients[0]["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(appts[0]["service"], "Grundpflege", "{appts}");
    assert_eq!(appts[0]["carer"]["first_name"], "Petra");

    // The backend never saw the token, nor any Authorization header.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen.iter()
            .map(|s| format!("{} {}", s.method, s.uri))
            .collect::<Vec<_>>(),
        ["GET /discovery/spitex", "GET /discovery/spitex/settings"]
    );
    for s in &seen {
        for (k, v) in &s.headers {
            assert!(!k.eq_ignore_ascii_case("authorization"), "{s:?}");
            assert!(!v.contains(&token), "{s:?}");
        }
        assert!(!s.uri.contains(&token));
        assert!(!String::from_utf8_lossy(&s.body).contains(&token));
    }
    // And had the app sent it, the backend would have refused it.
    let r = http
        .get(format!("{backend_url}/discovery/spitex"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    drop((id, portal, backend));
}
