//! Settings: the organisation's data, the features (chat, directory, portal), who must use a
//! second factor, the chat's retention, what the apps get (languages, branding, support), and
//! the discovery preview — exactly the public documents apps receive, fetched without any credential as an
//! app would.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::chat::ChatSettings;
use carebridge_proto::duties::Feature;
use carebridge_proto::identity::MfaPolicy;
use carebridge_proto::org::{AppSettings, Org};
use serde::Deserialize;

use crate::api::Fail;
use crate::people::field_errors;
use crate::web::{Chrome, Ctx, Fields, html, see};

/// Role and person-kind names a second-factor policy can name.
const MFA_NAMES: &[&str] = &[
    "org_admin",
    "unit_admin",
    "dispatcher",
    "member",
    "staff",
    "volunteer",
    "client",
    "relative",
];
const LANGUAGES: &[&str] = &["de", "fr", "it", "en", "fi", "sv"];

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    c: Chrome,
    org: Org,
    chat: Option<Feature>,
    directory: Option<Feature>,
    portal: Option<Feature>,
    mfa: Option<MfaPolicy>,
    retention: Option<ChatSettings>,
    app: Option<AppSettings>,
    discovery: Option<String>,
    discovery_settings: Option<String>,
    mfa_names: &'static [&'static str],
    languages: &'static [&'static str],
    errors: Vec<String>,
}

impl SettingsPage {
    fn mfa_on(&self, name: &str) -> bool {
        self.mfa
            .as_ref()
            .is_some_and(|m| m.required_for.iter().any(|r| r == name))
    }

    fn lang_on(&self, code: &str) -> bool {
        self.app
            .as_ref()
            .is_some_and(|a| a.languages.iter().any(|l| l == code))
    }

    fn attachment_mib(&self) -> i64 {
        self.retention
            .as_ref()
            .map_or(10, |r| r.attachment_max_bytes / (1024 * 1024))
    }
}

#[derive(Deserialize, Default)]
pub struct ShowQuery {
    done: Option<String>,
}

fn pretty(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    serde_json::to_string_pretty(&v).ok()
}

async fn page(ctx: &Ctx, errors: Vec<String>, done: bool, status: u16) -> Response {
    let t = ctx.t();
    let org = match ctx.api.get::<Org>(&ctx.s.org_path("")).await {
        Ok(o) => o.value,
        Err(f) => return ctx.fail(&f),
    };
    let feature = |name: &'static str| async move {
        ctx.api
            .get::<Feature>(&ctx.s.org_path(&format!("/features/{name}")))
            .await
            .ok()
            .map(|g| g.value)
    };
    let (chat, directory, portal) =
        tokio::join!(feature("chat"), feature("directory"), feature("portal"));
    let mfa = ctx
        .api
        .get::<MfaPolicy>(&ctx.s.org_path("/mfa-policy"))
        .await
        .ok()
        .map(|g| g.value);
    let retention = ctx
        .api
        .get::<ChatSettings>(&ctx.s.org_path("/chat/settings"))
        .await
        .ok()
        .map(|g| g.value);
    let app = ctx
        .api
        .get::<AppSettings>(&ctx.s.org_path("/app-settings"))
        .await
        .ok()
        .map(|g| g.value);
    // As an app gets them: no credential (the backend refuses any).
    let anon = ctx.api.anonymous();
    let public = |path: String| {
        let anon = anon.clone();
        async move {
            match anon.raw(Method::GET, &path, None, Vec::new(), None).await {
                Ok((st, _, body)) if st.is_success() => pretty(&body),
                _ => None,
            }
        }
    };
    let discovery = public(format!("/discovery/{}", org.slug)).await;
    let discovery_settings = public(format!("/discovery/{}/settings", org.slug)).await;
    let mut c = ctx.chrome("settings", t.settings);
    if done {
        c.notice = Some(t.saved.to_string());
    }
    html(
        &SettingsPage {
            c,
            org,
            chat,
            directory,
            portal,
            mfa,
            retention,
            app,
            discovery,
            discovery_settings,
            mfa_names: MFA_NAMES,
            languages: LANGUAGES,
            errors,
        },
        status,
    )
}

/// `GET /console/settings`.
pub async fn show(Extension(ctx): Extension<Ctx>, Query(q): Query<ShowQuery>) -> Response {
    page(&ctx, Vec::new(), q.done.is_some(), 200).await
}

