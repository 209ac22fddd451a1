//! SCIM filters to SQL. Every attribute a filter may name maps to a column or an `EXISTS`
//! probe; values travel as bind parameters. Case rules follow the schemas: `caseExact: false`
//! attributes compare without case (PostgreSQL: `LOWER` on both sides; SQLite: the
//! `unicode_nocase` collation, and for `co`/`ew` a `GLOB` of each letter's cases), `externalId` and
//! ids exactly. JSON contact
//! lists are searched with each backend's JSON functions (`json_each` / `jsonb_array_elements`).

use carebridge_domain::scim::{AttrPath, Filter, Op, Value};
use carebridge_store::Backend;
use uuid::Uuid;

use super::{ENTERPRISE, ScimError};

/// A bind parameter.
#[derive(Clone, Debug)]
pub enum Arg {
    Text(String),
    Int(i64),
    Bool(bool),
    Id(Uuid),
}

/// Builds a `WHERE` fragment; `$n` placeholders continue after the ones already used.
pub struct Sql {
    pub backend: Backend,
    pub args: Vec<Arg>,
    /// Placeholders before the filter's (`$1` is the organisation).
    pub offset: usize,
}

impl Sql {
    pub fn new(backend: Backend, offset: usize) -> Sql {
        Sql {
            backend,
            args: Vec::new(),
            offset,
        }
    }

    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.offset + self.args.len())
    }
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::new(400, Some("invalidFilter"), detail)
}

fn text_of(v: &Value) -> Result<String, ScimError> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        Value::Num(n) => Ok(n.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(invalid("null only compares with 'eq' or 'ne'")),
    }
}

/// `expr op value` for a string column; `ci` compares without case (Unicode lower case).
fn text_cmp(sql: &mut Sql, expr: &str, op: Op, v: &Value, ci: bool) -> Result<String, ScimError> {
    if let Value::Null = v {
        return match op {
            Op::Eq => Ok(format!("({expr} IS NULL OR {expr} = '')")),
            Op::Ne => Ok(format!("({expr} IS NOT NULL AND {expr} <> '')")),
            _ => Err(invalid("null only compares with 'eq' or 'ne'")),
        };
    }
    let raw = text_of(v)?;
    // SQLite folds only ASCII in `LOWER` and `LIKE`: comparisons and prefixes go through the
    // Unicode collation instead (`sw` as a range: everything from the value up to the value
    // followed by the highest code point).
    if ci && sql.backend == Backend::Sqlite {
        let c = carebridge_store::UNICODE_NOCASE;
        let cmp = |sql: &mut Sql, op: &str, val: String| {
            format!("{expr} {op} {} COLLATE {c}", sql.arg(Arg::Text(val)))
        };
        match op {
            Op::Eq => return Ok(cmp(sql, "=", raw)),
            Op::Ne => return Ok(format!("({expr} IS NULL OR {})", cmp(sql, "<>", raw))),
            Op::Gt => return Ok(cmp(sql, ">", raw)),
            Op::Lt => return Ok(cmp(sql, "<", raw)),
            Op::Ge => return Ok(cmp(sql, ">=", raw)),
            Op::Le => return Ok(cmp(sql, "<=", raw)),
            Op::Sw => {
                let upper = format!("{raw}\u{10FFFF}");
                return Ok(format!(
                    "({} AND {})",
                    cmp(sql, ">=", raw),
                    cmp(sql, "<", upper)
                ));
            }
            // `co` and `ew` cannot use the collation (it orders, it does not search): a
            // case-sensitive GLOB whose every letter is the set of its cases instead.
            Op::Co => {
                let p = sql.arg(Arg::Text(format!("*{}*", glob_nocase(&raw))));
                return Ok(format!("{expr} GLOB {p}"));
            }
            Op::Ew => {
                let p = sql.arg(Arg::Text(format!("*{}", glob_nocase(&raw))));
                return Ok(format!("{expr} GLOB {p}"));
            }
        }
    }
    let (e, val) = if ci {
        (format!("LOWER({expr})"), raw.to_lowercase())
    } else {
        (expr.to_string(), raw)
    };
    let like = |sql: &mut Sql, pre: &str, post: &str, val: &str| {
        let p = sql.arg(Arg::Text(format!(
            "{pre}{}{post}",
            carebridge_store::like_escape(val)
        )));
        format!("{e} LIKE {p} ESCAPE '\\'")
    };
    Ok(match op {
        Op::Eq => format!("{e} = {}", sql.arg(Arg::Text(val))),
        Op::Ne => format!("({expr} IS NULL OR {e} <> {})", sql.arg(Arg::Text(val))),
        Op::Co => like(sql, "%", "%", &val),
        Op::Sw => like(sql, "", "%", &val),
        Op::Ew => like(sql, "%", "", &val),
        Op::Gt => format!("{e} > {}", sql.arg(Arg::Text(val))),
        Op::Lt => format!("{e} < {}", sql.arg(Arg::Text(val))),
        Op::Ge => format!("{e} >= {}", sql.arg(Arg::Text(val))),
        Op::Le => format!("{e} <= {}", sql.arg(Arg::Text(val))),
    })
}

