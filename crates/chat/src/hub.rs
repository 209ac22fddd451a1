//! The WebSocket hub of one server process: which devices are connected here, and delivery of
//! frames to them. A frame is serialised once and shared by every socket it goes to.
//!
//! A socket whose queue is full (a device that stopped reading) is dropped rather than
//! slowing the group down: the device reconnects and fetches what it missed by cursor.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;

use tokio::sync::mpsc;
use uuid::Uuid;

/// Frames waiting for one socket before it counts as stalled.
const QUEUE: usize = 1024;

/// What a socket task receives.
#[derive(Clone, Debug)]
pub enum Push {
    /// A JSON text frame (cheap to clone: shared bytes).
    Frame(Utf8Bytes),
    /// Close the socket (device removed or queue overflow).
    Close,
}

type Senders = Vec<(u64, mpsc::Sender<Push>)>;

/// Connected devices of this process.
#[derive(Default)]
pub struct Hub {
    conns: Mutex<HashMap<Uuid, Senders>>,
    next: AtomicU64,
}

impl Hub {
    /// Registers a socket of `device`; the receiver gets its frames.
    pub fn connect(&self, device: Uuid) -> (u64, mpsc::Receiver<Push>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(device).or_default().push((id, tx));
        metrics::gauge!("carebridge_chat_sockets").increment(1.0);
        (id, rx)
    }

    /// Forgets a socket.
    pub fn disconnect(&self, device: Uuid, id: u64) {
        let mut map = self.lock();
        if let Some(v) = map.get_mut(&device) {
            let before = v.len();
            v.retain(|(i, _)| *i != id);
            if v.len() < before {
                metrics::gauge!("carebridge_chat_sockets").decrement(1.0);
            }
            if v.is_empty() {
                map.remove(&device);
            }
        }
    }

    /// Sends `frame` to every socket of each of `devices` connected here. Returns how many
    /// sockets got it.
    pub fn deliver(&self, devices: &[Uuid], frame: &Utf8Bytes) -> usize {
        let mut map = self.lock();
        let mut n = 0;
        let mut stalled = 0;
        for d in devices {
            if let Some(v) = map.get_mut(d) {
                v.retain(|(_, tx)| match tx.try_send(Push::Frame(frame.clone())) {
                    Ok(()) => {
                        n += 1;
                        true
                    }
                    // Dropping the sender ends the socket task's queue: it closes the socket.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        stalled += 1;
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
                if v.is_empty() {
                    map.remove(d);
                }
            }
        }
        if stalled > 0 {
            metrics::gauge!("carebridge_chat_sockets").decrement(stalled as f64);
            metrics::counter!("carebridge_chat_sockets_stalled_total").increment(stalled);
        }
        n
    }

    /// Whether any of `devices` has a socket here.
    pub fn any_connected(&self, devices: &[Uuid]) -> bool {
        let map = self.lock();
        devices.iter().any(|d| map.contains_key(d))
    }

    /// Closes every socket of `device` (the device was removed).
    pub fn close(&self, device: Uuid) {
        if let Some(v) = self.lock().remove(&device) {
            metrics::gauge!("carebridge_chat_sockets").decrement(v.len() as f64);
            for (_, tx) in v {
                let _ = tx.try_send(Push::Close);
            }
        }
    }

    /// Closes every socket (shutdown).
    pub fn close_all(&self) {
        let all: Vec<Uuid> = self.lock().keys().copied().collect();
        for d in all {
            self.close(d);
        }
    }

    /// Sockets connected to this process.
    pub fn sockets(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Senders>> {
        // A panic while holding the lock cannot leave the map inconsistent (every change is a
        // single insert or remove), so a poisoned lock is still usable.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}
