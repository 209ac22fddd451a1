//! The audit log: every change writes a chained event in the same transaction; editing or
//! deleting a stored event is detected.

use carebridge_store::{exec, sqlx};
use carebridge_testkit::TestServer;
use serde_json::json;

#[tokio::test]
async fn changes_are_audited_and_tampering_is_detected() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (_, u) = s
        .post(&k, "/api/v1/orgs/acme/units", &json!({"name": "U"}))
        .await;
    let (_, p) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Geheim", "family_name": "Person"}),
        )
        .await;
    s.patch(
        &k,
        &format!("/api/v1/orgs/acme/people/{}", p["id"].as_str().unwrap()),
        "\"1\"",
        &json!({"family_name": "Neu"}),
    )
    .await;
    let (st, log) = s.get(&k, "/api/v1/orgs/acme/audit").await;
    assert_eq!(st, 200);
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "person.update",
            "person.create",
            "unit.create",
            "apikey.create",
            "org.create"
        ]
    );
    let ev = &log["items"][0];
    assert_eq!(ev["target_id"], p["id"]);
    assert!(ev["actor"].as_str().unwrap().starts_with("apikey:"));
    assert_eq!(ev["source"], "api");
    assert!(ev["before_digest"].is_string() && ev["after_digest"].is_string());
    assert!(
        !log.to_string().contains("Geheim"),
        "the log holds digests, not personal data"
    );
    let _ = u;
    let (_, v) = s.get(&k, "/api/v1/orgs/acme/audit/verify").await;
    assert_eq!(
        (v["ok"].as_bool(), v["events_checked"].as_u64()),
        (Some(true), Some(5))
    );

    let db = s.running.state.db.clone();
    let mut tx = db.begin().await.unwrap();
    exec!(&mut tx, c => sqlx::query("UPDATE audit_events SET action = 'person.read' WHERE seq = 4").execute(c).await).unwrap();
    tx.commit().await.unwrap();
    let (_, v) = s.get(&k, "/api/v1/orgs/acme/audit/verify").await;
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("event 4"), "{v}");
    assert!(
        !carebridge_server::commands::audit_verify(&db, Some("acme"))
            .await
            .unwrap(),
        "the CLI check fails too"
    );

    let mut tx = db.begin().await.unwrap();
    exec!(&mut tx, c => sqlx::query("UPDATE audit_events SET action = 'person.create' WHERE seq = 4").execute(c).await).unwrap();
    tx.commit().await.unwrap();
    assert!(
        carebridge_server::commands::audit_verify(&db, Some("acme"))
            .await
            .unwrap(),
        "restored"
    );
    let mut tx = db.begin().await.unwrap();
    exec!(&mut tx, c => sqlx::query("DELETE FROM audit_events WHERE seq = 5").execute(c).await)
        .unwrap();
    tx.commit().await.unwrap();
    let (_, v) = s.get(&k, "/api/v1/orgs/acme/audit/verify").await;
    assert_eq!(
        v["ok"], false,
        "deleting the newest event is detected through the head: {v}"
    );
}

#[tokio::test]
async fn failed_changes_write_no_audit_event() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (_, before) = s.get(&k, "/api/v1/orgs/acme/audit?limit=1").await;
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "X", "family_name": "Y", "emails": [{"value": "bad"}]}),
        )
        .await;
    assert_eq!(st, 422);
    let (_, after) = s.get(&k, "/api/v1/orgs/acme/audit?limit=1").await;
    assert_eq!(before["items"][0]["seq"], after["items"][0]["seq"]);
}
