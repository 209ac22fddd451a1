//! Delivery of the outbox: e-mail to a real SMTP server (Python's `aiosmtpd`, started by the
//! test), SMS to a webhook gateway (a local HTTP server recording requests), retries with
//! back-off when the SMTP server is down, and the development sink when nothing is configured.

use std::time::Duration;

use carebridge_testkit::TestServer;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `python3 -m aiosmtpd` printing every message; installs aiosmtpd when missing.
async fn smtp_server() -> (
    tokio::process::Child,
    u16,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let have = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        let st = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "aiosmtpd"])
            .status()
            .expect("python3 is needed for the SMTP test");
        assert!(st.success(), "pip install aiosmtpd failed");
    }
    let port = free_port();
    let mut child = tokio::process::Command::new("python3")
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Debugging",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send(l);
        }
    });
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, port, rx)
}

/// A local SMS gateway that records the JSON it is sent: `(url, what it got)`.
async fn sms_gateway() -> (String, std::sync::Arc<tokio::sync::Mutex<Vec<Value>>>) {
    let got = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<Value>::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().await.push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (gw, got)
}

async fn rows(s: &TestServer) -> Vec<carebridge_notify::Listed> {
    carebridge_notify::list(&s.running.state.db, 50)
        .await
        .unwrap()
}

async fn wait_for<F: Fn(&[carebridge_notify::Listed]) -> bool>(
    s: &TestServer,
    f: F,
) -> Vec<carebridge_notify::Listed> {
    for _ in 0..100 {
        let r = rows(s).await;
        if f(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "outbox never reached the expected state: {:?}",
        rows(s).await
    );
}

#[tokio::test]
async fn invitations_are_mailed_through_a_real_smtp_server() {
    let (_smtp, port, mut seen) = smtp_server().await;
    let s = TestServer::start_with(|c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.mail_from = "Spitex Nord <no-reply@spitex.example>".into();
    })
    .await;
    let k = s.org("acme").await;
    let (_, p) = s
        .post(&k, "/api/v1/orgs/acme/people", &json!({"given_name": "Ida", "family_name": "I", "emails": [{"value": "ida@example.org", "type": "work"}]}))
        .await;
    let (st, _) = s
        .post(
            &k,
            &format!(
                "/api/v1/orgs/acme/people/{}/invitation",
                p["id"].as_str().unwrap()
            ),
            &Value::Null,
        )
        .await;
    assert_eq!(st, 201);
    let r = wait_for(&s, |r| r.iter().any(|m| m.state == "sent")).await;
    assert!(
        r[0].body.is_empty(),
        "a sent message's body (a link) is erased"
    );
    // What the SMTP server received: sender, recipient, subject and the link.
    let mut text = String::new();
    while let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(2), seen.recv()).await {
        text.push_str(&l);
        text.push('\n');
        if l.contains("END MESSAGE") {
            break;
        }
    }
    let decoded = text.replace("=\n", "").replace("=3D", "=");
    assert!(decoded.contains("ida@example.org"), "{text}");
    assert!(decoded.contains("no-reply@spitex.example"), "{text}");
    assert!(
        decoded.contains(&format!("{}/account/password?token=", s.base)),
        "{text}"
    );
}

#[tokio::test]
async fn a_down_smtp_server_means_retries_with_back_off_not_loss() {
    let port = free_port();
    let s = TestServer::start_with(|c| c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"))).await;
    let k = s.org("acme").await;
    let (_, p) = s
        .post(&k, "/api/v1/orgs/acme/people", &json!({"given_name": "Ida", "family_name": "I", "emails": [{"value": "ida@example.org", "type": "work"}]}))
        .await;
    s.post(
        &k,
        &format!(
            "/api/v1/orgs/acme/people/{}/invitation",
            p["id"].as_str().unwrap()
        ),
        &Value::Null,
    )
    .await;
    let r = wait_for(&s, |r| r.first().is_some_and(|m| m.attempts == 1)).await;
    assert_eq!(r[0].state, "pending");
    assert!(r[0].last_error.is_some());
    assert!(!r[0].body.is_empty(), "kept for the next attempt");
    // Not again before the back-off (30 s on the server's clock) …
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rows(&s).await[0].attempts, 1);
    // … then again.
    s.clock.advance(Duration::from_secs(31));
    wait_for(&s, |r| r.first().is_some_and(|m| m.attempts == 2)).await;
}

