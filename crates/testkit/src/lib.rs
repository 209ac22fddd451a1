//! Starts the real Carebridge server in-process on port 0, over a fresh SQLite file or — when
//! `TEST_DATABASE_URL` is set — a fresh PostgreSQL schema, and hands the test an HTTP client and
//! a clock it controls. Each test owns its server and data; nothing is shared between tests.

use std::sync::Arc;

use carebridge_domain::{ManualClock, Timestamp};
use carebridge_server::Running;
use carebridge_server::config::Config;
use serde_json::Value;

/// A running server for one test.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub running: Running,
    pub database_url: String,
    /// `Some(schema)` on PostgreSQL.
    pub pg_schema: Option<String>,
    _dir: tempfile::TempDir,
}

/// Whether the suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty())
}

/// A fixed, realistic start time for test clocks.
pub fn t0() -> Timestamp {
    Timestamp::from_second(1_795_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl TestServer {
    /// Starts a server with default configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusted the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            // Tests run the chat worker's steps themselves, at the test clock's time.
            chat_poll_ms: 0,
            ..Config::default()
        };
        let pg_schema = if on_postgres() {
            let url = std::env::var("TEST_DATABASE_URL").expect("url");
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::PgPool::connect(&url)
                .await
                .expect("connect to TEST_DATABASE_URL");
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&pool)
                .await
                .expect("create schema");
            pool.close().await;
            config.database_url = url;
            Some(schema)
        } else {
            config.database_url = format!("sqlite://{}/carebridge.db", dir.path().display());
            None
        };
        tweak(&mut config);
        let clock = Arc::new(ManualClock::new(t0()));
        let db = carebridge_server::open_db(&config, pg_schema.clone())
            .await
            .expect("open database");
        let database_url = config.database_url.clone();
        let running = carebridge_server::start_with(config, db, clock.clone())
            .await
            .expect("start server");
        let base = format!("http://{}", running.addr);
        TestServer {
            base,
            http: reqwest::Client::new(),
            clock,
            running,
            database_url,
            pg_schema,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Creates an organisation and an org-admin API key for it (through the CLI code path).
    pub async fn org(&self, slug: &str) -> String {
        self.org_with(slug, "CH", &[]).await
    }

    /// Creates an organisation with a region and a key with the given permissions (all when empty).
    pub async fn org_with(&self, slug: &str, region: &str, permissions: &[&str]) -> String {
        let db = &self.running.state.db;
        let now = self.clock_now();
        carebridge_server::commands::org_create(
            db,
            carebridge_proto::org::CreateOrg {
                slug: slug.into(),
                name: format!("Org {slug}"),
                default_region: region.into(),
                default_language: "de".into(),
                contact_email: None,
            },
            now,
        )
        .await
        .expect("create org");
        self.key(slug, permissions).await
    }

    /// Another API key of an existing organisation.
    pub async fn key(&self, slug: &str, permissions: &[&str]) -> String {
        let perms = permissions.iter().map(|p| p.to_string()).collect();
        carebridge_server::commands::apikey_create(
            &self.running.state.db,
            Some(slug),
            "test",
            perms,
            self.clock_now(),
        )
        .await
        .expect("create key")
        .secret
    }

    /// A platform key.
    pub async fn platform_key(&self) -> String {
        carebridge_server::commands::apikey_create(
            &self.running.state.db,
            None,
            "platform",
            vec![],
            self.clock_now(),
        )
        .await
        .expect("platform key")
        .secret
    }

    fn clock_now(&self) -> Timestamp {
        use carebridge_domain::Clock;
        self.clock.now()
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        read(r).await
    }

    pub async fn post(&self, key: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request");
        read(r).await
    }

    pub async fn patch(&self, key: &str, path: &str, etag: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .patch(self.url(path))
            .bearer_auth(key)
            .header("if-match", etag)
            .json(body)
            .send()
            .await
            .expect("request");
        read(r).await
    }

    pub async fn put(&self, key: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request");
        read(r).await
    }

    /// A personal key for `person` of `slug` (acts with the person's roles, narrowed to
    /// `permissions`; all when empty), created through the API with the admin key `admin`.
    pub async fn person_key(
        &self,
        admin: &str,
        slug: &str,
        person: &str,
        permissions: &[&str],
    ) -> String {
        let perms: Vec<String> = if permissions.is_empty() {
            carebridge_domain::auth::Permission::org_admin()
                .into_iter()
                .map(|p| p.as_str().to_string())
                .collect()
        } else {
            permissions.iter().map(|p| p.to_string()).collect()
        };
        let (st, k) = self
            .post(
                admin,
                &format!("/api/v1/orgs/{slug}/api-keys"),
                &serde_json::json!({"name": "personal", "permissions": perms, "person_id": person}),
            )
            .await;
        assert_eq!(st, 201, "{k}");
        k["secret"].as_str().expect("secret").to_string()
    }

    pub async fn delete(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        read(r).await
    }

    /// Messages the outbox holds for `recipient` (the development sink), newest first.
    pub async fn outbox(&self, recipient: &str) -> Vec<carebridge_store::outbox::Message> {
        let mut c = self.running.state.db.read().await.expect("db");
        carebridge_store::outbox::to_recipient(&mut c, recipient, 50)
            .await
            .expect("outbox")
    }

    /// The newest link to this server in the newest e-mail to `email`.
    pub async fn mailed_link(&self, email: &str) -> String {
        let m = self.outbox(email).await;
        let body = &m.first().expect("an e-mail").body;
        body.split_whitespace()
            .find(|w| w.starts_with(&self.base))
            .expect("a link in the e-mail")
            .to_string()
    }

    /// The newest six-digit code in an SMS to `phone`.
    pub async fn texted_code(&self, phone: &str) -> String {
        let m = self.outbox(phone).await;
        let body = &m.first().expect("an SMS").body;
        body.split_whitespace()
            .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
            .expect("a code in the SMS")
            .to_string()
    }

    /// Creates a person of `slug` (kind `staff`, `volunteer`, `client`, `relative`) with an
    /// e-mail (and a mobile when given), invites them and sets `password` through the
    /// invitation link, like the person would. Returns the person id.
    pub async fn member(
        &self,
        admin: &str,
        slug: &str,
        kind: &str,
        email: &str,
        mobile: Option<&str>,
        password: &str,
    ) -> String {
        let mut body = serde_json::json!({"given_name": "Test", "family_name": email.split('@').next().unwrap_or("x"), "kind": kind,
            "emails": [{"value": email, "type": "work"}]});
        if let Some(m) = mobile {
            body["phones"] = serde_json::json!([{"value": m, "type": "mobile"}]);
        }
        let (st, p) = self
            .post(admin, &format!("/api/v1/orgs/{slug}/people"), &body)
            .await;
        assert_eq!(st, 201, "{p}");
        let id = p["id"].as_str().expect("id").to_string();
        let (st, inv) = self
            .post(
                admin,
                &format!("/api/v1/orgs/{slug}/people/{id}/invitation"),
                &Value::Null,
            )
            .await;
        assert_eq!(st, 201, "{inv}");
        let link = self.mailed_link(email).await;
        let b = Browser::new(self);
        let page = b.get(&link).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let r = b
            .submit(
                &page,
                "/account/password",
                &[("password", password), ("repeat", password)],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        id
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.running.shutdown().await.expect("shutdown");
    }
}

/// Status and JSON body (or `Value::Null` for an empty body, a string for non-JSON).
pub async fn read(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, v)
}

/// A browser stand-in for the sign-in pages: keeps cookies, does not follow redirects (tests
/// look at each `Location`), fills forms by their field names.
pub struct Browser {
    pub http: reqwest::Client,
    base: String,
}

/// One response as the browser saw it.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The value of the form field `name` (first occurrence), HTML entities decoded.
    pub fn field(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&needle)? + needle.len();
        let end = self.body[start..].find('"')? + start;
        Some(unescape(&self.body[start..end]))
    }
}

