//! The customer portal (`portal/v1`): a client and a relative sign in (password + SMS code),
//! the ERP feed fills the portal, and each sees only what their link allows. Tokens are checked
//! by the portal itself against the identity provider's JWKS — in the last tests with the portal
//! as a server of its own, with its own database, whose issuer goes away.

use carebridge_domain::Clock;
use carebridge_testkit::{Browser, TestServer};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";
const CB: &str = "http://127.0.0.1:9/cb";

/// An ERP client (client credentials, `portal:erp`) and a first-party app client (code flow,
/// `openid portal`) of `slug`: `((erp id, erp secret), (app id, app secret))`.
pub(crate) async fn clients(
    s: &TestServer,
    key: &str,
    slug: &str,
) -> ((String, String), (String, String)) {
    let mut out = vec![];
    for body in [
        json!({"name": "ERP", "grants": ["client_credentials"], "scopes": ["portal:erp"]}),
        json!({"name": "Client app", "redirect_uris": [CB], "grants": ["authorization_code"],
               "scopes": ["openid", "portal"], "first_party": true}),
    ] {
        let (st, c) = s
            .post(key, &format!("/api/v1/orgs/{slug}/oauth-clients"), &body)
            .await;
        assert_eq!(st, 201, "{c}");
        out.push((
            c["client"]["client_id"].as_str().unwrap().to_string(),
            c["client_secret"].as_str().unwrap().to_string(),
        ));
    }
    let app = out.pop().unwrap();
    (out.pop().unwrap(), app)
}

/// A client-credentials token.
pub(crate) async fn erp_token(
    s: &TestServer,
    (id, secret): &(String, String),
    scope: &str,
) -> String {
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    let (st, t) = carebridge_testkit::read(r).await;
    assert_eq!(st, 200, "{t}");
    t["access_token"].as_str().unwrap().to_string()
}

/// Signs a person in with password and the texted code; returns the access token.
pub async fn person_token(
    s: &TestServer,
    (id, secret): &(String, String),
    login: &str,
    phone: &str,
    scope: &str,
) -> String {
    let mut u = url::Url::parse(&s.url("/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", id)
        .append_pair("redirect_uri", CB)
        .append_pair("scope", scope);
    let b = Browser::new(s);
    let p = b.get(u.as_str()).await;
    let mfa = b.sign_in(&p, login, PW).await;
    assert!(mfa.body.contains("name=\"code\""), "{}", mfa.body);
    let code = s.texted_code(phone).await;
    let r = b
        .submit(&mfa, "/oauth2/mfa", &[("method", "sms"), ("code", &code)])
        .await;
    let r = b.follow(r).await;
    let loc = r.location.expect("redirect to the app");
    let code: String = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into();
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ])
        .send()
        .await
        .unwrap();
    let (st, t) = carebridge_testkit::read(r).await;
    assert_eq!(st, 200, "{t}");
    t["access_token"].as_str().unwrap().to_string()
}

/// RFC 3339 of the test clock plus `hours`.
fn at(s: &TestServer, hours: i64) -> String {
    jiff::Timestamp::from_second(s.clock.now().as_second() + hours * 3600)
        .unwrap()
        .to_string()
}

struct World {
    s: TestServer,
    org: String,
    erp: String,
    clara: String,
    clara_id: String,
    rita: String,
    rita_id: String,
    app: (String, String),
}

async fn world() -> World {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let clara_id = s
        .member(
            &k,
            "acme",
            "client",
            "clara@example.org",
            Some("+41 79 100 00 01"),
            PW,
        )
        .await;
    let rita_id = s
        .member(
            &k,
            "acme",
            "relative",
            "rita@example.org",
            Some("+41 79 100 00 02"),
            PW,
        )
        .await;
    let (erp_client, app) = clients(&s, &k, "acme").await;
    let erp = erp_token(&s, &erp_client, "portal:erp").await;
    let org = jsonwebtoken::dangerous::insecure_decode::<Value>(&erp)
        .unwrap()
        .claims["org"]
        .as_str()
        .unwrap()
        .to_string();
    let clara = person_token(
        &s,
        &app,
        "clara@example.org",
        "+41791000001",
        "openid portal",
    )
    .await;
    let rita = person_token(
        &s,
        &app,
        "rita@example.org",
        "+41791000002",
        "openid portal",
    )
    .await;
    World {
        s,
        org,
        erp,
        clara,
        clara_id,
        rita,
        rita_id,
        app,
    }
}

