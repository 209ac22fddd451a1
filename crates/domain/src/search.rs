//! Search keys: a lower-cased, accent-folded form of names, e-mails and phone numbers, so that
//! `muller` finds `Müller` and `+41 79` finds `+41791234567`. Stored per person as tokens and
//! matched by prefix inside the database (an index range scan, never a table scan).

/// Lower-cases and folds common Latin diacritics (ä→a, ß→ss, é→e, ø→o, …). Other scripts stay
/// as they are (lower-cased).
pub fn fold(s: &str) -> String {
    // Most names, and nearly all e-mail addresses, are ASCII: nothing to fold but the case.
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => out.push('a'),
            'æ' => out.push_str("ae"),
            'ç' | 'ć' | 'č' => out.push('c'),
            'ď' | 'đ' | 'ð' => out.push('d'),
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => out.push('e'),
            'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => out.push('i'),
            'ł' | 'ľ' | 'ĺ' => out.push('l'),
            'ñ' | 'ń' | 'ň' => out.push('n'),
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => out.push('o'),
            'œ' => out.push_str("oe"),
            'ř' | 'ŕ' => out.push('r'),
            'ß' => out.push_str("ss"),
            'ś' | 'š' | 'ş' => out.push('s'),
            'ť' | 'ţ' => out.push('t'),
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => out.push('u'),
            'ý' | 'ÿ' => out.push('y'),
            'ź' | 'ż' | 'ž' => out.push('z'),
            'þ' => out.push_str("th"),
            c => out.push(c),
        }
    }
    out
}

/// Splits a folded text into search tokens (words of letters/digits; `@`, `.`, `-`, `_` and `+`
/// stay inside e-mail-like words).
pub fn tokens(s: &str) -> Vec<String> {
    fold(s)
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '/' | '(' | ')' | '"' | '\''))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// All search tokens of a person: each name word, the full name, each e-mail (its local part is
/// a prefix of it, so prefix search finds `a.mueller` without a token of its own), each phone
/// number as its E.164 digits without `+` (queries are brought to that form by
/// [`query_words_in`]).
pub fn person_tokens(
    given: &str,
    family: &str,
    emails: &[String],
    phones: &[String],
) -> Vec<String> {
    person_tokens_from(
        given,
        family,
        emails.iter().map(String::as_str),
        phones.iter().map(String::as_str),
    )
}

/// [`person_tokens`] of e-mails and phone numbers borrowed from wherever they are.
pub fn person_tokens_from<'a>(
    given: &str,
    family: &str,
    emails: impl IntoIterator<Item = &'a str>,
    phones: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tokens(given).into_iter().chain(tokens(family)) {
        // Double names are found by each part too: "müller-lüdenscheidt" by "lüd…".
        if t.contains('-') {
            out.extend(t.split('-').filter(|p| !p.is_empty()).map(str::to_string));
        }
        out.push(t);
    }
    for e in emails {
        out.push(fold(e));
    }
    for p in phones {
        out.push(p.trim_start_matches('+').to_string());
    }
    out.sort();
    out.dedup();
    // No whitespace inside a token: [`search_text`] separates tokens by spaces (and a query
    // word never contains whitespace either).
    out.retain(|t| !t.is_empty() && t.len() <= 200 && !t.contains(char::is_whitespace));
    out
}

/// A person's tokens as stored beside the person (`people.search`): `" t1 t2 … "`, empty
/// without tokens. A token starting with `w` is then the text `" w"` inside it.
pub fn search_text(tokens: &[String]) -> String {
    if tokens.is_empty() {
        return String::new();
    }
    let mut s = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum::<usize>() + 1);
    for t in tokens {
        s.push(' ');
        s.push_str(t);
    }
    s.push(' ');
    s
}

/// The tokens of a [`search_text`].
pub fn search_tokens(search: &str) -> impl Iterator<Item = &str> {
    search.split(' ').filter(|t| !t.is_empty())
}

