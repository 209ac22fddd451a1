//! People import through the upload endpoint (and the CLI's code path): dry run, apply,
//! re-import without writes, updates, bad rows (all or nothing, skip), full sync with
//! deactivation, matching by e-mail, duplicates, roles, XLSX, column mapping.

use carebridge_testkit::TestServer;
use serde_json::{Value, json};

async fn upload(s: &TestServer, key: &str, query: &str, body: &[u8]) -> (u16, Value) {
    let r = s
        .http
        .post(s.url(&format!("/api/v1/orgs/acme/people/import?{query}")))
        .bearer_auth(key)
        .header("content-type", "text/csv")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    carebridge_testkit::read(r).await
}

async fn audit_len(s: &TestServer, key: &str) -> u64 {
    let (st, v) = s.get(key, "/api/v1/orgs/acme/audit/verify").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    v["events_checked"].as_u64().unwrap()
}

async fn people(s: &TestServer, key: &str, q: &str) -> Vec<Value> {
    let (st, v) = s
        .get(key, &format!("/api/v1/orgs/acme/people?limit=100&{q}"))
        .await;
    assert_eq!(st, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

/// As Excel writes a Swiss-German sheet: Windows-1252, `;`, CRLF.
fn swiss(rows: &[&str]) -> Vec<u8> {
    let mut text =
        String::from("Personalnummer;Vorname;Nachname;Handy;E-Mail;Einheit;Fähigkeiten\r\n");
    for r in rows {
        text.push_str(r);
        text.push_str("\r\n");
    }
    encoding_rs::WINDOWS_1252.encode(&text).0.into_owned()
}

const THREE: &[&str] = &[
    "P1;Jürg;Müller;079 123 45 67;jm@example.ch;Region Nord/Team 3;\"Fahrer, Sanitäter\"",
    "P2;Anna;Keller;+41 79 765 43 21;ak@example.ch;Region Nord/Team 3;Sanitäter",
    "P3;Léa;Rossi;078 111 22 33;lr@example.ch;Region Süd;",
];

#[tokio::test]
async fn dry_run_apply_and_a_reimport_that_writes_nothing() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let file = swiss(THREE);
    let before = audit_len(&s, &k).await;

    // Dry run: the full report, nothing written.
    let (st, r) = upload(&s, &k, "dry_run=true&create_units=true", &file).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (
            r["dry_run"].clone(),
            r["applied"].clone(),
            r["created"].clone()
        ),
        (true.into(), false.into(), 3.into()),
        "{r}"
    );
    assert_eq!(
        r["units_created"],
        serde_json::json!(["Region Nord", "Region Nord/Team 3", "Region Süd"])
    );
    assert_eq!(r["columns"][1]["field"], "given_name");
    assert!(people(&s, &k, "").await.is_empty());
    let (_, units) = s.get(&k, "/api/v1/orgs/acme/units").await;
    assert_eq!(units["items"].as_array().unwrap().len(), 0);
    assert_eq!(audit_len(&s, &k).await, before);

    // Without create_units the unknown units are row errors and nothing is applied.
    let (st, r) = upload(&s, &k, "", &file).await;
    assert_eq!(st, 422, "{r}");
    assert_eq!(
        (r["applied"].clone(), r["errors_total"].clone()),
        (false.into(), 3.into())
    );
    assert_eq!(r["errors"][0]["column"], "Einheit");
    assert_eq!(r["errors"][0]["line"], 2);
    assert!(people(&s, &k, "").await.is_empty());

    // Apply.
    let (st, r) = upload(&s, &k, "create_units=true", &file).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["applied"].clone(), r["created"].clone()),
        (true.into(), 3.into())
    );
    let all = people(&s, &k, "").await;
    assert_eq!(all.len(), 3);
    let jm = all.iter().find(|p| p["external_id"] == "P1").unwrap();
    assert_eq!(jm["phones"][0]["value"], "+41791234567");
    assert_eq!(jm["skills"], serde_json::json!(["Fahrer", "Sanitäter"]));
    assert_eq!(jm["units"][0]["name"], "Team 3");
    // Searchable at once, by name and by phone.
    assert_eq!(people(&s, &k, "q=müll").await.len(), 1);
    assert_eq!(people(&s, &k, "q=%2B4179765").await[0]["external_id"], "P2");
    // National format, in the organisation's region (CH).
    assert_eq!(
        people(&s, &k, "q=079%20765%2043").await[0]["external_id"],
        "P2"
    );
    assert_eq!(people(&s, &k, "skill=sanitater").await.len(), 2);
    // One audit event per unit and person, and the chain still verifies.
    let after = audit_len(&s, &k).await;
    assert_eq!(after, before + 3 + 3);

    // The same file again: all unchanged, no writes, no audit events.
    let (st, r) = upload(&s, &k, "create_units=true", &file).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (
            r["unchanged"].clone(),
            r["created"].clone(),
            r["updated"].clone()
        ),
        (3.into(), 0.into(), 0.into()),
        "{r}"
    );
    assert_eq!(audit_len(&s, &k).await, after);
    let again = people(&s, &k, "").await;
    assert_eq!(
        again
            .iter()
            .map(|p| p["version"].clone())
            .collect::<Vec<_>>(),
        vec![Value::from(1); 3]
    );

    // One changed phone: one update (version 2, one audit event), two unchanged.
    let mut changed = THREE.to_vec();
    changed[1] = "P2;Anna;Keller;079 000 00 01;ak@example.ch;Region Nord/Team 3;Sanitäter";
    let (st, r) = upload(&s, &k, "", &swiss(&changed)).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["updated"].clone(), r["unchanged"].clone()),
        (1.into(), 2.into())
    );
    let anna = people(&s, &k, "q=keller").await;
    assert_eq!(anna[0]["phones"][0]["value"], "+41790000001");
    assert_eq!(anna[0]["version"], 2);
    assert!(people(&s, &k, "q=%2B4179765").await.is_empty());
    // The new number is found, also as a further word (checked against the stored tokens).
    assert_eq!(people(&s, &k, "q=079%20000%2000%2001").await.len(), 1);
    assert_eq!(people(&s, &k, "q=anna%204179000").await.len(), 1);
    assert!(people(&s, &k, "q=anna%204179765").await.is_empty());
    assert_eq!(audit_len(&s, &k).await, after + 1);
}

