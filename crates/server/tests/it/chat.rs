//! The duty chat end to end: real MLS devices (the `carebridge-client` SDK over openmls) talk
//! to the real server over HTTP and WebSockets. Membership follows the roster through roster
//! events and the chat worker (run step by step with the test clock); a commit race has one
//! winner and no fork; removed people get nothing more and cannot decrypt; the retention walk
//! ends with nothing of the group in any table; bad MLS input is refused without changing the
//! group; the database holds no plaintext.

use std::time::Duration;

use carebridge_client::{Device, Received};
use carebridge_proto::chat::Frame;
use carebridge_testkit::{TestServer, t0};
use jiff::SignedDuration;
use serde_json::json;
use uuid::Uuid;

fn at(days: i64, hours: i64) -> String {
    (t0() + SignedDuration::from_hours(days * 24 + hours)).to_string()
}

struct World {
    s: TestServer,
    admin: String,
    unit: String,
}

async fn world() -> World {
    let s = TestServer::start().await;
    let admin = s.org("acme").await;
    let (st, f) = s
        .put(
            &admin,
            "/api/v1/orgs/acme/features/chat",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(st, 200, "{f}");
    let (_, u) = s
        .post(
            &admin,
            "/api/v1/orgs/acme/units",
            &json!({"name": "Sanität"}),
        )
        .await;
    World {
        unit: u["id"].as_str().unwrap().into(),
        s,
        admin,
    }
}

impl World {
    /// A member of the unit with a personal key: `(person id, key)`.
    async fn person(&self, given: &str) -> (String, String) {
        let (st, p) = self
            .s
            .post(
                &self.admin,
                "/api/v1/orgs/acme/people",
                &json!({"given_name": given, "family_name": "Muster", "unit_ids": [self.unit]}),
            )
            .await;
        assert_eq!(st, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        let (st, r) = self
            .s
            .post(
                &self.admin,
                "/api/v1/orgs/acme/roles",
                &json!({"person_id": id, "role": "member", "unit_id": self.unit}),
            )
            .await;
        assert_eq!(st, 201, "{r}");
        let key = self.s.person_key(&self.admin, "acme", &id, &[]).await;
        (id, key)
    }

    /// A duty ending at `ends` with the chat on.
    async fn duty(&self, starts: String, ends: String) -> Uuid {
        let (st, d) = self
            .s
            .post(
                &self.admin,
                "/api/v1/orgs/acme/duties",
                &json!({"unit_id": self.unit, "title": "Sanitätsdienst Stadtlauf", "starts_at": starts, "ends_at": ends}),
            )
            .await;
        assert_eq!(st, 201, "{d}");
        d["id"].as_str().unwrap().parse().unwrap()
    }

    /// Assigns `person` (chat on); returns the assignment id.
    async fn assign(&self, duty: Uuid, person: &str, role: &str) -> String {
        let (st, a) = self
            .s
            .post(
                &self.admin,
                &format!("/api/v1/orgs/acme/duties/{duty}/assignments"),
                &json!({"person_id": person, "role": role, "chat": true}),
            )
            .await;
        assert_eq!(st, 201, "{a}");
        a["id"].as_str().unwrap().to_string()
    }

    async fn unassign(&self, duty: Uuid, assignment: &str) {
        let (st, b) = self
            .s
            .delete(
                &self.admin,
                &format!("/api/v1/orgs/acme/duties/{duty}/assignments/{assignment}"),
            )
            .await;
        assert_eq!(st, 204, "{b}");
    }

    /// One step of the chat worker at the test clock's time.
    async fn step(&self) -> carebridge_chat::service::Step {
        let r = &self.s.running;
        carebridge_chat::service::step(&r.state.db, &r.chat, r.state.now())
            .await
            .unwrap()
    }

    async fn device(&self, key: &str, name: &str) -> Device {
        Device::register(&self.s.base, key, name, 5).await.unwrap()
    }

    /// Anna (lead) and Ben (helper) on a duty from `starts` to `ends`, each with a device
    /// that has opened the duty's chat.
    async fn pair(&self, starts: String, ends: String) -> Pair {
        let (anna, anna_key) = self.person("Anna").await;
        let (ben, ben_key) = self.person("Ben").await;
        let duty = self.duty(starts, ends).await;
        self.assign(duty, &anna, "lead").await;
        self.assign(duty, &ben, "helper").await;
        self.step().await;
        let mut a = self.device(&anna_key, "a").await;
        let mut b = self.device(&ben_key, "b").await;
        a.open(duty).await.unwrap();
        b.open(duty).await.unwrap();
        Pair {
            duty,
            anna,
            ben,
            ben_key,
            a,
            b,
        }
    }
}

/// What [`World::pair`] sets up.
struct Pair {
    duty: Uuid,
    anna: String,
    ben: String,
    ben_key: String,
    a: Device,
    b: Device,
}

/// The next message frame on `socket` (bounded wait: a missing frame fails the test).
async fn frame(socket: &mut carebridge_client::Socket) -> carebridge_proto::chat::ChatMessage {
    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(Ok(Some(Frame::Message { message }))) => message,
        other => panic!("expected a message frame, got {other:?}"),
    }
}

/// Reads frames until an application message arrives and decrypts it with `d`.
async fn read_text(d: &mut Device, socket: &mut carebridge_client::Socket, duty: Uuid) -> Received {
    loop {
        let m = frame(socket).await;
        if let Some(r) = d.process(duty, &m).unwrap() {
            return r;
        }
    }
}

#[tokio::test]
async fn roster_drives_membership_and_everyone_current_reads_everything() {
    let w = world().await;
    let (anna, anna_key) = w.person("Anna").await;
    let (ben, ben_key) = w.person("Ben").await;
    let (clara, clara_key) = w.person("Clara").await;
    let duty = w.duty(at(1, 0), at(1, 8)).await;
    w.assign(duty, &anna, "lead").await;
    let ben_assignment = w.assign(duty, &ben, "helper").await;
    assert!(w.step().await.rosters >= 1);

    // Five devices of three people.
    let mut a1 = w.device(&anna_key, "Anna phone").await;
    let mut a2 = w.device(&anna_key, "Anna laptop").await;
    let mut b1 = w.device(&ben_key, "Ben phone").await;
    let mut b2 = w.device(&ben_key, "Ben tablet").await;
    let mut c1 = w.device(&clara_key, "Clara phone").await;

    // Clara is not on the roster: she does not see the chat.
    assert!(c1.chats().await.unwrap().is_empty());
    let chats = a1.chats().await.unwrap();
    assert_eq!(chats.len(), 1);
    assert!(!chats[0].created);
    assert_eq!(chats[0].phase, "writable");

    // The first device creates the group; the server proposes the other three devices and
    // the creator's SDK commits them at once.
    a1.open(duty).await.unwrap();
    assert_eq!(a1.epoch(duty), Some(1));
    for d in [&mut a2, &mut b1, &mut b2] {
        d.open(duty).await.unwrap();
        assert!(d.joined(duty));
        assert_eq!(d.epoch(duty), Some(1));
    }
    // Members see who is in the chat by name (the stream names devices); Clara does not.
    let names = a1.members(duty).await.unwrap();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names
            .iter()
            .any(|m| m.device_id == b2.id && m.name == "Ben Muster")
    );
    assert!(matches!(
        c1.members(duty).await.unwrap_err(),
        carebridge_client::ClientError::Api { status: 404, .. }
    ));
    let auth = a1.epoch_authenticator(duty).unwrap();
    for d in [&a2, &b1, &b2] {
        assert_eq!(d.epoch_authenticator(duty).unwrap(), auth, "no fork");
    }

    // Live delivery over WebSockets to every other current device, decrypted there.
    let mut s_a2 = a2.connect().await.unwrap();
    let mut s_b1 = b1.connect().await.unwrap();
    let mut s_b2 = b2.connect().await.unwrap();
    let mut s_c1 = c1.connect().await.unwrap();
    a1.send(duty, "Treffpunkt 07:30 beim Sanitätszelt".as_bytes())
        .await
        .unwrap();
    for (d, s) in [
        (&mut a2, &mut s_a2),
        (&mut b1, &mut s_b1),
        (&mut b2, &mut s_b2),
    ] {
        let r = read_text(d, s, duty).await;
        assert_eq!(r.plaintext, "Treffpunkt 07:30 beim Sanitätszelt".as_bytes());
        assert_eq!(r.sender, Some(a1.id));
    }

    // Clara joins the roster: the server proposes her device, a member commits, she joins
    // and reads from the moment of joining on (not the earlier message).
    w.assign(duty, &clara, "helper").await;
    w.step().await;
    let p = frame(&mut s_b1).await;
    assert_eq!((p.kind.as_str(), p.sender), ("proposal", None));
    b1.process(duty, &p).unwrap();
    b1.sync(duty).await.unwrap();
    assert_eq!(b1.epoch(duty), Some(2));
    let earlier = c1.open(duty).await.unwrap();
    assert!(c1.joined(duty));
    assert!(
        earlier.is_empty(),
        "nothing from before joining: {earlier:?}"
    );
    for (d, s) in [(&mut a2, &mut s_a2), (&mut b2, &mut s_b2)] {
        // The proposal, the commit and (for nobody here) the Welcome.
        let _ = d.sync(duty).await.unwrap();
        let _ = s;
    }
    a1.sync(duty).await.unwrap();
    let cut = b2.send(duty, b"Clara, willkommen").await.unwrap();
    let r = read_text(&mut c1, &mut s_c1, duty).await;
    assert_eq!(r.plaintext, b"Clara, willkommen");
    for d in [&a1, &a2, &b2, &c1] {
        assert_eq!(
            d.epoch_authenticator(duty),
            b1.epoch_authenticator(duty),
            "no fork"
        );
    }

    // Ben leaves the roster: from that moment his devices get nothing of the group, even
    // before a member commits his removal.
    w.unassign(duty, &ben_assignment).await;
    w.step().await;
    for d in [&b1, &b2] {
        let e = d.fetch(duty, 0).await.unwrap_err();
        assert!(
            matches!(e, carebridge_client::ClientError::Api { status: 404, .. }),
            "{e}"
        );
    }
    // Anna's laptop commits the two removals (the server's proposals).
    a2.sync(duty).await.unwrap();
    assert_eq!(a2.epoch(duty), Some(3));
    a1.sync(duty).await.unwrap();
    c1.sync(duty).await.unwrap();
    assert_eq!(a1.epoch_authenticator(duty), a2.epoch_authenticator(duty));
    assert_eq!(c1.epoch_authenticator(duty), a2.epoch_authenticator(duty));
    a1.send(duty, b"Nur noch Anna und Clara").await.unwrap();
    let r = read_text(&mut c1, &mut s_c1, duty).await;
    assert_eq!(r.plaintext, b"Nur noch Anna und Clara");
    let secret_frame = a2.fetch(duty, 0).await.unwrap();
    let last = secret_frame.items.last().unwrap().clone();
    assert_eq!(last.kind, "application");
    // Ben's device, handed the ciphertext anyway, cannot decrypt it.
    assert!(b1.process(duty, &last).is_err());
    let mut got = Vec::new();
    while let Ok(Ok(Some(Frame::Message { message }))) =
        tokio::time::timeout(Duration::from_millis(300), s_b1.next()).await
    {
        got.push(message.seq);
    }
    assert!(
        got.iter().all(|s| *s <= cut),
        "Ben's phone got frames after he left: {got:?}"
    );

    // The database holds no plaintext: every table, as text and as bytes.
    for text in [
        "Treffpunkt 07:30",
        "Clara, willkommen",
        "Nur noch Anna und Clara",
    ] {
        assert_no_plaintext(&w.s, text).await;
    }
}

