//! SCIM 2.0 filters and PATCH paths (RFC 7644 §3.4.2.2 and §3.5.2), parsed into a tree. The
//! directory translates the tree into SQL; nothing here evaluates a filter against data.
//!
//! Grammar (case-insensitive operators and attribute names; `and` binds tighter than `or`):
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / [ "not" ] "(" FILTER ")"
//! valuePath = attrPath "[" FILTER "]"
//! attrExp   = attrPath SP "pr" / attrPath SP compareOp SP compValue
//! compValue = false / null / true / number / string
//! attrPath  = [ URI ":" ] ATTRNAME [ "." subAttr ]
//! PATH      = attrPath / valuePath [ "." subAttr ]
//! ```
//!
//! Attribute names are returned lower-cased (SCIM names are case-insensitive); a schema URI
//! prefix is kept (lower-cased) so callers can tell the enterprise extension apart.

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "lt" => Op::Lt,
            "ge" => Op::Ge,
            "le" => Op::Le,
            _ => return None,
        })
    }
}

/// A comparison value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    /// A JSON number, as written.
    Num(String),
    Bool(bool),
    Null,
}

/// `[uri:]name[.sub]`, lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// `name` or `name.sub`, without the URI.
    pub fn dotted(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}.{s}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Compare(AttrPath, Op, Value),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work"]`: some element of the multi-valued attribute matches.
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH path: an attribute, optionally narrowed by a value filter and then a sub-attribute
/// (`emails[type eq "work"].value`).
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

/// Why a filter or path does not parse: position (in characters) and reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at character {at}: {reason}")]
pub struct ParseError {
    pub at: usize,
    pub reason: String,
}

/// Longest filter accepted (characters) and deepest nesting.
pub const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
}

struct Lexer {
    toks: Vec<(usize, Tok)>,
}

fn lex(s: &str) -> Result<Lexer, ParseError> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() > MAX_LEN {
        return Err(ParseError {
            at: MAX_LEN,
            reason: format!("longer than {MAX_LEN} characters"),
        });
    }
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                toks.push((i, Tok::LParen));
                i += 1;
            }
            ')' => {
                toks.push((i, Tok::RParen));
                i += 1;
            }
            '[' => {
                toks.push((i, Tok::LBracket));
                i += 1;
            }
            ']' => {
                toks.push((i, Tok::RBracket));
                i += 1;
            }
            '"' => {
                let start = i;
                i += 1;
                let mut out = String::new();
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(ParseError {
                            at: start,
                            reason: "unterminated string".into(),
                        });
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let Some(&e) = chars.get(i) else {
                                return Err(ParseError {
                                    at: i,
                                    reason: "unterminated escape".into(),
                                });
                            };
                            i += 1;
                            match e {
                                '"' | '\\' | '/' => out.push(e),
                                'n' => out.push('\n'),
                                't' => out.push('\t'),
                                'r' => out.push('\r'),
                                'b' => out.push('\u{8}'),
                                'f' => out.push('\u{c}'),
                                'u' => {
                                    let hex: String = chars.iter().skip(i).take(4).collect();
                                    let code = (hex.len() == 4)
                                        .then(|| u32::from_str_radix(&hex, 16).ok())
                                        .flatten()
                                        .and_then(char::from_u32)
                                        .ok_or_else(|| ParseError {
                                            at: i,
                                            reason: "bad \\u escape".into(),
                                        })?;
                                    out.push(code);
                                    i += 4;
                                }
                                _ => {
                                    return Err(ParseError {
                                        at: i - 1,
                                        reason: format!("unknown escape \\{e}"),
                                    });
                                }
                            }
                        }
                        _ => out.push(c),
                    }
                }
                toks.push((start, Tok::Str(out)));
            }
            _ => {
                let start = i;
                let mut w = String::new();
                while let Some(&c) = chars.get(i) {
                    if matches!(c, ' ' | '\t' | '\n' | '\r' | '(' | ')' | '[' | ']' | '"') {
                        break;
                    }
                    w.push(c);
                    i += 1;
                }
                toks.push((start, Tok::Word(w)));
            }
        }
    }
    Ok(Lexer { toks })
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn err<T>(&self, reason: impl Into<String>) -> Result<T, ParseError> {
        let at = self.toks.get(self.pos).map(|t| t.0).unwrap_or(self.end);
        Err(ParseError {
            at,
            reason: reason.into(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.1.clone());
        self.pos += 1;
        t
    }

    fn or(&mut self, depth: usize) -> Result<Filter, ParseError> {
        if depth > MAX_DEPTH {
            return self.err("nested too deeply");
        }
        let mut left = self.and(depth)?;
        while self.peek_word("or") {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, ParseError> {
        let mut left = self.unary(depth)?;
        while self.peek_word("and") {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, ParseError> {
        if self.peek_word("not") && matches!(self.toks.get(self.pos + 1), Some((_, Tok::LParen))) {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.group(depth)?)));
        }
        if matches!(self.peek(), Some(Tok::LParen)) {
            return self.group(depth);
        }
        self.attr_exp(depth)
    }

    fn group(&mut self, depth: usize) -> Result<Filter, ParseError> {
        if !matches!(self.next(), Some(Tok::LParen)) {
            self.pos -= 1;
            return self.err("expected '('");
        }
        let f = self.or(depth + 1)?;
        if !matches!(self.next(), Some(Tok::RParen)) {
            self.pos -= 1;
            return self.err("expected ')'");
        }
        Ok(f)
    }

    fn attr_exp(&mut self, depth: usize) -> Result<Filter, ParseError> {
        let path = match self.next() {
            Some(Tok::Word(w)) => match attr_path(&w) {
                Some(p) => p,
                None => {
                    self.pos -= 1;
                    return self.err(format!("'{w}' is not an attribute path"));
                }
            },
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return self.err("expected an attribute path");
            }
        };
        if matches!(self.peek(), Some(Tok::LBracket)) {
            self.pos += 1;
            if path.sub.is_some() {
                return self.err("a value filter follows an attribute, not a sub-attribute");
            }
            let inner = self.or(depth + 1)?;
            if !matches!(self.next(), Some(Tok::RBracket)) {
                self.pos -= 1;
                return self.err("expected ']'");
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        let op = match self.next() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("pr") => return Ok(Filter::Present(path)),
            Some(Tok::Word(w)) => match Op::parse(&w) {
                Some(op) => op,
                None => {
                    self.pos -= 1;
                    return self.err(format!("'{w}' is not an operator"));
                }
            },
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return self.err("expected an operator");
            }
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => Value::Str(s),
            Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ if is_number(&w) => Value::Num(w),
                _ => {
                    self.pos -= 1;
                    return self.err(format!("'{w}' is not a value (strings are quoted)"));
                }
            },
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return self.err("expected a value");
            }
        };
        Ok(Filter::Compare(path, op, value))
    }
}

