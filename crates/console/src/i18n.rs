//! The console's words in English and German. The language is the signed-in person's own
//! (`language` of their directory entry, changed from the console and so remembered on every
//! device), else the browser's `Accept-Language`, else English.

/// A console language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::De];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    /// The language's own name, for the switch.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::De => "Deutsch",
        }
    }

    pub fn of(tag: &str) -> Option<Lang> {
        match tag
            .trim()
            .split(['-', '_'])
            .next()?
            .to_ascii_lowercase()
            .as_str()
        {
            "en" => Some(Lang::En),
            "de" | "gsw" => Some(Lang::De),
            _ => None,
        }
    }

    /// The best supported language of an `Accept-Language` header (by q-value), else English.
    pub fn from_accept(accept: Option<&str>) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in accept.unwrap_or("").split(',') {
            let mut it = part.split(';');
            let Some(l) = it.next().and_then(Lang::of) else {
                continue;
            };
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, l));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::De => &DE,
        }
    }
}

/// Every word of the console.
pub struct Texts {
    pub console: &'static str,
    pub skip: &'static str,
    pub menu: &'static str,
    pub people: &'static str,
    pub units: &'static str,
    pub duties: &'static str,
    pub audit: &'static str,
    pub sign_out: &'static str,
    pub language: &'static str,
    pub save: &'static str,
    pub create: &'static str,
    pub search: &'static str,
    pub next_page: &'static str,
    pub first_page: &'static str,
    pub edit: &'static str,
    pub back: &'static str,
    pub all: &'static str,
    pub none: &'static str,
    pub active: &'static str,
    pub inactive: &'static str,
    pub status: &'static str,
    pub error_title: &'static str,
    pub not_allowed: &'static str,
    pub not_found: &'static str,
    pub csrf_failed: &'static str,
    pub broken: &'static str,
    pub changed_meanwhile: &'static str,
    pub fix_these: &'static str,
    pub no_role: &'static str,
    pub welcome: &'static str,
    // People
    pub new_person: &'static str,
    pub name: &'static str,
    pub given_name: &'static str,
    pub family_name: &'static str,
    pub kind: &'static str,
    pub kind_staff: &'static str,
    pub kind_volunteer: &'static str,
    pub kind_client: &'static str,
    pub kind_relative: &'static str,
    pub emails: &'static str,
    pub phones: &'static str,
    pub one_per_line: &'static str,
    pub address: &'static str,
    pub street: &'static str,
    pub postal_code: &'static str,
    pub locality: &'static str,
    pub country: &'static str,
    pub groups: &'static str,
    pub skills: &'static str,
    pub comma_separated: &'static str,
    pub roles: &'static str,
    pub external_id: &'static str,
    pub deactivate: &'static str,
    pub reactivate: &'static str,
    pub search_people: &'static str,
    pub unit_subtree: &'static str,
    pub no_results: &'static str,
    pub history: &'static str,
    pub hidden_fields: &'static str,
    pub whole_org: &'static str,
    // Units
    pub new_unit: &'static str,
    pub parent: &'static str,
    pub top_level: &'static str,
    pub rename_move: &'static str,
    // Duties
    pub new_duty: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub location: &'static str,
    pub starts: &'static str,
    pub ends: &'static str,
    pub time_zone: &'static str,
    pub state: &'static str,
    pub chat: &'static str,
    pub chat_on: &'static str,
    pub chat_off: &'static str,
    pub chat_switch: &'static str,
    pub chat_turn_on: &'static str,
    pub chat_turn_off: &'static str,
    pub roster: &'static str,
    pub assign: &'static str,
    pub role: &'static str,
    pub lead: &'static str,
    pub helper: &'static str,
    pub remove: &'static str,
    pub find_person: &'static str,
    pub confirmed: &'static str,
    pub requested: &'static str,
    pub from_date: &'static str,
    pub roster_effect: &'static str,
    // Audit
    pub chain_ok: &'static str,
    pub verify_chain: &'static str,
    pub chain_broken: &'static str,
    pub when: &'static str,
    pub actor: &'static str,
    pub action: &'static str,
    pub target: &'static str,
    pub source: &'static str,
}