#[tokio::test]
async fn bad_rows_stop_everything_unless_skipped() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let file = swiss(&[
        "P1;Jürg;Müller;079 123 45 67;jm@example.ch;;",
        "P2;;Keller;12;ak@;;",
        "P3;Léa;Rossi;078 111 22 33;lr@example.ch;;",
        "P1;Jürg;Doppelt;;;;",
    ]);
    let (st, r) = upload(&s, &k, "", &file).await;
    assert_eq!(st, 422, "{r}");
    let got: Vec<(u64, String, String)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["column"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "Vorname".into(), "".into()),
            (3, "Handy".into(), "12".into()),
            (3, "E-Mail".into(), "ak@".into()),
            (5, "Personalnummer".into(), "P1".into()),
        ],
        "{r}"
    );
    assert!(
        r["errors"][3]["reason"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{r}"
    );
    assert_eq!(
        (r["bad_rows"].clone(), r["rows"].clone()),
        (2.into(), 4.into())
    );
    assert!(people(&s, &k, "").await.is_empty());

    let (st, r) = upload(&s, &k, "skip_bad_rows=true", &file).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (
            r["applied"].clone(),
            r["created"].clone(),
            r["bad_rows"].clone()
        ),
        (true.into(), 2.into(), 2.into())
    );
    assert_eq!(people(&s, &k, "").await.len(), 2);
}

#[tokio::test]
async fn full_sync_deactivates_who_is_missing_and_reactivates_who_returns() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, r) = upload(&s, &k, "create_units=true", &swiss(THREE)).await;
    assert_eq!(st, 200, "{r}");
    // Someone outside the synced subtree is never touched.
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &serde_json::json!({"given_name": "Ueli", "family_name": "Extern"}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, r) = upload(
        &s,
        &k,
        "deactivate_missing=Region%20Nord",
        &swiss(&THREE[..1]),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["deactivated"].clone(), r["unchanged"].clone()),
        (1.into(), 1.into()),
        "{r}"
    );
    let inactive = people(&s, &k, "active=false").await;
    assert_eq!(inactive.len(), 1);
    assert_eq!(inactive[0]["external_id"], "P2");
    assert_eq!(people(&s, &k, "active=true").await.len(), 3);
    // A dry run of the full file reports the reactivation without doing it.
    let (_, r) = upload(&s, &k, "dry_run=true", &swiss(THREE)).await;
    assert_eq!(
        (r["updated"].clone(), r["unchanged"].clone()),
        (1.into(), 2.into())
    );
    assert_eq!(people(&s, &k, "active=false").await.len(), 1);
    let (_, r) = upload(&s, &k, "", &swiss(THREE)).await;
    assert_eq!(r["updated"], 1, "{r}");
    assert!(people(&s, &k, "active=false").await.is_empty());
    // An unknown unit for the sync is a file error.
    let (st, r) = upload(&s, &k, "deactivate_missing=Nirgendwo", &swiss(THREE)).await;
    assert_eq!(st, 422);
    assert_eq!(r["errors"][0]["line"], 0);
}

#[tokio::test]
async fn rows_match_people_by_email_and_keep_what_the_file_lacks() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, p) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &serde_json::json!({"given_name": "Jurg", "family_name": "Muller", "kind": "volunteer",
                "language": "fr", "emails": [{"value": "JM@example.ch", "type": "work"}],
                "groups": ["Nachtdienst"]}),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    let file = "First name,Last name,Email\nJürg,Müller,jm@EXAMPLE.ch\nNeu,Person,neu@example.ch\n";
    let (st, r) = upload(&s, &k, "", file.as_bytes()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["updated"].clone(), r["created"].clone()),
        (1.into(), 1.into()),
        "{r}"
    );
    let (_, p) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/people/{}", p["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(p["given_name"], "Jürg");
    // Columns the file does not have keep their values.
    assert_eq!(p["kind"], "volunteer");
    assert_eq!(p["language"], "fr");
    assert_eq!(p["groups"], serde_json::json!(["Nachtdienst"]));
    assert_eq!(p["version"], 2);
    // Matching only by external key: rows without one are refused.
    let (st, r) = upload(&s, &k, "match=external_id", file.as_bytes()).await;
    assert_eq!(st, 422, "{r}");
    assert_eq!(r["errors_total"], 2);
}

