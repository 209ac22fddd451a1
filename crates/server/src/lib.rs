//! The `carebridge` server: configuration, role composition, start-up and shutdown, and the
//! operator commands (migrate, org/admin/API-key management, audit verification, backup, demo
//! data, benchmarks). The binary in `main.rs` only parses the command line and calls in here;
//! the test kit starts the very same server in-process.

pub mod app;
pub mod bench;
mod bench_chat;
mod bench_console;
mod bench_contacts;
mod bench_duties;
mod bench_identity;
mod bench_import;
mod bench_portal;
mod bench_tokens;
pub mod commands;
pub mod config;
pub mod demo;
pub mod setup;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use carebridge_domain::Clock;
use carebridge_store::{Db, DbOptions};
use carebridge_web::{AppState, CursorKey};
use tokio::sync::oneshot;

use crate::config::Config;

/// Opens and migrates the database of `config`.
pub async fn open_db(config: &Config, pg_schema: Option<String>) -> anyhow::Result<Db> {
    let opts = DbOptions {
        url: config.database_url.clone(),
        max_connections: config.database_max_connections,
        pg_schema,
    };
    let db = Db::connect(&opts).await.with_context(|| {
        format!(
            "opening {}",
            carebridge_store::redact_url(&config.database_url)
        )
    })?;
    db.migrate().await.context("migrating the database")?;
    Ok(db)
}

/// Builds the shared state: database, clock, the cursor key (created once, shared by all nodes).
pub async fn state(db: Db, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    let now = clock.now().as_millisecond();
    let key = carebridge_store::secrets::get_or_create(
        &db,
        "cursor_key",
        || carebridge_identity::random_bytes::<32>().to_vec(),
        now,
    )
    .await
    .context("loading the cursor key")?;
    carebridge_identity::keys::ensure(&db, clock.now())
        .await
        .context("creating the token signing key")?;
    Ok(AppState {
        db,
        clock,
        cursor: CursorKey::new(key),
        base_url: Arc::default(),
    })
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// The one-time set-up token, when the database had no organisation yet.
    pub setup_token: Option<String>,
    /// The demo organisation's admin API key, when `demo` was set and the demo was created now.
    pub demo_key: Option<String>,
    pub state: AppState,
    /// The chat role's sockets of this process.
    pub chat: Arc<carebridge_chat::Chat>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    housekeeping: tokio::task::JoinHandle<()>,
    chat_worker: Option<tokio::task::JoinHandle<()>>,
    chat_relay: Option<tokio::task::JoinHandle<()>>,
    notifier: Option<(
        tokio::task::JoinHandle<()>,
        Arc<carebridge_notify::Notifier>,
        tokio::sync::watch::Sender<bool>,
    )>,
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish, closes the database.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        // Open WebSockets would keep the graceful shutdown waiting: close them first (devices
        // reconnect elsewhere and fetch what they missed by cursor).
        self.chat.hub.close_all();
        let r = self.task.await.context("server task")?;
        self.housekeeping.abort();
        if let Some(w) = &self.chat_worker {
            w.abort();
        }
        if let Some(w) = &self.chat_relay {
            w.abort();
        }
        if let Some((mut task, n, stop)) = self.notifier.take() {
            // The delivery loop ends after the pass it is in (aborting it mid-send would leave
            // a claimed message waiting for its lease); then what is due now goes out before
            // the process ends (both bounded).
            let _ = stop.send(true);
            if tokio::time::timeout(Duration::from_secs(10), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
            let drain = carebridge_notify::run_once(&self.state.db, &n, self.state.now());
            match tokio::time::timeout(Duration::from_secs(10), drain).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "draining the outbox failed"),
                Err(_) => tracing::warn!(
                    "draining the outbox took too long; the rest goes out at the next start"
                ),
                Ok(Ok(_)) => {}
            }
        }
        self.state.db.close().await;
        r
    }

    /// Waits until the server stops by itself (or `signal` fires), then shuts down in order.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        signal.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        self.shutdown().await
    }
}

