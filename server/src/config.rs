//! Configuration: typed and layered. Built-in defaults, then an optional TOML
//! file (`--config FILE` or `CUSTOS_CONFIG`), then `CUSTOS_*` environment
//! variables (`CUSTOS_SERVER__BIND`, `CUSTOS_LEDGER__KEK_FILE`, …: `__`
//! separates sections). Unknown keys are rejected; a bad value stops start-up
//! with a message naming the setting, where it came from, and why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Environment variables with the `CUSTOS_` prefix that are not settings.
const NOT_SETTINGS: &[&str] =
    &["config", "kek", "admin_username", "admin_password", "test_postgres_url", "require_postgres", "test_server_bin"];

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where Custos keeps its SQLite database, key file and archives.
    pub data_dir: PathBuf,
    /// HTTP server.
    pub server: ServerConfig,
    /// Database.
    pub database: DatabaseConfig,
    /// Logging.
    pub log: LogConfig,
    /// The ledger.
    pub ledger: LedgerSettings,
    /// Sign-in, sessions, brute-force protection.
    pub auth: AuthSettings,
    /// Limits on what `POST /api/audit/events` accepts.
    pub ingest: IngestSettings,
    /// How each policy kind's proposals are reviewed (`[policies.masking]`).
    pub policies: std::collections::BTreeMap<String, PolicyReview>,
    /// How alert notifications are delivered.
    pub notifications: NotificationSettings,
    /// SIEM forwarding (the destinations themselves are the `forwarding`
    /// policy, set in the browser).
    pub forwarding: ForwardingSettings,
    /// Retention runs and archives (the rules and legal holds are the
    /// `retention` and `legal_holds` policies, set in the browser).
    pub retention: RetentionSettings,
    /// Backups of the embedded SQLite database.
    pub backup: BackupSettings,
    /// An S3-compatible object store for archives and backups.
    pub object_store: ObjectStoreSettings,
    /// Compliance evidence reports.
    pub reports: ReportSettings,
    /// Several replicas on one PostgreSQL.
    pub cluster: ClusterSettings,
}

/// Several replicas on one PostgreSQL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Seconds the continuous background leases (alert evaluator, notifier,
    /// each SIEM destination) stay with a replica that stopped renewing
    /// them: how long another takes to continue its work (10-300).
    pub lease_ttl_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings { lease_ttl_secs: 15 }
    }
}

/// Compliance evidence reports (the daily snapshots are always taken).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSettings {
    /// The organisation named on each report's cover.
    pub organisation: Option<String>,
    /// Reports kept (1-100000); older ones are deleted, their records stay
    /// in the ledger.
    pub keep: u32,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings { organisation: None, keep: 500 }
    }
}

/// An S3-compatible object store (AWS S3, MinIO, Ceph, …) archives,
/// backups and background exports are uploaded to. Off while `url` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreSettings {
    /// `s3://bucket` or `s3://bucket/prefix`; empty: local directories only.
    pub url: String,
    /// The store's address when it is not AWS, e.g. `https://minio.example:9000`.
    pub endpoint: Option<String>,
    /// The bucket's region.
    pub region: String,
    /// The access key; without one, the AWS environment (`AWS_ACCESS_KEY_ID`,
    /// an instance role, …) is used.
    pub access_key_id: Option<String>,
    /// Its secret (best from `CUSTOS_OBJECT_STORE__SECRET_ACCESS_KEY`).
    #[serde(skip_serializing)]
    pub secret_access_key: Option<SecretString>,
    /// Lets `endpoint` be plain `http://` (a store on the same host).
    pub allow_http: bool,
    /// Object Lock on every upload: `off`, `governance` or `compliance`
    /// (the bucket must have Object Lock enabled).
    pub object_lock: String,
    /// For how many days from its upload an object stays locked.
    pub object_lock_days: u32,
    /// Upload archive bundles (before anything they hold is removed).
    pub archives: bool,
    /// Upload backups (a backup fails when its upload does).
    pub backups: bool,
    /// Upload finished background exports (kept 24 hours, never locked),
    /// so that every replica serves their download. Off by default: an
    /// export holds decrypted events, and the bucket's readers would read
    /// them (turn it on for several replicas, on a bucket or prefix only
    /// Custos reads).
    pub exports: bool,
    /// Keep the local file after a confirmed upload.
    pub keep_local: bool,
}

