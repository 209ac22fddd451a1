//! What the OAuth endpoints and sign-in pages share in one process besides the database:
//! the signing-key cache, the per-source rate limiter, and the bounded pool that password
//! hashing runs on (so sign-ins saturating Argon2 never take the async workers).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OnceCell, Semaphore};

use crate::token::KeyCache;

/// Settings of the sign-in endpoints.
#[derive(Clone, Debug)]
pub struct Options {
    /// Password and one-time-code attempts per source address and minute.
    pub signin_per_minute: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            signin_per_minute: 30,
        }
    }
}

/// Shared state of the identity endpoints.
pub struct Ctx {
    pub keys: KeyCache,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    hashing: Semaphore,
    dummy: OnceCell<String>,
}

impl Ctx {
    pub fn new(o: &Options) -> Arc<Ctx> {
        let per_minute = NonZeroU32::new(o.signin_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Arc::new(Ctx {
            keys: KeyCache::default(),
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            hashing: Semaphore::new(cores),
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

    /// Verifies a password on the blocking pool, at most one hash per core at a time. With no
    /// stored hash it verifies against a dummy hash, so unknown logins take as long as known ones.
    pub async fn verify_password(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => {
                let d = self
                    .dummy
                    .get_or_init(|| async {
                        crate::accounts::hash_password("not a real password".into())
                            .await
                            .unwrap_or_default()
                    })
                    .await;
                (d.clone(), false)
            }
        };
        crate::accounts::verify_password(password, hash).await && real
    }

    /// Hashes a new password on the same bounded pool.
    pub async fn hash_password(
        &self,
        password: String,
    ) -> Result<String, carebridge_web::ServiceError> {
        let _permit = self.hashing.acquire().await.ok();
        crate::accounts::hash_password(password).await
    }
}
