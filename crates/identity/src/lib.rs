//! The `identity` role: accounts (sign-in identities, linkable to persons in several
//! organisations), passwords (Argon2id) and API keys (service accounts until single sign-on
//! exists), token signing keys with rotation and the JWKS. The rest of the OpenID Connect
//! provider, second factors and federation join here later.
//!
//! Invariants: API-key secrets are 256-bit random values stored only as SHA-256 digests and
//! compared in constant time; passwords are stored only as Argon2id hashes computed on the
//! blocking pool, never on the async workers.

pub mod accounts;
pub mod apikeys;
pub mod clients;
pub mod http;
pub mod keys;
pub mod token;

/// Fills a buffer from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS random source failing is unrecoverable for a security service; an all-zero key
    // would be worse than stopping.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}
