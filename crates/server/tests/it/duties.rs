//! Duties through the API: sign-up → confirm → roster event, qualification expiry against the
//! test clock, cancel/move events, the chat switch, the iCalendar feed (parsed by the
//! independent `icalendar` parser), unit scopes of dispatchers, and bad input that writes
//! nothing.

use std::str::FromStr;

use carebridge_testkit::{TestServer, t0};
use jiff::SignedDuration;
use serde_json::{Value, json};

/// A local date-time `days` (and `hours`) after the test clock's start, in UTC.
fn at(days: i64, hours: i64) -> String {
    (t0() + SignedDuration::from_hours(days * 24 + hours)).to_string()
}

struct World {
    s: TestServer,
    admin: String,
    unit_a: String,
    unit_b: String,
}

async fn world() -> World {
    let s = TestServer::start().await;
    let admin = s.org("acme").await;
    let (_, a) = s
        .post(
            &admin,
            "/api/v1/orgs/acme/units",
            &json!({"name": "Rettungsdienst Nord"}),
        )
        .await;
    let (_, b) = s
        .post(
            &admin,
            "/api/v1/orgs/acme/units",
            &json!({"name": "Rettungsdienst Süd"}),
        )
        .await;
    World {
        unit_a: a["id"].as_str().unwrap().into(),
        unit_b: b["id"].as_str().unwrap().into(),
        s,
        admin,
    }
}