#[tokio::test]
async fn roles_need_roles_write_and_are_only_added() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let file = "Vorname;Nachname;E-Mail;Einheit;Rollen\nAnna;Admin;aa@example.ch;Nord;unit_admin\nBeat;Basis;bb@example.ch;;unit_admin\n";
    let limited = s
        .key("acme", &["directory:read", "directory:write", "audit:read"])
        .await;
    let (st, r) = upload(&s, &limited, "create_units=true", file.as_bytes()).await;
    assert_eq!(st, 422, "{r}");
    assert!(
        r["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("roles:write")
    );
    let (st, r) = upload(&s, &k, "create_units=true", file.as_bytes()).await;
    assert_eq!(st, 422, "{r}");
    assert_eq!(r["errors"][0]["line"], 3);
    assert_eq!(r["errors"][0]["column"], "Rollen");
    let (st, r) = upload(
        &s,
        &k,
        "create_units=true&skip_bad_rows=true",
        file.as_bytes(),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["roles_assigned"], 1);
    let (_, roles) = s.get(&k, "/api/v1/orgs/acme/roles").await;
    let ua: Vec<&Value> = roles["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["role"] == "unit_admin")
        .collect();
    assert_eq!(ua.len(), 1);
    assert!(ua[0]["unit_id"].is_string());
    let (_, r) = upload(&s, &k, "skip_bad_rows=true", file.as_bytes()).await;
    assert_eq!(
        (r["roles_assigned"].clone(), r["unchanged"].clone()),
        (0.into(), 1.into())
    );
}

#[tokio::test]
async fn xlsx_named_sheet_numbers_and_mapping() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let xlsx = include_bytes!("fixtures/people.xlsx");
    // The first sheet has no name columns.
    let (st, r) = upload(&s, &k, "dry_run=true", xlsx).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["errors"][0]["line"], 1, "{r}");
    let (_, r) = upload(&s, &k, "dry_run=true&sheet=Nirgends", xlsx).await;
    assert!(
        r["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("Personal"),
        "{r}"
    );
    // "Eintritt" is not a field: unknown until mapped away.
    let (_, r) = upload(&s, &k, "dry_run=true&sheet=personal", xlsx).await;
    assert_eq!(r["errors"][0]["column"], "Eintritt", "{r}");
    let (st, r) = upload(
        &s,
        &k,
        "sheet=personal&create_units=true&skip_bad_rows=true&map=Eintritt%3Dignore",
        xlsx,
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["created"].clone(), r["bad_rows"].clone()),
        (2.into(), 1.into()),
        "{r}"
    );
    let bad: Vec<(u64, &str, &str)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["column"].as_str().unwrap(),
                e["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        vec![(4, "Natel", "12"), (4, "E-Mail", "bf(at)example.ch")]
    );
    let all = people(&s, &k, "").await;
    // Employee numbers stored as numbers read as whole numbers; 791234567 (the 0 Excel drops)
    // is a Swiss mobile number.
    let jm = all.iter().find(|p| p["given_name"] == "Jürg").unwrap();
    assert_eq!(jm["external_id"], "1001");
    assert_eq!(jm["phones"][0]["value"], "+41791234567");
    let ak = all.iter().find(|p| p["given_name"] == "Anna").unwrap();
    assert_eq!(ak["external_id"], "1002");
    // A bad mapping is refused before anything is read.
    let (st, r) = upload(&s, &k, "map=Eintritt%3Dbirthday", xlsx).await;
    assert_eq!(st, 422);
    assert!(
        r["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown field")
    );
}

#[tokio::test]
async fn the_cli_reports_rows_and_errors_in_words() {
    let s = TestServer::start().await;
    let _k = s.org("acme").await;
    let db = &s.running.state.db;
    use carebridge_domain::Clock;
    let opts = carebridge_proto::directory::ImportOptions {
        create_units: true,
        ..Default::default()
    };
    let file = swiss(&[THREE[0], "P9;X;;12;;;"]);
    let r =
        carebridge_server::commands::import_people(db, "acme", file, opts, false, s.clock.now())
            .await
            .unwrap();
    let text = carebridge_server::commands::describe_import(&r);
    assert!(text.contains("NOT applied"), "{text}");
    assert!(
        text.contains("line 3, column Handy, value \"12\""),
        "{text}"
    );
}

#[tokio::test]
async fn a_full_sync_with_bad_rows_deactivates_nobody() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, _) = upload(&s, &k, "create_units=true", &swiss(THREE)).await;
    assert_eq!(st, 200);
    // P2's row has a typo: P2 is not "missing", so nobody may be deactivated.
    let file = swiss(&[
        THREE[0],
        "P2;Anna;Keller;12;ak@example.ch;Region Nord/Team 3;",
    ]);
    let (st, r) = upload(
        &s,
        &k,
        "skip_bad_rows=true&deactivate_missing=Region%20Nord",
        &file,
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["deactivated"].clone(), r["bad_rows"].clone()),
        (0.into(), 1.into())
    );
    assert!(
        r["errors"].as_array().unwrap().iter().any(|e| e["reason"]
            .as_str()
            .unwrap()
            .contains("nobody was deactivated")),
        "{r}"
    );
    assert!(people(&s, &k, "active=false").await.is_empty());
}

#[tokio::test]
async fn keys_stay_unique_and_rows_must_be_findable_again() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, _) = upload(&s, &k, "create_units=true", &swiss(THREE)).await;
    assert_eq!(st, 200);
    // Matching by e-mail, a row may not give a person another person's key.
    let file = "Personalnummer,Vorname,Nachname,E-Mail\nP2,Jürg,Müller,jm@example.ch\n";
    let (st, r) = upload(&s, &k, "match=email", file.as_bytes()).await;
    assert_eq!(st, 422, "{r}");
    assert_eq!(
        r["errors"][0]["reason"],
        "another person has this external key"
    );
    // The same key twice in a file.
    let file = "Personalnummer,Vorname,Nachname,E-Mail\nN1,A,B,a@example.ch\nN1,C,D,c@example.ch\n";
    let (_, r) = upload(&s, &k, "dry_run=true", file.as_bytes()).await;
    assert_eq!(r["errors"][0]["line"], 3, "{r}");
    // Neither key nor e-mail: a re-import would create the person again.
    let file = "Vorname,Nachname\nOhne,Schlüssel\n";
    let (st, r) = upload(&s, &k, "", file.as_bytes()).await;
    assert_eq!(st, 422, "{r}");
    assert!(
        r["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("neither")
    );
    // A person entered by hand (no key) is found by e-mail and takes the file's key.
    let (_, p) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &serde_json::json!({"given_name": "Hand", "family_name": "Erfasst",
                "emails": [{"value": "he@example.ch"}],
                "phones": [{"value": "044 123 45 67", "type": "work"}]}),
        )
        .await;
    let file = "Personalnummer;Vorname;Nachname;E-Mail;Handy\nH1;Hand;Erfasst;he@example.ch;079 222 33 44\n";
    let (st, r) = upload(&s, &k, "", file.as_bytes()).await;
    assert_eq!((st, r["updated"].clone()), (200, 1.into()), "{r}");
    let (_, p) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/people/{}", p["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(p["external_id"], "H1");
    // Only a mobile column: the work number stays.
    let phones: Vec<&str> = p["phones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(phones, vec!["+41441234567", "+41792223344"]);
    let (_, r) = upload(&s, &k, "", file.as_bytes()).await;
    assert_eq!(r["unchanged"], 1, "{r}");
}

