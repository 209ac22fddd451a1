//! iCalendar (RFC 5545) rendering of a client's appointments through the `icalendar` crate
//! (which escapes and folds the text). Times are written in UTC, so no VTIMEZONE is needed.

use carebridge_proto::portal::Appointment;
use icalendar::{Calendar, Component, Event, EventStatus};
use jiff::Timestamp;

fn utc(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// One VEVENT per visit; cancelled ones as CANCELLED (calendar apps then strike them out).
pub fn calendar(name: &str, items: &[Appointment], now: Timestamp) -> String {
    let mut cal = Calendar::new();
    cal.name(name);
    for a in items {
        let mut ev = Event::new();
        let carer = a
            .carer
            .as_ref()
            .map(|c| format!("\n{}", c.first_name))
            .unwrap_or_default();
        ev.uid(&format!("{}@carebridge-portal", a.id))
            .summary(&a.service)
            .status(if a.status == "cancelled" {
                EventStatus::Cancelled
            } else {
                EventStatus::Confirmed
            })
            .add_property("DTSTART", utc(a.starts_at))
            .add_property("DTEND", utc(a.ends_at))
            .add_property("DTSTAMP", utc(now))
            .description(&format!(
                "{} {}–{} ({}){carer}",
                a.date, a.from, a.to, a.status
            ));
        cal.push(ev.done());
    }
    cal.done().to_string()
}
