//! Duties (events with needed positions), assignments and qualifications: the pure rules.
//!
//! - A duty has a start and an end in a named time zone; times come in either as an RFC 3339
//!   instant with an offset or as a local date-time read in the duty's zone (DST-aware).
//! - The roster of a duty is its confirmed assignments; requests and declines are not on it.
//! - A person fits a position when one of their qualifications that is still valid at the
//!   duty's start *includes* the needed one (directly or through the catalogue's "includes"
//!   relation, e.g. paramedic → first aider).

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::ids::{PersonId, PositionId, QualificationId};
use crate::validate::{Violations, bounded_text};

/// Longest duty accepted (a multi-day camp fits, a typo of a year does not).
pub const MAX_DURATION_DAYS: i64 = 31;
/// Most positions a duty may list.
pub const MAX_POSITIONS: usize = 50;
/// Most people one position may need.
pub const MAX_POSITION_COUNT: i64 = 5_000;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }

            /// The accepted spellings, for error messages.
            pub fn expected() -> String {
                [$($text),*].join(", ")
            }
        }
    };
}

str_enum!(
    /// Whether a duty takes place.
    DutyState { Planned = "planned", Cancelled = "cancelled" }
);
str_enum!(
    /// A person's role on a duty.
    AssignmentRole { Lead = "lead", Helper = "helper" }
);
str_enum!(
    /// Where an assignment stands: a member's request, confirmed (on the roster) or declined.
    AssignmentStatus { Requested = "requested", Confirmed = "confirmed", Declined = "declined" }
);

/// The checked, normalised fields of a duty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DutyFields {
    pub title: String,
    pub location: Option<String>,
    pub description: Option<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub time_zone: String,
}

/// The raw fields of a duty as they arrive.
#[derive(Clone, Debug, Default)]
pub struct DutyInput<'a> {
    pub title: &'a str,
    pub location: Option<&'a str>,
    pub description: Option<&'a str>,
    pub starts_at: &'a str,
    pub ends_at: &'a str,
    pub time_zone: &'a str,
}

/// Looks up an IANA time zone name (e.g. `Europe/Zurich`).
pub fn time_zone(name: &str) -> Option<TimeZone> {
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    TimeZone::get(name).ok()
}

/// Reads an instant: RFC 3339 with offset (`2026-12-01T08:00:00+01:00`, `…Z`), or a local
/// date-time without offset (`2026-12-01T08:00`) taken in `tz` (a time in a DST gap moves
/// forward, an ambiguous one takes the earlier instant, as calendars do).
pub fn parse_instant(s: &str, tz: &TimeZone) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let dt: DateTime = s.parse().ok()?;
    tz.to_ambiguous_zoned(dt)
        .compatible()
        .ok()
        .map(|z| z.timestamp())
}

fn optional_text(v: &mut Violations, pointer: &str, s: Option<&str>, max: usize) -> Option<String> {
    let t = bounded_text(v, pointer, s?, 0, max);
    (!t.is_empty()).then_some(t)
}

/// Checks a duty's fields: title 1–200 characters, location ≤ 200, description ≤ 4000, a known
/// time zone, start and end readable, end after start, at most [`MAX_DURATION_DAYS`] long.
pub fn check_duty(input: &DutyInput<'_>) -> Result<DutyFields, Violations> {
    let mut v = Violations::new();
    let title = bounded_text(&mut v, "/title", input.title, 1, 200);
    let location = optional_text(&mut v, "/location", input.location, 200);
    let description = optional_text(&mut v, "/description", input.description, 4000);
    let Some(tz) = time_zone(input.time_zone) else {
        v.push(
            "/time_zone",
            "invalid_time_zone",
            "must be an IANA time zone name such as Europe/Zurich or UTC",
        );
        return Err(v);
    };
    let start = parse_instant(input.starts_at, &tz);
    let end = parse_instant(input.ends_at, &tz);
    for (p, t) in [("/starts_at", start), ("/ends_at", end)] {
        if t.is_none() {
            v.push(
                p,
                "invalid_time",
                "must be an RFC 3339 time (2026-12-01T08:00:00+01:00) or a local time (2026-12-01T08:00) in the duty's time zone",
            );
        }
    }
    if let (Some(s), Some(e)) = (start, end) {
        let ms = e.as_millisecond() - s.as_millisecond();
        if ms <= 0 {
            v.push("/ends_at", "end_before_start", "must be after starts_at");
        } else if ms > MAX_DURATION_DAYS * 86_400_000 {
            v.push(
                "/ends_at",
                "too_long",
                format!("a duty may last at most {MAX_DURATION_DAYS} days"),
            );
        }
    }
    v.into_result()?;
    match (start, end) {
        (Some(starts_at), Some(ends_at)) => Ok(DutyFields {
            title,
            location,
            description,
            starts_at,
            ends_at,
            time_zone: input.time_zone.to_string(),
        }),
        _ => Err(Violations::single(
            "/starts_at",
            "invalid_time",
            "unreadable",
        )),
    }
}

