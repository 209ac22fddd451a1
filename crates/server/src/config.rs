//! Configuration, layered: built-in defaults → a TOML file (`--config`, default
//! `carebridge.toml` if present) → `CAREBRIDGE_*` environment variables → command-line flags.
//! Unknown keys are errors. `carebridge.example.toml` documents every key; a test keeps it in
//! step with [`Config::default`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything the server can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// `sqlite://data/carebridge.db` (embedded, default) or `postgres://user@host/db`.
    pub database_url: String,
    /// Pool size (PostgreSQL) or reader pool size (SQLite).
    pub database_max_connections: u32,
    /// The URL people reach this server at (used in links); defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Which roles to run: any of `identity`, `backend`, `directory`, `duties`, `chat`,
    /// `portal`, `notify`, `console`, `app` (default: all; the console needs `identity`).
    pub roles: Vec<String>,
    /// `text` or `json`.
    pub log_format: String,
    /// `tracing` filter, e.g. `info` or `carebridge=debug,info`.
    pub log_level: String,
    /// Serve HTTPS directly with this certificate chain (PEM) …
    pub tls_cert: Option<PathBuf>,
    /// … and this private key (PEM). Without both, plain HTTP (put a reverse proxy in front).
    pub tls_key: Option<PathBuf>,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Load the demo organisation at start (if missing).
    pub demo: bool,
    /// How often (ms) the chat worker looks for roster changes and expired chats; 0 turns the
    /// background worker off (tests run its steps themselves).
    pub chat_poll_ms: u64,
    /// Password, one-time-code and e-mail-link attempts allowed per source address and minute
    /// (on top of the per-account lockout).
    pub signin_per_minute: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the real caller (for rate limits), e.g.
    /// `["127.0.0.1"]` behind a local nginx. Empty: the TCP peer is the caller.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Outgoing e-mail: `smtps://user:pass@host:465`, `smtp://user:pass@host:587?tls=required`
    /// or `smtp://host:25` (unencrypted, local relay only). Unset: e-mails stay in the
    /// development sink (`carebridge outbox list`).
    pub smtp_url: Option<String>,
    /// The sender of e-mails.
    pub mail_from: String,
    /// SMS gateway webhook: Carebridge POSTs `{"to": "+41…", "text": "…"}` as JSON. Unset:
    /// SMS stay in the development sink.
    pub sms_webhook_url: Option<String>,
    /// SMS through Twilio's Messages API instead (`[sms_twilio]` with `account_sid`,
    /// `auth_token`, `from`; `api_base` only for tests).
    pub sms_twilio: Option<TwilioConfig>,
    /// When the identity role runs elsewhere: its issuer URL (e.g. `https://id.example.ch`).
    /// The portal accepts that provider's tokens (keys from its discovery document) and the
    /// backend's discovery documents name it. Unset: this server's own `public_url`.
    pub identity_issuer: Option<String>,
}

/// `[sms_twilio]`: the account that sends SMS. The auth token is a secret (never logged).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: String,
    /// A Twilio number in E.164 or an alphanumeric sender id.
    pub from: String,
    #[serde(default = "twilio_api")]
    pub api_base: String,
}

fn twilio_api() -> String {
    "https://api.twilio.com".into()
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .field("api_base", &self.api_base)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/carebridge.db".into(),
            database_max_connections: 8,
            public_url: None,
            roles: crate::app::ROLES.iter().map(|r| r.to_string()).collect(),
            log_format: "text".into(),
            log_level: "info".into(),
            tls_cert: None,
            tls_key: None,
            body_limit: carebridge_web::extract::BODY_LIMIT,
            demo: false,
            chat_poll_ms: 100,
            signin_per_minute: 30,
            trusted_proxies: vec![],
            smtp_url: None,
            mail_from: "Carebridge <no-reply@localhost>".into(),
            sms_webhook_url: None,
            sms_twilio: None,
            identity_issuer: None,
        }
    }
}

impl Config {
    /// Loads defaults → file → environment. Flags are merged by the caller with [`Config::merge`].
    pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(p) => f = f.merge(Toml::file_exact(p)),
            None if Path::new("carebridge.toml").exists() => {
                f = f.merge(Toml::file_exact("carebridge.toml"))
            }
            None => {}
        }
        f.merge(Env::prefixed("CAREBRIDGE_").split("__"))
            .extract()
            .map_err(Box::new)
    }

    /// Whether HTTPS is served directly.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Checks values the types can't.
    pub fn validate(&self) -> Result<(), String> {
        for r in &self.roles {
            if !crate::app::ROLES.contains(&r.as_str()) {
                return Err(format!(
                    "unknown role '{r}'; known: {}",
                    crate::app::ROLES.join(", ")
                ));
            }
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err("log_format must be 'text' or 'json'".into());
        }
        let runs = |r: &str| self.roles.iter().any(|x| x == r);
        if runs("portal") && !runs("identity") && self.identity_issuer.is_none() {
            return Err(
                "the portal without the identity role needs identity_issuer (--identity-issuer https://…)"
                    .into(),
            );
        }
        if runs("console") && !runs("identity") {
            return Err(
                "the console signs people in through this process's identity role: run both".into(),
            );
        }
        if let Some(i) = &self.identity_issuer
            && !(i.starts_with("https://") || i.starts_with("http://"))
        {
            return Err("identity_issuer must be an http(s) URL".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        Ok(())
    }
}