/// A GLOB pattern matching `value` without case, as the `unicode_nocase` collation compares:
/// a character with other single-character cases becomes the set of them (`é` → `[éÉ]`), GLOB's
/// special characters match themselves (`*` → `[*]`).
fn glob_nocase(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 4);
    for c in value.chars() {
        let mut cases = vec![c];
        for other in [single(c.to_lowercase()), single(c.to_uppercase())]
            .into_iter()
            .flatten()
        {
            if !cases.contains(&other) {
                cases.push(other);
            }
        }
        match (cases.len(), c) {
            (1, '*' | '?' | '[') => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            (1, _) => out.push(c),
            _ => {
                out.push('[');
                out.extend(cases);
                out.push(']');
            }
        }
    }
    out
}

/// The one character of a case mapping (`None` when it maps to several, like `ß` → `SS`).
fn single(mut m: impl Iterator<Item = char>) -> Option<char> {
    let c = m.next()?;
    m.next().is_none().then_some(c)
}

fn present(expr: &str) -> String {
    format!("({expr} IS NOT NULL AND {expr} <> '')")
}

fn bool_cmp(sql: &mut Sql, expr: &str, op: Op, v: &Value) -> Result<String, ScimError> {
    let b = match v {
        Value::Bool(b) => *b,
        Value::Str(s) if s.eq_ignore_ascii_case("true") => true,
        Value::Str(s) if s.eq_ignore_ascii_case("false") => false,
        _ => return Err(invalid("a boolean attribute compares with true or false")),
    };
    match op {
        Op::Eq => Ok(format!("{expr} = {}", sql.arg(Arg::Bool(b)))),
        Op::Ne => Ok(format!("{expr} <> {}", sql.arg(Arg::Bool(b)))),
        _ => Err(invalid("a boolean attribute compares with 'eq' or 'ne'")),
    }
}

fn time_cmp(sql: &mut Sql, expr: &str, op: Op, v: &Value) -> Result<String, ScimError> {
    let Value::Str(s) = v else {
        return Err(invalid("a dateTime compares with a quoted RFC 3339 time"));
    };
    let t: jiff::Timestamp = s
        .parse()
        .map_err(|_| invalid(format!("'{s}' is not an RFC 3339 time")))?;
    let ms = t.as_millisecond();
    let o = match op {
        Op::Eq => "=",
        Op::Ne => "<>",
        Op::Gt => ">",
        Op::Lt => "<",
        Op::Ge => ">=",
        Op::Le => "<=",
        _ => return Err(invalid("a dateTime compares with eq, ne, gt, lt, ge or le")),
    };
    Ok(format!("{expr} {o} {}", sql.arg(Arg::Int(ms))))
}

fn id_cmp(sql: &mut Sql, expr: &str, op: Op, v: &Value) -> Result<String, ScimError> {
    let s = text_of(v)?;
    let id = Uuid::parse_str(&s).ok();
    match (op, id) {
        (Op::Eq, Some(id)) => Ok(format!("{expr} = {}", sql.arg(Arg::Id(id)))),
        (Op::Eq, None) => Ok("1 = 0".into()),
        (Op::Ne, Some(id)) => Ok(format!(
            "({expr} IS NULL OR {expr} <> {})",
            sql.arg(Arg::Id(id))
        )),
        (Op::Ne, None) => Ok("1 = 1".into()),
        _ => Err(invalid("an id compares with 'eq' or 'ne'")),
    }
}

/// A JSON array column of `{value, type}` objects (emails, phones): the SQL of one element.
struct Elements<'a> {
    column: &'a str,
}