/// The words of a search query, folded; phone-like input loses its spaces so `+41 79 123`
/// matches the E.164 form.
pub fn query_words(q: &str) -> Vec<String> {
    query_words_in(q, "")
}

/// [`query_words`] for an organisation in `region` (ISO country, e.g. `CH`): a phone-like query
/// becomes E.164 digits without `+` — `+41 79…` and `0041 79…` → `4179…`, and a national
/// number `079 123` → `4179123` with the region's calling code.
pub fn query_words_in(q: &str, region: &str) -> Vec<String> {
    let trimmed = q.trim();
    let phone_like = !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '/'))
        && trimmed.chars().any(|c| c.is_ascii_digit());
    if phone_like {
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        let international = if trimmed.starts_with('+') {
            digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_string()
        } else if let (Some(rest), Some(m)) = (
            digits.strip_prefix('0'),
            crate::org::phone_region(region)
                .and_then(|r| rlibphonenumber::PHONE_NUMBER_UTIL.get_country_code_for_region(r)),
        ) {
            format!("{m}{rest}")
        } else {
            digits
        };
        return vec![international];
    }
    let mut w = tokens(trimmed);
    w.truncate(5);
    w
}

/// The exclusive upper bound of a prefix range: `prefix <= token < upper`.
pub fn prefix_upper(prefix: &str) -> String {
    let mut s = prefix.to_string();
    s.push(char::MAX);
    s
}

/// The sort key of a person's name: family name, then given name, folded.
pub fn sort_key(given: &str, family: &str) -> String {
    format!("{}\u{1}{}", fold(family.trim()), fold(given.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_accents() {
        assert_eq!(fold("Müller"), "muller");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("Sjöström"), "sjostrom");
        assert_eq!(fold("Zoë"), "zoe");
        assert_eq!(fold("Ärrä"), "arra");
        assert_eq!(fold("J.Doe@Example.CH"), "j.doe@example.ch");
        assert_eq!(fold("ÄB"), "ab");
    }

    #[test]
    fn ascii_is_folded_as_by_the_general_rule() {
        let all: String = (0u8..128).map(char::from).collect();
        let general: String = all.chars().flat_map(char::to_lowercase).collect();
        assert_eq!(fold(&all), general);
    }

    #[test]
    fn phone_queries_lose_spaces() {
        assert_eq!(query_words("+41 79 123"), vec!["4179123"]);
        assert_eq!(query_words_in("0041 79 123", "CH"), vec!["4179123"]);
        assert_eq!(query_words_in("079 123", "CH"), vec!["4179123"]);
        assert_eq!(query_words_in("040 123", "FI"), vec!["35840123"]);
        assert_eq!(query_words_in("4179", "CH"), vec!["4179"]);
        assert_eq!(query_words_in("079", "XX"), vec!["079"]);
        assert_eq!(query_words("anna Müller"), vec!["anna", "muller"]);
    }

    #[test]
    fn search_text_round_trips() {
        let t = person_tokens(
            "Anna Maria",
            "Müller",
            &["a.m@x.ch".into()],
            &["+41791234567".into()],
        );
        let s = search_text(&t);
        assert!(s.starts_with(' ') && s.ends_with(' '), "{s:?}");
        assert!(s.contains(" mul") && s.contains(" 4179"), "{s:?}");
        assert_eq!(search_tokens(&s).collect::<Vec<_>>(), t);
        assert_eq!(search_text(&[]), "");
        assert_eq!(search_tokens("").count(), 0);
    }

    #[test]
    fn person_tokens_cover_fields() {
        let t = person_tokens(
            "Anna-Lena",
            "Müller",
            &["A.Mueller@Example.ch".into()],
            &["+41791234567".into()],
        );
        assert!(!t.contains(&"a.mueller".to_string()), "{t:?}");
        for want in ["anna-lena", "muller", "a.mueller@example.ch", "41791234567"] {
            assert!(t.contains(&want.to_string()), "{want} in {t:?}");
        }
    }
}
