//! Roles and their scopes: a role assignment gives a person a role over the whole organisation
//! or over a unit subtree.

use serde::{Deserialize, Serialize};

use crate::validate::Violations;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    OrgAdmin,
    UnitAdmin,
    Dispatcher,
    Member,
    Client,
    Relative,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::OrgAdmin,
        Role::UnitAdmin,
        Role::Dispatcher,
        Role::Member,
        Role::Client,
        Role::Relative,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::OrgAdmin => "org_admin",
            Role::UnitAdmin => "unit_admin",
            Role::Dispatcher => "dispatcher",
            Role::Member => "member",
            Role::Client => "client",
            Role::Relative => "relative",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Checks that the role fits its scope: `org_admin` is organisation-wide, `unit_admin` needs
    /// a unit; the others may be either.
    pub fn check_scope(self, has_unit: bool) -> Result<(), Violations> {
        match (self, has_unit) {
            (Role::OrgAdmin, true) => Err(Violations::single(
                "/unit_id",
                "invalid_scope",
                "org_admin applies to the whole organisation and takes no unit",
            )),
            (Role::UnitAdmin, false) => Err(Violations::single(
                "/unit_id",
                "required",
                "unit_admin needs the unit whose subtree it administers",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert!(Role::OrgAdmin.check_scope(false).is_ok());
        assert!(Role::OrgAdmin.check_scope(true).is_err());
        assert!(Role::UnitAdmin.check_scope(false).is_err());
        assert!(Role::UnitAdmin.check_scope(true).is_ok());
        assert!(Role::Dispatcher.check_scope(true).is_ok());
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }
}