impl Default for ObjectStoreSettings {
    fn default() -> Self {
        ObjectStoreSettings {
            url: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            object_lock: "off".into(),
            object_lock_days: 0,
            archives: true,
            backups: true,
            exports: false,
            keep_local: false,
        }
    }
}

impl ObjectStoreSettings {
    /// The store, if configured (checked by [`Config::validate`]).
    pub fn remote(&self) -> Result<Option<std::sync::Arc<custos_engine::objstore::Remote>>, String> {
        use custos_engine::objstore::{LockMode, Remote, Settings};
        if self.url.is_empty() {
            return Ok(None);
        }
        let mode = LockMode::parse(&self.object_lock).map_err(|e| format!("object_store.object_lock {e}"))?;
        let remote = Remote::new(Settings {
            url: self.url.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.as_ref().map(|s| s.expose_secret().to_owned()),
            allow_http: self.allow_http,
            lock: mode.map(|m| (m, self.object_lock_days)),
            keep_local: self.keep_local,
        })?;
        Ok(Some(std::sync::Arc::new(remote)))
    }
}

/// How the SQLite database is backed up (PostgreSQL: its own tools).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSettings {
    /// A backup every this many hours; 0: on demand only.
    pub interval_hours: u64,
    /// Backups kept; older ones are deleted after a new one succeeds.
    pub keep: u32,
    /// Where backups are written (default: `<data_dir>/backups`). Put it on
    /// another disk: a backup on the disk it protects does not survive it.
    pub dir: Option<PathBuf>,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings { interval_hours: 24, keep: 7, dir: None }
    }
}

/// How retention runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// No retention rule may keep events fewer days than this unless an
    /// admin overrides it (recorded with a reason). PCI DSS asks for 12
    /// months.
    pub min_days: u32,
    /// The daily run's time, `HH:MM` UTC, or `off` (runs on demand only).
    pub run_at: String,
    /// Where archive bundles are written (default: `<data_dir>/archives`).
    pub archive_dir: Option<PathBuf>,
    /// Cold copies: `daily` or `monthly`, every entry sealed since the last
    /// copy is archived (and uploaded, with an object store) long before it
    /// expires; `off` (default).
    pub cold_copies: String,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings { min_days: 365, run_at: "03:00".into(), archive_dir: None, cold_copies: "off".into() }
    }
}

impl RetentionSettings {
    /// The daily run's minute after midnight UTC, `None` when off.
    pub fn run_at_minute(&self) -> Result<Option<u32>, &'static str> {
        if self.run_at.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = "a time HH:MM (UTC), e.g. 03:00, or off";
        let (h, m) = self.run_at.split_once(':').ok_or(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad)?, m.parse().map_err(|_| bad)?);
        if h > 23 || m > 59 || self.run_at.len() != 5 {
            return Err(bad);
        }
        Ok(Some(h * 60 + m))
    }
}

/// How events are forwarded to SIEMs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingSettings {
    /// A failing destination is tried again after this many seconds, then
    /// twice as long each time, at most 5 minutes apart.
    pub retry_base_secs: u64,
    /// Lets destinations be private, loopback or link-local addresses. On
    /// by default: SIEMs usually live inside the network, and destinations
    /// are set by `siem:manage` holders through policy review. Turn it off
    /// where every SIEM is reached over the internet.
    pub allow_private_destinations: bool,
}

impl Default for ForwardingSettings {
    fn default() -> Self {
        ForwardingSettings { retry_base_secs: 1, allow_private_destinations: true }
    }
}

impl ForwardingSettings {
    /// As the engine takes them.
    pub fn engine(&self) -> custos_engine::forward::Settings {
        custos_engine::forward::Settings {
            retry_base_us: self.retry_base_secs.max(1) as i64 * 1_000_000,
            allow_private: self.allow_private_destinations,
        }
    }
}

/// How alert notifications are delivered (the channels themselves are the
/// `notifications` policy, set in the browser).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// This server's address as people reach it (`https://custos.example.org`),
    /// for the links in messages; without it links are paths.
    pub public_url: Option<String>,
    /// The first retry of a failed delivery after this many seconds; each
    /// next one waits twice as long, at most 6 hours.
    pub retry_base_secs: u64,
    /// A message still failing this many hours after it was queued is
    /// given up (dead-lettered, with the reason).
    pub give_up_hours: u64,
    /// Lets channels reach private, loopback and link-local addresses (a
    /// relay on this host, an internal SOAR). Off by default: otherwise a
    /// channel is a way into the internal network.
    pub allow_private_destinations: bool,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            public_url: None,
            retry_base_secs: 10,
            give_up_hours: 24,
            allow_private_destinations: false,
        }
    }
}

