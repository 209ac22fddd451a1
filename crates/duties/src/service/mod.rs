//! Duty rules: every path (API, CLI, bench) calls these functions, so validation, scope checks,
//! roster events and audit are the same whatever the source.
//!
//! Scope: dispatchers and unit admins act on duties of their units' subtrees only; the check
//! needs the duty's unit, so it happens here rather than in the handlers.

pub mod assignments;
pub mod duties;
pub mod feeds;
pub mod qualifications;

use carebridge_domain::auth::{Actor, Permission, Reach};
use carebridge_store::orgs::OrgRef;
use carebridge_web::ServiceError;

/// Refuses unless the actor may use `perm` on things of the unit at `unit_path`.
pub(crate) fn authorize(
    actor: &Actor,
    org: &OrgRef,
    perm: Permission,
    unit_path: &str,
) -> Result<(), ServiceError> {
    if actor.principal.allows_at(org.id, perm, unit_path) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden {
            detail: format!(
                "this credential lacks the '{}' permission for this duty's unit",
                perm.as_str()
            ),
        })
    }
}

/// Refuses unless the actor may use `perm` somewhere in the organisation; returns the reach.
pub(crate) fn reach(actor: &Actor, org: &OrgRef, perm: Permission) -> Result<Reach, ServiceError> {
    match actor.principal.reach(org.id, perm) {
        Reach::Nothing => Err(ServiceError::Forbidden {
            detail: format!("this credential lacks the '{}' permission", perm.as_str()),
        }),
        r => Ok(r),
    }
}

/// Reads an RFC 3339 instant from a query parameter.
pub(crate) fn instant(
    name: &str,
    s: Option<&str>,
) -> Result<Option<jiff::Timestamp>, ServiceError> {
    match s {
        None => Ok(None),
        Some(s) => s.parse::<jiff::Timestamp>().map(Some).map_err(|_| {
            ServiceError::Invalid(carebridge_domain::Violations::single(
                format!("/query/{name}"),
                "invalid_time",
                "must be an RFC 3339 time with offset, e.g. 2026-12-01T00:00:00Z",
            ))
        }),
    }
}