/// The answer to a settings form: back to the page, or the page with the API's reasons.
async fn after(ctx: &Ctx, r: Result<(), Fail>) -> Response {
    match r {
        Ok(()) => see("/console/settings?done=1"),
        Err(f) if f.status() == 412 => {
            page(ctx, vec![ctx.t().changed_meanwhile.into()], false, 409).await
        }
        Err(f @ Fail::Problem(_)) if matches!(f.status(), 400 | 409 | 422) => {
            page(ctx, field_errors(ctx.t(), &f), false, 422).await
        }
        Err(f) => ctx.fail(&f),
    }
}

/// `POST /console/settings/org`.
pub async fn org(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let if_match = f.if_match();
    let body = serde_json::json!({
        "name": f.get("name").unwrap_or_default(),
        "default_language": f.get("default_language").unwrap_or_default(),
        "default_region": f.get("default_region").unwrap_or_default().to_uppercase(),
        "contact_email": f.get("contact_email"),
        "discoverable": f.get("discoverable").is_some(),
    });
    let r = ctx
        .api
        .send::<Org>(Method::PATCH, &ctx.s.org_path(""), &body, Some(&if_match))
        .await
        .map(|_| ());
    after(&ctx, r).await
}

/// `POST /console/settings/chat`: the chat feature and its retention.
pub async fn chat(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let on = f.get("enabled").is_some();
    let r = ctx
        .api
        .send::<Feature>(
            Method::PUT,
            &ctx.s.org_path("/features/chat"),
            &serde_json::json!({ "enabled": on }),
            None,
        )
        .await
        .map(|_| ());
    if r.is_err() {
        return after(&ctx, r).await;
    }
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(w), Some(rd), Some(mib)) = (
        num("writable_days"),
        num("readable_days"),
        num("attachment_mib"),
    ) else {
        return after(&ctx, Ok(())).await;
    };
    let r = ctx
        .api
        .send::<ChatSettings>(
            Method::PUT,
            &ctx.s.org_path("/chat/settings"),
            &serde_json::json!({"writable_days": w, "readable_days": rd,
                "attachment_max_bytes": mib.saturating_mul(1024 * 1024)}),
            None,
        )
        .await
        .map(|_| ());
    after(&ctx, r).await
}

/// `POST /console/settings/features`: the directory and portal switches (a switch left as it
/// was changes nothing and writes no audit event).
pub async fn features(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    // Only the switches the page showed (`shown`), so a switch missing from it stays as it is.
    let shown = f.all("shown");
    for name in ["directory", "portal"]
        .into_iter()
        .filter(|n| shown.iter().any(|s| s == n))
    {
        let r = ctx
            .api
            .send::<Feature>(
                Method::PUT,
                &ctx.s.org_path(&format!("/features/{name}")),
                &serde_json::json!({ "enabled": f.get(name).is_some() }),
                None,
            )
            .await
            .map(|_| ());
        if r.is_err() {
            return after(&ctx, r).await;
        }
    }
    after(&ctx, Ok(())).await
}

/// `POST /console/settings/mfa`.
pub async fn mfa(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let r = ctx
        .api
        .send::<MfaPolicy>(
            Method::PUT,
            &ctx.s.org_path("/mfa-policy"),
            &serde_json::json!({ "required_for": f.all("required_for") }),
            None,
        )
        .await
        .map(|_| ());
    after(&ctx, r).await
}

/// `POST /console/settings/app`: languages, branding and support as the apps get them (the
/// rest of the app settings is kept).
pub async fn app(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let path = ctx.s.org_path("/app-settings");
    let mut a = match ctx.api.get::<AppSettings>(&path).await {
        Ok(a) => a.value,
        Err(e) => return ctx.fail(&e),
    };
    a.languages = f.all("language");
    a.branding.primary_color = f.get("primary_color");
    a.branding.logo_url = f.get("logo_url");
    a.support.email = f.get("support_email");
    a.support.phone = f.get("support_phone");
    a.support.url = f.get("support_url");
    let r = ctx
        .api
        .send::<AppSettings>(Method::PUT, &path, &a, None)
        .await
        .map(|_| ());
    after(&ctx, r).await
}
