//! Units, people and roles through the API: CRUD, search, filters, pagination, ETags,
//! idempotency.

use carebridge_testkit::TestServer;
use serde_json::{Value, json};

async fn person(s: &TestServer, key: &str, body: Value) -> Value {
    let (st, p) = s.post(key, "/api/v1/orgs/acme/people", &body).await;
    assert_eq!(st, 201, "{p}");
    p
}

#[tokio::test]
async fn units_tree_move_rename_delete() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, nord) = s
        .post(
            &k,
            "/api/v1/orgs/acme/units",
            &json!({"name": "Region Nord"}),
        )
        .await;
    assert_eq!(st, 201, "{nord}");
    let nord_id = nord["id"].as_str().unwrap().to_string();
    let (_, team) = s
        .post(
            &k,
            "/api/v1/orgs/acme/units",
            &json!({"name": "Team 3", "parent_id": nord_id}),
        )
        .await;
    let team_id = team["id"].as_str().unwrap().to_string();
    assert_eq!(team["path"], json!([nord_id, team_id]));
    // Same name under the same parent is refused.
    let (st, p) = s
        .post(
            &k,
            "/api/v1/orgs/acme/units",
            &json!({"name": "team 3", "parent_id": nord_id}),
        )
        .await;
    assert_eq!(
        (st, p["errors"][0]["code"].as_str()),
        (422, Some("name_taken"))
    );
    // A unit can't move below itself.
    let (st, p) = s
        .patch(
            &k,
            &format!("/api/v1/orgs/acme/units/{nord_id}"),
            "\"1\"",
            &json!({"parent_id": team_id}),
        )
        .await;
    assert_eq!((st, p["errors"][0]["code"].as_str()), (422, Some("cycle")));
    // Move the team to the root, rename it.
    let (st, moved) = s
        .patch(
            &k,
            &format!("/api/v1/orgs/acme/units/{team_id}"),
            "\"1\"",
            &json!({"parent_id": null, "name": "Team Drei"}),
        )
        .await;
    assert_eq!(st, 200, "{moved}");
    assert_eq!(moved["path"], json!([team_id]));
    assert_eq!(moved["version"], 2);
    // Not empty: a person in it.
    let p = person(
        &s,
        &k,
        json!({"given_name": "Ä", "family_name": "Ö", "unit_ids": [team_id], "groups": ["Nacht"]}),
    )
    .await;
    let members = |v: &Value| v["items"][0]["members"].clone();
    let (_, groups) = s.get(&k, "/api/v1/orgs/acme/groups").await;
    assert_eq!(members(&groups), json!(1), "{groups}");
    let (st, body) = s
        .delete(&k, &format!("/api/v1/orgs/acme/units/{team_id}"))
        .await;
    assert_eq!((st, body["code"].as_str()), (409, Some("unit_not_empty")));
    // Deleting the person takes their memberships and groups with them.
    let (st, _) = s
        .delete(
            &k,
            &format!("/api/v1/orgs/acme/people/{}", p["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, 204);
    let (_, groups) = s.get(&k, "/api/v1/orgs/acme/groups").await;
    assert_eq!(members(&groups), json!(0), "{groups}");
    let (st, _) = s
        .delete(&k, &format!("/api/v1/orgs/acme/units/{team_id}"))
        .await;
    assert_eq!(st, 204);
    let (st, _) = s
        .get(&k, &format!("/api/v1/orgs/acme/units/{team_id}"))
        .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn people_normalised_searchable_filterable() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (_, unit) = s
        .post(&k, "/api/v1/orgs/acme/units", &json!({"name": "Nord"}))
        .await;
    let (_, sub) = s
        .post(
            &k,
            "/api/v1/orgs/acme/units",
            &json!({"name": "Team", "parent_id": unit["id"]}),
        )
        .await;
    let zoe = person(
        &s,
        &k,
        json!({
            "given_name": "Zoë", "family_name": "Müller-Straße 🚑", "kind": "volunteer",
            "emails": [{"value": "Zoe@Example.CH", "type": "work"}],
            "phones": [{"value": "079 123 45 67", "type": "mobile"}],
            "unit_ids": [sub["id"]], "groups": ["Nachtdienst"], "skills": ["Rettungssanitäter"]
        }),
    )
    .await;
    assert_eq!(zoe["family_name"], "Müller-Straße 🚑");
    assert_eq!(zoe["emails"][0]["value"], "Zoe@example.ch");
    assert_eq!(zoe["phones"][0]["value"], "+41791234567");
    person(
        &s,
        &k,
        json!({"given_name": "Jonas", "family_name": "Meier"}),
    )
    .await;
    for (q, n) in [
        ("muller", 1),
        ("MÜL", 1),
        ("+41 79 123", 1),
        ("zoe@example", 1),
        ("mei", 1),
        ("zzz", 0),
        ("zoë strasse", 1),
    ] {
        let (st, page) = s
            .get(&k, &format!("/api/v1/orgs/acme/people?q={}", urlenc(q)))
            .await;
        assert_eq!(st, 200);
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            n,
            "query {q}: {page}"
        );
    }
    for (f, n) in [
        (format!("unit={}", unit["id"].as_str().unwrap()), 1),
        ("group=nachtdienst".to_string(), 1),
        ("skill=Rettungssanit%C3%A4ter".to_string(), 1),
        ("active=false".to_string(), 0),
    ] {
        let (_, page) = s.get(&k, &format!("/api/v1/orgs/acme/people?{f}")).await;
        assert_eq!(page["items"].as_array().unwrap().len(), n, "{f}: {page}");
    }
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn pagination_is_stable_and_complete() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    for i in 0..7 {
        person(
            &s,
            &k,
            json!({"given_name": format!("P{i}"), "family_name": "Same"}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/orgs/acme/people?limit=3&cursor={c}"),
            None => "/api/v1/orgs/acme/people?limit=3".into(),
        };
        let (st, page) = s.get(&k, &path).await;
        assert_eq!(st, 200, "{page}");
        for p in page["items"].as_array().unwrap() {
            seen.push(p["given_name"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("P{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn etag_and_if_match() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let p = person(&s, &k, json!({"given_name": "A", "family_name": "B"})).await;
    let path = format!("/api/v1/orgs/acme/people/{}", p["id"].as_str().unwrap());
    let r = s
        .http
        .get(s.url(&path))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "\"1\"");
    let r = s
        .http
        .patch(s.url(&path))
        .bearer_auth(&k)
        .json(&json!({"given_name": "C"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 428);
    let (st, _) = s
        .patch(&k, &path, "\"7\"", &json!({"given_name": "C"}))
        .await;
    assert_eq!(st, 412);
    let (st, body) = s
        .patch(
            &k,
            &path,
            "\"1\"",
            &json!({"given_name": "C", "active": false}),
        )
        .await;
    assert_eq!(
        (st, body["version"].as_i64(), body["active"].as_bool()),
        (200, Some(2), Some(false))
    );
    let (st, _) = s
        .patch(&k, &path, "\"1\"", &json!({"given_name": "D"}))
        .await;
    assert_eq!(st, 412, "a stale ETag is refused");
}

#[tokio::test]
async fn idempotent_creates() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let body = json!({"given_name": "Idem", "family_name": "Potent"});
    let send = |b: Value| {
        s.http
            .post(s.url("/api/v1/orgs/acme/people"))
            .bearer_auth(&k)
            .header("idempotency-key", "abc-1")
            .json(&b)
            .send()
    };
    let r1 = send(body.clone()).await.unwrap();
    assert_eq!(r1.status(), 201);
    let p1: Value = r1.json().await.unwrap();
    let r2 = send(body.clone()).await.unwrap();
    assert_eq!(r2.status(), 201);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    let p2: Value = r2.json().await.unwrap();
    assert_eq!(p1["id"], p2["id"]);
    let (_, page) = s.get(&k, "/api/v1/orgs/acme/people?q=potent").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "no duplicate");
    let r3 = send(json!({"given_name": "Other", "family_name": "Body"}))
        .await
        .unwrap();
    assert_eq!(r3.status(), 422);
}

#[tokio::test]
async fn roles_scoped_and_unique() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let p = person(&s, &k, json!({"given_name": "R", "family_name": "Ole"})).await;
    let (_, u) = s
        .post(&k, "/api/v1/orgs/acme/units", &json!({"name": "U"}))
        .await;
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": p["id"], "role": "unit_admin"}),
        )
        .await;
    assert_eq!(st, 422, "unit_admin needs a unit");
    let (st, r) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": p["id"], "role": "unit_admin", "unit_id": u["id"]}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": p["id"], "role": "unit_admin", "unit_id": u["id"]}),
        )
        .await;
    assert_eq!(st, 409);
    let (_, list) = s
        .get(
            &k,
            &format!(
                "/api/v1/orgs/acme/roles?person={}",
                p["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (st, _) = s
        .delete(
            &k,
            &format!("/api/v1/orgs/acme/roles/{}", r["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, 204);
    // A read-only key may read but not write.
    let ro = s.key("acme", &["directory:read"]).await;
    let (st, _) = s.get(&ro, "/api/v1/orgs/acme/people").await;
    assert_eq!(st, 200);
    let (st, body) = s
        .post(
            &ro,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "X", "family_name": "Y"}),
        )
        .await;
    assert_eq!((st, body["code"].as_str()), (403, Some("forbidden")));
}

#[tokio::test]
async fn idempotency_keys_expire_after_a_day() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let send = || {
        s.http
            .post(s.url("/api/v1/orgs/acme/units"))
            .bearer_auth(&k)
            .header("idempotency-key", "u-1")
            .json(&json!({"name": "Once"}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 201);
    let db = &s.running.state.db;
    use carebridge_domain::Clock;
    assert_eq!(
        carebridge_server::housekeeping_step(db, s.clock.now())
            .await
            .unwrap(),
        0
    );
    s.clock.advance(std::time::Duration::from_secs(25 * 3600));
    assert_eq!(
        carebridge_server::housekeeping_step(db, s.clock.now())
            .await
            .unwrap(),
        1
    );
    // After expiry the key is free again: the same request is a new create (and the name clash
    // shows it really ran).
    let r = send().await.unwrap();
    assert_eq!(r.status(), 422);
}

/// Search results, paged in small pages, equal a naive reference: all people (filtered by the
/// API without a query) whose tokens start with every query word, in name order.
#[tokio::test]
async fn search_matches_a_reference_model() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (_, unit) = s
        .post(&k, "/api/v1/orgs/acme/units", &json!({"name": "U"}))
        .await;
    let names = [
        "Müller",
        "Mueller",
        "Muster",
        "Meier",
        "Meyer",
        "Mäder",
        "Moser",
        "Marti",
        "Müller-Meier",
        "Martin",
    ];
    for i in 0..40 {
        let unit_ids = if i % 3 == 0 {
            json!([unit["id"]])
        } else {
            json!([])
        };
        let groups = if i % 2 == 0 {
            json!(["Nacht"])
        } else {
            json!([])
        };
        person(
            &s,
            &k,
            json!({"given_name": format!("Anna{}", i % 7), "family_name": names[i % names.len()], "unit_ids": unit_ids,
                   "groups": groups, "emails": [{"value": format!("p{i}@x.ch")}]}),
        )
        .await;
    }
    let unit_id = unit["id"].as_str().unwrap().to_string();
    check_search(&s, &k, &unit_id).await;

    // Renamed, re-addressed and deleted people: their old tokens are gone, the new ones are
    // found, and no token row is left over.
    let (_, all) = s.get(&k, "/api/v1/orgs/acme/people?limit=200").await;
    for (i, p) in all["items"].as_array().unwrap().iter().enumerate() {
        let path = format!("/api/v1/orgs/acme/people/{}", p["id"].as_str().unwrap());
        if i % 5 == 0 {
            let (st, e) = s.delete(&k, &path).await;
            assert_eq!(st, 204, "{e}");
        } else if i % 4 == 1 {
            let etag = format!("\"{}\"", p["version"]);
            let body = json!({"family_name": format!("Zeller{i}"), "emails": [{"value": format!("z{i}@y.ch")}]});
            let (st, e) = s.patch(&k, &path, &etag, &body).await;
            assert_eq!(st, 200, "{e}");
        }
    }
    check_search(&s, &k, &unit_id).await;
    for q in ["zeller1", "z1", "z9@y"] {
        let (_, page) = s
            .get(&k, &format!("/api/v1/orgs/acme/people?limit=200&q={q}"))
            .await;
        assert!(!page["items"].as_array().unwrap().is_empty(), "{q}: {page}");
    }
    let (_, all) = s.get(&k, "/api/v1/orgs/acme/people?limit=200").await;
    let want_rows: usize = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| tokens_of(p).len())
        .sum();
    let mut c = s.running.state.db.read().await.unwrap();
    let rows: i64 = carebridge_store::run!(&mut c, c => carebridge_store::sqlx::query_scalar(
        "SELECT COUNT(*) FROM person_tokens").fetch_one(c).await)
    .unwrap();
    assert_eq!(
        rows as usize, want_rows,
        "token rows of the people there are, no more"
    );
}

/// The search tokens of a person as the API returns it (the test's people have no phones).
fn tokens_of(p: &Value) -> Vec<String> {
    let emails: Vec<String> = p["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap().to_string())
        .collect();
    carebridge_domain::search::person_tokens(
        p["given_name"].as_str().unwrap(),
        p["family_name"].as_str().unwrap(),
        &emails,
        &[],
    )
}

/// Checks every query of the reference-model test against the reference.
async fn check_search(s: &TestServer, k: &str, unit: &str) {
    use carebridge_domain::search::query_words;
    let ids = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    for q in [
        "m", "mu", "mül", "meier", "anna3", "anna m", "x", "mueller", "p1", "p12@x", "anna z",
        "zel anna", "z1",
    ] {
        for filter in [
            String::new(),
            format!("&unit={unit}"),
            "&group=nacht".to_string(),
        ] {
            let (_, all) = s
                .get(k, &format!("/api/v1/orgs/acme/people?limit=200{filter}"))
                .await;
            let words = query_words(q);
            let want: Vec<String> = all["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| {
                    let toks = tokens_of(p);
                    words
                        .iter()
                        .all(|w| toks.iter().any(|t| t.starts_with(w.as_str())))
                })
                .map(|p| p["id"].as_str().unwrap().to_string())
                .collect();
            let mut got = Vec::new();
            let mut cursor = String::new();
            loop {
                let (st, page) = s
                    .get(
                        k,
                        &format!(
                            "/api/v1/orgs/acme/people?limit=3&q={}{filter}{cursor}",
                            urlenc(q)
                        ),
                    )
                    .await;
                assert_eq!(st, 200, "{page}");
                got.extend(ids(&page));
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={c}"),
                    None => break,
                }
            }
            assert_eq!(got, want, "query {q:?} filter {filter:?}");
        }
    }
}

/// GDPR export: everything held about a person in one document, itself audited; only for
/// admins who may also read the audit log; another organisation's person is not found.
#[tokio::test]
async fn a_person_export_holds_everything_and_is_audited() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let id = s
        .member(
            &k,
            "acme",
            "staff",
            "eva@example.ch",
            Some("079 555 66 77"),
            "lange-passphrase-eva",
        )
        .await;
    let (st, p) = s
        .patch(
            &k,
            &format!("/api/v1/orgs/acme/people/{id}"),
            "\"1\"",
            &json!({"skills": ["Fahrerin"]}),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": id, "role": "dispatcher"}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, x) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{id}/export"))
        .await;
    assert_eq!(st, 200, "{x}");
    assert_eq!(x["organisation"], "acme");
    assert_eq!(x["person"]["skills"], json!(["Fahrerin"]));
    assert_eq!(x["person"]["phones"][0]["value"], "+41795556677");
    assert_eq!(x["roles"][0]["role"], "dispatcher");
    assert_eq!(x["account"]["login"], "eva@example.ch");
    assert_eq!(x["account"]["has_password"], true);
    assert!(!x.to_string().contains("argon2"), "no password hash in {x}");
    let actions: Vec<&str> = x["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["person.create", "person.invite", "person.update"],
        "{x}"
    );
    // The export is in the log.
    let (_, log) = s.get(&k, "/api/v1/orgs/acme/audit?limit=5").await;
    assert_eq!(log["items"][0]["action"], "person.export", "{log}");
    // The person asks for their own data.
    let own = s.person_key(&k, "acme", &id, &["directory:read"]).await;
    let (st, mine) = s.get(&own, "/api/v1/me/export").await;
    assert_eq!(st, 200, "{mine}");
    assert_eq!(mine["person"]["id"], x["person"]["id"]);
    assert_eq!(mine["account"]["login"], "eva@example.ch");
    let (st, _) = s.get(&k, "/api/v1/me/export").await;
    assert_eq!(st, 403, "an organisation key is nobody's self");
    // Without audit:read, no export.
    let limited = s.key("acme", &["directory:read", "directory:write"]).await;
    let (st, _) = s
        .get(&limited, &format!("/api/v1/orgs/acme/people/{id}/export"))
        .await;
    assert_eq!(st, 403);
    // Another organisation's admin cannot reach the person.
    let other = s.org("other").await;
    let (st, _) = s
        .get(&other, &format!("/api/v1/orgs/other/people/{id}/export"))
        .await;
    assert_eq!(st, 404);
}

/// Puts a token grant and a consent on `person` and a session on their account, as a sign-in
/// through an app would.
async fn signed_in(s: &TestServer, person: &str) {
    use carebridge_store::{exec, run, sqlx};
    let db = s.running.state.db.clone();
    let pid = uuid::Uuid::parse_str(person).unwrap();
    let mut tx = db.begin().await.unwrap();
    let (org, account): (uuid::Uuid, Option<uuid::Uuid>) = run!(&mut tx, c => sqlx::query_as(
        "SELECT org_id, account_id FROM people WHERE id = $1").bind(pid).fetch_one(c).await)
    .unwrap();
    let session = uuid::Uuid::new_v4();
    if let Some(a) = account {
        exec!(&mut tx, c => sqlx::query(
            "INSERT INTO sessions (id, account_id, secret_digest, amr, auth_time, user_agent, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, 'pwd', 0, 'test', 0, 0, 9999999999999)")
            .bind(session).bind(a).bind(vec![0u8; 32]).execute(c).await)
        .unwrap();
    }
    exec!(&mut tx, c => sqlx::query(
        "INSERT INTO token_grants (id, org_id, person_id, client_id, scopes, auth_time, amr, generation, created_at, last_used_at, expires_at) \
         VALUES ($1, $2, $3, 'carebridge-app', 'openid', 0, 'pwd', 0, 0, 0, 9999999999999)")
        .bind(uuid::Uuid::new_v4()).bind(org).bind(pid).execute(c).await)
    .unwrap();
    exec!(&mut tx, c => sqlx::query(
        "INSERT INTO consents (person_id, client_id, org_id, scopes, granted_at) VALUES ($1, 'some-app', $2, 'openid', 0)")
        .bind(pid).bind(org).execute(c).await)
    .unwrap();
    tx.commit().await.unwrap();
}

async fn count(s: &TestServer, sql: &str, arg: &str) -> i64 {
    use carebridge_store::{run, sqlx};
    let mut c = s.running.state.db.read().await.unwrap();
    run!(&mut c, c => sqlx::query_scalar(sql).bind(arg).fetch_one(c).await).unwrap()
}

/// Deleting a person who has signed in works (their grants go with them); erasing also removes
/// their account, sessions and messages, and leaves an audit tombstone without digests.
#[tokio::test]
async fn delete_and_erase_people_who_signed_in() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let eva = s
        .member(
            &k,
            "acme",
            "staff",
            "eva@example.ch",
            None,
            "lange-passphrase-eva",
        )
        .await;
    let max = s
        .member(
            &k,
            "acme",
            "staff",
            "max@example.ch",
            None,
            "lange-passphrase-max",
        )
        .await;
    signed_in(&s, &eva).await;
    signed_in(&s, &max).await;
    assert!(!s.outbox("eva@example.ch").await.is_empty());

    // Delete: the person and their grants go, the account stays.
    let (st, body) = s
        .delete(&k, &format!("/api/v1/orgs/acme/people/{max}"))
        .await;
    assert_eq!(st, 204, "{body}");
    let accounts = "SELECT COUNT(*) FROM accounts WHERE login = $1";
    assert_eq!(count(&s, accounts, "max@example.ch").await, 1);

    // Erase: the person, the account with its session, the messages.
    let (st, body) = s
        .post(
            &k,
            &format!("/api/v1/orgs/acme/people/{eva}/erase"),
            &Value::Null,
        )
        .await;
    assert_eq!(st, 204, "{body}");
    assert_eq!(count(&s, accounts, "eva@example.ch").await, 0);
    assert!(s.outbox("eva@example.ch").await.is_empty());
    let (st, _) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{eva}/export"))
        .await;
    assert_eq!(st, 404);
    let (_, log) = s.get(&k, "/api/v1/orgs/acme/audit?limit=1").await;
    let e = &log["items"][0];
    assert_eq!(
        (
            e["action"].as_str(),
            e["target_id"].as_str(),
            e["before_digest"].as_str(),
            e["after_digest"].as_str()
        ),
        (Some("person.erase"), Some(eva.as_str()), None, None),
        "{log}"
    );
    let (_, v) = s.get(&k, "/api/v1/orgs/acme/audit/verify").await;
    assert_eq!(v["ok"], true);
    // Erasing again: not found.
    let (st, _) = s
        .post(
            &k,
            &format!("/api/v1/orgs/acme/people/{eva}/erase"),
            &Value::Null,
        )
        .await;
    assert_eq!(st, 404);
}