#[tokio::test]
async fn sms_codes_go_to_the_gateway_and_without_one_to_the_sink() {
    // A gateway that records what it is sent.
    let (gw, got) = sms_gateway().await;
    let s = TestServer::start_with(|c| c.sms_webhook_url = Some(gw)).await;
    let k = s.org("acme").await;
    // An SMS second factor for a client: the code goes out through the gateway.
    s.member(
        &k,
        "acme",
        "client",
        "clara@example.org",
        Some("+41 79 123 45 67"),
        "correct horse battery",
    )
    .await;
    let (_, c) = s
        .post(&k, "/api/v1/orgs/acme/oauth-clients", &json!({"name": "App", "redirect_uris": ["http://127.0.0.1:9/cb"], "grants": ["authorization_code"], "scopes": ["openid"], "first_party": true}))
        .await;
    let b = carebridge_testkit::Browser::new(&s);
    let mut u = url::Url::parse(&s.url("/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", c["client"]["client_id"].as_str().unwrap())
        .append_pair("redirect_uri", "http://127.0.0.1:9/cb")
        .append_pair("scope", "openid");
    let p = b.get(u.as_str()).await;
    let mfa = b
        .sign_in(&p, "clara@example.org", "correct horse battery")
        .await;
    assert!(mfa.body.contains("name=\"code\""));
    for _ in 0..50 {
        if !got.lock().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = got.lock().await.clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["to"], "+41791234567");
    let text = sent[0]["text"].as_str().unwrap();
    let code: String = text.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{text}");
    // The code from the gateway signs in.
    let r = b
        .follow(
            b.submit(&mfa, "/oauth2/mfa", &[("method", "sms"), ("code", &code)])
                .await,
        )
        .await;
    assert!(r.location.is_some_and(|l| l.contains("code=")));
    // E-mail has no transport here: the invitation sits in the development sink, readable.
    let r = wait_for(&s, |r| {
        r.iter().any(|m| m.channel == "email" && m.state == "sink")
    })
    .await;
    let invite = r.iter().find(|m| m.channel == "email").unwrap();
    assert!(invite.body.contains("/account/password?token="));
}

#[tokio::test]
async fn shutdown_drains_what_is_due() {
    let (gw, got) = sms_gateway().await;
    let s = TestServer::start_with(|c| c.sms_webhook_url = Some(gw)).await;
    // Queued right before the stop (the worker ticks every 500 ms; the drain must not wait).
    let db = s.running.state.db.clone();
    let mut tx = db.begin().await.unwrap();
    carebridge_store::outbox::enqueue(
        &mut tx,
        uuid::Uuid::new_v4(),
        None,
        carebridge_store::outbox::Channel::Sms,
        "+41790000000",
        None,
        "bye",
        "test",
        carebridge_testkit::t0().as_millisecond(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    s.stop().await;
    let sent = got.lock().await.clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["text"], "bye");
}

#[tokio::test]
async fn sms_through_twilio_in_its_own_request_format_and_delivery_metrics() {
    // A stand-in for api.twilio.com that records the form and the credentials it gets.
    type Got = std::sync::Arc<tokio::sync::Mutex<Vec<(String, Vec<(String, String)>)>>>;
    let got: Got = Default::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/2010-04-01/Accounts/AC0123/Messages.json",
        axum::routing::post(
            move |h: axum::http::HeaderMap,
                  axum::extract::Form(f): axum::extract::Form<Vec<(String, String)>>| {
                let g = g.clone();
                async move {
                    let auth = h["authorization"].to_str().unwrap().to_string();
                    g.lock().await.push((auth, f));
                    (
                        axum::http::StatusCode::CREATED,
                        axum::Json(serde_json::json!({"sid": "SM1", "status": "queued"})),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let s = TestServer::start_with(|c| {
        c.sms_twilio = Some(carebridge_server::config::TwilioConfig {
            account_sid: "AC0123".into(),
            auth_token: "tw-secret".into(),
            from: "+41445550000".into(),
            api_base: base,
        })
    })
    .await;
    let mut tx = s.running.state.db.begin().await.unwrap();
    carebridge_store::outbox::enqueue(
        &mut tx,
        uuid::Uuid::new_v4(),
        None,
        carebridge_store::outbox::Channel::Sms,
        "+41791234567",
        None,
        "Ihr Code: 123456",
        "test",
        carebridge_testkit::t0().as_millisecond(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    wait_for(&s, |r| r.iter().any(|m| m.state == "sent")).await;
    let sent = got.lock().await.clone();
    assert_eq!(sent.len(), 1);
    use base64::Engine;
    assert_eq!(
        sent[0].0,
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("AC0123:tw-secret")
        )
    );
    let form: std::collections::HashMap<_, _> = sent[0].1.iter().cloned().collect();
    assert_eq!(form["To"], "+41791234567");
    assert_eq!(form["From"], "+41445550000");
    assert_eq!(form["Body"], "Ihr Code: 123456");
    // Delivery shows in the metrics.
    let m = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.lines()
            .any(|l| l.starts_with("outbox_delivered_total{channel=\"sms\"}")),
        "{m}"
    );
    assert!(m.contains("outbox_waiting"), "{m}");
    // The auth token is not in the config's debug form.
    let dbg = format!(
        "{:?}",
        carebridge_server::config::TwilioConfig {
            account_sid: "AC0123".into(),
            auth_token: "tw-secret".into(),
            from: "x".into(),
            api_base: "y".into(),
        }
    );
    assert!(!dbg.contains("tw-secret"), "{dbg}");
}
