//! Who is asking and what they may do. A [`Principal`] is the authenticated caller; permissions
//! are checked against the organisation of the resource. A principal of organisation B never
//! passes a check for organisation A: that is the first half of tenant isolation (the second
//! half is that every query is scoped by organisation in the data layer).

use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, OrgId, PersonId};
use crate::role::Role;

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
    /// Register, list and revoke OAuth clients.
    #[serde(rename = "clients:manage")]
    ClientsManage,
    /// Read duties, their positions and rosters, and the qualification catalogue.
    #[serde(rename = "duties:read")]
    DutiesRead,
    /// Create and change duties, assign people, confirm or decline requests.
    #[serde(rename = "duties:write")]
    DutiesWrite,
    /// Platform operator: create organisations (only for keys without an organisation).
    #[serde(rename = "platform")]
    Platform,
}

impl Permission {
    pub const ALL: [Permission; 11] = [
        Permission::OrgRead,
        Permission::OrgWrite,
        Permission::DirectoryRead,
        Permission::DirectoryWrite,
        Permission::RolesWrite,
        Permission::AuditRead,
        Permission::ApiKeysManage,
        Permission::ClientsManage,
        Permission::DutiesRead,
        Permission::DutiesWrite,
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
            Permission::ClientsManage => "clients:manage",
            Permission::DutiesRead => "duties:read",
            Permission::DutiesWrite => "duties:write",
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
    /// A sign-in through the organisation's own identity provider (just-in-time creation).
    Federation,
    /// A SCIM client (provisioning from Entra ID and the like).
    Scim,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Cli => "cli",
            Source::Setup => "setup",
            Source::Demo => "demo",
            Source::Federation => "federation",
            Source::Scim => "scim",
        }
    }
}

impl Role {
    /// Whether holding this role (over its scope) grants `p`. Clients and relatives act through
    /// the portal, not through these APIs.
    pub fn grants(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::OrgAdmin => p != Platform,
            Role::UnitAdmin => matches!(p, DirectoryRead | DirectoryWrite | DutiesRead),
            Role::Dispatcher => matches!(p, DirectoryRead | DutiesRead | DutiesWrite),
            Role::Member => p == DutiesRead,
            Role::Client | Role::Relative => false,
        }
    }
}

/// One role a signed-in person holds: organisation-wide (`unit_path` is `None`) or over the
/// subtree of the unit at `unit_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleGrant {
    pub role: Role,
    pub unit_path: Option<String>,
}

/// How far a permission reaches for a principal in one organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The whole organisation.
    All,
    /// The subtrees of these unit paths.
    Units(Vec<String>),
    /// Nothing.
    Nothing,
}

impl Reach {
    /// Whether the unit at `path` lies inside the reach.
    pub fn covers(&self, path: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Units(roots) => roots.iter().any(|r| path.starts_with(r.as_str())),
            Reach::Nothing => false,
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
    /// A person of an organisation, signed in with a personal credential. What they may do is
    /// what their roles grant, within their roles' scopes, narrowed to the credential's scopes.
    Person {
        /// The credential: a personal API key or a sign-in token.
        via: Via,
        org: OrgId,
        person: PersonId,
        scopes: Vec<Permission>,
        roles: Vec<RoleGrant>,
    },
    /// An OAuth client holding a client-credentials access token: organisation-wide, with the
    /// permissions its token's scopes map to.
    Client {
        client_id: String,
        org: OrgId,
        permissions: Vec<Permission>,
    },
    /// The operator at the command line or the one-time set-up flow: may do anything.
    System { name: &'static str },
}

/// The credential a person signed in with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A personal API key.
    ApiKey(ApiKeyId),
    /// An access token from the OpenID provider: issued to `client_id` within token grant
    /// `grant` (revoking the grant stops the token at once).
    Token {
        client_id: String,
        grant: uuid::Uuid,
        /// The token's OAuth scopes as granted, including those that map to no permission
        /// (e.g. `chat`, which lets Carebridge's own apps register a chat device).
        oauth_scopes: Vec<String>,
    },
}

impl Permission {
    /// The permission an OAuth scope grants to a token (`None` for scopes that only mean
    /// something with a signed-in person). A person's token is further limited by their roles;
    /// `directory:write` lets a person change their own contact data.
    pub fn of_scope(scope: &str) -> Option<Permission> {
        match scope {
            "directory:read" => Some(Permission::DirectoryRead),
            "directory:write" => Some(Permission::DirectoryWrite),
            "duties:read" => Some(Permission::DutiesRead),
            _ => None,
        }
    }