#[tokio::test]
async fn a_second_import_into_the_same_organisation_is_refused_while_one_runs() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let mut text = String::from("Personalnummer;Vorname;Nachname\n");
    for i in 0..20_000 {
        text.push_str(&format!("N{i};Vor{i};Nach{i}\n"));
    }
    let org = {
        let (_, o) = s.get(&k, "/api/v1/orgs/acme").await;
        uuid::Uuid::parse_str(o["id"].as_str().unwrap()).unwrap()
    };
    let big = text.into_bytes();
    let first = {
        let (url, k, big) = (
            s.url("/api/v1/orgs/acme/people/import"),
            k.clone(),
            big.clone(),
        );
        let http = s.http.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(k)
                .body(big)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // Wait (on the real clock: this is about a running process) until the first one runs.
    let mut waited = 0;
    while !carebridge_directory::service::import::running(org) && waited < 2000 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        waited += 1;
    }
    assert!(
        carebridge_directory::service::import::running(org),
        "the first import never showed as running"
    );
    // 20,000 rows take far longer than this request: it arrives while the first runs.
    let (st, r) = upload(&s, &k, "dry_run=true", &swiss(THREE)).await;
    assert_eq!(
        (st, r["code"].as_str()),
        (409, Some("import_running")),
        "{r}"
    );
    assert_eq!(first.await.unwrap(), 200);
    assert!(!carebridge_directory::service::import::running(org));
    // After it, imports run again.
    let (st, r) = upload(&s, &k, "dry_run=true&create_units=true", &swiss(THREE)).await;
    assert_eq!(st, 200, "{r}");
}

async fn job_post(
    s: &TestServer,
    key: &str,
    query: &str,
    body: &[u8],
    wait: bool,
) -> (u16, Option<String>, Value) {
    let mut r = s
        .http
        .post(s.url(&format!("/api/v1/orgs/acme/import-jobs?{query}")))
        .bearer_auth(key)
        .header("content-type", "text/csv")
        .body(body.to_vec());
    if wait {
        r = r.header("prefer", "wait=30");
    }
    let r = r.send().await.unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let (st, v) = carebridge_testkit::read(r).await;
    (st, location, v)
}

