//! The member and client app (`/app`, a PWA) in a real browser: headless Chromium driven by
//! Playwright (`tests/console-browser/app.test.mjs`) against the real server. A member finds
//! the organisation through discovery, signs in, sees their duties and 5,000 contacts, searches
//! them as they type, goes offline and still finds a colleague's phone number, and signs out,
//! which wipes the device's copy. A relative signs in with password and SMS code (read from the
//! server's outbox by this test and handed to the browser run), sees the client's visits with
//! who is coming, asks to cancel one, writes to the organisation and makes a calendar link. A
//! capture of every request shows no `Authorization` header to discovery or settings.

use std::process::Stdio;

use carebridge_domain::Clock;
use carebridge_testkit::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PW: &str = "correct horse battery";

/// The serving side of the app: the shell for its pages, files revalidated, a strict CSP.
#[tokio::test]
async fn the_app_shell_is_served_with_its_manifest_and_worker() {
    let s = TestServer::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(s.url("/app")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/app/");
    for path in ["/app/", "/app/callback"] {
        let r = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        let body = r.text().await.unwrap();
        assert!(
            body.contains("/app/app.js") && body.contains("/app/manifest.webmanifest"),
            "{body}"
        );
    }
    let r = http
        .get(s.url("/app/manifest.webmanifest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/manifest+json");
    let m: Value = r.json().await.unwrap();
    assert_eq!(
        (m["start_url"].as_str(), m["display"].as_str()),
        (Some("/app/"), Some("standalone"))
    );
    let r = http.get(s.url("/app/sw.js")).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let sw = r.text().await.unwrap();
    assert!(
        sw.contains("carebridge-app-") && !sw.contains("__VERSION__"),
        "{sw}"
    );
    let r = http
        .get(s.url("/app/sw.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = http.get(s.url("/app/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // The app's OAuth client is built in, with its callback on this server.
    let r = http
        .get(s.url("/oauth2/authorize?response_type=code&client_id=carebridge-app&redirect_uri=http://evil.example/app/callback&code_challenge=x&code_challenge_method=S256&scope=openid"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 303, "a foreign redirect URI is never used");
}

/// A Playwright script in `tests/console-browser`, run by Node against the test server. It
/// talks to the test over standard input and output: it prints its steps and figures, and
/// requests that the test answers with one line each (SMS codes, actions of Rust devices).
struct BrowserRun {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    err: tokio::task::JoinHandle<String>,
    log: String,
}

impl BrowserRun {
    /// Starts `script` with `env` (plus `CHROMIUM` and `SHOTS`, the screenshot folder
    /// `<target>/app-screenshots`).
    fn start(script: &str, env: &[(&str, String)]) -> BrowserRun {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console-browser");
        let chromium = crate::console::browser_prerequisites(dir);
        let target = std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_string());
        let shots = format!("{target}/app-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("SHOTS", &shots)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node (Node.js) is needed for the browser tests");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();
        let err = tokio::spawn(async move {
            let mut s = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
            s
        });
        BrowserRun {
            child,
            stdin,
            lines,
            err,
            log: String::new(),
        }
    }

    /// The script's next line (kept for the log), `None` when it ended.
    async fn next(&mut self) -> Option<String> {
        let line = self.lines.next_line().await.unwrap()?;
        self.log.push_str(&line);
        self.log.push('\n');
        Some(line)
    }

    async fn answer(&mut self, answer: &str) {
        self.stdin
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Waits for the script to end; fails with its whole output unless it succeeded and said
    /// "ok". The output (with the measured figures) is printed for `--nocapture` runs.
    async fn finish(mut self) {
        let status = self.child.wait().await.unwrap();
        let log = format!("{}{}", self.log, self.err.await.unwrap());
        assert!(status.success(), "the browser run failed:\n{log}");
        assert!(log.contains("\nok"), "{log}");
        eprintln!("{log}");
    }
}

/// At most five minutes for a browser run.
const BROWSER_RUN: std::time::Duration = std::time::Duration::from_secs(300);

/// The real time: the browser's clock is real, so the server's test clock starts there.
#[allow(clippy::disallowed_methods)]
fn real_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// RFC 3339 of the server's clock plus `h` hours.
fn hours(s: &TestServer, h: i64) -> String {
    jiff::Timestamp::from_second(s.clock.now().as_second() + h * 3600)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn app_browser() {
    let s = TestServer::start().await;
    // The browser reads the real clock; so does the server here.
    s.clock.set(real_now());
    let k = s.org("acme").await;
    let (_, org) = s.get(&k, "/api/v1/orgs/acme").await;
    let (st, r) = s
        .patch(
            &k,
            "/api/v1/orgs/acme",
            &format!("\"{}\"", org["version"]),
            &json!({"name": "Spitex Acme", "discoverable": true}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let (st, r) = s
        .put(
            &k,
            "/api/v1/orgs/acme/mfa-policy",
            &json!({"required_for": ["client", "relative"]}),
        )
        .await;
    assert_eq!(st, 200, "{r}");

    // 5,000 colleagues in Team Nord, imported; members of the team see each other's names,
    // phones and e-mails.
    let mut csv = String::from("Personalnummer;Vorname;Nachname;Handy;E-Mail;Einheit\n");
    for i in 0..5000 {
        csv.push_str(&format!(
            "E{i};Vorname{i};Kollege{i};+41 79 {:03} {:02} {:02};k{i}@acme.example;Team Nord\n",
            200 + i / 10000,
            (i / 100) % 100,
            i % 100
        ));
    }
    csv.push_str("E-BEA;Bea;Brunner;+41 79 555 12 34;bea@acme.example;Team Nord\n");
    let r = s
        .http
        .post(s.url("/api/v1/orgs/acme/people/import?create_units=true"))
        .bearer_auth(&k)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let (st, rep) = carebridge_testkit::read(r).await;
    assert_eq!(st, 200, "{rep}");
    let (_, units) = s.get(&k, "/api/v1/orgs/acme/units?limit=100").await;
    let team = units["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "Team Nord")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, g) = s
        .post(
            &k,
            "/api/v1/orgs/acme/contact-grants",
            &json!({"viewer": {"kind": "unit", "id": team}, "target": {"kind": "unit", "id": team},
                    "fields": ["name", "phones", "emails"]}),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let mia = s
        .member(&k, "acme", "staff", "mia@acme.example", None, PW)
        .await;
    let (_, p) = s.get(&k, &format!("/api/v1/orgs/acme/people/{mia}")).await;
    let (st, r) = s
        .patch(
            &k,
            &format!("/api/v1/orgs/acme/people/{mia}"),
            &format!("\"{}\"", p["version"]),
            &json!({"given_name": "Mia", "family_name": "Meier", "unit_ids": [team]}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    // Mia's confirmed duty tomorrow.
    let (st, d) = s
        .post(
            &k,
            "/api/v1/orgs/acme/duties",
            &json!({"unit_id": team, "title": "Nachtdienst Notruf", "location": "Wache Nord",
                    "starts_at": hours(&s, 20), "ends_at": hours(&s, 28), "time_zone": "Europe/Zurich"}),
        )
        .await;
    assert_eq!(st, 201, "{d}");
    let (st, a) = s
        .post(
            &k,
            &format!(
                "/api/v1/orgs/acme/duties/{}/assignments",
                d["id"].as_str().unwrap()
            ),
            &json!({"person_id": mia, "role": "helper"}),
        )
        .await;
    assert_eq!(st, 201, "{a}");
    // As a member of the team she may read its duty calendar: an open duty to sign up for.
    let (st, r) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": mia, "role": "member", "unit_id": team}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let (st, open) = s
        .post(
            &k,
            "/api/v1/orgs/acme/duties",
            &json!({"unit_id": team, "title": "Tagdienst Markt", "location": "Marktplatz",
                    "starts_at": hours(&s, 44), "ends_at": hours(&s, 50), "time_zone": "Europe/Zurich"}),
        )
        .await;
    assert_eq!(st, 201, "{open}");
    let mia_key = s.person_key(&k, "acme", &mia, &[]).await;
    let (st, list) = s
        .get(
            &mia_key,
            &format!(
                "/api/v1/orgs/acme/duties?from={}&to={}&state=planned&limit=100",
                hours(&s, 0),
                hours(&s, 24 * 30)
            ),
        )
        .await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(2),
        "a member reads the team's duties: {list}"
    );

    // Rita, relative of the client Clara, with her mobile for the SMS code; the ERP feeds the
    // portal.
    let rita = s
        .member(
            &k,
            "acme",
            "relative",
            "rita@example.org",
            Some("+41 79 100 00 02"),
            PW,
        )
        .await;
    let (erp_client, _) = crate::portal::clients(&s, &k, "acme").await;
    let erp = crate::portal::erp_token(&s, &erp_client, "portal:erp").await;
    for (path, body) in [
        (
            "/portal/v1/erp/settings",
            json!({"name": "Spitex Acme", "language": "de", "time_zone": "Europe/Zurich", "show_photos": false}),
        ),
        (
            "/portal/v1/erp/clients",
            json!([{"id": "K1", "given_name": "Clara", "family_name": "Keller"}]),
        ),
        (
            "/portal/v1/erp/appointments",
            json!([{"id": "A1", "client": "K1", "start": hours(&s, 48), "end": hours(&s, 49), "service": "Grundpflege", "carer_first_name": "Petra"},
                   {"id": "A2", "client": "K1", "start": hours(&s, 72), "end": hours(&s, 73), "service": "Hauswirtschaft"}]),
        ),
        (
            "/portal/v1/erp/links",
            json!([{"client": "K1", "subject": rita, "relation": "relative", "messages": true}]),
        ),
    ] {
        let (st, r) = s.put(&erp, path, &body).await;
        assert_eq!(st, 200, "{path}: {r}");
    }

    let mut run = BrowserRun::start(
        "app.test.mjs",
        &[
            ("BASE", s.url("")),
            ("MEMBER", "mia@acme.example".into()),
            ("RELATIVE", "+41791000002".into()),
            ("PASSWORD", PW.into()),
            ("COLLEAGUE", "Bea Brunner".into()),
            ("COLLEAGUE_PHONE", "+41795551234".into()),
            ("CONTACTS", "5002".into()),
        ],
    );
    // The browser run asks for SMS codes ("SMS <phone>"; the answer is the newest code the
    // server texted to that phone) and to switch the directory ("DIRECTORY off|on").
    let drive = async {
        while let Some(line) = run.next().await {
            if let Some(phone) = line.strip_prefix("SMS ") {
                let code = s.texted_code(phone.trim()).await;
                run.answer(&code).await;
            } else if let Some(state) = line.strip_prefix("DIRECTORY ") {
                let on = state.trim() == "on";
                let (st, f) = s
                    .put(
                        &k,
                        "/api/v1/orgs/acme/features/directory",
                        &json!({"enabled": on}),
                    )
                    .await;
                assert_eq!((st, &f["enabled"]), (200, &json!(on)), "{f}");
                run.answer("ok").await;
            }
        }
    };
    tokio::time::timeout(BROWSER_RUN, drive)
        .await
        .expect("the browser run took over 5 minutes");
    run.finish().await;

    // Mia's sign-up is a request on the open duty.
    let (st, roster) = s
        .get(
            &k,
            &format!(
                "/api/v1/orgs/acme/duties/{}/assignments",
                open["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(st, 200, "{roster}");
    assert!(
        roster.to_string().contains(&mia) && roster.to_string().contains("requested"),
        "{roster}"
    );
    // What the browser did is what the portal holds.
    let (st, reqs) = s.get(&erp, "/portal/v1/erp/requests").await;
    assert_eq!(st, 200, "{reqs}");
    let reqs = reqs.as_array().unwrap();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["kind"], "cancel");
    assert_eq!(reqs[0]["reason"], "Wir sind an dem Tag verreist.");
    let (st, msgs) = s.get(&erp, "/portal/v1/erp/messages").await;
    assert_eq!(st, 200, "{msgs}");
    assert!(
        msgs.as_array()
            .unwrap()
            .iter()
            .any(|m| m["subject"] == "Schlüssel"),
        "{msgs}"
    );
    // Sign-out revoked the member's grant: the identity shows no session for Mia.
    let mia_key = s.person_key(&k, "acme", &mia, &[]).await;
    let (st, sessions) = s.get(&mia_key, "/api/v1/me/sessions").await;
    assert_eq!(st, 200, "{sessions}");
    assert_eq!(sessions.as_array().map(Vec::len), Some(0), "{sessions}");
}

/// A duty chat between two browsers (ts-mls, in Chromium) and Rust devices (openmls, the
/// member SDK): the browsers join from a Rust device's Welcome, messages and encrypted
/// attachments go both ways (and browser to browser, timed), a roster change adds a Rust device
/// through a commit the browsers race to make, the chat turns read-only, the dispatcher's
/// removal takes one browser out, an admin's device removal wipes the other's chat keys, and
/// sign-out removes the device. The browser run (`app-chat.test.mjs`) asks this test to act for the Rust devices and the
/// dispatcher over standard input and output ("ASK …" / the answer).
#[tokio::test]
async fn app_chat_browser() {
    use carebridge_client::content::Content;

    let s = TestServer::start().await;
    s.clock.set(real_now());
    let k = s.org("acme").await;
    let (st, r) = s
        .put(
            &k,
            "/api/v1/orgs/acme/features/chat",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let (st, u) = s
        .post(&k, "/api/v1/orgs/acme/units", &json!({"name": "Sanität"}))
        .await;
    assert_eq!(st, 201, "{u}");
    let unit = u["id"].as_str().unwrap().to_string();
    let mia = s
        .member(&k, "acme", "staff", "mia@acme.example", None, PW)
        .await;
    let nora = s
        .member(&k, "acme", "staff", "nora@acme.example", None, PW)
        .await;
    let mut people = vec![];
    for given in ["Ben", "Carl"] {
        let (st, p) = s
            .post(
                &k,
                "/api/v1/orgs/acme/people",
                &json!({"given_name": given, "family_name": "Muster", "unit_ids": [unit]}),
            )
            .await;
        assert_eq!(st, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        let key = s.person_key(&k, "acme", &id, &[]).await;
        people.push((id, key));
    }
    let (st, d) = s
        .post(
            &k,
            "/api/v1/orgs/acme/duties",
            &json!({"unit_id": unit, "title": "Sanitätsdienst Stadtlauf", "chat": true,
                    "starts_at": hours(&s, 20), "ends_at": hours(&s, 28), "time_zone": "Europe/Zurich"}),
        )
        .await;
    assert_eq!(st, 201, "{d}");
    let duty: uuid::Uuid = d["id"].as_str().unwrap().parse().unwrap();
    let assign = |person: String| {
        let s = &s;
        let k = &k;
        async move {
            let (st, a) = s
                .post(
                    k,
                    &format!("/api/v1/orgs/acme/duties/{duty}/assignments"),
                    &json!({"person_id": person, "role": "helper"}),
                )
                .await;
            assert_eq!(st, 201, "{a}");
            a["id"].as_str().unwrap().to_string()
        }
    };
    let step = || async {
        let r = &s.running;
        carebridge_chat::service::step(&r.state.db, &r.chat, r.state.now())
            .await
            .unwrap()
    };
    let mia_assignment = assign(mia.clone()).await;
    assign(nora.clone()).await;
    assign(people[0].0.clone()).await;
    step().await;
    let mut ben = carebridge_client::Device::register(&s.base, &people[0].1, "Ben phone", 5)
        .await
        .unwrap();
    let mut carl = carebridge_client::Device::register(&s.base, &people[1].1, "Carl phone", 5)
        .await
        .unwrap();
    ben.open(duty).await.unwrap();
    assert!(ben.joined(duty), "Ben's device made the group");

    // A real PNG for the attachments both ways.
    let png = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../app/web/public/icon-192.png"
    ))
    .unwrap();
    let file = s.dir().join("einsatzplan.png");
    std::fs::write(&file, &png).unwrap();

    let mut run = BrowserRun::start(
        "app-chat.test.mjs",
        &[
            ("BASE", s.url("")),
            ("MEMBER", "mia@acme.example".into()),
            ("SECOND", "nora@acme.example".into()),
            ("PASSWORD", PW.into()),
            ("DUTY", duty.to_string()),
            ("FILE", file.display().to_string()),
        ],
    );
    let texts = |got: Vec<carebridge_client::Received>| -> Vec<Content> {
        got.iter().map(|r| Content::decode(&r.plaintext)).collect()
    };
    let drive = async {
        while let Some(line) = run.next().await {
            let Some(ask) = line.strip_prefix("ASK ") else {
                continue;
            };
            let (cmd, arg) = ask.split_once(' ').unwrap_or((ask, ""));
            let answer: String = match cmd {
                // Ben's device commits the server's proposal that adds the browser.
                "ben-commit" => match ben.sync(duty).await {
                    Ok(_) => "ok".into(),
                    Err(e) => format!("fail {e}"),
                },
                "ben-read" => match ben.sync(duty).await {
                    Ok(got) if texts(got.clone()).contains(&Content::text(arg)) => "ok".into(),
                    Ok(got) => format!("fail Ben read {:?}", texts(got)),
                    Err(e) => format!("fail {e}"),
                },
                "ben-send" => {
                    let t0 = real_now().as_millisecond();
                    match ben.send_text(duty, arg).await {
                        Ok(_) => format!("ok {t0}"),
                        Err(e) => format!("fail {e}"),
                    }
                }
                "ben-read-file" => match ben.sync(duty).await {
                    Ok(got) => {
                        let mut answer = format!("fail no attachment in {:?}", texts(got.clone()));
                        for c in texts(got) {
                            if let Content::Attachment(a) = c {
                                answer = match ben.download(duty, &a).await {
                                    Ok(bytes) if bytes == png && a.mime == "image/png" => {
                                        "ok".into()
                                    }
                                    Ok(bytes) => {
                                        format!("fail {} bytes of {}", bytes.len(), a.mime)
                                    }
                                    Err(e) => format!("fail {e}"),
                                };
                            }
                        }
                        answer
                    }
                    Err(e) => format!("fail {e}"),
                },
                "ben-send-file" => match ben
                    .send_attachment(duty, "lageplan.png", "image/png", &png)
                    .await
                {
                    Ok(_) => "ok".into(),
                    Err(e) => format!("fail {e}"),
                },
                // The dispatcher puts Carl on the roster: the server proposes his device, and
                // the browser (online) commits it.
                "add-carl" => {
                    assign(people[1].0.clone()).await;
                    step().await;
                    "ok".into()
                }
                "carl-joined" => {
                    let mut joined = false;
                    for _ in 0..50 {
                        if carl.open(duty).await.is_ok() && carl.joined(duty) {
                            joined = true;
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                    match (joined, carl.send_text(duty, arg).await) {
                        (true, Ok(_)) => "ok".into(),
                        (j, r) => format!("fail joined {j}: {r:?}"),
                    }
                }
                // Two days after the duty's end the chat turns read-only.
                "read-only" => {
                    s.clock
                        .set(real_now() + jiff::SignedDuration::from_hours(28 + 48 + 1));
                    step().await;
                    "ok".into()
                }
                // The dispatcher takes Mia off the roster; Ben's device commits the removal.
                "remove-mia" => {
                    let (st, b) = s
                        .delete(
                            &k,
                            &format!(
                                "/api/v1/orgs/acme/duties/{duty}/assignments/{mia_assignment}"
                            ),
                        )
                        .await;
                    assert_eq!(st, 204, "{b}");
                    step().await;
                    match ben.sync(duty).await {
                        Ok(got)
                            if texts(got.clone()).contains(&Content::text("Carl ist dabei")) =>
                        {
                            "ok".into()
                        }
                        other => format!("fail {other:?}"),
                    }
                }
                // An admin removes Nora's browser device (a lost phone).
                "remove-device" => {
                    let path = format!("/api/v1/orgs/acme/people/{nora}/chat-devices");
                    let (_, devs) = s.get(&k, &path).await;
                    let mut answer = "fail no device".to_string();
                    for d in devs.as_array().cloned().unwrap_or_default() {
                        let (st, _) = s
                            .delete(&k, &format!("{path}/{}", d["id"].as_str().unwrap_or("")))
                            .await;
                        answer = if st == 204 {
                            "ok".into()
                        } else {
                            format!("fail {st}")
                        };
                    }
                    answer
                }
                "devices" => {
                    let who = if arg == "nora" { &nora } else { &mia };
                    let (_, devs) = s
                        .get(&k, &format!("/api/v1/orgs/acme/people/{who}/chat-devices"))
                        .await;
                    format!("ok {}", devs.as_array().map(Vec::len).unwrap_or(99))
                }
                _ => format!("fail unknown command {cmd}"),
            };
            run.answer(&answer).await;
        }
    };
    tokio::time::timeout(BROWSER_RUN, drive)
        .await
        .expect("the browser run took over 5 minutes");
    run.finish().await;
    // The Rust devices agree on the group the browsers changed (no fork), once one of them
    // committed the removal of Nora's device.
    carl.sync(duty).await.unwrap();
    ben.sync(duty).await.unwrap();
    assert!(carl.joined(duty));
    assert_eq!(
        ben.epoch_authenticator(duty),
        carl.epoch_authenticator(duty)
    );
}
