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

/// Bulk appends (`audit::chain_rows` then `append_rows`, as an import writes a chunk's events)
/// continue the chain exactly as single appends do; rows made from a head that has moved since
/// (another event appended in between) are refused, and nothing of them is written.
#[tokio::test]
async fn bulk_appends_continue_the_chain_and_refuse_a_moved_head() {
    use carebridge_domain::Clock;
    use carebridge_domain::audit::AuditEntry;
    use carebridge_store::audit;
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let db = s.running.state.db.clone();
    let now = s.clock.now();
    let org = {
        let mut c = db.read().await.unwrap();
        carebridge_store::orgs::resolve(&mut c, "acme")
            .await
            .unwrap()
            .unwrap()
            .id
    };
    let entry = |i: usize| AuditEntry {
        actor: "system:test".into(),
        action: "person.create".into(),
        target_type: "person".into(),
        target_id: format!("p{i}"),
        before_digest: None,
        after_digest: Some(format!("{i:064x}")),
        source: "cli".into(),
    };
    let mut tx = db.begin().await.unwrap();
    let from = audit::head_for_append(&mut tx, org).await.unwrap();
    let (rows, to) = audit::chain_rows(org, &from, now, (0..3).map(entry).collect());
    assert_eq!(to.seq, from.seq + 3);
    audit::append_rows(&mut tx, org, &from, rows, &to)
        .await
        .unwrap();
    // The next chunk continues from the kept head, without reading it.
    let (rows, next) = audit::chain_rows(org, &to, now, (3..5).map(entry).collect());
    audit::append_rows(&mut tx, org, &to, rows, &next)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (_, v) = s.get(&k, "/api/v1/orgs/acme/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    let checked = v["events_checked"].as_u64().unwrap();
    assert_eq!(checked as i64, next.seq, "{v}");

    // Rows made from the head `next`, but something else appended first.
    let mut tx = db.begin().await.unwrap();
    let (stale, after) = audit::chain_rows(org, &next, now, vec![entry(9)]);
    audit::append(&mut tx, org, now, &entry(8)).await.unwrap();
    let e = audit::append_rows(&mut tx, org, &next, stale, &after)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("head moved"), "{e}");
    drop(tx);
    let (_, v) = s.get(&k, "/api/v1/orgs/acme/audit/verify").await;
    assert_eq!(
        (v["ok"].as_bool(), v["events_checked"].as_u64()),
        (Some(true), Some(checked)),
        "{v}"
    );
}
