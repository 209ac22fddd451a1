//! Discovery (seed 000's backend): the public document and app settings apps read before
//! sign-in, cacheable, refusing any credential; the admin side (validated, audited); the index
//! of organisations that opted in.

use carebridge_testkit::TestServer;
use serde_json::{Value, json};

async fn public(
    s: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = s.http.get(s.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let h = r.headers().clone();
    let (st, body) = carebridge_testkit::read(r).await;
    (st, h, body)
}

#[tokio::test]
async fn apps_read_discovery_and_settings_without_any_credential() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let settings = json!({"languages": ["de", "fr"], "branding": {"primary_color": "#c8102e", "logo_url": "https://cdn.example/logo.svg"},
        "support": {"email": "help@acme.example", "phone": "+41 44 000 00 00"}, "portal_url": "https://portal.erp.example/acme",
        "app": {"show_carer_photo": true, "appointments_days_ahead": 14}});
    let (st, saved) = s.put(&k, "/api/v1/orgs/acme/app-settings", &settings).await;
    assert_eq!(st, 200, "{saved}");
    let (st, _) = s
        .put(
            &k,
            "/api/v1/orgs/acme/features/chat",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(st, 200);

    let (st, h, doc) = public(&s, "/discovery/acme", &[]).await;
    assert_eq!(st, 200, "{doc}");
    assert_eq!(doc["issuer"], s.base.as_str());
    assert_eq!(doc["client_id"], "carebridge-app");
    assert_eq!(doc["portal_url"], "https://portal.erp.example/acme");
    assert_eq!(doc["chat_url"], s.base.as_str(), "chat on: this server");
    assert_eq!(doc["features"], json!(["chat", "directory", "portal"]));
    assert_eq!(doc["languages"], json!(["de", "fr"]));
    assert_eq!(doc["branding"]["primary_color"], "#c8102e");
    assert_eq!(doc["support"]["email"], "help@acme.example");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(h["cache-control"].to_str().unwrap().contains("max-age"));
    let (st, _, _) = public(&s, "/discovery/acme", &[("if-none-match", &etag)]).await;
    assert_eq!(st, 304);
    // The same by id; the free-form settings.
    let (_, org) = s.get(&k, "/api/v1/orgs/acme").await;
    let (st, _, by_id) = public(
        &s,
        &format!("/discovery/{}", org["id"].as_str().unwrap()),
        &[],
    )
    .await;
    assert_eq!((st, &by_id), (200, &doc));
    let (st, _, app) = public(&s, "/discovery/acme/settings", &[]).await;
    assert_eq!(
        (st, app),
        (
            200,
            json!({"show_carer_photo": true, "appointments_days_ahead": 14})
        )
    );
    // Any Authorization header is refused with a clear problem, valid or not.
    for auth in [
        format!("Bearer {k}"),
        "Bearer eyJhbGciOi.x.y".to_string(),
        "Basic eDp5".to_string(),
    ] {
        for path in [
            "/discovery/acme",
            "/discovery/acme/settings",
            "/discovery?q=acme",
        ] {
            let (st, _, p) = public(&s, path, &[("authorization", &auth)]).await;
            assert_eq!(st, 400, "{path}: {p}");
            assert_eq!(p["errors"][0]["pointer"], "/header/authorization", "{p}");
        }
    }
    let (st, _, _) = public(&s, "/discovery/nope", &[]).await;
    assert_eq!(st, 404);
    // Audited.
    let (_, log) = s.get(&k, "/api/v1/orgs/acme/audit").await;
    assert!(log.to_string().contains("org.app_settings"));
}

#[tokio::test]
async fn bad_settings_name_every_field_and_change_nothing() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, p) = s
        .put(&k, "/api/v1/orgs/acme/app-settings", &json!({"languages": ["xx"], "branding": {"primary_color": "red", "logo_url": "http://insecure.example/l.png"},
            "support": {"email": "not-an-address"}, "portal_url": "javascript:alert(1)"}))
        .await;
    assert_eq!(st, 422, "{p}");
    let mut pointers: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort();
    assert_eq!(
        pointers,
        vec![
            "/branding/logo_url",
            "/branding/primary_color",
            "/languages/0",
            "/portal_url",
            "/support/email"
        ]
    );
    let (st, p) = s
        .put(
            &k,
            "/api/v1/orgs/acme/app-settings",
            &json!({"colour": "#ffffff"}),
        )
        .await;
    assert_eq!(st, 400, "unknown field: {p}");
    let (_, now) = s.get(&k, "/api/v1/orgs/acme/app-settings").await;
    assert_eq!(now["languages"], json!([]));
    let (_, _, doc) = public(&s, "/discovery/acme", &[]).await;
    assert_eq!(
        doc["languages"],
        json!(["de"]),
        "the default language when none is set"
    );
}