impl World {
    /// A person in `unit` with `role` there and a personal key.
    async fn person(&self, given: &str, unit: &str, role: &str) -> (String, String) {
        let (st, p) = self
            .s
            .post(
                &self.admin,
                "/api/v1/orgs/acme/people",
                &json!({"given_name": given, "family_name": "Muster", "unit_ids": [unit]}),
            )
            .await;
        assert_eq!(st, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        let (st, r) = self
            .s
            .post(
                &self.admin,
                "/api/v1/orgs/acme/roles",
                &json!({"person_id": id, "role": role, "unit_id": unit}),
            )
            .await;
        assert_eq!(st, 201, "{r}");
        let key = self.s.person_key(&self.admin, "acme", &id, &[]).await;
        (id, key)
    }

    async fn duty(&self, key: &str, body: Value) -> Value {
        let (st, d) = self.s.post(key, "/api/v1/orgs/acme/duties", &body).await;
        assert_eq!(st, 201, "{d}");
        d
    }

    async fn events(&self) -> Vec<Value> {
        let (st, e) = self
            .s
            .get(&self.admin, "/api/v1/orgs/acme/roster-events")
            .await;
        assert_eq!(st, 200, "{e}");
        e.as_array().unwrap().clone()
    }

    async fn audit_seq(&self) -> i64 {
        let (_, a) = self
            .s
            .get(&self.admin, "/api/v1/orgs/acme/audit?limit=1")
            .await;
        a["items"][0]["seq"].as_i64().unwrap()
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn sign_up_confirm_emits_the_roster() {
    let w = world().await;
    let (anna, anna_key) = w.person("Anna", &w.unit_a, "member").await;
    let (ben, ben_key) = w.person("Ben", &w.unit_a, "member").await;
    let (_, disp_key) = w.person("Dora", &w.unit_a, "dispatcher").await;
    let d = w
        .duty(
            &disp_key,
            json!({"unit_id": w.unit_a, "title": "Sanitätsdienst Zürifäscht", "location": "Zürich Seebecken",
                   "starts_at": "2026-12-05T08:00", "ends_at": "2026-12-05T18:00", "time_zone": "Europe/Zurich",
                   "positions": [{"name": "Sanitäter", "needed": 2}]}),
        )
        .await;
    assert_eq!(d["starts_at"], "2026-12-05T07:00:00Z");
    assert_eq!(
        d["starts_local"],
        "2026-12-05T08:00:00+01:00[Europe/Zurich]"
    );
    let duty = id(&d);
    let pos = d["positions"][0]["id"].as_str().unwrap().to_string();

    // Anna asks; a request is not on the roster and emits nothing.
    let (st, req) =
        w.s.post(
            &anna_key,
            &format!("/api/v1/orgs/acme/duties/{duty}/requests"),
            &json!({"position_id": pos, "note": "gern"}),
        )
        .await;
    assert_eq!(
        (st, req["status"].as_str()),
        (201, Some("requested")),
        "{req}"
    );
    assert!(w.events().await.is_empty());
    let (_, mine) = w.s.get(&anna_key, "/api/v1/me/duties").await;
    assert_eq!(
        mine["items"][0]["assignment"]["status"], "requested",
        "{mine}"
    );
    // A member cannot confirm their own request.
    let decision = format!(
        "/api/v1/orgs/acme/duties/{duty}/assignments/{}/decision",
        id(&req)
    );
    let (st, _) =
        w.s.post(&anna_key, &decision, &json!({"decision": "confirm"}))
            .await;
    assert_eq!(st, 403);
    // The dispatcher confirms: roster event with Anna, version 1.
    let (st, ok) =
        w.s.post(&disp_key, &decision, &json!({"decision": "confirm"}))
            .await;
    assert_eq!(
        (st, ok["status"].as_str()),
        (200, Some("confirmed")),
        "{ok}"
    );
    let ev = w.events().await;
    assert_eq!(ev.len(), 1);
    let r = &ev[0]["roster"];
    assert_eq!(r["duty_id"], duty.as_str());
    assert_eq!(r["roster_version"], 1);
    assert_eq!(
        r["roster"],
        json!([{"person_id": anna, "role": "helper", "position_id": pos}])
    );
    let (_, roster) =
        w.s.get(
            &disp_key,
            &format!("/api/v1/orgs/acme/duties/{duty}/roster"),
        )
        .await;
    assert_eq!(&roster, r, "the roster endpoint and the last event agree");
    // Ben asks, is declined (no event), asks again, is confirmed by "save assignment" rules.
    let (_, req_b) =
        w.s.post(
            &ben_key,
            &format!("/api/v1/orgs/acme/duties/{duty}/requests"),
            &json!({}),
        )
        .await;
    let dec_b = format!(
        "/api/v1/orgs/acme/duties/{duty}/assignments/{}/decision",
        id(&req_b)
    );
    let (st, no) =
        w.s.post(&disp_key, &dec_b, &json!({"decision": "decline"}))
            .await;
    assert_eq!((st, no["status"].as_str()), (200, Some("declined")));
    assert_eq!(w.events().await.len(), 1);
    let (st, again) =
        w.s.post(
            &ben_key,
            &format!("/api/v1/orgs/acme/duties/{duty}/requests"),
            &json!({}),
        )
        .await;
    assert_eq!(
        (st, again["status"].as_str()),
        (201, Some("requested")),
        "{again}"
    );
    let (st, _) =
        w.s.post(&disp_key, &dec_b, &json!({"decision": "confirm"}))
            .await;
    assert_eq!(st, 200);
    let ev = w.events().await;
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1]["roster"]["roster_version"], 2);
    let people: Vec<&str> = ev[1]["roster"]["roster"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["person_id"].as_str().unwrap())
        .collect();
    let mut want = vec![anna.as_str(), ben.as_str()];
    want.sort();
    assert_eq!(people, want);
    let (_, d) =
        w.s.get(&disp_key, &format!("/api/v1/orgs/acme/duties/{duty}"))
            .await;
    assert_eq!(
        (
            d["confirmed"].as_i64(),
            d["positions"][0]["filled"].as_i64()
        ),
        (Some(2), Some(1))
    );
    // The audit log has the flow.
    let (_, audit) = w.s.get(&w.admin, "/api/v1/orgs/acme/audit?limit=20").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "duty.create",
        "assignment.request",
        "assignment.confirm",
        "assignment.decline",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

#[tokio::test]
async fn qualifications_include_and_expire_by_the_clock() {
    let w = world().await;
    let k = &w.admin;
    let (_, helper) =
        w.s.post(
            k,
            "/api/v1/orgs/acme/qualifications",
            &json!({"name": "Ersthelfer"}),
        )
        .await;
    let (st, medic) =
        w.s.post(
            k,
            "/api/v1/orgs/acme/qualifications",
            &json!({"name": "Rettungssanitäter", "includes": [helper["id"]]}),
        )
        .await;
    assert_eq!(st, 201, "{medic}");
    // A cycle is refused.
    let (st, p) =
        w.s.patch(
            k,
            &format!("/api/v1/orgs/acme/qualifications/{}", id(&helper)),
            "\"1\"",
            &json!({"includes": [medic["id"]]}),
        )
        .await;
    assert_eq!(
        (st, p["errors"][0]["code"].as_str()),
        (422, Some("cycle")),
        "{p}"
    );
    let (pers, _) = w.person("Paul", &w.unit_a, "member").await;
    // Paul is a paramedic until day 1, 12:00.
    let (st, held) =
        w.s.put(
            k,
            &format!(
                "/api/v1/orgs/acme/people/{pers}/qualifications/{}",
                id(&medic)
            ),
            &json!({"valid_until": at(1, 12)}),
        )
        .await;
    assert_eq!(st, 200, "{held}");
    // A duty running from day 1 to day 3 needs a first aider.
    let d = w
        .duty(k, json!({"unit_id": w.unit_a, "title": "Nachtdienst", "starts_at": at(1, 0), "ends_at": at(3, 0),
                        "positions": [{"name": "Ersthelfer", "qualification_id": helper["id"]}]}))
        .await;
    let pos = d["positions"][0]["id"].clone();
    let assign = format!("/api/v1/orgs/acme/duties/{}/assignments", id(&d));
    // At day 2 the qualification has expired: refused, nothing written.
    w.s.clock.set(t0() + SignedDuration::from_hours(48));
    let before = w.audit_seq().await;
    let (st, p) =
        w.s.post(k, &assign, &json!({"person_id": pers, "position_id": pos}))
            .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (409, Some("not_qualified")),
        "{p}"
    );
    assert_eq!(w.audit_seq().await, before);
    assert!(w.events().await.is_empty());
    // Back at the start the paramedic counts as a first aider (includes).
    w.s.clock.set(t0());
    let (st, a) =
        w.s.post(k, &assign, &json!({"person_id": pers, "position_id": pos}))
            .await;
    assert_eq!(
        (st, a["qualification_override"].as_bool()),
        (201, Some(false)),
        "{a}"
    );
    // Someone without any qualification needs the explicit override, which is audited.
    let (other, _) = w.person("Olga", &w.unit_a, "member").await;
    let (st, p) =
        w.s.post(k, &assign, &json!({"person_id": other, "position_id": pos}))
            .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (409, Some("position_full")),
        "{p}"
    );
    let d2 = w
        .duty(k, json!({"unit_id": w.unit_a, "title": "Tagdienst", "starts_at": at(5, 0), "ends_at": at(5, 8),
                        "positions": [{"name": "Ersthelfer", "qualification_id": helper["id"], "needed": 3}]}))
        .await;
    let assign2 = format!("/api/v1/orgs/acme/duties/{}/assignments", id(&d2));
    let pos2 = d2["positions"][0]["id"].clone();
    let (st, p) =
        w.s.post(
            k,
            &assign2,
            &json!({"person_id": other, "position_id": pos2}),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (409, Some("not_qualified")));
    // Paul's qualification ends before this duty starts: refused as well.
    let (st, _) =
        w.s.post(
            k,
            &assign2,
            &json!({"person_id": pers, "position_id": pos2}),
        )
        .await;
    assert_eq!(st, 409);
    let (st, a) =
        w.s.post(
            k,
            &assign2,
            &json!({"person_id": other, "position_id": pos2, "override_qualification": true}),
        )
        .await;
    assert_eq!(
        (st, a["qualification_override"].as_bool()),
        (201, Some(true)),
        "{a}"
    );
    let (_, audit) = w.s.get(k, "/api/v1/orgs/acme/audit?limit=1").await;
    assert_eq!(audit["items"][0]["action"], "assignment.create_override");
}

