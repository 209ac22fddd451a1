//! Texts of the notices Carebridge sends about duties, in the recipient's language (de, en, fr,
//! it, fi, sv; English for anything else). The sign-in texts (invitation, password reset, SMS
//! code) live with the identity pages, the portal's notice with the portal.

/// "The chat of your duty is open": subject and body, for a duty `title` starting `when`
/// (local date and time, already formatted).
pub fn chat_activated(lang: &str, title: &str, when: &str) -> (String, String) {
    let (subject, body, hint) = match lang.get(..2).unwrap_or("") {
        "de" => (
            "Chat zu Ihrem Einsatz ist offen",
            "Für Ihren Einsatz ist ein Ende-zu-Ende-verschlüsselter Chat eingerichtet",
            "Öffnen Sie die Carebridge-App, um ihn zu lesen. Der Chat folgt der Einsatzliste und ist nach dem Einsatz noch 2 Tage nutzbar und 30 Tage lesbar.",
        ),
        "fr" => (
            "Le chat de votre intervention est ouvert",
            "Un chat chiffré de bout en bout est ouvert pour votre intervention",
            "Ouvrez l'app Carebridge pour le lire. Le chat suit la liste d'intervention ; après l'intervention, il reste utilisable 2 jours et lisible 30 jours.",
        ),
        "it" => (
            "La chat del tuo servizio è aperta",
            "Per il tuo servizio è attiva una chat cifrata end-to-end",
            "Apri l'app Carebridge per leggerla. La chat segue l'elenco del servizio; dopo il servizio resta utilizzabile 2 giorni e leggibile 30 giorni.",
        ),
        "fi" => (
            "Tehtäväsi chat on avattu",
            "Tehtävällesi on avattu päästä päähän salattu chat",
            "Avaa Carebridge-sovellus lukeaksesi sen. Chat seuraa tehtävän miehitystä; tehtävän jälkeen se on käytettävissä 2 päivää ja luettavissa 30 päivää.",
        ),
        "sv" => (
            "Chatten för ditt uppdrag är öppen",
            "För ditt uppdrag finns nu en end-to-end-krypterad chatt",
            "Öppna Carebridge-appen för att läsa den. Chatten följer bemanningslistan; efter uppdraget kan den användas i 2 dagar och läsas i 30 dagar.",
        ),
        _ => (
            "The chat of your duty is open",
            "An end-to-end encrypted chat is open for your duty",
            "Open the Carebridge app to read it. The chat follows the roster; after the duty it stays usable for 2 days and readable for 30 days.",
        ),
    };
    (
        format!("{subject}: {title}"),
        format!("{body}:\n\n{title}\n{when}\n\n{hint}\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_languages_and_english_for_the_rest() {
        let mut seen = std::collections::HashSet::new();
        for l in ["de", "en", "fr", "it", "fi", "sv"] {
            let (s, b) = chat_activated(l, "Sanitätsdienst", "2026-12-01 08:00");
            assert!(seen.insert(s.clone()), "{l}");
            assert!(b.contains("Sanitätsdienst") && b.contains("2026-12-01 08:00"));
        }
        assert_eq!(
            chat_activated("pt", "x", "y").0,
            chat_activated("en", "x", "y").0
        );
        assert_eq!(
            chat_activated("de-CH", "x", "y").0,
            chat_activated("de", "x", "y").0
        );
    }
}