#[tokio::test]
async fn the_index_lists_only_organisations_that_opted_in() {
    let s = TestServer::start().await;
    let k = s.org("spitex-nord").await;
    s.org("spitex-sued").await;
    let (st, _, list) = public(&s, "/discovery?q=spitex", &[]).await;
    assert_eq!((st, list), (200, json!([])));
    let (_, org) = s.get(&k, "/api/v1/orgs/spitex-nord").await;
    let etag = format!("\"{}\"", org["version"]);
    let (st, r) = s
        .patch(
            &k,
            "/api/v1/orgs/spitex-nord",
            &etag,
            &json!({"discoverable": true}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let (_, _, list) = public(&s, "/discovery?q=SPITEX", &[]).await;
    assert_eq!(
        list,
        json!([{"slug": "spitex-nord", "name": "Org spitex-nord"}])
    );
    let (_, _, list) = public(&s, "/discovery?q=org%20spitex-n", &[]).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "by name");
    let (_, _, list) = public(&s, "/discovery?q=%25%25", &[]).await;
    assert_eq!(list, json!([]), "LIKE wildcards are literal");
    let (st, _, p) = public(&s, "/discovery?q=s", &[]).await;
    assert_eq!(
        (st, p["errors"][0]["pointer"].as_str()),
        (422, Some("/query/q"))
    );
}

#[tokio::test]
async fn the_demo_organisation_is_discoverable() {
    let s = TestServer::start_with(|c| c.demo = true).await;
    let (st, _, list) = public(&s, "/discovery?q=demo", &[]).await;
    assert_eq!(st, 200);
    let slug = list[0]["slug"]
        .as_str()
        .expect("the demo organisation is listed")
        .to_string();
    let (st, _, doc) = public(&s, &format!("/discovery/{slug}"), &[]).await;
    assert_eq!(st, 200);
    assert_eq!(doc["languages"], json!(["de", "fr", "it", "en"]));
}

#[tokio::test]
async fn operators_set_app_settings_from_the_command_line() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let db = &s.running.state.db;
    let now = carebridge_testkit::t0();
    let bad = carebridge_server::commands::app_settings_set(
        db,
        "acme",
        r#"{"branding": {"primary_color": "blue"}}"#,
        now,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(bad.contains("/branding/primary_color"), "{bad}");
    let bad = carebridge_server::commands::app_settings_set(db, "acme", "{not json", now)
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("not valid"), "{bad}");
    carebridge_server::commands::app_settings_set(
        db,
        "acme",
        r#"{"languages": ["it", "de"], "portal_url": "https://portal.example/acme"}"#,
        now,
    )
    .await
    .unwrap();
    let (_, _, doc) = public(&s, "/discovery/acme", &[]).await;
    assert_eq!(doc["languages"], json!(["it", "de"]));
    assert_eq!(
        carebridge_server::commands::app_settings_get(db, "acme")
            .await
            .unwrap()
            .portal_url
            .as_deref(),
        Some("https://portal.example/acme")
    );
    let (_, log) = s.get(&k, "/api/v1/orgs/acme/audit").await;
    assert!(log.to_string().contains("system:cli"), "{log}");
}