impl Elements<'_> {
    /// `EXISTS (… element WHERE cond)` where `cond` is built from the element's fields.
    fn exists(&self, sql: &mut Sql, f: &Filter) -> Result<String, ScimError> {
        let (from, value, kind, first) = match sql.backend {
            Backend::Sqlite => (
                format!("json_each({}) e", self.column),
                "json_extract(e.value, '$.value')".to_string(),
                "json_extract(e.value, '$.type')".to_string(),
                "e.key = 0".to_string(),
            ),
            Backend::Postgres => (
                format!(
                    "jsonb_array_elements(({})::jsonb) WITH ORDINALITY AS e(v, n)",
                    self.column
                ),
                "(e.v->>'value')".to_string(),
                "(e.v->>'type')".to_string(),
                "e.n = 1".to_string(),
            ),
        };
        let cond = element_cond(sql, f, &value, &kind, &first)?;
        Ok(format!("EXISTS (SELECT 1 FROM {from} WHERE {cond})"))
    }
}

fn element_cond(
    sql: &mut Sql,
    f: &Filter,
    value: &str,
    kind: &str,
    first: &str,
) -> Result<String, ScimError> {
    Ok(match f {
        Filter::And(a, b) => format!(
            "({} AND {})",
            element_cond(sql, a, value, kind, first)?,
            element_cond(sql, b, value, kind, first)?
        ),
        Filter::Or(a, b) => format!(
            "({} OR {})",
            element_cond(sql, a, value, kind, first)?,
            element_cond(sql, b, value, kind, first)?
        ),
        Filter::Not(a) => format!("NOT ({})", element_cond(sql, a, value, kind, first)?),
        Filter::Present(p) => match p.name.as_str() {
            "value" => present(value),
            "type" => present(kind),
            "primary" => first.to_string(),
            other => return Err(invalid(format!("unknown sub-attribute '{other}'"))),
        },
        Filter::Compare(p, op, v) => match p.name.as_str() {
            "value" => format!("COALESCE(({}), FALSE)", text_cmp(sql, value, *op, v, true)?),
            "type" => format!("COALESCE(({}), FALSE)", text_cmp(sql, kind, *op, v, true)?),
            "primary" => {
                let b = matches!(v, Value::Bool(true));
                match op {
                    Op::Eq if b => first.to_string(),
                    Op::Eq => format!("NOT ({first})"),
                    Op::Ne if b => format!("NOT ({first})"),
                    Op::Ne => first.to_string(),
                    _ => return Err(invalid("primary compares with 'eq' or 'ne'")),
                }
            }
            other => return Err(invalid(format!("unknown sub-attribute '{other}'"))),
        },
        Filter::ValuePath(..) => return Err(invalid("value filters do not nest")),
    })
}

fn is_enterprise(p: &AttrPath) -> bool {
    p.uri.as_deref() == Some(&ENTERPRISE.to_ascii_lowercase())
}

fn check_uri(p: &AttrPath, core: &str) -> Result<(), ScimError> {
    match &p.uri {
        None => Ok(()),
        Some(u) if *u == core.to_ascii_lowercase() || *u == ENTERPRISE.to_ascii_lowercase() => {
            Ok(())
        }
        Some(u) => Err(invalid(format!("unknown schema '{u}'"))),
    }
}

/// A filter over Users (`p` = people, `su` = scim_users).
pub fn users(sql: &mut Sql, f: &Filter) -> Result<String, ScimError> {
    match f {
        Filter::And(a, b) => Ok(format!("({} AND {})", users(sql, a)?, users(sql, b)?)),
        Filter::Or(a, b) => Ok(format!("({} OR {})", users(sql, a)?, users(sql, b)?)),
        Filter::Not(a) => Ok(format!("NOT ({})", users(sql, a)?)),
        Filter::ValuePath(p, inner) => {
            check_uri(p, super::USER)?;
            match p.name.as_str() {
                "emails" => Elements { column: "p.emails" }.exists(sql, inner),
                "phonenumbers" => Elements { column: "p.phones" }.exists(sql, inner),
                other => Err(invalid(format!("'{other}' has no value filter here"))),
            }
        }
        Filter::Present(p) => {
            check_uri(p, super::USER)?;
            user_attr(sql, p, None)
        }
        Filter::Compare(p, op, v) => {
            check_uri(p, super::USER)?;
            // NULL (an absent attribute) compares false, so that `not (…)` is true for it.
            Ok(format!(
                "COALESCE(({}), FALSE)",
                user_attr(sql, p, Some((*op, v)))?
            ))
        }
    }
}

