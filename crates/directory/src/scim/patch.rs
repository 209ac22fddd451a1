//! RFC 7644 §3.5.2 PATCH on a resource's JSON. The result is then read like a PUT body, so
//! every rule of the resource applies to patched values too.
//!
//! Accepted forms include what Microsoft Entra ID sends: op names in any case (`Replace`),
//! path-less `add`/`replace` whose value object has dotted or schema-qualified keys
//! (`name.givenName`, `urn:…:enterprise:2.0:User:employeeNumber`), value-path filters with a
//! sub-attribute (`emails[type eq "work"].value`, creating the element when none matches), and
//! `remove` of `members` with a value list.

use carebridge_domain::scim::{Filter, Op, PatchPath, Value as FValue, parse_path};
use serde_json::{Map, Value};

use super::{ENTERPRISE, PATCH_OP, ScimError};

/// Most operations in one PATCH, and most values in one operation.
const MAX_OPS: usize = 1000;

fn invalid_path(detail: impl Into<String>) -> ScimError {
    ScimError::new(400, Some("invalidPath"), detail)
}

/// Applies a PatchOp request body to `doc`. `canon` gives an attribute's canonical spelling
/// (for keys that do not exist yet); `multi` says whether it is multi-valued.
pub fn apply(
    doc: &mut Value,
    body: &Value,
    canon: &dyn Fn(&str) -> String,
    multi: &dyn Fn(&str) -> bool,
) -> Result<(), ScimError> {
    let schemas_ok = body["schemas"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(PATCH_OP)));
    if !schemas_ok {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body has \"schemas\": [\"{PATCH_OP}\"]"
        )));
    }
    let Some(ops) = body
        .get("Operations")
        .or_else(|| body.get("operations"))
        .and_then(Value::as_array)
    else {
        return Err(ScimError::invalid_syntax(
            "a PATCH body has an \"Operations\" array",
        ));
    };
    if ops.len() > MAX_OPS
        || ops.iter().any(|o| {
            o.get("value")
                .and_then(Value::as_array)
                .is_some_and(|a| a.len() > MAX_OPS)
        })
    {
        return Err(ScimError::new(
            400,
            Some("tooMany"),
            format!("at most {MAX_OPS} operations per PATCH and {MAX_OPS} values per operation"),
        ));
    }
    for (i, op) in ops.iter().enumerate() {
        let name = op["op"].as_str().unwrap_or("").to_ascii_lowercase();
        let path = op.get("path").and_then(Value::as_str);
        let value = op.get("value");
        match (name.as_str(), path) {
            ("add" | "replace", None) => {
                let Some(obj) = value.and_then(Value::as_object) else {
                    return Err(ScimError::invalid_value(format!(
                        "Operations/{i}: without a path the value is an object of attributes"
                    )));
                };
                for (k, v) in obj {
                    if k.starts_with("urn:") && v.is_object() && !k.contains(".") {
                        // An extension object: its attributes one by one.
                        if let Some(inner) = v.as_object() {
                            for (ik, iv) in inner {
                                if ik.eq_ignore_ascii_case("schemas") {
                                    continue;
                                }
                                at_path(doc, &format!("{k}:{ik}"), &name, Some(iv), canon, multi)?;
                            }
                            continue;
                        }
                    }
                    at_path(doc, k, &name, Some(v), canon, multi)?;
                }
            }
            ("remove", None) => {
                return Err(ScimError::new(
                    400,
                    Some("noTarget"),
                    format!("Operations/{i}: remove needs a path"),
                ));
            }
            ("add" | "replace" | "remove", Some(p)) => {
                if name != "remove" && value.is_none() {
                    return Err(ScimError::invalid_value(format!(
                        "Operations/{i}: {name} needs a value"
                    )));
                }
                at_path(doc, p, &name, value, canon, multi)?;
            }
            _ => {
                return Err(ScimError::invalid_syntax(format!(
                    "Operations/{i}: op must be add, replace or remove"
                )));
            }
        }
    }
    Ok(())
}

/// The key in `obj` spelled like `name` ignoring case, or its canonical spelling.
fn key_of(obj: &Map<String, Value>, name: &str, canon: &dyn Fn(&str) -> String) -> String {
    obj.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| canon(name))
}