#[tokio::test]
async fn a_commit_race_has_one_winner_and_no_fork() {
    let w = world().await;
    let Pair {
        duty, mut a, mut b, ..
    } = w.pair(at(1, 0), at(1, 8)).await;
    let epoch = a.epoch(duty).unwrap();
    // Both commit in the same epoch: the first wins, the second is told its epoch is stale.
    a.self_update(duty).await.unwrap();
    let e = b.self_update(duty).await.unwrap_err();
    match &e {
        carebridge_client::ClientError::Api { status: 409, body } => {
            assert!(body.contains("stale_epoch"), "{body}")
        }
        other => panic!("expected 409 stale_epoch, got {other}"),
    }
    // The loser processes the winner and goes on; both are in the same epoch with the same
    // authenticator, and messages flow both ways.
    b.sync(duty).await.unwrap();
    assert_eq!(a.epoch(duty), Some(epoch + 1));
    assert_eq!(b.epoch(duty), Some(epoch + 1));
    assert_eq!(a.epoch_authenticator(duty), b.epoch_authenticator(duty));
    b.self_update(duty).await.unwrap();
    a.send(duty, b"after the race").await.unwrap();
    let got = b.sync(duty).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].plaintext, b"after the race");
    assert_eq!(a.epoch_authenticator(duty), b.epoch_authenticator(duty));

    // A device saved and restored (an app restart) goes on in the same group.
    let saved = a.save().unwrap();
    drop(a);
    let mut a = Device::restore(&saved).unwrap();
    assert_eq!(a.epoch_authenticator(duty), b.epoch_authenticator(duty));
    a.send(duty, b"after the restart").await.unwrap();
    let got = b.sync(duty).await.unwrap();
    assert_eq!(got[0].plaintext, b"after the restart");
    assert!(Device::restore("{}").is_err());
}

