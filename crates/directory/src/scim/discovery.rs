//! `/ServiceProviderConfig`, `/Schemas` and `/ResourceTypes` (RFC 7643 §5–7).
//!
//! Published: the attributes that round-trip exactly as sent. Not published, though accepted
//! and returned when a user has them: `phoneNumbers` (normalised to E.164 and validated),
//! `addresses` (one, country as ISO 3166 alpha-2) and `preferredLanguage` (a supported
//! language): their values are checked beyond what a SCIM schema can say, so a generic client
//! filling them with arbitrary strings would be refused. Entra ID does not read `/Schemas`; it
//! sends them by its attribute mapping.
//!
//! `name` and `active` are published as required: every person of the directory has a name
//! and an active state, so they cannot be removed (a body without them is still accepted: the
//! userName stands in for a missing name, and a new user is active).

use axum::extract::{Path, State};
use axum::http::Extensions;
use carebridge_web::AppState;
use serde_json::{Value, json};

use super::{ENTERPRISE, GROUP, LIST, Scim, ScimError, USER, caller};

fn attr(name: &str, ty: &str, mutability: &str, extra: Value) -> Value {
    let mut a = json!({
        "name": name, "type": ty, "multiValued": false, "description": name,
        "required": false, "caseExact": false, "mutability": mutability,
        "returned": "default", "uniqueness": "none",
    });
    if let (Some(o), Some(e)) = (a.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    a
}

fn meta(base: &str, kind: &str, id: &str) -> Value {
    json!({"resourceType": kind, "location": format!("{base}/{kind}s/{id}")})
}

fn user_schema(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER, "name": "User", "description": "A person of the directory",
        "attributes": [
            attr("userName", "string", "readWrite", json!({"required": true, "uniqueness": "server"})),
            attr("name", "complex", "readWrite", json!({"required": true, "subAttributes": [
                attr("givenName", "string", "readWrite", json!({})),
                attr("familyName", "string", "readWrite", json!({})),
            ]})),
            attr("displayName", "string", "readOnly", json!({})),
            attr("active", "boolean", "readWrite", json!({"required": true})),
            attr("emails", "complex", "readWrite", json!({"multiValued": true, "subAttributes": [
                attr("value", "string", "readWrite", json!({})),
                attr("type", "string", "readWrite", json!({"canonicalValues": ["work", "home", "other"]})),
            ]})),
            attr("groups", "complex", "readOnly", json!({"multiValued": true, "subAttributes": [
                attr("value", "string", "readOnly", json!({})),
                attr("$ref", "reference", "readOnly", json!({"referenceTypes": ["Group"]})),
                attr("display", "string", "readOnly", json!({})),
            ]})),
        ],
        "meta": meta(base, "Schema", USER),
    })
}

fn enterprise_schema(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": ENTERPRISE, "name": "EnterpriseUser", "description": "Enterprise User",
        "attributes": [
            attr("employeeNumber", "string", "readWrite", json!({})),
            attr("department", "string", "readWrite", json!({})),
            attr("manager", "complex", "readWrite", json!({"subAttributes": [
                attr("value", "string", "readWrite", json!({"caseExact": true})),
                attr("$ref", "reference", "readWrite", json!({"referenceTypes": ["User"]})),
            ]})),
        ],
        "meta": meta(base, "Schema", ENTERPRISE),
    })
}

fn group_schema(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP, "name": "Group", "description": "A group of the directory",
        "attributes": [
            attr("displayName", "string", "readWrite", json!({"required": true, "uniqueness": "server"})),
            attr("members", "complex", "readWrite", json!({"multiValued": true, "subAttributes": [
                attr("value", "string", "immutable", json!({"caseExact": true})),
                attr("$ref", "reference", "immutable", json!({"referenceTypes": ["User"]})),
                attr("type", "string", "immutable", json!({"canonicalValues": ["User"]})),
            ]})),
        ],
        "meta": meta(base, "Schema", GROUP),
    })
}

fn all_schemas(base: &str) -> Vec<Value> {
    vec![
        user_schema(base),
        enterprise_schema(base),
        group_schema(base),
    ]
}

