//! `carebridge bench --scenario chat`: the duty chat against the real server (a child process)
//! with real MLS devices (`carebridge-client`) over HTTP and WebSockets. Measured:
//! - fan-out: one device sends 300 messages (100/s) to a group of 100 connected devices;
//!   latency from the send to each WebSocket frame;
//! - throughput: 100 groups × 10 devices, one sender per group flat out; delivered frames/s;
//! - membership: on a 500-person duty, "save assignment" (POST) → server proposal → the one
//!   online member device commits → the commit is accepted; and the server's validation cost
//!   of one commit (`mls::apply_commit`) for groups of 10, 100 and 500;
//! - idle connections: 10,000 WebSockets held open, server RSS before and after.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use carebridge_client::Device;
use carebridge_domain::Clock;
use carebridge_domain::time::SystemClock;
use carebridge_proto::chat::Frame;
use carebridge_proto::org::CreateOrg;
use carebridge_store::sqlx;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::bench::{BenchArgs, percentiles, rss_kib, seed, spawn_server};
use crate::bench_duties::personal_key;

const SLUG: &str = "chatbench";
const PEOPLE: usize = 1_100;

struct Api {
    http: reqwest::Client,
    base: String,
    admin: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .json(body)
            .send()
            .await?;
        let st = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !st.is_success() {
            bail!("{path}: {st} {v}");
        }
        Ok(v)
    }

    async fn duty(&self, unit: &str, title: &str, people: &[Uuid]) -> anyhow::Result<Uuid> {
        let now = SystemClock.now();
        let d = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{SLUG}/duties"),
                &json!({"unit_id": unit, "title": title, "starts_at": now.to_string(),
                        "ends_at": (now + jiff::SignedDuration::from_hours(8)).to_string()}),
            )
            .await?;
        let id: Uuid = d["id"].as_str().context("duty id")?.parse()?;
        for p in people {
            self.assign(id, *p).await?;
        }
        Ok(id)
    }

    async fn assign(&self, duty: Uuid, person: Uuid) -> anyhow::Result<String> {
        let a = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{SLUG}/duties/{duty}/assignments"),
                &json!({"person_id": person, "chat": true}),
            )
            .await?;
        Ok(a["id"].as_str().context("assignment id")?.to_string())
    }
}

pub async fn run(_args: BenchArgs, config: crate::config::Config) -> anyhow::Result<()> {
    let db = crate::open_db(&config, None).await?;
    let now = SystemClock.now();
    if crate::commands::resolve(&db, SLUG).await.is_ok() {
        bail!("organisation '{SLUG}' exists; use a fresh database");
    }
    let org = crate::commands::org_create(
        &db,
        CreateOrg {
            slug: SLUG.into(),
            name: "Chat bench".into(),
            default_region: "CH".into(),
            default_language: "de".into(),
            contact_email: None,
        },
        now,
    )
    .await?;
    let people = seed(&db, org.id, PEOPLE, now.as_millisecond()).await?;
    let mut keys = Vec::with_capacity(PEOPLE);
    for p in &people {
        keys.push(personal_key(&db, org.id, *p, &["duties:read"]).await?);
    }
    let admin = crate::commands::apikey_create(&db, Some(SLUG), "bench", vec![], now)
        .await?
        .secret;
    db.close().await;
    let (mut child, base, pid, http) = spawn_server(&config).await?;
    let api = Api {
        http,
        base: base.clone(),
        admin,
    };
    api.call(
        reqwest::Method::PUT,
        &format!("/api/v1/orgs/{SLUG}/features/chat"),
        &json!({"enabled": true}),
    )
    .await?;
    let unit = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/orgs/{SLUG}/units"),
            &json!({"name": "Bench"}),
        )
        .await?["id"]
        .as_str()
        .context("unit id")?
        .to_string();

    // Devices: one per person, each with enough KeyPackages for its groups.
    let t = Instant::now();
    let mut devices: Vec<Option<Device>> = Vec::with_capacity(PEOPLE);
    for (i, k) in keys.iter().enumerate() {
        devices.push(Some(
            Device::register(&base, k, &format!("bench {i}"), 3).await?,
        ));
    }
    println!(
        "registered {PEOPLE} devices (3 KeyPackages + last resort each) in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let hundred = fanout(&api, &unit, &people, &mut devices).await?;
    let ten = throughput(&api, &unit, &people, &mut devices).await?;
    let big = membership(&api, &unit, &people, &mut devices).await?;
    validation(
        &config,
        &mut devices,
        &[(10, ten), (100, hundred), (520, big)],
    )
    .await?;
    idle(&devices, pid).await?;

    child.kill().await.ok();
    Ok(())
}

/// Opens the chat of `duty` on the first device (creates the group, commits the adds) and
/// joins the others.
async fn form(duty: Uuid, members: &mut [&mut Device]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let Some((first, rest)) = members.split_first_mut() else {
        bail!("no members");
    };
    first.open(duty).await?;
    for d in rest.iter_mut() {
        d.open(duty).await?;
        if !d.joined(duty) {
            bail!("device {} did not join {duty}", d.id);
        }
    }
    Ok(t.elapsed())
}