/// A device whose copy of the group is gone (lost state, or a commit it could not process)
/// asks to rejoin: the server proposes its removal, the next member online commits that and
/// the Add that follows, and the device reads on from its new Welcome. Alone in a group, the
/// group is deleted and the device creates it again.
#[tokio::test]
async fn a_device_that_lost_its_group_rejoins_through_the_roster() {
    let w = world().await;
    let Pair {
        duty,
        anna,
        ben_key,
        mut a,
        mut b,
        ..
    } = w.pair(at(1, 0), at(1, 8)).await;
    a.send(duty, b"before").await.unwrap();
    assert_eq!(b.sync(duty).await.unwrap()[0].plaintext, b"before");
    let epoch = a.epoch(duty).unwrap();

    // Ben's copy is lost; asking twice is the same request.
    b.forget(duty);
    b.rejoin(duty).await.unwrap();
    b.rejoin(duty).await.unwrap();
    // His old Welcome is not taken up again.
    assert!(b.sync(duty).await.unwrap().is_empty());
    assert!(!b.joined(duty));
    // Anna's device commits the removal and then the Add of his device.
    a.sync(duty).await.unwrap();
    assert_eq!(a.epoch(duty), Some(epoch + 2));
    b.sync(duty).await.unwrap();
    assert!(b.joined(duty));
    assert_eq!(b.epoch(duty), a.epoch(duty));
    assert_eq!(a.epoch_authenticator(duty), b.epoch_authenticator(duty));
    a.send(duty, b"after").await.unwrap();
    assert_eq!(b.sync(duty).await.unwrap()[0].plaintext, b"after");
    b.send(duty, b"back again").await.unwrap();
    assert_eq!(a.sync(duty).await.unwrap()[0].plaintext, b"back again");
    let (st, body) =
        w.s.get(&w.admin, &format!("/api/v1/orgs/acme/duties/{duty}"))
            .await;
    assert_eq!(st, 200, "{body}");

    // A copy that cannot follow the stream any more rejoins on its own: Ben's device is
    // restored from before its own commit, so the next message is of an epoch it never
    // reached. It asks to rejoin, Anna's device commits, and the chat goes on.
    let saved = b.save().unwrap();
    b.self_update(duty).await.unwrap();
    a.sync(duty).await.unwrap();
    assert_eq!(a.epoch(duty), b.epoch(duty));
    let mut b = Device::restore(&saved).unwrap();
    assert!(b.epoch(duty) < a.epoch(duty));
    a.send(duty, b"lost to the old copy").await.unwrap();
    assert!(b.sync(duty).await.unwrap().is_empty());
    assert_eq!(b.take_rejoined(), vec![duty]);
    assert!(!b.joined(duty));
    a.sync(duty).await.unwrap();
    b.sync(duty).await.unwrap();
    assert!(b.joined(duty));
    assert_eq!(a.epoch_authenticator(duty), b.epoch_authenticator(duty));
    a.send(duty, b"wieder da").await.unwrap();
    assert_eq!(b.sync(duty).await.unwrap()[0].plaintext, b"wieder da");
    assert!(b.take_rejoined().is_empty());

    // Alone in a group: it is deleted and created again.
    let solo = w.duty(at(2, 0), at(2, 8)).await;
    w.assign(solo, &anna, "lead").await;
    w.step().await;
    a.open(solo).await.unwrap();
    assert!(a.joined(solo));
    a.rejoin(solo).await.unwrap();
    assert!(!a.joined(solo));
    a.open(solo).await.unwrap();
    assert!(a.joined(solo));
    a.send(solo, b"alone again").await.unwrap();

    // A device not in the group (yet) has nothing to rejoin.
    let mut c = w.device(&ben_key, "c").await;
    match c.rejoin(solo).await.unwrap_err() {
        carebridge_client::ClientError::Api { status, body } => {
            assert_eq!(status, 404, "Ben is not on that duty: {body}")
        }
        e => panic!("{e}"),
    }
    match c.rejoin(duty).await.unwrap_err() {
        carebridge_client::ClientError::Api { status, body } => {
            assert_eq!(status, 409, "{body}");
            assert!(body.contains("not_in_group"), "{body}");
        }
        e => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_stale_add_does_not_stall_and_a_cancelled_duty_stays_readable() {
    let w = world().await;
    let (anna, anna_key) = w.person("Anna").await;
    let (ben, ben_key) = w.person("Ben").await;
    let duty = w.duty(at(1, 0), at(1, 8)).await;
    w.assign(duty, &anna, "lead").await;
    w.step().await;
    let mut a = w.device(&anna_key, "a").await;
    let b = w.device(&ben_key, "b").await;
    a.open(duty).await.unwrap();
    assert_eq!(a.epoch(duty), Some(0));
    // Ben is assigned (the server proposes his device) and unassigned again before anyone
    // committed: the pending Add is still accepted, and the server removes him next epoch.
    let ben_assignment = w.assign(duty, &ben, "helper").await;
    w.step().await;
    w.unassign(duty, &ben_assignment).await;
    w.step().await;
    a.sync(duty).await.unwrap();
    assert_eq!(a.epoch(duty), Some(2), "added, then removed");
    assert!(matches!(
        b.fetch(duty, 0).await.unwrap_err(),
        carebridge_client::ClientError::Api { status: 404, .. }
    ));
    a.send(duty, b"weiter geht's").await.unwrap();

    // Cancelling the duty makes the chat read-only at once; Anna still reads it.
    let (_, d) =
        w.s.get(&w.admin, &format!("/api/v1/orgs/acme/duties/{duty}"))
            .await;
    let (st, c) =
        w.s.patch(
            &w.admin,
            &format!("/api/v1/orgs/acme/duties/{duty}"),
            &format!("\"{}\"", d["version"]),
            &json!({"state": "cancelled"}),
        )
        .await;
    assert_eq!(st, 200, "{c}");
    w.step().await;
    let g = a.chat(duty).await.unwrap();
    assert_eq!(g.phase, "read_only");
    let e = a.send(duty, b"noch da?").await.unwrap_err();
    assert!(
        matches!(&e, carebridge_client::ClientError::Api { status: 409, body } if body.contains("read_only")),
        "{e}"
    );
    let all = a.fetch(duty, 0).await.unwrap();
    assert!(all.items.iter().any(|m| m.kind == "application"));
    assert_eq!(a.chats().await.unwrap().len(), 1);
}

#[tokio::test]
async fn retention_walks_writable_read_only_deleted() {
    let w = world().await;
    let Pair {
        duty, mut a, mut b, ..
    } = w.pair(at(0, 1), at(0, 5)).await;
    a.send(duty, b"vor dem Ende").await.unwrap();
    let (_, plan) = a
        .send_attachment(duty, "plan.pdf", "application/pdf", b"%PDF Lageplan")
        .await
        .unwrap();

    // End + 2 days - 1 ms: still writable.
    w.s.clock
        .set(t0() + SignedDuration::from_hours(5 + 48) - SignedDuration::from_millis(1));
    a.send(duty, b"knapp vor read-only").await.unwrap();
    // End + 2 days: read-only. Reading works, sending does not.
    w.s.clock.set(t0() + SignedDuration::from_hours(5 + 48));
    assert_eq!(a.chat(duty).await.unwrap().phase, "read_only");
    let e = a.send(duty, b"zu spaet").await.unwrap_err();
    assert!(
        matches!(&e, carebridge_client::ClientError::Api { status: 409, body } if body.contains("read_only")),
        "{e}"
    );
    let read = b.sync(duty).await.unwrap();
    assert_eq!(read.len(), 3);
    // Attachments: readable while read-only, no new uploads.
    assert_eq!(b.download(duty, &plan).await.unwrap(), b"%PDF Lageplan");
    let e = a
        .send_attachment(duty, "late.pdf", "application/pdf", b"late")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, carebridge_client::ClientError::Api { status: 409, body } if body.contains("read_only")),
        "{e}"
    );
    // End + 32 days: deleted; nothing of the group is left in any table.
    let mut socket = b.connect().await.unwrap();
    w.s.clock
        .set(t0() + SignedDuration::from_hours(5 + 32 * 24));
    assert_eq!(w.step().await.deleted, 1);
    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(Ok(Some(Frame::Deleted { duty_id }))) => assert_eq!(duty_id, duty),
        other => panic!("expected the deletion notice, got {other:?}"),
    }
    let e = b.fetch(duty, 0).await.unwrap_err();
    assert!(
        matches!(e, carebridge_client::ClientError::Api { status: 404, .. }),
        "{e}"
    );
    let db = &w.s.running.state.db;
    let mut c = db.read().await.unwrap();
    for table in [
        "chat_attachments",
        "chat_messages",
        "chat_groups",
        "chat_group_devices",
        "chat_proposals",
        "chat_members",
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE duty_id = $1");
        let n: i64 = carebridge_store::run!(&mut c, c => sqlx::query_scalar(&sql).bind(duty).fetch_one(c).await).unwrap();
        assert_eq!(n, 0, "{table} still holds rows of the deleted chat");
    }
    drop(c);
    // The tombstone keeps the chat from being created again.
    assert!(b.chats().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_mls_input_is_refused_and_changes_nothing() {
    let w = world().await;
    let Pair {
        duty, mut a, mut b, ..
    } = w.pair(at(1, 0), at(1, 8)).await;
    let (_, eve_key) = w.person("Eve").await;
    let before = a.chat(duty).await.unwrap();

    let status = |e: carebridge_client::ClientError| match e {
        carebridge_client::ClientError::Api { status, body } => (status, body),
        other => panic!("{other}"),
    };
    // Garbage, truncated and empty frames: 422 with a precise pointer.
    let valid = a.key_package(false).unwrap();
    for bad in [
        vec![],
        vec![0u8; 3],
        b"hello, not MLS".to_vec(),
        valid[..valid.len() / 2].to_vec(),
        valid.clone(), // a KeyPackage is not a message
    ] {
        let (st, body) = status(a.post_raw(duty, &bad).await.unwrap_err());
        assert_eq!(st, 422, "{body}");
        assert!(body.contains("/message"), "{body}");
    }
    // Not base64.
    let r =
        w.s.http
            .post(format!("{}/api/v1/chat/groups/{duty}/messages", w.s.base))
            .bearer_auth(a.token())
            .json(&json!({"message": "***"}))
            .send()
            .await
            .unwrap();
    let (st, body) = carebridge_testkit::read(r).await;
    assert_eq!(st, 422);
    assert_eq!(body["errors"][0]["pointer"], "/message", "{body}");
    // A commit for a wrong (old) epoch: 409 stale_epoch.
    a.self_update(duty).await.unwrap();
    let (st, body) = status(b.self_update(duty).await.unwrap_err());
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("stale_epoch"));
    b.sync(duty).await.unwrap();
    // A KeyPackage with a foreign identity (Eve's device signing a KeyPackage for herself,
    // uploaded with Anna's device token) is refused.
    let eve = w.device(&eve_key, "eve").await;
    let foreign = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        eve.key_package(false).unwrap(),
    );
    let r =
        w.s.http
            .post(format!("{}/api/v1/chat/key-packages", w.s.base))
            .bearer_auth(a.token())
            .json(&json!({"key_packages": [foreign]}))
            .send()
            .await
            .unwrap();
    let (st, body) = carebridge_testkit::read(r).await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["errors"][0]["code"], "foreign_identity", "{body}");
    // Eve is not on the roster: she cannot read, post or create.
    assert!(matches!(
        eve.fetch(duty, 0).await.unwrap_err(),
        carebridge_client::ClientError::Api { status: 404, .. }
    ));
    // Oversize application message.
    let big = vec![b'x'; 70 * 1024];
    let (st, body) = status(a.send(duty, &big).await.unwrap_err());
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("too_large"), "{body}");
    // No device token, a wrong one: 401.
    let r =
        w.s.http
            .get(format!("{}/api/v1/chat/groups", w.s.base))
            .bearer_auth("cbd_not-a-device")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r =
        w.s.http
            .get(format!("{}/api/v1/chat/ws", w.s.base))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A browser names its token as a subprotocol; a wrong one is refused alike.
    let r =
        w.s.http
            .get(format!("{}/api/v1/chat/ws", w.s.base))
            .header(
                "sec-websocket-protocol",
                "carebridge.chat.v1, cbd_not-a-device",
            )
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // The group went on normally: one epoch further (the self-update), messages flow.
    let after = a.chat(duty).await.unwrap();
    assert_eq!(after.epoch, before.epoch.map(|e| e + 1));
    a.send(duty, b"still fine").await.unwrap();
    let got = b.sync(duty).await.unwrap();
    assert_eq!(got.last().unwrap().plaintext, b"still fine");
}

