//! Secrets never reach the logs: the real binary runs with debug logging, is set up, used and
//! stopped; its whole output is searched for the password, the API-key secrets, the
//! calendar-feed secret, and every secret of a sign-in (device code, tokens, TOTP seed,
//! recovery code, a wrong password) it handled. (A 6-digit TOTP code is not searched for: it
//! would match timestamps by chance.)

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
    // From here on, drain both pipes in the background: a server whose log pipe is full blocks
    // on its next log line.
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut err = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
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
    // Sign-in through the OpenID provider: the member CLI's device flow, the admin's password,
    // TOTP enrolment (admins must use a second factor), tokens, a refresh, a wrong password,
    // and a password-reset link.
    let form = |fields: &[(&str, &str)]| {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let dev: Value = http
        .post(format!("{base}/oauth2/device_authorization"))
        .form(&form(&[
            ("client_id", "carebridge-cli"),
            ("scope", "openid offline_access duties:read"),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = dev["device_code"]
        .as_str()
        .expect("device code")
        .to_string();
    let b = carebridge_testkit::Browser::at(&base);
    let page = b
        .get(dev["verification_uri_complete"].as_str().unwrap())
        .await;
    let wrong = b
        .submit(
            &page,
            "/oauth2/login",
            &[
                ("login", "a@b.ch"),
                ("password", "Wrong-secret horse battery"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401);
    let enrol = b.sign_in(&page, "a@b.ch", password).await;
    let totp_secret = enrol
        .body
        .split("<code>")
        .nth(1)
        .expect("TOTP enrolment")
        .split("</code>")
        .next()
        .unwrap()
        .to_string();
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&totp_secret).unwrap())
        .with_account_name("x")
        .build()
        .unwrap();
    // The real binary runs on the wall clock, so its authenticator app does too.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let totp_code = totp.generate(now).to_string();
    let rec = b
        .submit(&enrol, "/oauth2/mfa/enrol", &[("code", &totp_code)])
        .await;
    let recovery = rec
        .body
        .split("<li><code>")
        .nth(1)
        .expect("recovery codes")
        .split("</code>")
        .next()
        .unwrap()
        .to_string();
    let confirm = b
        .follow(
            b.get(&carebridge_testkit::unescape(
                rec.body
                    .split("<a href=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap(),
            ))
            .await,
        )
        .await;
    let done = b
        .submit(
            &confirm,
            "/oauth2/device",
            &[
                ("user_code", dev["user_code"].as_str().unwrap()),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let tokens: Value = http
        .post(format!("{base}/oauth2/token"))
        .form(&form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", "carebridge-cli"),
            ("device_code", &device_code),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().expect("tokens").to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    let r = http
        .get(format!("{base}/api/v1/me/duties"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let refreshed: Value = http
        .post(format!("{base}/oauth2/token"))
        .form(&form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "carebridge-cli"),
            ("refresh_token", &refresh),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh2 = refreshed["refresh_token"]
        .as_str()
        .expect("refreshed")
        .to_string();
    let f = b.get("/account/forgot").await;
    b.submit(&f, "/account/forgot", &[("login", "a@b.ch")])
        .await;
    // No mail transport: the reset link waits in the development sink, which the operator
    // reads with `carebridge outbox list` (and which must not leak it into the logs).
    let mut reset_token = String::new();
    for _ in 0..50 {
        let out = Command::new(env!("CARGO_BIN_EXE_carebridge"))
            .args(["outbox", "list"])
            .current_dir(dir.path())
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("reset to a@b.ch [sink") {
            reset_token = text
                .split("token=")
                .nth(1)
                .unwrap()
                .split(['&', '\n'])
                .next()
                .unwrap()
                .to_string();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        reset_token.len() > 20,
        "the reset link is in the development sink"
    );
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
    printed.push_str(&out_thread.join().unwrap());
    let logs = err_thread.join().unwrap();
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
    for (what, secret) in [
        ("device code", device_code.trim_start_matches("cbd_")),
        ("access token", access.as_str()),
        ("access token signature", access.rsplit('.').next().unwrap()),
        ("ID token", id_token.as_str()),
        ("refresh token", refresh.trim_start_matches("cbr_")),
        ("rotated refresh token", refresh2.trim_start_matches("cbr_")),
        ("TOTP seed", totp_secret.as_str()),
        ("recovery code", recovery.as_str()),
        ("wrong password", "Wrong-secret horse battery"),
        ("reset link", reset_token.as_str()),
        // Also any longer piece of it (a log that masks digits must not leak the rest).
        ("reset link piece", longest_run(&reset_token)),
    ] {
        assert!(!all.contains(secret), "{what} in logs");
    }
}

/// The longest run of letters in `s` (a piece of a secret that survives digit masking), or
/// the whole secret when no run is long enough to mean something.
fn longest_run(s: &str) -> &str {
    s.split(|c: char| !c.is_ascii_alphabetic())
        .max_by_key(|p| p.len())
        .filter(|p| p.len() >= 8)
        .unwrap_or(s)
}
