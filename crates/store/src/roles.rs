//! A person's role grants as credentials carry them. The directory keeps role assignments;
//! identity reads them when it authenticates a person, and the directory's access preview
//! resolves another person's view with them — one query for both.

use carebridge_domain::auth::RoleGrant;
use carebridge_domain::role::Role;
use carebridge_domain::{OrgId, PersonId};

use crate::{Exec, StoreError};

/// A person's role grants (role and the unit path it covers; `None` = organisation-wide).
pub async fn grants(
    x: &mut impl Exec,
    org: OrgId,
    person: PersonId,
) -> Result<Vec<RoleGrant>, StoreError> {
    let rows: Vec<(String, Option<String>)> = run!(x, c => sqlx::query_as(
        "SELECT r.role, u.path FROM role_assignments r LEFT JOIN units u ON u.id = r.unit_id AND u.org_id = r.org_id WHERE r.org_id = $1 AND r.person_id = $2")
        .bind(org.0).bind(person.0).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .filter_map(|(role, unit_path)| {
            Some(RoleGrant {
                role: Role::parse(&role)?,
                unit_path,
            })
        })
        .collect())
}
