//! Contact access rights and the offline sync feed, against the real server:
//!
//! - a property test: for random unit trees, memberships, unit admins and grants, what each
//!   person sees in `GET /people` (every page) equals a naive reference model of the rules,
//!   written here from the wording with parent pointers (not the server's paths);
//! - a property test of the sync feed: across random change sequences (moves, contact
//!   changes, deactivation, grants given, changed and withdrawn, deletions, new people, unit
//!   renames and moves, new unit admins), some of them made between the pages of a client's
//!   pass, a client that applies the feed always holds exactly what a fresh read shows the
//!   same viewer;
//! - self-service and unit-admin edits, grant CRUD with audit, and bad grants.

use std::collections::{BTreeMap, BTreeSet};

use carebridge_testkit::TestServer;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const FIELDS: [&str; 6] = ["name", "phones", "emails", "address", "skills", "groups"];
const GROUPS: usize = 2;

/// One generated world.
#[derive(Clone, Debug)]
struct World {
    /// Parent of unit i (an index below i), or none.
    parents: Vec<Option<usize>>,
    people: Vec<Member>,
    grants: Vec<GrantSpec>,
}

#[derive(Clone, Debug)]
struct Member {
    units: BTreeSet<usize>,
    groups: BTreeSet<usize>,
    /// Unit admin over this unit.
    admin_of: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
struct GrantSpec {
    /// (is_unit, index)
    viewer: (bool, usize),
    target: (bool, usize),
    fields: u8,
}

fn world() -> impl Strategy<Value = World> {
    (1usize..6).prop_flat_map(|n_units| {
        let parents = (0..n_units)
            .map(|i| {
                if i == 0 {
                    Just(None).boxed()
                } else {
                    prop_oneof![Just(None), (0..i).prop_map(Some)].boxed()
                }
            })
            .collect::<Vec<_>>();
        let member = (
            proptest::collection::btree_set(0..n_units, 0..3),
            proptest::collection::btree_set(0..GROUPS, 0..3),
            proptest::option::weighted(0.2, 0..n_units),
        )
            .prop_map(|(units, groups, admin_of)| Member {
                units,
                groups,
                admin_of,
            });
        let side = move || {
            prop_oneof![
                (0..n_units).prop_map(|i| (true, i)),
                (0..GROUPS).prop_map(|i| (false, i))
            ]
        };
        let grant = (side(), side(), 1u8..64).prop_map(|(viewer, target, fields)| GrantSpec {
            viewer,
            target,
            fields,
        });
        (
            parents,
            proptest::collection::vec(member, 2..7),
            proptest::collection::vec(grant, 0..5),
        )
            .prop_map(|(parents, people, grants)| World {
                parents,
                people,
                grants,
            })
    })
}

/// Whether unit `a` is `u` or above it.
fn above_or_self(parents: &[Option<usize>], a: usize, mut u: usize) -> bool {
    loop {
        if u == a {
            return true;
        }
        match parents[u] {
            Some(p) => u = p,
            None => return false,
        }
    }
}

/// The reference model: the field names viewer `v` sees of person `t` (`None`: everything).
fn model(w: &World, v: usize, t: usize) -> Option<BTreeSet<&'static str>> {
    let all: Option<BTreeSet<&str>> = None;
    if v == t {
        return all;
    }
    let (pv, pt) = (&w.people[v], &w.people[t]);
    if let Some(a) = pv.admin_of
        && pt.units.iter().any(|u| above_or_self(&w.parents, a, *u))
    {
        return all;
    }
    let is_in = |p: &Member, side: (bool, usize)| match side {
        (true, x) => p.units.iter().any(|u| above_or_self(&w.parents, x, *u)),
        (false, g) => p.groups.contains(&g),
    };
    let mut f = 0u8;
    for g in &w.grants {
        if is_in(pv, g.viewer) && is_in(pt, g.target) {
            f |= g.fields;
        }
    }
    Some(
        FIELDS
            .iter()
            .enumerate()
            .filter(|(i, _)| f & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect(),
    )
}

/// A built world on the server: ids and keys.
struct Built {
    slug: String,
    admin: String,
    units: Vec<String>,
    groups: Vec<String>,
    people: Vec<String>,
    keys: Vec<String>,
    grant_ids: Vec<String>,
}

fn person_body(w: &World, b: &Built, i: usize) -> Value {
    json!({
        "given_name": format!("P{i}"), "family_name": "Test",
        "emails": [{"value": format!("p{i}@{}.example", b.slug)}],
        "phones": [{"value": format!("+41 79 555 00 {:02}", i), "type": "mobile"}],
        "address": {"locality": "Bern"},
        "skills": ["Driving"],
        "groups": w.people[i].groups.iter().map(|g| format!("G{g}")).collect::<Vec<_>>(),
        "unit_ids": w.people[i].units.iter().map(|u| b.units[*u].clone()).collect::<Vec<_>>(),
        "external_id": format!("E{i}"),
    })
}

fn grant_body(b: &Built, g: &GrantSpec) -> Value {
    let side = |(unit, i): (bool, usize)| {
        if unit {
            json!({"kind": "unit", "id": b.units[i]})
        } else {
            json!({"kind": "group", "id": b.groups[i]})
        }
    };
    let fields: Vec<&str> = FIELDS
        .iter()
        .enumerate()
        .filter(|(i, _)| g.fields & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    json!({"viewer": side(g.viewer), "target": side(g.target), "fields": fields})
}

async fn build(s: &TestServer, slug: &str, w: &World) -> Built {
    let admin = s.org(slug).await;
    let mut b = Built {
        slug: slug.into(),
        admin: admin.clone(),
        units: vec![],
        groups: vec![],
        people: vec![],
        keys: vec![],
        grant_ids: vec![],
    };
    for (i, p) in w.parents.iter().enumerate() {
        let mut body = json!({"name": format!("U{i}")});
        if let Some(p) = p {
            body["parent_id"] = json!(b.units[*p]);
        }
        let (st, u) = s
            .post(&admin, &format!("/api/v1/orgs/{slug}/units"), &body)
            .await;
        assert_eq!(st, 201, "{u}");
        b.units.push(u["id"].as_str().unwrap().to_string());
    }
    for g in 0..GROUPS {
        let (st, x) = s
            .post(
                &admin,
                &format!("/api/v1/orgs/{slug}/groups"),
                &json!({"name": format!("G{g}")}),
            )
            .await;
        assert_eq!(st, 201, "{x}");
        b.groups.push(x["id"].as_str().unwrap().to_string());
    }
    for i in 0..w.people.len() {
        let (st, p) = s
            .post(
                &admin,
                &format!("/api/v1/orgs/{slug}/people"),
                &person_body(w, &b, i),
            )
            .await;
        assert_eq!(st, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        if let Some(a) = w.people[i].admin_of {
            let (st, r) = s
                .post(
                    &admin,
                    &format!("/api/v1/orgs/{slug}/roles"),
                    &json!({"person_id": id, "role": "unit_admin", "unit_id": b.units[a]}),
                )
                .await;
            assert_eq!(st, 201, "{r}");
        }
        b.people.push(id);
    }
    for i in 0..w.people.len() {
        let key = s
            .person_key(&admin, slug, &b.people[i], &["directory:read"])
            .await;
        b.keys.push(key);
    }
    for g in &w.grants {
        let (st, x) = s
            .post(
                &admin,
                &format!("/api/v1/orgs/{slug}/contact-grants"),
                &grant_body(&b, g),
            )
            .await;
        assert_eq!(st, 201, "{x}");
        b.grant_ids.push(x["id"].as_str().unwrap().to_string());
    }
    b
}

/// Every page of a listing, as id → person.
async fn read_all(s: &TestServer, key: &str, slug: &str, extra: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/orgs/{slug}/people?limit=2{extra}");
        if let Some(c) = &cursor {
            path += &format!("&cursor={c}");
        }
        let (st, page) = s.get(key, &path).await;
        assert_eq!(st, 200, "{page}");
        for p in page["items"].as_array().unwrap() {
            let id = p["id"].as_str().unwrap().to_string();
            assert!(out.insert(id, p.clone()).is_none(), "a person twice: {p}");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// The shown field names of a listed person (`None`: everything).
fn shown(p: &Value) -> Option<BTreeSet<String>> {
    p.get("fields").map(|f| {
        f.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    })
}

/// Shown fields are what the admin sees; hidden ones are really empty.
fn check_masked(p: &Value, full: &Value) {
    let Some(f) = shown(p) else {
        assert_eq!(p, full);
        return;
    };
    let empty = |k: &str| match &p[k] {
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Object(o) => o.values().all(Value::is_null),
        _ => false,
    };
    assert!(p["external_id"].is_null() && p["language"].is_null(), "{p}");
    for (name, keys) in [
        ("name", &["given_name", "family_name", "units"][..]),
        ("phones", &["phones"][..]),
        ("emails", &["emails"][..]),
        ("address", &["address"][..]),
        ("skills", &["skills"][..]),
        ("groups", &["groups"][..]),
    ] {
        for k in keys {
            if f.contains(name) {
                assert_eq!(p[k], full[k], "{name}/{k} in {p}");
            } else {
                assert!(empty(k), "{name}/{k} hidden but shown in {p}");
            }
        }
    }
}

fn cases(n: u32, seed_name: &str) -> Vec<World> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &{
            let mut seed = [7u8; 32];
            for (i, b) in seed_name.bytes().enumerate().take(32) {
                seed[i] = b;
            }
            seed
        }),
    );
    (0..n)
        .map(|_| world().new_tree(&mut runner).unwrap().current())
        .collect()
}

#[tokio::test]
async fn people_listing_equals_the_reference_model() {
    let s = TestServer::start().await;
    for (case, w) in cases(16, "listing").into_iter().enumerate() {
        let slug = format!("acc{case}");
        let b = build(&s, &slug, &w).await;
        let all = read_all(&s, &b.admin, &slug, "").await;
        for v in 0..w.people.len() {
            let got = read_all(&s, &b.keys[v], &slug, "").await;
            for (t, id) in b.people.iter().enumerate() {
                let want = model(&w, v, t);
                let visible = want.as_ref().is_none_or(|f| !f.is_empty());
                let p = got.get(id);
                assert_eq!(
                    p.is_some(),
                    visible,
                    "case {case}: viewer {v} and person {t}: {w:?}"
                );
                if let Some(p) = p {
                    let want: Option<BTreeSet<String>> =
                        want.map(|f| f.into_iter().map(String::from).collect());
                    assert_eq!(shown(p), want, "case {case}: viewer {v}, person {t}: {w:?}");
                    check_masked(p, &all[id]);
                    // One person read alone shows the same.
                    let (st, one) = s
                        .get(&b.keys[v], &format!("/api/v1/orgs/{slug}/people/{id}"))
                        .await;
                    assert_eq!(st, 200);
                    assert_eq!(&one, p);
                } else {
                    let (st, _) = s
                        .get(&b.keys[v], &format!("/api/v1/orgs/{slug}/people/{id}"))
                        .await;
                    assert_eq!(st, 404, "an invisible person is not found");
                }
            }
            assert_eq!(
                got.len(),
                b.people.len()
                    - (0..w.people.len())
                        .filter(|t| model(&w, v, *t).is_some_and(|f| f.is_empty()))
                        .count()
            );
            // A search only finds visible people, and only by what is shown of them ("Test" is
            // everyone's family name: found are those whose name the viewer sees).
            let found = read_all(&s, &b.keys[v], &slug, "&q=test").await;
            let named: Vec<&String> = got
                .iter()
                .filter(|(_, p)| shown(p).is_none_or(|f| f.contains("name")))
                .map(|(id, _)| id)
                .collect();
            assert_eq!(found.keys().collect::<Vec<_>>(), named);
        }
        // The admin sees everyone, whole.
        assert_eq!(all.len(), w.people.len());
        assert!(all.values().all(|p| p.get("fields").is_none()));
    }
    s.stop().await;
}

/// A sync client: its copy, and its cursor.
struct Client {
    store: BTreeMap<String, Value>,
    cursor: Option<String>,
}

impl Client {
    /// One answer of the feed; returns whether the pass goes on.
    async fn page(&mut self, s: &TestServer, key: &str, slug: &str) -> bool {
        let mut path = format!("/api/v1/orgs/{slug}/contacts/changes?limit=2");
        if let Some(c) = &self.cursor {
            path += &format!("&cursor={c}");
        }
        let (st, r) = s.get(key, &path).await;
        assert_eq!(st, 200, "{r}");
        if r["reset"] == true {
            self.store.clear();
        }
        // A removal may name someone this client was not given, if its viewer could see them
        // at some point since the last sync (their page had passed by then): a no-op here.
        for id in r["removals"].as_array().unwrap() {
            self.store.remove(id.as_str().unwrap());
        }
        for p in r["upserts"].as_array().unwrap() {
            self.store
                .insert(p["id"].as_str().unwrap().to_string(), p.clone());
        }
        self.cursor = Some(r["next_cursor"].as_str().unwrap().to_string());
        r["more"] == true
    }

    async fn sync(&mut self, s: &TestServer, key: &str, slug: &str) {
        while self.page(s, key, slug).await {}
    }
}

/// One change to the world.
#[derive(Clone, Debug)]
enum Change {
    Move { person: usize, unit: usize },
    Phone { person: usize },
    Active { person: usize, active: bool },
    Group { person: usize, group: usize },
    AddGrant(GrantSpec),
    DropGrant(usize),
    GrantFields { grant: usize, fields: u8 },
    Delete { person: usize },
    Create { unit: usize },
    RenameUnit { unit: usize },
    MoveUnit { unit: usize },
    MakeAdmin { person: usize, unit: usize },
}

fn change(n: usize) -> impl Strategy<Value = Change> {
    let side = prop_oneof![
        (0..n).prop_map(|i| (true, i)),
        (0..GROUPS).prop_map(|i| (false, i))
    ];
    prop_oneof![
        (0..8usize, 0..n).prop_map(|(person, unit)| Change::Move { person, unit }),
        (0..8usize).prop_map(|person| Change::Phone { person }),
        (0..8usize, any::<bool>()).prop_map(|(person, active)| Change::Active { person, active }),
        (0..8usize, 0..GROUPS).prop_map(|(person, group)| Change::Group { person, group }),
        (side.clone(), side, 1u8..64).prop_map(|(viewer, target, fields)| Change::AddGrant(
            GrantSpec {
                viewer,
                target,
                fields
            }
        )),
        (0..8usize).prop_map(Change::DropGrant),
        (0..8usize, 1u8..64).prop_map(|(grant, fields)| Change::GrantFields { grant, fields }),
        (0..8usize).prop_map(|person| Change::Delete { person }),
        (0..n).prop_map(|unit| Change::Create { unit }),
        (0..n).prop_map(|unit| Change::RenameUnit { unit }),
        (0..n).prop_map(|unit| Change::MoveUnit { unit }),
        (0..8usize, 0..n).prop_map(|(person, unit)| Change::MakeAdmin { person, unit }),
    ]
}

/// Applies a change through the API (changes that do not apply, e.g. to a deleted person, are
/// skipped).
async fn apply(
    s: &TestServer,
    b: &mut Built,
    w: &World,
    gone: &mut BTreeSet<usize>,
    inactive: &mut BTreeSet<usize>,
    c: &Change,
) {
    let slug = b.slug.clone();
    let admin = b.admin.clone();
    let live = |i: usize, gone: &BTreeSet<usize>| i < b.people.len() && !gone.contains(&i);
    let person_path = |i: usize| format!("/api/v1/orgs/{slug}/people/{}", b.people[i]);
    let patch = |i: usize, body: Value| {
        let path = person_path(i);
        let admin = admin.clone();
        async move {
            let (st, cur) = s.get(&admin, &path).await;
            assert_eq!(st, 200, "{cur}");
            let etag = format!("\"{}\"", cur["version"]);
            let (st, x) = s.patch(&admin, &path, &etag, &body).await;
            assert_eq!(st, 200, "{x}");
        }
    };
    match c {
        Change::Move { person, unit } if live(*person, gone) => {
            patch(*person, json!({"unit_ids": [b.units[*unit]]})).await;
        }
        Change::Phone { person } if live(*person, gone) => {
            patch(
                *person,
                json!({"phones": [{"value": "+41 79 555 99 99", "type": "mobile"}]}),
            )
            .await;
        }
        Change::Active { person, active } if live(*person, gone) => {
            patch(*person, json!({"active": active})).await;
            if *active {
                inactive.remove(person);
            } else {
                inactive.insert(*person);
            }
        }
        Change::Group { person, group } if live(*person, gone) => {
            patch(*person, json!({"groups": [format!("G{group}")]})).await;
        }
        Change::AddGrant(g) => {
            let (st, x) = s
                .post(
                    &admin,
                    &format!("/api/v1/orgs/{slug}/contact-grants"),
                    &grant_body(b, g),
                )
                .await;
            assert_eq!(st, 201, "{x}");
            b.grant_ids.push(x["id"].as_str().unwrap().to_string());
        }
        Change::DropGrant(i) if *i < b.grant_ids.len() => {
            let id = b.grant_ids.remove(*i);
            let (st, _) = s
                .delete(&admin, &format!("/api/v1/orgs/{slug}/contact-grants/{id}"))
                .await;
            assert_eq!(st, 204);
        }
        Change::GrantFields { grant, fields } if *grant < b.grant_ids.len() => {
            let path = format!("/api/v1/orgs/{slug}/contact-grants/{}", b.grant_ids[*grant]);
            let (_, cur) = s.get(&admin, &path).await;
            let names: Vec<&str> = FIELDS
                .iter()
                .enumerate()
                .filter(|(i, _)| fields & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            let (st, x) = s
                .patch(
                    &admin,
                    &path,
                    &format!("\"{}\"", cur["version"]),
                    &json!({"fields": names}),
                )
                .await;
            assert_eq!(st, 200, "{x}");
        }
        // Viewers are never deleted (their keys would stop working): only people created later.
        Change::Delete { person } if *person >= w.people.len() && live(*person, gone) => {
            let (st, _) = s.delete(&admin, &person_path(*person)).await;
            assert_eq!(st, 204);
            gone.insert(*person);
        }
        Change::Create { unit } => {
            let i = b.people.len();
            let (st, p) = s
                .post(
                    &admin,
                    &format!("/api/v1/orgs/{slug}/people"),
                    &json!({"given_name": format!("N{i}"), "family_name": "Test",
                        "phones": [{"value": "+41 79 555 11 11"}], "unit_ids": [b.units[*unit]]}),
                )
                .await;
            assert_eq!(st, 201, "{p}");
            b.people.push(p["id"].as_str().unwrap().to_string());
        }
        Change::RenameUnit { unit } => {
            let path = format!("/api/v1/orgs/{slug}/units/{}", b.units[*unit]);
            let (_, cur) = s.get(&admin, &path).await;
            let name = format!("{}x", cur["name"].as_str().unwrap());
            let (st, x) = s
                .patch(
                    &admin,
                    &path,
                    &format!("\"{}\"", cur["version"]),
                    &json!({"name": name}),
                )
                .await;
            assert_eq!(st, 200, "{x}");
        }
        Change::MoveUnit { unit } => {
            // Up to the root (always allowed), or back under the first unit.
            let path = format!("/api/v1/orgs/{slug}/units/{}", b.units[*unit]);
            let (_, cur) = s.get(&admin, &path).await;
            let parent = if cur["parent_id"].is_null() && *unit != 0 {
                json!(b.units[0])
            } else {
                Value::Null
            };
            let (st, x) = s
                .patch(
                    &admin,
                    &path,
                    &format!("\"{}\"", cur["version"]),
                    &json!({"parent_id": parent}),
                )
                .await;
            assert!(st == 200 || st == 422, "{x}");
        }
        Change::MakeAdmin { person, unit } if *person < w.people.len() => {
            let (st, r) = s
                .post(
                    &admin,
                    &format!("/api/v1/orgs/{slug}/roles"),
                    &json!({"person_id": b.people[*person], "role": "unit_admin", "unit_id": b.units[*unit]}),
                )
                .await;
            assert!(st == 201 || st == 409, "{r}");
        }
        _ => {}
    }
}

#[tokio::test]
async fn a_synced_client_always_equals_a_fresh_read() {
    let s = TestServer::start().await;
    let worlds = cases(10, "feed");
    let mut runner = TestRunner::deterministic();
    for (case, w) in worlds.into_iter().enumerate() {
        let slug = format!("feed{case}");
        let mut b = build(&s, &slug, &w).await;
        let changes = proptest::collection::vec(change(w.parents.len()), 20)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut clients: Vec<Client> = (0..w.people.len())
            .map(|_| Client {
                store: BTreeMap::new(),
                cursor: None,
            })
            .collect();
        let (mut gone, mut inactive) = (BTreeSet::new(), BTreeSet::new());
        for (step, c) in changes.iter().enumerate() {
            apply(&s, &mut b, &w, &mut gone, &mut inactive, c).await;
            // Every other step, some clients sync (so some sync across several changes). A
            // deactivated viewer's key does not work; they sync again once reactivated.
            for (v, client) in clients.iter_mut().enumerate() {
                if inactive.contains(&v) {
                    continue;
                }
                // Odd viewers sync whole after each change; even ones read one page per step,
                // so their passes span changes made between their pages (they are compared at
                // the end, after a pass that began once the changes stopped).
                if v % 2 == 0 {
                    client.page(&s, &b.keys[v], &slug).await;
                    continue;
                }
                client.sync(&s, &b.keys[v], &slug).await;
                let fresh = read_all(&s, &b.keys[v], &slug, "&active=true").await;
                assert_eq!(
                    client.store, fresh,
                    "case {case}, step {step} ({c:?}), viewer {v}: {changes:?}"
                );
            }
        }
        for (v, client) in clients.iter_mut().enumerate() {
            if inactive.contains(&v) {
                continue;
            }
            // Finish a pass under way, then one more that begins after the last change.
            client.sync(&s, &b.keys[v], &slug).await;
            client.sync(&s, &b.keys[v], &slug).await;
            let fresh = read_all(&s, &b.keys[v], &slug, "&active=true").await;
            assert_eq!(client.store, fresh, "case {case}, end, viewer {v}");
            // A second sync with nothing changed brings nothing.
            let (st, r) = s
                .get(
                    &b.keys[v],
                    &format!(
                        "/api/v1/orgs/{slug}/contacts/changes?cursor={}",
                        client.cursor.as_ref().unwrap()
                    ),
                )
                .await;
            assert_eq!(st, 200);
            assert_eq!(r["upserts"], json!([]), "{r}");
            assert_eq!(r["removals"], json!([]), "{r}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn self_service_unit_admins_and_grants() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let unit = |name: &str, parent: Option<&str>| {
        let mut body = json!({"name": name});
        if let Some(p) = parent {
            body["parent_id"] = json!(p);
        }
        body
    };
    let (_, north) = s
        .post(&k, "/api/v1/orgs/acme/units", &unit("North", None))
        .await;
    let north = north["id"].as_str().unwrap().to_string();
    let (_, team) = s
        .post(&k, "/api/v1/orgs/acme/units", &unit("Team", Some(&north)))
        .await;
    let team = team["id"].as_str().unwrap().to_string();
    let (_, south) = s
        .post(&k, "/api/v1/orgs/acme/units", &unit("South", None))
        .await;
    let south = south["id"].as_str().unwrap().to_string();
    let person = |name: &str, unit: &str| {
        json!({"given_name": name, "family_name": "X", "unit_ids": [unit],
            "emails": [{"value": format!("{}@acme.example", name.to_lowercase())}]})
    };
    let (_, ada) = s
        .post(&k, "/api/v1/orgs/acme/people", &person("Ada", &team))
        .await;
    let ada = ada["id"].as_str().unwrap().to_string();
    let (_, bob) = s
        .post(&k, "/api/v1/orgs/acme/people", &person("Bob", &south))
        .await;
    let bob = bob["id"].as_str().unwrap().to_string();
    let (_, una) = s
        .post(&k, "/api/v1/orgs/acme/people", &person("Una", &north))
        .await;
    let una = una["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": una, "role": "unit_admin", "unit_id": north}),
        )
        .await;
    assert_eq!(st, 201);

    // Self-service: own phones yes, own name or units no, someone else no.
    let ada_key = s
        .person_key(&k, "acme", &ada, &["directory:read", "directory:write"])
        .await;
    let me = format!("/api/v1/orgs/acme/people/{ada}");
    let (_, cur) = s.get(&ada_key, &me).await;
    let (st, x) = s
        .patch(
            &ada_key,
            &me,
            &format!("\"{}\"", cur["version"]),
            &json!({"phones": [{"value": "+41 79 111 22 33", "type": "mobile"}]}),
        )
        .await;
    assert_eq!(st, 200, "{x}");
    assert_eq!(x["phones"][0]["value"], "+41791112233");
    let (st, x) = s
        .patch(
            &ada_key,
            &me,
            &format!("\"{}\"", x["version"]),
            &json!({"family_name": "Y"}),
        )
        .await;
    assert_eq!(st, 403, "{x}");
    assert!(
        x["detail"].as_str().unwrap().contains("/family_name"),
        "{x}"
    );
    let (st, _) = s
        .patch(
            &ada_key,
            &format!("/api/v1/orgs/acme/people/{bob}"),
            "\"1\"",
            &json!({"phones": []}),
        )
        .await;
    assert_eq!(st, 404, "Bob is not even visible to Ada");

    // The unit admin of North edits Ada (in North/Team) and may move her within North, not
    // to South; Bob in South is out of reach.
    let una_key = s
        .person_key(&k, "acme", &una, &["directory:read", "directory:write"])
        .await;
    let (_, cur) = s.get(&una_key, &me).await;
    assert!(
        cur.get("fields").is_none(),
        "a unit admin sees people whole: {cur}"
    );
    let (st, x) = s
        .patch(
            &una_key,
            &me,
            &format!("\"{}\"", cur["version"]),
            &json!({"unit_ids": [north]}),
        )
        .await;
    assert_eq!(st, 200, "{x}");
    let (st, x) = s
        .patch(
            &una_key,
            &me,
            &format!("\"{}\"", x["version"]),
            &json!({"unit_ids": [south]}),
        )
        .await;
    assert_eq!(st, 403, "{x}");
    let (st, _) = s
        .get(&una_key, &format!("/api/v1/orgs/acme/people/{bob}"))
        .await;
    assert_eq!(st, 404);
    // … but not the external key, nor anyone holding a role beyond North.
    let (_, cur) = s.get(&una_key, &me).await;
    let (st, x) = s
        .patch(
            &una_key,
            &me,
            &format!("\"{}\"", cur["version"]),
            &json!({"external_id": "X1"}),
        )
        .await;
    assert_eq!(st, 403, "{x}");
    let (_, olga) = s
        .post(&k, "/api/v1/orgs/acme/people", &person("Olga", &north))
        .await;
    let olga = olga["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": olga, "role": "org_admin"}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, x) = s
        .patch(
            &una_key,
            &format!("/api/v1/orgs/acme/people/{olga}"),
            "\"1\"",
            &json!({"active": false}),
        )
        .await;
    assert_eq!(
        st, 403,
        "a unit admin cannot deactivate an organisation admin: {x}"
    );
    let (st, x) = s
        .post(&una_key, "/api/v1/orgs/acme/people", &person("Cy", &team))
        .await;
    assert_eq!(st, 201, "a unit admin creates people in their subtree: {x}");
    let (st, _) = s
        .post(&una_key, "/api/v1/orgs/acme/people", &person("Di", &south))
        .await;
    assert_eq!(st, 403);

    // A grant: members of South see names and phones of North's subtree.
    let bob_key = s.person_key(&k, "acme", &bob, &["directory:read"]).await;
    let grant = json!({"viewer": {"kind": "unit", "id": south}, "target": {"kind": "unit", "id": north},
        "fields": ["name", "phones"]});
    let (st, g) = s.post(&k, "/api/v1/orgs/acme/contact-grants", &grant).await;
    assert_eq!(st, 201, "{g}");
    let (_, page) = s.get(&bob_key, "/api/v1/orgs/acme/people?q=ada").await;
    let a = &page["items"][0];
    assert_eq!(a["fields"], json!(["name", "phones"]), "{page}");
    assert_eq!(a["emails"], json!([]));
    assert_eq!(a["phones"][0]["value"], "+41791112233");
    // Searching by what is hidden (the e-mail address) finds nobody.
    let (_, page) = s
        .get(&bob_key, "/api/v1/orgs/acme/people?q=ada%40acme")
        .await;
    assert_eq!(page["items"], json!([]), "{page}");
    let (_, page) = s.get(&k, "/api/v1/orgs/acme/people?q=ada%40acme").await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "the admin finds her: {page}"
    );
    let (_, log) = s.get(&k, "/api/v1/orgs/acme/audit?limit=1").await;
    assert_eq!(log["items"][0]["action"], "grant.create", "{log}");

    // The `directory` feature off: grants open nothing (Bob's list and his synced copy lose
    // Ada, he keeps himself), unit admins keep their units; on again, the grant counts again.
    let feed_all = |key: String, cursor: Option<String>| {
        let s = &s;
        async move {
            let mut path = "/api/v1/orgs/acme/contacts/changes".to_string();
            if let Some(c) = cursor {
                path = format!("{path}?cursor={c}");
            }
            let (st, v) = s.get(&key, &path).await;
            assert_eq!(st, 200, "{v}");
            v
        }
    };
    let before = feed_all(bob_key.clone(), None).await;
    assert!(before["upserts"].to_string().contains(&ada), "{before}");
    let switch = |on: bool| {
        let (s, k) = (&s, &k);
        async move {
            let (st, f) = s
                .put(
                    k,
                    "/api/v1/orgs/acme/features/directory",
                    &json!({"enabled": on}),
                )
                .await;
            assert_eq!((st, &f["enabled"]), (200, &json!(on)), "{f}");
        }
    };
    switch(false).await;
    let (_, page) = s.get(&bob_key, "/api/v1/orgs/acme/people?q=ada").await;
    assert_eq!(page["items"], json!([]), "{page}");
    let (_, page) = s.get(&bob_key, "/api/v1/orgs/acme/people").await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bob.as_str()], "only himself: {page}");
    let after = feed_all(
        bob_key.clone(),
        before["next_cursor"].as_str().map(str::to_string),
    )
    .await;
    assert!(
        after["reset"] == json!(true) && !after["upserts"].to_string().contains(&ada)
            || after["removals"].to_string().contains(&ada),
        "the synced copy loses Ada: {after}"
    );
    let (st, _) = s.get(&una_key, &me).await;
    assert_eq!(st, 200, "the unit admin still sees Ada");
    switch(true).await;
    let (_, page) = s.get(&bob_key, "/api/v1/orgs/acme/people?q=ada").await;
    assert_eq!(page["items"][0]["id"], ada.as_str(), "{page}");
    // Narrow it, then withdraw it: audited, and Ada disappears for Bob.
    let gpath = format!(
        "/api/v1/orgs/acme/contact-grants/{}",
        g["id"].as_str().unwrap()
    );
    let (st, g2) = s
        .patch(&k, &gpath, "\"1\"", &json!({"fields": ["name"]}))
        .await;
    assert_eq!(st, 200, "{g2}");
    assert_eq!(g2["fields"], json!(["name"]));
    assert_eq!(g2["version"], 2);
    let (_, page) = s.get(&bob_key, "/api/v1/orgs/acme/people?q=ada").await;
    assert_eq!(page["items"][0]["phones"], json!([]));
    let (st, _) = s.delete(&k, &gpath).await;
    assert_eq!(st, 204);
    let (_, page) = s.get(&bob_key, "/api/v1/orgs/acme/people?q=ada").await;
    assert_eq!(page["items"], json!([]));
    let (_, log) = s.get(&k, "/api/v1/orgs/acme/audit?limit=3").await;
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[..2], ["grant.delete", "grant.update"]);

    // Bad grants: precise errors, nothing written.
    let (st, e) = s
        .post(
            &k,
            "/api/v1/orgs/acme/contact-grants",
            &json!({"viewer": {"kind": "team", "id": south}, "target": {"kind": "group", "id": south},
                "fields": ["name", "salary"]}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    let pointers: Vec<&str> = e["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/fields/1", "/viewer/kind", "/target/id"], "{e}");
    let (st, e) = s
        .post(
            &k,
            "/api/v1/orgs/acme/contact-grants",
            &json!({"viewer": {"kind": "unit", "id": south}, "target": {"kind": "unit", "id": north}, "fields": []}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    let (_, list) = s.get(&k, "/api/v1/orgs/acme/contact-grants").await;
    assert_eq!(list["items"], json!([]));
    // A unit a grant names cannot be deleted.
    let (_, g) = s
        .post(
            &k,
            "/api/v1/orgs/acme/contact-grants",
            &json!({"viewer": {"kind": "unit", "id": south}, "target": {"kind": "unit", "id": team}, "fields": ["name"]}),
        )
        .await;
    let _ = g;
    s.delete(
        &k,
        &format!("/api/v1/orgs/acme/people/{}", x_id(&s, &k, "Cy").await),
    )
    .await;
    let (st, e) = s
        .delete(&k, &format!("/api/v1/orgs/acme/units/{team}"))
        .await;
    assert_eq!(st, 409, "{e}");
    assert_eq!(e["code"], "in_use", "{e}");
    // A key without directory:read sees nobody.
    let blind = s.key("acme", &["duties:read"]).await;
    let (st, _) = s.get(&blind, "/api/v1/orgs/acme/people").await;
    assert_eq!(st, 403);
    let (st, _) = s.get(&blind, "/api/v1/orgs/acme/contacts/changes").await;
    assert_eq!(st, 403);
    s.stop().await;
}

async fn x_id(s: &TestServer, k: &str, name: &str) -> String {
    let (_, page) = s
        .get(k, &format!("/api/v1/orgs/acme/people?q={name}"))
        .await;
    page["items"][0]["id"].as_str().unwrap().to_string()
}

/// The case a random walk rarely hits: a person read in the middle of a pass in a state newer
/// than the pass's target, who then leaves the view again, must be removed by the next pass.
#[tokio::test]
async fn a_person_read_mid_pass_and_moved_away_is_removed() {
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let unit = |name: &str| json!({"name": name});
    let (_, a) = s.post(&k, "/api/v1/orgs/acme/units", &unit("A")).await;
    let (_, b) = s.post(&k, "/api/v1/orgs/acme/units", &unit("B")).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let person = |name: &str, unit: &str| json!({"given_name": name, "family_name": "X", "unit_ids": [unit]});
    let (_, v) = s
        .post(&k, "/api/v1/orgs/acme/people", &person("Viewer", a))
        .await;
    let v = v["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .post(
            &k,
            "/api/v1/orgs/acme/roles",
            &json!({"person_id": v, "role": "unit_admin", "unit_id": a}),
        )
        .await;
    assert_eq!(st, 201);
    // Two more people in A and B; `first` has the smaller id, so a pass looks at it first.
    let (_, x) = s
        .post(&k, "/api/v1/orgs/acme/people", &person("One", a))
        .await;
    let (_, y) = s
        .post(&k, "/api/v1/orgs/acme/people", &person("Two", b))
        .await;
    let (x, y) = (
        x["id"].as_str().unwrap().to_string(),
        y["id"].as_str().unwrap().to_string(),
    );
    let (first, p) = if x < y { (x, y) } else { (y, x) };
    let key = s.person_key(&k, "acme", &v, &["directory:read"]).await;
    let mut client = Client {
        store: BTreeMap::new(),
        cursor: None,
    };
    // `p` starts outside the viewer's unit.
    let patch_units = |id: String, unit: String| {
        let k = k.clone();
        let s = &s;
        async move {
            let path = format!("/api/v1/orgs/acme/people/{id}");
            let (_, cur) = s.get(&k, &path).await;
            let (st, x) = s
                .patch(
                    &k,
                    &path,
                    &format!("\"{}\"", cur["version"]),
                    &json!({"unit_ids": [unit]}),
                )
                .await;
            assert_eq!(st, 200, "{x}");
        }
    };
    patch_units(p.clone(), b.to_string()).await;
    client.sync(&s, &key, "acme").await;
    assert!(!client.store.contains_key(&p));
    // `first` changes (into B or A, whichever it is not in), so a delta pass has work.
    let (_, f) = s
        .get(&k, &format!("/api/v1/orgs/acme/people/{first}"))
        .await;
    let to = if f["units"][0]["id"] == a { b } else { a };
    patch_units(first.clone(), to.to_string()).await;
    let page = |c: Option<String>| {
        let key = key.clone();
        let s = &s;
        async move {
            let mut path = "/api/v1/orgs/acme/contacts/changes?limit=1".to_string();
            if let Some(c) = c {
                path += &format!("&cursor={c}");
            }
            let (st, r) = s.get(&key, &path).await;
            assert_eq!(st, 200, "{r}");
            r
        }
    };
    let apply = |client: &mut Client, r: &Value| {
        for id in r["removals"].as_array().unwrap() {
            client.store.remove(id.as_str().unwrap());
        }
        for x in r["upserts"].as_array().unwrap() {
            client
                .store
                .insert(x["id"].as_str().unwrap().to_string(), x.clone());
        }
        client.cursor = Some(r["next_cursor"].as_str().unwrap().to_string());
        r["more"] == true
    };
    // Page one of the pass looks at `first`.
    let r = page(client.cursor.clone()).await;
    assert!(apply(&mut client, &r));
    // Meanwhile `p` comes into A: the next page reads them there.
    patch_units(p.clone(), a.to_string()).await;
    while {
        let r = page(client.cursor.clone()).await;
        apply(&mut client, &r)
    } {}
    assert!(client.store.contains_key(&p), "read in A during the pass");
    // … and goes back out of A (to B): the next pass must take them away.
    patch_units(p.clone(), b.to_string()).await;
    client.sync(&s, &key, "acme").await;
    let fresh = read_all(&s, &key, "acme", "&active=true").await;
    assert_eq!(client.store, fresh);
    assert!(!client.store.contains_key(&p));
    s.stop().await;
}

/// Housekeeping prunes the feed's log: a client that last synced before the log's floor
/// starts again with a snapshot (and ends up equal to a fresh read); one that synced after
/// the floor still gets just the changes.
#[tokio::test]
async fn a_client_older_than_the_pruned_log_starts_again() {
    use carebridge_domain::Clock;
    let s = TestServer::start().await;
    let k = s.org("acme").await;
    let db = &s.running.state.db;
    let day = std::time::Duration::from_secs(24 * 3600);
    let mut ids = Vec::new();
    for name in ["Ada", "Bob"] {
        let (st, p) = s
            .post(
                &k,
                "/api/v1/orgs/acme/people",
                &json!({"given_name": name, "family_name": "X"}),
            )
            .await;
        assert_eq!(st, 201, "{p}");
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    let sync = |cursor: Option<String>| {
        let s = &s;
        let k = &k;
        async move {
            let path = match cursor {
                Some(c) => format!("/api/v1/orgs/acme/contacts/changes?cursor={c}"),
                None => "/api/v1/orgs/acme/contacts/changes".into(),
            };
            let (st, v) = s.get(k, &path).await;
            assert_eq!(st, 200, "{v}");
            assert_eq!(v["more"], false, "{v}");
            v
        }
    };
    let rename = |id: String, body: Value| {
        let s = &s;
        let k = &k;
        async move {
            let path = format!("/api/v1/orgs/acme/people/{id}");
            let (_, cur) = s.get(k, &path).await;
            let (st, v) = s
                .patch(k, &path, &format!("\"{}\"", cur["version"]), &body)
                .await;
            assert_eq!(st, 200, "{v}");
        }
    };
    let old = sync(None).await["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    // The first housekeeping remembers the head; changes follow.
    carebridge_server::housekeeping_step(db, s.clock.now())
        .await
        .unwrap();
    rename(ids[0].clone(), json!({"given_name": "Ada-Maria"})).await;
    rename(ids[1].clone(), json!({"active": false})).await;
    let mid = sync(Some(old.clone())).await;
    assert_eq!(mid["reset"], false, "{mid}");
    let mid = mid["next_cursor"].as_str().unwrap().to_string();
    // 31 days on, the remembered head becomes the floor; the old cursor is exactly there.
    s.clock.advance(day * 31);
    carebridge_server::housekeeping_step(db, s.clock.now())
        .await
        .unwrap();
    let r = sync(Some(old.clone())).await;
    assert_eq!(r["reset"], false, "still explained by the log: {r}");
    // Another change, another 31 days: the floor passes the old cursor.
    rename(ids[0].clone(), json!({"family_name": "Y"})).await;
    s.clock.advance(day * 31);
    let pruned = carebridge_server::housekeeping_step(db, s.clock.now())
        .await
        .unwrap();
    assert!(pruned >= 1, "the rename's log entry went: {pruned}");
    let r = sync(Some(old)).await;
    assert_eq!(r["reset"], true, "{r}");
    let names: Vec<&str> = r["upserts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["family_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Y"], "a snapshot of who is active now: {r}");
    let r = sync(Some(mid)).await;
    assert_eq!(r["reset"], false, "after the floor: just the changes: {r}");
    assert_eq!(r["upserts"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["upserts"][0]["id"], ids[0].as_str());
}