/// One attribute of a User; `cmp` is `None` for `pr`.
fn user_attr(sql: &mut Sql, p: &AttrPath, cmp: Option<(Op, &Value)>) -> Result<String, ScimError> {
    let text = |sql: &mut Sql, expr: &str, ci: bool| match cmp {
        None => Ok(present(expr)),
        Some((op, v)) => text_cmp(sql, expr, op, v, ci),
    };
    if is_enterprise(p) {
        return match p.dotted().as_str() {
            "employeenumber" => text(sql, "p.external_id", false),
            "department" => text(sql, "su.department", true),
            "manager" | "manager.value" => match cmp {
                None => Ok("su.manager_id IS NOT NULL".into()),
                Some((op, v)) => id_cmp(sql, "su.manager_id", op, v),
            },
            other => Err(invalid(format!("unknown enterprise attribute '{other}'"))),
        };
    }
    match p.dotted().as_str() {
        "id" => match cmp {
            None => Ok("1 = 1".into()),
            Some((op, v)) => id_cmp(sql, "p.id", op, v),
        },
        "username" => match cmp {
            // Equality (Entra's lookup of every user) compares the stored lower-cased key,
            // the form uniqueness is checked in, through its index.
            Some((Op::Eq, Value::Str(s))) => {
                let k = sql.arg(Arg::Text(s.to_lowercase()));
                let first = match sql.backend {
                    Backend::Sqlite => "LOWER(json_extract(p.emails, '$[0].value'))",
                    Backend::Postgres => "LOWER(p.emails::jsonb -> 0 ->> 'value')",
                };
                Ok(format!(
                    "(su.user_name_key = {k} OR (su.person_id IS NULL AND {first} = {k}))"
                ))
            }
            _ => {
                let e = user_name_expr(sql.backend);
                text(sql, e, true)
            }
        },
        "externalid" => text(sql, "su.external_id", false),
        "name.givenname" => text(sql, "p.given_name", true),
        "name.familyname" => text(sql, "p.family_name", true),
        "displayname" | "name.formatted" => {
            text(sql, "TRIM(p.given_name || ' ' || p.family_name)", true)
        }
        "active" => match cmp {
            None => Ok("1 = 1".into()),
            Some((op, v)) => bool_cmp(sql, "p.active", op, v),
        },
        "emails" | "emails.value" | "emails.type" | "phonenumbers" | "phonenumbers.value"
        | "phonenumbers.type" | "emails.primary" | "phonenumbers.primary" => {
            let column = if p.name == "emails" {
                "p.emails"
            } else {
                "p.phones"
            };
            let sub = carebridge_domain::scim::AttrPath {
                uri: None,
                name: p.sub.clone().unwrap_or_else(|| "value".into()),
                sub: None,
            };
            let inner = match cmp {
                None => Filter::Present(sub),
                Some((op, v)) => Filter::Compare(sub, op, v.clone()),
            };
            Elements { column }.exists(sql, &inner)
        }
        "meta.created" => match cmp {
            None => Ok("1 = 1".into()),
            Some((op, v)) => time_cmp(sql, "p.created_at", op, v),
        },
        "meta.lastmodified" => match cmp {
            None => Ok("1 = 1".into()),
            Some((op, v)) => time_cmp(sql, "p.updated_at", op, v),
        },
        "groups" | "groups.value" => match cmp {
            None => Ok(
                "EXISTS (SELECT 1 FROM person_labels gl JOIN labels g ON g.id = gl.label_id WHERE gl.person_id = p.id AND g.kind = 'group')"
                    .into(),
            ),
            Some((Op::Eq, v)) => {
                let s = text_of(v)?;
                match Uuid::parse_str(&s) {
                    Ok(id) => Ok(format!(
                        "EXISTS (SELECT 1 FROM person_labels gl WHERE gl.person_id = p.id AND gl.label_id = {})",
                        sql.arg(Arg::Id(id))
                    )),
                    Err(_) => Ok("1 = 0".into()),
                }
            }
            _ => Err(invalid("groups compares with 'eq' or 'pr'")),
        },
        other => Err(invalid(format!("unknown or unfilterable attribute '{other}'"))),
    }
}

