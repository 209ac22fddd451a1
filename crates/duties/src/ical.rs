//! iCalendar (RFC 5545) rendering of a person's duties, through the `icalendar` crate (which
//! escapes and folds the text). Times are written in UTC, so no VTIMEZONE is needed; the duty's
//! own zone is named in the description for people reading it.

use carebridge_proto::duties::{Assignment, Duty};
use icalendar::{Calendar, Component, Event, EventLike, EventStatus};
use jiff::Timestamp;

fn utc(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// One VEVENT per assignment: confirmed ones as CONFIRMED, requests as TENTATIVE, cancelled
/// duties and declined requests as CANCELLED.
pub fn calendar(items: &[(Assignment, Duty)], now: Timestamp) -> String {
    let mut cal = Calendar::new();
    cal.name("Carebridge duties");
    for (a, d) in items {
        let status = if d.state == "cancelled" || a.status == "declined" {
            EventStatus::Cancelled
        } else if a.status == "requested" {
            EventStatus::Tentative
        } else {
            EventStatus::Confirmed
        };
        let mut ev = Event::new();
        ev.uid(&format!("{}@carebridge", a.id))
            .summary(&d.title)
            .status(status)
            .add_property("DTSTART", utc(d.starts_at))
            .add_property("DTEND", utc(d.ends_at))
            .add_property("DTSTAMP", utc(now))
            .add_property("LAST-MODIFIED", utc(d.updated_at.max(a.updated_at)))
            .description(&format!(
                "{}{}Role: {} ({}); local time {} – {}",
                d.description.as_deref().unwrap_or(""),
                if d.description.is_some() { "\n" } else { "" },
                a.role,
                a.status,
                d.starts_local,
                d.ends_local
            ));
        if let Some(l) = &d.location {
            ev.location(l);
        }
        cal.push(ev.done());
    }
    cal.done().to_string()
}