/// A needed position as it arrives: its name, how many people, and the qualification needed.
#[derive(Clone, Debug)]
pub struct PositionInput<'a> {
    pub name: &'a str,
    pub count: i64,
}

/// Checks a duty's positions: names 1–100 characters and unique (case-insensitive), counts
/// 1–[`MAX_POSITION_COUNT`], at most [`MAX_POSITIONS`]. Returns the trimmed names.
pub fn check_positions(list: &[PositionInput<'_>]) -> Result<Vec<String>, Violations> {
    let mut v = Violations::new();
    if list.len() > MAX_POSITIONS {
        v.push(
            "/positions",
            "too_many",
            format!("a duty may list at most {MAX_POSITIONS} positions"),
        );
        return Err(v);
    }
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let n = bounded_text(&mut v, &format!("/positions/{i}/name"), p.name, 1, 100);
        if !n.is_empty() && !seen.insert(n.to_lowercase()) {
            v.push(
                format!("/positions/{i}/name"),
                "duplicate",
                "two positions of a duty may not have the same name",
            );
        }
        if !(1..=MAX_POSITION_COUNT).contains(&p.count) {
            v.push(
                format!("/positions/{i}/count"),
                "out_of_range",
                format!("must be between 1 and {MAX_POSITION_COUNT}"),
            );
        }
        names.push(n);
    }
    v.into_result().map(|()| names)
}

/// Checks a qualification name (1–100 characters).
pub fn check_qualification_name(name: &str) -> Result<String, Violations> {
    let mut v = Violations::new();
    let n = bounded_text(&mut v, "/name", name, 1, 100);
    v.into_result().map(|()| n)
}

/// The "includes" relation of an organisation's qualification catalogue:
/// `includes[a]` lists the qualifications that holding `a` also grants.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    includes: HashMap<QualificationId, Vec<QualificationId>>,
}

impl Catalogue {
    pub fn new(edges: impl IntoIterator<Item = (QualificationId, QualificationId)>) -> Self {
        let mut includes: HashMap<QualificationId, Vec<QualificationId>> = HashMap::new();
        for (a, b) in edges {
            includes.entry(a).or_default().push(b);
        }
        Self { includes }
    }

    /// Everything `held` grants, itself included (cycles are harmless).
    pub fn closure(
        &self,
        held: impl IntoIterator<Item = QualificationId>,
    ) -> HashSet<QualificationId> {
        let mut out = HashSet::new();
        let mut stack: Vec<QualificationId> = held.into_iter().collect();
        while let Some(q) = stack.pop() {
            if out.insert(q)
                && let Some(next) = self.includes.get(&q)
            {
                stack.extend(next.iter().copied());
            }
        }
        out
    }

    /// Whether setting `q`'s includes to `new` would make `q` include itself.
    pub fn would_cycle(&self, q: QualificationId, new: &[QualificationId]) -> bool {
        let mut c = self.clone();
        c.includes.insert(q, new.to_vec());
        c.closure(new.iter().copied()).contains(&q)
    }

    /// Whether someone holding `held` (each with an optional expiry) fits a position needing
    /// `needed` at instant `at`. A qualification is valid while `at` is before its expiry.
    pub fn qualifies(
        &self,
        needed: QualificationId,
        held: &[(QualificationId, Option<Timestamp>)],
        at: Timestamp,
    ) -> bool {
        let valid = held
            .iter()
            .filter(|(_, until)| until.is_none_or(|u| at < u))
            .map(|(q, _)| *q);
        self.closure(valid).contains(&needed)
    }
}

/// One line of a duty's roster: who, as what, on which position.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RosterEntry {
    pub person_id: PersonId,
    pub role: &'static str,
    pub position_id: Option<PositionId>,
}

