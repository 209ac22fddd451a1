//! The OpenID Connect provider driven by an independent relying party: the `openidconnect`
//! crate discovers the provider, builds the authorization request (PKCE S256, nonce, state),
//! exchanges the code, verifies the EdDSA ID token against the published JWKS, calls userinfo
//! and refreshes. The sign-in pages are driven like a browser would (cookies, forms). Then the
//! refusals the issue names, each its own test.

use carebridge_domain::Clock;
use carebridge_testkit::{Browser, Page, TestServer};
use openidconnect::core::{
    CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";
const CB: &str = "http://127.0.0.1:9/cb";

fn rp_http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn register(s: &TestServer, key: &str, body: Value) -> (String, String) {
    let (st, c) = s.post(key, "/api/v1/orgs/acme/oauth-clients", &body).await;
    assert_eq!(st, 201, "{c}");
    (
        c["client"]["client_id"].as_str().unwrap().to_string(),
        c["client_secret"].as_str().unwrap_or_default().to_string(),
    )
}

fn confidential() -> Value {
    json!({"name": "Rostering", "redirect_uris": [CB], "grants": ["authorization_code", "refresh_token"],
           "scopes": ["openid", "profile", "email", "phone", "offline_access", "duties:read"], "first_party": true})
}

/// Query parameters of a redirect to the client.
fn params(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn now_chrono(s: &TestServer) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(s.clock.now().as_second(), 0).unwrap()
}

/// A raw authorization request URL of this server.
fn authorize_url(s: &TestServer, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&s.url("/oauth2/authorize")).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", CB);
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// PKCE pair from RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Signs `login` in through the pages and returns the redirect to the client.
async fn code_for(s: &TestServer, b: &Browser, url: &str, login: &str) -> Page {
    let p = b.get(url).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("name=\"password\""), "{}", p.body);
    let r = b.sign_in(&p, login, PW).await;
    assert!(
        r.location.as_deref().is_some_and(|l| l.starts_with(CB)),
        "{r:?}"
    );
    let _ = s;
    r
}

/// Signs `login` in through the pages for a confidential client and exchanges the code.
async fn tokens_for(
    s: &TestServer,
    b: &Browser,
    id: &str,
    secret: &str,
    scope: &str,
    login: &str,
) -> Value {
    let r = code_for(s, b, &authorize_url(s, id, &[("scope", scope)]), login).await;
    let code = params(r.location.as_deref().unwrap())["code"].clone();
    let (st, t) = token(
        s,
        Some((id, secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(st, 200, "{t}");
    t
}

async fn token(
    s: &TestServer,
    basic: Option<(&str, &str)>,
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let mut r = s.http.post(s.url("/oauth2/token")).form(fields);
    if let Some((id, secret)) = basic {
        r = r.basic_auth(id, Some(secret));
    }
    carebridge_testkit::read(r.send().await.unwrap()).await
}

#[tokio::test]
async fn code_flow_with_pkce_verified_by_an_independent_relying_party() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let person = s
        .member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, secret) = register(&s, &k, confidential()).await;

    let http = rp_http();
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(s.base.clone()).unwrap(), &http)
        .await
        .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(id.clone()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(CB.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .add_scope(Scope::new("duties:read".into()))
        .set_pkce_challenge(challenge)
        .url();

    let b = Browser::new(&s);
    let r = code_for(&s, &b, url.as_str(), "vera@example.org").await;
    let q = params(r.location.as_deref().unwrap());
    assert_eq!(
        q.get("state").map(String::as_str),
        Some(state.secret().as_str())
    );
    assert_eq!(q.get("iss").map(String::as_str), Some(s.base.as_str()));

    let tokens = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let t0 = now_chrono(&s);
    let v = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EdDsa])
        .set_time_fn(move || t0);
    let claims = tokens
        .id_token()
        .expect("an ID token")
        .claims(&v, &nonce)
        .expect("a valid ID token");
    assert_eq!(claims.subject().as_str(), person);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("vera@example.org"));
    assert!(claims.auth_time().is_some());

    // The access token works on the API for the person, and on userinfo.
    let at = tokens.access_token().secret().clone();
    let (st, mine) = s.get(&at, "/api/v1/me/duties").await;
    assert_eq!(st, 200, "{mine}");
    let info: openidconnect::core::CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .require_issuer_match(false)
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.email().map(|e| e.as_str()), Some("vera@example.org"));

    // Refresh: a new pair; the old refresh token is spent.
    let rt = tokens
        .refresh_token()
        .expect("offline_access gives a refresh token")
        .clone();
    let t2 = client
        .exchange_refresh_token(&rt)
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(t2.refresh_token().unwrap().secret(), rt.secret());
    let (st, _) = s.get(t2.access_token().secret(), "/api/v1/me/duties").await;
    assert_eq!(st, 200);

    // A second authorization in the same browser needs no password (session cookie).
    let (url2, _, _) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(PkceCodeChallenge::new_random_sha256().0)
        .url();
    let again = b.get(url2.as_str()).await;
    assert!(
        again
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with(CB) && l.contains("code=")),
        "{again:?}"
    );
}