/// Starts the server on an open database.
pub async fn start_with(config: Config, db: Db, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    config.validate().map_err(anyhow::Error::msg)?;
    let _ = telemetry::prometheus();
    let state = state(db, clock).await?;
    let demo_key = if config.demo {
        demo::ensure(&state.db, state.now()).await?
    } else {
        None
    };
    // Setting up the first organisation and its administrator is the identity role's job.
    let setup_token = if config.roles.iter().any(|r| r == "identity") {
        setup::prepare(&state.db, state.now()).await?
    } else {
        None
    };
    let chat = Arc::new(carebridge_chat::Chat::default());
    let app = app::router(&config, state.clone(), chat.clone());
    let chat_relay = if config.roles.iter().any(|r| r == "chat") {
        Some(tokio::spawn(carebridge_chat::service::relay(
            state.db.clone(),
            chat.clone(),
        )))
    } else {
        None
    };
    let chat_worker = if config.roles.iter().any(|r| r == "chat") && config.chat_poll_ms > 0 {
        Some(tokio::spawn(carebridge_chat::service::run(
            state.clone(),
            chat.clone(),
            Duration::from_millis(config.chat_poll_ms),
        )))
    } else {
        None
    };
    let housekeeping = tokio::spawn(housekeeping_loop(state.clone()));
    let notifier = if config.roles.iter().any(|r| r == "notify") {
        let n = carebridge_notify::Notifier::new(&carebridge_notify::Transports {
            smtp_url: config.smtp_url.clone(),
            mail_from: config.mail_from.clone(),
            sms_webhook_url: config.sms_webhook_url.clone(),
            twilio: config
                .sms_twilio
                .as_ref()
                .map(|t| carebridge_notify::Twilio {
                    account_sid: t.account_sid.clone(),
                    auth_token: t.auth_token.clone(),
                    from: t.from.clone(),
                    api_base: t.api_base.clone(),
                }),
        })
        .context("setting up e-mail and SMS delivery")?;
        let n = Arc::new(n);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        Some((
            tokio::spawn(notify_loop(state.clone(), n.clone(), stopped)),
            n,
            stop,
        ))
    } else {
        None
    };
    let (tx, rx) = oneshot::channel::<()>();
    let (addr, task) = if config.tls() {
        let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
            anyhow::bail!("tls_cert and tls_key go together")
        };
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .context("loading the TLS certificate and key")?;
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let _ = state.base_url.set(
            config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("https://{addr}")),
        );
        let handle = axum_server::Handle::new();
        let h2 = handle.clone();
        tokio::spawn(async move {
            let _ = rx.await;
            h2.graceful_shutdown(Some(Duration::from_secs(20)));
        });
        let server = axum_server::from_tcp_rustls(listener, tls).handle(handle);
        let task = tokio::spawn(async move {
            server
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
                .context("HTTPS server")
        });
        (addr, task)
    } else {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let _ = state.base_url.set(
            config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{addr}")),
        );
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .context("HTTP server")
        });
        (addr, task)
    };
    Ok(Running {
        addr,
        setup_token,
        demo_key,
        state,
        chat,
        shutdown: Some(tx),
        task,
        housekeeping,
        chat_worker,
        chat_relay,
        notifier,
    })
}

/// How long idempotency keys are remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// One step of periodic housekeeping (tests call it directly with a moved clock): forgets
/// idempotency keys older than [`IDEMPOTENCY_TTL`], prunes the contacts feed's log (30 to 60
/// days kept) and unused viewers, and deletes expired import files and week-old import jobs.
/// Returns how many idempotency keys and log entries were removed.
pub async fn housekeeping_step(db: &Db, now: carebridge_domain::Timestamp) -> anyhow::Result<u64> {
    let before =
        now.as_millisecond() - i64::try_from(IDEMPOTENCY_TTL.as_millis()).unwrap_or(i64::MAX);
    let mut tx = db.begin().await?;
    let n = carebridge_store::idempotency::purge(&mut tx, before).await?;
    tx.commit().await?;
    let n = n + carebridge_directory::service::feed::prune(db, now)
        .await
        .map_err(|e| anyhow::anyhow!("pruning the contacts feed: {e}"))?;
    carebridge_directory::service::jobs::prune(db, now)
        .await
        .map_err(|e| anyhow::anyhow!("pruning import jobs: {e}"))?;
    Ok(n)
}

/// Delivers the outbox twice a second (e-mail, SMS, or the development sink).
/// Delivers the outbox every 500 ms until `stop` changes (between passes, never mid-send).
async fn notify_loop(
    state: AppState,
    n: Arc<carebridge_notify::Notifier>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = carebridge_notify::run_once(&state.db, &n, state.now()).await {
            tracing::warn!(error = %e, "outbox delivery failed; retrying");
        }
    }
}

async fn housekeeping_loop(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        if let Err(e) = housekeeping_step(&state.db, state.now()).await {
            tracing::warn!(error = %e, "housekeeping failed; retrying later");
        }
    }
}

/// Opens the database of `config` and starts the server.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let db = open_db(&config, None).await?;
    start_with(config, db, clock).await
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