#[tokio::test]
async fn cancel_move_and_chat_switch_emit_roster_events() {
    let w = world().await;
    let k = &w.admin;
    let (p1, _) = w.person("Clara", &w.unit_a, "member").await;
    let (p2, _) = w.person("Chris", &w.unit_a, "member").await;
    let d = w
        .duty(k, json!({"unit_id": w.unit_a, "title": "Einsatz", "starts_at": at(2, 0), "ends_at": at(2, 6)}))
        .await;
    let duty = id(&d);
    let assign = format!("/api/v1/orgs/acme/duties/{duty}/assignments");
    // The chat switch needs the organisation's chat feature.
    let (st, p) =
        w.s.post(
            k,
            &assign,
            &json!({"person_id": p1, "role": "lead", "chat": true}),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (409, Some("chat_not_enabled")),
        "{p}"
    );
    let (st, f) =
        w.s.put(
            k,
            "/api/v1/orgs/acme/features/chat",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!((st, f["enabled"].as_bool()), (200, Some(true)), "{f}");
    assert!(f["tenant_id"].is_string());
    let (_, audit) = w.s.get(k, "/api/v1/orgs/acme/audit?limit=1").await;
    assert_eq!(audit["items"][0]["action"], "feature.provision");
    let (st, a1) =
        w.s.post(
            k,
            &assign,
            &json!({"person_id": p1, "role": "lead", "chat": true}),
        )
        .await;
    assert_eq!(st, 201, "{a1}");
    let (st, _) = w.s.post(k, &assign, &json!({"person_id": p2})).await;
    assert_eq!(st, 201);
    let ev = w.events().await;
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["roster"]["chat"], true);
    assert_eq!(ev[1]["roster"]["roster"].as_array().unwrap().len(), 2);
    // Role change: event.
    let (_, cur) = w.s.get(k, &format!("{assign}/{}", id(&a1))).await;
    let (st, _) =
        w.s.patch(
            k,
            &format!("{assign}/{}", id(&a1)),
            &format!("\"{}\"", cur["version"]),
            &json!({"role": "helper"}),
        )
        .await;
    assert_eq!(st, 200);
    // Move: event with the new times.
    let (_, d) =
        w.s.get(k, &format!("/api/v1/orgs/acme/duties/{duty}"))
            .await;
    let (st, moved) =
        w.s.patch(
            k,
            &format!("/api/v1/orgs/acme/duties/{duty}"),
            &format!("\"{}\"", d["version"]),
            &json!({"starts_at": at(3, 0), "ends_at": at(3, 6)}),
        )
        .await;
    assert_eq!(st, 200, "{moved}");
    // Cancel: event with an empty roster.
    let (st, cancelled) =
        w.s.patch(
            k,
            &format!("/api/v1/orgs/acme/duties/{duty}"),
            &format!("\"{}\"", moved["version"]),
            &json!({"state": "cancelled"}),
        )
        .await;
    assert_eq!((st, cancelled["state"].as_str()), (200, Some("cancelled")));
    let ev = w.events().await;
    assert_eq!(ev.len(), 5, "{ev:?}");
    let versions: Vec<i64> = ev
        .iter()
        .map(|e| e["roster"]["roster_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5], "monotonic per duty");
    assert_eq!(ev[3]["roster"]["starts_at"], at(3, 0));
    assert_eq!(ev[4]["roster"]["state"], "cancelled");
    assert_eq!(ev[4]["roster"]["roster"], json!([]));
    // Assigning to a cancelled duty is refused.
    let (other, _) = w.person("Cem", &w.unit_a, "member").await;
    let (st, p) = w.s.post(k, &assign, &json!({"person_id": other})).await;
    assert_eq!((st, p["code"].as_str()), (409, Some("duty_cancelled")));
}

#[tokio::test]
async fn deactivating_a_person_takes_them_off_upcoming_rosters() {
    let w = world().await;
    let k = &w.admin;
    let (p1, p1_key) = w.person("Dana", &w.unit_a, "member").await;
    let d = w
        .duty(k, json!({"unit_id": w.unit_a, "title": "Wache", "starts_at": at(1, 0), "ends_at": at(1, 8)}))
        .await;
    let (st, _) =
        w.s.post(
            k,
            &format!("/api/v1/orgs/acme/duties/{}/assignments", id(&d)),
            &json!({"person_id": p1}),
        )
        .await;
    assert_eq!(st, 201);
    let (_, person) = w.s.get(k, &format!("/api/v1/orgs/acme/people/{p1}")).await;
    let (st, _) =
        w.s.patch(
            k,
            &format!("/api/v1/orgs/acme/people/{p1}"),
            &format!("\"{}\"", person["version"]),
            &json!({"active": false}),
        )
        .await;
    assert_eq!(st, 200);
    let ev = w.events().await;
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1]["roster"]["roster"], json!([]));
    // And their personal key stops working.
    let (st, _) = w.s.get(&p1_key, "/api/v1/me/duties").await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn ical_feed_parses_and_dies_when_revoked() {
    let w = world().await;
    let (me, key) = w.person("Eva", &w.unit_a, "member").await;
    for (i, title) in ["Frühdienst, Wache 1; Tor \"Süd\"", "Spätdienst"]
        .iter()
        .enumerate()
    {
        let d = w
            .duty(&w.admin, json!({"unit_id": w.unit_a, "title": title, "location": "Basel, Messeplatz",
                                   "starts_at": format!("2026-12-1{i}T06:00"), "ends_at": format!("2026-12-1{i}T14:00"), "time_zone": "Europe/Zurich"}))
            .await;
        let (st, _) =
            w.s.post(
                &w.admin,
                &format!("/api/v1/orgs/acme/duties/{}/assignments", id(&d)),
                &json!({"person_id": me}),
            )
            .await;
        assert_eq!(st, 201);
    }
    let (st, feed) =
        w.s.post(&key, "/api/v1/me/calendar-feeds", &json!({}))
            .await;
    assert_eq!(st, 201, "{feed}");
    let url = w.s.url(feed["url"].as_str().unwrap());
    let r = w.s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/calendar")
    );
    let text = r.text().await.unwrap();
    let cal = icalendar::Calendar::from_str(&text).expect("a valid iCalendar document");
    let events: Vec<&icalendar::Event> =
        cal.components.iter().filter_map(|c| c.as_event()).collect();
    assert_eq!(events.len(), 2, "{text}");
    use icalendar::{Component, EventLike};
    assert_eq!(
        events[0].get_summary(),
        Some("Frühdienst, Wache 1; Tor \"Süd\"")
    );
    assert_eq!(events[0].get_location(), Some("Basel, Messeplatz"));
    assert_eq!(
        events[0].property_value("DTSTART"),
        Some("20261210T050000Z")
    );
    // Another person's key cannot revoke it; the owner can, and the URL dies.
    let (_, other_key) = w.person("Fritz", &w.unit_a, "member").await;
    let (st, _) =
        w.s.delete(
            &other_key,
            &format!(
                "/api/v1/me/calendar-feeds/{}",
                feed["feed"]["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) =
        w.s.delete(
            &key,
            &format!(
                "/api/v1/me/calendar-feeds/{}",
                feed["feed"]["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(w.s.http.get(&url).send().await.unwrap().status(), 404);
    // A forged secret for a live feed is a 404 too.
    let (_, feed2) =
        w.s.post(&key, "/api/v1/me/calendar-feeds", &json!({}))
            .await;
    let u2 = feed2["url"].as_str().unwrap();
    let forged = format!("{}AAAA.ics", &u2[..u2.len() - 8]);
    assert_eq!(
        w.s.http
            .get(w.s.url(&forged))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Organisation keys have no "me".
    let (st, _) = w.s.get(&w.admin, "/api/v1/me/duties").await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn dispatchers_act_only_in_their_units() {
    let w = world().await;
    let (_, disp_a) = w.person("Dieter", &w.unit_a, "dispatcher").await;
    let (pb, _) = w.person("Berta", &w.unit_b, "member").await;
    let duty_b = w
        .duty(&w.admin, json!({"unit_id": w.unit_b, "title": "Süd-Dienst", "starts_at": at(1, 0), "ends_at": at(1, 4)}))
        .await;
    let duty_a = w
        .duty(&disp_a, json!({"unit_id": w.unit_a, "title": "Nord-Dienst", "starts_at": at(1, 0), "ends_at": at(1, 4)}))
        .await;
    let before = w.audit_seq().await;
    let (st, _) =
        w.s.post(
            &disp_a,
            "/api/v1/orgs/acme/duties",
            &json!({"unit_id": w.unit_b, "title": "x", "starts_at": at(1, 0), "ends_at": at(1, 4)}),
        )
        .await;
    assert_eq!(st, 403);
    let b = format!("/api/v1/orgs/acme/duties/{}", id(&duty_b));
    assert_eq!(w.s.get(&disp_a, &b).await.0, 403);
    assert_eq!(
        w.s.patch(&disp_a, &b, "\"1\"", &json!({"title": "mine"}))
            .await
            .0,
        403
    );
    assert_eq!(
        w.s.post(
            &disp_a,
            &format!("{b}/assignments"),
            &json!({"person_id": pb})
        )
        .await
        .0,
        403
    );
    assert_eq!(w.s.delete(&disp_a, &b).await.0, 403);
    // Moving their own duty into unit B is refused too.
    let a = format!("/api/v1/orgs/acme/duties/{}", id(&duty_a));
    assert_eq!(
        w.s.patch(&disp_a, &a, "\"1\"", &json!({"unit_id": w.unit_b}))
            .await
            .0,
        403
    );
    assert_eq!(w.audit_seq().await, before, "nothing written");
    // The week view shows only unit A; the admin sees both.
    let q = format!("/api/v1/orgs/acme/duties?from={}&to={}", at(0, 0), at(7, 0));
    let (_, list) = w.s.get(&disp_a, &q).await;
    let titles: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Nord-Dienst"]);
    let (_, list) = w.s.get(&w.admin, &q).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    // Narrowing to unit B gives the dispatcher nothing rather than B's duties.
    let (st, list) = w.s.get(&disp_a, &format!("{q}&unit_id={}", w.unit_b)).await;
    assert_eq!((st, list["items"].as_array().unwrap().len()), (200, 0));
}

#[tokio::test]
async fn bad_duty_input_is_refused_and_writes_nothing() {
    let w = world().await;
    let k = &w.admin;
    let d = w
        .duty(k, json!({"unit_id": w.unit_a, "title": "Dienst", "starts_at": at(1, 0), "ends_at": at(1, 4),
                        "positions": [{"name": "Fahrer"}]}))
        .await;
    let (p, _) = w.person("Gabi", &w.unit_a, "member").await;
    let assign = format!("/api/v1/orgs/acme/duties/{}/assignments", id(&d));
    let (st, _) = w.s.post(k, &assign, &json!({"person_id": p})).await;
    assert_eq!(st, 201);
    let before = w.audit_seq().await;
    let events_before = w.events().await.len();
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "/api/v1/orgs/acme/duties",
            json!({"unit_id": w.unit_a, "title": "x", "starts_at": at(1, 4), "ends_at": at(1, 0)}),
            422,
            "end_before_start",
            "/ends_at",
        ),
        (
            "/api/v1/orgs/acme/duties",
            json!({"unit_id": w.unit_a, "title": "x", "starts_at": "morgen", "ends_at": at(1, 0)}),
            422,
            "invalid_time",
            "/starts_at",
        ),
        (
            "/api/v1/orgs/acme/duties",
            json!({"unit_id": w.unit_a, "title": "x", "starts_at": at(1, 0), "ends_at": at(1, 4), "time_zone": "Europe/Atlantis"}),
            422,
            "invalid_time_zone",
            "/time_zone",
        ),
        (
            "/api/v1/orgs/acme/duties",
            json!({"unit_id": w.unit_a, "title": "x", "starts_at": at(1, 0), "ends_at": at(1, 4), "positions": [{"name": "A"}, {"name": "a"}]}),
            422,
            "duplicate",
            "/positions/1/name",
        ),
        (
            "/api/v1/orgs/acme/duties",
            json!({"unit_id": w.unit_a, "title": "x", "starts_at": at(1, 0), "ends_at": at(1, 4), "positions": [{"name": "A", "qualification_id": p}]}),
            422,
            "unknown_qualification",
            "/positions/0/qualification_id",
        ),
        (
            "/api/v1/orgs/acme/duties",
            json!({"unit_id": p, "title": "x", "starts_at": at(1, 0), "ends_at": at(1, 4)}),
            422,
            "unknown_unit",
            "/unit_id",
        ),
        (
            assign.as_str(),
            json!({"person_id": p}),
            409,
            "already_assigned",
            "",
        ),
        (
            assign.as_str(),
            json!({"person_id": w.unit_a}),
            422,
            "unknown_person",
            "/person_id",
        ),
        (
            assign.as_str(),
            json!({"person_id": p, "position_id": p}),
            409,
            "already_assigned",
            "",
        ),
        (
            assign.as_str(),
            json!({"person_id": p, "role": "boss"}),
            422,
            "invalid_role",
            "/role",
        ),
    ];
    for (path, body, status, code, pointer) in cases {
        let (st, prob) = w.s.post(k, path, &body).await;
        assert_eq!(st, status, "{body} → {prob}");
        let got = if status == 422 {
            prob["errors"][0]["code"].as_str()
        } else {
            prob["code"].as_str()
        };
        assert_eq!(got, Some(code), "{body} → {prob}");
        if !pointer.is_empty() {
            assert_eq!(prob["errors"][0]["pointer"], pointer, "{prob}");
        }
    }
    // An unknown position for a new person.
    let (q, _) = w.person("Hugo", &w.unit_a, "member").await;
    let (st, prob) =
        w.s.post(k, &assign, &json!({"person_id": q, "position_id": p}))
            .await;
    assert_eq!(
        (st, prob["errors"][0]["code"].as_str()),
        (422, Some("unknown_position")),
        "{prob}"
    );
    assert_eq!(
        w.audit_seq().await,
        before + 3,
        "only Hugo, his role and his key were written"
    );
    assert_eq!(w.events().await.len(), events_before);
    // Unknown fields are refused.
    let (st, prob) =
        w.s.post(k, &assign, &json!({"person_id": q, "shift": 1}))
            .await;
    assert_eq!(st, 400);
    assert!(prob["detail"].as_str().unwrap().contains("shift"), "{prob}");
}

#[tokio::test]
async fn cli_creates_lists_and_assigns() {
    use carebridge_proto::duties::{CreateAssignment, CreateDuty, PositionInput};
    use carebridge_server::commands;
    let w = world().await;
    let db = &w.s.running.state.db;
    let input = |start: String, end: String| CreateDuty {
        unit_id: w.unit_a.parse().unwrap(),
        title: "Postendienst".into(),
        location: None,
        description: None,
        starts_at: start,
        ends_at: end,
        time_zone: Some("Europe/Helsinki".into()),
        positions: vec![PositionInput {
            id: None,
            name: "Sanitäter".into(),
            needed: 2,
            qualification_id: None,
        }],
        chat: false,
    };
    let d = commands::duty_create(db, "acme", input(at(2, 0), at(2, 5)), t0())
        .await
        .unwrap();
    assert!(
        d.starts_local.ends_with("[Europe/Helsinki]"),
        "{}",
        d.starts_local
    );
    let e = commands::duty_create(db, "acme", input(at(2, 5), at(2, 0)), t0())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/ends_at"), "{e}");
    let list = commands::duties_list(db, "acme", Some(at(0, 0)), Some(at(7, 0)), t0())
        .await
        .unwrap();
    assert_eq!(list.iter().map(|d| d.id).collect::<Vec<_>>(), [d.id]);
    let (p, _) = w.person("Ida", &w.unit_a, "member").await;
    let a = commands::duty_assign(
        db,
        "acme",
        d.id,
        CreateAssignment {
            person_id: p.parse().unwrap(),
            position_id: Some(d.positions[0].id),
            role: Some("lead".into()),
            override_qualification: false,
            note: None,
            chat: None,
        },
        t0(),
    )
    .await
    .unwrap();
    assert_eq!((a.role.as_str(), a.status.as_str()), ("lead", "confirmed"));
    let ev = w.events().await;
    assert_eq!(ev.len(), 1);
    let (_, audit) = w.s.get(&w.admin, "/api/v1/orgs/acme/audit?limit=1").await;
    assert_eq!(audit["items"][0]["actor"], "system:cli");
}

#[tokio::test]
async fn listings_include_duties_still_running_at_from() {
    let w = world().await;
    let (me, key) = w.person("Jana", &w.unit_a, "member").await;
    let camp = w
        .duty(&w.admin, json!({"unit_id": w.unit_a, "title": "Lager", "starts_at": at(1, 0), "ends_at": at(4, 0)}))
        .await;
    let short = w
        .duty(&w.admin, json!({"unit_id": w.unit_a, "title": "Kurz", "starts_at": at(1, 0), "ends_at": at(1, 2)}))
        .await;
    for d in [&camp, &short] {
        let (st, _) =
            w.s.post(
                &w.admin,
                &format!("/api/v1/orgs/acme/duties/{}/assignments", id(d)),
                &json!({"person_id": me}),
            )
            .await;
        assert_eq!(st, 201);
    }
    // From day 2: the camp is still running, the short duty is over.
    let (_, list) =
        w.s.get(
            &w.admin,
            &format!("/api/v1/orgs/acme/duties?from={}&to={}", at(2, 0), at(3, 0)),
        )
        .await;
    let titles: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Lager"]);
    w.s.clock.set(t0() + SignedDuration::from_hours(48));
    let (_, mine) = w.s.get(&key, "/api/v1/me/duties").await;
    let titles: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["duty"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Lager"]);
}

#[tokio::test]
async fn calendar_pages_carry_positions_and_counts() {
    let w = world().await;
    let k = &w.admin;
    let (p, _) = w.person("Kai", &w.unit_a, "member").await;
    let mut made = vec![];
    for i in 0..3 {
        let positions = if i == 1 {
            json!([])
        } else {
            json!([{"name": "Sanitäter", "needed": 2}, {"name": "Fahrer"}])
        };
        made.push(
            w.duty(k, json!({"unit_id": w.unit_a, "title": format!("D{i}"), "starts_at": at(1, i), "ends_at": at(1, i + 1), "positions": positions}))
                .await,
        );
    }
    let pos = made[0]["positions"][1]["id"].clone();
    let (st, _) =
        w.s.post(
            k,
            &format!("/api/v1/orgs/acme/duties/{}/assignments", id(&made[0])),
            &json!({"person_id": p, "position_id": pos}),
        )
        .await;
    assert_eq!(st, 201);
    let mut url = format!(
        "/api/v1/orgs/acme/duties?from={}&to={}&limit=1",
        at(0, 0),
        at(7, 0)
    );
    let mut seen = vec![];
    loop {
        let (st, page) = w.s.get(k, &url).await;
        assert_eq!(st, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        seen.push(items[0].clone());
        match page["next_cursor"].as_str() {
            Some(c) => {
                url = format!(
                    "/api/v1/orgs/acme/duties?from={}&to={}&limit=1&cursor={c}",
                    at(0, 0),
                    at(7, 0)
                )
            }
            None => break,
        }
    }
    let titles: Vec<&str> = seen.iter().map(|d| d["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["D0", "D1", "D2"]);
    let names: Vec<&str> = seen[0]["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Sanitäter", "Fahrer"]);
    assert_eq!(
        (
            seen[0]["positions"][1]["filled"].as_i64(),
            seen[0]["confirmed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(seen[1]["positions"], json!([]));
    assert_eq!(seen[2]["positions"].as_array().unwrap().len(), 2);
    // The list and the single read agree.
    let (_, one) =
        w.s.get(k, &format!("/api/v1/orgs/acme/duties/{}", id(&made[0])))
            .await;
    assert_eq!(one, seen[0]);
}

#[tokio::test]
async fn concurrent_saves_never_overfill_a_position() {
    let w = world().await;
    let d = w
        .duty(&w.admin, json!({"unit_id": w.unit_a, "title": "Einzelposten", "starts_at": at(1, 0), "ends_at": at(1, 4),
                               "positions": [{"name": "Posten", "needed": 1}]}))
        .await;
    let pos = d["positions"][0]["id"].clone();
    let mut people = vec![];
    for i in 0..8 {
        people.push(w.person(&format!("P{i}"), &w.unit_a, "member").await.0);
    }
    let url =
        w.s.url(&format!("/api/v1/orgs/acme/duties/{}/assignments", id(&d)));
    let tasks: Vec<_> = people
        .iter()
        .map(|p| {
            let req =
                w.s.http
                    .post(&url)
                    .bearer_auth(&w.admin)
                    .json(&json!({"person_id": p, "position_id": pos}));
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut codes = vec![];
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes.sort();
    assert_eq!(
        codes,
        [201, 409, 409, 409, 409, 409, 409, 409],
        "exactly one save wins"
    );
    let (_, d) =
        w.s.get(&w.admin, &format!("/api/v1/orgs/acme/duties/{}", id(&d)))
            .await;
    assert_eq!(d["positions"][0]["filled"], 1);
    assert_eq!(w.events().await.len(), 1);
}

#[tokio::test]
async fn demo_organisation_has_duties_with_rosters() {
    let s = TestServer::start().await;
    let db = &s.running.state.db;
    let key = carebridge_server::demo::ensure(db, t0())
        .await
        .unwrap()
        .expect("a fresh demo");
    assert!(
        carebridge_server::demo::ensure(db, t0())
            .await
            .unwrap()
            .is_none(),
        "loaded once"
    );
    let (_, q) = s.get(&key, "/api/v1/orgs/demo/qualifications").await;
    assert_eq!(q["items"].as_array().unwrap().len(), 3);
    let (st, list) = s
        .get(
            &key,
            &format!(
                "/api/v1/orgs/demo/duties?from={}&to={}&limit=200",
                at(0, 0),
                at(30, 0)
            ),
        )
        .await;
    assert_eq!(st, 200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 40);
    let staffed: i64 = items.iter().map(|d| d["confirmed"].as_i64().unwrap()).sum();
    assert!(staffed >= 60, "{staffed} people on demo rosters");
    assert_eq!(
        s.get(&key, "/api/v1/orgs/demo/roster-events?limit=200")
            .await
            .1
            .as_array()
            .unwrap()
            .len() as i64,
        staffed
    );
    let (st, v) = s.get(&key, "/api/v1/orgs/demo/audit/verify").await;
    assert_eq!((st, v["ok"].as_bool()), (200, Some(true)), "{v}");
}

#[tokio::test]
async fn rostered_people_are_told_once_when_the_chat_opens_in_their_language() {
    let w = world().await;
    let k = &w.admin;
    let person = |given: &str, email: &str, lang: &str| {
        json!({"given_name": given, "family_name": "Muster", "unit_ids": [w.unit_a], "language": lang,
               "emails": [{"value": email, "type": "work"}]})
    };
    let mut ids = vec![];
    for (g, e, l) in [
        ("Anna", "anna@example.org", "de"),
        ("Bea", "bea@example.org", "fr"),
        ("Cem", "cem@example.org", "fi"),
    ] {
        let (st, p) =
            w.s.post(k, "/api/v1/orgs/acme/people", &person(g, e, l))
                .await;
        assert_eq!(st, 201, "{p}");
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    w.s.put(
        k,
        "/api/v1/orgs/acme/features/chat",
        &json!({"enabled": true}),
    )
    .await;
    let d = w
        .duty(
            k,
            json!({"unit_id": w.unit_a, "title": "Sanitätsdienst Stadtlauf", "starts_at": at(2, 0),
                   "ends_at": at(2, 6), "time_zone": "Europe/Zurich"}),
        )
        .await;
    let assign = format!(
        "/api/v1/orgs/acme/duties/{}/assignments",
        d["id"].as_str().unwrap()
    );
    // Without the chat nobody is told.
    w.s.post(k, &assign, &json!({"person_id": ids[0]})).await;
    assert!(w.s.outbox("anna@example.org").await.is_empty());
    // The chat switched on with the next assignment: both on the roster are told.
    let (st, _) =
        w.s.post(k, &assign, &json!({"person_id": ids[1], "chat": true}))
            .await;
    assert_eq!(st, 201);
    let anna = w.s.outbox("anna@example.org").await;
    assert_eq!(anna.len(), 1);
    assert_eq!(anna[0].purpose, "chat_activated");
    assert!(
        anna[0]
            .subject
            .as_deref()
            .unwrap()
            .starts_with("Chat zu Ihrem Einsatz"),
        "{anna:?}"
    );
    assert!(anna[0].body.contains("Sanitätsdienst Stadtlauf"));
    let bea = w.s.outbox("bea@example.org").await;
    assert!(
        bea[0]
            .subject
            .as_deref()
            .unwrap()
            .starts_with("Le chat de votre intervention")
    );
    // Someone joining later is told too; nobody twice.
    w.s.post(k, &assign, &json!({"person_id": ids[2]})).await;
    assert_eq!(w.s.outbox("cem@example.org").await.len(), 1);
    assert!(
        w.s.outbox("cem@example.org").await[0]
            .subject
            .as_deref()
            .unwrap()
            .starts_with("Tehtäväsi chat")
    );
    assert_eq!(w.s.outbox("anna@example.org").await.len(), 1);
    assert_eq!(w.s.outbox("bea@example.org").await.len(), 1);
}
