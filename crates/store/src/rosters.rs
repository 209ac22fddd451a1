//! Roster events: every change of a duty's roster bumps its `roster_version` and appends its
//! complete new roster to the event outbox (topic [`TOPIC`]) in the same transaction. This
//! lives in `store` because more than one role changes rosters: the duties role (assign,
//! unassign, cancel, move) and the directory (a person deleted or deactivated leaves every
//! roster). The payload's field names are the wire type `proto::duties::Roster`.

use serde_json::json;
use uuid::Uuid;

use crate::{StoreError, Tx, events};

/// Event topic of roster changes.
pub const TOPIC: &str = "duty.roster";

/// Bumps the roster version of `duty` and appends its complete roster as an event. A
/// cancelled duty's roster is empty. Returns the new roster version.
pub async fn emit(tx: &mut Tx, org: Uuid, duty: Uuid, now_ms: i64) -> Result<i64, StoreError> {
    exec!(tx, c => sqlx::query(
        "UPDATE duties SET roster_version = roster_version + 1 WHERE org_id = $1 AND id = $2")
        .bind(org).bind(duty).execute(c).await)?;
    let d: Option<(i64, String, bool, i64, i64)> = run!(tx, c => sqlx::query_as(
        "SELECT roster_version, state, chat, starts_at, ends_at FROM duties WHERE org_id = $1 AND id = $2")
        .bind(org).bind(duty).fetch_optional(c).await)?;
    let Some((version, state, chat, starts, ends)) = d else {
        return Err(StoreError::Corrupt(format!("duty {duty} vanished")));
    };
    let lines: Vec<(Uuid, String, Option<Uuid>)> = if state == "cancelled" {
        Vec::new()
    } else {
        run!(tx, c => sqlx::query_as(
            "SELECT person_id, role, position_id FROM assignments WHERE org_id = $1 AND duty_id = $2 AND status = 'confirmed' ORDER BY person_id")
            .bind(org).bind(duty).fetch_all(c).await)?
    };
    let ts = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_string())
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    };
    let payload = json!({
        "duty_id": duty,
        "org_id": org,
        "roster_version": version,
        "state": state,
        "chat": chat,
        "starts_at": ts(starts)?,
        "ends_at": ts(ends)?,
        "roster": lines.iter().map(|(p, role, pos)| json!({
            "person_id": p, "role": role, "position_id": pos,
        })).collect::<Vec<_>>(),
    });
    events::append(tx, org, TOPIC, duty, &payload.to_string(), now_ms).await?;
    if chat && state != "cancelled" {
        let people: Vec<Uuid> = lines.iter().map(|(p, _, _)| *p).collect();
        tell_chat_open(tx, org, duty, &people, now_ms).await?;
    }
    Ok(version)
}

