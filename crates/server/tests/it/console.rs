//! The admin console driven like a browser (cookies, redirects, forms) against the real server:
//! sign-in through the OpenID provider, the people pages, the CSRF check on every form, a unit
//! admin's limits, the duty page's "save assignment" and chat switch, token refresh, the
//! language switch, sign-out. The Playwright run in a real Chromium is `console_browser.rs`.

use carebridge_testkit::{Browser, Page, TestServer};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

/// A person with a password and `role` (over `unit` when given); no second factor asked in
/// this organisation, so the browser signs in with the password alone.
async fn staff(s: &TestServer, k: &str, email: &str, role: Option<(&str, Option<&str>)>) -> String {
    let (st, _) = s
        .put(
            k,
            "/api/v1/orgs/acme/mfa-policy",
            &json!({"required_for": []}),
        )
        .await;
    assert_eq!(st, 200);
    let id = s.member(k, "acme", "staff", email, None, PW).await;
    if let Some((role, unit)) = role {
        let (st, r) = s
            .post(
                k,
                "/api/v1/orgs/acme/roles",
                &json!({"person_id": id, "role": role, "unit_id": unit}),
            )
            .await;
        assert_eq!(st, 201, "{r}");
    }
    id
}

/// A random Ed25519-sized public key, base64 (the server checks its length only at
/// registration; MLS use would check more).
fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2))
}

/// Opens `path` signed out, signs in on the provider's page and follows back.
async fn sign_in(s: &TestServer, email: &str, path: &str) -> (Browser, Page) {
    let b = Browser::new(s);
    let p = b.get(path).await;
    assert_eq!(p.status, 303, "signed out: to the sign-in");
    assert!(
        p.location
            .as_deref()
            .unwrap_or("")
            .starts_with("/console/login?next="),
        "{p:?}"
    );
    let login = b.follow(p).await;
    assert_eq!(login.status, 200, "the provider's sign-in page");
    assert!(login.body.contains("name=\"password\""), "{}", login.body);
    let back = b.sign_in(&login, email, PW).await;
    (b, back)
}

async fn unit(s: &TestServer, k: &str, name: &str, parent: Option<&str>) -> String {
    let (st, u) = s
        .post(
            k,
            "/api/v1/orgs/acme/units",
            &json!({"name": name, "parent_id": parent}),
        )
        .await;
    assert_eq!(st, 201, "{u}");
    u["id"].as_str().unwrap().to_string()
}

