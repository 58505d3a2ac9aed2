//! The Custos server: configuration, start-up, the HTTP surface and the CLI's
//! commands. `main.rs` is only argument parsing.

pub mod access;
pub mod api;
pub mod auth;
pub mod background;
pub mod commands;
pub mod config;
pub mod disk;
pub mod http;
pub mod limits;
pub mod routes;
pub mod telemetry;

use custos_engine::time::HOUR_US;
use custos_model::Channel;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use custos_engine::clock::{Clock, OsRandom, RandomSource, SystemClock};
use custos_engine::events::{OwnAction, OwnEvent};
use custos_engine::identity::service::{Identity, IdentityError, IdentitySettings};
use custos_engine::keys::{EnvKek, FileKek, KekError, KekProvider};
use custos_engine::ledger::{Ledger, LedgerConfig, LedgerError, LedgerTasks};
use custos_engine::storage::{Database, PoolOptions, StorageError};
use leptos::prelude::LeptosOptions;
use tokio::sync::watch;

use crate::config::Config;

/// The environment variable that may hold the KEK (base64).
pub const KEK_ENV: &str = "CUSTOS_KEK";

/// Why the server could not start. Messages name what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Database connection or migration.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Keys or ledger state.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Users and roles.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot start the events service: {0}")]
    Events(String),
    /// The TLS certificate or key.
    #[error("cannot load the TLS certificate {cert} / key {key}: {reason}")]
    Tls {
        /// Certificate file.
        cert: String,
        /// Key file.
        key: String,
        /// Why.
        reason: String,
    },
    /// The object store's client.
    #[error("cannot set up the object store: {0}")]
    ObjectStore(String),
    /// Listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The KEK provider the configuration selects: `CUSTOS_KEK` if set, else the key file.
pub fn kek_provider(config: &Config) -> Result<Box<dyn KekProvider>, KekError> {
    let env = EnvKek::from_env(KEK_ENV);
    if env.is_set() {
        return Ok(Box::new(env));
    }
    let path = config.kek_file();
    if !path.exists() {
        return Err(KekError::Missing);
    }
    Ok(Box::new(FileKek::new(path)))
}

/// Connects to the configured database and applies pending migrations.
pub async fn open_database(config: &Config) -> Result<Database, StorageError> {
    let opts = PoolOptions {
        max_connections: config.database.max_connections,
        busy_timeout: Duration::from_millis(config.database.busy_timeout_ms),
    };
    let db = Database::connect(&config.database_url(), &opts).await?;
    db.migrate().await?;
    Ok(db)
}

/// Opens the ledger on a migrated database (system clock, OS randomness).
pub async fn open_ledger(config: &Config, db: Database) -> Result<(Ledger, LedgerTasks), LedgerError> {
    open_ledger_with(config, db, Arc::new(SystemClock), Arc::new(OsRandom)).await
}

/// Opens the ledger on a migrated database with this clock and randomness.
pub async fn open_ledger_with(
    config: &Config,
    db: Database,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
) -> Result<(Ledger, LedgerTasks), LedgerError> {
    let kek = kek_provider(config)?;
    let cfg = LedgerConfig {
        origin: config.ledger.origin.clone(),
        max_batch: config.ledger.max_batch,
        queue_depth: config.ledger.queue_depth,
        checkpoint_interval: Duration::from_secs(config.ledger.checkpoint_interval_secs),
        checkpoint_spacing: Duration::from_millis(config.ledger.checkpoint_spacing_ms),
        commit_timeout: Duration::from_secs(config.ledger.commit_timeout_secs),
        lease_ttl: Duration::from_secs(config.cluster.lease_ttl_secs),
        max_clock_ahead: Duration::from_secs(config.ledger.max_clock_ahead_secs),
        ..LedgerConfig::default()
    };
    Ledger::open(db, kek.as_ref(), cfg, clock, rng).await
}

/// The identity service for a configuration (its records go through
/// `events`), on the system clock and the OS's randomness.
pub async fn open_identity(
    config: &Config,
    events: Arc<custos_engine::events::Events>,
) -> Result<Identity, IdentityError> {
    open_identity_with(config, events, Arc::new(SystemClock), Arc::new(OsRandom)).await
}