pub static EN: Texts = Texts {
    console: "Console",
    skip: "Skip to content",
    menu: "Main menu",
    people: "People",
    units: "Units",
    duties: "Duties",
    audit: "Audit log",
    sign_out: "Sign out",
    language: "Language",
    save: "Save",
    create: "Create",
    search: "Search",
    next_page: "Next page",
    first_page: "First page",
    edit: "Edit",
    back: "Back",
    all: "All",
    none: "None",
    active: "Active",
    inactive: "Deactivated",
    status: "Status",
    error_title: "Something is wrong",
    not_allowed: "You may not see or change this.",
    not_found: "This does not exist, or you may not see it.",
    csrf_failed: "The form has expired. Open the page again and repeat your change.",
    broken: "The server could not answer. Try again in a moment.",
    changed_meanwhile: "Someone else changed this meanwhile. Here is the current state; repeat your change.",
    fix_these: "Please correct the following:",
    no_role: "Your account has no role that uses the console.",
    welcome: "Welcome",
    new_person: "New person",
    name: "Name",
    given_name: "Given name",
    family_name: "Family name",
    kind: "Kind",
    kind_staff: "Staff",
    kind_volunteer: "Volunteer",
    kind_client: "Client",
    kind_relative: "Relative",
    emails: "E-mail addresses",
    phones: "Phone numbers",
    one_per_line: "One per line.",
    address: "Address",
    street: "Street",
    postal_code: "Postal code",
    locality: "Locality",
    country: "Country (two letters)",
    groups: "Groups",
    skills: "Skills",
    comma_separated: "Separated by commas.",
    roles: "Roles",
    external_id: "External key",
    deactivate: "Deactivate",
    reactivate: "Reactivate",
    search_people: "Name, e-mail or phone",
    unit_subtree: "Unit (with the units below)",
    no_results: "Nothing found.",
    history: "History",
    hidden_fields: "Some fields are hidden from you.",
    whole_org: "whole organisation",
    new_unit: "New unit",
    parent: "Parent unit",
    top_level: "(top level)",
    rename_move: "Rename or move",
    new_duty: "New duty",
    title: "Title",
    unit: "Unit",
    location: "Location",
    starts: "Starts",
    ends: "Ends",
    time_zone: "Time zone",
    state: "State",
    chat: "Chat",
    chat_on: "on",
    chat_off: "off",
    chat_switch: "Duty chat for everyone on the roster",
    chat_turn_on: "Turn the chat on",
    chat_turn_off: "Turn the chat off",
    roster: "Roster",
    assign: "Assign",
    role: "Role",
    lead: "Lead",
    helper: "Helper",
    remove: "Remove",
    find_person: "Find a person to assign",
    confirmed: "confirmed",
    requested: "requested",
    from_date: "From",
    roster_effect: "Everyone confirmed on the roster is in the duty chat; a removal takes the person out of it at once.",
    chain_ok: "The audit chain is intact",
    verify_chain: "Verify the audit chain",
    chain_broken: "The audit chain is broken",
    when: "When",
    actor: "Who",
    action: "Action",
    target: "Target",
    source: "Source",
};