fn at_path(
    doc: &mut Value,
    path: &str,
    op: &str,
    value: Option<&Value>,
    canon: &dyn Fn(&str) -> String,
    multi: &dyn Fn(&str) -> bool,
) -> Result<(), ScimError> {
    let root = doc
        .as_object_mut()
        .ok_or_else(|| ScimError::invalid_value("the resource is not an object"))?;
    if path.trim().eq_ignore_ascii_case(ENTERPRISE) {
        // The whole extension: its attributes one by one (a `schemas` key inside is noise).
        let key = key_of(root, ENTERPRISE, &|_| ENTERPRISE.to_string());
        match (op, value) {
            ("remove", _) => {
                root.remove(&key);
            }
            (_, Some(Value::Object(v))) => {
                // Replace and add both merge: attributes the value leaves out stay (RFC 7644
                // §3.5.2.3).
                let cur = root.entry(key).or_insert_with(|| Value::Object(Map::new()));
                if !cur.is_object() {
                    *cur = Value::Object(Map::new());
                }
                if let Some(o) = cur.as_object_mut() {
                    for (k, x) in v {
                        if !k.eq_ignore_ascii_case("schemas") {
                            o.insert(k.clone(), x.clone());
                        }
                    }
                }
            }
            _ => {
                return Err(ScimError::invalid_value(
                    "the enterprise extension's value is an object",
                ));
            }
        }
        return Ok(());
    }
    let p: PatchPath = parse_path(path).map_err(|e| invalid_path(format!("path '{path}': {e}")))?;
    // The object the attribute lives in: the resource, or an extension's object.
    let container: &mut Map<String, Value> = match &p.attr.uri {
        Some(u) if u.eq_ignore_ascii_case(ENTERPRISE) => {
            let k = key_of(root, ENTERPRISE, &|_| ENTERPRISE.to_string());
            let e = root.entry(k).or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            e.as_object_mut()
                .ok_or_else(|| ScimError::invalid_value("bad extension object"))?
        }
        Some(u) if u.eq_ignore_ascii_case(super::USER) || u.eq_ignore_ascii_case(super::GROUP) => {
            root
        }
        Some(u) => return Err(invalid_path(format!("unknown schema '{u}'"))),
        None => root,
    };
    let key = key_of(container, &p.attr.name, canon);
    match (&p.filter, &p.attr.sub, &p.sub) {
        // name.givenName
        (None, Some(sub), _) => {
            let parent = container
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            if !parent.is_object() {
                *parent = Value::Object(Map::new());
            }
            let Some(obj) = parent.as_object_mut() else {
                return Ok(());
            };
            let sk = key_of(obj, sub, canon);
            set(obj, sk, op, value, false);
        }
        // emails, active, members …
        (None, None, _) => {
            let is_multi = multi(&p.attr.name);
            if op == "remove" && is_multi && value.is_some() {
                // Remove the listed elements (by `value`); a single object is a list of one.
                let gone: Vec<Value> = match value {
                    Some(Value::Array(a)) => a.clone(),
                    Some(v) => vec![v.clone()],
                    None => vec![],
                };
                if let Some(Value::Array(cur)) = container.get_mut(&key) {
                    cur.retain(|el| !gone.iter().any(|g| same_value(g, el)));
                }
                return Ok(());
            }
            set(container, key, op, value, is_multi);
        }
        // emails[type eq "work"] and emails[type eq "work"].value
        (Some(f), _, sub) => {
            let arr = container
                .entry(key.clone())
                .or_insert_with(|| Value::Array(vec![]));
            if !arr.is_array() {
                *arr = Value::Array(vec![]);
            }
            let Some(items) = arr.as_array_mut() else {
                return Ok(());
            };
            let mut matched = false;
            let mut keep = Vec::with_capacity(items.len());
            for mut el in items.drain(..) {
                if !matches(&el, f) {
                    keep.push(el);
                    continue;
                }
                matched = true;
                match (op, sub) {
                    ("remove", None) => continue,
                    ("remove", Some(s)) => {
                        if let Some(o) = el.as_object_mut() {
                            let sk = key_of(o, s, canon);
                            o.remove(&sk);
                        }
                    }
                    (_, Some(s)) => {
                        if let Some(o) = el.as_object_mut() {
                            let sk = key_of(o, s, canon);
                            o.insert(sk, value.cloned().unwrap_or(Value::Null));
                        }
                    }
                    (_, None) => {
                        if let Some(Value::Object(v)) = value {
                            if let Some(o) = el.as_object_mut() {
                                for (k, x) in v {
                                    o.insert(k.clone(), x.clone());
                                }
                            }
                        } else if let Some(v) = value {
                            el = v.clone();
                        }
                    }
                }
                keep.push(el);
            }
            if !matched && op != "remove" {
                // Entra adds `emails[type eq "work"].value` for a user without a work e-mail:
                // a new element carrying what the filter's equalities say.
                let mut el = Map::new();
                equalities(f, &mut el, canon);
                match (sub, value) {
                    (Some(s), Some(v)) => {
                        el.insert(canon(s), v.clone());
                    }
                    (None, Some(Value::Object(v))) => {
                        for (k, x) in v {
                            el.insert(k.clone(), x.clone());
                        }
                    }
                    _ => {}
                }
                keep.push(Value::Object(el));
            }
            *items = keep;
        }
    }
    Ok(())
}