/// The ERP's feed of one organisation: settings, two clients, three visits, two links.
async fn feed(w: &World) {
    let s = &w.s;
    let (st, v) = s
        .put(
            &w.erp,
            "/portal/v1/erp/settings",
            &json!({"name": "Spitex Acme", "contact_email": "office@acme.example",
            "language": "de", "time_zone": "Europe/Zurich", "show_photos": true}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, r) = s
        .put(
            &w.erp,
            "/portal/v1/erp/clients",
            &json!([
            {"id": "K1", "given_name": "Clara", "family_name": "Keller"},
            {"id": "K2", "given_name": "Otto", "family_name": "Other"}]),
        )
        .await;
    assert_eq!(
        (st, r),
        (200, json!({"created": 2, "updated": 0, "unchanged": 0}))
    );
    let (st, r) = s
        .put(&w.erp, "/portal/v1/erp/appointments", &json!([
            {"id": "A1", "client": "K1", "start": at(s, 48), "end": at(s, 49), "service": "Grundpflege",
             "carer_first_name": "Petra", "carer_photo_url": "https://erp.example/p/petra.jpg"},
            {"id": "A2", "client": "K1", "start": at(s, 72), "end": at(s, 73), "service": "Hauswirtschaft", "cancelled": true},
            {"id": "A3", "client": "K2", "start": at(s, 48), "end": at(s, 49), "service": "Grundpflege"}]))
        .await;
    assert_eq!(
        (st, r),
        (200, json!({"created": 3, "updated": 0, "unchanged": 0}))
    );
    let (st, r) = s
        .put(
            &w.erp,
            "/portal/v1/erp/links",
            &json!([
            {"client": "K1", "subject": w.clara_id, "relation": "self"},
            {"client": "K1", "subject": w.rita_id, "relation": "relative", "messages": false}]),
        )
        .await;
    assert_eq!(
        (st, r),
        (200, json!({"created": 2, "updated": 0, "unchanged": 0}))
    );
}

#[tokio::test]
async fn clients_and_relatives_see_what_their_link_allows() {
    let w = world().await;
    feed(&w).await;
    let s = &w.s;
    // The same feed again changes nothing.
    let (_, r) = s
        .put(
            &w.erp,
            "/portal/v1/erp/clients",
            &json!([
            {"id": "K1", "given_name": "Clara", "family_name": "Keller"},
            {"id": "K2", "given_name": "Otto", "family_name": "Other"}]),
        )
        .await;
    assert_eq!(r, json!({"created": 0, "updated": 0, "unchanged": 2}));

    let (st, me) = s.get(&w.clara, "/portal/v1/me").await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["subject"], w.clara_id.as_str());
    assert_eq!(me["org"], w.org.as_str());
    assert_eq!(me["organisation_name"], "Spitex Acme");
    assert_eq!(me["clients"], 1);
    let (_, list) = s.get(&w.clara, "/portal/v1/clients").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["relation"], "self");
    let k1 = list[0]["id"].as_str().unwrap().to_string();
    let (_, rl) = s.get(&w.rita, "/portal/v1/clients").await;
    assert_eq!(rl[0]["relation"], "relative");
    assert_eq!(
        rl[0]["permissions"],
        json!({"appointments": true, "messages": false})
    );

    let (st, appts) = s
        .get(&w.clara, &format!("/portal/v1/clients/{k1}/appointments"))
        .await;
    assert_eq!(st, 200, "{appts}");
    let appts = appts.as_array().unwrap().clone();
    assert_eq!(appts.len(), 2, "K2's visit is not Clara's: {appts:?}");
    assert_eq!(appts[0]["service"], "Grundpflege");
    assert_eq!(appts[0]["status"], "planned");
    assert_eq!(appts[0]["time_zone"], "Europe/Zurich");
    assert_eq!(
        appts[0]["carer"],
        json!({"first_name": "Petra", "photo_url": "https://erp.example/p/petra.jpg"})
    );
    assert_eq!(appts[1]["status"], "cancelled");
    let a1 = appts[0]["id"].as_str().unwrap().to_string();
    let a2 = appts[1]["id"].as_str().unwrap().to_string();
    // Local date and times in the organisation's zone.
    let local = jiff::Timestamp::from_second(s.clock.now().as_second() + 48 * 3600)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Zurich").unwrap());
    assert_eq!(appts[0]["date"], local.date().to_string());
    assert_eq!(appts[0]["from"], local.strftime("%H:%M").to_string());

    // Another client's id: not found, for the client and the relative.
    let (_, all) = s.get(&w.erp, "/portal/v1/erp/requests?state=all").await;
    assert_eq!(all, json!([]));
    let k2 = {
        let mut c = s.running.state.db.read().await.unwrap();
        carebridge_portal::repo::clients_by_erp(&mut c, w.org.parse().unwrap(), &["K2"])
            .await
            .unwrap()[0]
            .id
    };
    for who in [&w.clara, &w.rita] {
        let (st, _) = s
            .get(who, &format!("/portal/v1/clients/{k2}/appointments"))
            .await;
        assert_eq!(st, 404, "another client's real id");
        let (st, _) = s
            .get(who, &format!("/portal/v1/clients/{k2}/messages"))
            .await;
        assert_eq!(st, 404);
    }
    let other = uuid::Uuid::new_v4();
    let (st, p) = s
        .get(
            &w.clara,
            &format!("/portal/v1/clients/{other}/appointments"),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (404, Some("not_found")));

    let (st, p) = s
        .get(
            &w.clara,
            &format!("/portal/v1/clients/{k1}/appointments?from=9999-12-31"),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    let (st, p) = s
        .get(
            &w.clara,
            &format!("/portal/v1/clients/{k1}/appointments?to=9999-12-31"),
        )
        .await;
    assert_eq!(
        (st, p["errors"][0]["code"].as_str()),
        (422, Some("invalid_date")),
        "{p}"
    );
    // Requests: move A1; a second request waits for the answer; a cancelled visit takes none.
    let path = format!("/portal/v1/clients/{k1}/appointments/{a1}/requests");
    let (st, p) = s
        .post(
            &w.clara,
            &path,
            &json!({"kind": "move", "reason": "Arzttermin"}),
        )
        .await;
    assert_eq!(st, 422, "a move needs a wished start: {p}");
    assert_eq!(p["errors"][0]["pointer"], "/wished_start");
    let (st, req) = s
        .post(
            &w.clara,
            &path,
            &json!({"kind": "move", "reason": "Arzttermin", "wished_start": at(s, 50)}),
        )
        .await;
    assert_eq!(st, 201, "{req}");
    assert_eq!(req["state"], "open");
    let (st, p) = s
        .post(
            &w.rita,
            &path,
            &json!({"kind": "cancel", "reason": "Wir sind weg"}),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (409, Some("request_open")));
    let (st, p) = s
        .post(
            &w.clara,
            &format!("/portal/v1/clients/{k1}/appointments/{a2}/requests"),
            &json!({"kind": "cancel", "reason": "x"}),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (409, Some("appointment_cancelled"))
    );

    // The organisation sees it with its own keys and answers.
    let (_, open) = s.get(&w.erp, "/portal/v1/erp/requests").await;
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open[0]["client_erp_id"], "K1");
    assert_eq!(open[0]["appointment_erp_id"], "A1");
    let rid = open[0]["id"].as_str().unwrap();
    let (st, ans) = s
        .post(
            &w.erp,
            &format!("/portal/v1/erp/requests/{rid}/answer"),
            &json!({"state": "accepted", "answer": "Petra kommt um 10 Uhr"}),
        )
        .await;
    assert_eq!(
        (st, ans["state"].as_str()),
        (200, Some("accepted")),
        "{ans}"
    );
    let (st, p) = s
        .post(
            &w.erp,
            &format!("/portal/v1/erp/requests/{rid}/answer"),
            &json!({"state": "declined"}),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (409, Some("request_answered")));
    let (_, mine) = s
        .get(&w.clara, &format!("/portal/v1/clients/{k1}/requests"))
        .await;
    assert_eq!(mine[0]["state"], "accepted");
    assert_eq!(mine[0]["answer"], "Petra kommt um 10 Uhr");
    assert_eq!(s.get(&w.erp, "/portal/v1/erp/requests").await.1, json!([]));

    // The ERP moves A1: the visit shows as changed, with the answered request.
    let (_, r) = s
        .put(&w.erp, "/portal/v1/erp/appointments", &json!([
            {"id": "A1", "client": "K1", "start": at(s, 50), "end": at(s, 51), "service": "Grundpflege",
             "carer_first_name": "Petra", "carer_photo_url": "https://erp.example/p/petra.jpg"}]))
        .await;
    assert_eq!(r, json!({"created": 0, "updated": 1, "unchanged": 0}));
    let (_, appts) = s
        .get(&w.clara, &format!("/portal/v1/clients/{k1}/appointments"))
        .await;
    assert_eq!(appts[0]["status"], "changed");
    assert_eq!(appts[0]["request"]["state"], "accepted");

    // Messages: stored, e-mailed to the organisation in its language, answered by the ERP.
    let (st, m) = s
        .post(
            &w.clara,
            &format!("/portal/v1/clients/{k1}/messages"),
            &json!({"subject": "Schlüssel", "body": "Der Schlüssel liegt beim Nachbarn."}),
        )
        .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["author"], "client");
    let mail = s.outbox("office@acme.example").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].purpose, "portal_message");
    assert!(
        mail[0]
            .subject
            .as_deref()
            .unwrap()
            .starts_with("Neue Nachricht im Kundenportal"),
        "{:?}",
        mail[0].subject
    );
    assert!(mail[0].body.contains("Clara Keller") && mail[0].body.contains("Nachbarn"));
    let (st, p) = s
        .post(
            &w.rita,
            &format!("/portal/v1/clients/{k1}/messages"),
            &json!({"subject": "x", "body": "y"}),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (403, Some("forbidden")),
        "Rita's link has no messages"
    );
    let (_, inbox) = s.get(&w.erp, "/portal/v1/erp/messages").await;
    assert_eq!(inbox.as_array().unwrap().len(), 1);
    assert_eq!(inbox[0]["client_erp_id"], "K1");
    s.clock.advance(std::time::Duration::from_secs(60));
    let (st, _) = s
        .post(
            &w.erp,
            "/portal/v1/erp/messages",
            &json!({"client": "K1", "subject": "Re: Schlüssel", "body": "Danke!"}),
        )
        .await;
    assert_eq!(st, 201);
    let (_, thread) = s
        .get(&w.clara, &format!("/portal/v1/clients/{k1}/messages"))
        .await;
    assert_eq!(thread[0]["direction"], "from_organisation");
    assert_eq!(thread[1]["direction"], "to_organisation");

    // A revoked link takes effect on the relative's next request.
    assert_eq!(
        s.get(&w.rita, &format!("/portal/v1/clients/{k1}/appointments"))
            .await
            .0,
        200
    );
    let (_, r) = s
        .put(&w.erp, "/portal/v1/erp/links", &json!([
            {"client": "K1", "subject": w.rita_id, "relation": "relative", "messages": false, "active": false}]))
        .await;
    assert_eq!(r, json!({"created": 0, "updated": 1, "unchanged": 0}));
    assert_eq!(
        s.get(&w.rita, &format!("/portal/v1/clients/{k1}/appointments"))
            .await
            .0,
        404
    );
    assert_eq!(s.get(&w.rita, "/portal/v1/clients").await.1, json!([]));
    let _ = &w.app;
}