async fn count_people(s: &TestServer, k: &str, q: &str) -> usize {
    let (st, page) = s
        .get(k, &format!("/api/v1/orgs/acme/people?q={q}&limit=200"))
        .await;
    assert_eq!(st, 200, "{page}");
    page["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn an_org_admin_signs_in_and_keeps_people() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let north = unit(&s, &k, "Nord", None).await;

    let (b, people) = sign_in(&s, "ada@example.org", "/console/people").await;
    assert_eq!(people.status, 200, "{}", people.body);
    assert!(people.body.contains("<h1>People</h1>"), "{}", people.body);
    assert!(people.body.contains("Nord"), "units in the filter");

    // Create through the form.
    let form = b.get("/console/people/new").await;
    assert_eq!(form.status, 200);
    let north_s = north.as_str();
    let r = b
        .submit(
            &form,
            "/console/people",
            &[
                ("given_name", "Zoë"),
                ("family_name", "Brunner"),
                ("kind", "volunteer"),
                ("emails", "zoe@example.org"),
                ("phones", "+41 79 123 45 67"),
                ("unit", north_s),
                ("groups", "Sanität, Fahrer"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.follow(r).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Zoë Brunner"), "{}", page.body);
    assert!(
        page.body.contains("+41791234567"),
        "normalised: {}",
        page.body
    );
    assert!(page.body.contains("Sanität"), "{}", page.body);
    assert!(
        page.body.contains("person.create"),
        "history: {}",
        page.body
    );

    // A bad e-mail: the form comes back with the reason, nothing is written.
    let form = b.get("/console/people/new").await;
    let r = b
        .submit(
            &form,
            "/console/people",
            &[
                ("given_name", "Bad"),
                ("family_name", "Mail"),
                ("emails", "not-an-address"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("E-mail addresses (1)"), "{}", r.body);
    assert!(
        r.body.contains("value=\"Mail\""),
        "typed values kept: {}",
        r.body
    );
    assert_eq!(count_people(&s, &k, "Mail").await, 0);

    // Every form needs the session's CSRF token.
    for fields in [
        vec![("given_name", "No"), ("family_name", "Token")],
        vec![
            ("csrf", "forged"),
            ("given_name", "No"),
            ("family_name", "Token"),
        ],
    ] {
        let r = b.post("/console/people", &fields).await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    assert_eq!(count_people(&s, &k, "Token").await, 0);

    // Search and the person's page; edit against the version read.
    let list = b.get("/console/people?q=zoe").await;
    assert!(list.body.contains("Brunner, Zoë"), "{}", list.body);
    let id = list
        .body
        .split("/console/people/")
        .skip(1)
        .find(|x| x.len() > 36 && !x.starts_with("new"))
        .map(|x| x[..36].to_string())
        .unwrap();
    let edit = b.get(&format!("/console/people/{id}/edit")).await;
    assert_eq!(edit.status, 200, "{id}: {}", list.body);
    let version = edit.field("version").unwrap();
    let r = b
        .submit(
            &edit,
            &format!("/console/people/{id}"),
            &[
                ("version", &version),
                ("given_name", "Zoë"),
                ("family_name", "Brunner-Keller"),
                ("kind", "volunteer"),
                ("emails", "zoe@example.org"),
                ("unit", north_s),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, p) = s.get(&k, &format!("/api/v1/orgs/acme/people/{id}")).await;
    assert_eq!(p["family_name"], "Brunner-Keller");
    assert!(
        p["phones"].as_array().unwrap().is_empty(),
        "the form replaces the phones"
    );
    // The same (now stale) form again: refused, the current state shown.
    let r = b
        .submit(
            &edit,
            &format!("/console/people/{id}"),
            &[
                ("version", &version),
                ("given_name", "Old"),
                ("family_name", "Form"),
            ],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("Brunner-Keller"), "{}", r.body);

    // A lost phone: the admin removes the person's chat device.
    let (st, _) = s
        .put(
            &k,
            "/api/v1/orgs/acme/features/chat",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(st, 200);
    let zoe_key = s.person_key(&k, "acme", &id, &[]).await;
    let (st, dev) = s
        .post(
            &zoe_key,
            "/api/v1/chat/devices",
            &json!({"name": "Zoës Telefon", "signature_key": base64_key()}),
        )
        .await;
    assert_eq!(st, 201, "{dev}");
    let page = b.get(&format!("/console/people/{id}")).await;
    assert!(page.body.contains("Zoës Telefon"), "{}", page.body);
    let remove = format!(
        "/console/people/{id}/devices/{}/remove",
        dev["device"]["id"].as_str().unwrap()
    );
    let r = b.submit(&page, &remove, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.follow(r).await;
    assert!(
        page.body.contains("The device is removed from every chat."),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Zoës Telefon"), "{}", page.body);
    assert!(
        page.body.contains("chat.device.remove"),
        "audited: {}",
        page.body
    );
    let (_, left) = s.get(&zoe_key, "/api/v1/chat/devices").await;
    assert_eq!(left.as_array().unwrap().len(), 0, "{left}");

    // Deactivate.
    let page = b.get(&format!("/console/people/{id}")).await;
    let r = b
        .submit(
            &page,
            &format!("/console/people/{id}/active"),
            &[
                ("version", &page.field("version").unwrap()),
                ("active", "false"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, p) = s.get(&k, &format!("/api/v1/orgs/acme/people/{id}")).await;
    assert_eq!(p["active"], false);

    // The access token lives 10 minutes; the console refreshes it on the next page.
    s.clock.advance(std::time::Duration::from_secs(11 * 60));
    let again = b.get("/console/people").await;
    assert_eq!(again.status, 200, "{again:?}");
    assert!(again.body.contains("Brunner-Keller"));

    // The language is the person's, stored on their entry.
    let r = b
        .submit(
            &again,
            "/console/lang",
            &[("lang", "de"), ("back", "/console/people")],
        )
        .await;
    assert_eq!(r.status, 303);
    let de = b.follow(r).await;
    assert!(de.body.contains("<h1>Personen</h1>"), "{}", de.body);
    let (_, me) = s
        .get(&k, "/api/v1/orgs/acme/people?q=ada@example.org")
        .await;
    assert_eq!(me["items"][0]["language"], "de");

    // Sign out: the cookie is gone and the sign-in is revoked.
    let r = b.submit(&de, "/console/logout", &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/oauth2/logout"));
    let after = b.get("/console/people").await;
    assert_eq!(after.status, 303, "signed out");
}

#[tokio::test]
async fn a_unit_admin_sees_and_changes_only_their_subtree() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let north = unit(&s, &k, "Nord", None).await;
    let south = unit(&s, &k, "Süd", None).await;
    let nora = staff(
        &s,
        &k,
        "nora@example.org",
        Some(("unit_admin", Some(&north))),
    )
    .await;
    let (st, inside) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Ina", "family_name": "Innen", "unit_ids": [north]}),
        )
        .await;
    assert_eq!(st, 201, "{inside}");
    let (st, outside) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Otto", "family_name": "Aussen", "unit_ids": [south]}),
        )
        .await;
    assert_eq!(st, 201, "{outside}");
    let out_id = outside["id"].as_str().unwrap();

    let (b, list) = sign_in(&s, "nora@example.org", "/console/people").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("Innen, Ina"), "{}", list.body);
    assert!(!list.body.contains("Aussen"), "{}", list.body);
    assert!(
        !list.body.contains("/console/audit"),
        "no audit log in the menu"
    );

    let page = b.get(&format!("/console/people/{out_id}")).await;
    assert_eq!(page.status, 404, "{}", page.body);
    let edit = b.get(&format!("/console/people/{out_id}/edit")).await;
    assert_eq!(edit.status, 404);
    let own = b.get("/console/people/new").await;
    let r = b
        .submit(
            &own,
            &format!("/console/people/{out_id}"),
            &[
                ("version", "1"),
                ("given_name", "Taken"),
                ("family_name", "Over"),
            ],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let (_, o) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{out_id}"))
        .await;
    assert_eq!(o["family_name"], "Aussen", "unchanged");
    // A person created by the unit admin outside their subtree is refused.
    let r = b
        .submit(
            &own,
            "/console/people",
            &[
                ("given_name", "New"),
                ("family_name", "Outside"),
                ("unit", &south),
            ],
        )
        .await;
    assert!(matches!(r.status, 403 | 422), "{}", r.body);
    assert_eq!(count_people(&s, &k, "Outside").await, 0);
    let audit = b.get("/console/audit").await;
    assert_eq!(audit.status, 403, "{}", audit.body);
    // The devices of people outside the subtree are as unknown as the people.
    let nora_key = s.person_key(&k, "acme", &nora, &[]).await;
    let inside_id = inside["id"].as_str().unwrap();
    let (st, _) = s
        .get(
            &nora_key,
            &format!("/api/v1/orgs/acme/people/{inside_id}/chat-devices"),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .get(
            &nora_key,
            &format!("/api/v1/orgs/acme/people/{out_id}/chat-devices"),
        )
        .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn a_dispatcher_assigns_people_with_the_chat_switch() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, _) = s
        .put(
            &k,
            "/api/v1/orgs/acme/features/chat",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(st, 200);
    let team = unit(&s, &k, "Team 3", None).await;
    staff(&s, &k, "dora@example.org", Some(("dispatcher", None))).await;
    for (g, f) in [("Anna", "Aebi"), ("Beat", "Bader"), ("Carla", "Conti")] {
        let (st, p) = s
            .post(
                &k,
                "/api/v1/orgs/acme/people",
                &json!({"given_name": g, "family_name": f, "unit_ids": [team]}),
            )
            .await;
        assert_eq!(st, 201, "{p}");
    }
    let (b, _) = sign_in(&s, "dora@example.org", "/console/duties").await;
    let form = b.get("/console/duties/new").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let r = b
        .submit(
            &form,
            "/console/duties",
            &[
                ("title", "Sanitätsdienst Stadtlauf"),
                ("unit_id", &team),
                ("starts_at", "2026-12-05T08:00"),
                ("ends_at", "2026-12-05T14:00"),
                ("time_zone", "Europe/Zurich"),
                ("chat", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let duty_path = r.location.clone().unwrap();
    let duty = duty_path.rsplit('/').next().unwrap().to_string();
    for name in ["Aebi", "Bader", "Conti"] {
        let found = b.get(&format!("{duty_path}?q={name}")).await;
        assert_eq!(found.status, 200, "{}", found.body);
        let person = found
            .body
            .split("name=\"person_id\" value=\"")
            .nth(1)
            .map(|x| x[..36].to_string())
            .unwrap();
        let r = b
            .submit(
                &found,
                &format!("{duty_path}/assign"),
                &[("person_id", &person), ("role", "helper")],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
    }
    let page = b.get(&duty_path).await;
    assert!(page.body.contains("Carla Conti"), "{}", page.body);
    assert!(page.body.contains("Usable until"), "{}", page.body);
    assert!(
        page.body.contains("2026-12-07 14:00"),
        "2 days after the end, in Zurich time: {}",
        page.body
    );
    let (_, roster) = s
        .get(&k, &format!("/api/v1/orgs/acme/duties/{duty}/roster"))
        .await;
    assert_eq!(roster["roster"].as_array().unwrap().len(), 3, "{roster}");
    assert_eq!(roster["chat"], true);

    // Remove one: off the roster at once.
    let remove = page
        .body
        .split("action=\"")
        .find(|a| a.contains("/remove"))
        .map(|a| a.split('"').next().unwrap().to_string())
        .unwrap();
    let r = b.submit(&page, &remove, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, roster) = s
        .get(&k, &format!("/api/v1/orgs/acme/duties/{duty}/roster"))
        .await;
    assert_eq!(roster["roster"].as_array().unwrap().len(), 2);

    // The chat switch, against the version shown.
    let page = b.get(&duty_path).await;
    let r = b
        .submit(
            &page,
            &format!("{duty_path}/chat"),
            &[
                ("version", &page.field("version").unwrap()),
                ("chat", "off"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, d) = s.get(&k, &format!("/api/v1/orgs/acme/duties/{duty}")).await;
    assert_eq!(d["chat"], false);
    // A member asks to join; the dispatcher confirms the request.
    let (_, p) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Dario", "family_name": "Demont", "unit_ids": [team]}),
        )
        .await;
    let dario = p["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": dario, "role": "member"}),
        )
        .await;
    assert_eq!(st, 201);
    let dario_key = s.person_key(&k, "acme", &dario, &["duties:read"]).await;
    let (st, req) = s
        .post(
            &dario_key,
            &format!("/api/v1/orgs/acme/duties/{duty}/requests"),
            &json!({}),
        )
        .await;
    assert_eq!(st, 201, "{req}");
    let page = b.get(&duty_path).await;
    assert!(page.body.contains("Confirm: Dario Demont"), "{}", page.body);
    let decide = format!(
        "{duty_path}/assignments/{}/decision",
        req["id"].as_str().unwrap()
    );
    let r = b.submit(&page, &decide, &[("decision", "confirm")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, a) = s
        .get(
            &k,
            &format!(
                "/api/v1/orgs/acme/duties/{duty}/assignments/{}",
                req["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(a["status"], "confirmed");

    // The week view shows the duty on its day.
    let w = b.get("/console/duties?view=week&from=2026-12-01").await;
    assert_eq!(w.status, 200, "{}", w.body);
    let day = w.body.split("id=\"day-2026-12-05\"").nth(1).unwrap();
    let day = day.split("</section>").next().unwrap();
    assert!(day.contains("Sanitätsdienst Stadtlauf"), "{}", w.body);

    // Edit: a new position.
    let edit = b.get(&format!("{duty_path}/edit")).await;
    assert_eq!(edit.status, 200, "{}", edit.body);
    let r = b
        .submit(
            &edit,
            &format!("{duty_path}/edit"),
            &[
                ("version", &edit.field("version").unwrap()),
                ("title", "Sanitätsdienst Stadtlauf 2026"),
                ("starts_at", "2026-12-05T08:00"),
                ("ends_at", "2026-12-05T15:00"),
                ("time_zone", "Europe/Zurich"),
                ("state", "planned"),
                ("pos_id", ""),
                ("pos_name", "Fahrer"),
                ("pos_needed", "2"),
                ("pos_qualification", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, d) = s.get(&k, &format!("/api/v1/orgs/acme/duties/{duty}")).await;
    assert_eq!(d["title"], "Sanitätsdienst Stadtlauf 2026");
    assert_eq!(d["positions"][0]["name"], "Fahrer");
    assert_eq!(d["positions"][0]["needed"], 2);
    // Bad times: the reason, nothing changed.
    let edit = b.get(&format!("{duty_path}/edit")).await;
    let r = b
        .submit(
            &edit,
            &format!("{duty_path}/edit"),
            &[
                ("version", &edit.field("version").unwrap()),
                ("title", "X"),
                ("starts_at", "2026-12-05T15:00"),
                ("ends_at", "2026-12-05T08:00"),
                ("time_zone", "Europe/Zurich"),
                ("state", "cancelled"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let (_, d) = s.get(&k, &format!("/api/v1/orgs/acme/duties/{duty}")).await;
    assert_eq!(d["state"], "planned");
}

#[tokio::test]
async fn the_console_scope_is_for_the_console_only() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, c) = s
        .post(
            &k,
            "/api/v1/orgs/acme/oauth-clients",
            &json!({"name": "Sneaky", "redirect_uris": ["https://x.example/cb"], "grants": ["authorization_code"],
                    "scopes": ["openid", "admin"], "first_party": true}),
        )
        .await;
    assert_eq!(st, 422, "{c}");
    assert_eq!(c["errors"][0]["pointer"], "/scopes/1", "{c}");
    // Carebridge's own app may not ask for it either: the provider answers with an error page
    // (the redirect URI is only checked after the client), never a code.
    let b = Browser::new(&s);
    let url = format!(
        "/oauth2/authorize?response_type=code&client_id=carebridge-app&redirect_uri={}&scope=openid%20admin&state=x&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        s.url("/app/callback")
    );
    let r = b.get(&url).await;
    let to = r.location.clone().unwrap_or_default();
    assert!(!to.contains("code="), "no code for the admin scope: {r:?}");
}

#[tokio::test]
async fn the_audit_log_filters_by_target_actor_and_action() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let mut ids = Vec::new();
    for n in ["A", "B"] {
        let (_, p) = s
            .post(
                &k,
                "/api/v1/orgs/acme/people",
                &json!({"given_name": n, "family_name": "X"}),
            )
            .await;
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    let (_, p) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{}", ids[0]))
        .await;
    let (st, _) = s
        .patch(
            &k,
            &format!("/api/v1/orgs/acme/people/{}", ids[0]),
            &format!("\"{}\"", p["version"]),
            &json!({"family_name": "Y"}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, page) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/audit?target={}&limit=1", ids[0]),
        )
        .await;
    assert_eq!(st, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["action"], "person.update", "newest first");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = s
        .get(
            &k,
            &format!(
                "/api/v1/orgs/acme/audit?target={}&limit=5&cursor={cursor}",
                ids[0]
            ),
        )
        .await;
    let rest: Vec<&Value> = rest["items"].as_array().unwrap().iter().collect();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["action"], "person.create");
    // A cursor belongs to its filter.
    let (st, e) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/audit?target={}&cursor={cursor}", ids[1]),
        )
        .await;
    assert_eq!(st, 400, "{e}");
    let (_, creates) = s
        .get(&k, "/api/v1/orgs/acme/audit?action=person.cr&limit=200")
        .await;
    let creates = creates["items"].as_array().unwrap();
    assert_eq!(creates.len(), 2, "{creates:?}");
    let actor = creates[0]["actor"].as_str().unwrap().to_string();
    let (_, by) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/audit?actor={actor}&action=person.&limit=200"),
        )
        .await;
    assert_eq!(by["items"].as_array().unwrap().len(), 3);
    // Wildcards are literal.
    let (_, none) = s.get(&k, "/api/v1/orgs/acme/audit?action=%25").await;
    assert!(none["items"].as_array().unwrap().is_empty(), "{none}");
    let (st, e) = s.get(&k, "/api/v1/orgs/acme/audit?target=").await;
    assert_eq!(st, 422, "{e}");
}

/// Debian's Chromium, installed when missing (the test machines run as root and reach Debian's
/// packages), and the test's npm packages.
pub(crate) fn browser_prerequisites(dir: &str) -> String {
    // The browser tests run in parallel: one installs while the others wait (two `apt-get`s at
    // once fail on dpkg's lock; two `npm ci`s in one directory trip over each other).
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        let st = std::process::Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
            ])
            .status()
            .expect("apt-get, to install Debian's chromium for the console browser test");
        assert!(
            st.success() && std::path::Path::new(&chromium).exists(),
            "the console browser test needs Chromium at {chromium} (Debian package chromium)"
        );
    }
    if !std::path::Path::new(&format!("{dir}/node_modules/playwright-core")).exists() {
        let st = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .expect("npm (Node.js) is needed for the console browser test");
        assert!(st.success(), "npm ci in {dir} failed");
    }
    chromium
}

/// The console in a real browser: headless Chromium driven by Playwright signs in as an org
/// admin, keeps people, imports a CSV (report, then apply), revokes a device, creates a duty, assigns three people with the chat on, changes the
/// roster, reads the audit log, switches to German and signs out; axe-core checks every main
/// page (WCAG 2.1 A/AA). Screenshots land in `<target>/console-screenshots/`.
#[tokio::test]
async fn console_browser() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console-browser");
    let chromium = browser_prerequisites(dir);
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let (st, _) = s
        .put(
            &k,
            "/api/v1/orgs/acme/features/chat",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(st, 200);
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let team = unit(&s, &k, "Team 3", None).await;
    for (g, f) in [("Anna", "Aebi"), ("Beat", "Bader"), ("Carla", "Conti")] {
        let (st, p) = s
            .post(
                &k,
                "/api/v1/orgs/acme/people",
                &json!({"given_name": g, "family_name": f, "unit_ids": [team]}),
            )
            .await;
        assert_eq!(st, 201, "{p}");
    }
    let (_, anna) = s.get(&k, "/api/v1/orgs/acme/people?q=Aebi").await;
    let anna = anna["items"][0]["id"].as_str().unwrap().to_string();
    let anna_key = s.person_key(&k, "acme", &anna, &[]).await;
    let (st, dev) = s
        .post(
            &anna_key,
            "/api/v1/chat/devices",
            &json!({"name": "Annas Telefon", "signature_key": base64_key()}),
        )
        .await;
    assert_eq!(st, 201, "{dev}");
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_string());
    let shots = format!("{target}/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg("console.test.mjs")
        .current_dir(dir)
        .env("BASE", s.url(""))
        .env("ADMIN_EMAIL", "ada@example.org")
        .env("PASSWORD", PW)
        .env("PEOPLE", "Aebi,Bader,Conti")
        .env("UNIT", "Team 3")
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node (Node.js) is needed for the console browser test");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser run failed:\n{log}");
    assert!(log.contains("\nok"), "{log}");
    // What the browser did is what the API holds.
    let (st, duties) = s
        .get(
            &k,
            "/api/v1/orgs/acme/duties?from=2026-12-01T00:00:00Z&to=2026-12-31T00:00:00Z",
        )
        .await;
    assert_eq!(st, 200, "{duties}");
    let duty = &duties["items"][0];
    assert_eq!(duty["title"], "Sanitätsdienst Stadtlauf");
    assert_eq!(duty["chat"], true);
    let (_, roster) = s
        .get(
            &k,
            &format!(
                "/api/v1/orgs/acme/duties/{}/roster",
                duty["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(roster["roster"].as_array().unwrap().len(), 2, "{roster}");
    let (_, left) = s.get(&anna_key, "/api/v1/chat/devices").await;
    assert_eq!(
        left.as_array().unwrap().len(),
        0,
        "the browser removed the device"
    );
    let (_, ida) = s.get(&k, "/api/v1/orgs/acme/people?q=imhof").await;
    assert_eq!(ida["items"].as_array().unwrap().len(), 1, "imported: {ida}");
    for name in [
        "home",
        "people",
        "person",
        "import-report",
        "duty",
        "audit",
        "people-phone",
    ] {
        assert!(
            std::path::Path::new(&format!("{shots}/{name}.png")).exists(),
            "screenshot {name}"
        );
    }
}

#[tokio::test]
async fn grants_and_the_access_preview() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let a = unit(&s, &k, "Alpha", None).await;
    let b_unit = unit(&s, &k, "Beta", None).await;
    let (_, viewer) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Vera", "family_name": "Viewer", "unit_ids": [a]}),
        )
        .await;
    let (_, target) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Tom", "family_name": "Target", "unit_ids": [b_unit],
                    "phones": [{"value": "+41791112233", "type": "mobile"}],
                    "emails": [{"value": "tom@example.org", "type": "work"}]}),
        )
        .await;
    let (v, t) = (
        viewer["id"].as_str().unwrap().to_string(),
        target["id"].as_str().unwrap().to_string(),
    );
    let (b, _) = sign_in(&s, "ada@example.org", "/console/access").await;
    let preview = format!("/console/access?viewer={v}&person={t}");
    let p = b.get(&preview).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("does not see this person at all"),
        "{}",
        p.body
    );
    // The search picks the one person it finds.
    let p = b.get("/console/access?viewer_q=vera&person_q=tom").await;
    assert!(
        p.body.contains("does not see this person at all"),
        "{}",
        p.body
    );

    let r = b
        .submit(
            &p,
            "/console/access",
            &[
                ("viewer", &format!("unit:{a}")),
                ("target", &format!("unit:{b_unit}")),
                ("field", "name"),
                ("field", "phones"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let p = b.get(&preview).await;
    assert!(
        p.body.contains("sees these fields: Name, Phone numbers"),
        "{}",
        p.body
    );
    assert!(p.body.contains("+41791112233"), "{}", p.body);
    assert!(!p.body.contains("tom@example.org"), "{}", p.body);
    // The preview is what the viewer's own credential gets.
    let vera_key = s.person_key(&k, "acme", &v, &["directory:read"]).await;
    let (st, own) = s
        .get(&vera_key, &format!("/api/v1/orgs/acme/people/{t}"))
        .await;
    assert_eq!(st, 200, "{own}");
    let (_, seen) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{t}/seen-by/{v}"))
        .await;
    assert_eq!(seen["visible"], true);
    assert_eq!(
        seen["person"], own,
        "the preview equals the viewer's own read"
    );

    // Only organisation-wide directory writers may preview; unknown people are 404.
    let (st, _) = s
        .get(
            &vera_key,
            &format!("/api/v1/orgs/acme/people/{t}/seen-by/{v}"),
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = s
        .get(
            &k,
            &format!(
                "/api/v1/orgs/acme/people/{t}/seen-by/{}",
                uuid::Uuid::new_v4()
            ),
        )
        .await;
    assert_eq!(st, 404);

    // Delete the grant: the preview closes again.
    let page = b.get("/console/access").await;
    let delete = page
        .body
        .split("action=\"")
        .find(|a| a.contains("/delete"))
        .map(|a| a.split('"').next().unwrap().to_string())
        .unwrap();
    let r = b.submit(&page, &delete, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let p = b.get(&preview).await;
    assert!(
        p.body.contains("does not see this person at all"),
        "{}",
        p.body
    );
}

#[tokio::test]
async fn an_import_is_checked_then_applied() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let (b, form) = sign_in(&s, "ada@example.org", "/console/import").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf").unwrap();
    // Windows-1252, semicolons, German headers, one bad e-mail, a column to leave out.
    let csv = "Vorname;Nachname;E-Mail;Mobile;Einheit;Notiz\r\n\
               J\u{fc}rg;M\u{fc}ller;juerg@example.org;079 111 22 33;Region Nord/Team 3;x\r\n\
               Anna;Aebi;anna@example;079 111 22 44;Region Nord/Team 3;y\r\n\
               Beat;Bader;beat@example.org;;Region Nord;z\r\n";
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(csv);
    let upload = |csrf: Option<String>, skip: bool| {
        let part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("leute.csv");
        let mut f = reqwest::multipart::Form::new()
            .part("file", part)
            .text("match", "auto")
            .text("create_units", "on");
        if skip {
            f = f.text("skip_bad_rows", "on");
        }
        let url = match csrf {
            Some(c) => s.url(&format!("/console/import?csrf={c}")),
            None => s.url("/console/import"),
        };
        b.http.post(url).multipart(f).send()
    };
    // Without the form's token: refused, nothing read.
    let r = upload(None, true).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = upload(Some(csrf.clone()), true).await.unwrap();
    assert_eq!(r.status(), 200);
    let report = carebridge_testkit::unescape(&r.text().await.unwrap());
    assert!(report.contains("Nothing has been written yet."), "{report}");
    assert!(
        report.contains("unknown column"),
        "the note column needs a mapping: {report}"
    );
    let upload_id = report
        .split("name=\"file\" value=\"")
        .nth(1)
        .map(|x| x.split('"').next().unwrap().to_string())
        .unwrap();
    // Each column with its reading; the last one is left out on the second check.
    let headers = [
        "Vorname", "Nachname", "E-Mail", "Mobile", "Einheit", "Notiz",
    ];
    let targets = [
        "given_name",
        "family_name",
        "email",
        "mobile",
        "unit",
        "ignore",
    ];
    for (h, t) in headers.iter().zip(targets) {
        if t != "ignore" {
            assert!(
                report.contains(&format!("value=\"{t}\" selected")),
                "{h} read as {t}: {report}"
            );
        }
    }
    let with_mode = |mode: &str| {
        let mut fields: Vec<(String, String)> = vec![
            ("csrf".into(), csrf.clone()),
            ("file".into(), upload_id.clone()),
            ("match".into(), "auto".into()),
            ("create_units".into(), "on".into()),
            ("skip_bad_rows".into(), "on".into()),
            ("mode".into(), mode.into()),
        ];
        for (h, t) in headers.iter().zip(targets) {
            fields.push(("header".into(), h.to_string()));
            fields.push(("target".into(), t.to_string()));
        }
        fields
    };
    // Check again with the note column left out.
    let r = b
        .http
        .post(s.url("/console/import/run"))
        .form(&with_mode("check"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report = carebridge_testkit::unescape(&r.text().await.unwrap());
    assert!(report.contains("Nothing has been written yet."), "{report}");
    assert!(report.contains("<dt>Rows</dt><dd>3</dd>"), "{report}");
    assert!(report.contains("<dt>New</dt><dd>2</dd>"), "{report}");
    assert!(report.contains("anna@example"), "the bad value: {report}");
    assert!(report.contains("Region Nord/Team 3"), "{report}");
    assert!(
        report.contains("value=\"ignore\" selected"),
        "the mapping kept: {report}"
    );
    assert_eq!(
        count_people(&s, &k, "aebi").await,
        0,
        "a dry run writes nothing"
    );
    let fields = with_mode("apply");
    let r = b
        .http
        .post(s.url("/console/import/run"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done = r.text().await.unwrap();
    assert!(done.contains("The import is applied."), "{done}");
    assert_eq!(count_people(&s, &k, "m\u{fc}ller").await, 1);
    assert_eq!(
        count_people(&s, &k, "aebi").await,
        0,
        "the bad row is left out"
    );
    let (_, juerg) = s.get(&k, "/api/v1/orgs/acme/people?q=juerg").await;
    assert_eq!(juerg["items"][0]["phones"][0]["value"], "+41791112233");
    // The file is gone once applied.
    let r = b
        .http
        .post(s.url("/console/import/run"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
}

#[tokio::test]
async fn settings_change_what_apps_receive() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let (b, first) = sign_in(&s, "ada@example.org", "/console/settings").await;
    let page = &first;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("GET /discovery/acme"), "{}", page.body);
    // The organisation, against its version.
    let r = b
        .submit(
            page,
            "/console/settings/org",
            &[
                ("version", &page.field("version").unwrap()),
                ("name", "Spitex Acme"),
                ("default_language", "de"),
                ("default_region", "ch"),
                ("contact_email", "info@acme.example"),
                ("discoverable", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, org) = s.get(&k, "/api/v1/orgs/acme").await;
    assert_eq!(org["name"], "Spitex Acme");
    assert_eq!(org["discoverable"], true);
    // The chat with its retention, the second factor, what the apps show.
    let page = &b.get("/console/settings").await;
    let r = b
        .submit(
            page,
            "/console/settings/chat",
            &[
                ("enabled", "on"),
                ("writable_days", "3"),
                ("readable_days", "20"),
                ("attachment_mib", "5"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, chat) = s.get(&k, "/api/v1/orgs/acme/chat/settings").await;
    assert_eq!(chat["writable_days"], 3);
    assert_eq!(chat["attachment_max_bytes"], 5 * 1024 * 1024);
    let r = b
        .submit(
            page,
            "/console/settings/mfa",
            &[("required_for", "org_admin"), ("required_for", "client")],
        )
        .await;
    assert_eq!(r.status, 303);
    let (_, mfa) = s.get(&k, "/api/v1/orgs/acme/mfa-policy").await;
    assert_eq!(mfa["required_for"], json!(["org_admin", "client"]));
    // The portal switched off (the directory left on): discovery names no portal any more.
    assert!(
        page.body
            .contains("id=\"feature-portal\" name=\"portal\" value=\"on\" checked"),
        "{}",
        page.body
    );
    let r = b
        .submit(
            page,
            "/console/settings/features",
            &[
                ("shown", "directory"),
                ("shown", "portal"),
                ("directory", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, portal) = s.get(&k, "/api/v1/orgs/acme/features/portal").await;
    let (_, directory) = s.get(&k, "/api/v1/orgs/acme/features/directory").await;
    assert_eq!(
        (&portal["enabled"], &directory["enabled"]),
        (&json!(false), &json!(true))
    );
    let (_, d) =
        carebridge_testkit::read(s.http.get(s.url("/discovery/acme")).send().await.unwrap()).await;
    assert_eq!(d["features"], json!(["chat", "directory"]), "{d}");
    assert_eq!(d["portal_url"], Value::Null, "{d}");
    let after = b.get("/console/settings").await;
    assert!(
        after
            .body
            .contains("id=\"feature-portal\" name=\"portal\" value=\"on\">"),
        "shown off: {}",
        after.body
    );
    let r = b
        .submit(
            page,
            "/console/settings/app",
            &[
                ("language", "de"),
                ("language", "fr"),
                ("primary_color", "#aa0000"),
                ("support_phone", "+41 44 000 00 00"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let after = b.follow(r).await;
    assert!(after.body.contains("Saved."), "{}", after.body);
    assert!(
        after.body.contains("#aa0000"),
        "in the discovery preview: {}",
        after.body
    );
    let (_, d) =
        carebridge_testkit::read(s.http.get(s.url("/discovery/acme")).send().await.unwrap()).await;
    assert_eq!(d["branding"]["primary_color"], "#aa0000", "{d}");
    // A bad colour: the reason, nothing stored.
    let r = b
        .submit(page, "/console/settings/app", &[("primary_color", "red")])
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let (_, d) =
        carebridge_testkit::read(s.http.get(s.url("/discovery/acme")).send().await.unwrap()).await;
    assert_eq!(d["branding"]["primary_color"], "#aa0000");
    // A stale organisation form.
    let r = b
        .submit(
            &first,
            "/console/settings/org",
            &[
                ("version", &first.field("version").unwrap()),
                ("name", "Old"),
                ("default_language", "de"),
                ("default_region", "CH"),
            ],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
}

#[tokio::test]
async fn integrations_show_secrets_once_and_revoke() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let (b, page) = sign_in(&s, "ada@example.org", "/console/integrations").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!("{}/scim/v2", s.url(""))),
        "the tenant URL to paste: {}",
        page.body
    );
    assert!(
        page.body.contains("/oauth2/upstream/callback"),
        "{}",
        page.body
    );
    // A SCIM token: shown in the answer, works for SCIM, never shown again.
    let r = b.submit(&page, "/console/integrations/scim", &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = carebridge_testkit::unescape(
        r.body
            .split("id=\"secret-value\" readonly value=\"")
            .nth(1)
            .and_then(|x| x.split('"').next())
            .unwrap(),
    );
    assert!(secret.starts_with("cbk_"), "{secret}");
    let users = |secret: String| {
        let http = s.http.clone();
        let url = s.url("/scim/v2/Users");
        async move {
            http.get(url)
                .bearer_auth(secret)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(users(secret.clone()).await, 200);
    let again = b.get("/console/integrations").await;
    assert!(!again.body.contains(&secret), "shown once only");
    let revoke = again
        .body
        .split("<tr>")
        .find(|row| row.contains("SCIM (Entra ID provisioning)"))
        .unwrap()
        .split("action=\"")
        .find(|a| a.contains("/keys/") && a.contains("/revoke"))
        .map(|a| a.split('"').next().unwrap().to_string())
        .unwrap();
    let r = b.submit(&again, &revoke, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(users(secret).await, 401, "revoked");

    // A confidential client for an integration: its secret once.
    let r = b
        .submit(
            &again,
            "/console/integrations/clients",
            &[
                ("name", "Rostering export"),
                ("grant", "client_credentials"),
                ("scope", "duties:read"),
            ],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.contains("Rostering export"), "{}", r.body);
    assert!(r.body.contains("id=\"secret-value\""), "{}", r.body);
    // A bad registration: the API's reason, nothing registered.
    let r = b
        .submit(
            &again,
            "/console/integrations/clients",
            &[("name", "Bad"), ("grant", "authorization_code")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("redirect URI"), "{}", r.body);
    let (_, clients) = s.get(&k, "/api/v1/orgs/acme/oauth-clients").await;
    assert_eq!(clients["items"].as_array().unwrap().len(), 1, "{clients}");
}

#[tokio::test]
async fn unit_admins_are_named_on_the_unit_page() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let north = unit(&s, &k, "Nord", None).await;
    let south = unit(&s, &k, "Süd", None).await;
    let (_, p) = s
        .post(
            &k,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Nina", "family_name": "Nordmann", "unit_ids": [north]}),
        )
        .await;
    let nina = p["id"].as_str().unwrap().to_string();
    // Another unit's admin must not show up on this unit.
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": nina, "role": "unit_admin", "unit_id": south}),
        )
        .await;
    assert_eq!(st, 201);
    let (b, page) = sign_in(&s, "ada@example.org", &format!("/console/units/{north}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        !page.body.contains("id=\"unit-admins\""),
        "none yet: {}",
        page.body
    );
    let found = b.get(&format!("/console/units/{north}?q=nordmann")).await;
    let r = b
        .submit(
            &found,
            &format!("/console/units/{north}/admins"),
            &[("person_id", &nina)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.follow(r).await;
    assert!(page.body.contains("Nina Nordmann"), "{}", page.body);
    let (_, roles) = s
        .get(&k, &format!("/api/v1/orgs/acme/roles?unit={north}"))
        .await;
    let roles = roles["items"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0]["role"], "unit_admin");
    let remove = page
        .body
        .split("action=\"")
        .find(|a| a.contains("/admins/") && a.contains("/remove"))
        .map(|a| a.split('"').next().unwrap().to_string())
        .unwrap();
    let r = b.submit(&page, &remove, &[]).await;
    assert_eq!(r.status, 303);
    let (_, roles) = s
        .get(&k, &format!("/api/v1/orgs/acme/roles?unit={north}"))
        .await;
    assert!(roles["items"].as_array().unwrap().is_empty());
    let (_, roles) = s
        .get(
            &k,
            &format!("/api/v1/orgs/acme/roles?unit={south}&person={nina}"),
        )
        .await;
    assert_eq!(
        roles["items"].as_array().unwrap().len(),
        1,
        "the other unit's stays"
    );
}

#[tokio::test]
async fn the_outbox_shows_delivery_and_sends_again() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    // The invitation e-mail gave up (as after five refused deliveries).
    let mut tx = s.running.state.db.begin().await.unwrap();
    carebridge_store::exec!(&mut tx, c => carebridge_store::sqlx::query(
        "UPDATE outbox SET state = 'dead', attempts = 5, last_error = '550 mailbox unavailable' WHERE recipient = $1")
        .bind("ada@example.org").execute(c).await)
    .unwrap();
    tx.commit().await.unwrap();
    let (b, page) = sign_in(&s, "ada@example.org", "/console/outbox?state=dead").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("550 mailbox unavailable"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("token="),
        "never the body: {}",
        page.body
    );
    let retry = page
        .body
        .split("action=\"")
        .find(|a| a.contains("/retry"))
        .map(|a| a.split('"').next().unwrap().to_string())
        .unwrap();
    let r = b.submit(&page, &retry, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, dead) = s.get(&k, "/api/v1/orgs/acme/outbox?state=dead").await;
    assert!(dead["items"].as_array().unwrap().is_empty(), "{dead}");
    let (_, audit) = s.get(&k, "/api/v1/orgs/acme/audit?action=outbox.").await;
    assert_eq!(audit["items"][0]["action"], "outbox.retry");
    // A sent message is not sent twice; an unknown one is 404; a bad state filter is 422.
    let id = retry.split('/').nth(3).unwrap();
    let mut tx = s.running.state.db.begin().await.unwrap();
    carebridge_store::exec!(&mut tx, c => carebridge_store::sqlx::query(
        "UPDATE outbox SET state = 'sent' WHERE recipient = $1")
        .bind("ada@example.org").execute(c).await)
    .unwrap();
    tx.commit().await.unwrap();
    let (st, e) = s
        .post(
            &k,
            &format!("/api/v1/orgs/acme/outbox/{id}/retry"),
            &Value::Null,
        )
        .await;
    assert_eq!(st, 409, "{e}");
    let (st, _) = s
        .post(
            &k,
            &format!("/api/v1/orgs/acme/outbox/{}/retry", uuid::Uuid::new_v4()),
            &Value::Null,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = s.get(&k, "/api/v1/orgs/acme/outbox?state=lost").await;
    assert_eq!(st, 422);
}

/// Every form of the console needs the session's CSRF token: each POST route of the console's
/// router (read from its source, so a new route is covered without touching this test) is
/// refused without the token and with a wrong one, before anything is read or written.
#[tokio::test]
async fn every_console_form_needs_the_csrf_token() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let (b, home) = sign_in(&s, "ada@example.org", "/console").await;
    assert_eq!(home.status, 200, "{}", home.body);
    let source = include_str!("../../../console/src/lib.rs");
    let mut posts = Vec::new();
    for chunk in source.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).unwrap();
        if chunk.contains("post(") {
            posts.push(path.to_string());
        }
    }
    assert!(posts.len() >= 25, "{posts:?}");
    let (_, before) = s.get(&k, "/api/v1/orgs/acme/audit?limit=1").await;
    for p in &posts {
        let mut concrete = p.clone();
        while let Some(start) = concrete.find('{') {
            let end = concrete[start..].find('}').unwrap() + start;
            concrete.replace_range(start..=end, &uuid::Uuid::new_v4().to_string());
        }
        for fields in [vec![("name", "x")], vec![("csrf", "wrong"), ("name", "x")]] {
            let r = b.post(&concrete, &fields).await;
            assert_eq!(r.status, 403, "{p}: {}", r.body);
        }
    }
    let (_, after) = s.get(&k, "/api/v1/orgs/acme/audit?limit=1").await;
    assert_eq!(
        before["items"][0]["seq"], after["items"][0]["seq"],
        "nothing written"
    );
}

/// The portal page: an organisation admin answers a relative's request and message through
/// the customer portal's office endpoints (with a five-minute office token the identity API
/// makes only for organisation admins), and sees who may act for which client. A unit admin
/// gets no office token; an office token opens neither the API nor the ERP's feeds nor a
/// relative's endpoints.
#[tokio::test]
async fn portal_page_answers_requests_and_messages() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let ada = staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let (st, _) = s
        .put(
            &k,
            "/api/v1/orgs/acme/mfa-policy",
            &json!({"required_for": ["relative"]}),
        )
        .await;
    assert_eq!(st, 200);
    let rita = s
        .member(
            &k,
            "acme",
            "relative",
            "rita@example.org",
            Some("+41 79 100 00 02"),
            PW,
        )
        .await;
    let (erp_client, app) = crate::portal::clients(&s, &k, "acme").await;
    let erp = crate::portal::erp_token(&s, &erp_client, "portal:erp").await;
    let start = (carebridge_testkit::t0() + jiff::SignedDuration::from_hours(48)).to_string();
    let end = (carebridge_testkit::t0() + jiff::SignedDuration::from_hours(49)).to_string();
    for (path, body) in [
        (
            "/portal/v1/erp/clients",
            json!([{"id": "K1", "given_name": "Clara", "family_name": "Keller"}]),
        ),
        (
            "/portal/v1/erp/appointments",
            json!([{"id": "A1", "client": "K1", "start": start, "end": end, "service": "Grundpflege"}]),
        ),
        (
            "/portal/v1/erp/links",
            json!([{"client": "K1", "subject": rita, "relation": "relative", "messages": true}]),
        ),
    ] {
        let (st, r) = s.put(&erp, path, &body).await;
        assert_eq!(st, 200, "{path}: {r}");
    }
    let rita_token = crate::portal::person_token(
        &s,
        &app,
        "rita@example.org",
        "+41791000002",
        "openid portal",
    )
    .await;
    let (_, clients) = s.get(&rita_token, "/portal/v1/clients").await;
    let client = clients[0]["id"].as_str().unwrap().to_string();
    let (_, visits) = s
        .get(
            &rita_token,
            &format!("/portal/v1/clients/{client}/appointments"),
        )
        .await;
    let visit = visits[0]["id"].as_str().unwrap().to_string();
    let (st, req) = s
        .post(
            &rita_token,
            &format!("/portal/v1/clients/{client}/appointments/{visit}/requests"),
            &json!({"kind": "cancel", "reason": "Wir sind verreist."}),
        )
        .await;
    assert_eq!(st, 201, "{req}");
    let (st, m) = s
        .post(
            &rita_token,
            &format!("/portal/v1/clients/{client}/messages"),
            &json!({"subject": "Schlüssel", "body": "Der Schlüssel liegt beim Nachbarn."}),
        )
        .await;
    assert_eq!(st, 201, "{m}");

    // The admin's page shows the request, the message and the link (with Rita's name).
    let (b, _) = sign_in(&s, "ada@example.org", "/console").await;
    let page = b.get(&s.url("/console/portal")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for text in [
        "Wir sind verreist.",
        "Schlüssel",
        "Der Schlüssel liegt beim Nachbarn.",
        "Clara Keller",
        "Test rita",
    ] {
        assert!(page.body.contains(text), "{text} missing: {}", page.body);
    }
    let rid = req["id"].as_str().unwrap();
    let r = b
        .submit(
            &page,
            &format!("/console/portal/requests/{rid}/answer"),
            &[("state", "declined"), ("answer", "Bitte rufen Sie uns an.")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, all) = s.get(&erp, "/portal/v1/erp/requests?state=all").await;
    assert_eq!(all[0]["state"], "declined", "{all}");
    assert_eq!(all[0]["answer"], "Bitte rufen Sie uns an.", "{all}");
    let r = b
        .submit(
            &page,
            "/console/portal/messages",
            &[
                ("client", "K1"),
                ("subject", "Re: Schlüssel"),
                ("body", "Danke, wir holen ihn."),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, msgs) = s
        .get(
            &rita_token,
            &format!("/portal/v1/clients/{client}/messages"),
        )
        .await;
    assert!(
        msgs.as_array()
            .unwrap()
            .iter()
            .any(|m| m["direction"] == "from_organisation" && m["body"] == "Danke, wir holen ihn."),
        "{msgs}"
    );
    // A reply without a body is refused with the portal's reason, nothing written.
    let r = b
        .submit(
            &page,
            "/console/portal/messages",
            &[("client", "K1"), ("subject", "Leer"), ("body", "")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);

    // The office token: only for organisation admins, and only for the portal's office side.
    let ada_key = s.person_key(&k, "acme", &ada, &[]).await;
    let (st, tok) = s
        .post(&ada_key, "/api/v1/orgs/acme/portal-token", &Value::Null)
        .await;
    assert_eq!(st, 200, "{tok}");
    let office = tok["access_token"].as_str().unwrap();
    let (st, _) = s.get(office, "/api/v1/orgs/acme/people").await;
    assert_eq!(st, 401, "an office token is not an API token");
    let (st, _) = s.put(office, "/portal/v1/erp/clients", &json!([])).await;
    assert_eq!(st, 403, "the ERP's feeds stay the ERP's");
    let (st, _) = s.get(office, "/portal/v1/clients").await;
    assert_eq!(st, 403, "not a relative's token");
    let (st, links) = s.get(office, "/portal/v1/erp/links?q=kel").await;
    assert_eq!(
        (st, links[0]["client_erp_id"].as_str()),
        (200, Some("K1")),
        "{links}"
    );
    let (st, links) = s.get(office, "/portal/v1/erp/links?limit=0").await;
    assert_eq!(st, 422, "{links}");
    let team = unit(&s, &k, "Team 1", None).await;
    let una = staff(
        &s,
        &k,
        "una@example.org",
        Some(("unit_admin", Some(team.as_str()))),
    )
    .await;
    let una_key = s.person_key(&k, "acme", &una, &[]).await;
    let (st, _) = s
        .post(&una_key, "/api/v1/orgs/acme/portal-token", &Value::Null)
        .await;
    assert_eq!(st, 403, "a unit admin gets no office token");
    let (st, _) = s
        .post(&k, "/api/v1/orgs/acme/portal-token", &Value::Null)
        .await;
    assert_eq!(st, 403, "an API key is not a person");
    let (ub, _) = sign_in(&s, "una@example.org", "/console").await;
    let p = ub.get(&s.url("/console/portal")).await;
    assert_eq!(p.status, 403, "{}", p.body);
}

/// A person's sign-ins on their page: an admin ends one, and the browser signed in through it
/// is out (its tokens stop); audited.
#[tokio::test]
async fn an_admin_ends_one_sign_in_of_a_person() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    let bob = staff(&s, &k, "bob@example.org", None).await;
    // Bob signs in (to the console, which shows him little).
    let (bob_browser, _) = sign_in(&s, "bob@example.org", "/console").await;
    let home = bob_browser.get(&s.url("/console")).await;
    assert_eq!(home.status, 200, "{}", home.body);

    let (b, _) = sign_in(&s, "ada@example.org", "/console").await;
    let page = b.get(&s.url(&format!("/console/people/{bob}"))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let action = page
        .body
        .split("action=\"")
        .map(|x| x.split('"').next().unwrap_or(""))
        .find(|a| a.contains("/sessions/") && a.ends_with("/end"))
        .expect("an end button for Bob's sign-in")
        .to_string();
    let (_, list) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{bob}/sessions"))
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let r = b.submit(&page, &action, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, list) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{bob}/sessions"))
        .await;
    assert_eq!(list, json!([]));
    // Bob's console lost its grant: at the latest when his access token runs out, he is
    // sent to sign in again.
    s.clock.advance(std::time::Duration::from_secs(11 * 60));
    let again = bob_browser.get(&s.url("/console")).await;
    assert_eq!(again.status, 303, "{}", again.body);
    let (_, events) = s
        .get(&k, "/api/v1/orgs/acme/audit?action=person.session.end")
        .await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
    // Unknown session: 404, nothing written.
    let (st, _) = s
        .delete(
            &k,
            &format!(
                "/api/v1/orgs/acme/people/{bob}/sessions/{}",
                uuid::Uuid::new_v4()
            ),
        )
        .await;
    assert_eq!(st, 404);
}

/// A long file is applied in the background: the answer is a page that refreshes itself,
/// with the share of the file read, until the report is there.
#[tokio::test]
async fn a_long_import_runs_in_the_background_with_a_progress_page() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    staff(&s, &k, "eve@example.org", Some(("org_admin", None))).await;
    let (b, _) = sign_in(&s, "ada@example.org", "/console/import").await;
    let mut csv = String::from("Vorname;Nachname;E-Mail\n");
    for i in 0..6000 {
        csv.push_str(&format!("Vorname{i};Lang{i};lang{i}@example.org\n"));
    }
    // Started through the API without waiting (the console waits 2 s before it shows this
    // page; a test file that takes longer would make the suite slow): the job runs now.
    let r = s
        .http
        .post(s.url("/api/v1/orgs/acme/import-jobs?name=lang.csv"))
        .bearer_auth(&k)
        .header("content-type", "text/csv")
        .body(csv.into_bytes())
        .send()
        .await
        .unwrap();
    let (st, started) = carebridge_testkit::read(r).await;
    assert_eq!(
        (st, &started["state"]),
        (201, &json!("running")),
        "{started}"
    );
    let job = format!("/console/import/jobs/{}", started["id"].as_str().unwrap());
    let first = b.get(&s.url(&job)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first.body.contains("http-equiv=\"refresh\"") && first.body.contains("lang.csv"),
        "the running page: {}",
        first.body
    );
    assert!(
        first
            .body
            .contains("<progress id=\"import-progress\" max=\"100\""),
        "with its progress: {}",
        first.body
    );
    // Another organisation admin follows it too (the job is the API's, on any node).
    let (eve, _) = sign_in(&s, "eve@example.org", "/console").await;
    assert_eq!(eve.get(&s.url(&job)).await.status, 200);
    let mut done = None;
    for _ in 0..600 {
        let p = b.get(&s.url(&job)).await;
        if p.body.contains("http-equiv=\"refresh\"") {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        done = Some(p);
        break;
    }
    let done = done.expect("the import finished within a minute");
    assert_eq!(done.status, 200, "{}", done.body);
    let body = carebridge_testkit::unescape(&done.body);
    assert!(body.contains("<dt>New</dt><dd>6000</dd>"), "{body}");
    assert_eq!(count_people(&s, &k, "lang5999").await, 1);
}

/// People filtered by group and skill; a person erased from their page, only with the
/// confirmation box ticked.
#[tokio::test]
async fn people_by_group_and_skill_and_erasing_a_person() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    staff(&s, &k, "ada@example.org", Some(("org_admin", None))).await;
    for (g, f, groups, skills) in [
        (
            "Anna",
            "Aebi",
            json!(["Einsatzleitung"]),
            json!(["Sanitäter"]),
        ),
        (
            "Beat",
            "Bader",
            json!(["Einsatzleitung"]),
            json!(["Fahrer"]),
        ),
        ("Carla", "Conti", json!([]), json!(["Sanitäter"])),
    ] {
        let (st, p) = s
            .post(
                &k,
                "/api/v1/orgs/acme/people",
                &json!({"given_name": g, "family_name": f, "groups": groups, "skills": skills}),
            )
            .await;
        assert_eq!(st, 201, "{p}");
    }
    let (b, _) = sign_in(&s, "ada@example.org", "/console").await;
    let p = b
        .get(&s.url("/console/people?group=Einsatzleitung&skill=Sanit%C3%A4ter"))
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("Aebi"), "{}", p.body);
    assert!(
        !p.body.contains("Bader") && !p.body.contains("Conti"),
        "{}",
        p.body
    );
    let (_, list) = s.get(&k, "/api/v1/orgs/acme/people?q=conti").await;
    let carla = list["items"][0]["id"].as_str().unwrap().to_string();
    let page = b.get(&s.url(&format!("/console/people/{carla}"))).await;
    let action = format!("/console/people/{carla}/erase");
    assert!(page.body.contains(&action), "{}", page.body);
    // Without the box: refused, nothing erased.
    let r = b.submit(&page, &action, &[]).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(count_people(&s, &k, "conti").await, 1);
    let r = b.submit(&page, &action, &[("confirm", "on")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(count_people(&s, &k, "conti").await, 0);
    let (st, _) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{carla}"))
        .await;
    assert_eq!(st, 404);
}
