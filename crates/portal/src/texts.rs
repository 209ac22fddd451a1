//! The e-mail the organisation receives for a new portal message, in the organisation's
//! language (de, en, fr, it, fi, sv; English for anything else).

/// Languages the portal writes in.
pub const LANGUAGES: &[&str] = &["de", "en", "fr", "it", "fi", "sv"];

/// One language's wording.
pub struct Texts {
    subject: &'static str,
    intro: &'static str,
    client: &'static str,
    relative: &'static str,
    footer: &'static str,
}

static DE: Texts = Texts {
    subject: "Neue Nachricht im Kundenportal",
    intro: "hat im Kundenportal eine Nachricht geschrieben",
    client: "Klient/in",
    relative: "Angehörige/r von",
    footer: "Antworten Sie über Ihr ERP oder das Kundenportal, nicht auf diese E-Mail.",
};
static EN: Texts = Texts {
    subject: "New message in the customer portal",
    intro: "wrote a message in the customer portal",
    client: "Client",
    relative: "Relative of",
    footer: "Answer through your ERP or the customer portal, not to this e-mail.",
};
static FR: Texts = Texts {
    subject: "Nouveau message dans le portail client",
    intro: "a écrit un message dans le portail client",
    client: "Client·e",
    relative: "Proche de",
    footer: "Répondez via votre ERP ou le portail client, pas à cet e-mail.",
};
static IT: Texts = Texts {
    subject: "Nuovo messaggio nel portale clienti",
    intro: "ha scritto un messaggio nel portale clienti",
    client: "Cliente",
    relative: "Familiare di",
    footer: "Rispondete tramite il vostro ERP o il portale clienti, non a questa e-mail.",
};
static FI: Texts = Texts {
    subject: "Uusi viesti asiakasportaalissa",
    intro: "kirjoitti viestin asiakasportaalissa",
    client: "Asiakas",
    relative: "Omainen, asiakas",
    footer: "Vastaa ERP-järjestelmän tai asiakasportaalin kautta, älä tähän sähköpostiin.",
};
static SV: Texts = Texts {
    subject: "Nytt meddelande i kundportalen",
    intro: "skrev ett meddelande i kundportalen",
    client: "Klient",
    relative: "Anhörig till",
    footer: "Svara via ert affärssystem eller kundportalen, inte på detta e-postmeddelande.",
};

/// The wording for a language code (`de`, `de-CH`, …).
pub fn for_language(lang: &str) -> &'static Texts {
    match lang.get(..2).unwrap_or("") {
        "de" => &DE,
        "fr" => &FR,
        "it" => &IT,
        "fi" => &FI,
        "sv" => &SV,
        _ => &EN,
    }
}

impl Texts {
    /// Subject and body of the notice to the organisation.
    pub fn new_message(
        &self,
        client_name: &str,
        author: &str,
        subject: &str,
        body: &str,
    ) -> (String, String) {
        let who = if author == "client" {
            format!("{} {client_name}", self.client)
        } else {
            format!("{} {client_name}", self.relative)
        };
        (
            format!("{}: {subject}", self.subject),
            format!(
                "{who} {}:\n\n{subject}\n\n{body}\n\n-- \n{}\n",
                self.intro, self.footer
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_its_own_words() {
        let mut seen = std::collections::HashSet::new();
        for l in LANGUAGES {
            let (s, b) = for_language(l).new_message("Anna Muster", "relative", "Termin", "Text");
            assert!(seen.insert(s.clone()), "{l} repeats another language");
            assert!(b.contains("Anna Muster") && b.contains("Text"), "{l}: {b}");
        }
        assert_eq!(for_language("de-CH").subject, DE.subject);
        assert_eq!(for_language("xx").subject, EN.subject);
    }
}