/// Decodes the entities askama writes.
pub fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&#60;", "<")
        .replace("&gt;", ">")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

impl Browser {
    pub fn new(s: &TestServer) -> Browser {
        Self::at(&s.base)
    }

    /// A browser for a server at `base` (e.g. a child process).
    pub fn at(base: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_string(),
        }
    }

    fn abs(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_string()
        }
    }

    async fn page(r: reqwest::Response) -> Page {
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Page {
            status,
            location,
            body: r.text().await.expect("body"),
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        Self::page(self.http.get(self.abs(url)).send().await.expect("get")).await
    }

    pub async fn post(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        Self::page(
            self.http
                .post(self.abs(url))
                .form(fields)
                .send()
                .await
                .expect("post"),
        )
        .await
    }

    /// Posts a form of `page` to `action`: its hidden `csrf`, `next`, `token`, `lang` and `org`
    /// fields plus `fields`.
    pub async fn submit(&self, page: &Page, action: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(String, String)> = ["csrf", "next", "token", "lang", "org"]
            .iter()
            .filter_map(|k| page.field(k).map(|v| (k.to_string(), v)))
            .collect();
        all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self::page(
            self.http
                .post(self.abs(action))
                .form(&all)
                .send()
                .await
                .expect("post"),
        )
        .await
    }

    /// Follows redirects on this server until a page or a redirect elsewhere.
    pub async fn follow(&self, mut p: Page) -> Page {
        for _ in 0..10 {
            match &p.location {
                Some(l) if l.starts_with('/') || l.starts_with(&self.base) => p = self.get(l).await,
                _ => return p,
            }
        }
        p
    }

    /// Signs in on the page `p` (a sign-in form) and follows on.
    pub async fn sign_in(&self, p: &Page, login: &str, password: &str) -> Page {
        let r = self
            .submit(
                p,
                "/oauth2/login",
                &[("login", login), ("password", password)],
            )
            .await;
        self.follow(r).await
    }
}
