//! OAuth clients and the client-credentials grant: registration, tokens checked against the
//! published JWKS with the `jsonwebtoken` crate directly (not through Carebridge's own
//! verification), introspection, and the refusals (wrong secret, revoked client, foreign
//! organisation, `alg: none`, unknown scope, unsupported grant).

use base64::Engine;
use carebridge_testkit::TestServer;
use serde_json::{Value, json};

async fn client(s: &TestServer, key: &str, slug: &str, body: Value) -> (String, String) {
    let (st, c) = s
        .post(key, &format!("/api/v1/orgs/{slug}/oauth-clients"), &body)
        .await;
    assert_eq!(st, 201, "{c}");
    (
        c["client"]["client_id"].as_str().unwrap().to_string(),
        c["client_secret"].as_str().unwrap_or_default().to_string(),
    )
}

async fn form(
    s: &TestServer,
    path: &str,
    basic: Option<(&str, &str)>,
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let mut r = s.http.post(s.url(path)).form(fields);
    if let Some((id, secret)) = basic {
        r = r.basic_auth(id, Some(secret));
    }
    carebridge_testkit::read(r.send().await.unwrap()).await
}

#[tokio::test]
async fn client_credentials_tokens_verify_against_the_jwks() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (id, secret) = client(
        &s,
        &k,
        "acme",
        json!({"name": "ERP feed", "grants": ["client_credentials"], "scopes": ["directory:read", "duties:read"]}),
    )
    .await;
    assert!(id.starts_with("cbc_"));
    // Basic authentication, all allowed scopes.
    let (st, t) = form(
        &s,
        "/oauth2/token",
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(
        (t["token_type"].as_str(), t["expires_in"].as_i64()),
        (Some("Bearer"), Some(600))
    );
    assert_eq!(t["scope"], "directory:read duties:read");
    let token = t["access_token"].as_str().unwrap();
    // Verify with the JWKS and jsonwebtoken directly.
    let jwks: jsonwebtoken::jwk::JwkSet = s
        .http
        .get(s.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["carebridge"]);
    v.set_issuer(&[s.base.trim_end_matches('/')]);
    v.validate_exp = false; // the test clock is not the wall clock
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(claims["jti"].is_string() && claims["org"].is_string());
    // client_secret_post, a narrower scope.
    let (st, t2) = form(
        &s,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "duties:read"),
        ],
    )
    .await;
    assert_eq!(
        (st, t2["scope"].as_str()),
        (200, Some("duties:read")),
        "{t2}"
    );
    // Introspection by the same organisation's client.
    let (st, i) = form(
        &s,
        "/oauth2/introspect",
        Some((&id, &secret)),
        &[("token", token)],
    )
    .await;
    assert_eq!(
        (st, i["active"].as_bool(), i["sub"].as_str()),
        (200, Some(true), Some(id.as_str())),
        "{i}"
    );
    // Expired by the clock: inactive.
    s.clock
        .set(carebridge_testkit::t0() + jiff::SignedDuration::from_secs(601));
    let (_, i) = form(
        &s,
        "/oauth2/introspect",
        Some((&id, &secret)),
        &[("token", token)],
    )
    .await;
    assert_eq!(i, json!({"active": false}));
}