/// Import jobs: a file uploaded once, checked (dry run), then applied over the kept file on
/// the job resource; a job without waiting is followed to its report; one import per
/// organisation at a time; an applied file is deleted, a checked one expires after an hour;
/// bad calls are refused.
#[tokio::test]
async fn import_jobs_check_then_apply_a_kept_file() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, loc, dry) = job_post(
        &s,
        &k,
        "dry_run=true&create_units=true&name=team.csv",
        &swiss(THREE),
        true,
    )
    .await;
    assert_eq!(st, 201, "{dry}");
    let id = dry["id"].as_str().unwrap().to_string();
    assert_eq!(
        loc.as_deref(),
        Some(format!("/api/v1/orgs/acme/import-jobs/{id}").as_str())
    );
    assert_eq!(dry["state"], "done", "{dry}");
    assert_eq!(dry["progress"], 1.0);
    assert_eq!(dry["file_name"], "team.csv");
    assert_eq!(dry["options"]["dry_run"], true);
    assert_eq!(dry["report"]["dry_run"], true);
    assert_eq!(dry["report"]["created"], 3, "{dry}");
    assert!(dry["file_expires_at"].is_string(), "{dry}");
    assert!(
        people(&s, &k, "").await.is_empty(),
        "a dry run writes nothing"
    );

    // A minute later, applied over the kept file (no body).
    s.clock.advance(std::time::Duration::from_secs(60));
    let file = dry["file_id"].as_str().unwrap();
    let (st, _, applied) =
        job_post(&s, &k, &format!("file={file}&create_units=true"), b"", true).await;
    assert_eq!(st, 201, "{applied}");
    assert_eq!(applied["state"], "done", "{applied}");
    assert_eq!(applied["file_name"], "team.csv");
    assert_eq!(applied["report"]["applied"], true, "{applied}");
    assert_eq!(applied["report"]["created"], 3);
    assert_eq!(people(&s, &k, "").await.len(), 3);
    let (st, list) = s.get(&k, "/api/v1/orgs/acme/import-jobs").await;
    assert_eq!(st, 200, "{list}");
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [applied["id"].as_str().unwrap(), id.as_str()],
        "newest first"
    );
    let (st, again) = s
        .get(&k, &format!("/api/v1/orgs/acme/import-jobs/{id}"))
        .await;
    assert_eq!((st, &again["report"]), (200, &dry["report"]));

    // Without waiting: the job answers at once and is followed to its report; meanwhile a
    // second import into the organisation is refused.
    let mut big = String::from("Vorname;Nachname;E-Mail\n");
    for i in 0..5000 {
        big.push_str(&format!("V{i};N{i};n{i}@example.org\n"));
    }
    let (st, _, running) = job_post(&s, &k, "dry_run=true", big.as_bytes(), false).await;
    assert_eq!(
        (st, &running["state"]),
        (201, &json!("running")),
        "{running}"
    );
    let (st, _, busy) = job_post(&s, &k, "dry_run=true", &swiss(THREE), false).await;
    assert_eq!(
        (st, &busy["code"]),
        (409, &json!("import_running")),
        "{busy}"
    );
    let path = format!(
        "/api/v1/orgs/acme/import-jobs/{}",
        running["id"].as_str().unwrap()
    );
    let mut done = Value::Null;
    for _ in 0..600 {
        let (_, j) = s.get(&k, &path).await;
        let p = j["progress"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{j}");
        if j["state"] != "running" {
            done = j;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["report"]["created"], 5000);

    // Bad calls: precise errors, nothing stored.
    let (st, _, e) = job_post(&s, &k, &format!("file={file}"), b"x;y\n", false).await;
    assert_eq!((st, &e["code"]), (400, &json!("body_with_file")), "{e}");
    let (st, _, e) = job_post(&s, &k, "dry_run=true", b"", false).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["errors"][0]["code"], "empty_file", "{e}");
    let (st, _, e) = job_post(&s, &k, "dry_run=true&colour=red", b"a\n", false).await;
    assert_eq!(st, 400, "an unknown option: {e}");
    let reader = s.key("acme", &["directory:read"]).await;
    let (st, _, _) = job_post(&s, &reader, "dry_run=true", &swiss(THREE), false).await;
    assert_eq!(st, 403);
    let (st, _) = s.get(&reader, &path).await;
    assert_eq!(st, 403);
    let (st, _) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/import-jobs/{}", uuid::Uuid::new_v4()),
        )
        .await;
    assert_eq!(st, 404);
    let (_, list) = s.get(&k, "/api/v1/orgs/acme/import-jobs").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list}");

    // The applied file was deleted at once: the dry run's job says so, and a run over it is
    // refused.
    let (_, old) = s
        .get(&k, &format!("/api/v1/orgs/acme/import-jobs/{id}"))
        .await;
    assert_eq!(old["file_expires_at"], Value::Null, "{old}");
    let (st, _, e) = job_post(&s, &k, &format!("file={file}"), b"", false).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["errors"][0]["code"], "file_expired", "{e}");
    // A file that was only checked expires after an hour.
    let five = running["file_id"].as_str().unwrap();
    assert!(done["file_expires_at"].is_string(), "{done}");
    s.clock.advance(std::time::Duration::from_secs(3601));
    let (st, _, e) = job_post(&s, &k, &format!("file={five}"), b"", false).await;
    assert_eq!(
        (st, &e["errors"][0]["code"]),
        (422, &json!("file_expired")),
        "{e}"
    );
    // Deleted with its report.
    let (st, _) = s
        .delete(&k, &format!("/api/v1/orgs/acme/import-jobs/{id}"))
        .await;
    assert_eq!(st, 204);
    let (st, _) = s
        .get(&k, &format!("/api/v1/orgs/acme/import-jobs/{id}"))
        .await;
    assert_eq!(st, 404);
    // Housekeeping forgets the other jobs after a week.
    let (_, list) = s.get(&k, "/api/v1/orgs/acme/import-jobs").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    use carebridge_domain::Clock;
    s.clock
        .advance(std::time::Duration::from_secs(8 * 24 * 3600));
    carebridge_server::housekeeping_step(&s.running.state.db, s.clock.now())
        .await
        .unwrap();
    let (_, list) = s.get(&k, "/api/v1/orgs/acme/import-jobs").await;
    assert_eq!(list["items"], json!([]), "{list}");
}

/// A file of several chunks (the planner hands 2,000 rows, then 4,000, … to the writer task): units
/// first named in later chunks are created before the rows that need them, every person is
/// written with their links, a synced client gets them all, and changing some people across
/// chunks updates exactly those.
#[tokio::test]
async fn a_file_of_several_chunks_is_written_in_order() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let file = |changed: bool| {
        let rows: Vec<String> = (0..6500)
            .map(|i| {
                // Every 700th person gets a new mobile number in the second file.
                let last = if changed && i % 700 == 0 { 99 } else { i % 100 };
                format!(
                    "K{i};V{i};N{i};079 {:03} {:02} {last:02};e{i}@example.org;Region {}/Team {};",
                    i / 10000,
                    (i / 100) % 100,
                    i / 1500,
                    i % 3
                )
            })
            .collect();
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        swiss(&rows)
    };
    let (_, start) = s.get(&k, "/api/v1/orgs/acme/contacts/changes").await;
    let cursor = start["next_cursor"].as_str().unwrap().to_string();

    let (st, r) = upload(&s, &k, "create_units=true", &file(false)).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!((&r["created"], &r["applied"]), (&json!(6500), &json!(true)));
    // Regions 0 to 4 with three teams each; region 4 is first named in the third chunk.
    assert_eq!(r["units_created"].as_array().unwrap().len(), 20, "{r}");
    // (Four-digit names: no other name starts with them.)
    for (q, unit) in [
        ("v1007", "Team 2"),
        ("v2001", "Team 0"),
        ("v6499", "Team 1"),
    ] {
        let found = people(&s, &k, &format!("q={q}")).await;
        assert_eq!(found.len(), 1, "{q}: {found:?}");
        assert_eq!(found[0]["units"][0]["name"], unit, "{q}: {found:?}");
    }
    let (_, units) = s.get(&k, "/api/v1/orgs/acme/units").await;
    assert_eq!(units["items"].as_array().unwrap().len(), 20, "{units}");

    // A client synced before the import gets every new person, page after page.
    let mut next = cursor;
    let mut seen = std::collections::HashSet::new();
    loop {
        let (st, v) = s
            .get(
                &k,
                &format!("/api/v1/orgs/acme/contacts/changes?cursor={next}"),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        for p in v["upserts"].as_array().unwrap() {
            seen.insert(p["id"].as_str().unwrap().to_string());
        }
        assert_eq!(v["removals"], json!([]), "{v}");
        next = v["next_cursor"].as_str().unwrap().to_string();
        if v["more"] != json!(true) {
            break;
        }
    }
    assert_eq!(seen.len(), 6500);

    // Ten people change (rows 0, 700, …, 6300, spread over the three chunks).
    let before = audit_len(&s, &k).await;
    let (st, r) = upload(&s, &k, "", &file(true)).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (&r["updated"], &r["unchanged"], &r["created"]),
        (&json!(10), &json!(6490), &json!(0)),
        "{r}"
    );
    assert_eq!(audit_len(&s, &k).await, before + 10);
    let (_, v) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/contacts/changes?cursor={next}"),
        )
        .await;
    let changed: Vec<&str> = v["upserts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["given_name"].as_str().unwrap())
        .collect();
    assert_eq!(changed.len(), 10, "{v}");
    for i in (0..6500).step_by(700) {
        assert!(changed.contains(&format!("V{i}").as_str()), "{changed:?}");
        assert_eq!(people(&s, &k, &format!("q=v{i}")).await.len(), 1);
    }
    let found = people(&s, &k, "q=v4200").await;
    assert_eq!(found[0]["phones"][0]["value"], "+41790004299", "{found:?}");
}