fn resource_types_of(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users", "description": "People",
            "schema": USER,
            "schemaExtensions": [{"schema": ENTERPRISE, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups", "description": "Groups",
            "schema": GROUP, "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

/// The document with this `id` (ignoring case), or a 404 naming `what`.
fn by_id(items: Vec<Value>, id: &str, what: &str) -> Result<Scim, ScimError> {
    items
        .into_iter()
        .find(|x| x["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(id)))
        .map(Scim::ok)
        .ok_or_else(|| ScimError::new(404, None, format!("no {what} {id}")))
}

fn list(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

pub async fn service_provider_config(
    State(s): State<AppState>,
    ext: Extensions,
) -> Result<Scim, ScimError> {
    caller(&s, &ext).await?;
    let base = super::base(&s);
    Ok(Scim::ok(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": format!("{}/api/v1/openapi.json", s.base_url()),
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": super::MAX_COUNT},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "Bearer token",
            "description": "An organisation API key with directory:read and directory:write",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })))
}

pub async fn schemas(State(s): State<AppState>, ext: Extensions) -> Result<Scim, ScimError> {
    caller(&s, &ext).await?;
    Ok(Scim::ok(list(all_schemas(&super::base(&s)))))
}

pub async fn schema(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
) -> Result<Scim, ScimError> {
    caller(&s, &ext).await?;
    by_id(all_schemas(&super::base(&s)), &id, "schema")
}

pub async fn resource_types(State(s): State<AppState>, ext: Extensions) -> Result<Scim, ScimError> {
    caller(&s, &ext).await?;
    Ok(Scim::ok(list(resource_types_of(&super::base(&s)))))
}

pub async fn resource_type(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
) -> Result<Scim, ScimError> {
    caller(&s, &ext).await?;
    by_id(resource_types_of(&super::base(&s)), &id, "resource type")
}

/// Discovery endpoints are read-only.
pub async fn read_only() -> ScimError {
    ScimError::new(405, None, "discovery endpoints are read-only")
}

/// `POST /.search` at the root (across resource types, RFC 7644 §3.4.3) is not supported:
/// Users and Groups have their own `.search`.
pub async fn search_unsupported() -> ScimError {
    ScimError::new(
        501,
        None,
        "POST /.search across resource types is not supported; use /Users/.search or /Groups/.search",
    )
}

/// A `SearchRequest` body (RFC 7644 §3.4.3) as the query parameters of a list: the same
/// filter, sorting, paging and attribute selection as `GET`. Unknown members and a missing
/// `SearchRequest` schema are refused (`invalidSyntax`).
pub fn search_query(body: &[u8]) -> Result<std::collections::HashMap<String, String>, ScimError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ScimError::new(
            400,
            Some("invalidSyntax"),
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Object(m) = v else {
        return Err(ScimError::new(
            400,
            Some("invalidSyntax"),
            "a SearchRequest is a JSON object",
        ));
    };
    let mut q = std::collections::HashMap::new();
    let mut schema = false;
    for (k, v) in m {
        let name = match k.to_ascii_lowercase().as_str() {
            "schemas" => {
                schema = v
                    .as_array()
                    .is_some_and(|a| a.iter().any(|s| s == super::SEARCH_REQUEST));
                continue;
            }
            "attributes" => "attributes",
            "excludedattributes" => "excludedAttributes",
            "filter" => "filter",
            "sortby" => "sortBy",
            "sortorder" => "sortOrder",
            "startindex" => "startIndex",
            "count" => "count",
            _ => {
                return Err(ScimError::new(
                    400,
                    Some("invalidSyntax"),
                    format!("'{k}' is not a SearchRequest attribute"),
                ));
            }
        };
        let text = match (&v, name) {
            (Value::Array(a), "attributes" | "excludedAttributes") => {
                let mut names = Vec::with_capacity(a.len());
                for x in a {
                    match x.as_str() {
                        Some(n) => names.push(n.to_string()),
                        None => {
                            return Err(ScimError::new(
                                400,
                                Some("invalidSyntax"),
                                format!("'{k}' is a list of attribute names"),
                            ));
                        }
                    }
                }
                names.join(",")
            }
            (Value::Null, _) => continue,
            (Value::Number(n), "startIndex" | "count") => n.to_string(),
            (Value::String(x), name) if !matches!(name, "startIndex" | "count") => x.clone(),
            _ => {
                return Err(ScimError::new(
                    400,
                    Some("invalidSyntax"),
                    format!("'{k}' has the wrong type"),
                ));
            }
        };
        q.insert(name.to_string(), text);
    }
    if !schema {
        return Err(ScimError::new(
            400,
            Some("invalidSyntax"),
            format!("a SearchRequest names the schema {}", super::SEARCH_REQUEST),
        ));
    }
    Ok(q)
}
