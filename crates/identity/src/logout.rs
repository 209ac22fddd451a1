//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the browser session and,
//! when the request names a client (`client_id` or a valid `id_token_hint`) and a
//! `post_logout_redirect_uri` registered for it *exactly*, sends the browser back there with
//! `state`. Anything else ends on a page of this server (no open redirect).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use carebridge_domain::oauth::{API_AUDIENCE, PORTAL_AUDIENCE};
use carebridge_web::{ApiError, AppState};
use serde::Deserialize;
use serde_json::Value;

use crate::authorize::secure;
use crate::i18n::Lang;
use crate::pages;
use crate::sessions;

#[derive(Deserialize)]
pub struct LogoutQuery {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    ui_locales: Option<String>,
}

/// `GET /oauth2/logout`.
pub async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LogoutQuery>,
) -> Response {
    let l = Lang::pick(
        q.ui_locales.as_deref(),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let t = l.texts();
    let r: Result<Response, ApiError> = async {
        let now = s.now();
        // The client: from the ID token's audience (signature checked, expiry not), else client_id.
        let hinted = match q.id_token_hint.as_deref() {
            Some(h) => {
                let published = crate::keys::published(&s.db, now).await?;
                // An ID token's audience is its client: read it, then check the signature for it.
                let aud = jsonwebtoken::dangerous::insecure_decode::<Value>(h)
                    .ok()
                    .and_then(|d| {
                        d.claims
                            .get("aud")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    });
                match aud {
                    Some(a)
                        if a != API_AUDIENCE
                            && a != PORTAL_AUDIENCE
                            && crate::keys::verify_with::<Value>(
                                h,
                                &published,
                                s.base_url(),
                                &[a.as_str()],
                                None,
                            )
                            .is_ok() =>
                    {
                        Some(a)
                    }
                    _ => None,
                }
            }
            None => None,
        };
        let client_id = match (hinted, q.client_id.as_deref()) {
            (Some(a), Some(c)) if a != c => None,
            (Some(a), _) => Some(a),
            (None, Some(c)) => Some(c.to_string()),
            (None, None) => None,
        };
        if let Some(sess) = sessions::current(&s.db, &headers, now).await? {
            let mut tx = s.db.begin().await?;
            sessions::end(&mut tx, sess.id, now).await?;
            tx.commit().await?;
        }
        let clear = crate::web::set_cookie(sessions::COOKIE, "", 0, "Lax", secure(&s));
        let target = match (client_id, q.post_logout_redirect_uri.as_deref()) {
            (Some(c), Some(uri)) => crate::clients::lookup(&s.db, &c, s.base_url())
                .await?
                .filter(|cl| cl.redirect_uris.iter().any(|u| u == uri))
                .and_then(|_| url::Url::parse(uri).ok()),
            _ => None,
        };
        let mut resp = match target {
            Some(mut u) => {
                if let Some(st) = q.state.as_deref() {
                    u.query_pairs_mut().append_pair("state", st);
                }
                Redirect::to(u.as_str()).into_response()
            }
            None => pages::message(StatusCode::OK, l, t.signed_out, t.signed_out),
        };
        if let Some((k, v)) = clear {
            resp.headers_mut().append(k, v);
        }
        Ok(resp)
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
