//! Per-organisation feature switches ([`KNOWN`]: `chat`, `directory`, `portal`). Switching a feature on the first time
//! provisions its tenant id, which stays the same when the feature is switched off and on again.
//! Read by every role that must know whether a feature is on; written by the backend role.

use uuid::Uuid;

use crate::{Exec, StoreError, Tx, exec, run};

/// A feature's state in one organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feature {
    pub enabled: bool,
    pub tenant_id: Uuid,
    pub changed_at: i64,
}

pub async fn get(
    x: &mut impl Exec,
    org: Uuid,
    feature: &str,
) -> Result<Option<Feature>, StoreError> {
    let r: Option<(bool, Uuid, i64)> = run!(x, c => sqlx::query_as(
        "SELECT enabled, tenant_id, changed_at FROM features WHERE org_id = $1 AND feature = $2")
        .bind(org).bind(feature).fetch_optional(c).await)?;
    Ok(r.map(|(enabled, tenant_id, changed_at)| Feature {
        enabled,
        tenant_id,
        changed_at,
    }))
}

/// The features an organisation can switch, each with its state before anyone switched it:
/// - `chat`: the duty chat; off until switched on, which provisions its tenant;
/// - `directory`: the members' contact directory (contact grants, the apps' contacts); on;
/// - `portal`: the customer portal for clients and relatives; on.
pub const KNOWN: &[(&str, bool)] = &[("chat", false), ("directory", true), ("portal", true)];

/// A known feature's state before it was ever switched (`false` for unknown names).
pub fn default_of(feature: &str) -> bool {
    KNOWN
        .iter()
        .find(|(f, _)| *f == feature)
        .is_some_and(|(_, on)| *on)
}

/// Whether `feature` is switched on for `org` (its default when never switched).
pub async fn enabled(x: &mut impl Exec, org: Uuid, feature: &str) -> Result<bool, StoreError> {
    Ok(get(x, org, feature)
        .await?
        .map_or(default_of(feature), |f| f.enabled))
}

/// The known features switched on for `org`, in name order.
pub async fn enabled_list(x: &mut impl Exec, org: Uuid) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String, bool)> = run!(x, c => sqlx::query_as(
        "SELECT feature, enabled FROM features WHERE org_id = $1")
        .bind(org).fetch_all(c).await)?;
    Ok(KNOWN
        .iter()
        .filter(|(name, default)| {
            rows.iter()
                .find(|(f, _)| f == name)
                .map_or(*default, |(_, on)| *on)
        })
        .map(|(name, _)| (*name).to_string())
        .collect())
}

/// Sets the switch; `new_tenant` is used only when the feature was never provisioned.
pub async fn set(
    tx: &mut Tx,
    org: Uuid,
    feature: &str,
    enabled: bool,
    new_tenant: Uuid,
    now_ms: i64,
) -> Result<Feature, StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO features (org_id, feature, enabled, tenant_id, changed_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (org_id, feature) DO UPDATE SET enabled = excluded.enabled, changed_at = excluded.changed_at")
        .bind(org).bind(feature).bind(enabled).bind(new_tenant).bind(now_ms).execute(c).await)?;
    get(tx, org, feature)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("feature {feature} vanished")))
}
