//! OAuth 2.1 / OpenID Connect client rules: the scopes and grants Carebridge knows, and the
//! checks on a client registration (exact redirect URIs, what public clients may do).

use crate::validate::{Violations, bounded_text};

/// Carebridge's own public client: the member CLI (device flow).
pub const CLI_CLIENT: &str = "carebridge-cli";
/// Carebridge's own public client: the member and client web app.
pub const APP_CLIENT: &str = "carebridge-app";

/// Scopes this provider issues: the OpenID ones and Carebridge's own.
pub const SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "phone",
    "offline_access",
    "directory:read",
    "directory:write",
    "duties:read",
    "chat",
    "portal",
    "portal:erp",
];

/// Carebridge's own public client: the admin console (server-side, code + PKCE).
pub const CONSOLE_CLIENT: &str = "carebridge-console";
/// The console's scope: whatever the signed-in person's roles allow on every API (not in
/// [`SCOPES`], so no registered client can ask for it; only the built-in console holds it).
pub const CONSOLE_SCOPE: &str = "admin";

/// The scope of the short-lived portal tokens an organisation admin gets for the portal's
/// office endpoints (`POST /api/v1/orgs/{org}/portal-token`); never granted through OAuth.
pub const PORTAL_OFFICE_SCOPE: &str = "portal:office";

/// Scopes only a client may hold for itself (client credentials), never a person's grant.
pub const CLIENT_ONLY_SCOPES: &[&str] = &["portal:erp"];

/// Grant types a client can be allowed.
pub const GRANTS: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
];

/// A checked client registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientDraft {
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub grants: Vec<String>,
    pub first_party: bool,
}

/// Whether `uri` may be registered as a redirect URI: absolute, no fragment, and `https` —
/// except `http` on a loopback host (native apps, RFC 8252) and private-use schemes with a dot
/// (`ch.example.app:/callback`).
pub fn redirect_uri_ok(uri: &str) -> bool {
    if uri.len() > 2000
        || uri.contains('#')
        || uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    match scheme {
        "https" => rest.starts_with("//") && rest.len() > 2,
        "http" => ["//127.0.0.1", "//[::1]", "//localhost"].iter().any(|h| {
            rest.strip_prefix(h)
                .is_some_and(|r| r.is_empty() || r.starts_with(':') || r.starts_with('/'))
        }),
        s => {
            s.contains('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".+-".contains(c))
                && !rest.is_empty()
        }
    }
}

/// Checks a client registration.
pub fn check_client(
    name: &str,
    public: bool,
    redirect_uris: &[String],
    scopes: &[String],
    grants: &[String],
    first_party: bool,
) -> Result<ClientDraft, Violations> {
    let mut v = Violations::new();
    let name = bounded_text(&mut v, "/name", name, 1, 100);
    if grants.is_empty() {
        v.push("/grants", "required", "name at least one grant type");
    }
    for (i, g) in grants.iter().enumerate() {
        if !GRANTS.contains(&g.as_str()) {
            v.push(
                format!("/grants/{i}"),
                "invalid_grant",
                format!("unknown grant type; known: {}", GRANTS.join(", ")),
            );
        } else if public && g == "client_credentials" {
            v.push(
                format!("/grants/{i}"),
                "public_client",
                "a public client has no secret and cannot use client_credentials",
            );
        }
    }
    for (i, s) in scopes.iter().enumerate() {
        if !SCOPES.contains(&s.as_str()) {
            v.push(
                format!("/scopes/{i}"),
                "invalid_scope",
                format!("unknown scope; known: {}", SCOPES.join(" ")),
            );
        }
    }
    let needs_redirect = grants.iter().any(|g| g == "authorization_code");
    if needs_redirect && redirect_uris.is_empty() {
        v.push(
            "/redirect_uris",
            "required",
            "the authorization_code grant needs at least one redirect URI",
        );
    }
    for (i, u) in redirect_uris.iter().enumerate() {
        if !redirect_uri_ok(u) {
            v.push(
                format!("/redirect_uris/{i}"),
                "invalid_redirect_uri",
                "must be an absolute https URI without fragment (http only on 127.0.0.1, [::1] or localhost; private-use schemes need a dot)",
            );
        }
    }
    v.into_result()?;
    let dedup = |l: &[String]| {
        let mut out: Vec<String> = Vec::new();
        for x in l {
            if !out.contains(x) {
                out.push(x.clone());
            }
        }
        out
    };
    Ok(ClientDraft {
        name,
        public,
        redirect_uris: dedup(redirect_uris),
        scopes: dedup(scopes),
        grants: dedup(grants),
        first_party,
    })
}

/// The scopes granted for a request: all of `allowed` (without `openid` and `offline_access`,
/// which only make sense with a user) when `requested` is empty, else `requested` if it is a
/// subset of `allowed`. `None` when something requested is not allowed.
pub fn grant_scopes(requested: &str, allowed: &[String], with_user: bool) -> Option<Vec<String>> {
    let words: Vec<&str> = requested.split(' ').filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return Some(
            allowed
                .iter()
                .filter(|s| {
                    if with_user {
                        !CLIENT_ONLY_SCOPES.contains(&s.as_str())
                    } else {
                        *s != "openid" && *s != "offline_access"
                    }
                })
                .cloned()
                .collect(),
        );
    }
    let mut out: Vec<String> = Vec::new();
    for w in words {
        if !allowed.iter().any(|a| a == w)
            || (!with_user && (w == "openid" || w == "offline_access"))
            || (with_user && CLIENT_ONLY_SCOPES.contains(&w))
        {
            return None;
        }
        if !out.iter().any(|o| o == w) {
            out.push(w.to_string());
        }
    }
    Some(out)
}