impl NotificationSettings {
    /// As the engine takes them.
    pub fn engine(&self) -> custos_engine::notify::Settings {
        custos_engine::notify::Settings {
            retry_base_us: self.retry_base_secs as i64 * 1_000_000,
            give_up_us: self.give_up_hours as i64 * 3_600_000_000,
            public_url: self.public_url.clone(),
            allow_private: self.allow_private_destinations,
        }
    }
}

/// A policy kind's review rule; a setting left out keeps the kind's default.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyReview {
    /// Approvals needed from people other than the author (masking: 1;
    /// 0: a proposal takes effect at once, recorded with a warning).
    pub approvals: Option<u32>,
    /// Days a proposal waits for its approvals (default 7).
    pub proposal_ttl_days: Option<u32>,
}

impl Config {
    /// The configured review rules, by kind (each setting left out keeps
    /// the kind's default).
    pub fn review_rules(&self) -> std::collections::BTreeMap<String, custos_engine::policies::review::ReviewRule> {
        let kinds = custos_engine::policies::kinds::all();
        self.policies
            .iter()
            .filter_map(|(name, r)| {
                let default = kinds.iter().find(|k| k.name() == name)?.default_rule();
                let rule = custos_engine::policies::review::ReviewRule {
                    approvals: r.approvals.unwrap_or(default.approvals),
                    ttl_us: r.proposal_ttl_days.map_or(default.ttl_us, |d| i64::from(d) * custos_engine::time::DAY_US),
                };
                Some((name.clone(), rule))
            })
            .collect()
    }
}

/// Limits on ingest requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most events per request.
    pub max_batch: usize,
    /// Largest `details` of one event, serialised, in bytes.
    pub max_details_bytes: usize,
    /// Deepest nesting of `details`.
    pub max_details_depth: usize,
    /// How far `occurred_at` may be ahead of the server's clock, seconds.
    pub max_future_secs: i64,
    /// How old `occurred_at` may be, days.
    pub max_past_days: i64,
    /// With SQLite: events are refused (503) while the disk holding the
    /// database has less than this many MiB free, leaving the rest for the
    /// records of reads and changes. 0 turns the check off.
    pub min_free_disk_mb: u64,
    /// Accepted ingest requests are counted per caller and recorded as one
    /// `audit.ingest.summary` every this many seconds (and at shutdown).
    pub summary_secs: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_body_bytes: 8 * 1024 * 1024,
            max_batch: 1000,
            max_details_bytes: 16 * 1024,
            max_details_depth: 8,
            max_future_secs: 300,
            max_past_days: 3650,
            min_free_disk_mb: 256,
            summary_secs: 60,
        }
    }
}

/// Sign-in, sessions and brute-force protection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: i64,
    /// A session ends this many hours after sign-in, active or not.
    pub session_absolute_hours: i64,
    /// Consecutive failed sign-ins that lock an account.
    pub lockout_threshold: i64,
    /// How long a lockout lasts, in minutes.
    pub lockout_minutes: i64,
    /// Failed sign-ins per client address per window before it is refused.
    pub failures_per_address: usize,
    /// Failed sign-ins per user name per window before it is locked.
    pub failures_per_username: usize,
    /// The throttling window, in minutes.
    pub throttle_window_minutes: i64,
    /// Refused anonymous API calls and refused API keys per client address
    /// and minute (each kind) before they are answered 429 and no longer
    /// recorded. Below it, the first per endpoint and minute is recorded and
    /// the rest counted in one summary event per minute (throttled sign-ins
    /// and public reads are summarised the same way, never answered 429).
    pub anonymous_per_minute: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            lockout_threshold: 5,
            lockout_minutes: 15,
            failures_per_address: 50,
            failures_per_username: 10,
            throttle_window_minutes: 5,
            anonymous_per_minute: 120,
        }
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Directory with the built site (WASM, JS, CSS, assets).
    pub site_root: PathBuf,
    /// Seconds to wait for in-flight requests at shutdown.
    pub shutdown_timeout_secs: u64,
    /// Seconds an API read (`GET`/`HEAD` under `/api/`) may take before
    /// its answer starts: beyond, 503 (the database hung or slow), so that
    /// reads never hang on it. Streamed bodies (live tails, exports,
    /// downloads) count only until they start.
    pub read_timeout_secs: u64,
    /// PEM certificate chain: with `tls_key_file`, serve HTTPS directly.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    pub tls_key_file: Option<PathBuf>,
    /// Custos is served over HTTPS by a TLS-terminating proxy: cookies are
    /// marked `Secure` and responses carry HSTS, as when it serves TLS itself.
    pub behind_tls_proxy: bool,
    /// Proxies whose `X-Forwarded-For` is believed: addresses or CIDR
    /// ranges (`10.0.0.0/8`, `::1`), as a list or comma-separated. The
    /// client address (for throttling and the record) is then the nearest
    /// address in that header that is not one of them. Empty: the peer.
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<String>,
    /// A signed-in user's repeated reads of the endpoints pages poll are
    /// counted and recorded as one `audit.presence` per user, address,
    /// browser and this many seconds (and at shutdown); the first read of
    /// each is recorded on its own.
    pub presence_secs: u64,
}

