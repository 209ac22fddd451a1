//! What the OAuth endpoints and sign-in pages share in one process besides the database:
//! the signing-key cache, the per-source rate limiter, and the bounded pool that password
//! hashing runs on (so sign-ins saturating Argon2 never take the async workers).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::OnceCell;

use crate::token::KeyCache;

/// Settings of the sign-in endpoints.
#[derive(Clone)]
pub struct Options {
    /// Password and one-time-code attempts per source address and minute.
    pub signin_per_minute: u32,
    /// Just-in-time creation of people signed in by an upstream provider (the directory's
    /// service, wired in by the server); `None` refuses such sign-ins.
    pub provision: Option<crate::upstream::Provisioner>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            signin_per_minute: 30,
            provision: None,
        }
    }
}

/// Shared state of the identity endpoints.
pub struct Ctx {
    pub keys: KeyCache,
    /// Batches refresh-token rotations (started on first use, on this server's database).
    pub rotator: crate::grants::Rotator,
    pub provision: Option<crate::upstream::Provisioner>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Failed client authentications per source address …
    client_failures: DefaultKeyedRateLimiter<IpAddr>,
    /// … and the addresses that went over it, until when.
    blocked: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
    hashing: crate::hashing::Hasher,
    dummy: OnceCell<String>,
}

impl Ctx {
    pub fn new(o: &Options) -> Arc<Ctx> {
        let per_minute = NonZeroU32::new(o.signin_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Arc::new(Ctx {
            keys: KeyCache::default(),
            rotator: crate::grants::Rotator::default(),
            provision: o.provision.clone(),
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            client_failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
            blocked: std::sync::Mutex::new(std::collections::HashMap::new()),
            hashing: crate::hashing::Hasher::start(),
            dummy: OnceCell::new(),
        })
    }

    /// Whether another password or code attempt from `ip` is allowed now.
    pub fn attempt(&self, ip: IpAddr) -> bool {
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&ip).is_ok()
    }

    /// Whether `ip` is blocked at the OAuth endpoints after too many failed client
    /// authentications (a minute from the last failure over the limit).
    pub fn client_blocked(&self, ip: IpAddr) -> bool {
        self.blocked
            .lock()
            .map(|m| {
                m.get(&ip)
                    .is_some_and(|until| std::time::Instant::now() < *until)
            })
            .unwrap_or(false)
    }

    /// Records a failed client authentication from `ip`; over the limit the address is
    /// blocked for a minute.
    pub fn client_failed(&self, ip: IpAddr) {
        if self.client_failures.check_key(&ip).is_err()
            && let Ok(mut m) = self.blocked.lock()
        {
            let now = std::time::Instant::now();
            m.retain(|_, until| *until > now);
            m.insert(ip, now + std::time::Duration::from_secs(60));
        }
    }

    /// Verifies a password on the hashing pool. With no stored hash it verifies against a dummy
    /// hash, so unknown logins take as long as known ones.
    pub async fn verify_password(&self, password: String, hash: Option<String>) -> bool {
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => {
                let d = self
                    .dummy
                    .get_or_init(|| async {
                        self.hashing
                            .hash("not a real password".into())
                            .await
                            .unwrap_or_default()
                    })
                    .await;
                (d.clone(), false)
            }
        };
        self.hashing.verify(password, hash).await && real
    }

    /// Hashes a new password on the same bounded pool.
    pub async fn hash_password(
        &self,
        password: String,
    ) -> Result<String, carebridge_web::ServiceError> {
        self.hashing.hash(password).await.map_err(|e| {
            carebridge_web::ServiceError::Store(carebridge_store::StoreError::Corrupt(format!(
                "hashing failed: {e}"
            )))
        })
    }
}
