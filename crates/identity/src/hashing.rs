//! The password-hashing pool: one dedicated thread per core, at the lowest scheduling priority
//! (niceness 19), each reusing one Argon2 memory block (19 MiB) instead of mapping a fresh one
//! per hash. Sign-ins that saturate hashing take only the CPU the async workers leave, so
//! other requests keep their latency; at most one hash per core runs, the rest queue.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

enum Job {
    Verify(String, String, oneshot::Sender<bool>),
    Hash(String, oneshot::Sender<Result<String, String>>),
}

/// The hashing threads.
pub struct Hasher {
    jobs: SyncSender<Job>,
}

/// Verifies `password` against a PHC-format Argon2 hash, computing into `memory` (grown as
/// needed and kept by the caller for the next call). Constant-time comparison.
pub fn verify_with(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(alg), Ok(params)) = (Algorithm::try_from(h.algorithm), Params::try_from(&h)) else {
        return false;
    };
    let version = h
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or_default();
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let want = params.block_count();
    if memory.len() < want {
        memory.resize(want, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let ok = Argon2::new(alg, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..want])
        .is_ok();
    ok && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>) {
    let _ = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(Job::Verify(pw, phc, reply)) => {
                let _ = reply.send(verify_with(pw.as_bytes(), &phc, &mut memory));
            }
            Ok(Job::Hash(pw, reply)) => {
                let r = SaltString::encode_b64(&crate::random_bytes::<16>())
                    .and_then(|salt| {
                        Argon2::default()
                            .hash_password(pw.as_bytes(), &salt)
                            .map(|h| h.to_string())
                    })
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Err(_) => return,
        }
    }
}

impl Hasher {
    /// Starts one thread per core.
    pub fn start() -> Hasher {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let (tx, rx) = sync_channel::<Job>(1024);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..cores {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(rx));
        }
        Hasher { jobs: tx }
    }

    /// Verifies a password (false on any error, including a full queue).
    pub async fn verify(&self, password: String, phc: String) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .jobs
            .try_send(Job::Verify(password, phc, reply))
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Hashes a new password with Argon2id (OWASP parameters).
    pub async fn hash(&self, password: String) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .try_send(Job::Hash(password, reply))
            .map_err(|_| "the hashing queue is full".to_string())?;
        rx.await
            .map_err(|_| "the hashing thread stopped".to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_what_argon2_hashed_and_refuses_the_rest() {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let phc = Argon2::default()
            .hash_password(b"right password", &salt)
            .unwrap()
            .to_string();
        let mut mem = Vec::new();
        assert!(verify_with(b"right password", &phc, &mut mem));
        assert!(!verify_with(b"wrong password", &phc, &mut mem));
        assert!(
            verify_with(b"right password", &phc, &mut mem),
            "memory reuse keeps working"
        );
        assert!(!verify_with(b"right password", "not a hash", &mut mem));
    }
}