/// Whether a status change is allowed: requests get confirmed or declined, a declined person
/// may ask again, a confirmed assignment is removed rather than declined.
pub fn transition_allowed(from: AssignmentStatus, to: AssignmentStatus) -> bool {
    use AssignmentStatus::*;
    matches!(
        (from, to),
        (Requested, Confirmed) | (Requested, Declined) | (Declined, Requested)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn q(n: u128) -> QualificationId {
        QualificationId(Uuid::from_u128(n))
    }

    fn input<'a>(s: &'a str, e: &'a str, tz: &'a str) -> DutyInput<'a> {
        DutyInput {
            title: "Sanitätsdienst Zürifäscht",
            location: Some("Zürich"),
            description: None,
            starts_at: s,
            ends_at: e,
            time_zone: tz,
        }
    }

    #[test]
    fn local_times_are_read_in_the_duty_zone_across_dst() {
        // 29 March 2026: Europe/Zurich switches from +01:00 to +02:00.
        let d = check_duty(&input(
            "2026-03-28T08:00",
            "2026-03-29T08:00",
            "Europe/Zurich",
        ))
        .unwrap();
        assert_eq!(d.starts_at.to_string(), "2026-03-28T07:00:00Z");
        assert_eq!(d.ends_at.to_string(), "2026-03-29T06:00:00Z");
        let d = check_duty(&input(
            "2026-03-28T08:00:00Z",
            "2026-03-28T09:00:00+02:00",
            "UTC",
        ));
        assert!(d.is_err(), "end at 07:00Z is before start at 08:00Z");
    }

    #[test]
    fn bad_duties_name_every_field() {
        let e = check_duty(&DutyInput {
            title: " ",
            location: None,
            description: None,
            starts_at: "tomorrow",
            ends_at: "2026-01-01T00:00",
            time_zone: "Europe/Zurich",
        })
        .unwrap_err();
        let ptrs: Vec<_> = e.0.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(ptrs, ["/title", "/starts_at"]);
        let e = check_duty(&input(
            "2026-01-01T10:00",
            "2026-01-01T09:00",
            "Mars/Olympus",
        ))
        .unwrap_err();
        assert_eq!(e.0[0].code, "invalid_time_zone");
        let e = check_duty(&input("2026-01-01T10:00", "2026-01-01T09:00", "UTC")).unwrap_err();
        assert_eq!(e.0[0].code, "end_before_start");
        let e = check_duty(&input("2026-01-01T10:00", "2026-03-01T09:00", "UTC")).unwrap_err();
        assert_eq!(e.0[0].code, "too_long");
    }

    #[test]
    fn positions_are_unique_and_counted() {
        let ok = check_positions(&[
            PositionInput {
                name: "Rettungssanitäter",
                count: 2,
            },
            PositionInput {
                name: "Fahrer",
                count: 1,
            },
        ]);
        assert_eq!(ok.unwrap(), ["Rettungssanitäter", "Fahrer"]);
        let e = check_positions(&[
            PositionInput {
                name: "Fahrer",
                count: 0,
            },
            PositionInput {
                name: "fahrer",
                count: 1,
            },
        ])
        .unwrap_err();
        let codes: Vec<_> = e.0.iter().map(|v| (v.pointer.as_str(), v.code)).collect();
        assert_eq!(
            codes,
            [
                ("/positions/0/count", "out_of_range"),
                ("/positions/1/name", "duplicate")
            ]
        );
    }

    #[test]
    fn includes_are_transitive_and_expiry_counts() {
        // paramedic → first aider → helper
        let c = Catalogue::new([(q(1), q(2)), (q(2), q(3))]);
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let now = t("2026-06-01T00:00:00Z");
        assert!(c.qualifies(q(3), &[(q(1), None)], now));
        assert!(!c.qualifies(q(1), &[(q(3), None)], now));
        let until = Some(t("2026-06-01T00:00:00Z"));
        assert!(
            !c.qualifies(q(3), &[(q(1), until)], now),
            "expires at that instant"
        );
        assert!(c.qualifies(q(3), &[(q(1), until)], t("2026-05-31T23:59:59Z")));
        assert!(c.would_cycle(q(3), &[q(1)]));
        assert!(!c.would_cycle(q(1), &[q(3)]));
        assert!(c.would_cycle(q(4), &[q(4)]));
    }

    #[test]
    fn status_transitions() {
        use AssignmentStatus::*;
        assert!(transition_allowed(Requested, Confirmed));
        assert!(transition_allowed(Declined, Requested));
        assert!(!transition_allowed(Confirmed, Declined));
        assert!(!transition_allowed(Declined, Confirmed));
        for s in AssignmentStatus::ALL {
            assert_eq!(AssignmentStatus::parse(s.as_str()), Some(*s));
        }
    }
}