fn take(devices: &mut [Option<Device>], range: std::ops::Range<usize>) -> Vec<Device> {
    range.filter_map(|i| devices[i].take()).collect()
}

fn put_back(devices: &mut [Option<Device>], start: usize, ds: Vec<Device>) {
    for (i, d) in ds.into_iter().enumerate() {
        devices[start + i] = Some(d);
    }
}

async fn fanout(
    api: &Api,
    unit: &str,
    people: &[Uuid],
    devices: &mut [Option<Device>],
) -> anyhow::Result<Uuid> {
    const N: usize = 100;
    const MESSAGES: usize = 300;
    let duty = api.duty(unit, "fan-out", &people[..N]).await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // the worker applies the roster
    let mut ds = take(devices, 0..N);
    let mut refs: Vec<&mut Device> = ds.iter_mut().collect();
    let formed = form(duty, &mut refs).await?;
    println!(
        "fan-out group of {N} formed (create, 99 adds committed, 99 joins) in {:.2}s",
        formed.as_secs_f64()
    );
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(MESSAGES)));
    let mut tasks = Vec::new();
    for d in &ds[1..] {
        let mut s = d.connect().await?;
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(MESSAGES);
            let mut n = 0;
            while n < MESSAGES {
                match tokio::time::timeout(Duration::from_secs(20), s.next()).await {
                    Ok(Ok(Some(Frame::Message { message }))) if message.kind == "application" => {
                        let at = Instant::now();
                        let t0 = sent.lock().await.get(n).copied();
                        if let Some(t0) = t0 {
                            lat.push(at.saturating_duration_since(t0));
                        }
                        n += 1;
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => break,
                }
            }
            lat
        }));
    }
    let sender = &mut ds[0];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 0..MESSAGES {
        tick.tick().await;
        sent.lock().await.push(Instant::now());
        sender
            .send(duty, format!("fan-out message {i}").as_bytes())
            .await?;
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    println!(
        "fan-out, 1 sender → 99 connected devices, {MESSAGES} messages at 100/s: delivery {}",
        percentiles(all)
    );
    put_back(devices, 0, ds);
    Ok(duty)
}

