//! Time is a parameter. Code asks a [`Clock`] for the time and the clock is passed in; tests move
//! a [`ManualClock`] instead of sleeping. This is the only module allowed to read the system time.

use std::sync::atomic::{AtomicI64, Ordering};

pub use jiff::Timestamp;

/// Where the current time comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to (tests, benchmarks, replay).
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            micros: AtomicI64::new(start.as_microsecond()),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: std::time::Duration) {
        self.micros.fetch_add(
            i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }

    pub fn set(&self, t: Timestamp) {
        self.micros.store(t.as_microsecond(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_microsecond(self.micros.load(Ordering::SeqCst))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// Milliseconds since the Unix epoch: the storage form of every timestamp.
pub fn to_millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// The inverse of [`to_millis`]; out-of-range values clamp to the epoch (they can only come from
/// a corrupted row).
pub fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}
