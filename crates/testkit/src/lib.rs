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