    /// The permissions a token's scopes grant: [`Permission::of_scope`] of each, and for
    /// [`crate::oauth::CONSOLE_SCOPE`] (only Carebridge's admin console can hold it) every
    /// permission but `platform` — still narrowed by the person's roles. Sorted, no repeats.
    pub fn of_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<Permission> {
        let mut out: Vec<Permission> = Vec::new();
        for s in scopes {
            if s == crate::oauth::CONSOLE_SCOPE {
                out.extend(Permission::org_admin());
            } else if let Some(p) = Permission::of_scope(s) {
                out.push(p);
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl Principal {
    /// Where in organisation `org` this principal may use `perm`.
    pub fn reach(&self, org: OrgId, perm: Permission) -> Reach {
        match self {
            Principal::System { .. } => Reach::All,
            Principal::ApiKey {
                org: Some(own),
                permissions,
                ..
            } if *own == org && permissions.contains(&perm) => Reach::All,
            Principal::ApiKey { .. } => Reach::Nothing,
            Principal::Client {
                org: own,
                permissions,
                ..
            } => {
                if *own == org && permissions.contains(&perm) {
                    Reach::All
                } else {
                    Reach::Nothing
                }
            }
            Principal::Person {
                org: own,
                scopes,
                roles,
                ..
            } => {
                if *own != org || !scopes.contains(&perm) {
                    return Reach::Nothing;
                }
                let mut units = Vec::new();
                for g in roles.iter().filter(|g| g.role.grants(perm)) {
                    match &g.unit_path {
                        None => return Reach::All,
                        Some(p) => units.push(p.clone()),
                    }
                }
                if units.is_empty() {
                    Reach::Nothing
                } else {
                    Reach::Units(units)
                }
            }
        }
    }

    /// Whether this principal may use `perm` on the whole of organisation `org`.
    pub fn allows(&self, org: OrgId, perm: Permission) -> bool {
        self.reach(org, perm) == Reach::All
    }

    /// Whether this principal may use `perm` on things of the unit at `unit_path`.
    pub fn allows_at(&self, org: OrgId, perm: Permission, unit_path: &str) -> bool {
        self.reach(org, perm).covers(unit_path)
    }

    /// The person behind a personal credential.
    pub fn person(&self) -> Option<(OrgId, PersonId)> {
        match self {
            Principal::Person { org, person, .. } => Some((*org, *person)),
            _ => None,
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
            Principal::ApiKey { .. } | Principal::Person { .. } | Principal::Client { .. } => false,
        }
    }

    /// The organisation this principal belongs to, if any.
    pub fn org(&self) -> Option<OrgId> {
        match self {
            Principal::ApiKey { org, .. } => *org,
            Principal::Person { org, .. } | Principal::Client { org, .. } => Some(*org),
            Principal::System { .. } => None,
        }
    }

    /// How the principal appears in the audit log (never a secret).
    pub fn audit_label(&self) -> String {
        match self {
            Principal::ApiKey { id, .. } => format!("apikey:{id}"),
            Principal::Person {
                person,
                via: Via::ApiKey(key),
                ..
            } => format!("person:{person}/apikey:{key}"),
            Principal::Person {
                person,
                via: Via::Token { client_id, .. },
                ..
            } => format!("person:{person}/client:{client_id}"),
            Principal::Client { client_id, .. } => format!("client:{client_id}"),
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
    fn person_reach_follows_roles_scopes_and_org() {
        let a = OrgId(Uuid::from_u128(1));
        let b = OrgId(Uuid::from_u128(2));
        let person = |roles: Vec<RoleGrant>, scopes: Vec<Permission>| Principal::Person {
            via: Via::ApiKey(ApiKeyId(Uuid::from_u128(9))),
            org: a,
            person: PersonId(Uuid::from_u128(5)),
            scopes,
            roles,
        };
        let dispatcher_a = person(
            vec![RoleGrant {
                role: Role::Dispatcher,
                unit_path: Some("/u1/".into()),
            }],
            Permission::ALL.to_vec(),
        );
        assert!(dispatcher_a.allows_at(a, Permission::DutiesWrite, "/u1/u2/"));
        assert!(!dispatcher_a.allows_at(a, Permission::DutiesWrite, "/u3/"));
        assert!(
            !dispatcher_a.allows(a, Permission::DutiesWrite),
            "not org-wide"
        );
        assert!(!dispatcher_a.allows_at(b, Permission::DutiesWrite, "/u1/"));
        assert!(!dispatcher_a.allows_at(a, Permission::RolesWrite, "/u1/"));
        let narrowed = person(
            vec![RoleGrant {
                role: Role::OrgAdmin,
                unit_path: None,
            }],
            vec![Permission::DutiesRead],
        );
        assert!(narrowed.allows(a, Permission::DutiesRead));
        assert!(
            !narrowed.allows(a, Permission::DutiesWrite),
            "scope narrows the role"
        );
        assert!(!narrowed.is_platform());
        let client = person(
            vec![RoleGrant {
                role: Role::Client,
                unit_path: None,
            }],
            Permission::ALL.to_vec(),
        );
        for p in Permission::ALL {
            assert_eq!(client.reach(a, p), Reach::Nothing, "{p:?}");
        }
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