/// Groups and skills as resources: counts, rename (members follow, versions move), delete,
/// duplicates by folded name, other organisations' ids not found.
#[tokio::test]
async fn groups_and_skills_crud() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let anna = person(
        &s,
        &k,
        json!({"given_name": "Anna", "family_name": "A", "groups": ["Nachtdienst"],
               "skills": ["Sanitäter", "sanitater"]}),
    )
    .await;
    assert_eq!(anna["skills"], json!(["Sanitäter"]), "{anna}");
    person(
        &s,
        &k,
        json!({"given_name": "Beat", "family_name": "B", "groups": ["nachtdienst", "Tag"]}),
    )
    .await;
    let (st, groups) = s.get(&k, "/api/v1/orgs/acme/groups").await;
    assert_eq!(st, 200, "{groups}");
    let got: Vec<(&str, i64)> = groups["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap(), g["members"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, vec![("Nachtdienst", 2), ("Tag", 1)]);
    let night = groups["items"][0]["id"].as_str().unwrap().to_string();
    // Paging.
    let (_, p1) = s.get(&k, "/api/v1/orgs/acme/groups?limit=1").await;
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = s
        .get(&k, &format!("/api/v1/orgs/acme/groups?limit=1&cursor={c}"))
        .await;
    assert_eq!(p2["items"][0]["name"], "Tag");
    // Create: a folded duplicate is refused.
    let (st, b) = s
        .post(
            &k,
            "/api/v1/orgs/acme/skills",
            &json!({"name": "SANITATER"}),
        )
        .await;
    assert_eq!((st, b["code"].as_str()), (409, Some("name_taken")), "{b}");
    let (st, fahrer) = s
        .post(&k, "/api/v1/orgs/acme/skills", &json!({"name": "Fahrer"}))
        .await;
    assert_eq!((st, fahrer["members"].as_i64()), (201, Some(0)), "{fahrer}");
    let (st, b) = s
        .post(&k, "/api/v1/orgs/acme/skills", &json!({"name": " "}))
        .await;
    assert_eq!(st, 422, "{b}");
    // Rename: members show the new name with a new version.
    let (st, r) = s
        .patch(
            &k,
            &format!("/api/v1/orgs/acme/groups/{night}"),
            "\"1\"",
            &json!({"name": "Nachtwache"}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let (_, a) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/people/{}", anna["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        (a["groups"].clone(), a["version"].clone()),
        (json!(["Nachtwache"]), json!(2))
    );
    let (st, b) = s
        .patch(
            &k,
            &format!("/api/v1/orgs/acme/groups/{night}"),
            "\"1\"",
            &json!({"name": "tag"}),
        )
        .await;
    assert_eq!(st, 409, "{b}");
    // Another organisation cannot see or touch it.
    let other = s.org("other").await;
    let (st, _) = s
        .delete(&other, &format!("/api/v1/orgs/other/groups/{night}"))
        .await;
    assert_eq!(st, 404);
    // Delete: members lose it.
    let (st, _) = s
        .delete(&k, &format!("/api/v1/orgs/acme/groups/{night}"))
        .await;
    assert_eq!(st, 204);
    let (_, a) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/people/{}", anna["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        (a["groups"].clone(), a["version"].clone()),
        (json!([]), json!(3))
    );
    let (st, _) = s
        .get(&k, &format!("/api/v1/orgs/acme/groups/{night}"))
        .await;
    assert_eq!(st, 404);
    let (_, log) = s.get(&k, "/api/v1/orgs/acme/audit?limit=1").await;
    assert_eq!(log["items"][0]["action"], "group.delete");
}
