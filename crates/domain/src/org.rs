//! Organisations (tenants): slug rules, regions and languages.

use rlibphonenumber::PHONE_NUMBER_UTIL;
use rlibphonenumber::enums::Region;

use crate::validate::{Violations, bounded_text};

/// Languages Carebridge speaks (templates, pages). The first is the fallback.
pub const LANGUAGES: &[&str] = &["en", "de", "fr", "it", "fi", "sv"];

/// Checks an organisation slug: 2–63 characters of `a-z`, `0-9` and inner `-`, as it appears in
/// URLs (`/api/v1/orgs/{slug}`, `/discovery/{slug}`).
pub fn check_slug(v: &mut Violations, pointer: &str, slug: &str) {
    let ok_chars = slug
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if slug.len() < 2 || slug.len() > 63 {
        v.push(pointer, "invalid_slug", "must have 2 to 63 characters");
    } else if !ok_chars || slug.starts_with('-') || slug.ends_with('-') {
        v.push(
            pointer,
            "invalid_slug",
            "may contain only a-z, 0-9 and inner '-'",
        );
    } else if uuid::Uuid::parse_str(slug).is_ok() {
        v.push(pointer, "invalid_slug", "must not look like an id");
    }
}

/// The phone-number library's region for an upper-case ISO 3166-1 alpha-2 code it has
/// numbering rules for (`CH`, `FI`); `None` for anything else (`ch`, `XX`, `001`).
pub fn phone_region(region: &str) -> Option<Region> {
    if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let r = region.parse::<Region>().ok()?;
    PHONE_NUMBER_UTIL.get_country_code_for_region(r).map(|_| r)
}

/// Checks an ISO 3166-1 alpha-2 region code that the phone-number library knows.
pub fn check_region(v: &mut Violations, pointer: &str, region: &str) -> Option<Region> {
    match phone_region(region) {
        Some(r) => Some(r),
        None => {
            v.push(
                pointer,
                "invalid_region",
                "must be an upper-case ISO 3166-1 alpha-2 country code such as CH, DE or FI",
            );
            None
        }
    }
}

pub fn check_language(v: &mut Violations, pointer: &str, lang: &str) {
    if !LANGUAGES.contains(&lang) {
        v.push(
            pointer,
            "invalid_language",
            format!("must be one of {}", LANGUAGES.join(", ")),
        );
    }
}

/// A colour as `#rrggbb`.
pub fn check_color(v: &mut Violations, pointer: &str, c: &str) {
    let ok = c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|x| x.is_ascii_hexdigit());
    if !ok {
        v.push(pointer, "invalid_color", "a colour as #rrggbb");
    }
}

/// A public URL for apps: absolute `https` (or `http` on a loopback host, for development), at
/// most 2,000 characters.
pub fn check_https_url(v: &mut Violations, pointer: &str, u: &str) {
    let loopback = |r: &str| {
        ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| {
            r.strip_prefix(h)
                .is_some_and(|x| x.is_empty() || x.starts_with(':') || x.starts_with('/'))
        })
    };
    let ok = u.len() <= 2000
        && (u
            .strip_prefix("https://")
            .is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
            || u.strip_prefix("http://").is_some_and(loopback))
        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        v.push(pointer, "invalid_url", "an absolute https URL");
    }
}

/// A validated organisation as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgDraft {
    pub slug: String,
    pub name: String,
    pub default_region: String,
    pub default_language: String,
    pub contact_email: Option<String>,
}

impl OrgDraft {
    /// Normalises and validates; names the failing fields by JSON pointer.
    pub fn validate(
        slug: &str,
        name: &str,
        region: &str,
        language: &str,
        contact_email: Option<&str>,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let slug = slug.trim().to_string();
        check_slug(&mut v, "/slug", &slug);
        let name = bounded_text(&mut v, "/name", name, 1, 200);
        check_region(&mut v, "/default_region", region);
        check_language(&mut v, "/default_language", language);
        let contact_email =
            contact_email.map(|e| crate::person::normalise_email(&mut v, "/contact_email", e));
        v.into_result()?;
        Ok(Self {
            slug,
            name,
            default_region: region.to_string(),
            default_language: language.to_string(),
            contact_email,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["ab", "spitex-zuerich", "rk-2"] {
            let mut v = Violations::new();
            check_slug(&mut v, "/slug", ok);
            assert!(v.is_empty(), "{ok}");
        }
        for bad in [
            "a",
            "-ab",
            "ab-",
            "Ab",
            "a b",
            "ä",
            "0190f0e4-8f0e-7c3a-9a4e-1d2b3c4d5e6f",
        ] {
            let mut v = Violations::new();
            check_slug(&mut v, "/slug", bad);
            assert!(!v.is_empty(), "{bad}");
        }
    }

    #[test]
    fn regions() {
        let mut v = Violations::new();
        assert!(check_region(&mut v, "/r", "CH").is_some());
        assert!(check_region(&mut v, "/r", "ch").is_none());
        assert!(check_region(&mut v, "/r", "XX").is_none());
        assert!(check_region(&mut v, "/r", "001").is_none());
        assert!(check_region(&mut v, "/r", "C").is_none());
        assert_eq!(v.0.len(), 4);
        assert!(phone_region("FI").is_some());
    }
}