/// E-mails everyone on the roster of a duty whose chat is on and who has not been told yet
/// (in their language, else the organisation's), and remembers that they were told. `roster`
/// is the duty's confirmed people; usually all but a newcomer were told already, so the told
/// ones are read first and only the others' people rows after.
async fn tell_chat_open(
    tx: &mut Tx,
    org: Uuid,
    duty: Uuid,
    roster: &[Uuid],
    now_ms: i64,
) -> Result<(), StoreError> {
    if roster.is_empty() {
        return Ok(());
    }
    let told: Vec<Uuid> = run!(tx, c => sqlx::query_scalar(
        "SELECT person_id FROM chat_notices WHERE duty_id = $1")
        .bind(duty).fetch_all(c).await)?;
    let told: std::collections::HashSet<Uuid> = told.into_iter().collect();
    let newcomers: Vec<Uuid> = roster
        .iter()
        .filter(|p| !told.contains(p))
        .copied()
        .collect();
    let untold: Vec<(Uuid, String, Option<String>)> = if newcomers.is_empty() {
        Vec::new()
    } else if newcomers.len() > 20 {
        // The chat was switched on: everyone at once.
        run!(tx, c => sqlx::query_as(
            "SELECT a.person_id, p.emails, p.language FROM assignments a JOIN people p ON p.id = a.person_id \
             LEFT JOIN chat_notices n ON n.duty_id = a.duty_id AND n.person_id = a.person_id \
             WHERE a.org_id = $1 AND a.duty_id = $2 AND a.status = 'confirmed' AND n.person_id IS NULL")
            .bind(org).bind(duty).fetch_all(c).await)?
    } else {
        let mut out = Vec::with_capacity(newcomers.len());
        for p in newcomers {
            let row: Option<(String, Option<String>)> = run!(tx, c => sqlx::query_as(
                "SELECT emails, language FROM people WHERE org_id = $1 AND id = $2")
                .bind(org).bind(p).fetch_optional(c).await)?;
            if let Some((emails, lang)) = row {
                out.push((p, emails, lang));
            }
        }
        out
    };
    if untold.is_empty() {
        return Ok(());
    }
    let (title, starts, zone, org_lang): (String, i64, String, String) = run!(tx, c => sqlx::query_as(
        "SELECT d.title, d.starts_at, d.time_zone, o.default_language FROM duties d JOIN organisations o ON o.id = d.org_id \
         WHERE d.org_id = $1 AND d.id = $2")
        .bind(org).bind(duty).fetch_one(c).await)?;
    let when = jiff::Timestamp::from_millisecond(starts)
        .ok()
        .zip(jiff::tz::TimeZone::get(&zone).ok())
        .map(|(t, z)| t.to_zoned(z).strftime("%Y-%m-%d %H:%M (%Z)").to_string())
        .unwrap_or_default();
    for (person, emails, lang) in untold {
        exec!(tx, c => sqlx::query(
            "INSERT INTO chat_notices (duty_id, person_id, org_id, created_at) VALUES ($1, $2, $3, $4)")
            .bind(duty).bind(person).bind(org).bind(now_ms).execute(c).await)?;
        let email = serde_json::from_str::<Vec<serde_json::Value>>(&emails)
            .ok()
            .and_then(|v| {
                v.iter()
                    .find_map(|c| c.get("value").and_then(|x| x.as_str()).map(str::to_string))
            });
        let Some(email) = email else { continue };
        let (subject, body) = carebridge_domain::notices::chat_activated(
            lang.as_deref().unwrap_or(&org_lang),
            &title,
            &when,
        );
        let id = carebridge_domain::ids::new_v7(
            jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        );
        crate::outbox::enqueue(
            tx,
            id,
            Some(org),
            crate::outbox::Channel::Email,
            &email,
            Some(&subject),
            &body,
            "chat_activated",
            now_ms,
        )
        .await?;
    }
    Ok(())
}

/// Takes `person` off every duty that ends after `from_ms` (all duties with `i64::MIN`):
/// deletes their assignments there and emits the changed rosters. Returns the duties whose
/// roster changed. Used when a person is deactivated or deleted.
pub async fn remove_person(
    tx: &mut Tx,
    org: Uuid,
    person: Uuid,
    from_ms: i64,
    now_ms: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let rows: Vec<(Uuid, String)> = run!(tx, c => sqlx::query_as(
        "SELECT a.duty_id, a.status FROM assignments a JOIN duties d ON d.id = a.duty_id WHERE a.org_id = $1 AND a.person_id = $2 AND d.org_id = $1 AND d.ends_at > $3")
        .bind(org).bind(person).bind(from_ms).fetch_all(c).await)?;
    let mut changed = Vec::new();
    for (duty, status) in rows {
        exec!(tx, c => sqlx::query("DELETE FROM assignments WHERE org_id = $1 AND duty_id = $2 AND person_id = $3")
            .bind(org).bind(duty).bind(person).execute(c).await)?;
        if status == "confirmed" {
            emit(tx, org, duty, now_ms).await?;
            changed.push(duty);
        }
    }
    Ok(changed)
}
