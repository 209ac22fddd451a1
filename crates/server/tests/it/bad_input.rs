//! Malformed requests: each gets a clear 4xx problem document naming the place, and nothing is
//! written (the person count and the audit chain stay as they were).

use carebridge_testkit::TestServer;
use serde_json::{Value, json};

async fn snapshot(s: &TestServer, k: &str) -> (usize, i64) {
    let (_, people) = s.get(k, "/api/v1/orgs/acme/people?limit=200").await;
    let (_, audit) = s.get(k, "/api/v1/orgs/acme/audit?limit=1").await;
    (
        people["items"].as_array().unwrap().len(),
        audit["items"][0]["seq"].as_i64().unwrap_or(0),
    )
}

async fn raw(
    s: &TestServer,
    k: &str,
    method: reqwest::Method,
    path: &str,
    ct: &str,
    body: Vec<u8>,
) -> (u16, Value, String) {
    let r = s
        .http
        .request(method, s.url(path))
        .bearer_auth(k)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let (st, v) = carebridge_testkit::read(r).await;
    (st, v, ct)
}

#[tokio::test]
async fn every_malformed_request_is_a_precise_problem_and_writes_nothing() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (_, p) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Keep", "family_name": "Me"}),
        )
        .await;
    let pid = p["id"].as_str().unwrap().to_string();
    let before = snapshot(&s, &k).await;
    let post = reqwest::Method::POST;
    let cases: Vec<(reqwest::Method, String, &str, Vec<u8>, u16, &str, Option<&str>)> = vec![
        (post.clone(), "/api/v1/orgs/acme/people".into(), "application/json", b"{\"given_name\": ".to_vec(), 400, "malformed_json", None),
        (post.clone(), "/api/v1/orgs/acme/people".into(), "application/json", br#"{"given_name": 5, "family_name": "x"}"#.to_vec(), 400, "invalid_json_value", Some("/given_name")),
        (post.clone(), "/api/v1/orgs/acme/people".into(), "application/json", br#"{"given_name": "a", "family_name": "b", "shoe_size": 44}"#.to_vec(), 400, "invalid_json_value", None),
        (post.clone(), "/api/v1/orgs/acme/people".into(), "application/json", br#"{"given_name": "a", "family_name": "b", "emails": [{"value": "x@y.ch"}, {"value": 3}]}"#.to_vec(), 400, "invalid_json_value", Some("/emails/1/value")),
        (post.clone(), "/api/v1/orgs/acme/people".into(), "application/json", br#"{"given_name": "", "family_name": "b", "phones": [{"value": "12"}]}"#.to_vec(), 422, "validation", Some("/given_name")),
        (post.clone(), "/api/v1/orgs/acme/people".into(), "text/plain", br#"{"given_name": "a", "family_name": "b"}"#.to_vec(), 415, "unsupported_media_type", None),
        (post.clone(), "/api/v1/orgs/acme/people".into(), "application/json", vec![b' '; 2 * 1024 * 1024], 413, "payload_too_large", None),
        (post.clone(), "/api/v1/orgs/acme/people".into(), "application/json", br#"{"given_name": "a", "family_name": "b", "unit_ids": ["not-a-uuid"]}"#.to_vec(), 400, "invalid_json_value", Some("/unit_ids/0")),
        (post.clone(), "/api/v1/orgs/acme/people".into(), "application/json", br#"{"given_name": "a", "family_name": "b", "unit_ids": ["0190f0e4-8f0e-7c3a-9a4e-1d2b3c4d5e6f"]}"#.to_vec(), 422, "validation", Some("/unit_ids/0")),
        (reqwest::Method::GET, "/api/v1/orgs/acme/people/not-a-uuid".into(), "application/json", vec![], 400, "invalid_path_parameter", Some("/path/person")),
        (reqwest::Method::GET, "/api/v1/orgs/acme/people?cursor=eyJ4IjoxfQ.AAAA".into(), "application/json", vec![], 400, "invalid_cursor", Some("/query/cursor")),
        (reqwest::Method::GET, "/api/v1/orgs/acme/people?limit=100000".into(), "application/json", vec![], 400, "invalid_limit", Some("/query/limit")),
        (reqwest::Method::GET, "/api/v1/orgs/acme/people?colour=red".into(), "application/json", vec![], 400, "invalid_query", None),
        (reqwest::Method::PATCH, format!("/api/v1/orgs/acme/people/{pid}"), "application/json", br#"{"given_name": "Changed"}"#.to_vec(), 428, "if_match_required", None),
    ];
    for (method, path, ct, body, status, code, pointer) in cases {
        let (st, v, rct) = raw(&s, &k, method.clone(), &path, ct, body).await;
        assert_eq!(st, status, "{method} {path}: {v}");
        assert_eq!(rct, "application/problem+json", "{method} {path}");
        assert_eq!(v["code"], code, "{method} {path}: {v}");
        assert!(
            v["request_id"].is_string(),
            "problem names the request id: {v}"
        );
        if let Some(ptr) = pointer {
            let ptrs: Vec<&str> = v["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["pointer"].as_str().unwrap())
                .collect();
            assert!(
                ptrs.contains(&ptr),
                "{method} {path}: want {ptr} in {ptrs:?}"
            );
        }
    }
    // A tampered cursor from a real page is refused as well.
    for i in 0..3 {
        s.post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": format!("N{i}"), "family_name": "X"}),
        )
        .await;
    }
    let after_creates = snapshot(&s, &k).await;
    let (_, page) = s.get(&k, "/api/v1/orgs/acme/people?limit=1").await;
    let c = page["next_cursor"].as_str().unwrap();
    // One character changed (to another one: replacing an 'A' by 'A' would change nothing).
    let swap = if &c[2..3] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swap}{}", &c[..2], &c[3..]);
    let (st, _) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/people?limit=1&cursor={tampered}"),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        before.0 + 3,
        after_creates.0,
        "only the three good creates were written"
    );
    let (_, kept) = s.get(&k, &format!("/api/v1/orgs/acme/people/{pid}")).await;
    assert_eq!(kept["given_name"], "Keep");
}

#[tokio::test]
async fn credentials_are_checked() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let r = s
        .http
        .get(s.url("/api/v1/orgs/acme/people"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    for bad in [
        "nonsense",
        "cbk_00000000000000000000000000000000_AAAA",
        &format!("{}x", &k[..k.len() - 1]),
    ] {
        let (st, v) = s.get(bad, "/api/v1/orgs/acme/people").await;
        assert_eq!(
            (st, v["code"].as_str()),
            (401, Some("unauthorized")),
            "{bad}"
        );
    }
    // A revoked key stops working at once.
    let k2 = s.key("acme", &["directory:read"]).await;
    // The key id is part of the presented key: cbk_<id>_<secret>.
    let id = uuid::Uuid::try_parse(k2.split('_').nth(1).unwrap())
        .unwrap()
        .to_string();
    let (_, keys) = s.get(&k, "/api/v1/orgs/acme/api-keys").await;
    assert!(
        keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str())
    );
    assert!(!keys.to_string().contains(&k2), "secrets are never listed");
    let (st, _) = s.get(&k2, "/api/v1/orgs/acme/people").await;
    assert_eq!(st, 200);
    let (st, _) = s
        .delete(&k, &format!("/api/v1/orgs/acme/api-keys/{id}"))
        .await;
    assert_eq!(st, 200);
    let (st, _) = s.get(&k2, "/api/v1/orgs/acme/people").await;
    assert_eq!(st, 401);
}