/// The audience of tokens for Carebridge's own APIs.
pub const API_AUDIENCE: &str = "carebridge";
/// The audience of tokens for the customer portal (which may run at the ERP vendor).
pub const PORTAL_AUDIENCE: &str = "portal";
/// Scopes that mean "Carebridge's APIs" and so cannot share a token with `portal`.
const API_SCOPES: &[&str] = &[
    "directory:read",
    "directory:write",
    "duties:read",
    "chat",
    CONSOLE_SCOPE,
];

/// The one audience a token with these scopes is for: the portal when `portal` is asked for,
/// else Carebridge's APIs. A token is never valid for both, so a portal (run by someone else)
/// cannot replay it against the APIs; asking for both is an error.
pub fn audience(scopes: &[String]) -> Result<&'static str, &'static str> {
    let portal = scopes.iter().any(|s| s == "portal" || s == "portal:erp");
    let api = scopes.iter().any(|s| API_SCOPES.contains(&s.as_str()));
    match (portal, api) {
        (true, true) => Err(
            "the portal scope cannot be combined with directory:read, directory:write, duties:read or chat: ask for two tokens",
        ),
        (true, false) => Ok(PORTAL_AUDIENCE),
        _ => Ok(API_AUDIENCE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris() {
        for ok in [
            "https://app.example.ch/cb",
            "http://127.0.0.1:8123/cb",
            "http://localhost/cb",
            "http://[::1]:9/x",
            "ch.carebridge.app:/oauth",
        ] {
            assert!(redirect_uri_ok(ok), "{ok}");
        }
        for bad in [
            "http://app.example.ch/cb",
            "https://app.example.ch/cb#x",
            "/relative",
            "https:",
            "http://localhost.evil.com/cb",
            "http://127.0.0.1.evil.com/",
            "javascript:alert(1)",
            "https://a b",
        ] {
            assert!(!redirect_uri_ok(bad), "{bad}");
        }
    }

    #[test]
    fn clients_and_scopes() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let e = check_client(
            "App",
            true,
            &[],
            &s(&["email"]),
            &s(&["client_credentials", "authorization_code"]),
            false,
        )
        .unwrap_err();
        let codes: Vec<_> = e.0.iter().map(|v| (v.pointer.as_str(), v.code)).collect();
        assert_eq!(
            codes,
            [
                ("/grants/0", "public_client"),
                ("/redirect_uris", "required")
            ]
        );
        let c = check_client(
            " ERP ",
            false,
            &[],
            &s(&["directory:read", "duties:read"]),
            &s(&["client_credentials"]),
            true,
        )
        .unwrap();
        assert_eq!(c.name, "ERP");
        let allowed = s(&["openid", "directory:read", "duties:read"]);
        assert_eq!(
            grant_scopes("", &allowed, false),
            Some(s(&["directory:read", "duties:read"]))
        );
        assert_eq!(
            grant_scopes("duties:read duties:read", &allowed, false),
            Some(s(&["duties:read"]))
        );
        assert_eq!(grant_scopes("chat", &allowed, false), None);
        assert_eq!(grant_scopes("openid", &allowed, false), None);
        assert_eq!(grant_scopes("openid", &allowed, true), Some(s(&["openid"])));
        // The ERP feed scope is for a client itself, never for a person's sign-in.
        let erp = s(&["openid", "portal", "portal:erp"]);
        assert_eq!(grant_scopes("portal:erp", &erp, true), None);
        assert_eq!(grant_scopes("", &erp, true), Some(s(&["openid", "portal"])));
        assert_eq!(
            grant_scopes("portal:erp", &erp, false),
            Some(s(&["portal:erp"]))
        );
    }

    #[test]
    fn portal_tokens_are_for_the_portal_only() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(audience(&v(&["openid", "portal"])), Ok(PORTAL_AUDIENCE));
        assert_eq!(audience(&v(&["portal:erp"])), Ok(PORTAL_AUDIENCE));
        assert!(audience(&v(&["portal:erp", "directory:read"])).is_err());
        assert_eq!(audience(&v(&["openid", "duties:read"])), Ok(API_AUDIENCE));
        assert_eq!(audience(&v(&["openid"])), Ok(API_AUDIENCE));
        assert!(audience(&v(&["portal", "chat"])).is_err());
    }
}