fn set(obj: &mut Map<String, Value>, key: String, op: &str, value: Option<&Value>, multi: bool) {
    match op {
        "remove" => {
            obj.remove(&key);
        }
        "add" if multi => {
            let add: Vec<Value> = match value {
                Some(Value::Array(a)) => a.clone(),
                Some(v) => vec![v.clone()],
                None => vec![],
            };
            let cur = obj.entry(key).or_insert_with(|| Value::Array(vec![]));
            if !cur.is_array() {
                *cur = Value::Array(vec![]);
            }
            if let Some(a) = cur.as_array_mut() {
                for v in add {
                    if !a.iter().any(|x| same_value(x, &v)) {
                        a.push(v);
                    }
                }
            }
        }
        "add" => {
            // Complex single values merge (add `name` with only `givenName`).
            if let (Some(Value::Object(cur)), Some(Value::Object(new))) = (obj.get_mut(&key), value)
            {
                for (k, v) in new {
                    cur.insert(k.clone(), v.clone());
                }
                return;
            }
            obj.insert(key, value.cloned().unwrap_or(Value::Null));
        }
        _ => {
            // Replacing a complex single value merges (sub-attributes not given stay).
            if !multi
                && let (Some(Value::Object(cur)), Some(Value::Object(new))) =
                    (obj.get_mut(&key), value)
            {
                for (k, v) in new {
                    cur.insert(k.clone(), v.clone());
                }
                return;
            }
            if multi && value.is_some_and(|v| !v.is_array()) {
                obj.insert(key, Value::Array(value.cloned().into_iter().collect()));
            } else {
                obj.insert(key, value.cloned().unwrap_or(Value::Null));
            }
        }
    }
}

/// Two elements are the same when their `value`s are (or, without one, when equal).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => match (x.as_str(), y.as_str()) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => x == y,
        },
        _ => a == b,
    }
}

fn equalities(f: &Filter, into: &mut Map<String, Value>, canon: &dyn Fn(&str) -> String) {
    match f {
        Filter::Compare(p, Op::Eq, v) => {
            let v = match v {
                FValue::Str(s) => Value::String(s.clone()),
                FValue::Bool(b) => Value::Bool(*b),
                FValue::Num(n) => serde_json::from_str(n).unwrap_or(Value::Null),
                FValue::Null => Value::Null,
            };
            into.insert(canon(&p.name), v);
        }
        Filter::And(a, b) => {
            equalities(a, into, canon);
            equalities(b, into, canon);
        }
        _ => {}
    }
}