async fn throughput(
    api: &Api,
    unit: &str,
    people: &[Uuid],
    devices: &mut [Option<Device>],
) -> anyhow::Result<Uuid> {
    const GROUPS: usize = 100;
    const SIZE: usize = 10;
    const PER_SENDER: usize = 200;
    let mut duties = Vec::with_capacity(GROUPS);
    for g in 0..GROUPS {
        duties.push(
            api.duty(
                unit,
                &format!("throughput {g}"),
                &people[g * SIZE..(g + 1) * SIZE],
            )
            .await?,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ds = take(devices, 0..GROUPS * SIZE);
    let t = Instant::now();
    for (g, chunk) in ds.chunks_mut(SIZE).enumerate() {
        let mut refs: Vec<&mut Device> = chunk.iter_mut().collect();
        form(duties[g], &mut refs).await?;
    }
    println!(
        "{GROUPS} groups of {SIZE} formed in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // Every device but the senders listens; count application frames of these groups.
    let expected = GROUPS * PER_SENDER * (SIZE - 1);
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut listeners = Vec::new();
    let wanted: Arc<std::collections::HashSet<Uuid>> = Arc::new(duties.iter().copied().collect());
    for (i, d) in ds.iter().enumerate() {
        if i % SIZE == 0 {
            continue;
        }
        let mut s = d.connect().await?;
        let received = received.clone();
        let wanted = wanted.clone();
        listeners.push(tokio::spawn(async move {
            let mut n = 0;
            while n < PER_SENDER {
                match tokio::time::timeout(Duration::from_secs(30), s.next()).await {
                    Ok(Ok(Some(Frame::Message { message })))
                        if message.kind == "application" && wanted.contains(&message.duty_id) =>
                    {
                        n += 1;
                        received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => break,
                }
            }
            Instant::now()
        }));
    }
    let start = Instant::now();
    let mut senders = Vec::new();
    let mut pool: Vec<Option<Device>> = ds.into_iter().map(Some).collect();
    for g in 0..GROUPS {
        let mut d = pool[g * SIZE].take().context("sender")?;
        let duty = duties[g];
        senders.push(tokio::spawn(async move {
            for i in 0..PER_SENDER {
                d.send(duty, format!("m{i}").as_bytes()).await?;
            }
            Ok::<Device, anyhow::Error>(d)
        }));
    }
    for (g, s) in senders.into_iter().enumerate() {
        pool[g * SIZE] = Some(s.await??);
    }
    let sent_in = start.elapsed();
    let mut last = start;
    for l in listeners {
        last = last.max(l.await?);
    }
    let got = received.load(std::sync::atomic::Ordering::Relaxed);
    let took = last.saturating_duration_since(start);
    println!(
        "throughput, {GROUPS} groups × {SIZE} devices, one sender per group: {} messages sent in {:.2}s ({:.0}/s), {got}/{expected} frames delivered in {:.2}s = {:.0} delivered/s",
        GROUPS * PER_SENDER,
        sent_in.as_secs_f64(),
        (GROUPS * PER_SENDER) as f64 / sent_in.as_secs_f64(),
        took.as_secs_f64(),
        got as f64 / took.as_secs_f64()
    );
    let back: Vec<Device> = pool.into_iter().flatten().collect();
    put_back(devices, 0, back);
    Ok(duties[0])
}

async fn membership(
    api: &Api,
    unit: &str,
    people: &[Uuid],
    devices: &mut [Option<Device>],
) -> anyhow::Result<Uuid> {
    const BIG: usize = 500;
    const CHANGES: usize = 100;
    let duty = api.duty(unit, "big", &people[..BIG]).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut lead = devices[0].take().context("device 0")?;
    let t = Instant::now();
    lead.open(duty).await?;
    println!(
        "group of {BIG} created and its {} adds committed by one device in {:.2}s",
        BIG - 1,
        t.elapsed().as_secs_f64()
    );
    let mut socket = lead.connect().await?;
    // Save assignment → committed epoch on the online device.
    let mut lat = Vec::with_capacity(CHANGES);
    let (mut saved, mut proposed) = (Vec::new(), Vec::new());
    for i in 0..CHANGES {
        let person = people[BIG + i];
        let epoch = lead.epoch(duty).context("epoch")?;
        let t0 = Instant::now();
        api.assign(duty, person).await?;
        saved.push(t0.elapsed());
        let mut first = true;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                Ok(Ok(Some(Frame::Message { message }))) if message.duty_id == duty => {
                    if first {
                        proposed.push(t0.elapsed());
                        first = false;
                    }
                    lead.process(duty, &message)?;
                    if lead.has_pending(duty) {
                        lead.sync(duty).await?;
                    }
                    if lead.epoch(duty) > Some(epoch) {
                        break;
                    }
                }
                Ok(Ok(Some(_))) => {}
                other => bail!("no proposal arrived: {other:?}"),
            }
        }
        lat.push(t0.elapsed());
    }
    println!(
        "membership on a {BIG}-person duty: save assignment → committed epoch on the online device: {}",
        percentiles(lat)
    );
    println!(
        "  of which: the assignment saved (HTTP answer) {}; the server's proposal on the device's socket {}",
        percentiles(saved),
        percentiles(proposed)
    );
    devices[0] = Some(lead);
    Ok(duty)
}

/// The server's validation cost of one commit (`mls::apply_commit`: parse, verify, stage,
/// merge, save the state), by group size, in this process: from the stored public state, and
/// on the loaded state a node keeps between commits (`mls::apply`).
async fn validation(
    config: &crate::config::Config,
    devices: &mut [Option<Device>],
    groups: &[(usize, Uuid)],
) -> anyhow::Result<()> {
    let db = crate::open_db(config, None).await?;
    let d = devices[0].as_mut().context("device 0")?;
    for (size, duty) in groups {
        d.sync(*duty).await?;
        let mut c = db.read().await?;
        let state: Vec<u8> = carebridge_store::run!(&mut c, c => sqlx::query_scalar(
            "SELECT state FROM chat_groups WHERE duty_id = $1").bind(*duty).fetch_one(c).await)?;
        drop(c);
        let commit = d.prepare_self_update(*duty)?;
        let mut times = Vec::with_capacity(20);
        for _ in 0..20 {
            let t = Instant::now();
            carebridge_chat::mls::apply_commit(&state, &[], &commit)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            times.push(t.elapsed());
        }
        println!(
            "server validation of one commit, group of {size} ({} KiB public state), from the stored state: {}",
            state.len() / 1024,
            percentiles(times)
        );
        // As a node does for a group it committed last: the loaded state kept in memory.
        let mut warm = Vec::with_capacity(20);
        for _ in 0..20 {
            let g =
                carebridge_chat::mls::Group::load(&state).map_err(|e| anyhow::anyhow!("{e}"))?;
            let t = Instant::now();
            carebridge_chat::mls::apply(g, &[], &commit).map_err(|e| anyhow::anyhow!("{e}"))?;
            warm.push(t.elapsed());
        }
        println!(
            "  the same on the state kept in memory since the group's last commit: {}",
            percentiles(warm)
        );
    }
    db.close().await;
    Ok(())
}

/// Holds 10,000 idle WebSockets (spread over the registered devices) and reports the server's
/// resident memory before and after.
async fn idle(devices: &[Option<Device>], pid: u32) -> anyhow::Result<()> {
    const SOCKETS: usize = 10_000;
    let before = rss_kib(pid).unwrap_or(0);
    let ds: Vec<&Device> = devices.iter().flatten().collect();
    let mut held = Vec::with_capacity(SOCKETS);
    let t = Instant::now();
    for i in 0..SOCKETS {
        held.push(ds[i % ds.len()].connect().await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid).unwrap_or(0);
    println!(
        "{SOCKETS} idle WebSockets opened in {:.1}s: server RSS {} MiB before, {} MiB with them ({:.1} KiB per socket)",
        t.elapsed().as_secs_f64(),
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / SOCKETS as f64
    );
    drop(held);
    Ok(())
}
