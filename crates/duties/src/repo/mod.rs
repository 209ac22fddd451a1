//! SQL of the duties role. Invariant: every statement filters by `org_id`; an id of another
//! organisation behaves exactly like an id that does not exist.

pub mod assignments;
pub mod duties;
pub mod feeds;
pub mod qualifications;

/// `$from, $from+1, …` placeholders for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