/// The identity service with this clock and randomness.
pub async fn open_identity_with(
    config: &Config,
    events: Arc<custos_engine::events::Events>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
) -> Result<Identity, IdentityError> {
    let a = &config.auth;
    let settings = IdentitySettings {
        lockout_threshold: a.lockout_threshold,
        lockout_secs: a.lockout_minutes * 60,
        ip_failures: a.failures_per_address,
        name_failures: a.failures_per_username,
        throttle_window_secs: a.throttle_window_minutes * 60,
        issuer: "Custos".into(),
        noise_per_minute: a.anonymous_per_minute,
    };
    Identity::new(events, clock, rng, settings).await
}

/// On a new installation, creates the first administrator from
/// `CUSTOS_ADMIN_USERNAME` / `CUSTOS_ADMIN_PASSWORD`, or with a random
/// password printed once on standard output (never logged).
async fn first_admin(identity: &Identity) -> Result<(), IdentityError> {
    let name = std::env::var("CUSTOS_ADMIN_USERNAME").ok().filter(|v| !v.trim().is_empty());
    let password =
        std::env::var("CUSTOS_ADMIN_PASSWORD").ok().filter(|v| !v.is_empty()).map(secrecy::SecretString::from);
    if let Some((username, generated)) = identity.ensure_first_admin(name.as_deref(), password).await? {
        match generated {
            Some(pw) => {
                use secrecy::ExposeSecret as _;
                println!(
                    "First administrator created: user `{username}`, password `{}`. It is shown only now; \
                     you must change it at first sign-in.",
                    pw.expose_secret()
                );
            }
            None => tracing::info!(username, "first administrator created from CUSTOS_ADMIN_USERNAME/PASSWORD"),
        }
    }
    Ok(())
}

/// A running server.
pub struct Running {
    /// The address it listens on (port 0 resolved).
    pub addr: SocketAddr,
    /// The ledger, for in-process callers (tests, benchmarks).
    pub ledger: Ledger,
    /// Users and roles, for in-process callers (tests).
    pub identity: Arc<Identity>,
    pub events: Arc<custos_engine::events::Events>,
    /// The policy store, for in-process callers (tests).
    pub policies: Arc<custos_engine::policies::PolicyStore>,
    /// The alerts, for in-process callers (tests).
    pub alerts: Arc<custos_engine::alerts::store::Alerts>,
    evaluator: Arc<tokio::sync::Mutex<custos_engine::alerts::live::Live>>,
    sender: Arc<tokio::sync::Mutex<custos_engine::notify::Notifier>>,
    forwarder: Arc<custos_engine::forward::Forwarder>,
    /// The HTTP layer's state (tests wrap their own routes with it).
    pub state: http::AppState,
    stop: watch::Sender<bool>,
    shutting_down: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: background::Background,
    tasks: LedgerTasks,
    shutdown_timeout: Duration,
}

/// Starts Custos: database, migrations, ledger, HTTP; on the system clock
/// and the operating system's random generator.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    start_with(config, Arc::new(SystemClock), Arc::new(OsRandom)).await
}

