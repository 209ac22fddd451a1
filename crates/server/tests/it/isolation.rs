//! Tenant isolation: every route of the OpenAPI document, called with a credential of
//! organisation B on organisation A's ids, answers 404 (or 403) and changes nothing. New routes
//! are covered automatically because the walk reads the OpenAPI document.

use carebridge_testkit::TestServer;
use serde_json::{Value, json};

#[tokio::test]
async fn no_route_crosses_organisations() {
    let s = TestServer::start().await;
    let ka = s.org("alpha").await;
    let kb = s.org("beta").await;
    let (_, unit) = s
        .post(&ka, "/api/v1/orgs/alpha/units", &json!({"name": "A-Unit"}))
        .await;
    let (_, person) = s
        .post(
            &ka,
            "/api/v1/orgs/alpha/people",
            &json!({"given_name": "A", "family_name": "Person", "unit_ids": [unit["id"]]}),
        )
        .await;
    let (_, role) = s
        .post(
            &ka,
            "/api/v1/orgs/alpha/roles",
            &json!({"person_id": person["id"], "role": "member"}),
        )
        .await;
    let (_, qual) = s
        .post(
            &ka,
            "/api/v1/orgs/alpha/qualifications",
            &json!({"name": "Sanitäter"}),
        )
        .await;
    let (st, duty) = s
        .post(
            &ka,
            "/api/v1/orgs/alpha/duties",
            &json!({"unit_id": unit["id"], "title": "A-Duty", "starts_at": "2026-12-01T08:00", "ends_at": "2026-12-01T16:00",
                    "time_zone": "Europe/Zurich", "positions": [{"name": "Fahrer", "qualification_id": qual["id"]}]}),
        )
        .await;
    assert_eq!(st, 201, "{duty}");
    let (st, client) = s
        .post(
            &ka,
            "/api/v1/orgs/alpha/oauth-clients",
            &json!({"name": "ERP", "grants": ["client_credentials"], "scopes": ["duties:read"]}),
        )
        .await;
    assert_eq!(st, 201, "{client}");
    let (_, group) = s
        .post(&ka, "/api/v1/orgs/alpha/groups", &json!({"name": "Nacht"}))
        .await;
    let (_, skill) = s
        .post(&ka, "/api/v1/orgs/alpha/skills", &json!({"name": "Fahrer"}))
        .await;
    let (st, grant) = s
        .post(
            &ka,
            "/api/v1/orgs/alpha/contact-grants",
            &json!({"viewer": {"kind": "group", "id": group["id"]}, "target": {"kind": "unit", "id": unit["id"]}, "fields": ["name"]}),
        )
        .await;
    assert_eq!(st, 201, "{grant}");
    let job: Value = s
        .http
        .post(s.url("/api/v1/orgs/alpha/import-jobs?dry_run=true"))
        .bearer_auth(&ka)
        .header("prefer", "wait=30")
        .body("Vorname;Nachname;E-Mail\nAda;X;ada@alpha.example\n")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "done", "{job}");
    let (_, keys) = s.get(&ka, "/api/v1/orgs/alpha/api-keys").await;
    let key_id = keys["items"][0]["id"].as_str().unwrap().to_string();
    let (_, org) = s.get(&ka, "/api/v1/orgs/alpha").await;
    let audit_before =
        s.get(&ka, "/api/v1/orgs/alpha/audit?limit=1").await.1["items"][0]["seq"].clone();

    let doc: Value = s
        .http
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains("{org}") {
            continue;
        }
        for org_ref in ["alpha", org["id"].as_str().unwrap()] {
            let concrete = path
                .replace("{org}", org_ref)
                .replace("{unit}", unit["id"].as_str().unwrap())
                .replace("{person}", person["id"].as_str().unwrap())
                .replace("{viewer}", person["id"].as_str().unwrap())
                .replace("{device}", &uuid::Uuid::new_v4().to_string())
                .replace("{session}", &uuid::Uuid::new_v4().to_string())
                .replace("{message}", &uuid::Uuid::new_v4().to_string())
                .replace("{assignment}", role["id"].as_str().unwrap())
                .replace("{key}", &key_id)
                .replace("{duty}", duty["id"].as_str().unwrap())
                .replace("{qualification}", qual["id"].as_str().unwrap())
                .replace("{feature}", "chat")
                .replace("{group}", group["id"].as_str().unwrap())
                .replace("{skill}", skill["id"].as_str().unwrap())
                .replace("{grant}", grant["id"].as_str().unwrap())
                .replace("{job}", job["id"].as_str().unwrap())
                .replace("{client}", client["client"]["id"].as_str().unwrap())
                .replace(
                    "{client_id}",
                    client["client"]["client_id"].as_str().unwrap(),
                );
            assert!(
                !concrete.contains('{'),
                "unknown path parameter in {path}: extend this test"
            );
            for method in item.as_object().unwrap().keys() {
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let r = s
                    .http
                    .request(m.clone(), s.url(&concrete))
                    .bearer_auth(&kb)
                    .header("if-match", "\"1\"")
                    .json(&json!({"name": "x", "given_name": "x", "family_name": "y", "person_id": person["id"], "role": "member", "permissions": ["directory:read"]}))
                    .send()
                    .await
                    .unwrap();
                let st = r.status().as_u16();
                let body = r.text().await.unwrap();
                assert!(
                    st == 404 || st == 403,
                    "{m} {concrete} with org B's key answered {st}: {body}"
                );
                assert!(
                    !body.contains("A-Unit")
                        && !body.contains("Person")
                        && !body.contains("A-Duty"),
                    "{m} {concrete} leaked data: {body}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "walked only {checked} route/method pairs");
    // Nothing changed in A.
    let audit_after =
        s.get(&ka, "/api/v1/orgs/alpha/audit?limit=1").await.1["items"][0]["seq"].clone();
    assert_eq!(audit_before, audit_after);
    let (st, p) = s
        .get(
            &ka,
            &format!(
                "/api/v1/orgs/alpha/people/{}",
                person["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!((st, p["version"].as_i64()), (200, Some(1)));
}