/// A list given as a TOML array or as one comma-separated string (the
/// environment's form).
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Form::deserialize(d)? {
        Form::List(v) => v,
        Form::Text(t) => t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    })
}

/// Database settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…`; default: SQLite under `data_dir`.
    #[serde(skip_serializing)]
    pub url: Option<SecretString>,
    /// Most pooled connections.
    pub max_connections: u32,
    /// Lock and pool wait, in milliseconds.
    pub busy_timeout_ms: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// human or json.
    pub format: LogFormat,
    /// tracing filter, e.g. `info` or `info,custos_engine=debug`.
    pub filter: String,
}

/// Ledger settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// Log identity written into checkpoints (used when the ledger is created).
    pub origin: String,
    /// KEK file (base64, mode 0600); default `<data_dir>/kek.key`. The
    /// `CUSTOS_KEK` environment variable (base64) takes precedence.
    pub kek_file: Option<PathBuf>,
    /// Seconds between checkpoints while events arrive.
    pub checkpoint_interval_secs: u64,
    /// Least milliseconds between two checkpoints: one asked for sooner (a
    /// proof of an entry not yet covered, an export) waits, and then covers
    /// what was committed meanwhile (0: no spacing).
    pub checkpoint_spacing_ms: u64,
    /// Seconds between scheduled verifications of the whole ledger (0: none).
    /// Checked every 10 minutes (or this often, if shorter): a verification
    /// runs when the last one of the whole ledger is older than this.
    pub verify_interval_secs: u64,
    /// Most events per commit.
    pub max_batch: usize,
    /// Most append requests waiting for the sequencer.
    pub queue_depth: usize,
    /// Seconds a write waits for its commit before it is answered 503
    /// (the database down, hung or slow): requests never hang on it.
    pub commit_timeout_secs: u64,
    /// On PostgreSQL, seconds this replica's clock may run ahead of the
    /// database server's before it refuses to commit (0: no limit): commit
    /// times never go backwards, so a replica ahead would hold every
    /// replica's back.
    pub max_clock_ahead_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            log: LogConfig::default(),
            ledger: LedgerSettings::default(),
            auth: AuthSettings::default(),
            ingest: IngestSettings::default(),
            policies: Default::default(),
            notifications: NotificationSettings::default(),
            forwarding: ForwardingSettings::default(),
            retention: RetentionSettings::default(),
            backup: BackupSettings::default(),
            object_store: ObjectStoreSettings::default(),
            reports: ReportSettings::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            site_root: PathBuf::from("target/site"),
            shutdown_timeout_secs: 30,
            read_timeout_secs: 30,
            tls_cert_file: None,
            tls_key_file: None,
            behind_tls_proxy: false,
            trusted_proxies: Vec::new(),
            presence_secs: 60,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, max_connections: 8, busy_timeout_ms: 5000 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Human, filter: "info".into() }
    }
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            origin: "custos.local/ledger".into(),
            kek_file: None,
            checkpoint_interval_secs: 5,
            checkpoint_spacing_ms: 1000,
            verify_interval_secs: 86_400,
            max_batch: 1000,
            queue_depth: 4096,
            commit_timeout_secs: 10,
            max_clock_ahead_secs: 60,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The named file does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    /// A value could not be read (figment names the key and its source).
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value was read but is not acceptable.
    #[error("invalid configuration: setting `{setting}`: {reason}")]
    Invalid {
        /// Dotted setting name.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}

impl Config {
    /// Loads defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(Self::figment(file)?)
    }

    /// The layered sources, without extracting.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        Ok(fig.merge(Env::prefixed("CUSTOS_").split("__").ignore(NOT_SETTINGS)))
    }

    /// Extracts and validates a configuration.
    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let config: Config = fig
            .extract()
            .map_err(|e| ConfigError::Parse(e.into_iter().map(|e| describe(&e)).collect::<Vec<_>>().join("; ")))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| Err(ConfigError::Invalid { setting, reason: reason.to_owned() });
        if let Some(o) = &self.reports.organisation
            && (o.trim().is_empty() || o.chars().count() > 200 || o.chars().any(char::is_control))
        {
            return invalid("reports.organisation", "must be 1 to 200 characters on one line");
        }
        if !(1..=100_000).contains(&self.reports.keep) {
            return invalid("reports.keep", "must be 1 to 100000");
        }
        if let Some(url) = &self.database.url
            && custos_engine::storage::DbKind::from_url(url.expose_secret()).is_none()
        {
            return invalid("database.url", "must start with sqlite: or postgres://");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if let Err(e) = crate::auth::client::TrustedProxies::parse(&self.server.trusted_proxies) {
            return invalid("server.trusted_proxies", &e);
        }
        if self.ledger.checkpoint_interval_secs == 0 {
            return invalid("ledger.checkpoint_interval_secs", "must be at least 1 second");
        }
        if !(1..=10_000).contains(&self.ledger.max_batch) {
            return invalid("ledger.max_batch", "must be between 1 and 10000");
        }
        if self.ledger.queue_depth == 0 {
            return invalid("ledger.queue_depth", "must be at least 1");
        }
        if !(10..=300).contains(&self.cluster.lease_ttl_secs) {
            // Holders renew every 3 s and a pass runs up to 5 s.
            return invalid("cluster.lease_ttl_secs", "must be between 10 and 300 seconds");
        }
        if !(1..=600).contains(&self.server.read_timeout_secs) {
            return invalid("server.read_timeout_secs", "must be between 1 and 600 seconds");
        }
        if self.ledger.checkpoint_spacing_ms > 10_000 {
            return invalid("ledger.checkpoint_spacing_ms", "must be at most 10000 (10 seconds; 0: no spacing)");
        }
        // A proof of a fresh event may wait two spacings (the one under way,
        // then its own): with a second to spare within a read's deadline.
        let (spacing, read_ms) =
            (self.ledger.checkpoint_spacing_ms, self.server.read_timeout_secs.saturating_mul(1000));
        if spacing > 0 && spacing.saturating_mul(2).saturating_add(1000) > read_ms {
            return invalid(
                "ledger.checkpoint_spacing_ms",
                &format!(
                    "{spacing} ms is too long for server.read_timeout_secs = {}: a proof of a fresh event may wait two \
                     spacings, which must leave a second of a read's deadline; lower it (0: no spacing) or raise \
                     server.read_timeout_secs",
                    self.server.read_timeout_secs
                ),
            );
        }
        if !(1..=86_400).contains(&self.ingest.summary_secs) {
            return invalid("ingest.summary_secs", "must be between 1 and 86400 seconds (a day)");
        }
        if !(1..=3_600).contains(&self.server.presence_secs) {
            return invalid("server.presence_secs", "must be between 1 and 3600 seconds (an hour)");
        }
        if !(1..=600).contains(&self.ledger.commit_timeout_secs) {
            return invalid("ledger.commit_timeout_secs", "must be between 1 and 600 seconds");
        }
        if self.ledger.max_clock_ahead_secs > 86_400 {
            return invalid("ledger.max_clock_ahead_secs", "must be at most 86400 seconds (0: no limit)");
        }
        if self.ledger.origin.is_empty() || self.ledger.origin.chars().any(|c| c.is_whitespace() || c == '+') {
            return invalid(
                "ledger.origin",
                "must be non-empty, without spaces or '+' (e.g. custos.example.com/ledger)",
            );
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            return invalid(
                "server.tls_cert_file",
                "set both server.tls_cert_file and server.tls_key_file, or neither",
            );
        }
        let a = &self.auth;
        if a.session_idle_minutes < 1 {
            return invalid("auth.session_idle_minutes", "must be at least 1");
        }
        if a.session_absolute_hours < 1 || a.session_absolute_hours * 60 < a.session_idle_minutes {
            return invalid(
                "auth.session_absolute_hours",
                "must be at least 1 hour and not shorter than the idle timeout",
            );
        }
        let kinds: Vec<&str> = custos_engine::policies::kinds::all().iter().map(|k| k.name()).collect();
        for (kind, r) in &self.policies {
            if !kinds.contains(&kind.as_str()) {
                return invalid("policies", &format!("no policy kind `{kind}` (kinds: {})", kinds.join(", ")));
            }
            if r.approvals.is_some_and(|a| a > 5) {
                return invalid("policies.<kind>.approvals", &format!("policies.{kind}.approvals must be at most 5"));
            }
            if r.proposal_ttl_days.is_some_and(|d| !(1..=90).contains(&d)) {
                return invalid(
                    "policies.<kind>.proposal_ttl_days",
                    &format!("policies.{kind}.proposal_ttl_days must be between 1 and 90"),
                );
            }
        }
        let n = &self.notifications;
        if n.public_url.as_deref().is_some_and(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
            return invalid("notifications.public_url", "an http:// or https:// URL, e.g. https://custos.example.org");
        }
        if !(1..=3600).contains(&n.retry_base_secs) {
            return invalid("notifications.retry_base_secs", "must be between 1 and 3600");
        }
        if !(1..=168).contains(&n.give_up_hours) {
            return invalid("notifications.give_up_hours", "must be between 1 and 168 (a week)");
        }
        if !(1..=300).contains(&self.forwarding.retry_base_secs) {
            return invalid("forwarding.retry_base_secs", "must be between 1 and 300");
        }
        if !(1..=36_500).contains(&self.retention.min_days) {
            return invalid("retention.min_days", "must be between 1 and 36500 (100 years)");
        }
        if let Err(why) = self.retention.run_at_minute() {
            return invalid("retention.run_at", why);
        }
        if let Err(why) = custos_engine::retention::ColdCopies::parse(&self.retention.cold_copies) {
            return invalid("retention.cold_copies", why);
        }
        if self.backup.interval_hours > 24 * 365 {
            return invalid("backup.interval_hours", "must be between 0 (off) and 8760 (a year)");
        }
        if !(1..=1000).contains(&self.backup.keep) {
            return invalid("backup.keep", "must be between 1 and 1000");
        }
        let o = &self.object_store;
        if !o.url.is_empty() {
            if let Err(why) = custos_engine::objstore::parse_url(&o.url) {
                return invalid("object_store.url", why);
            }
            if let Some(e) = &o.endpoint {
                let http = e.starts_with("http://");
                if !(http || e.starts_with("https://")) || e.len() < 10 {
                    return invalid(
                        "object_store.endpoint",
                        "an http:// or https:// URL, e.g. https://minio.example:9000",
                    );
                }
                if http && !o.allow_http {
                    return invalid(
                        "object_store.endpoint",
                        "is plain http://; set object_store.allow_http = true to allow it",
                    );
                }
            }
            if o.access_key_id.is_some() != o.secret_access_key.is_some() {
                return invalid("object_store.secret_access_key", "access_key_id and secret_access_key go together");
            }
            match custos_engine::objstore::LockMode::parse(&o.object_lock) {
                Err(why) => return invalid("object_store.object_lock", why),
                Ok(Some(_)) if !(1..=36_500).contains(&o.object_lock_days) => {
                    return invalid("object_store.object_lock_days", "must be between 1 and 36500 with Object Lock on");
                }
                Ok(_) => {}
            }
            if !o.archives && !o.backups && !o.exports {
                return invalid("object_store.url", "is set but neither archives, backups nor exports are uploaded");
            }
        }
        let i = &self.ingest;
        if !(1..=10_000).contains(&i.max_batch) {
            return invalid("ingest.max_batch", "must be between 1 and 10000");
        }
        if i.max_body_bytes < 1024 {
            return invalid("ingest.max_body_bytes", "must be at least 1024");
        }
        if i.max_details_depth < 1 || i.max_details_bytes < 64 {
            return invalid("ingest.max_details_bytes", "details limits are too small (depth >= 1, bytes >= 64)");
        }
        if i.max_future_secs < 0 || i.max_past_days < 1 {
            return invalid("ingest.max_past_days", "time window must be non-negative (past >= 1 day)");
        }
        if a.lockout_threshold < 1 || a.lockout_minutes < 1 || a.throttle_window_minutes < 1 {
            return invalid(
                "auth.lockout_threshold",
                "lockout threshold, lockout and throttle minutes must be at least 1",
            );
        }
        if a.failures_per_address < 1 || a.failures_per_username < 1 {
            return invalid("auth.failures_per_address", "failure limits must be at least 1");
        }
        if self.log.filter.parse::<tracing_subscriber::EnvFilter>().is_err() {
            return invalid("log.filter", "is not a valid tracing filter (e.g. `info` or `info,custos_engine=debug`)");
        }
        Ok(())
    }

    /// The database URL: the configured one, or SQLite under `data_dir`.
    pub fn database_url(&self) -> SecretString {
        match &self.database.url {
            Some(u) => u.clone(),
            None => SecretString::from(format!("sqlite://{}?mode=rwc", self.data_dir.join("custos.db").display())),
        }
    }

    /// Whether HTTPS is served directly.
    pub fn tls(&self) -> bool {
        self.server.tls_cert_file.is_some()
    }

    /// Whether clients reach Custos over HTTPS (served here or by a proxy):
    /// cookies `Secure`, HSTS.
    pub fn https(&self) -> bool {
        self.tls() || self.server.behind_tls_proxy
    }

    /// The KEK file path.
    pub fn kek_file(&self) -> PathBuf {
        self.ledger.kek_file.clone().unwrap_or_else(|| self.data_dir.join("kek.key"))
    }

    /// Settings for tests: a data directory, SQLite, port 0.
    pub fn for_test(data_dir: &Path) -> Config {
        let mut c = Config { data_dir: data_dir.to_owned(), ..Config::default() };
        c.server.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        c.ledger.origin = "custos.test/ledger".into();
        // Tests record the ingest and presence summaries when they ask (and at
        // shutdown), not on a timer that could fire mid-test.
        c.ingest.summary_secs = 24 * 3600;
        c.server.presence_secs = 3600;
        // Tests sign checkpoints back to back (the spacing's test is the
        // engine's).
        c.ledger.checkpoint_spacing_ms = 0;
        c
    }
}