/// Starts Custos on this clock and random source: every time the ledger
/// and identity use (commit times, sessions' epochs, lockouts, throttles,
/// key ages, the compliance checks' windows) is the clock's, so a test can
/// move time with a `ManualClock` instead of sleeping or editing rows. (The
/// HTTP session cookies' expiry stays on the wall clock: tower-sessions
/// keeps it.)
pub async fn start_with(
    config: &Config,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
) -> Result<Running, StartError> {
    let started = Instant::now();
    let db = open_database(config).await?;
    tracing::info!(database = db.kind().as_str(), "database ready, migrations applied");
    let (ledger, tasks) = open_ledger_with(config, db, clock.clone(), rng.clone()).await?;
    let head = ledger.head().await?;
    tracing::info!(origin = ledger.origin(), entries = head.seq, "ledger open");
    let events = Arc::new(
        custos_engine::events::Events::open(ledger.clone(), config.ingest.limits())
            .await
            .map_err(|e| StartError::Events(e.to_string()))?,
    );
    // The audit function's own start-up is an auditable event (NIST 800-53 AU-2).
    events
        .record_own(lifecycle_event(OwnAction::Start, ledger.db().kind().as_str()))
        .await
        .map_err(|e| StartError::Events(e.to_string()))?;
    let identity = Arc::new(open_identity_with(config, events.clone(), clock, rng).await?);
    first_admin(&identity).await?;
    let policies = Arc::new(
        custos_engine::policies::PolicyStore::open(events.clone(), identity.clone(), &config.review_rules())
            .await
            .map_err(|e| StartError::Events(format!("policies: {e}")))?,
    );
    let alerts = Arc::new(custos_engine::alerts::store::Alerts::new(events.clone()));
    let replica = replica_name();
    let notifier = Arc::new(custos_engine::notify::Notifier::new(
        alerts.clone(),
        policies.clone(),
        &replica,
        config.notifications.engine(),
    ));
    let forwarder = Arc::new(custos_engine::forward::Forwarder::new(
        events.clone(),
        policies.clone(),
        &replica,
        config.forwarding.engine(),
    ));
    custos_engine::retention::doc::set_floor_days(config.retention.min_days);
    custos_engine::retention::doc::set_scheduled(!matches!(config.retention.run_at_minute(), Ok(None)));
    custos_engine::backup::set_interval_hours(config.backup.interval_hours);
    // Checked by the configuration's validation; a client that cannot be
    // built stops start-up rather than keep archives only locally.
    let remote = config.object_store.remote().map_err(StartError::ObjectStore)?;
    // Export and verification jobs, visible from every replica.
    let jobs = custos_engine::jobs::JobStore::new(ledger.clone(), &replica);
    let retention = Arc::new(custos_engine::retention::Retention::new(
        events.clone(),
        policies.clone(),
        &replica,
        custos_engine::retention::Settings {
            archive_dir: config.retention.archive_dir.clone().unwrap_or_else(|| config.data_dir.join("archives")),
            run_at_minute: config.retention.run_at_minute().unwrap_or(Some(180)),
            remote: remote.clone().filter(|_| config.object_store.archives),
            cold_copies: custos_engine::retention::ColdCopies::parse(&config.retention.cold_copies).unwrap_or(None),
        },
    ));
    if let Err(e) = retention.close_interrupted().await {
        tracing::warn!(error = %e, "closing interrupted retention runs failed");
    }
    let backups = Arc::new(custos_engine::backup::Backups::new(
        events.clone(),
        &replica,
        custos_engine::backup::Settings {
            dir: config.backup.dir.clone().unwrap_or_else(|| config.data_dir.join("backups")),
            interval_us: (config.backup.interval_hours > 0).then(|| config.backup.interval_hours as i64 * HOUR_US),
            keep: config.backup.keep,
            remote: remote.clone().filter(|_| config.object_store.backups),
        },
    ));
    if let Err(e) = backups.close_interrupted().await {
        tracing::warn!(error = %e, "closing interrupted backups failed");
    }

    let reports = Arc::new(custos_engine::reports::Reports::new(
        events.clone(),
        policies.clone(),
        Arc::new(custos_export::Formats::default()),
        &replica,
        custos_engine::reports::Settings {
            organisation: config.reports.organisation.clone(),
            verify_within_hours: (config.ledger.verify_interval_secs.div_ceil(3600) * 2).max(24),
            keep: config.reports.keep,
            public_url: config.notifications.public_url.clone(),
        },
    ));

    let listener = tokio::net::TcpListener::bind(config.server.bind)
        .await
        .map_err(|source| StartError::Bind { addr: config.server.bind, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.server.bind, source })?;
    let leptos = LeptosOptions::builder()
        .output_name("custos")
        .site_root(config.server.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .env(if cfg!(debug_assertions) { leptos::config::Env::DEV } else { leptos::config::Env::PROD })
        .build();
    let shutting_down = Arc::new(AtomicBool::new(false));
    let state = http::AppState {
        leptos,
        ledger: ledger.clone(),
        metrics: telemetry::metrics_handle(),
        started,
        shutting_down: shutting_down.clone(),
        identity: identity.clone(),
        https: config.https(),
        proxies: Arc::new(
            auth::client::TrustedProxies::parse(&config.server.trusted_proxies)
                .map_err(|e| StartError::Events(format!("server.trusted_proxies: {e}")))?,
        ),
        busy: Arc::default(),
        session_absolute_us: config.auth.session_absolute_hours * HOUR_US,
        session_idle_secs: config.auth.session_idle_minutes * 60,
        events: events.clone(),
        policies: policies.clone(),
        alerts: alerts.clone(),
        notifier,
        forwarder: forwarder.clone(),
        retention: retention.clone(),
        backups: backups.clone(),
        reports: reports.clone(),
        replica: replica.clone(),
        verifications: Arc::new(custos_engine::events::verification::Verifications::new(Some(jobs.clone()))),
        ingest_max_body: config.ingest.max_body_bytes,
        commit_timeout: Duration::from_secs(config.ledger.commit_timeout_secs),
        read_timeout: Duration::from_secs(config.server.read_timeout_secs),
        disk: Arc::new(disk::DiskGuard::new(
            ledger.db().sqlite_file().map(|f| f.to_path_buf()),
            config.ingest.min_free_disk_mb,
        )),
        exports: Arc::new(
            custos_engine::events::export::ExportJobs::new(
                config.data_dir.join("exports"),
                Arc::new(custos_export::Formats::default()),
            )
            .shared(Some(jobs), remote.clone().filter(|_| config.object_store.exports)),
        ),
        ingest_summaries: Arc::new(api::summaries::Summaries::new(api::summaries::SummaryKind::Ingest)),
        presence: Arc::new(api::summaries::Summaries::new(api::summaries::SummaryKind::Presence)),
    };
    let app = http::app(state.clone());
    let (stop, mut stopped) = watch::channel(false);
    let mut background = background::Background::new(stop.clone());
    // Every ten minutes: expired sessions, the shared sign-in throttles'
    // counts no window holds, and export files past their 24 hours (here
    // and in the object store). Each is idempotent: every replica sweeps.
    let store = auth::session_store::DbSessionStore::new(ledger.db().clone(), identity.clone());
    let (sweeper, exports) = (identity.clone(), state.exports.clone());
    background.every("sweeper", Duration::from_secs(600), move || {
        let (store, sweeper, exports) = (store.clone(), sweeper.clone(), exports.clone());
        async move {
            if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "deleting expired sessions failed");
            }
            if let Err(e) = sweeper.sweep_throttles().await {
                tracing::warn!(error = %e, "deleting old sign-in throttle counts failed");
            }
            exports.sweep_files().await;
        }
    });
    // Summaries of anonymous noise (refused keys, anonymous calls, throttled
    // sign-ins), one event per source and minute, once the minute is over.
    let noisy = identity.clone();
    background.every("noise summaries", Duration::from_secs(10), move || {
        let identity = noisy.clone();
        async move { identity.record_noise_summaries().await }
    });
    // Ingest requests, one summary per caller, outcome and minute (the
    // events are their own record); the last ones at shutdown.
    let (summaries, summarised) = (state.ingest_summaries.clone(), events.clone());
    background.every("ingest summaries", Duration::from_secs(config.ingest.summary_secs.max(1)), move || {
        let (summaries, events) = (summaries.clone(), summarised.clone());
        async move {
            summaries.record(&events).await;
        }
    });
    // The pages' automatic refreshes, one summary per user, browser and
    // period; the last ones at shutdown.
    let (presence, summarised) = (state.presence.clone(), events.clone());
    background.every("presence summaries", Duration::from_secs(config.server.presence_secs.max(1)), move || {
        let (presence, events) = (presence.clone(), summarised.clone());
        async move {
            presence.record(&events).await;
        }
    });
    // Another replica's policy change takes effect here within two seconds;
    // proposals past their time are closed every minute.
    let refreshing = policies.clone();
    background.every("policy refresh", Duration::from_secs(2), move || {
        let store = refreshing.clone();
        async move {
            if let Err(e) = store.refresh().await {
                tracing::warn!(error = %e, "policy refresh failed");
            }
        }
    });
    let expiring = policies.clone();
    background.every("policy expiry", Duration::from_secs(60), move || {
        let store = expiring.clone();
        async move {
            if let Err(e) = store.expire_due().await {
                tracing::warn!(error = %e, "closing expired policy proposals failed");
            }
        }
    });
    // Alert rules on every commit, on the one replica holding the lease;
    // four passes a second keep an alert within a second of its commit.
    let evaluator = Arc::new(tokio::sync::Mutex::new(custos_engine::alerts::live::Live::new(
        alerts.clone(),
        policies.clone(),
        &replica,
    )));
    let evaluating = evaluator.clone();
    background.every("alert evaluator", Duration::from_millis(250), move || {
        let live = evaluating.clone();
        async move {
            match live.lock().await.step().await {
                Ok(pass) => {
                    if !pass.opened.is_empty() {
                        tracing::info!(opened = pass.opened.len(), cursor = pass.cursor, "alerts opened");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "alert evaluation failed; it resumes from its last cursor"),
            }
        }
    });
    // Notifications: queued for new alerts and delivered (with retries)
    // by the one replica holding the notifier's lease.
    let sender = Arc::new(tokio::sync::Mutex::new(custos_engine::notify::Notifier::new(
        alerts.clone(),
        policies.clone(),
        &replica,
        config.notifications.engine(),
    )));
    let sending = sender.clone();
    background.every("notifier", Duration::from_millis(250), move || {
        let sender = sending.clone();
        async move {
            match sender.lock().await.step().await {
                Ok(p) if p.failed + p.dead > 0 => {
                    tracing::warn!(delivered = p.delivered, failed = p.failed, dead = p.dead, "notifications failed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the notifier failed; it tries again"),
            }
        }
    });
    // SIEM forwarding: each destination of the forwarding policy in its own
    // task, on the one replica holding the destination's lease.
    let forwarding = forwarder.clone();
    background.every("forwarder", Duration::from_millis(250), move || {
        let forwarder = forwarding.clone();
        async move {
            if let Err(e) = forwarder.step().await {
                tracing::warn!(error = %e, "forwarding failed; it resumes from the destinations' cursors");
            }
        }
    });
    // Retention: approved erasure requests within seconds, and the daily
    // run, on the replica holding its lease.
    let retaining = retention.clone();
    background.every("retention", Duration::from_secs(5), move || {
        let retention = retaining.clone();
        async move {
            match retention.step().await {
                Ok(Some(run)) => tracing::info!(removed = run.removed, held = run.held, "scheduled retention run done"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "the scheduled retention run failed; it is tried again tomorrow"),
            }
        }
    });
    // Backups (SQLite): when the last is older than the interval.
    let backing_up = backups.clone();
    background.every("backup", Duration::from_secs(60), move || {
        let backups = backing_up.clone();
        async move {
            match backups.step().await {
                Ok(Some(b)) => tracing::info!(backup = %b.name, bytes = b.bytes, "scheduled backup taken"),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the scheduled backup failed; it is tried again after the interval")
                }
            }
        }
    });
    // A compliance snapshot for each day, at the day's first tick (on the
    // replica holding its lease): the evidence reports read them.
    let snapshotting = reports.clone();
    background.every("compliance snapshots", Duration::from_secs(60), move || {
        let reports = snapshotting.clone();
        async move {
            match reports.snapshot_step().await {
                Ok(Some(day)) => {
                    tracing::info!(day = %custos_engine::reports::period::date(day), "compliance snapshot taken")
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "the compliance snapshot failed; it is tried again in a minute"),
            }
        }
    });
    // Scheduled reports: planned, run and sent (on the replica holding
    // their lease).
    let scheduling = reports.clone();
    background.every("report schedules", Duration::from_secs(60), move || {
        let reports = scheduling.clone();
        async move {
            match reports.schedule_step().await {
                Ok(p) if p.done + p.failed + p.missed > 0 => {
                    tracing::info!(done = p.done, failed = p.failed, missed = p.missed, "scheduled reports run")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the report scheduler failed; it tries again in a minute"),
            }
        }
    });
    // The whole ledger is verified on a schedule, recorded like any other
    // verification (the compliance page's chain check reads them).
    if config.ledger.verify_interval_secs > 0 {
        let (ledger, events) = (ledger.clone(), events.clone());
        let every = Duration::from_secs(config.ledger.verify_interval_secs);
        // One replica at a time (the lease outlasts a long verification).
        let lease = custos_engine::lease::Lease::new(
            ledger.clone(),
            "scheduled-verification",
            &replica,
            custos_engine::time::HOUR_US,
        );
        background.every("scheduled verification", every.min(Duration::from_secs(600)), move || {
            let (ledger, events, lease) = (ledger.clone(), events.clone(), lease.clone());
            async move {
                match lease.acquire().await {
                    Ok(Some(_)) => {
                        scheduled_verification(&ledger, &events, every).await;
                        if let Err(e) = lease.release().await {
                            tracing::warn!(error = %e, "cannot release the scheduled verification's lease");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot take the scheduled verification's lease"),
                }
            }
        });
    }
    let server = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(cert), Some(key)) => {
            // One process-wide crypto provider for rustls (ring, as sqlx uses).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls_err = |reason: String| StartError::Tls {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                reason,
            };
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| tls_err(e.to_string()))?;
            let std_listener = listener.into_std().map_err(|source| StartError::Bind { addr, source })?;
            let handle = axum_server::Handle::new();
            let shutdown = handle.clone();
            let grace = Duration::from_secs(config.server.shutdown_timeout_secs);
            tokio::spawn(async move {
                let _ = stopped.wait_for(|s| *s).await;
                shutdown.graceful_shutdown(Some(grace));
            });
            let serving = axum_server::from_tcp_rustls(std_listener, tls).map_err(|e| tls_err(e.to_string()))?;
            tokio::spawn(async move { serving.handle(handle).serve(app).await })
        }
        _ => tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        }),
    };
    Ok(Running {
        addr,
        ledger,
        identity,
        events,
        policies,
        alerts,
        evaluator,
        sender,
        forwarder,
        state,
        stop,
        shutting_down,
        server,
        background,
        tasks,
        shutdown_timeout: Duration::from_secs(config.server.shutdown_timeout_secs),
    })
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish, commits
    /// queued events, signs a final checkpoint and closes the database.
    pub async fn shutdown(self) -> Result<background::Stopped, LedgerError> {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
        match tokio::time::timeout(self.shutdown_timeout, self.server).await {
            Ok(_) => {}
            Err(_) => tracing::warn!("in-flight requests did not finish in time; closing anyway"),
        }
        // Background work ends before the ledger closes: none is cut off
        // while it records.
        let stopped = self.background.stop(self.shutdown_timeout).await;
        // Another replica takes the alert evaluation over at once.
        if let Err(e) = self.evaluator.lock().await.release().await {
            tracing::warn!(error = %e, "could not hand the alert evaluation over");
        }
        if let Err(e) = self.sender.lock().await.release().await {
            tracing::warn!(error = %e, "could not hand the notifications over");
        }
        // The destinations' cursors are saved and their leases given up.
        self.forwarder.release(self.shutdown_timeout).await;
        // Running jobs (exports, verifications) end and record their end
        // first too; one still running then is cut off (an export cut off
        // cannot record, so its file is discarded: fail closed).
        let (verifications, exports) = tokio::join!(
            self.state.verifications.wait_idle(self.shutdown_timeout),
            self.state.exports.wait_idle(self.shutdown_timeout)
        );
        if !(verifications && exports) {
            tracing::warn!(verifications, exports, "jobs were still running at shutdown");
        }
        // The requests answered since the last summaries (any answered
        // from now on is recorded one by one).
        for (summaries, what) in [(&self.state.ingest_summaries, "ingest"), (&self.state.presence, "presence")] {
            summaries.close();
            summaries.record(&self.events).await;
            let lost = summaries.pending();
            if lost > 0 {
                tracing::error!(requests = lost, what, "the last request summaries could not be recorded at shutdown");
            }
        }
        let kind = self.ledger.db().kind().as_str();
        if let Err(e) = self.events.record_own(lifecycle_event(OwnAction::Stop, kind)).await {
            tracing::error!(error = %e, "could not record the shutdown in the ledger");
        }
        self.ledger.shutdown(self.tasks).await?;
        drop(self.state);
        let db = self.ledger.db().clone();
        drop(self.ledger);
        db.close().await?;
        tracing::info!(background = ?stopped.finished, "shut down cleanly");
        Ok(stopped)
    }

    /// The background tasks' names.
    pub fn background_tasks(&self) -> &[&'static str] {
        self.background.names()
    }
}

