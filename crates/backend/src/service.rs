//! Organisation rules: creation (platform operators, the set-up flow and the CLI), reads,
//! updates with optimistic concurrency, feature switches (with tenant provisioning), and the
//! audit log of an organisation.

use carebridge_domain::audit::verify;
use carebridge_domain::auth::Actor;
use carebridge_domain::org::{OrgDraft, check_language, check_region};
use carebridge_domain::time::from_millis;
use carebridge_domain::validate::bounded_text;
use carebridge_domain::{OrgId, Timestamp, Violations};
use carebridge_proto::Page;
use carebridge_proto::audit::{AuditEvent, AuditVerification};
use carebridge_proto::duties::{Feature, SetFeature};
use carebridge_proto::org::{CreateOrg, Org, UpdateOrg};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Tx, audit, features};
use carebridge_web::idem::{self, Idem, Outcome};
use carebridge_web::{CursorKey, ServiceError};

use crate::repo;

/// Validates a create request.
pub fn draft(input: &CreateOrg) -> Result<OrgDraft, Violations> {
    OrgDraft::validate(
        &input.slug,
        &input.name,
        &input.default_region,
        &input.default_language,
        input.contact_email.as_deref(),
    )
}

/// Creates an organisation inside `tx` (used by the API, the set-up flow, the CLI and the demo).
pub async fn create_in(
    tx: &mut Tx,
    actor: &Actor,
    d: OrgDraft,
    now: Timestamp,
) -> Result<Org, ServiceError> {
    if repo::slug_taken(tx, &d.slug).await? {
        return Err(ServiceError::Invalid(Violations::single(
            "/slug",
            "slug_taken",
            format!("'{}' is already in use", d.slug),
        )));
    }
    let o = Org {
        id: OrgId::generate(now).0,
        slug: d.slug,
        name: d.name,
        default_region: d.default_region,
        default_language: d.default_language,
        contact_email: d.contact_email,
        discoverable: false,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    repo::insert(tx, &o).await?;
    audit::record(
        tx,
        OrgId(o.id),
        actor,
        "org.create",
        "organisation",
        &o.id.to_string(),
        None::<&Org>,
        Some(&o),
        now,
    )
    .await?;
    Ok(o)
}

/// `POST /orgs`: platform operators only.
pub async fn create(
    db: &Db,
    actor: &Actor,
    input: CreateOrg,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<Org>, ServiceError> {
    if !actor.principal.is_platform() {
        return Err(ServiceError::Forbidden {
            detail: "creating organisations needs a platform credential".into(),
        });
    }
    let d = draft(&input)?;
    idem::create(db, idem, now.as_millisecond(), async |tx| {
        create_in(tx, actor, d, now).await
    })
    .await
}

pub async fn get(db: &Db, org: &OrgRef) -> Result<Org, ServiceError> {
    let mut c = db.read().await?;
    repo::get(&mut c, org.id)
        .await?
        .ok_or(ServiceError::NotFound {
            what: "organisation",
        })
}

/// Organisations the caller can see: all for platform operators, else its own.
pub async fn list(
    db: &Db,
    actor: &Actor,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Org>, ServiceError> {
    let after: Option<String> = cursor.decode_opt("orgs", after)?;
    let mut c = db.read().await?;
    if !actor.principal.is_platform() {
        let own = match actor.principal.org() {
            Some(id) if after.is_none() => repo::get(&mut c, id).await?,
            _ => None,
        };
        return Ok(Page {
            items: own.into_iter().collect(),
            next_cursor: None,
        });
    }
    let items = repo::page(&mut c, after.as_deref(), limit + 1).await?;
    Ok(cursor.page("orgs", items, limit, |o| o.slug.clone()))
}

/// `PATCH /orgs/{org}` with `If-Match`.
pub async fn update(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    if_match: i64,
    patch: UpdateOrg,
    now: Timestamp,
) -> Result<Org, ServiceError> {
    let mut tx = db.begin().await?;
    let before = repo::get(&mut tx, org.id)
        .await?
        .ok_or(ServiceError::NotFound {
            what: "organisation",
        })?;
    if before.version != if_match {
        return Err(ServiceError::VersionMismatch {
            current: before.version,
        });
    }
    let mut v = Violations::new();
    let mut after = before.clone();
    if let Some(n) = &patch.name {
        after.name = bounded_text(&mut v, "/name", n, 1, 200);
    }
    if let Some(r) = &patch.default_region {
        check_region(&mut v, "/default_region", r);
        after.default_region = r.clone();
    }
    if let Some(l) = &patch.default_language {
        check_language(&mut v, "/default_language", l);
        after.default_language = l.clone();
    }
    if let Some(e) = &patch.contact_email {
        after.contact_email = e
            .as_ref()
            .map(|e| carebridge_domain::person::normalise_email(&mut v, "/contact_email", e));
    }
    if let Some(d) = patch.discoverable {
        after.discoverable = d;
    }
    v.into_result()?;
    if after == before {
        return Ok(before);
    }
    after.version += 1;
    after.updated_at = now;
    if !repo::update(&mut tx, &after, before.version).await? {
        return Err(ServiceError::VersionMismatch {
            current: before.version,
        });
    }
    audit::record(
        &mut tx,
        org.id,
        actor,
        "org.update",
        "organisation",
        &org.id.to_string(),
        Some(&before),
        Some(&after),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

fn event(r: carebridge_domain::audit::AuditRecord) -> AuditEvent {
    AuditEvent {
        seq: r.seq,
        at: from_millis(r.at_ms),
        actor: r.actor,
        action: r.action,
        target_type: r.target_type,
        target_id: r.target_id,
        before_digest: r.before_digest,
        after_digest: r.after_digest,
        source: r.source,
        prev_hash: r.prev_hash,
        hash: r.hash,
    }
}

/// The audit log, newest first.
pub async fn audit_page(
    db: &Db,
    org: &OrgRef,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
    filter: &audit::AuditFilter,
) -> Result<Page<AuditEvent>, ServiceError> {
    let mut v = carebridge_domain::Violations::default();
    for (name, f) in [
        ("target", &filter.target),
        ("actor", &filter.actor),
        ("action", &filter.action),
    ] {
        if f.as_ref().is_some_and(|f| f.is_empty() || f.len() > 200) {
            v.push(
                format!("/query/{name}"),
                "invalid_filter",
                "must be 1 to 200 characters",
            );
        }
    }
    v.into_result()?;
    // A cursor belongs to one filter: the filter is part of the listing's name.
    let kind = format!(
        "audit\u{1f}{}\u{1f}{}\u{1f}{}",
        filter.target.as_deref().unwrap_or(""),
        filter.actor.as_deref().unwrap_or(""),
        filter.action.as_deref().unwrap_or("")
    );
    let before: Option<i64> = cursor.decode_opt(&kind, after)?;
    let mut c = db.read().await?;
    let rows = audit::page_desc(
        &mut c,
        org.id,
        before.unwrap_or(i64::MAX),
        limit + 1,
        filter,
    )
    .await?;
    let page = cursor.page(&kind, rows, limit, |r| r.seq);
    Ok(Page {
        items: page.items.into_iter().map(event).collect(),
        next_cursor: page.next_cursor,
    })
}

/// Walks `org`'s whole chain in batches and checks every link and the recorded head.
pub async fn verify_chain(db: &Db, org: OrgId) -> Result<AuditVerification, ServiceError> {
    let mut c = db.read().await?;
    let head = audit::head(&mut c, org).await?;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let batch = audit::page(&mut c, org, after, 5000).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        all.extend(batch);
    }
    Ok(
        match verify(org, &all, head.as_ref().map(|(s, h)| (*s, h.as_str()))) {
            Ok(n) => AuditVerification {
                ok: true,
                events_checked: n,
                error: None,
            },
            Err(e) => AuditVerification {
                ok: false,
                events_checked: 0,
                error: Some(e.to_string()),
            },
        },
    )
}

fn feature_name(name: &str) -> Result<&'static str, ServiceError> {
    features::KNOWN
        .iter()
        .find(|(f, _)| *f == name)
        .map(|(f, _)| *f)
        .ok_or(ServiceError::NotFound { what: "feature" })
}

/// A feature's state (`enabled: false` and no tenant when never switched on).
pub async fn feature(db: &Db, org: &OrgRef, name: &str) -> Result<Feature, ServiceError> {
    let name = feature_name(name)?;
    let mut c = db.read().await?;
    let f = features::get(&mut c, org.id.0, name).await?;
    Ok(Feature {
        feature: name.into(),
        enabled: f.as_ref().map_or(features::default_of(name), |f| f.enabled),
        tenant_id: f.as_ref().map(|f| f.tenant_id),
        changed_at: f.map(|f| from_millis(f.changed_at)),
    })
}

/// Switches a feature; the first switch-on provisions the feature's tenant. Audited.
pub async fn set_feature(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    name: &str,
    input: SetFeature,
    now: Timestamp,
) -> Result<Feature, ServiceError> {
    let name = feature_name(name)?;
    let mut tx = db.begin().await?;
    let before = features::get(&mut tx, org.id.0, name).await?;
    let was = before
        .as_ref()
        .map_or(features::default_of(name), |f| f.enabled);
    if was == input.enabled {
        drop(tx);
        return feature(db, org, name).await;
    }
    let f = features::set(
        &mut tx,
        org.id.0,
        name,
        input.enabled,
        carebridge_domain::ids::new_v7(now),
        now.as_millisecond(),
    )
    .await?;
    let out = Feature {
        feature: name.into(),
        enabled: f.enabled,
        tenant_id: Some(f.tenant_id),
        changed_at: Some(from_millis(f.changed_at)),
    };
    let action = match (before.is_none(), input.enabled) {
        (true, true) => "feature.provision",
        (false, true) => "feature.enable",
        (_, false) => "feature.disable",
    };
    audit::record(
        &mut tx,
        org.id,
        actor,
        action,
        "feature",
        name,
        None::<&Feature>,
        Some(&out),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

// ---- the outbox ----------------------------------------------------------------------------

/// The organisation's e-mail and SMS messages, newest first (bodies never shown).
pub async fn outbox_page(
    db: &Db,
    org: &OrgRef,
    cursor: &CursorKey,
    q: &carebridge_proto::outbox::OutboxQuery,
    limit: i64,
) -> Result<Page<carebridge_proto::outbox::OutboxMessage>, ServiceError> {
    if let Some(st) = &q.state
        && !matches!(
            st.as_str(),
            "pending" | "sending" | "sent" | "dead" | "sink"
        )
    {
        return Err(Violations::single(
            "/query/state",
            "invalid_state",
            "one of pending, sending, sent, dead, sink",
        )
        .into());
    }
    let kind = format!("outbox\u{1f}{}", q.state.as_deref().unwrap_or(""));
    let before: Option<i64> = cursor.decode_opt(&kind, q.cursor.as_deref())?;
    let mut c = db.read().await?;
    let rows = carebridge_store::outbox::page(
        &mut c,
        org.id.0,
        q.state.as_deref(),
        before.unwrap_or(i64::MAX),
        limit + 1,
    )
    .await?;
    let page = cursor.page(&kind, rows, limit, |r| r.seq);
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|r| carebridge_proto::outbox::OutboxMessage {
                id: r.id,
                channel: r.channel,
                recipient: r.recipient,
                subject: r.subject,
                purpose: r.purpose,
                state: r.state,
                attempts: r.attempts,
                created_at: from_millis(r.created_at),
                sent_at: r.sent_at.map(from_millis),
                next_attempt_at: r.next_attempt_at.map(from_millis),
                last_error: r.last_error,
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
}

/// Sends a given-up (or waiting) message again now; audited as `outbox.retry`.
pub async fn outbox_retry(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: uuid::Uuid,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    let Some(state) = carebridge_store::outbox::state_of(&mut tx, org.id.0, id).await? else {
        return Err(ServiceError::NotFound { what: "message" });
    };
    if !carebridge_store::outbox::retry(&mut tx, org.id.0, id).await? {
        return Err(ServiceError::Conflict {
            code: "not_retryable",
            detail: format!("a message in state '{state}' is not sent again"),
        });
    }
    audit::record(
        &mut tx,
        org.id,
        actor,
        "outbox.retry",
        "message",
        &id.to_string(),
        Some(&serde_json::json!({ "state": state })),
        Some(&serde_json::json!({ "state": "pending" })),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
