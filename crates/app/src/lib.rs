//! The member and client web app: an installable PWA served at `/app`.
//!
//! The app is TypeScript in `web/`, built by Vite into `dist/` with fixed file names; the built
//! files are committed and embedded here with `include_bytes!`, so `cargo run` needs no Node.js
//! (CI rebuilds `dist/` from source and fails when it differs). This module only serves them:
//!
//! - `/app/` and `/app/callback` (where the identity provider sends the browser back) get the
//!   shell `index.html`; the app routes inside it with `#/…`.
//! - Every file is revalidated (`Cache-Control: no-cache` with a strong ETag): the service
//!   worker, not the HTTP cache, keeps the shell for offline use.
//! - `sw.js` carries a digest of all files as its cache version, so a new build replaces the
//!   cached shell.
//! - Text files are served gzip-compressed to browsers that accept it (compressed once, on first
//!   use).
//! - A strict Content-Security-Policy: scripts, styles and workers only from this origin; API
//!   calls to this origin or, for a portal or chat run elsewhere, any `https:`/`wss:` origin.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The built files (everything in `dist/`, listed by `build.rs`): name under `/app/`, media
/// type, content.
const FILES: &[(&str, &str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/files.rs"));

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https:; \
     connect-src 'self' https: wss:; worker-src 'self'; manifest-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

struct Asset {
    mime: &'static str,
    body: Vec<u8>,
    gzip: Option<Vec<u8>>,
    etag: String,
}

/// The served files, with the service worker's version filled in.
static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    let mut all = Sha256::new();
    for (name, _, body) in FILES {
        all.update(name.as_bytes());
        all.update(body);
    }
    let version = hex::encode(&all.finalize()[..8]);
    FILES
        .iter()
        .map(|(name, mime, body)| {
            let body = if *name == "sw.js" {
                String::from_utf8_lossy(body)
                    .replace("__VERSION__", &version)
                    .replace("__FILES__", &shell_files())
                    .into_bytes()
            } else {
                body.to_vec()
            };
            let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..12]));
            let gzip = (!mime.starts_with("image/png"))
                .then(|| gzip(&body))
                .flatten();
            (
                *name,
                Asset {
                    mime,
                    body,
                    gzip,
                    etag,
                },
            )
        })
        .collect()
});

/// What the service worker keeps for offline use: every file but itself and the shell page
/// (which it keeps as `/app/`), space-separated.
fn shell_files() -> String {
    FILES
        .iter()
        .filter(|(n, _, _)| *n != "sw.js" && *n != "index.html")
        .map(|(n, _, _)| format!("/app/{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(body).ok()?;
    e.finish().ok()
}

/// The app's routes; no state, no database.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(shell))
        .route("/app/callback", get(shell))
        .route("/app/{file}", get(file))
}

async fn shell(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(a) = ASSETS.get(name) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut res = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let accepts_gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"))
            });
        match (&a.gzip, accepts_gzip) {
            (Some(z), true) => {
                let mut r = Body::from(z.clone()).into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => Body::from(a.body.clone()).into_response(),
        }
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shell and its parts are embedded, and every name is one a URL path can hold.
    #[test]
    fn embeds_the_built_app() {
        for must in [
            "index.html",
            "app.js",
            "app.css",
            "sw.js",
            "manifest.webmanifest",
        ] {
            assert!(
                FILES.iter().any(|(n, _, _)| *n == must),
                "{must} is not embedded"
            );
        }
        for (n, _, body) in FILES {
            assert!(!body.is_empty(), "{n} is empty");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{n}"
            );
        }
    }

    #[test]
    fn service_worker_names_its_version_and_shell_files() {
        let sw = String::from_utf8(ASSETS["sw.js"].body.clone()).expect("utf-8");
        assert!(!sw.contains("__VERSION__") && !sw.contains("__FILES__"));
        for (name, _, _) in FILES
            .iter()
            .filter(|(n, _, _)| *n != "index.html" && *n != "sw.js")
        {
            assert!(
                sw.contains(&format!("/app/{name}")),
                "{name} missing from the shell cache"
            );
        }
    }

    #[test]
    fn conditional_and_compressed_answers() {
        let a = &ASSETS["app.js"];
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=1, gzip;q=0.8"),
        );
        let r = serve("app.js", &h);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&a.etag).expect("etag"),
        );
        assert_eq!(serve("app.js", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
        assert!(a.gzip.as_ref().expect("gzip").len() < a.body.len() / 2);
    }
}