/// Searches every row of every table for `text` (as text and as hex of its bytes).
async fn assert_no_plaintext(s: &TestServer, text: &str) {
    let db = &s.running.state.db;
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    let mut c = db.read().await.unwrap();
    let pg = carebridge_testkit::on_postgres();
    let tables: Vec<String> = if pg {
        carebridge_store::run!(&mut c, c => sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
            .fetch_all(c).await)
        .unwrap()
    } else {
        carebridge_store::run!(&mut c, c => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(c).await)
        .unwrap()
    };
    assert!(tables.iter().any(|t| t == "chat_messages"));
    for t in &tables {
        let rows: Vec<String> = if pg {
            let sql = format!("SELECT row_to_json(x)::text FROM \"{t}\" x");
            carebridge_store::run!(&mut c, c => sqlx::query_scalar(&sql).fetch_all(c).await)
                .unwrap()
        } else {
            // Every column as hex of its bytes (text columns: of their UTF-8).
            let cols: Vec<String> = carebridge_store::run!(&mut c, c => sqlx::query_scalar(
                &format!("SELECT name FROM pragma_table_info('{t}')")).fetch_all(c).await)
            .unwrap();
            let expr = cols
                .iter()
                .map(|k| format!("COALESCE(hex(\"{k}\"), '')"))
                .collect::<Vec<_>>()
                .join(" || ' ' || ");
            if expr.is_empty() {
                continue;
            }
            let sql = format!("SELECT {expr} FROM \"{t}\"");
            carebridge_store::run!(&mut c, c => sqlx::query_scalar(&sql).fetch_all(c).await)
                .unwrap()
        };
        for r in rows {
            let lower = r.to_lowercase();
            assert!(
                !r.contains(text) && !lower.contains(&hex),
                "plaintext {text:?} found in table {t}"
            );
        }
    }
}