/// A chunk of `n` rows: person `i` is "K{i}", family name "N{i}" except `boom`'s ("Boom").
fn numbered(n: usize, boom: Option<usize>) -> Vec<u8> {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let family = match boom {
                Some(b) if b == i => "Boom".to_string(),
                _ => format!("N{i}"),
            };
            format!(
                "K{i};V{i};{family};079 123 {:02} {:02};e{i}@example.org;Region Nord/Team {};",
                (i / 100) % 100,
                i % 100,
                i % 3
            )
        })
        .collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    swiss(&rows)
}

/// The writer fails on a later chunk (a database error: here a trigger refuses one person of
/// the second of three chunks): the import fails with that error, not with the "writer stopped"
/// the planner gets when it hands on the next chunk; the chunk written before is rolled back
/// with it (no person, no unit, no audit event, no change in the feed); and the next import
/// runs normally.
#[tokio::test]
async fn a_write_failing_in_a_later_chunk_rolls_back_the_whole_import() {
    use carebridge_domain::Clock;
    use carebridge_store::{exec, sqlx};
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let db = &s.running.state.db;
    let events = audit_len(&s, &k).await;
    let (_, start) = s.get(&k, "/api/v1/orgs/acme/contacts/changes").await;
    let cursor = start["next_cursor"].as_str().unwrap().to_string();
    let ddl: &[&str] = if carebridge_testkit::on_postgres() {
        &[
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.family_name = 'Boom' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON people FOR EACH ROW \
             EXECUTE FUNCTION refuse_boom()",
            // The import inserts new people with ordinary triggers off (`session_replication_role
            // = replica`, see `bulk::fk_triggers_off`); this one fires all the same.
            "ALTER TABLE people ENABLE ALWAYS TRIGGER refuse_boom",
        ]
    } else {
        &["CREATE TRIGGER refuse_boom BEFORE INSERT ON people \
           WHEN NEW.family_name = 'Boom' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"]
    };
    let mut tx = db.begin().await.unwrap();
    for sql in ddl {
        exec!(&mut tx, c => sqlx::query(sql).execute(c).await).unwrap();
    }
    tx.commit().await.unwrap();

    let opts = carebridge_proto::directory::ImportOptions {
        create_units: true,
        ..Default::default()
    };
    // 8,000 rows are three chunks (2,000, 4,000 and 2,000 rows); row 2,100 is in the second.
    let file = numbered(8000, Some(2100));
    let e = carebridge_server::commands::import_people(
        db,
        "acme",
        file,
        opts.clone(),
        false,
        s.clock.now(),
    )
    .await
    .unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("refused by the test"), "{text}");
    assert!(!text.contains("writer stopped"), "{text}");

    assert!(people(&s, &k, "").await.is_empty());
    let (_, units) = s.get(&k, "/api/v1/orgs/acme/units").await;
    assert_eq!(units["items"].as_array().unwrap().len(), 0, "{units}");
    assert_eq!(audit_len(&s, &k).await, events);
    let (st, feed) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/contacts/changes?cursor={cursor}"),
        )
        .await;
    assert_eq!(st, 200, "{feed}");
    assert_eq!(feed["upserts"].as_array().map(Vec::len), Some(0), "{feed}");

    // The same file without the refused row goes in whole.
    let (st, r) = upload(&s, &k, "create_units=true", &numbered(8000, None)).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!((&r["created"], &r["applied"]), (&json!(8000), &json!(true)));
    // One event per person and per unit created (Region Nord and its three teams).
    assert_eq!(audit_len(&s, &k).await, events + 8000 + 4);
}

/// The SQLite writer's page cache (KiB), automatic checkpoint threshold (pages) and whether it
/// checks foreign keys, read in `tx`.
async fn writer_settings(tx: &mut carebridge_store::Tx) -> (i64, i64, bool) {
    use carebridge_store::{run, sqlx};
    let pragma = |name: &'static str| format!("PRAGMA {name}");
    let mut read = async |name| {
        run!(tx, c => sqlx::query_scalar::<_, i64>(&pragma(name)).fetch_one(c).await).unwrap()
    };
    // A negative `cache_size` is a size in KiB.
    let cache = -read("cache_size").await;
    let checkpoint = read("wal_autocheckpoint").await;
    let keys = read("foreign_keys").await == 1;
    (cache, checkpoint, keys)
}

/// The writer's settings outside bulk transactions.
const USUAL: (i64, i64, bool) = (
    carebridge_store::WRITER_CACHE_KIB,
    carebridge_store::WRITER_AUTOCHECKPOINT_PAGES,
    true,
);