#[tokio::test]
async fn token_and_introspection_refusals() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let kb = s.org("beta").await;
    let (id, secret) = client(
        &s,
        &k,
        "acme",
        json!({"name": "ERP", "grants": ["client_credentials"], "scopes": ["duties:read"]}),
    )
    .await;
    let (bid, bsecret) = client(
        &s,
        &kb,
        "beta",
        json!({"name": "Other", "grants": ["client_credentials"], "scopes": ["duties:read"]}),
    )
    .await;
    let cc = [("grant_type", "client_credentials")];
    // Wrong secret, unknown client, no authentication: 401 invalid_client.
    for basic in [
        Some((id.as_str(), "wrong")),
        Some(("cbc_nope", secret.as_str())),
        None,
    ] {
        let (st, e) = form(&s, "/oauth2/token", basic, &cc).await;
        assert_eq!(
            (st, e["error"].as_str()),
            (401, Some("invalid_client")),
            "{e}"
        );
    }
    let (st, e) = form(
        &s,
        "/oauth2/token",
        Some((&id, &secret)),
        &[("grant_type", "client_credentials"), ("scope", "chat")],
    )
    .await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_scope")));
    let (st, e) = form(
        &s,
        "/oauth2/token",
        Some((&id, &secret)),
        &[("grant_type", "password")],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (st, e) = form(
        &s,
        "/oauth2/token",
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_request")),
        "two authentication methods"
    );
    // A public client cannot be registered for client_credentials.
    let (st, p) = s
        .post(
            &k,
            "/api/v1/orgs/acme/oauth-clients",
            &json!({"name": "App", "public": true, "grants": ["client_credentials"]}),
        )
        .await;
    assert_eq!(
        (st, p["errors"][0]["code"].as_str()),
        (422, Some("public_client")),
        "{p}"
    );
    let (st, p) = s
        .post(&k, "/api/v1/orgs/acme/oauth-clients", &json!({"name": "App", "public": true, "grants": ["authorization_code"], "redirect_uris": ["http://evil.example/cb"]}))
        .await;
    assert_eq!(
        (st, p["errors"][0]["code"].as_str()),
        (422, Some("invalid_redirect_uri")),
        "{p}"
    );
    // A token of organisation acme is inactive for beta's client.
    let (_, t) = form(&s, "/oauth2/token", Some((&id, &secret)), &cc).await;
    let token = t["access_token"].as_str().unwrap().to_string();
    let (_, i) = form(
        &s,
        "/oauth2/introspect",
        Some((&bid, &bsecret)),
        &[("token", &token)],
    )
    .await;
    assert_eq!(i, json!({"active": false}));
    // `alg: none` with the same claims, and a token signed by a foreign key: inactive.
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let payload = token.split('.').nth(1).unwrap();
    let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT"})));
    let (_, i) = form(
        &s,
        "/oauth2/introspect",
        Some((&id, &secret)),
        &[("token", &none)],
    )
    .await;
    assert_eq!(i, json!({"active": false}));
    let other = TestServer::start().await; // its own signing key
    let ko = other.org("acme").await;
    let (oid, osecret) = client(
        &other,
        &ko,
        "acme",
        json!({"name": "X", "grants": ["client_credentials"], "scopes": ["duties:read"]}),
    )
    .await;
    let (_, ot) = form(&other, "/oauth2/token", Some((&oid, &osecret)), &cc).await;
    let (_, i) = form(
        &s,
        "/oauth2/introspect",
        Some((&id, &secret)),
        &[("token", ot["access_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(i, json!({"active": false}));
    // Revoking the client: no more tokens, and its tokens turn inactive.
    let (_, list) = s.get(&k, "/api/v1/orgs/acme/oauth-clients").await;
    let cid = list["items"][0]["id"].as_str().unwrap().to_string();
    let (st, r) = s
        .delete(&k, &format!("/api/v1/orgs/acme/oauth-clients/{cid}"))
        .await;
    assert_eq!((st, r["revoked_at"].is_string()), (200, true));
    let (st, _) = form(&s, "/oauth2/token", Some((&id, &secret)), &cc).await;
    assert_eq!(st, 401);
    let (cid2, csecret2) = client(
        &s,
        &k,
        "acme",
        json!({"name": "Checker", "grants": ["client_credentials"], "scopes": ["duties:read"]}),
    )
    .await;
    let (_, i) = form(
        &s,
        "/oauth2/introspect",
        Some((&cid2, &csecret2)),
        &[("token", &token)],
    )
    .await;
    assert_eq!(
        i,
        json!({"active": false}),
        "tokens of a revoked client are inactive"
    );
    let (_, audit) = s.get(&k, "/api/v1/orgs/acme/audit?limit=5").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"oauth_client.revoke"), "{actions:?}");
}

#[tokio::test]
async fn cli_registers_clients() {
    let s = TestServer::start().await;
    let _ = s.org("acme").await;
    let db = &s.running.state.db;
    let input = |grants: &[&str], public: bool| carebridge_proto::identity::CreateOAuthClient {
        name: "Chat app".into(),
        public,
        redirect_uris: vec!["ch.example.chat:/cb".into()],
        scopes: vec!["openid".into(), "chat".into()],
        grants: grants.iter().map(|g| g.to_string()).collect(),
        first_party: false,
    };
    let c = carebridge_server::commands::client_create(
        db,
        "acme",
        input(&["authorization_code"], true),
        carebridge_testkit::t0(),
    )
    .await
    .unwrap();
    assert!(c.client_secret.is_none() && c.client.public);
    let e = carebridge_server::commands::client_create(
        db,
        "acme",
        input(&["client_credentials"], true),
        carebridge_testkit::t0(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("/grants/0"), "{e}");
}

#[tokio::test]
async fn access_tokens_authenticate_api_calls_within_their_scopes() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let _kb = s.org("beta").await;
    let (id, secret) = client(&s, &k, "acme", json!({"name": "ERP", "grants": ["client_credentials"], "scopes": ["duties:read", "directory:read"]})).await;
    let (_, t) = form(
        &s,
        "/oauth2/token",
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "duties:read"),
        ],
    )
    .await;
    let token = t["access_token"].as_str().unwrap().to_string();
    let (st, list) = s.get(&token, "/api/v1/orgs/acme/duties").await;
    assert_eq!(st, 200, "{list}");
    // Outside its scopes, another organisation, writes: refused.
    assert_eq!(
        s.get(&token, "/api/v1/orgs/acme/people").await.0,
        403,
        "directory:read was not asked for"
    );
    assert_eq!(s.get(&token, "/api/v1/orgs/beta/duties").await.0, 404);
    let (st, _) = s
        .post(
            &token,
            "/api/v1/orgs/acme/qualifications",
            &json!({"name": "X"}),
        )
        .await;
    assert_eq!(st, 403);
    assert_eq!(s.get(&token, "/api/v1/me/duties").await.0, 403);
    // A forged `alg: none` copy and a tampered signature: 401.
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let payload = token.split('.').nth(1).unwrap();
    assert_eq!(
        s.get(
            &format!("{}.{payload}.", b64(&json!({"alg": "none"}))),
            "/api/v1/orgs/acme/duties"
        )
        .await
        .0,
        401
    );
    let mut bad = token.clone();
    bad.push('A');
    assert_eq!(s.get(&bad, "/api/v1/orgs/acme/duties").await.0, 401);
    // Expired by the clock: 401.
    s.clock
        .set(carebridge_testkit::t0() + jiff::SignedDuration::from_secs(601));
    assert_eq!(s.get(&token, "/api/v1/orgs/acme/duties").await.0, 401);
    s.clock.set(carebridge_testkit::t0());
    // Revoking the client kills its tokens at once.
    let (_, list) = s.get(&k, "/api/v1/orgs/acme/oauth-clients").await;
    let cid = list["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(s.get(&token, "/api/v1/orgs/acme/duties").await.0, 200);
    s.delete(&k, &format!("/api/v1/orgs/acme/oauth-clients/{cid}"))
        .await;
    assert_eq!(s.get(&token, "/api/v1/orgs/acme/duties").await.0, 401);
}
