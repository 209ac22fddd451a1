//! The `identity` role: the OpenID Connect provider. Accounts (sign-in identities, linkable to
//! persons in several organisations), passwords (Argon2id), browser sessions, second factors
//! (SMS codes, TOTP, recovery codes), the authorization, token, userinfo, revocation,
//! introspection, device and logout endpoints, OAuth clients, consents, API keys, and token
//! signing keys with rotation and the JWKS, and sign-in through the organisation's own
//! identity provider (federation, e.g. Entra ID).
//!
//! Invariants: every secret this role hands out (API key, client secret, session cookie,
//! code, refresh token, one-time code, recovery code, e-mail link) is 256 random bits (codes:
//! 6 digits) stored only as a SHA-256 digest and compared in constant time; passwords are
//! stored only as Argon2id hashes computed on a bounded blocking pool, never on the async
//! workers; redirects go only to exactly registered URIs or to this server's own endpoints.

pub mod account;
pub mod accounts;
pub mod apikeys;
pub mod authorize;
pub mod clients;
pub mod ctx;
pub mod device;
pub mod grants;
pub mod hashing;
pub mod http;
pub mod i18n;
pub mod keys;
pub mod logout;
pub mod manage;
pub mod mfa;
pub mod pages;
pub mod sessions;
pub mod signin;
pub mod token;
pub mod upstream;
pub mod web;

/// Fills a buffer from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS random source failing is unrecoverable for a security service; an all-zero key
    // would be worse than stopping.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}
