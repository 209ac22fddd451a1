//! SQL of the directory. Invariant: every statement filters by `org_id`; an id of another
//! organisation behaves exactly like an id that does not exist.

pub mod access;
pub mod feed;
pub mod jobs;
pub mod labels;
pub mod people;
pub mod roles;
pub mod units;

/// `$from, $from+1, …` placeholders for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