#[tokio::test]
async fn calendar_feed_per_link_is_revocable() {
    let w = world().await;
    feed(&w).await;
    let s = &w.s;
    let (_, list) = s.get(&w.clara, "/portal/v1/clients").await;
    let k1 = list[0]["id"].as_str().unwrap().to_string();
    let (st, f) = s
        .post(
            &w.clara,
            &format!("/portal/v1/clients/{k1}/calendar-feed"),
            &Value::Null,
        )
        .await;
    assert_eq!(st, 201, "{f}");
    let url = f["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&s.base), "{url}");
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/calendar")
    );
    let text = r.text().await.unwrap();
    use std::str::FromStr;
    let cal = icalendar::Calendar::from_str(&text).expect("a valid iCalendar document");
    let events: Vec<_> = cal.components.iter().filter_map(|c| c.as_event()).collect();
    assert_eq!(events.len(), 2, "{text}");
    use icalendar::Component;
    assert!(
        events
            .iter()
            .any(|e| e.get_summary() == Some("Hauswirtschaft")
                && e.property_value("STATUS") == Some("CANCELLED"))
    );
    // A forged secret, then revocation: not found.
    let (dir, file) = url.rsplit_once('/').unwrap();
    let forged = format!("{dir}/{}_AAAA.ics", file.split_once('_').unwrap().0);
    assert_eq!(s.http.get(&forged).send().await.unwrap().status(), 404);
    assert_eq!(
        s.delete(&w.clara, &format!("/portal/v1/clients/{k1}/calendar-feed"))
            .await
            .0,
        204
    );
    assert_eq!(s.http.get(&url).send().await.unwrap().status(), 404);
    // A revoked link takes its calendar URL along, and granting the link again does not
    // revive it.
    let (_, f) = s
        .post(
            &w.clara,
            &format!("/portal/v1/clients/{k1}/calendar-feed"),
            &Value::Null,
        )
        .await;
    let url = f["url"].as_str().unwrap().to_string();
    assert_eq!(s.http.get(&url).send().await.unwrap().status(), 200);
    for active in [false, true] {
        let (st, _) = s
            .put(&w.erp, "/portal/v1/erp/links",
                &json!([{"client": "K1", "subject": w.clara_id, "relation": "self", "active": active}]))
            .await;
        assert_eq!(st, 200);
        assert_eq!(
            s.http.get(&url).send().await.unwrap().status(),
            404,
            "active: {active}"
        );
    }
    // Re-sending the same link state is unchanged.
    let (_, r) = s
        .put(
            &w.erp,
            "/portal/v1/erp/links",
            &json!([{"client": "K1", "subject": w.clara_id, "relation": "self"}]),
        )
        .await;
    assert_eq!(r["unchanged"], 1);
}

