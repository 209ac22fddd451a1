//! Personal calendar feeds: a secret URL (`/calendar/v1/<feed id>_<secret>.ics`) that calendar
//! apps poll without signing in. The secret (256 random bits) is stored as a SHA-256 digest and
//! compared in constant time; revoking the feed stops the URL at once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_domain::auth::Actor;
use carebridge_domain::{FeedId, OrgId, Timestamp};
use carebridge_proto::duties::{CalendarFeed, CreatedCalendarFeed};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, audit};
use carebridge_web::ServiceError;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::ical;
use crate::repo::{assignments as assignments_repo, duties as duties_repo, feeds as repo};

/// How far back and ahead a feed reaches.
const PAST_DAYS: i64 = 90;
const MAX_EVENTS: i64 = 2_000;

fn me(actor: &Actor) -> Result<(OrgId, Uuid), ServiceError> {
    actor
        .principal
        .person()
        .map(|(o, p)| (o, p.0))
        .ok_or(ServiceError::Forbidden {
            detail: "calendar feeds belong to a person: use a personal credential".into(),
        })
}

/// Creates a feed for the caller; the URL (with its secret) is in this answer only.
pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    now: Timestamp,
) -> Result<CreatedCalendarFeed, ServiceError> {
    let (_, person) = me(actor)?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| {
        ServiceError::Store(carebridge_store::StoreError::Corrupt(format!(
            "no randomness: {e}"
        )))
    })?;
    let digest: [u8; 32] = Sha256::digest(secret).into();
    let id = FeedId::generate(now).0;
    let mut tx = db.begin().await?;
    repo::insert(&mut tx, org.id, person, id, &digest, now.as_millisecond()).await?;
    let feed = CalendarFeed {
        id,
        created_at: now,
        revoked_at: None,
        last_used_at: None,
    };
    audit::record(
        &mut tx,
        org.id,
        actor,
        "calendar_feed.create",
        "calendar_feed",
        &id.to_string(),
        None::<&CalendarFeed>,
        Some(&feed),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedCalendarFeed {
        feed,
        url: format!(
            "/calendar/v1/{}_{}.ics",
            id.simple(),
            URL_SAFE_NO_PAD.encode(secret)
        ),
    })
}

pub async fn list(db: &Db, actor: &Actor, org: &OrgRef) -> Result<Vec<CalendarFeed>, ServiceError> {
    let (_, person) = me(actor)?;
    let mut c = db.read().await?;
    Ok(repo::of_person(&mut c, org.id, person).await?)
}

pub async fn revoke(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    now: Timestamp,
) -> Result<CalendarFeed, ServiceError> {
    let (_, person) = me(actor)?;
    let mut tx = db.begin().await?;
    let f = repo::revoke(&mut tx, org.id, person, id, now.as_millisecond())
        .await?
        .ok_or(ServiceError::NotFound {
            what: "calendar feed",
        })?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "calendar_feed.revoke",
        "calendar_feed",
        &id.to_string(),
        None::<&CalendarFeed>,
        Some(&f),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(f)
}

/// The feed's calendar (`text/calendar`), or `None` for anything that is not a live feed.
pub async fn render(
    db: &Db,
    presented: &str,
    now: Timestamp,
) -> Result<Option<String>, ServiceError> {
    let Some((id, secret)) = presented
        .strip_suffix(".ics")
        .and_then(|t| t.split_once('_'))
    else {
        return Ok(None);
    };
    let (Ok(id), Ok(secret)) = (Uuid::try_parse(id), URL_SAFE_NO_PAD.decode(secret)) else {
        return Ok(None);
    };
    let mut c = db.read().await?;
    let Some((org, person, stored, last_used)) = repo::lookup(&mut c, id).await? else {
        return Ok(None);
    };
    let digest: [u8; 32] = Sha256::digest(&secret).into();
    if !bool::from(stored.as_slice().ct_eq(&digest[..])) {
        return Ok(None);
    }
    let org = OrgId(org);
    let from = now.as_millisecond() - PAST_DAYS * 86_400_000;
    let rows = assignments_repo::of_person_between(
        &mut c,
        org,
        person,
        from,
        i64::MAX,
        None,
        None,
        MAX_EVENTS,
    )
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|(_, a)| a.duty_id).collect();
    let duties = duties_repo::get_many(&mut c, org, &ids).await?;
    drop(c);
    if last_used.is_none_or(|t| now.as_millisecond() - t > 60_000) {
        let mut tx = db.begin().await?;
        repo::touch(&mut tx, id, now.as_millisecond()).await?;
        tx.commit().await?;
    }
    let items: Vec<_> = rows
        .into_iter()
        .map(|(_, a)| a)
        .zip(duties.into_iter().map(|s| s.duty))
        .collect();
    Ok(Some(ical::calendar(&items, now)))
}