/// One configuration problem as a sentence: the setting, where its value
/// came from (the file, or the exact environment variable), and why.
fn describe(e: &figment::Error) -> String {
    let path: Vec<String> = e.path.iter().map(|p| p.to_lowercase()).collect();
    let setting = path.join(".");
    let source = match &e.metadata {
        Some(m) if m.name.contains("environment") => {
            format!(
                "environment variable CUSTOS_{}",
                path.iter().map(|p| p.to_uppercase()).collect::<Vec<_>>().join("__")
            )
        }
        Some(m) => match &m.source {
            Some(figment::Source::File(f)) => format!("file {}", f.display()),
            _ => m.name.to_string(),
        },
        None => "built-in defaults".to_owned(),
    };
    if setting.is_empty() {
        format!("{} (in {source})", e.kind)
    } else {
        format!("setting `{setting}` (from {source}): {}", e.kind)
    }
}

impl IngestSettings {
    /// As validation limits.
    pub fn limits(&self) -> custos_engine::events::validate::Limits {
        custos_engine::events::validate::Limits {
            max_batch: self.max_batch,
            max_details_bytes: self.max_details_bytes,
            max_details_depth: self.max_details_depth,
            max_future_secs: self.max_future_secs,
            max_past_days: self.max_past_days,
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_then_file_then_environment() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "custos.toml",
                "data_dir = \"/srv/custos\"\n[server]\nbind = \"0.0.0.0:8080\"\n[ledger]\nmax_batch = 500\n",
            )?;
            jail.set_env("CUSTOS_SERVER__BIND", "127.0.0.1:9090");
            jail.set_env("CUSTOS_KEK", "ignored: not a setting");
            jail.set_env("CUSTOS_ADMIN_PASSWORD", "ignored: read by start-up, not a setting");
            let c = Config::load(Some(Path::new("custos.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.data_dir, PathBuf::from("/srv/custos"), "file over default");
            assert_eq!(c.server.bind, "127.0.0.1:9090".parse().unwrap(), "environment over file");
            assert_eq!(c.ledger.max_batch, 500);
            assert_eq!(c.ledger.checkpoint_interval_secs, 5, "default kept");
            assert_eq!(c.kek_file(), PathBuf::from("/srv/custos/kek.key"));
            assert!(c.database_url().expose_secret().starts_with("sqlite:///srv/custos/custos.db"));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name_and_source() {
        Jail::expect_with(|jail| {
            jail.create_file("custos.toml", "[server]\nbnid = \"0.0.0.0:8080\"\n")?;
            let err = Config::load(Some(Path::new("custos.toml"))).unwrap_err().to_string();
            assert!(err.contains("bnid") && err.contains("custos.toml"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CUSTOS_LEDGR__ORIGIN", "x");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("ledgr"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_setting_and_the_reason() {
        Jail::expect_with(|jail| {
            jail.set_env("CUSTOS_SERVER__BIND", "not-an-address");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("server.bind") && err.contains("CUSTOS_SERVER__BIND"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CUSTOS_LEDGER__CHECKPOINT_INTERVAL_SECS", "0");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("ledger.checkpoint_interval_secs") && err.contains("at least 1"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CUSTOS_DATABASE__URL", "mysql://x");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("database.url") && !err.contains("mysql://x"), "the URL may hold a password: {err}");
            Ok(())
        });
        for (var, value, setting, why) in [
            ("CUSTOS_CLUSTER__LEASE_TTL_SECS", "5", "cluster.lease_ttl_secs", "between 10 and 300"),
            ("CUSTOS_LEDGER__COMMIT_TIMEOUT_SECS", "0", "ledger.commit_timeout_secs", "between 1 and 600"),
            ("CUSTOS_LEDGER__CHECKPOINT_SPACING_MS", "10001", "ledger.checkpoint_spacing_ms", "at most 10000"),
            ("CUSTOS_SERVER__READ_TIMEOUT_SECS", "2", "ledger.checkpoint_spacing_ms", "server.read_timeout_secs = 2"),
            ("CUSTOS_SERVER__READ_TIMEOUT_SECS", "0", "server.read_timeout_secs", "between 1 and 600"),
            ("CUSTOS_LEDGER__MAX_CLOCK_AHEAD_SECS", "86401", "ledger.max_clock_ahead_secs", "at most 86400"),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(var, value);
                let err = Config::load(None).unwrap_err().to_string();
                assert!(err.contains(setting) && err.contains(why), "{err}");
                Ok(())
            });
        }
        let err = Config::load(Some(Path::new("/nonexistent/custos.toml"))).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/custos.toml") && err.contains("does not exist"), "{err}");
    }

    #[test]
    fn the_object_store_is_checked_and_its_secret_never_printed() {
        let bad = |pairs: &[(&str, &str)], field: &str, why: &str| {
            Jail::expect_with(|jail| {
                for (k, v) in pairs {
                    jail.set_env(k, v);
                }
                let err = Config::load(None).unwrap_err().to_string();
                assert!(err.contains(field) && err.contains(why), "{err}");
                assert!(!err.contains("s3cr3t"), "{err}");
                Ok(())
            });
        };
        let url = ("CUSTOS_OBJECT_STORE__URL", "s3://audit-archive/custos");
        bad(&[("CUSTOS_OBJECT_STORE__URL", "https://audit-archive")], "object_store.url", "s3://");
        bad(&[url, ("CUSTOS_OBJECT_STORE__ENDPOINT", "http://127.0.0.1:9000")], "object_store.endpoint", "allow_http");
        bad(&[url, ("CUSTOS_OBJECT_STORE__SECRET_ACCESS_KEY", "s3cr3t")], "object_store.secret_access_key", "together");
        bad(&[url, ("CUSTOS_OBJECT_STORE__OBJECT_LOCK", "compliance")], "object_store.object_lock_days", "36500");
        bad(&[url, ("CUSTOS_OBJECT_STORE__OBJECT_LOCK", "forever")], "object_store.object_lock", "governance");
        bad(&[("CUSTOS_RETENTION__COLD_COPIES", "weekly")], "retention.cold_copies", "daily or monthly");
        Jail::expect_with(|jail| {
            jail.set_env(url.0, url.1);
            jail.set_env("CUSTOS_OBJECT_STORE__ENDPOINT", "http://127.0.0.1:9000");
            jail.set_env("CUSTOS_OBJECT_STORE__ALLOW_HTTP", "true");
            jail.set_env("CUSTOS_OBJECT_STORE__ACCESS_KEY_ID", "custos");
            jail.set_env("CUSTOS_OBJECT_STORE__SECRET_ACCESS_KEY", "s3cr3t");
            jail.set_env("CUSTOS_OBJECT_STORE__OBJECT_LOCK", "governance");
            jail.set_env("CUSTOS_OBJECT_STORE__OBJECT_LOCK_DAYS", "2555");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert!(!format!("{c:?}").contains("s3cr3t"), "the secret is not in the Debug form");
            let remote = c.object_store.remote().map_err(|e| e.to_string())?.expect("configured");
            assert_eq!(remote.describe(), "s3://audit-archive/custos (Object Lock: governance, 2555 days)");
            Ok(())
        });
    }
}