/// `Db::begin_bulk` gives SQLite's writer a page cache large enough for a whole import's
/// transaction, no checkpoint at its commit and no foreign-key checks; once the transaction is
/// over (dropped or committed) the next one has the usual settings. Rows written meanwhile are
/// checked with `bulk::check_foreign_keys`. On PostgreSQL a bulk transaction is a plain one. A
/// new SQLite database has 16 KiB pages.
#[tokio::test]
async fn a_bulk_transaction_has_its_own_settings_until_it_ends() {
    use carebridge_store::{BULK_CACHE_KIB, StoreError, bulk, exec, run, sqlx};
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let db = &s.running.state.db;
    let on_sqlite = !carebridge_testkit::on_postgres();
    let mut tx = db.begin_bulk().await.unwrap();
    if on_sqlite {
        assert_eq!(writer_settings(&mut tx).await, (BULK_CACHE_KIB, 0, false));
        let page =
            run!(&mut tx, c => sqlx::query_scalar::<_, i64>("PRAGMA page_size").fetch_one(c).await);
        assert_eq!(page.unwrap(), 16_384);
    }
    drop(tx);
    if on_sqlite {
        let mut tx = db.begin().await.unwrap();
        assert_eq!(writer_settings(&mut tx).await, USUAL);
    }

    // A row naming a missing parent gets in only unchecked, and the check finds it.
    let mut tx = db.begin_bulk().await.unwrap();
    let orphan = exec!(&mut tx, c => sqlx::query(
        "INSERT INTO labels (id, org_id, kind, name, name_key, created_at) \
         VALUES ($1, $2, 'group', 'Waise', 'waise', 0)")
        .bind(uuid::Uuid::new_v4()).bind(uuid::Uuid::new_v4()).execute(c).await);
    if on_sqlite {
        assert_eq!(orphan.unwrap(), 1);
        bulk::check_foreign_keys(&mut tx, &["units"]).await.unwrap();
        let e = bulk::check_foreign_keys(&mut tx, &["units", "labels"])
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::ForeignKey { what } if what.contains("labels") && what.contains("organisations")),
            "{e:?}"
        );
    } else {
        let e = StoreError::from(orphan.unwrap_err());
        assert!(matches!(e, StoreError::ForeignKey { .. }), "{e:?}");
    }
    drop(tx);
    // After a commit too.
    db.begin_bulk().await.unwrap().commit().await.unwrap();
    if on_sqlite {
        let mut tx = db.begin().await.unwrap();
        assert_eq!(writer_settings(&mut tx).await, USUAL);
    }

    // After a real import too.
    let (st, r) = upload(&s, &k, "create_units=true", &swiss(THREE)).await;
    assert_eq!(st, 200, "{r}");
    if on_sqlite {
        let mut tx = db.begin().await.unwrap();
        assert_eq!(writer_settings(&mut tx).await, USUAL);
    }
}

/// An import whose future is dropped midway (an upload whose client hung up, which drops the
/// handler) still ends the bulk mode: the next writer has the usual page cache, checkpoint
/// threshold and foreign-key checks.
#[tokio::test]
async fn an_import_dropped_midway_still_ends_the_bulk_mode() {
    use carebridge_domain::Clock;
    use carebridge_domain::auth::{Actor, Source};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    if carebridge_testkit::on_postgres() {
        // Bulk mode changes nothing on PostgreSQL.
        return;
    }
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let db = s.running.state.db.clone();
    let org = carebridge_server::commands::resolve(&db, "acme")
        .await
        .unwrap();
    let req = carebridge_directory::service::import::Request {
        bytes: numbered(20_000, None),
        options: carebridge_proto::directory::ImportOptions {
            create_units: true,
            ..Default::default()
        },
        may_assign_roles: false,
    };
    let chunk_done = Arc::new(AtomicBool::new(false));
    let progress = {
        let chunk_done = chunk_done.clone();
        move |_: f64| chunk_done.store(true, Ordering::SeqCst)
    };
    let actor = Actor::system("test", Source::Cli);
    // Boxed, so that `drop` below really drops it (`tokio::pin!` would keep it to the end).
    let mut import = Box::pin(carebridge_directory::service::import::run(
        &db,
        &actor,
        &org,
        req,
        s.clock.now(),
        &progress,
    ));
    // Poll it until a chunk is done (the bulk transaction has begun), then drop it.
    loop {
        tokio::select! {
            r = &mut import => panic!("the import ended before it could be dropped: {r:?}"),
            () = tokio::time::sleep(std::time::Duration::from_millis(1)) => {
                if chunk_done.load(Ordering::SeqCst) {
                    break;
                }
            }
        }
    }
    drop(import);

    // The next transaction has the usual settings (foreign keys checked above all).
    let mut tx = db.begin().await.unwrap();
    assert_eq!(writer_settings(&mut tx).await, USUAL);
    drop(tx);
    // Nothing of the dropped import stays.
    assert_eq!(people(&s, &k, "").await.len(), 0);
    assert!(!carebridge_directory::service::import::running(org.id.0));
}