/// Verifies the whole ledger if the last such verification (by anyone) is
/// older than `every`, and records it as `audit.verify` by `custos`.
async fn scheduled_verification(ledger: &Ledger, events: &custos_engine::events::Events, every: Duration) {
    let due = match events.last_full_verification().await {
        Ok(Some(at)) => ledger.now_us() - at >= every.as_micros() as i64,
        Ok(None) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell when the ledger was last verified");
            return;
        }
    };
    if !due {
        return;
    }
    let scope = custos_engine::ledger::verify::VerifyScope::default();
    let who = custos_engine::events::Requester::custos("scheduled verification");
    match events.verify_and_record(scope, &who, None, |_| {}).await {
        Ok(r) if r.is_intact() => tracing::info!(entries = r.entries_checked, "scheduled verification: intact"),
        Ok(r) => tracing::error!(failure = ?r.failure, "scheduled verification FAILED"),
        Err(e) => tracing::error!(error = %e, "scheduled verification could not run"),
    }
}

/// This process's name among replicas (leases): host, process id and a
/// random part, so two processes never share one.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!(
        "{}:{}:{}",
        if host.is_empty() { "custos" } else { &host },
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// An event about Custos itself starting or stopping.
fn lifecycle_event(action: OwnAction, database: &str) -> OwnEvent {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).ok().filter(|h| !h.is_empty());
    let details = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "database": database,
        "host": host,
        "pid": std::process::id(),
    });
    OwnEvent::by_custos(action, "custos", Channel::System).resource("service", host).details(details)
}

/// Resolves on SIGTERM or Ctrl-C.
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
        _ = ctrl_c => {},
        _ = term => {},
    }
}