fn is_number(w: &str) -> bool {
    let t = w.strip_prefix('-').unwrap_or(w);
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && t.chars().next().is_some_and(|c| c.is_ascii_digit())
        && w.parse::<f64>().is_ok()
}

fn name_ok(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

/// Parses `[uri:]name[.sub]`. A URI is everything up to the last ':' (schema URNs contain
/// dots, so the sub-attribute is only looked for after it).
pub fn attr_path(s: &str) -> Option<AttrPath> {
    let (uri, rest) = match s.rfind(':') {
        Some(i) => (Some(s[..i].to_ascii_lowercase()), &s[i + 1..]),
        None => (None, s),
    };
    if uri.as_deref().is_some_and(|u| !u.starts_with("urn:")) {
        return None;
    }
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    if !name_ok(name) || sub.is_some_and(|s| !name_ok(s)) {
        return None;
    }
    Some(AttrPath {
        uri,
        name: name.to_ascii_lowercase(),
        sub: sub.map(str::to_ascii_lowercase),
    })
}

/// Parses a filter.
pub fn parse_filter(s: &str) -> Result<Filter, ParseError> {
    let l = lex(s)?;
    let end = s.chars().count();
    let mut p = Parser {
        toks: l.toks,
        pos: 0,
        end,
    };
    if p.toks.is_empty() {
        return Err(ParseError {
            at: 0,
            reason: "empty filter".into(),
        });
    }
    let f = p.or(0)?;
    if p.pos < p.toks.len() {
        return p.err("unexpected text after the filter");
    }
    Ok(f)
}

/// Parses a PATCH path (`name`, `name.sub`, `urn:…:name`, `name[filter]`,
/// `name[filter].sub`).
pub fn parse_path(s: &str) -> Result<PatchPath, ParseError> {
    let s = s.trim();
    let bad = |reason: &str| ParseError {
        at: 0,
        reason: reason.into(),
    };
    match s.find('[') {
        None => attr_path(s)
            .map(|attr| PatchPath {
                attr,
                filter: None,
                sub: None,
            })
            .ok_or_else(|| bad("not an attribute path")),
        Some(open) => {
            let close = s.rfind(']').ok_or_else(|| bad("missing ']'"))?;
            if close < open {
                return Err(bad("missing ']'"));
            }
            let attr = attr_path(&s[..open]).ok_or_else(|| bad("not an attribute path"))?;
            if attr.sub.is_some() {
                return Err(bad(
                    "a value filter follows an attribute, not a sub-attribute",
                ));
            }
            let filter = parse_filter(&s[open + 1..close]).map_err(|e| ParseError {
                at: e.at + open + 1,
                reason: e.reason,
            })?;
            let rest = &s[close + 1..];
            let sub = if rest.is_empty() {
                None
            } else {
                let sub = rest
                    .strip_prefix('.')
                    .filter(|x| name_ok(x))
                    .ok_or_else(|| bad("only '.subAttribute' may follow ']'"))?;
                Some(sub.to_ascii_lowercase())
            };
            Ok(PatchPath {
                attr,
                filter: Some(filter),
                sub,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(name: &str) -> AttrPath {
        attr_path(name).unwrap()
    }

    #[test]
    fn filters_parse_with_precedence_and_case_rules() {
        let f = parse_filter(r#"userName Eq "bjensen""#).unwrap();
        assert_eq!(
            f,
            Filter::Compare(p("username"), Op::Eq, Value::Str("bjensen".into()))
        );
        let f = parse_filter(r#"a eq 1 or b eq 2 and c pr"#).unwrap();
        assert_eq!(
            f,
            Filter::Or(
                Box::new(Filter::Compare(p("a"), Op::Eq, Value::Num("1".into()))),
                Box::new(Filter::And(
                    Box::new(Filter::Compare(p("b"), Op::Eq, Value::Num("2".into()))),
                    Box::new(Filter::Present(p("c")))
                ))
            )
        );
        let f = parse_filter(
            r#"emails[type eq "work" and value co "@example.com"] or not (active eq false)"#,
        )
        .unwrap();
        assert!(matches!(f, Filter::Or(a, b)
            if matches!(*a, Filter::ValuePath(ref x, _) if x.name == "emails")
            && matches!(*b, Filter::Not(_))));
        let f = parse_filter(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"7\"",
        )
        .unwrap();
        let Filter::Compare(a, _, _) = f else {
            panic!()
        };
        assert_eq!(
            a.uri.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user")
        );
        assert_eq!(a.name, "employeenumber");
        let f = parse_filter(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#).unwrap();
        assert!(
            matches!(f, Filter::Compare(ref a, Op::Gt, _) if a.dotted() == "meta.lastmodified")
        );
        assert_eq!(
            parse_filter(r#"title eq "a \"quoted\" \u00e9""#).unwrap(),
            Filter::Compare(p("title"), Op::Eq, Value::Str("a \"quoted\" é".into()))
        );
    }

    #[test]
    fn bad_filters_say_where() {
        for (f, at) in [
            ("", 0),
            ("userName", 8),
            ("userName eq", 11),
            ("userName zz \"a\"", 9),
            ("userName eq bjensen", 12),
            ("(userName eq \"a\"", 16),
            ("userName eq \"a\" extra", 16),
            ("emails[type eq \"work\"", 21),
            ("userName eq \"abc", 12),
            ("1abc eq \"x\"", 0),
        ] {
            let e = parse_filter(f).unwrap_err();
            assert_eq!(e.at, at, "{f}: {e}");
        }
        let deep = format!("{}a pr{}", "(".repeat(100), ")".repeat(100));
        assert!(parse_filter(&deep).is_err());
    }

    #[test]
    fn patch_paths() {
        let x = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(x.attr.name, "emails");
        assert_eq!(x.sub.as_deref(), Some("value"));
        assert!(x.filter.is_some());
        let x = parse_path("name.givenName").unwrap();
        assert_eq!(x.attr.dotted(), "name.givenname");
        let x = parse_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!(x.attr.name, "members");
        assert!(parse_path("emails[type eq \"work\"]value").is_err());
        assert!(parse_path("").is_err());
        assert!(parse_path("a b").is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(s in ".{0,200}") {
            let _ = parse_filter(&s);
            let _ = parse_path(&s);
        }

        #[test]
        fn never_panics_on_filter_like_text(
            parts in proptest::collection::vec(prop_oneof![
                Just("userName"), Just("emails"), Just("eq"), Just("co"), Just("pr"), Just("and"),
                Just("or"), Just("not"), Just("("), Just(")"), Just("["), Just("]"), Just("\"x\""),
                Just("true"), Just("12"), Just("."), Just(" "), Just("\\"), Just("\""),
                Just("urn:a:b:c"), Just(":")
            ], 0..40)
        ) {
            let s: String = parts.concat();
            let _ = parse_filter(&s);
            let _ = parse_path(&s);
        }
    }
}