/// Whether one element of a multi-valued attribute matches a value filter.
fn matches(el: &Value, f: &Filter) -> bool {
    let field = |name: &str| -> Option<&Value> {
        el.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    match f {
        Filter::And(a, b) => matches(el, a) && matches(el, b),
        Filter::Or(a, b) => matches(el, a) || matches(el, b),
        Filter::Not(a) => !matches(el, a),
        Filter::ValuePath(..) => false,
        Filter::Present(p) => field(&p.name).is_some_and(|v| !v.is_null() && v != ""),
        Filter::Compare(p, op, want) => {
            let got = field(&p.name);
            match want {
                FValue::Null => match op {
                    Op::Eq => got.is_none_or(Value::is_null),
                    Op::Ne => got.is_some_and(|v| !v.is_null()),
                    _ => false,
                },
                FValue::Bool(b) => {
                    let g = match got {
                        Some(Value::Bool(x)) => Some(*x),
                        Some(Value::String(s)) => s.parse::<bool>().ok(),
                        _ => None,
                    };
                    match op {
                        Op::Eq => g == Some(*b),
                        Op::Ne => g != Some(*b),
                        _ => false,
                    }
                }
                FValue::Str(_) | FValue::Num(_) => {
                    let w = match want {
                        FValue::Str(s) | FValue::Num(s) => s.to_lowercase(),
                        _ => String::new(),
                    };
                    let g = match got {
                        Some(Value::String(s)) => s.to_lowercase(),
                        Some(Value::Number(n)) => n.to_string(),
                        Some(Value::Bool(b)) => b.to_string(),
                        _ => return *op == Op::Ne,
                    };
                    match op {
                        Op::Eq => g == w,
                        Op::Ne => g != w,
                        Op::Co => g.contains(&w),
                        Op::Sw => g.starts_with(&w),
                        Op::Ew => g.ends_with(&w),
                        Op::Gt => g > w,
                        Op::Lt => g < w,
                        Op::Ge => g >= w,
                        Op::Le => g <= w,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(n: &str) -> String {
        match n {
            "givenname" => "givenName".into(),
            "emails" => "emails".into(),
            "employeenumber" => "employeeNumber".into(),
            other => other.into(),
        }
    }

    fn multi(n: &str) -> bool {
        matches!(n, "emails" | "members" | "phonenumbers")
    }

    fn run(doc: &mut Value, ops: Value) -> Result<(), ScimError> {
        apply(
            doc,
            &json!({"schemas": [PATCH_OP], "Operations": ops}),
            &canon,
            &multi,
        )
    }

    #[test]
    fn entra_forms() {
        let mut d = json!({"userName": "a", "active": true, "name": {"familyName": "X"},
            "emails": [{"value": "a@x.ch", "type": "home"}]});
        run(
            &mut d,
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "w@x.ch"},
                {"op": "Replace", "path": "name.givenName", "value": "Ada"},
                {"op": "Add", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "7",
                    "name.familyName": "Y"}},
                {"op": "Remove", "path": "emails[type eq \"home\"]"}
            ]),
        )
        .unwrap();
        assert_eq!(d["active"], "False");
        assert_eq!(d["emails"], json!([{"type": "work", "value": "w@x.ch"}]));
        assert_eq!(d["name"], json!({"familyName": "Y", "givenName": "Ada"}));
        assert_eq!(d[ENTERPRISE]["employeeNumber"], "7");
        let mut g = json!({"displayName": "G", "members": [{"value": "1"}, {"value": "2"}]});
        run(
            &mut g,
            json!([
                {"op": "add", "path": "members", "value": [{"value": "3"}, {"value": "1"}]},
                {"op": "remove", "path": "members[value eq \"2\"]"},
                {"op": "Remove", "path": "members", "value": [{"value": "3"}]}
            ]),
        )
        .unwrap();
        assert_eq!(g["members"], json!([{"value": "1"}]));
    }

    #[test]
    fn bad_patches() {
        let mut d = json!({});
        assert_eq!(
            run(&mut d, json!([{"op": "remove"}]))
                .unwrap_err()
                .scim_type,
            Some("noTarget")
        );
        assert_eq!(
            run(&mut d, json!([{"op": "move", "path": "a"}]))
                .unwrap_err()
                .scim_type,
            Some("invalidSyntax")
        );
        assert_eq!(
            run(&mut d, json!([{"op": "add", "path": "a[", "value": 1}]))
                .unwrap_err()
                .scim_type,
            Some("invalidPath")
        );
        assert!(apply(&mut d, &json!({"Operations": []}), &canon, &multi).is_err());
    }
}