#[tokio::test]
async fn wrong_tokens_and_bad_feeds_are_refused_and_write_nothing() {
    let w = world().await;
    feed(&w).await;
    let s = &w.s;
    // No token, a person's token on the ERP feed, the ERP's token as a person, an API token.
    assert_eq!(
        s.http
            .get(s.url("/portal/v1/me"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (st, p) = s.get(&w.clara, "/portal/v1/erp/requests").await;
    assert_eq!(st, 403, "{p}");
    assert_eq!(s.get(&w.erp, "/portal/v1/me").await.0, 403);
    let k = s.key("acme", &[]).await;
    let (_, c) = s
        .post(
            &k,
            "/api/v1/orgs/acme/oauth-clients",
            &json!({"name": "API", "grants": ["client_credentials"], "scopes": ["directory:read"]}),
        )
        .await;
    let api = erp_token(
        s,
        &(
            c["client"]["client_id"].as_str().unwrap().into(),
            c["client_secret"].as_str().unwrap().into(),
        ),
        "directory:read",
    )
    .await;
    let (st, p) = s.get(&api, "/portal/v1/erp/requests").await;
    assert_eq!(st, 401, "audience carebridge is not the portal: {p}");
    // `alg: none` with the same claims.
    let parts: Vec<&str> = w.clara.split('.').collect();
    use base64::Engine;
    let none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_eq!(s.get(&none, "/portal/v1/me").await.0, 401);
    // The same claims and key id, signed by a key the issuer never published.
    let header = jsonwebtoken::decode_header(&w.clara).unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&w.clara)
        .unwrap()
        .claims;
    let doc =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(doc.as_ref()),
    )
    .unwrap();
    let (st, p) = s.get(&forged, "/portal/v1/me").await;
    assert_eq!(st, 401, "{p}");
    assert_eq!(
        s.get(&w.clara, "/portal/v1/me").await.0,
        200,
        "the real one still works"
    );
    // Expired: the portal's clock runs past the token's ten minutes.
    // Acme has a request and a message (for the isolation checks below).
    let k1 = s.get(&w.clara, "/portal/v1/clients").await.1[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a1 = s
        .get(&w.clara, &format!("/portal/v1/clients/{k1}/appointments"))
        .await
        .1[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, req) = s
        .post(
            &w.clara,
            &format!("/portal/v1/clients/{k1}/appointments/{a1}/requests"),
            &json!({"kind": "cancel", "reason": "Ferien"}),
        )
        .await;
    assert_eq!(st, 201, "{req}");
    let (st, p) = s
        .post(
            &w.clara,
            &format!("/portal/v1/clients/{k1}/messages"),
            &json!({"subject": "Hallo", "body": "a\u{0}b"}),
        )
        .await;
    assert_eq!(
        (st, p["errors"][0]["code"].as_str()),
        (422, Some("control_characters")),
        "{p}"
    );
    let (st, _) = s
        .post(
            &w.clara,
            &format!("/portal/v1/clients/{k1}/messages"),
            &json!({"subject": "Hallo", "body": "Zeile 1\nZeile 2"}),
        )
        .await;
    assert_eq!(st, 201);
    // A visit cannot move to another client.
    let (st, p) = s
        .put(&w.erp, "/portal/v1/erp/appointments", &json!([
            {"id": "A1", "client": "K2", "start": at(s, 48), "end": at(s, 49), "service": "Grundpflege"}]))
        .await;
    assert_eq!(
        (st, p["errors"][0]["code"].as_str()),
        (422, Some("client_changed")),
        "{p}"
    );
    s.clock.advance(std::time::Duration::from_secs(601));
    let (st, p) = s.get(&w.clara, "/portal/v1/me").await;
    assert_eq!(st, 401, "{p}");
    assert!(p["detail"].as_str().unwrap().ends_with(": expired"), "{p}");
    let erp = erp_token(s, &clients_again(&w).await, "portal:erp").await;

    let before = s.get(&erp, "/portal/v1/erp/requests?state=all").await.1;
    // Duplicates, an unknown client, a visit ending before it starts: 422, nothing written.
    let (st, p) = s
        .put(
            &erp,
            "/portal/v1/erp/clients",
            &json!([
            {"id": "K9", "given_name": "Neu", "family_name": "Person"},
            {"id": "K9", "given_name": "Neu", "family_name": "Person"}]),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/1/id");
    let (st, p) = s
        .put(&erp, "/portal/v1/erp/appointments", &json!([
            {"id": "A9", "client": "K1", "start": at(s, 5), "end": at(s, 6), "service": "Pflege"},
            {"id": "A10", "client": "NOPE", "start": at(s, 5), "end": at(s, 6), "service": "Pflege"},
            {"id": "A11", "client": "K1", "start": at(s, 6), "end": at(s, 5), "service": "Pflege"}]))
        .await;
    assert_eq!(st, 422, "{p}");
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/2/end", "/1/client"], "{p}");
    let (st, p) = s
        .put(
            &erp,
            "/portal/v1/erp/links",
            &json!([{"client": "K1", "subject": uuid::Uuid::new_v4(), "relation": "friend"}]),
        )
        .await;
    assert_eq!(
        (st, p["errors"][0]["pointer"].as_str()),
        (422, Some("/0/relation"))
    );
    let (st, p) = s
        .put(&erp, "/portal/v1/erp/settings", &json!({"name": "", "language": "xx", "time_zone": "Mars/Base", "contact_email": "nope"}))
        .await;
    assert_eq!(st, 422);
    assert_eq!(p["errors"].as_array().unwrap().len(), 4, "{p}");
    // Too many items in one call: a clear 422 (the body itself, ~2.6 MB, is accepted).
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"id": format!("X{i}"), "given_name": "Viele", "family_name": "Klienten"}))
        .collect();
    let (st, p) = s
        .put(&erp, "/portal/v1/erp/clients", &Value::Array(many))
        .await;
    assert_eq!(
        (st, p["errors"][0]["code"].as_str()),
        (422, Some("too_many_items")),
        "{p}"
    );
    // Nothing of it was written: a full re-send of the good feed is unchanged.
    let (_, r) = s
        .put(
            &erp,
            "/portal/v1/erp/clients",
            &json!([
            {"id": "K1", "given_name": "Clara", "family_name": "Keller"},
            {"id": "K2", "given_name": "Otto", "family_name": "Other"}]),
        )
        .await;
    assert_eq!(r, json!({"created": 0, "updated": 0, "unchanged": 2}));
    assert_eq!(
        s.get(&erp, "/portal/v1/erp/settings").await.1["name"],
        "Spitex Acme"
    );
    let (_, r) = s
        .put(
            &erp,
            "/portal/v1/erp/appointments",
            &json!([
            {"id": "A9", "client": "K1", "start": at(s, 5), "end": at(s, 6), "service": "Pflege"}]),
        )
        .await;
    assert_eq!(
        r["created"], 1,
        "A9 of the refused feed was not written: {r}"
    );
    assert_eq!(
        s.get(&erp, "/portal/v1/erp/requests?state=all").await.1,
        before
    );

    // Another organisation's ERP sees nothing of acme and cannot answer its requests.
    let kb = s.org("beta").await;
    let (beta_erp, _) = clients(s, &kb, "beta").await;
    let beta = erp_token(s, &beta_erp, "portal:erp").await;
    assert_eq!(s.get(&beta, "/portal/v1/erp/messages").await.1, json!([]));
    assert_eq!(
        s.get(&erp, "/portal/v1/erp/messages")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get(&beta, "/portal/v1/erp/requests?state=all").await.1,
        json!([])
    );
    let (st, _) = s
        .post(
            &beta,
            &format!(
                "/portal/v1/erp/requests/{}/answer",
                req["id"].as_str().unwrap()
            ),
            &json!({"state": "declined"}),
        )
        .await;
    assert_eq!(st, 404, "another organisation's request");
    assert_eq!(s.get(&beta, "/portal/v1/erp/settings").await.0, 404);
    let (_, r) = s
        .put(
            &beta,
            "/portal/v1/erp/clients",
            &json!([{"id": "K1", "given_name": "B", "family_name": "Eta"}]),
        )
        .await;
    assert_eq!(r["created"], 1, "ERP keys are per organisation");
    // A person's sign-in cannot ask for the ERP scope.
    let mut u = url::Url::parse(&s.url("/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &w.app.0)
        .append_pair("redirect_uri", CB)
        .append_pair("scope", "openid portal:erp");
    let p = Browser::new(s).get(u.as_str()).await;
    assert!(
        p.location
            .as_deref()
            .is_some_and(|l| l.contains("error=invalid_scope")),
        "{p:?}"
    );
}

/// A fresh ERP client of acme (the first token expired with the clock).
async fn clients_again(w: &World) -> (String, String) {
    let k = w.s.key("acme", &[]).await;
    let (st, c) =
        w.s.post(
            &k,
            "/api/v1/orgs/acme/oauth-clients",
            &json!({"name": "ERP 2", "grants": ["client_credentials"], "scopes": ["portal:erp"]}),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    (
        c["client"]["client_id"].as_str().unwrap().into(),
        c["client_secret"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn a_portal_apart_follows_key_rotation_and_outlives_its_issuer_until_the_keys_expire() {
    let id = TestServer::start().await;
    let k = id.org("acme").await;
    let clara_id = id
        .member(
            &k,
            "acme",
            "client",
            "clara@example.org",
            Some("+41 79 100 00 01"),
            PW,
        )
        .await;
    let (erp_client, app) = clients(&id, &k, "acme").await;
    // The portal: a server of its own, its own database, only the portal role.
    let issuer = id.base.clone();
    let portal = TestServer::start_with(|c| {
        c.roles = vec!["portal".into()];
        c.identity_issuer = Some(issuer);
    })
    .await;
    assert_ne!(
        portal.database_url.clone() + &format!("{:?}", portal.pg_schema),
        id.database_url.clone() + &format!("{:?}", id.pg_schema)
    );
    // It has no identity routes of its own.
    assert_eq!(
        portal
            .http
            .get(portal.url("/oauth2/jwks"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let erp = erp_token(&id, &erp_client, "portal:erp").await;
    let (st, r) = portal
        .put(
            &erp,
            "/portal/v1/erp/clients",
            &json!([{"id": "K1", "given_name": "Clara", "family_name": "Keller"}]),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    portal
        .put(
            &erp,
            "/portal/v1/erp/links",
            &json!([{"client": "K1", "subject": clara_id, "relation": "self"}]),
        )
        .await;
    let clara = person_token(
        &id,
        &app,
        "clara@example.org",
        "+41791000001",
        "openid portal",
    )
    .await;
    assert_eq!(
        portal.get(&clara, "/portal/v1/clients").await.1[0]["given_name"],
        "Clara"
    );

    // The issuer rotates its key: a token with the new kid makes the portal refetch.
    let db = &id.running.state.db;
    carebridge_identity::keys::rotate(db, id.clock.now())
        .await
        .unwrap();
    id.clock.advance(std::time::Duration::from_secs(31));
    let clara2 = person_token(
        &id,
        &app,
        "clara@example.org",
        "+41791000001",
        "openid portal",
    )
    .await;
    let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    assert_ne!(kid(&clara), kid(&clara2));
    portal.clock.advance(std::time::Duration::from_secs(11));
    assert_eq!(portal.get(&clara2, "/portal/v1/me").await.0, 200);

    // A token for later (the issuer's clock runs ahead), then the issuer goes away.
    id.clock.advance(std::time::Duration::from_secs(61 * 60));
    let late = person_token(
        &id,
        &app,
        "clara@example.org",
        "+41791000001",
        "openid portal",
    )
    .await;
    id.stop().await;
    portal
        .clock
        .advance(std::time::Duration::from_secs(30 * 60));
    let (st, p) = portal.get(&late, "/portal/v1/me").await;
    assert_eq!(st, 200, "cached keys still serve: {p}");
    portal
        .clock
        .advance(std::time::Duration::from_secs(31 * 60));
    let (st, p) = portal.get(&late, "/portal/v1/me").await;
    assert_eq!(
        (st, p["code"].as_str()),
        (503, Some("issuer_unavailable")),
        "{p}"
    );
}

#[tokio::test]
async fn csv_import_checks_every_line_then_writes_all() {
    use carebridge_server::commands::portal_import;
    let w = world().await;
    let s = &w.s;
    let db = &s.running.state.db;
    let org: uuid::Uuid = w.org.parse().unwrap();
    let now = s.clock.now();
    let clients = "\u{feff}id;given_name;family_name\nK1;Clara;Keller\nK2;\"Otto; jun.\";Other\n";
    let r = portal_import(db, org, "clients", clients.as_bytes(), now)
        .await
        .unwrap();
    assert_eq!((r.created, r.unchanged), (2, 0));
    let r = portal_import(db, org, "clients", clients.as_bytes(), now)
        .await
        .unwrap();
    assert_eq!((r.created, r.unchanged), (0, 2));
    let bad = format!(
        "id,client,start,end,service\nA1,K1,{},{},Pflege\nA2,K7,{},{},Pflege\nA3,K1,morgen,{},Pflege\n",
        at(s, 5),
        at(s, 6),
        at(s, 5),
        at(s, 6),
        at(s, 6)
    );
    let e = portal_import(db, org, "appointments", bad.as_bytes(), now)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 4"), "{e}");
    let bad = bad.replace("A3,K1,morgen", &format!("A3,K1,{}", at(s, 5)));
    let e = portal_import(db, org, "appointments", bad.as_bytes(), now)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3, column client"), "{e}");
    let good = bad.replace("K7", "K2");
    let r = portal_import(db, org, "appointments", good.as_bytes(), now)
        .await
        .unwrap();
    assert_eq!(r.created, 3, "nothing was written by the failed runs");
    let links = format!(
        "client,subject,relation,messages\nK1,{},self,nein\n",
        w.clara_id
    );
    portal_import(db, org, "links", links.as_bytes(), now)
        .await
        .unwrap();
    let (_, list) = s.get(&w.clara, "/portal/v1/clients").await;
    assert_eq!(
        list[0]["permissions"],
        json!({"appointments": true, "messages": false})
    );
    let (_, appts) = s
        .get(
            &w.clara,
            &format!(
                "/portal/v1/clients/{}/appointments",
                list[0]["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(appts.as_array().unwrap().len(), 2);
    let _ = (&w.rita, &w.rita_id, &w.erp);
}

#[tokio::test]
async fn the_contract_file_is_the_generated_contract() {
    let generated = serde_json::to_value(carebridge_portal::http::openapi()).unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/portal-v1.openapi.json"
    );
    let file = std::fs::read_to_string(path).unwrap_or_default();
    if std::env::var("UPDATE_CONTRACT").is_ok() {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&generated).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    let committed: Value = serde_json::from_str(&file).unwrap_or(Value::Null);
    assert_eq!(
        committed, generated,
        "docs/portal-v1.openapi.json is stale: run the test with UPDATE_CONTRACT=1"
    );
    // Every path of the contract is under /portal/v1 and the ERP paths need a token.
    for (p, _) in generated["paths"].as_object().unwrap() {
        assert!(p.starts_with("/portal/v1/"), "{p}");
    }
}

/// The public discovery document, read as an app reads it (no credential).
async fn discovery(s: &TestServer) -> (u16, Value) {
    carebridge_testkit::read(s.http.get(s.url("/discovery/acme")).send().await.unwrap()).await
}

/// With the organisation's `portal` feature off, clients and relatives are refused (403
/// `feature_off`) and discovery names no portal; the ERP's feed keeps working, and switching it
/// on again serves everything as before.
#[tokio::test]
async fn switching_the_portal_off_refuses_clients_and_keeps_the_erp_feed() {
    let w = world().await;
    feed(&w).await;
    let s = &w.s;
    let admin = s.key("acme", &[]).await;
    let (st, f) = s.get(&admin, "/api/v1/orgs/acme/features/portal").await;
    assert_eq!(
        (st, &f["enabled"]),
        (200, &json!(true)),
        "on by default: {f}"
    );
    let (st, d) = discovery(s).await;
    assert_eq!(st, 200, "{d}");
    assert!(d["portal_url"].is_string(), "{d}");
    assert!(d["features"].as_array().unwrap().contains(&json!("portal")));

    let (st, f) = s
        .put(
            &admin,
            "/api/v1/orgs/acme/features/portal",
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!((st, &f["enabled"]), (200, &json!(false)), "{f}");
    let (st, p) = s.get(&w.clara, "/portal/v1/me").await;
    assert_eq!(st, 403, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("feature_off"), "{p}");
    let (st, _) = s.get(&w.rita, "/portal/v1/clients").await;
    assert_eq!(st, 403);
    let (_, d) = discovery(s).await;
    assert_eq!(d["portal_url"], Value::Null, "{d}");
    assert!(!d["features"].as_array().unwrap().contains(&json!("portal")));
    // The ERP still feeds (nothing is lost while the portal is off).
    let (st, r) = s
        .put(
            &w.erp,
            "/portal/v1/erp/clients",
            &json!([{"id": "K3", "given_name": "Nora", "family_name": "New"}]),
        )
        .await;
    assert_eq!(st, 200, "{r}");

    let (st, _) = s
        .put(
            &admin,
            "/api/v1/orgs/acme/features/portal",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, me) = s.get(&w.clara, "/portal/v1/me").await;
    assert_eq!((st, &me["clients"]), (200, &json!(1)), "{me}");
    // Both switches are in the audit log.
    let (_, events) = s
        .get(&admin, "/api/v1/orgs/acme/audit?action=feature.&limit=10")
        .await;
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"feature.disable") && actions.contains(&"feature.enable"),
        "{events}"
    );
}