/// A filter over Groups (`l` = labels of kind group, `sg` = scim_groups).
pub fn groups(sql: &mut Sql, f: &Filter) -> Result<String, ScimError> {
    match f {
        Filter::And(a, b) => Ok(format!("({} AND {})", groups(sql, a)?, groups(sql, b)?)),
        Filter::Or(a, b) => Ok(format!("({} OR {})", groups(sql, a)?, groups(sql, b)?)),
        Filter::Not(a) => Ok(format!("NOT ({})", groups(sql, a)?)),
        Filter::ValuePath(p, inner) if p.name == "members" => {
            // members[value eq "…"]
            match inner.as_ref() {
                Filter::Compare(x, Op::Eq, v) if x.name == "value" => {
                    group_attr(sql, &members_value(), Some((Op::Eq, v)))
                }
                _ => Err(invalid("members[…] supports 'value eq \"id\"'")),
            }
        }
        Filter::ValuePath(p, _) => Err(invalid(format!("'{}' has no value filter", p.name))),
        Filter::Present(p) => {
            check_uri(p, super::GROUP)?;
            group_attr(sql, p, None)
        }
        Filter::Compare(p, op, v) => {
            check_uri(p, super::GROUP)?;
            Ok(format!(
                "COALESCE(({}), FALSE)",
                group_attr(sql, p, Some((*op, v)))?
            ))
        }
    }
}

fn members_value() -> AttrPath {
    AttrPath {
        uri: None,
        name: "members".into(),
        sub: Some("value".into()),
    }
}

fn group_attr(sql: &mut Sql, p: &AttrPath, cmp: Option<(Op, &Value)>) -> Result<String, ScimError> {
    let text = |sql: &mut Sql, expr: &str, ci: bool| match cmp {
        None => Ok(present(expr)),
        Some((op, v)) => text_cmp(sql, expr, op, v, ci),
    };
    match p.dotted().as_str() {
        "id" => match cmp {
            None => Ok("1 = 1".into()),
            Some((op, v)) => id_cmp(sql, "l.id", op, v),
        },
        // Equality compares the folded key the name's uniqueness uses (case and accents).
        "displayname" => match cmp {
            Some((Op::Eq, Value::Str(s))) => Ok(format!(
                "l.name_key = {}",
                sql.arg(Arg::Text(carebridge_domain::search::fold(s)))
            )),
            _ => text(sql, "l.name", true),
        },
        "externalid" => text(sql, "sg.external_id", false),
        "members" | "members.value" => match cmp {
            None => Ok("EXISTS (SELECT 1 FROM person_labels ml WHERE ml.label_id = l.id)".into()),
            Some((Op::Eq, v)) => {
                let s = text_of(v)?;
                match Uuid::parse_str(&s) {
                    Ok(id) => Ok(format!(
                        "EXISTS (SELECT 1 FROM person_labels ml WHERE ml.label_id = l.id AND ml.person_id = {})",
                        sql.arg(Arg::Id(id))
                    )),
                    Err(_) => Ok("1 = 0".into()),
                }
            }
            _ => Err(invalid("members compares with 'eq' or 'pr'")),
        },
        "meta.created" => match cmp {
            None => Ok("1 = 1".into()),
            Some((op, v)) => time_cmp(sql, "l.created_at", op, v),
        },
        other => Err(invalid(format!(
            "unknown or unfilterable attribute '{other}'"
        ))),
    }
}

/// The userName of a person: the SCIM one, else the first e-mail address.
pub fn user_name_expr(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "COALESCE(su.user_name, json_extract(p.emails, '$[0].value'))",
        Backend::Postgres => "COALESCE(su.user_name, (p.emails::jsonb -> 0 ->> 'value'))",
    }
}

#[cfg(test)]
mod tests {
    use super::glob_nocase;

    #[test]
    fn glob_patterns_hold_every_case_and_escape_specials() {
        assert_eq!(glob_nocase("Öb"), "[Öö][bB]");
        assert_eq!(glob_nocase("é1-"), "[éÉ]1-");
        assert_eq!(glob_nocase("a*?[]"), "[aA][*][?][[]]");
        // `ß` upper-cases to two letters: it stays itself.
        assert_eq!(glob_nocase("ß"), "ß");
        assert_eq!(glob_nocase(""), "");
    }
}