/// The import writes its new people and link rows (a person's unit, groups and skills) with
/// the database's per-row foreign-key checks off on PostgreSQL (where the role may), having
/// checked and locked the organisation, units and labels they name itself
/// (`bulk::lock_organisation`, `bulk::lock_parents`): an organisation or label that does not
/// exist is refused, one that exists stays until the transaction ends, and the checks are back
/// on for the rest of the transaction. On SQLite the same checks refuse what is missing.
#[tokio::test]
async fn links_written_unchecked_name_parents_checked_and_locked() {
    use carebridge_store::{StoreError, bulk, exec, run, sqlx};
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let db = &s.running.state.db;
    let (st, r) = upload(&s, &k, "create_units=true", &swiss(THREE)).await;
    assert_eq!(st, 200, "{r}");
    let mut tx = db.begin().await.unwrap();
    let (org, person): (uuid::Uuid, uuid::Uuid) = run!(&mut tx, c => sqlx::query_as(
        "SELECT o.id, p.id FROM organisations o JOIN people p ON p.org_id = o.id \
         WHERE o.slug = 'acme' AND p.external_id = 'P3'")
        .fetch_one(c).await)
    .unwrap();
    // A label nobody has yet (one with members could not be deleted anyway).
    let label = uuid::Uuid::new_v4();
    exec!(&mut tx, c => sqlx::query(
        "INSERT INTO labels (id, org_id, kind, name, name_key, created_at) \
         VALUES ($1, $2, 'group', 'Nachtdienst', 'nachtdienst', 0)")
        .bind(label).bind(org).execute(c).await)
    .unwrap();
    tx.commit().await.unwrap();

    // A label that does not exist, or not in this organisation, is refused.
    let mut tx = db.begin().await.unwrap();
    let e = bulk::lock_parents(&mut tx, "labels", org, &[label, uuid::Uuid::new_v4()])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::ForeignKey { what } if what.contains("1 of the 2 labels")),
        "{e:?}"
    );
    drop(tx);
    let mut tx = db.begin().await.unwrap();
    let e = bulk::lock_parents(&mut tx, "labels", uuid::Uuid::new_v4(), &[label])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::ForeignKey { .. }), "{e:?}");
    drop(tx);

    // New people name their organisation: one that does not exist is refused too.
    let mut tx = db.begin().await.unwrap();
    let e = bulk::lock_organisation(&mut tx, uuid::Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::ForeignKey { what } if what.contains("organisation")),
        "{e:?}"
    );
    drop(tx);

    let mut tx = db.begin().await.unwrap();
    bulk::lock_organisation(&mut tx, org).await.unwrap();
    bulk::lock_parents(&mut tx, "labels", org, &[label])
        .await
        .unwrap();
    if carebridge_testkit::on_postgres() {
        // The organisation is locked as a foreign-key check would lock it: nobody may lock it
        // for an update of its key (or delete it) until this transaction ends.
        let mut other = db.begin().await.unwrap();
        let locked = exec!(&mut other, c => sqlx::query(
            "SELECT 1 FROM organisations WHERE id = $1 FOR UPDATE NOWAIT")
            .bind(org).execute(c).await);
        assert!(
            locked.is_err(),
            "the organisation was not locked: {locked:?}"
        );
        drop(other);
    }
    let off = bulk::fk_triggers_off(&mut tx).await.unwrap();
    let role = |on: bool| if on { "replica" } else { "origin" };
    if carebridge_testkit::on_postgres() {
        // The tests connect as a superuser.
        assert!(off);
        let now: String = run!(&mut tx, c => sqlx::query_scalar("SHOW session_replication_role")
            .fetch_one(c).await)
        .unwrap();
        assert_eq!(now, role(true));
    } else {
        assert!(!off);
    }
    let mut rows = bulk::Rows::new();
    rows.uuid(person).uuid(label).uuid(org).end();
    let cols = [
        ("person_id", bulk::Col::Uuid),
        ("label_id", bulk::Col::Uuid),
        ("org_id", bulk::Col::Uuid),
    ];
    bulk::insert(&mut tx, "person_labels", &cols, rows, "")
        .await
        .unwrap();
    bulk::fk_triggers_on(&mut tx, off).await.unwrap();
    if carebridge_testkit::on_postgres() {
        let now: String = run!(&mut tx, c => sqlx::query_scalar("SHOW session_replication_role")
            .fetch_one(c).await)
        .unwrap();
        assert_eq!(now, role(false));
        // Another transaction cannot delete the label meanwhile: it waits for this one.
        let mut other = db.begin().await.unwrap();
        exec!(&mut other, c => sqlx::query("SET LOCAL lock_timeout = '300ms'").execute(c).await)
            .unwrap();
        let gone = exec!(&mut other, c => sqlx::query("DELETE FROM labels WHERE id = $1")
            .bind(label).execute(c).await);
        assert!(
            gone.is_err(),
            "deleted a label a running import links to: {gone:?}"
        );
        drop(other);
        // The database checks keys again for the rest of the transaction.
        let mut rows = bulk::Rows::new();
        rows.uuid(person).uuid(uuid::Uuid::new_v4()).uuid(org).end();
        exec!(&mut tx, c => sqlx::query("SAVEPOINT checked").execute(c).await).unwrap();
        let e = bulk::insert(&mut tx, "person_labels", &cols, rows, "")
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::ForeignKey { .. }), "{e:?}");
        exec!(&mut tx, c => sqlx::query("ROLLBACK TO SAVEPOINT checked").execute(c).await).unwrap();
    }
    tx.commit().await.unwrap();
    let (st, p) = s.get(&k, "/api/v1/orgs/acme/people?q=rossi").await;
    assert_eq!(st, 200, "{p}");
    assert!(p.to_string().contains("Nachtdienst"), "{p}");
}

/// A role that may not set `session_replication_role` gets the usual checks, and its
/// transaction goes on unharmed (the right is asked, not tried).
#[tokio::test]
async fn without_the_right_the_foreign_key_checks_stay_on() {
    use carebridge_store::{bulk, exec, run, sqlx};
    if !carebridge_testkit::on_postgres() {
        return;
    }
    let s = TestServer::start().await;
    let db = &s.running.state.db;
    let mut tx = db.begin().await.unwrap();
    // A role of the cluster (shared by all test databases); a second run finds it there.
    exec!(&mut tx, c => sqlx::query(
        "DO $$ BEGIN CREATE ROLE carebridge_plain NOLOGIN; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        .execute(c).await)
    .unwrap();
    exec!(&mut tx, c => sqlx::query("SET LOCAL ROLE carebridge_plain").execute(c).await).unwrap();
    assert!(!bulk::fk_triggers_off(&mut tx).await.unwrap());
    let now: String = run!(&mut tx, c => sqlx::query_scalar("SHOW session_replication_role")
        .fetch_one(c).await)
    .unwrap();
    assert_eq!(now, "origin");
    bulk::fk_triggers_on(&mut tx, false).await.unwrap();
    tx.commit().await.unwrap();
}
