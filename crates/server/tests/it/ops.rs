//! Operations: health, readiness, metrics, the OpenAPI document, first-start set-up, backup and
//! restore, configuration and the two migration sets.

use std::collections::BTreeMap;

use carebridge_server::config::Config;
use carebridge_testkit::TestServer;
use serde_json::{Value, json};

#[tokio::test]
async fn health_ready_metrics_openapi() {
    let s = TestServer::start().await;
    assert_eq!(
        s.http.get(s.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        s.http.get(s.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let k = s.org("acme").await;
    s.get(&k, "/api/v1/orgs/acme/people").await;
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
        m.contains("http_requests_total") && m.contains("route=\"/api/v1/orgs/{org}/people\""),
        "{m}"
    );
    let doc: Value = s
        .http
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for p in [
        "/api/v1/orgs",
        "/api/v1/orgs/{org}/people/{person}",
        "/api/v1/orgs/{org}/units/{unit}",
        "/api/v1/orgs/{org}/roles",
        "/api/v1/orgs/{org}/audit",
        "/api/v1/orgs/{org}/api-keys",
        "/api/v1/setup",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    let (st, v) = s.get(&k, "/api/v1/nothing-here").await;
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn first_start_setup_creates_org_admin_and_key_once() {
    let s = TestServer::start().await;
    let token = s
        .running
        .setup_token
        .clone()
        .expect("empty database prints a set-up token");
    let req = json!({
        "token": token,
        "org": {"slug": "spitex-nord", "name": "Spitex Nord", "default_region": "CH", "default_language": "de"},
        "admin": {"given_name": "Erika", "family_name": "Muster", "email": "erika@spitex.ch", "password": "correct horse battery"}
    });
    let mut wrong = req.clone();
    wrong["token"] = json!("guess");
    let r = s
        .http
        .post(s.url("/api/v1/setup"))
        .json(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let mut short = req.clone();
    short["admin"]["password"] = json!("short");
    let (st, v) = carebridge_testkit::read(
        s.http
            .post(s.url("/api/v1/setup"))
            .json(&short)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, v["errors"][0]["pointer"].as_str()),
        (422, Some("/admin/password"))
    );
    let (st, v) = carebridge_testkit::read(
        s.http
            .post(s.url("/api/v1/setup"))
            .json(&req)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert!(
        !v.to_string().contains("correct horse"),
        "the password is never echoed"
    );
    let key = v["api_key"]["secret"].as_str().unwrap().to_string();
    let (st, me) = s.get(&key, "/api/v1/orgs/spitex-nord/people").await;
    assert_eq!(st, 200);
    assert_eq!(me["items"][0]["emails"][0]["value"], "erika@spitex.ch");
    let (_, roles) = s.get(&key, "/api/v1/orgs/spitex-nord/roles").await;
    assert_eq!(roles["items"][0]["role"], "org_admin");
    let r = s
        .http
        .post(s.url("/api/v1/setup"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the token is single-use");
}

#[tokio::test]
async fn platform_keys_create_organisations() {
    let s = TestServer::start().await;
    let pk = s.platform_key().await;
    let (st, o) = s
        .post(
            &pk,
            "/api/v1/orgs",
            &json!({"slug": "rk-aargau", "name": "Rotes Kreuz Aargau"}),
        )
        .await;
    assert_eq!(st, 201, "{o}");
    let (st, _) = s
        .post(
            &pk,
            "/api/v1/orgs",
            &json!({"slug": "rk-aargau", "name": "Again"}),
        )
        .await;
    assert_eq!(st, 422);
    let k = s.org("other").await;
    let (st, _) = s
        .post(&k, "/api/v1/orgs", &json!({"slug": "nope", "name": "Nope"}))
        .await;
    assert_eq!(st, 403);
    let (_, list) = s.get(&k, "/api/v1/orgs").await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "an org key sees only its own organisation"
    );
}

#[tokio::test]
async fn backup_while_running_restores() {
    if carebridge_testkit::on_postgres() {
        return; // pg_dump is the PostgreSQL backup (README); this covers the embedded database.
    }
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (_, p) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Back", "family_name": "Up"}),
        )
        .await;
    let file = s.dir().join("backup.db");
    carebridge_server::commands::backup(&s.running.state.db, &file)
        .await
        .unwrap();
    assert!(
        carebridge_server::commands::backup(&s.running.state.db, &file)
            .await
            .is_err(),
        "never overwrites"
    );
    let restored =
        TestServer::start_with(|c| c.database_url = format!("sqlite://{}", file.display())).await;
    let (st, back) = restored
        .get(
            &k,
            &format!("/api/v1/orgs/acme/people/{}", p["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!((st, back["family_name"].as_str()), (200, Some("Up")));
    assert!(
        carebridge_server::commands::audit_verify(&restored.running.state.db, Some("acme"))
            .await
            .unwrap()
    );
}

#[test]
fn example_config_matches_defaults() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../carebridge.example.toml"
    ))
    .unwrap();
    let parsed: Config =
        toml::from_str(&text).expect("the example config parses with deny_unknown_fields");
    assert_eq!(
        parsed,
        Config::default(),
        "carebridge.example.toml must show the defaults"
    );
    let keys: Vec<String> = toml::Value::try_from(Config::default())
        .unwrap()
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for k in keys {
        assert!(
            text.contains(&format!("{k} =")) || text.contains(&format!("# {k} =")),
            "example config lacks {k}"
        );
    }
}

/// Folds one migration file into `out` (tables → columns): `CREATE TABLE`, `DROP TABLE`,
/// `ALTER TABLE … RENAME TO …` (SQLite rebuilds tables that way) and `… ADD COLUMN …`.
/// Returns the number of `CREATE TABLE` statements parsed.
fn schema(out: &mut BTreeMap<String, Vec<String>>, sql: &str) -> usize {
    let mut created = 0;
    for stmt in sql.split(';') {
        let s = stmt
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let s = s.trim();
        if let Some(name) = s.strip_prefix("DROP TABLE ") {
            out.remove(name.trim());
            continue;
        }
        if let Some(rest) = s.strip_prefix("ALTER TABLE ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [from, "RENAME", "TO", to] => {
                    if let Some(cols) = out.remove(*from) {
                        out.insert(to.to_string(), cols);
                    }
                }
                [table, "ADD", "COLUMN", col, ..] => {
                    if let Some(cols) = out.get_mut(*table) {
                        cols.push(col.to_string());
                    }
                }
                _ => {}
            }
            continue;
        }
        let Some(rest) = s.strip_prefix("CREATE TABLE ") else {
            continue;
        };
        created += 1;
        let (name, body) = rest.split_once('(').unwrap();
        let cols = body
            .lines()
            .map(str::trim)
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with("PRIMARY")
                    && !l.starts_with("UNIQUE")
                    && !l.starts_with(')')
            })
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect();
        out.insert(name.trim().to_string(), cols);
    }
    created
}

#[test]
fn both_migration_sets_describe_the_same_schema() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../store/migrations");
    let mut lite = std::fs::read_dir(format!("{dir}/sqlite"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect::<Vec<_>>();
    let mut pg = std::fs::read_dir(format!("{dir}/postgres"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect::<Vec<_>>();
    lite.sort();
    pg.sort();
    assert_eq!(lite, pg, "the same migration files for both backends");
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    for f in lite {
        let lite_sql =
            std::fs::read_to_string(format!("{dir}/sqlite/{}", f.to_string_lossy())).unwrap();
        let n = schema(&mut a, &lite_sql);
        schema(
            &mut b,
            &std::fs::read_to_string(format!("{dir}/postgres/{}", f.to_string_lossy())).unwrap(),
        );
        // Every CREATE TABLE was parsed.
        assert_eq!(n, lite_sql.matches("CREATE TABLE").count(), "{f:?}");
        // After each migration both schemas have the same tables and columns.
        assert_eq!(a, b, "{f:?}");
    }
    assert!(a.contains_key("person_tokens") && a.len() > 20, "{a:?}");
}

#[tokio::test]
async fn serves_https_directly_with_hsts() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let s = TestServer::start_with(|c| {
        c.tls_cert = Some(cert_path.clone());
        c.tls_key = Some(key_path.clone());
    })
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "https://localhost:{}/healthz",
            s.running.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    // Over HTTPS the sign-in pages' cookies are Secure.
    let page = client
        .get(format!(
            "https://localhost:{}/account/forgot",
            s.running.addr.port()
        ))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("cb_csrf=")
            && cookie.contains("; Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let plain = reqwest::get(format!(
        "http://127.0.0.1:{}/healthz",
        s.running.addr.port()
    ))
    .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "no plain HTTP on the TLS port"
    );
}

#[tokio::test]
async fn signing_keys_rotate_and_old_ones_age_out_of_the_jwks() {
    let s = carebridge_testkit::TestServer::start().await;
    let get = |path: &'static str| {
        let http = s.http.clone();
        let url = s.url(path);
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let disco = get("/.well-known/openid-configuration").await;
    assert_eq!(disco["issuer"], s.base.trim_end_matches('/'));
    assert_eq!(
        disco["jwks_uri"],
        format!("{}/oauth2/jwks", s.base.trim_end_matches('/'))
    );
    let jwks = get("/oauth2/jwks").await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0]["kty"].as_str(), keys[0]["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let first = keys[0]["kid"].clone();
    let db = &s.running.state.db;
    let now = carebridge_testkit::t0();
    let claims =
        serde_json::json!({"iss": "i", "aud": "a", "sub": "s", "exp": now.as_second() + 600});
    let before = carebridge_identity::keys::active(db)
        .await
        .unwrap()
        .sign(&claims)
        .unwrap();
    let new = carebridge_identity::keys::rotate(db, now).await.unwrap();
    let jwks = get("/oauth2/jwks").await;
    let kids: Vec<&serde_json::Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(
        kids,
        [&serde_json::json!(new), &first],
        "new key first, the old one still published"
    );
    // A token signed before the rotation still verifies against the published keys.
    let published = carebridge_identity::keys::published(db, now).await.unwrap();
    let back: serde_json::Value =
        carebridge_identity::keys::verify(&before, &published, "i", "a", now).unwrap();
    assert_eq!(back, claims);
    assert_eq!(
        carebridge_identity::keys::active(db).await.unwrap().kid,
        new
    );
    // An hour later the retired key is gone.
    s.clock.set(now + jiff::SignedDuration::from_secs(3601));
    let jwks = get("/oauth2/jwks").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], serde_json::json!(new));
}
