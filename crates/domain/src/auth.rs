//! Who is asking and what they may do. A [`Principal`] is the authenticated caller; permissions
//! are checked against the organisation of the resource. A principal of organisation B never
//! passes a check for organisation A: that is the first half of tenant isolation (the second
//! half is that every query is scoped by organisation in the data layer).

use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, OrgId};

/// Coarse permissions carried by API keys (and later derived from roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Permission {
    /// Read the organisation and its settings.
    #[serde(rename = "org:read")]
    OrgRead,
    /// Change the organisation and its settings.
    #[serde(rename = "org:write")]
    OrgWrite,
    /// Read units, people and role assignments.
    #[serde(rename = "directory:read")]
    DirectoryRead,
    /// Create, change and delete units and people.
    #[serde(rename = "directory:write")]
    DirectoryWrite,
    /// Assign and remove roles.
    #[serde(rename = "roles:write")]
    RolesWrite,
    /// Read the audit log.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// Create, list and revoke API keys.
    #[serde(rename = "apikeys:manage")]
    ApiKeysManage,
    /// Platform operator: create organisations (only for keys without an organisation).
    #[serde(rename = "platform")]
    Platform,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::OrgRead,
        Permission::OrgWrite,
        Permission::DirectoryRead,
        Permission::DirectoryWrite,
        Permission::RolesWrite,
        Permission::AuditRead,
        Permission::ApiKeysManage,
        Permission::Platform,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::OrgRead => "org:read",
            Permission::OrgWrite => "org:write",
            Permission::DirectoryRead => "directory:read",
            Permission::DirectoryWrite => "directory:write",
            Permission::RolesWrite => "roles:write",
            Permission::AuditRead => "audit:read",
            Permission::ApiKeysManage => "apikeys:manage",
            Permission::Platform => "platform",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Everything an organisation administrator may do.
    pub fn org_admin() -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| *p != Permission::Platform)
            .collect()
    }
}

/// Where a change came from; recorded in the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Api,
    Cli,
    Setup,
    Demo,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Cli => "cli",
            Source::Setup => "setup",
            Source::Demo => "demo",
        }
    }
}

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// An API key: of one organisation, or a platform key (no organisation).
    ApiKey {
        id: ApiKeyId,
        org: Option<OrgId>,
        permissions: Vec<Permission>,
    },
    /// The operator at the command line or the one-time set-up flow: may do anything.
    System { name: &'static str },
}

impl Principal {
    /// Whether this principal may use `perm` on organisation `org`.
    pub fn allows(&self, org: OrgId, perm: Permission) -> bool {
        match self {
            Principal::System { .. } => true,
            Principal::ApiKey {
                org: Some(own),
                permissions,
                ..
            } => *own == org && permissions.contains(&perm),
            Principal::ApiKey { org: None, .. } => false,
        }
    }

    /// Whether this principal may act as platform operator (create organisations).
    pub fn is_platform(&self) -> bool {
        match self {
            Principal::System { .. } => true,
            Principal::ApiKey {
                org: None,
                permissions,
                ..
            } => permissions.contains(&Permission::Platform),
            Principal::ApiKey { .. } => false,
        }
    }

    /// The organisation this principal belongs to, if any.
    pub fn org(&self) -> Option<OrgId> {
        match self {
            Principal::ApiKey { org, .. } => *org,
            Principal::System { .. } => None,
        }
    }

    /// How the principal appears in the audit log (never a secret).
    pub fn audit_label(&self) -> String {
        match self {
            Principal::ApiKey { id, .. } => format!("apikey:{id}"),
            Principal::System { name } => format!("system:{name}"),
        }
    }
}

/// The caller of a service function: who, from where.
#[derive(Clone, Debug)]
pub struct Actor {
    pub principal: Principal,
    pub source: Source,
}

impl Actor {
    pub fn new(principal: Principal, source: Source) -> Self {
        Self { principal, source }
    }

    pub fn system(name: &'static str, source: Source) -> Self {
        Self {
            principal: Principal::System { name },
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn keys_of_one_org_never_pass_for_another() {
        let a = OrgId(Uuid::from_u128(1));
        let b = OrgId(Uuid::from_u128(2));
        let key = Principal::ApiKey {
            id: ApiKeyId(Uuid::from_u128(9)),
            org: Some(b),
            permissions: Permission::org_admin(),
        };
        for p in Permission::ALL {
            assert!(!key.allows(a, p), "{p:?}");
        }
        assert!(key.allows(b, Permission::DirectoryWrite));
        assert!(!key.allows(b, Permission::Platform) && !key.is_platform());
    }

    #[test]
    fn permission_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
    }
}
