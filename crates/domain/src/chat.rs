//! The duty chat's lifecycle (DESIGN.md §3 "Retention"): a chat is writable until the duty's
//! end plus the organisation's writable days, readable until the end plus writable plus
//! readable days, then deleted. A cancelled duty's chat is read-only at once (and deleted on
//! the same schedule). Pure: the caller passes the time in.

/// Days a chat stays writable after its duty ends, unless the organisation says otherwise.
pub const DEFAULT_WRITABLE_DAYS: i64 = 2;
/// Days a chat stays readable after the writable days, unless the organisation says otherwise.
pub const DEFAULT_READABLE_DAYS: i64 = 30;
/// The most days an organisation may configure for either period.
pub const MAX_DAYS: i64 = 3650;

const DAY_MS: i64 = 86_400_000;

/// Where a chat stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Messages and every kind of commit are accepted.
    Writable,
    /// Reading works; the server refuses application messages and commits other than removals.
    ReadOnly,
    /// Everything of the group is to be deleted; nothing is served.
    Deleted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Writable => "writable",
            Phase::ReadOnly => "read_only",
            Phase::Deleted => "deleted",
        }
    }
}

/// An organisation's retention periods, in days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub writable_days: i64,
    pub readable_days: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            writable_days: DEFAULT_WRITABLE_DAYS,
            readable_days: DEFAULT_READABLE_DAYS,
        }
    }
}

impl Retention {
    /// The instant (ms) until which the chat of a duty ending at `ends_ms` is writable.
    pub fn writable_until(&self, ends_ms: i64) -> i64 {
        ends_ms.saturating_add(self.writable_days.saturating_mul(DAY_MS))
    }

    /// The instant (ms) at which the chat of a duty ending at `ends_ms` is deleted.
    pub fn deleted_at(&self, ends_ms: i64) -> i64 {
        self.writable_until(ends_ms)
            .saturating_add(self.readable_days.saturating_mul(DAY_MS))
    }

    /// The phase at `now_ms` of the chat of a duty ending at `ends_ms`.
    pub fn phase(&self, ends_ms: i64, cancelled: bool, now_ms: i64) -> Phase {
        if now_ms >= self.deleted_at(ends_ms) {
            Phase::Deleted
        } else if cancelled || now_ms >= self.writable_until(ends_ms) {
            Phase::ReadOnly
        } else {
            Phase::Writable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_writable_read_only_deleted() {
        let r = Retention::default();
        let end = 1_000 * DAY_MS;
        assert_eq!(r.phase(end, false, end - 1), Phase::Writable);
        assert_eq!(r.phase(end, false, end + 2 * DAY_MS - 1), Phase::Writable);
        assert_eq!(r.phase(end, false, end + 2 * DAY_MS), Phase::ReadOnly);
        assert_eq!(r.phase(end, false, end + 32 * DAY_MS - 1), Phase::ReadOnly);
        assert_eq!(r.phase(end, false, end + 32 * DAY_MS), Phase::Deleted);
    }

    #[test]
    fn cancelled_is_read_only_at_once() {
        let r = Retention::default();
        let end = 1_000 * DAY_MS;
        assert_eq!(r.phase(end, true, 0), Phase::ReadOnly);
        assert_eq!(r.phase(end, true, end + 32 * DAY_MS), Phase::Deleted);
    }

    #[test]
    fn custom_periods_and_no_overflow() {
        let r = Retention {
            writable_days: 0,
            readable_days: 1,
        };
        assert_eq!(r.phase(0, false, 0), Phase::ReadOnly);
        assert_eq!(r.phase(0, false, DAY_MS), Phase::Deleted);
        let far = Retention {
            writable_days: i64::MAX,
            readable_days: i64::MAX,
        };
        assert_eq!(far.phase(i64::MAX - 5, false, 0), Phase::Writable);
    }
}