/// A real `carebridge` process with debug logs; its output is collected.
struct Node {
    child: std::process::Child,
    base: String,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn spawn_node(dir: &std::path::Path, database_url: &str) -> Node {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_carebridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "debug")
        .env("CAREBRIDGE_DATABASE_URL", database_url)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let base = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "node exited: {printed}"
        );
        printed.push_str(&line);
        if let Some(b) = line.strip_prefix("listening on ") {
            break b.trim().to_string();
        }
    };
    // Drain both pipes: a node whose log pipe is full blocks on its next line.
    let out_thread = std::thread::spawn(move || {
        let mut s = printed;
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut err = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Node {
        child,
        base,
        out: Some(out_thread),
        err: Some(err_thread),
    }
}

impl Node {
    fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let mut s = self.out.take().unwrap().join().unwrap();
        s.push_str(&self.err.take().unwrap().join().unwrap());
        s
    }
}

/// Two server processes on one PostgreSQL deliver each other's messages live (on SQLite, one
/// process); the processes run with debug logging, and neither their logs nor the database
/// hold any plaintext.
#[tokio::test]
async fn nodes_deliver_each_others_messages_and_logs_hold_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let name = format!("t_chat_{}", Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            format!("{}/{name}", url.rsplit_once('/').unwrap().0)
        }
        _ => format!("sqlite://{}/chat.db", dir.path().display()),
    };
    let pg = url.starts_with("postgres");
    // The organisation and its admin key, made like the operator would (migrated database).
    let config = carebridge_server::config::Config {
        database_url: url.clone(),
        ..Default::default()
    };
    let db = carebridge_server::open_db(&config, None).await.unwrap();
    let now = carebridge_domain::Clock::now(&carebridge_domain::SystemClock);
    carebridge_server::commands::org_create(
        &db,
        carebridge_proto::org::CreateOrg {
            slug: "acme".into(),
            name: "Acme".into(),
            default_region: "CH".into(),
            default_language: "de".into(),
            contact_email: None,
        },
        now,
    )
    .await
    .unwrap();
    let admin = carebridge_server::commands::apikey_create(&db, Some("acme"), "admin", vec![], now)
        .await
        .unwrap()
        .secret;
    db.close().await;

    let n1 = spawn_node(dir.path(), &url);
    let n2 = if pg {
        Some(spawn_node(dir.path(), &url))
    } else {
        None
    };
    let b1 = n1.base.clone();
    let b2 = n2.as_ref().map(|n| n.base.clone()).unwrap_or(b1.clone());
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let http = http.clone();
        let admin = admin.clone();
        let b1 = b1.clone();
        async move {
            let r = http
                .request(method, format!("{b1}{path}"))
                .bearer_auth(&admin)
                .json(&body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            assert!((200..300).contains(&st), "{path}: {st} {v}");
            v
        }
    };
    use reqwest::Method;
    call(
        Method::PUT,
        "/api/v1/orgs/acme/features/chat".into(),
        json!({"enabled": true}),
    )
    .await;
    let unit = call(
        Method::POST,
        "/api/v1/orgs/acme/units".into(),
        json!({"name": "Team"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut people = Vec::new();
    for name in ["Anna", "Ben"] {
        let p = call(
            Method::POST,
            "/api/v1/orgs/acme/people".into(),
            json!({"given_name": name, "family_name": "Node", "unit_ids": [unit]}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let key = call(
            Method::POST,
            "/api/v1/orgs/acme/api-keys".into(),
            json!({"name": "personal", "permissions": ["duties:read"], "person_id": p}),
        )
        .await["secret"]
            .as_str()
            .unwrap()
            .to_string();
        people.push((p, key));
    }
    let start = jiff::Timestamp::from_second(now.as_second() + 3600).unwrap();
    let duty: Uuid = call(
        Method::POST,
        "/api/v1/orgs/acme/duties".into(),
        json!({"unit_id": unit, "title": "Zwei Knoten", "starts_at": start.to_string(),
               "ends_at": (start + SignedDuration::from_hours(4)).to_string()}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for (p, _) in &people {
        call(
            Method::POST,
            format!("/api/v1/orgs/acme/duties/{duty}/assignments"),
            json!({"person_id": p, "chat": true}),
        )
        .await;
    }
    // Anna's device talks to node 1, Ben's to node 2.
    let mut a = Device::register(&b1, &people[0].1, "Anna", 3)
        .await
        .unwrap();
    let mut b = Device::register(&b2, &people[1].1, "Ben", 3).await.unwrap();
    // The nodes' workers apply the roster on their own (woken by the commit or polling).
    let mut waited = 0;
    while a.chats().await.unwrap().is_empty() || b.chats().await.unwrap().is_empty() {
        assert!(waited < 100, "the roster never reached the chat");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    a.open(duty).await.unwrap();
    b.open(duty).await.unwrap();
    assert!(b.joined(duty));
    let mut sa = a.connect().await.unwrap();
    let mut sb = b.connect().await.unwrap();
    let text1 = "Zwei Knoten, eine Gruppe: Treffpunkt Nordeingang";
    a.send(duty, text1.as_bytes()).await.unwrap();
    let got = loop {
        let m = frame(&mut sb).await;
        let r = b.receive(&m).await.unwrap();
        if let Some(r) = r.into_iter().next() {
            break r;
        }
    };
    assert_eq!(got.plaintext, text1.as_bytes());
    let text2 = "Antwort ueber den anderen Knoten: verstanden";
    b.send(duty, text2.as_bytes()).await.unwrap();
    let got = loop {
        let m = frame(&mut sa).await;
        if let Some(r) = a.receive(&m).await.unwrap().into_iter().next() {
            break r;
        }
    };
    assert_eq!(got.plaintext, text2.as_bytes());
    // Commits alternate between the nodes. Each node keeps the group's state of its own last
    // commit in memory; it must notice that the other node moved the group on since, or it
    // would judge the next commit against an old tree and refuse it.
    for _ in 0..3 {
        a.sync(duty).await.unwrap();
        a.self_update(duty).await.unwrap();
        b.sync(duty).await.unwrap();
        b.self_update(duty).await.unwrap();
    }
    a.sync(duty).await.unwrap();
    b.sync(duty).await.unwrap();
    assert!(a.epoch(duty).unwrap() >= 6, "{:?}", a.epoch(duty));
    assert_eq!(a.epoch(duty), b.epoch(duty));
    assert_eq!(a.epoch_authenticator(duty), b.epoch_authenticator(duty));

    let mut logs = n1.stop();
    if let Some(n) = n2 {
        logs.push_str(&n.stop());
    }
    assert!(logs.contains("/api/v1/chat"), "the request log is there");
    for text in [text1, text2] {
        assert!(!logs.contains(text), "plaintext {text:?} in the logs");
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !logs.to_lowercase().contains(&hex),
            "plaintext (hex) in the logs"
        );
    }
}

#[tokio::test]
async fn the_member_cli_signs_in_reads_writes_and_exchanges_attachments() {
    use carebridge_client::Content;
    use carebridge_client::member::{Session, login};
    const PW: &str = "correct horse battery";
    let w = world().await;
    // Vera has an account (invited, password set) and is a member of the unit.
    let (st, p) =
        w.s.post(
            &w.admin,
            "/api/v1/orgs/acme/people",
            &json!({"given_name": "Vera", "family_name": "Muster", "unit_ids": [w.unit],
                    "emails": [{"value": "vera@example.org", "type": "work"}]}),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    let vera = p["id"].as_str().unwrap().to_string();
    let (st, inv) =
        w.s.post(
            &w.admin,
            &format!("/api/v1/orgs/acme/people/{vera}/invitation"),
            &serde_json::Value::Null,
        )
        .await;
    assert_eq!(st, 201, "{inv}");
    let b = carebridge_testkit::Browser::new(&w.s);
    let page = b.get(&w.s.mailed_link("vera@example.org").await).await;
    let r = b
        .submit(
            &page,
            "/account/password",
            &[("password", PW), ("repeat", PW)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (bob, bob_key) = w.person("Bob").await;
    let duty = w.duty(at(1, 0), at(1, 8)).await;
    w.assign(duty, &vera, "lead").await;
    w.assign(duty, &bob, "helper").await;
    w.step().await;

    // `carebridge-member login`: the device flow, approved in a browser while the CLI polls
    // (its waits move the test clock).
    let (tx, rx) = tokio::sync::oneshot::channel::<(String, String)>();
    let mut tx = Some(tx);
    let clock = w.s.clock.clone();
    // The CLI's waits end once the browser approved, and move the test clock by the interval.
    let (approved_tx, approved) = tokio::sync::watch::channel(false);
    let cli = login(
        &w.s.base,
        "Veras Laptop",
        |c| {
            assert!(!c.user_code.is_empty(), "{c:?}");
            tx.take()
                .unwrap()
                .send((
                    c.verification_uri_complete.clone().unwrap(),
                    c.user_code.clone(),
                ))
                .unwrap();
        },
        |d| {
            let mut approved = approved.clone();
            let clock = clock.clone();
            async move {
                approved.wait_for(|a| *a).await.unwrap();
                clock.advance(d);
            }
        },
    );
    let approve = async {
        let (uri, user_code) = rx.await.unwrap();
        let b = carebridge_testkit::Browser::new(&w.s);
        let page = b.get(&uri).await;
        let confirm = b.sign_in(&page, "vera@example.org", PW).await;
        assert!(
            confirm.body.contains("name=\"user_code\""),
            "{}",
            confirm.body
        );
        let done = b
            .submit(
                &confirm,
                "/oauth2/device",
                &[("user_code", &user_code), ("decision", "allow")],
            )
            .await;
        assert_eq!(done.status, 200, "{}", done.body);
        approved_tx.send(true).unwrap();
    };
    let (session, ()) = tokio::join!(cli, approve);
    let mut session = session.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("member.json");
    session.save(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the state file holds private keys");
    }

    // My duties, with the person's token.
    let mine = session.duties(Some(&at(-1, 0))).await.unwrap();
    assert!(
        mine.iter().any(|d| d.duty.id == duty && d.duty.chat),
        "{mine:?}"
    );
    // The CLI device opens the chat (creates the group); Bob's phone joins.
    let mut bob_phone = w.device(&bob_key, "Bobs Telefon").await;
    w.step().await;
    session.read(duty).await.unwrap();
    bob_phone.open(duty).await.unwrap();
    assert!(bob_phone.joined(duty));

    // Text both ways.
    session.send_text(duty, "Treffpunkt Zelt 3").await.unwrap();
    let got = bob_phone.sync(duty).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|r| Content::decode(&r.plaintext))
            .collect::<Vec<_>>(),
        vec![Content::text("Treffpunkt Zelt 3")]
    );
    bob_phone
        .send(duty, &Content::text("Bin unterwegs").encode())
        .await
        .unwrap();
    // An attachment from Bob: encrypted before upload, opened by the CLI.
    let secret = b"Einsatzplan-GEHEIM: Zelt 3 hinter der Buehne";
    let (_, plan) = bob_phone
        .send_attachment(duty, "../../etc/plan.pdf", "application/pdf", secret)
        .await
        .unwrap();
    session.save(&path).unwrap();
    let mut session = Session::load(&path).unwrap();
    let lines = session.read(duty).await.unwrap();
    let texts: Vec<&Content> = lines.iter().map(|l| &l.content).collect();
    assert_eq!(texts.len(), 3, "{lines:?}");
    assert_eq!(texts[0], &Content::text("Treffpunkt Zelt 3"));
    assert_eq!(texts[1], &Content::text("Bin unterwegs"));
    assert!(matches!(texts[2], Content::Attachment(a) if a.id == plan.id));
    // Who wrote: the CLI shows names, not device ids.
    let names = session.names(duty).await.unwrap();
    assert_eq!(
        names.get(&bob_phone.id).map(String::as_str),
        Some("Bob Muster"),
        "{names:?}"
    );
    let (a, data) = session.download(duty, plan.id).await.unwrap();
    assert_eq!(data, secret);
    assert_eq!(a.name, "../../etc/plan.pdf");
    // History survives a restart: reading again shows the same lines, nothing twice.
    session.save(&path).unwrap();
    let mut again = Session::load(&path).unwrap();
    assert_eq!(again.read(duty).await.unwrap(), lines);
    // A session whose copy of the chat broke rejoins: Bob's phone commits the removal and
    // the new Add, the history read so far stays, and new messages are readable again.
    again.rejoin(duty).await.unwrap();
    bob_phone.sync(duty).await.unwrap();
    bob_phone
        .send(duty, &Content::text("Nach dem Neustart").encode())
        .await
        .unwrap();
    let after = again.read(duty).await.unwrap();
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(after[..3], lines[..]);
    assert_eq!(after[3].content, Content::text("Nach dem Neustart"));
    // The CLI's own file goes the other way.
    let sent = again
        .send_file(duty, "foto.jpg", "image/jpeg", b"JPEG-Bytes-GEHEIM")
        .await
        .unwrap();
    let got = bob_phone.sync(duty).await.unwrap();
    let Content::Attachment(seen) = Content::decode(&got[0].plaintext) else {
        panic!("expected an attachment");
    };
    assert_eq!(seen, sent);
    assert_eq!(
        bob_phone.download(duty, &seen).await.unwrap(),
        b"JPEG-Bytes-GEHEIM"
    );
    again.save(&path).unwrap();

    // The server holds ciphertext only.
    assert_no_plaintext(&w.s, "Einsatzplan-GEHEIM").await;
    assert_no_plaintext(&w.s, "JPEG-Bytes-GEHEIM").await;
    assert_no_plaintext(&w.s, "Treffpunkt Zelt 3").await;

    // Attachments are for group members only, within the organisation's size limit.
    let raw = |token: String, path: String| {
        let url = w.s.url(&path);
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    let (_, carl_key) = w.person("Carl").await;
    let carl = w.device(&carl_key, "Carls Telefon").await;
    let blob = format!("/api/v1/chat/groups/{duty}/attachments/{}", plan.id);
    assert_eq!(raw(carl.token().to_string(), blob.clone()).await, 404);
    assert_eq!(raw(bob_phone.token().to_string(), blob).await, 200);
    let foreign = format!("/api/v1/chat/groups/{duty}/attachments/{}", Uuid::new_v4());
    assert_eq!(raw(bob_phone.token().to_string(), foreign).await, 404);
    let (st, set) =
        w.s.put(
            &w.admin,
            "/api/v1/orgs/acme/chat/settings",
            &json!({"writable_days": 2, "readable_days": 30, "attachment_max_bytes": 100}),
        )
        .await;
    assert_eq!(st, 200, "{set}");
    let e = bob_phone
        .send_attachment(duty, "big.bin", "application/octet-stream", &[7u8; 200])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, carebridge_client::ClientError::Api { status: 422, body } if body.contains("too_large")),
        "{e}"
    );
    // A chat holds at most 50 files' worth: the 51st full-size file is refused (the two small
    // ones sent earlier take less than one).
    let mut sent = 0;
    let refused = loop {
        match bob_phone
            .send_attachment(duty, "full.bin", "application/octet-stream", &[7u8; 100])
            .await
        {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent <= 50, "the quota holds");
    };
    assert!(
        matches!(&refused, carebridge_client::ClientError::Api { status: 409, body } if body.contains("quota_exceeded")),
        "{refused}"
    );
    assert_eq!(
        sent, 49,
        "50 files of 116 bytes (encrypted) minus the two small ones"
    );
    let (st, bad) =
        w.s.put(
            &w.admin,
            "/api/v1/orgs/acme/chat/settings",
            &json!({"writable_days": 2, "readable_days": 30, "attachment_max_bytes": -1}),
        )
        .await;
    assert_eq!(st, 422, "{bad}");

    // Logout: the device is removed on the server and the state file is gone.
    let mut last = Session::load(&path).unwrap();
    last.read(duty).await.unwrap();
    last.logout(&path).await.unwrap();
    assert!(!path.exists());
    let (st, devices) =
        w.s.get(
            &w.s.person_key(&w.admin, "acme", &vera, &[]).await,
            "/api/v1/chat/devices",
        )
        .await;
    assert_eq!(st, 200, "{devices}");
    assert_eq!(devices.as_array().unwrap().len(), 0, "{devices}");
}

#[tokio::test]
async fn concurrent_messages_are_written_together_and_each_checked_alone() {
    let w = world().await;
    let (anna, anna_key) = w.person("Anna").await;
    let (ben, ben_key) = w.person("Ben").await;
    let (clara, clara_key) = w.person("Clara").await;
    let (dora, dora_key) = w.person("Dora").await;
    let (emil, emil_key) = w.person("Emil").await;
    let one = w.duty(at(1, 0), at(1, 8)).await;
    let two = w.duty(at(2, 0), at(2, 8)).await;
    w.assign(one, &anna, "lead").await;
    let ben_there = w.assign(one, &ben, "helper").await;
    w.assign(one, &clara, "helper").await;
    w.assign(two, &dora, "lead").await;
    w.assign(two, &emil, "helper").await;
    w.step().await;
    let mut a = w.device(&anna_key, "a").await;
    let mut b = w.device(&ben_key, "b").await;
    let mut c = w.device(&clara_key, "c").await;
    let mut d = w.device(&dora_key, "d").await;
    let mut e = w.device(&emil_key, "e").await;
    for (dev, duty) in [
        (&mut a, one),
        (&mut b, one),
        (&mut c, one),
        (&mut d, two),
        (&mut e, two),
    ] {
        dev.open(duty).await.unwrap();
        assert!(dev.joined(duty));
    }
    // Ben leaves the roster; Anna commits his removal. His device does not know yet.
    w.unassign(one, &ben_there).await;
    w.step().await;
    a.sync(one).await.unwrap();
    c.sync(one).await.unwrap();

    // While the database's writer is busy, five messages of two groups queue up and are
    // written together once it is free; Ben's is refused on its own.
    let db = &w.s.running.state.db;
    let hold = if carebridge_testkit::on_postgres() {
        None
    } else {
        Some(db.begin().await.unwrap())
    };
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(hold);
    };
    let (ra, rc, rd, re, rb, ()) = tokio::join!(
        a.send(one, b"a: Zelt 3"),
        c.send(one, b"c: bin da"),
        d.send(two, b"d: Start 9 Uhr"),
        e.send(two, b"e: ok"),
        b.send(one, b"b: darf ich noch?"),
        release
    );
    let (sa, sc, sd, se) = (ra.unwrap(), rc.unwrap(), rd.unwrap(), re.unwrap());
    assert_ne!(sa, sc);
    assert_ne!(sd, se);
    assert!(
        matches!(
            &rb,
            Err(carebridge_client::ClientError::Api { status: 404, .. })
        ),
        "{rb:?}"
    );
    // Everyone reads the others' messages, in stream order, and nothing of Ben's.
    let texts = |v: Vec<Received>| v.into_iter().map(|r| r.plaintext).collect::<Vec<_>>();
    assert_eq!(
        texts(c.sync(one).await.unwrap()),
        vec![b"a: Zelt 3".to_vec()]
    );
    assert_eq!(
        texts(a.sync(one).await.unwrap()),
        vec![b"c: bin da".to_vec()]
    );
    assert_eq!(
        texts(e.sync(two).await.unwrap()),
        vec![b"d: Start 9 Uhr".to_vec()]
    );
    assert_eq!(texts(d.sync(two).await.unwrap()), vec![b"e: ok".to_vec()]);
    // The streams have no holes and no duplicates: the numbers the senders got are the rows.
    for (dev, duty, mine) in [(&a, one, sa), (&d, two, sd)] {
        let all = dev.fetch(duty, 0).await.unwrap().items;
        let seqs: Vec<i64> = all.iter().map(|m| m.seq).collect();
        // Strictly increasing (Welcomes of other devices are not in this device's stream).
        assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
        assert!(seqs.contains(&mine));
        assert_eq!(
            all.iter().filter(|m| m.kind == "application").count(),
            2,
            "{all:?}"
        );
    }
    // Later messages continue the numbering.
    let next = a.send(one, b"a: weiter").await.unwrap();
    assert!(next > sa.max(sc));
    // On PostgreSQL a group another transaction holds does not hold up the other groups: its
    // message waits alone, the rest of the batch goes through.
    if carebridge_testkit::on_postgres() {
        let mut hold = db.begin().await.unwrap();
        carebridge_store::exec!(&mut hold, c => carebridge_store::sqlx::query(
            "SELECT 1 FROM chat_rosters WHERE duty_id = $1 FOR UPDATE").bind(one).execute(c).await)
        .unwrap();
        let (waited, through) = tokio::join!(a.send(one, b"a: wartet"), async {
            let r = tokio::time::timeout(Duration::from_secs(10), d.send(two, b"d: durch"))
                .await
                .expect("a busy group held up another group");
            drop(hold);
            r
        });
        waited.unwrap();
        through.unwrap();
        assert_eq!(texts(c.sync(one).await.unwrap()).len(), 2);
        assert_eq!(
            texts(e.sync(two).await.unwrap()),
            vec![b"d: durch".to_vec()]
        );
    }
    let stats = carebridge_chat::service::batch_stats(&w.s.running.chat);
    assert_eq!(stats.failed, 0, "no batch fell back to one by one");
    if !carebridge_testkit::on_postgres() {
        assert!(
            stats.largest >= 2,
            "{stats:?}: the queued messages went in one transaction"
        );
    }
}

/// On PostgreSQL a roster event can commit after a later-numbered one was read: the worker
/// looks again at the recent window and applies it then (and only then: an event applied
/// once is not applied again). SQLite has one writer, so there the order is the commit order.
#[tokio::test]
async fn a_roster_event_that_commits_late_is_applied() {
    if !carebridge_testkit::on_postgres() {
        return;
    }
    let w = world().await;
    let (anna, _) = w.person("Anna").await;
    let (ben, _) = w.person("Ben").await;
    let one = w.duty(at(1, 0), at(1, 8)).await;
    let two = w.duty(at(2, 0), at(2, 8)).await;
    w.assign(one, &anna, "lead").await;
    w.step().await;
    let db = &w.s.running.state.db;
    let version = |duty: Uuid| async move {
        let mut c = db.read().await.unwrap();
        carebridge_chat::repo::roster(&mut c, duty)
            .await
            .unwrap()
            .map(|r| r.version)
    };
    let org: Uuid = {
        let (_, o) = w.s.get(&w.admin, "/api/v1/orgs/acme").await;
        o["id"].as_str().unwrap().parse().unwrap()
    };
    // A transaction takes the next event number for duty one and does not commit yet…
    let mut slow = db.begin().await.unwrap();
    let late = carebridge_store::rosters::emit(
        &mut slow,
        org,
        one,
        w.s.running.state.now().as_millisecond(),
    )
    .await
    .unwrap();
    // …while a later-numbered event of duty two commits and is read.
    w.assign(two, &ben, "lead").await;
    assert_eq!(w.step().await.rosters, 1);
    assert_eq!(version(two).await, Some(1));
    assert_eq!(version(one).await, Some(late - 1));
    // Now the first one commits: the next step finds it below the cursor and applies it.
    slow.commit().await.unwrap();
    assert_eq!(w.step().await.rosters, 1);
    assert_eq!(version(one).await, Some(late));
    // Applied once: later steps have nothing to do.
    assert_eq!(w.step().await.rosters, 0);
}

/// Posting resolves a device's credential from the process's cache; whether the device is
/// still registered and its person active is read again in every message's transaction. A
/// change the cache never heard of (made in the database, as by another node) stops the next
/// message at once; a removal through this node stops it too.
#[tokio::test]
async fn a_cached_device_credential_is_checked_again_with_every_message() {
    let w = world().await;
    let Pair {
        duty,
        ben,
        mut a,
        mut b,
        ..
    } = w.pair(at(1, 0), at(1, 8)).await;
    assert!(b.joined(duty));
    b.send(duty, b"eins").await.unwrap();

    let db = &w.s.running.state.db;
    let ben_id: Uuid = ben.parse().unwrap();
    let set_active = |on: bool| async move {
        let mut c = db.write().await.unwrap();
        carebridge_store::exec!(&mut c, c => carebridge_store::sqlx::query(
            "UPDATE people SET active = $1 WHERE id = $2").bind(on).bind(ben_id).execute(c).await)
        .unwrap();
    };
    set_active(false).await;
    let e = b.send(duty, b"zwei").await.unwrap_err();
    assert!(
        matches!(&e, carebridge_client::ClientError::Api { status: 403, body } if body.contains("no longer active")),
        "{e}"
    );
    set_active(true).await;
    b.send(duty, b"drei").await.unwrap();

    let (st, _) =
        w.s.delete(b.token(), &format!("/api/v1/chat/devices/{}", b.id))
            .await;
    assert_eq!(st, 204);
    let e = b.send(duty, b"vier").await.unwrap_err();
    assert!(
        matches!(&e, carebridge_client::ClientError::Api { status: 401, .. }),
        "{e}"
    );
    let read: Vec<Vec<u8>> = a
        .sync(duty)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.plaintext)
        .collect();
    assert_eq!(read, vec![b"eins".to_vec(), b"drei".to_vec()]);
}