#[tokio::test]
async fn refresh_reuse_revokes_the_whole_family() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, secret) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let r = code_for(
        &s,
        &b,
        &authorize_url(
            &s,
            &id,
            &[
                ("scope", "openid offline_access duties:read"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
        ),
        "vera@example.org",
    )
    .await;
    let code = params(r.location.as_deref().unwrap())["code"].clone();
    let (st, t1) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(st, 200, "{t1}");
    let r1 = t1["refresh_token"].as_str().unwrap().to_string();
    let (st, t2) = token(
        &s,
        Some((&id, &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(st, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap().to_string();
    // The spent r1 comes back: refused, and everything of the grant dies with it.
    let (st, e) = token(
        &s,
        Some((&id, &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    let (st, e) = token(
        &s,
        Some((&id, &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    let (st, _) = s
        .get(t2["access_token"].as_str().unwrap(), "/api/v1/me/duties")
        .await;
    assert_eq!(
        st, 401,
        "the access token of a revoked family stops at once"
    );
    // Narrowing on refresh is allowed, widening is not (checked on a fresh family).
    let r = code_for(
        &s,
        &Browser::new(&s),
        &authorize_url(
            &s,
            &id,
            &[
                ("scope", "openid offline_access"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
        ),
        "vera@example.org",
    )
    .await;
    let code = params(r.location.as_deref().unwrap())["code"].clone();
    let (_, t) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    let (st, e) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("scope", "openid duties:read"),
        ],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_scope")),
        "{e}"
    );
}

#[tokio::test]
async fn code_reuse_is_refused_and_revokes_its_tokens() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, secret) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let r = code_for(
        &s,
        &b,
        &authorize_url(&s, &id, &[("scope", "openid duties:read")]),
        "vera@example.org",
    )
    .await;
    let code = params(r.location.as_deref().unwrap())["code"].clone();
    let f = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
    ];
    let (st, t) = token(&s, Some((&id, &secret)), &f).await;
    assert_eq!(st, 200, "{t}");
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(s.get(at, "/api/v1/me/duties").await.0, 200);
    let (st, e) = token(&s, Some((&id, &secret)), &f).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    assert_eq!(
        s.get(at, "/api/v1/me/duties").await.0,
        401,
        "tokens from a replayed code are revoked"
    );
}

#[tokio::test]
async fn expired_code_wrong_secret_and_pkce_errors_are_refused() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, secret) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let new_code = async |extra: &[(&str, &str)]| {
        let mut q = vec![("scope", "openid")];
        q.extend_from_slice(extra);
        let r = b.get(&authorize_url(&s, &id, &q)).await;
        let r = if r.status == 200 {
            b.sign_in(&r, "vera@example.org", PW).await
        } else {
            r
        };
        params(r.location.as_deref().unwrap())["code"].clone()
    };
    // Expired (codes live 60 s).
    let code = new_code(&[]).await;
    s.clock.advance(std::time::Duration::from_secs(61));
    let (st, e) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    // Wrong client secret.
    let code = new_code(&[]).await;
    let (st, e) = token(
        &s,
        Some((&id, "d3Jvbmc")),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (401, Some("invalid_client")),
        "{e}"
    );
    // Missing and wrong PKCE verifier.
    let pk = [
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let code = new_code(&pk).await;
    let (st, e) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    let code = new_code(&pk).await;
    let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx";
    let (st, e) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", wrong),
        ],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    // A different redirect_uri at the token endpoint.
    let code = new_code(&[]).await;
    let (st, e) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
        ],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
}

#[tokio::test]
async fn public_clients_must_use_pkce_s256() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, _) = register(&s, &k, json!({"name": "App", "public": true, "redirect_uris": [CB], "grants": ["authorization_code", "refresh_token"], "scopes": ["openid", "offline_access"], "first_party": true})).await;
    let b = Browser::new(&s);
    for (extra, why) in [
        (vec![], "no challenge"),
        (
            vec![
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "plain"),
            ],
            "plain",
        ),
        (vec![("code_challenge", CHALLENGE)], "no method"),
    ] {
        let mut q = vec![("scope", "openid")];
        q.extend(extra);
        let r = b.get(&authorize_url(&s, &id, &q)).await;
        let loc = r
            .location
            .unwrap_or_else(|| panic!("{why}: expected a redirect with an error"));
        assert_eq!(
            params(&loc).get("error").map(String::as_str),
            Some("invalid_request"),
            "{why}"
        );
    }
    let r = code_for(
        &s,
        &b,
        &authorize_url(
            &s,
            &id,
            &[
                ("scope", "openid offline_access"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
        ),
        "vera@example.org",
    )
    .await;
    let code = params(r.location.as_deref().unwrap())["code"].clone();
    let (st, t) = token(
        &s,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(st, 200, "{t}");
    assert!(t["refresh_token"].is_string());
    assert!(t["id_token"].is_string());
}

#[tokio::test]
async fn redirect_uri_mismatch_never_redirects() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (id, _) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    for evil in [
        "https://evil.example/cb",
        "http://127.0.0.1:9/cb/../x",
        "http://127.0.0.1:9/cb?x=1",
        "//evil.example",
        "http://127.0.0.1:9/CB",
    ] {
        let mut u = url::Url::parse(&s.url("/oauth2/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &id)
            .append_pair("redirect_uri", evil)
            .append_pair("scope", "openid");
        let r = b.get(u.as_str()).await;
        assert_eq!(r.status, 400, "{evil}");
        assert!(r.location.is_none(), "{evil}");
    }
    // Unknown client: a page, too.
    let r = b
        .get(&authorize_url(&s, "cbc_nope", &[("scope", "openid")]))
        .await;
    assert_eq!((r.status, r.location), (400, None));
    // A forged continuation after the password form does not leave this server.
    let p = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    let csrf = p.field("csrf").unwrap();
    let r = b
        .post(
            "/oauth2/login",
            &[
                ("csrf", csrf.as_str()),
                ("next", "https://evil.example/"),
                ("login", "x@example.org"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!((r.status, r.location), (400, None));
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, _) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let p = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    let next = p.field("next").unwrap();
    for csrf in [None, Some("forged-value")] {
        let mut f = vec![
            ("next", next.as_str()),
            ("login", "vera@example.org"),
            ("password", PW),
        ];
        if let Some(c) = csrf {
            f.push(("csrf", c));
        }
        let r = b.post("/oauth2/login", &f).await;
        assert_eq!(r.status, 403, "{csrf:?}");
        assert!(r.location.is_none());
    }
    // A fresh browser (no CSRF cookie) posting someone else's form token is refused too.
    let other = Browser::new(&s);
    let r = other
        .post(
            "/oauth2/login",
            &[
                ("csrf", p.field("csrf").unwrap().as_str()),
                ("next", next.as_str()),
                ("login", "vera@example.org"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_exponentially() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, _) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let p = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    for _ in 0..5 {
        let r = b
            .submit(
                &p,
                "/oauth2/login",
                &[
                    ("login", "vera@example.org"),
                    ("password", "wrong password!"),
                ],
            )
            .await;
        assert_eq!(r.status, 401);
    }
    // Locked now: even the right password is refused, with the lockout message.
    let r = b
        .submit(
            &p,
            "/oauth2/login",
            &[("login", "vera@example.org"), ("password", PW)],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // After 30 s it opens again; one more failure locks for 60 s.
    s.clock.advance(std::time::Duration::from_secs(31));
    let r = b
        .submit(
            &p,
            "/oauth2/login",
            &[("login", "vera@example.org"), ("password", "wrong again!!")],
        )
        .await;
    assert_eq!(r.status, 401);
    s.clock.advance(std::time::Duration::from_secs(31));
    let r = b
        .submit(
            &p,
            "/oauth2/login",
            &[("login", "vera@example.org"), ("password", PW)],
        )
        .await;
    assert_eq!(r.status, 403, "still locked: the second lockout lasts 60 s");
    s.clock.advance(std::time::Duration::from_secs(30));
    let r = b
        .submit(
            &p,
            "/oauth2/login",
            &[("login", "vera@example.org"), ("password", PW)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
}

#[tokio::test]
async fn per_source_rate_limit_stops_password_guessing() {
    let s = TestServer::start_with(|c| c.signin_per_minute = 3).await;
    let k = s.org("acme").await;
    let (id, _) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let p = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    let mut statuses = vec![];
    for i in 0..5 {
        let r = b
            .submit(
                &p,
                "/oauth2/login",
                &[
                    ("login", &format!("nobody{i}@example.org")),
                    ("password", "whatever pw!"),
                ],
            )
            .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
}

#[tokio::test]
async fn sms_second_factor_for_clients_with_five_tries() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(
        &k,
        "acme",
        "client",
        "clara@example.org",
        Some("+41 79 123 45 67"),
        PW,
    )
    .await;
    let (id, secret) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let p = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    let mfa = b.sign_in(&p, "clara@example.org", PW).await;
    assert_eq!(mfa.status, 200, "{mfa:?}");
    assert!(
        mfa.body.contains("name=\"code\""),
        "clients must pass a second factor: {}",
        mfa.body
    );
    let code = s.texted_code("+41791234567").await;
    // Five wrong codes kill the challenge; the right one is then refused too.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let r = b
            .submit(&mfa, "/oauth2/mfa", &[("method", "sms"), ("code", wrong)])
            .await;
        assert_eq!(r.status, 200);
        assert!(r.location.is_none());
    }
    let r = b
        .submit(&mfa, "/oauth2/mfa", &[("method", "sms"), ("code", &code)])
        .await;
    assert!(r.location.is_none(), "a dead challenge accepts nothing");
    // A new code only after the back-off.
    let r = b.submit(&mfa, "/oauth2/mfa/resend", &[]).await;
    assert_eq!(
        s.texted_code("+41791234567").await,
        code,
        "no new code within 30 s: {}",
        r.body
    );
    s.clock.advance(std::time::Duration::from_secs(31));
    b.submit(&mfa, "/oauth2/mfa/resend", &[]).await;
    let code2 = s.texted_code("+41791234567").await;
    let r = b
        .submit(&mfa, "/oauth2/mfa", &[("method", "sms"), ("code", &code2)])
        .await;
    let r = b.follow(r).await;
    let loc = r.location.expect("a code for the client");
    let q = params(&loc);
    let (st, t) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(t["id_token"].as_str().unwrap())
        .unwrap()
        .claims;
    assert!(
        claims["amr"].as_array().unwrap().iter().any(|a| a == "sms"),
        "{claims}"
    );
}

#[tokio::test]
async fn totp_enrolment_for_admins_without_a_phone_then_totp_sign_in() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let person = s
        .member(&k, "acme", "staff", "otto@example.org", None, PW)
        .await;
    let (st, r) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": person, "role": "org_admin"}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let (id, _) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let p = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    let enrol = b.sign_in(&p, "otto@example.org", PW).await;
    assert!(
        enrol.body.contains("<svg"),
        "an enrolment QR code: {}",
        enrol.body
    );
    let secret = enrol
        .body
        .split("<code>")
        .nth(1)
        .unwrap()
        .split("</code>")
        .next()
        .unwrap()
        .to_string();
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap())
        .with_account_name("x")
        .build()
        .unwrap();
    let now = s.clock.now().as_second() as u64;
    let r = b
        .submit(
            &enrol,
            "/oauth2/mfa/enrol",
            &[("code", &totp.generate(now).to_string())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let recovery: Vec<String> = r
        .body
        .split("<li><code>")
        .skip(1)
        .map(|x| x.split("</code>").next().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    // A new browser: password, then the TOTP code of the next step.
    s.clock.advance(std::time::Duration::from_secs(30));
    let b2 = Browser::new(&s);
    let p = b2
        .get(&authorize_url(&s, &id, &[("scope", "openid")]))
        .await;
    let m = b2.sign_in(&p, "otto@example.org", PW).await;
    assert!(
        m.body.contains("name=\"method\" value=\"totp\""),
        "{}",
        m.body
    );
    let code = totp.generate(s.clock.now().as_second() as u64).to_string();
    let r = b2
        .follow(
            b2.submit(&m, "/oauth2/mfa", &[("method", "totp"), ("code", &code)])
                .await,
        )
        .await;
    assert!(
        r.location.as_deref().is_some_and(|l| l.contains("code=")),
        "{r:?}"
    );
    // The same step again (replay) in a third browser is refused; a recovery code works once.
    let b3 = Browser::new(&s);
    let p = b3
        .get(&authorize_url(&s, &id, &[("scope", "openid")]))
        .await;
    let m = b3.sign_in(&p, "otto@example.org", PW).await;
    let r = b3
        .submit(&m, "/oauth2/mfa", &[("method", "totp"), ("code", &code)])
        .await;
    assert!(r.location.is_none(), "a TOTP step is accepted once");
    let r = b3
        .follow(
            b3.submit(
                &m,
                "/oauth2/mfa",
                &[("method", "totp"), ("code", &recovery[0].to_uppercase())],
            )
            .await,
        )
        .await;
    assert!(
        r.location.as_deref().is_some_and(|l| l.contains("code=")),
        "{r:?}"
    );
}

#[tokio::test]
async fn third_party_apps_ask_for_consent_once_and_lose_access_when_it_is_withdrawn() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let person = s
        .member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let mut c = confidential();
    c["first_party"] = json!(false);
    c["name"] = json!("Chat App");
    let (id, secret) = register(&s, &k, c).await;
    let b = Browser::new(&s);
    let p = b
        .get(&authorize_url(
            &s,
            &id,
            &[("scope", "openid profile duties:read")],
        ))
        .await;
    let consent = b.sign_in(&p, "vera@example.org", PW).await;
    assert!(
        consent.body.contains("Chat App") && consent.body.contains("name=\"decision\""),
        "{}",
        consent.body
    );
    // Deny: the client hears access_denied.
    let r = b
        .submit(&consent, "/oauth2/consent", &[("decision", "deny")])
        .await;
    assert_eq!(
        params(r.location.as_deref().unwrap())
            .get("error")
            .map(String::as_str),
        Some("access_denied")
    );
    // Allow: a code, and next time no question.
    let r = b
        .follow(
            b.submit(&consent, "/oauth2/consent", &[("decision", "allow")])
                .await,
        )
        .await;
    let code = params(r.location.as_deref().unwrap())["code"].clone();
    let again = b
        .get(&authorize_url(&s, &id, &[("scope", "openid duties:read")]))
        .await;
    assert!(
        again
            .location
            .as_deref()
            .is_some_and(|l| l.contains("code=")),
        "remembered: {again:?}"
    );
    let (_, t) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    let at = t["access_token"].as_str().unwrap().to_string();
    let (st, list) = s.get(&at, "/api/v1/me/consents").await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(list[0]["client_id"], id.as_str());
    // The admin sees and withdraws it; the app's tokens stop.
    let (st, l) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{person}/consents"))
        .await;
    assert_eq!((st, l.as_array().unwrap().len()), (200, 1));
    let (st, _) = s
        .delete(
            &k,
            &format!("/api/v1/orgs/acme/people/{person}/consents/{id}"),
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(s.get(&at, "/api/v1/me/consents").await.0, 401);
    let asks = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    assert!(
        asks.body.contains("name=\"decision\""),
        "asked again after withdrawal"
    );
}

#[tokio::test]
async fn device_flow_for_the_cli_with_organisation_choice() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let k2 = s.org("beta").await;
    // One account in two organisations: invited by both.
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (st, p2) = s.post(&k2, "/api/v1/orgs/beta/people", &json!({"given_name": "Vera", "family_name": "B", "kind": "volunteer", "emails": [{"value": "vera@example.org", "type": "work"}]})).await;
    assert_eq!(st, 201);
    let (st, _) = s
        .post(
            &k2,
            &format!(
                "/api/v1/orgs/beta/people/{}/invitation",
                p2["id"].as_str().unwrap()
            ),
            &Value::Null,
        )
        .await;
    assert_eq!(st, 201);

    // The device asks, with the independent client library.
    let http = rp_http();
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(s.base.clone()).unwrap(), &http)
        .await
        .unwrap();
    let client =
        CoreClient::from_provider_metadata(meta, ClientId::new("carebridge-cli".into()), None)
            .set_device_authorization_url(
                openidconnect::DeviceAuthorizationUrl::new(s.url("/oauth2/device_authorization"))
                    .unwrap(),
            );
    let details: openidconnect::core::CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("offline_access".into()))
        .add_scope(Scope::new("duties:read".into()))
        .request_async(&http)
        .await
        .expect("device authorization");
    let device_code = details.device_code().secret().clone();
    let poll = async || {
        token(
            &s,
            None,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", "carebridge-cli"),
                ("device_code", &device_code),
            ],
        )
        .await
    };
    let (st, e) = poll().await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let (_, e) = poll().await;
    assert_eq!(e["error"], "slow_down", "polling faster than the interval");

    // The person approves in a browser: sign in, pick the organisation, confirm.
    let b = Browser::new(&s);
    let page = b
        .get(details.verification_uri_complete().unwrap().secret())
        .await;
    let orgs = b.sign_in(&page, "vera@example.org", PW).await;
    assert!(
        orgs.body.contains("Org acme") && orgs.body.contains("Org beta"),
        "{}",
        orgs.body
    );
    let href = carebridge_testkit::unescape(
        orgs.body
            .split("href=\"")
            .find(|x| x.contains("org=beta"))
            .unwrap()
            .split('"')
            .next()
            .unwrap(),
    );
    let confirm = b.get(&href).await;
    assert!(
        confirm.body.contains("name=\"user_code\""),
        "{}",
        confirm.body
    );
    let done = b
        .submit(
            &confirm,
            "/oauth2/device",
            &[
                ("user_code", details.user_code().secret()),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);

    s.clock.advance(std::time::Duration::from_secs(10));
    let (st, t) = poll().await;
    assert_eq!(st, 200, "{t}");
    let claims =
        jsonwebtoken::dangerous::insecure_decode::<Value>(t["access_token"].as_str().unwrap())
            .unwrap()
            .claims;
    let (_, beta) = s.get(&k2, "/api/v1/orgs/beta").await;
    assert_eq!(
        claims["org"], beta["id"],
        "the token names the chosen organisation"
    );
    assert_eq!(claims["sub"], p2["id"]);
    assert!(t["refresh_token"].is_string());
    let (st, _) = poll().await;
    assert_eq!(st, 400, "a device code is redeemed once");
    // Without the `chat` scope even the CLI's token registers no chat device.
    let (st, e) = s
        .post(
            t["access_token"].as_str().unwrap(),
            "/api/v1/chat/devices",
            &json!({"name": "cli", "signature_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
        )
        .await;
    assert_eq!(st, 403, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("`chat` scope"),
        "{e}"
    );
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_and_deactivation_stops_everything() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let person = s
        .member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, secret) = register(&s, &k, confidential()).await;
    let login = async |b: &Browser| {
        let r = code_for(
            &s,
            b,
            &authorize_url(&s, &id, &[("scope", "openid offline_access duties:read")]),
            "vera@example.org",
        )
        .await;
        let code = params(r.location.as_deref().unwrap())["code"].clone();
        token(
            &s,
            Some((&id, &secret)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
            ],
        )
        .await
        .1
    };
    let (b1, b2) = (Browser::new(&s), Browser::new(&s));
    let t1 = login(&b1).await;
    let t2 = login(&b2).await;
    let at1 = t1["access_token"].as_str().unwrap();
    let at2 = t2["access_token"].as_str().unwrap();
    let (st, list) = s.get(at1, "/api/v1/me/sessions").await;
    assert_eq!((st, list.as_array().unwrap().len()), (200, 2), "{list}");
    // Ending the second session revokes its tokens, not the first's.
    let sid2 = jsonwebtoken::dangerous::insecure_decode::<Value>(t2["id_token"].as_str().unwrap())
        .unwrap()
        .claims["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = s.delete(at1, &format!("/api/v1/me/sessions/{sid2}")).await;
    assert_eq!(st, 204);
    assert_eq!(s.get(at2, "/api/v1/me/duties").await.0, 401);
    assert_eq!(s.get(at1, "/api/v1/me/duties").await.0, 200);
    // The admin deactivates the person: tokens and refresh stop at once.
    let (_, p) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{person}"))
        .await;
    let etag = format!("\"{}\"", p["version"]);
    let (st, r) = s
        .patch(
            &k,
            &format!("/api/v1/orgs/acme/people/{person}"),
            &etag,
            &json!({"active": false}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(s.get(at1, "/api/v1/me/duties").await.0, 401);
    let (st, e) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t1["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_grant")));
    // And sign-in finds no membership any more.
    let b3 = Browser::new(&s);
    let p = b3
        .get(&authorize_url(&s, &id, &[("scope", "openid")]))
        .await;
    let r = b3.sign_in(&p, "vera@example.org", PW).await;
    assert_eq!(r.status, 403, "{r:?}");
}

#[tokio::test]
async fn admin_signs_a_person_out_everywhere() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let person = s
        .member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, secret) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let t = tokens_for(
        &s,
        &b,
        &id,
        &secret,
        "openid duties:read",
        "vera@example.org",
    )
    .await;
    let (st, _) = s
        .post(
            &k,
            &format!("/api/v1/orgs/acme/people/{person}/sign-out-everywhere"),
            &Value::Null,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(
        s.get(t["access_token"].as_str().unwrap(), "/api/v1/me/duties")
            .await
            .0,
        401
    );
    let again = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    assert!(
        again.body.contains("name=\"password\""),
        "the browser session ended too"
    );
    let (st, log) = s.get(&k, "/api/v1/orgs/acme/audit").await;
    assert_eq!(st, 200);
    assert!(
        log.to_string().contains("person.sign_out_everywhere"),
        "{log}"
    );
}

#[tokio::test]
async fn forgot_password_link_is_one_time_and_ends_sessions() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let b = Browser::new(&s);
    let f = b.get("/account/forgot").await;
    let r = b
        .submit(&f, "/account/forgot", &[("login", "vera@example.org")])
        .await;
    assert_eq!(r.status, 200);
    let unknown = b
        .submit(&f, "/account/forgot", &[("login", "nobody@example.org")])
        .await;
    assert_eq!(
        unknown.body, r.body,
        "the same answer for unknown addresses"
    );
    let link = s.mailed_link("vera@example.org").await;
    let form = b.get(&link).await;
    let short = b
        .submit(
            &form,
            "/account/password",
            &[("password", "short"), ("repeat", "short")],
        )
        .await;
    assert_eq!(short.status, 422);
    let new_pw = "a brand new passphrase";
    let ok = b
        .submit(
            &form,
            "/account/password",
            &[("password", new_pw), ("repeat", new_pw)],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let again = b
        .submit(
            &form,
            "/account/password",
            &[("password", new_pw), ("repeat", new_pw)],
        )
        .await;
    assert_eq!(again.status, 400, "the link works once");
    s.clock.advance(std::time::Duration::from_secs(3700));
    let f2 = b.get("/account/forgot").await;
    b.submit(&f2, "/account/forgot", &[("login", "vera@example.org")])
        .await;
    let expired = s.mailed_link("vera@example.org").await;
    s.clock.advance(std::time::Duration::from_secs(3601));
    assert_eq!(
        b.get(&expired).await.status,
        400,
        "links expire after an hour"
    );
}

#[tokio::test]
async fn portal_tokens_are_refused_by_the_api_and_foreign_tokens_by_introspection() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let mut c = confidential();
    c["scopes"] = json!(["openid", "portal", "duties:read"]);
    let (id, secret) = register(&s, &k, c).await;
    let b = Browser::new(&s);
    // portal + API scopes together: refused.
    let r = b
        .get(&authorize_url(
            &s,
            &id,
            &[("scope", "openid portal duties:read")],
        ))
        .await;
    assert_eq!(
        params(r.location.as_deref().unwrap())
            .get("error")
            .map(String::as_str),
        Some("invalid_scope")
    );
    let t = tokens_for(&s, &b, &id, &secret, "openid portal", "vera@example.org").await;
    let at = t["access_token"].as_str().unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(at)
        .unwrap()
        .claims;
    assert_eq!(claims["aud"], "portal");
    assert_eq!(
        s.get(at, "/api/v1/me/duties").await.0,
        401,
        "wrong audience"
    );
    // Introspection knows it; a token signed by a foreign key or with alg none is inactive.
    let intro = async |tok: &str| {
        let r = s
            .http
            .post(s.url("/oauth2/introspect"))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", tok)])
            .send()
            .await
            .unwrap();
        carebridge_testkit::read(r).await.1
    };
    assert_eq!(intro(at).await["active"], true);
    let parts: Vec<&str> = at.split('.').collect();
    let b64 = |v: &Value| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            v.to_string(),
        )
    };
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[0])
            .unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": header["kid"]})),
        parts[1]
    );
    assert_eq!(intro(&none).await["active"], false);
    let foreign_key = jsonwebtoken::EncodingKey::from_ed_der(
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .unwrap()
            .as_ref(),
    );
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = header["kid"].as_str().map(str::to_string);
    let forged = jsonwebtoken::encode(&h, &claims, &foreign_key).unwrap();
    assert_eq!(intro(&forged).await["active"], false);
    // Expired.
    s.clock.advance(std::time::Duration::from_secs(601));
    assert_eq!(intro(at).await["active"], false);
}

#[tokio::test]
async fn logout_redirects_only_to_registered_uris() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, secret) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let t = tokens_for(&s, &b, &id, &secret, "openid", "vera@example.org").await;
    let idt = t["id_token"].as_str().unwrap();
    let mut u = url::Url::parse(&s.url("/oauth2/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", idt)
        .append_pair("post_logout_redirect_uri", "https://evil.example/")
        .append_pair("state", "s1");
    let r = b.get(u.as_str()).await;
    assert_eq!((r.status, r.location), (200, None), "no open redirect");
    // The session ended: signing in again needs the password.
    let p = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    assert!(p.body.contains("name=\"password\""));
    let r = b.sign_in(&p, "vera@example.org", PW).await;
    assert!(r.location.is_some());
    let mut u = url::Url::parse(&s.url("/oauth2/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", idt)
        .append_pair("post_logout_redirect_uri", CB)
        .append_pair("state", "s2");
    let r = b.get(u.as_str()).await;
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{CB}?state=s2").as_str())
    );
}

#[tokio::test]
async fn pages_speak_six_languages() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (id, _) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let de = b
        .http
        .get(authorize_url(&s, &id, &[("scope", "openid")]))
        .header("accept-language", "de-CH,de;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        de.contains("Passwort") && de.contains("lang=\"de\""),
        "{de}"
    );
    let fr = b
        .get(&authorize_url(
            &s,
            &id,
            &[("scope", "openid"), ("ui_locales", "fr")],
        ))
        .await;
    assert!(fr.body.contains("Mot de passe"), "{}", fr.body);
    for (lang, word) in [("it", "Accedi"), ("fi", "Salasana"), ("sv", "Lösenord")] {
        let p = b
            .get(&authorize_url(
                &s,
                &id,
                &[("scope", "openid"), ("ui_locales", lang)],
            ))
            .await;
        assert!(
            p.body.contains(word) && p.body.contains(&format!("lang=\"{lang}\"")),
            "{lang}: {}",
            p.body
        );
    }
}

/// Federation: the organisation's own provider is a second Carebridge server acting as a plain
/// OpenID provider (EdDSA tokens, linking by external id = `sub`).
#[tokio::test]
async fn sign_in_through_the_organisations_own_provider() {
    let a = TestServer::start().await;
    let up = TestServer::start().await;
    let ku = up.org("entra").await;
    let vera_up = up
        .member(&ku, "entra", "volunteer", "vera@example.org", None, PW)
        .await;
    up.member(&ku, "entra", "volunteer", "otto@example.org", None, PW)
        .await;
    let (st, c) = up
        .post(&ku, "/api/v1/orgs/entra/oauth-clients", &json!({"name": "Carebridge acme", "redirect_uris": [a.url("/oauth2/upstream/callback")],
            "grants": ["authorization_code"], "scopes": ["openid", "email", "profile"], "first_party": true}))
        .await;
    assert_eq!(st, 201, "{c}");
    let ka = a.org("acme").await;
    let (st, vera) = a
        .post(
            &ka,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Vera", "family_name": "V", "external_id": vera_up,
            "emails": [{"value": "vera@example.org", "type": "work"}]}),
        )
        .await;
    assert_eq!(st, 201, "{vera}");
    let (st, cfg) = a
        .put(
            &ka,
            "/api/v1/orgs/acme/upstream-idp",
            &json!({"name": "Entra ID", "issuer": up.base, "client_id": c["client"]["client_id"],
            "client_secret": c["client_secret"]}),
        )
        .await;
    assert_eq!(st, 200, "{cfg}");
    assert_eq!(cfg["redirect_uri"], a.url("/oauth2/upstream/callback"));
    assert!(cfg.get("client_secret").is_none());
    let (st, e) = a.put(&ka, "/api/v1/orgs/acme/upstream-idp", &json!({"name": "X", "issuer": "http://evil.example", "client_id": "x", "client_secret": "y"})).await;
    assert_eq!(
        (st, e["errors"][0]["pointer"].as_str()),
        (422, Some("/issuer")),
        "{e}"
    );
    let (id, secret) = register(&a, &ka, confidential()).await;

    let through_upstream = async |login: &str| {
        let (ba, bu) = (Browser::at(&a.base), Browser::at(&up.base));
        let p = ba
            .get(&authorize_url(&a, &id, &[("scope", "openid email")]))
            .await;
        assert!(p.body.contains("Entra ID"), "{}", p.body);
        let href = carebridge_testkit::unescape(
            p.body
                .split("href=\"")
                .find(|x| x.starts_with("/oauth2/upstream"))
                .unwrap()
                .split('"')
                .next()
                .unwrap(),
        );
        let to_up = ba.get(&href).await;
        let up_login = bu
            .get(to_up.location.as_deref().expect("off to the provider"))
            .await;
        let mut back = bu.sign_in(&up_login, login, PW).await;
        if back.body.contains("name=\"code\"") {
            // The provider asks its own second factor (an SMS to the person's mobile).
            let code = up.texted_code("+41791112233").await;
            back = bu
                .follow(
                    bu.submit(&back, "/oauth2/mfa", &[("method", "sms"), ("code", &code)])
                        .await,
                )
                .await;
        }
        let back = back.location.expect("back to Carebridge");
        assert!(
            back.starts_with(&a.url("/oauth2/upstream/callback")),
            "{back}"
        );
        ba.follow(ba.get(&back).await).await
    };
    let r = through_upstream("vera@example.org").await;
    let loc = r.location.expect("a code for the client");
    let code = params(&loc)["code"].clone();
    let (st, t) = token(
        &a,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(t["id_token"].as_str().unwrap())
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], vera["id"], "linked by external id");
    assert!(claims["amr"].as_array().unwrap().iter().any(|m| m == "fed"));
    // Someone the provider knows but the directory does not: refused, nobody created.
    let r = through_upstream("otto@example.org").await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.location.is_none());
    // An admin on both sides: the provider's own second factor (its `amr` says `mfa`) counts,
    // so Carebridge does not ask again although its policy wants one for admins.
    let mara_up = up
        .member(
            &ku,
            "entra",
            "staff",
            "mara@example.org",
            Some("+41 79 111 22 33"),
            PW,
        )
        .await;
    let (st, _) = up
        .post(
            &ku,
            "/api/v1/orgs/entra/roles",
            &json!({"person_id": mara_up, "role": "org_admin"}),
        )
        .await;
    assert_eq!(st, 201);
    let (_, mara) = a
        .post(
            &ka,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Mara", "family_name": "M", "external_id": mara_up}),
        )
        .await;
    let (st, _) = a
        .post(
            &ka,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": mara["id"], "role": "org_admin"}),
        )
        .await;
    assert_eq!(st, 201);
    let r = through_upstream("mara@example.org").await;
    let loc = r
        .location
        .unwrap_or_else(|| panic!("no second factor asked again: {}", r.body));
    let (_, t) = token(
        &a,
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &params(&loc)["code"]),
            ("redirect_uri", CB),
        ],
    )
    .await;
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(t["id_token"].as_str().unwrap())
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], mara["id"]);
    assert!(
        claims["amr"].as_array().unwrap().iter().any(|m| m == "mfa"),
        "{claims}"
    );
    // A replayed callback (state used) is refused.
    let (st, _) = carebridge_testkit::read(
        a.http
            .get(a.url("/oauth2/upstream/callback?state=nope&code=x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 400);
}

/// Starts panva/oidc-provider (Node) as an independent upstream provider; `(child, issuer)`.
async fn start_oidc_provider(
    redirect_uri: &str,
    client_id: &str,
    client_secret: &str,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc-provider");
    if !std::path::Path::new(&format!("{dir}/node_modules/oidc-provider")).exists() {
        let st = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .expect("npm (Node.js) is needed for the federation test");
        assert!(st.success(), "npm ci in {dir} failed");
    }
    let mut child = tokio::process::Command::new("node")
        .arg("server.mjs")
        .current_dir(dir)
        .env("REDIRECT_URI", redirect_uri)
        .env("CLIENT_ID", client_id)
        .env("CLIENT_SECRET", client_secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node (Node.js) is needed for the federation test");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let issuer = loop {
        let l = lines
            .next_line()
            .await
            .unwrap()
            .expect("oidc-provider exited before listening");
        if let Some(i) = l.strip_prefix("listening ") {
            break i.to_string();
        }
    };
    // Keep reading its output, or its next log line would die of a broken pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, issuer)
}

/// Federation against an independent OpenID provider (panva/oidc-provider, RS256, Entra-style
/// `oid`): linked by external id, by verified e-mail, never by an unverified one, and a
/// stranger is refused.
#[tokio::test]
async fn sign_in_through_an_independent_upstream_provider() {
    let a = TestServer::start().await;
    // The provider runs on the wall clock; so does Carebridge's check of its ID tokens here.
    #[allow(clippy::disallowed_methods)]
    a.clock.set(carebridge_domain::Timestamp::now());
    let (_idp, issuer) = start_oidc_provider(
        &a.url("/oauth2/upstream/callback"),
        "carebridge",
        "a-long-client-secret-for-tests",
    )
    .await;
    let ka = a.org("acme").await;
    let (_, vera) = a
        .post(&ka, "/api/v1/orgs/acme/people", &json!({"given_name": "Vera", "family_name": "V", "external_id": "7f3c2a10-0000-4000-8000-000000000001"}))
        .await;
    let (_, mia) = a
        .post(&ka, "/api/v1/orgs/acme/people", &json!({"given_name": "Mia", "family_name": "M", "emails": [{"value": "Mia@Example.org", "type": "work"}]}))
        .await;
    let (st, cfg) = a
        .put(&ka, "/api/v1/orgs/acme/upstream-idp", &json!({"name": "Contoso Entra ID", "issuer": issuer, "client_id": "carebridge", "client_secret": "a-long-client-secret-for-tests"}))
        .await;
    assert_eq!(st, 200, "{cfg}");
    let (id, secret) = register(&a, &ka, confidential()).await;

    let through = async |login: &str| {
        let (ba, bu) = (Browser::at(&a.base), Browser::at(&issuer));
        let p = ba
            .get(&authorize_url(&a, &id, &[("scope", "openid")]))
            .await;
        let href = carebridge_testkit::unescape(
            p.body
                .split("href=\"")
                .find(|x| x.starts_with("/oauth2/upstream"))
                .expect("a provider button")
                .split('"')
                .next()
                .unwrap(),
        );
        let mut r = ba.get(&href).await;
        // Through the provider's own (development) login and consent pages.
        for _ in 0..12 {
            match r.location.clone() {
                Some(l) if l.starts_with(&a.base) => return ba.follow(ba.get(&l).await).await,
                Some(l) => r = bu.get(&l).await,
                None => {
                    let action = carebridge_testkit::unescape(
                        r.body
                            .split("action=\"")
                            .nth(1)
                            .unwrap_or_else(|| panic!("a form: {}", r.body))
                            .split('"')
                            .next()
                            .unwrap(),
                    );
                    // The forms carry a hidden `prompt` (login, then consent).
                    let prompt = if r.body.contains("name=\"login\"") {
                        "login"
                    } else {
                        "consent"
                    };
                    r = bu
                        .post(
                            &action,
                            &[
                                ("prompt", prompt),
                                ("login", login),
                                ("password", "anything"),
                            ],
                        )
                        .await;
                }
            }
        }
        panic!("never came back from the provider: {r:?}");
    };
    let code_of = async |r: Page| {
        let loc = r
            .location
            .unwrap_or_else(|| panic!("a code for the client: {}", r.body));
        let code = params(&loc)["code"].clone();
        let (st, t) = token(
            &a,
            Some((&id, &secret)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
            ],
        )
        .await;
        assert_eq!(st, 200, "{t}");
        jsonwebtoken::dangerous::insecure_decode::<Value>(t["id_token"].as_str().unwrap())
            .unwrap()
            .claims
    };
    // By the Entra object id as external id.
    let c = code_of(through("vera").await).await;
    assert_eq!(c["sub"], vera["id"]);
    // By a verified e-mail (case-insensitive).
    let c = code_of(through("mail").await).await;
    assert_eq!(c["sub"], mia["id"]);
    // The same address unverified, and someone the directory does not know: refused.
    for who in ["unverified", "stranger"] {
        let r = through(who).await;
        assert_eq!(
            (r.status, r.location.is_none()),
            (403, true),
            "{who}: {r:?}"
        );
    }
    // With just-in-time creation on, the stranger becomes a person (created by the directory,
    // audited as the federation) and signs in.
    let (st, cfg) = a
        .put(
            &ka,
            "/api/v1/orgs/acme/upstream-idp",
            &json!({"name": "Contoso Entra ID", "issuer": issuer, "client_id": "carebridge",
            "client_secret": "a-long-client-secret-for-tests", "jit_create": true}),
        )
        .await;
    assert_eq!((st, &cfg["jit_create"]), (200, &json!(true)), "{cfg}");
    let c = code_of(through("stranger").await).await;
    let (st, p) = a
        .get(
            &ka,
            &format!("/api/v1/orgs/acme/people/{}", c["sub"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["external_id"], "7f3c2a10-0000-4000-8000-000000000004");
    assert_eq!(p["emails"][0]["value"], "stranger@example.org");
    let (_, log) = a.get(&ka, "/api/v1/orgs/acme/audit").await;
    assert!(log.to_string().contains("system:federation"), "{log}");
    // Signing in again links the same person (by external id), no second one.
    let c2 = code_of(through("stranger").await).await;
    assert_eq!(c2["sub"], c["sub"]);
}

#[tokio::test]
async fn failed_client_authentications_block_the_source_for_a_minute() {
    let s = TestServer::start_with(|c| c.signin_per_minute = 3).await;
    let k = s.org("acme").await;
    let (id, secret) = register(
        &s,
        &k,
        json!({"name": "ERP", "grants": ["client_credentials"], "scopes": ["duties:read"]}),
    )
    .await;
    let cc = [("grant_type", "client_credentials")];
    let mut statuses = vec![];
    for _ in 0..5 {
        statuses.push(token(&s, Some((&id, "d3Jvbmctc2VjcmV0")), &cc).await.0);
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 429]);
    // While blocked, even the right secret is turned away (a guess cannot be confirmed).
    let (st, e) = token(&s, Some((&id, &secret)), &cc).await;
    assert_eq!(st, 429, "{e}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_is_per_real_caller() {
    let s = TestServer::start_with(|c| {
        c.signin_per_minute = 2;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let k = s.org("acme").await;
    let (id, _) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let p = b.get(&authorize_url(&s, &id, &[("scope", "openid")])).await;
    let fields = |login: &'static str| {
        vec![
            ("csrf".to_string(), p.field("csrf").unwrap()),
            ("next".to_string(), p.field("next").unwrap()),
            ("login".to_string(), login.to_string()),
            ("password".to_string(), "wrong password!".to_string()),
        ]
    };
    let attempt = async |from: &str| {
        b.http
            .post(s.url("/oauth2/login"))
            .header("x-forwarded-for", from)
            .form(&fields("nobody@example.org"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(attempt("198.51.100.1").await, 401);
    assert_eq!(attempt("198.51.100.1").await, 401);
    assert_eq!(
        attempt("198.51.100.1").await,
        429,
        "the same caller is limited"
    );
    assert_eq!(
        attempt("198.51.100.2").await,
        401,
        "another caller behind the proxy is not"
    );
}

#[tokio::test]
async fn concurrent_use_of_one_refresh_token_is_reuse() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    s.member(&k, "acme", "volunteer", "vera@example.org", None, PW)
        .await;
    let (id, secret) = register(&s, &k, confidential()).await;
    let b = Browser::new(&s);
    let t = tokens_for(
        &s,
        &b,
        &id,
        &secret,
        "openid offline_access",
        "vera@example.org",
    )
    .await;
    let rt = t["refresh_token"].as_str().unwrap();
    let f = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    let ((s1, a), (s2, b2)) = tokio::join!(
        token(&s, Some((&id, &secret)), &f),
        token(&s, Some((&id, &secret)), &f)
    );
    let mut statuses = [s1, s2];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{a} {b2}");
    // The loser was a reuse: the winner's new refresh token is dead too.
    let winner = if s1 == 200 { a } else { b2 };
    let (st, e) = token(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", winner["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
}