pub static DE: Texts = Texts {
    console: "Konsole",
    skip: "Zum Inhalt springen",
    menu: "Hauptmenü",
    people: "Personen",
    units: "Einheiten",
    duties: "Dienste",
    audit: "Protokoll",
    sign_out: "Abmelden",
    language: "Sprache",
    save: "Speichern",
    create: "Anlegen",
    search: "Suchen",
    next_page: "Nächste Seite",
    first_page: "Erste Seite",
    edit: "Bearbeiten",
    back: "Zurück",
    all: "Alle",
    none: "Keine",
    active: "Aktiv",
    inactive: "Deaktiviert",
    status: "Status",
    error_title: "Etwas stimmt nicht",
    not_allowed: "Sie dürfen das nicht sehen oder ändern.",
    not_found: "Das gibt es nicht, oder Sie dürfen es nicht sehen.",
    csrf_failed: "Das Formular ist abgelaufen. Öffnen Sie die Seite neu und wiederholen Sie die Änderung.",
    broken: "Der Server konnte nicht antworten. Versuchen Sie es gleich noch einmal.",
    changed_meanwhile: "Jemand anderes hat das inzwischen geändert. Hier ist der aktuelle Stand; wiederholen Sie Ihre Änderung.",
    fix_these: "Bitte korrigieren Sie:",
    no_role: "Ihr Konto hat keine Rolle, die die Konsole nutzt.",
    welcome: "Willkommen",
    new_person: "Neue Person",
    name: "Name",
    given_name: "Vorname",
    family_name: "Nachname",
    kind: "Art",
    kind_staff: "Mitarbeitende",
    kind_volunteer: "Freiwillige",
    kind_client: "Kundin/Kunde",
    kind_relative: "Angehörige",
    emails: "E-Mail-Adressen",
    phones: "Telefonnummern",
    one_per_line: "Eine pro Zeile.",
    address: "Adresse",
    street: "Strasse",
    postal_code: "PLZ",
    locality: "Ort",
    country: "Land (zwei Buchstaben)",
    groups: "Gruppen",
    skills: "Fähigkeiten",
    comma_separated: "Durch Kommas getrennt.",
    roles: "Rollen",
    external_id: "Externer Schlüssel",
    deactivate: "Deaktivieren",
    reactivate: "Reaktivieren",
    search_people: "Name, E-Mail oder Telefon",
    unit_subtree: "Einheit (mit den Einheiten darunter)",
    no_results: "Nichts gefunden.",
    history: "Verlauf",
    hidden_fields: "Einige Felder sind für Sie verborgen.",
    whole_org: "ganze Organisation",
    new_unit: "Neue Einheit",
    parent: "Übergeordnete Einheit",
    top_level: "(oberste Ebene)",
    rename_move: "Umbenennen oder verschieben",
    new_duty: "Neuer Dienst",
    title: "Titel",
    unit: "Einheit",
    location: "Ort",
    starts: "Beginn",
    ends: "Ende",
    time_zone: "Zeitzone",
    state: "Zustand",
    chat: "Chat",
    chat_on: "an",
    chat_off: "aus",
    chat_switch: "Dienst-Chat für alle im Dienstplan",
    chat_turn_on: "Chat einschalten",
    chat_turn_off: "Chat ausschalten",
    roster: "Dienstplan",
    assign: "Einteilen",
    role: "Rolle",
    lead: "Leitung",
    helper: "Helfer/in",
    remove: "Entfernen",
    find_person: "Person zum Einteilen suchen",
    confirmed: "bestätigt",
    requested: "angefragt",
    from_date: "Ab",
    roster_effect: "Alle Bestätigten im Dienstplan sind im Dienst-Chat; wer entfernt wird, ist sofort nicht mehr darin.",
    chain_ok: "Die Protokollkette ist unversehrt",
    verify_chain: "Protokollkette prüfen",
    chain_broken: "Die Protokollkette ist beschädigt",
    when: "Wann",
    actor: "Wer",
    action: "Aktion",
    target: "Ziel",
    source: "Quelle",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported() {
        assert_eq!(
            Lang::from_accept(Some("fr-CH, de;q=0.8, en;q=0.5")),
            Lang::De
        );
        assert_eq!(Lang::from_accept(Some("de-CH")), Lang::De);
        assert_eq!(Lang::from_accept(Some("fi")), Lang::En);
        assert_eq!(Lang::from_accept(None), Lang::En);
    }
}
