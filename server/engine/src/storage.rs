//! Database access: SQLite (embedded default) or PostgreSQL, through sea-orm.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`, so a commit is fsynced
//! before it is acknowledged (docs/ARCHITECTURE.md §3, invariant 1), with foreign keys on
//! and a busy timeout for the occasional concurrent writer.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use custos_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, SqlxPostgresConnector, SqlxSqliteConnector,
    Statement, Value,
};
use secrecy::{ExposeSecret, SecretString};

/// Creates `dir` (and missing parents) readable by the owner only: audit
/// data, keys and archives are nobody else's business.
/// `name` when it is a plain file name with extension `ext` (letters,
/// digits, `-`, `_`, `.`; no path), else a 404: names of archives and
/// backups come from URLs.
pub fn plain_file_name<'a>(name: &'a str, ext: &str) -> Result<&'a str, crate::alerts::store::AlertsError> {
    let ok = name.len() <= 200
        && name.ends_with(ext)
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(name) } else { Err(crate::alerts::store::AlertsError::NotFound(format!("no file named {name}"))) }
}

/// Creates a directory (and its parents) readable by the owner only.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes a folder Custos owns outright (exports, archives) private, also
/// when an older version created it with the default mode. Never used on
/// folders the operator chose (the data directory may be shared).
pub fn make_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    create_private_dir(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Whether an error says the database file itself is damaged (SQLite's
/// SQLITE_CORRUPT and SQLITE_NOTADB: a file cut short, overwritten or
/// edited below SQL). Verification reports that as a failed ledger, not as
/// "could not verify": the stored bytes are not what was written. The
/// messages are SQLite's own and stable.
pub fn is_damaged_database(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text.contains("database disk image is malformed") || text.contains("file is not a database") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether a database error says the database cannot be reached right now
/// rather than that the statement failed: no connection free within the
/// pool's timeout, the connection lost or refused, PostgreSQL shutting
/// down, restarting or not yet accepting (SQLSTATE class 08, 57P01-57P03),
/// SQLite busy. Callers answer those 503 with Retry-After: the
/// same request will work once the database is back.
pub fn is_unreachable(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as X;
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(x)) | DbErr::Query(sea_orm::RuntimeErr::SqlxError(x)) => {
            match &**x {
                X::Io(_) | X::PoolTimedOut | X::PoolClosed | X::WorkerCrashed | X::Tls(_) => true,
                X::Database(d) => d.code().is_some_and(|c| {
                    c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "5" | "261" | "517")
                }),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Creates (or truncates) a file readable and writable by the owner only
/// (an existing file is made so too).
pub fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let file = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Writes a whole file readable and writable by the owner only.
pub fn write_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = create_private_file(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Which database engine is behind a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl DbKind {
    /// Human name.
    pub fn as_str(self) -> &'static str {
        match self {
            DbKind::Sqlite => "sqlite",
            DbKind::Postgres => "postgres",
        }
    }

    /// The kind a database URL names, if any.
    pub fn from_url(url: &str) -> Option<DbKind> {
        if url.starts_with("sqlite:") {
            Some(DbKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(DbKind::Postgres)
        } else {
            None
        }
    }
}

/// Storage failures. Messages never contain the database URL or its password.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no supported database.
    #[error("database URL must start with sqlite: or postgres://")]
    UnsupportedUrl,
    /// The URL could not be parsed.
    #[error("database URL is invalid: {0}")]
    InvalidUrl(String),
    /// The SQLite file's directory could not be created.
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to the {kind} database: {reason}")]
    Connect {
        /// sqlite or postgres.
        kind: &'static str,
        /// Driver message (no credentials).
        reason: String,
    },
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(DbErr),
    /// A query failed.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most connections in the pool.
    pub max_connections: u32,
    /// How long SQLite waits for a lock, PostgreSQL's sequencer for the
    /// ledger head's lock, and the pool for a connection.
    pub busy_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions { max_connections: 8, busy_timeout: Duration::from_secs(5) }
    }
}

/// A connected database.
#[derive(Debug, Clone)]
pub struct Database {
    conn: DatabaseConnection,
    kind: DbKind,
    /// The SQLite file, for the ledger's direct connections.
    sqlite_file: Option<std::path::PathBuf>,
    busy_timeout: Duration,
}

impl Database {
    /// Connects to `url` (creating a SQLite file and its directory if needed).
    pub async fn connect(url: &SecretString, opts: &PoolOptions) -> Result<Database, StorageError> {
        let raw = url.expose_secret();
        match DbKind::from_url(raw) {
            Some(DbKind::Sqlite) => Self::connect_sqlite(raw, opts).await,
            Some(DbKind::Postgres) => Self::connect_postgres(raw, opts).await,
            None => Err(StorageError::UnsupportedUrl),
        }
    }

    async fn connect_sqlite(url: &str, opts: &PoolOptions) -> Result<Database, StorageError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StorageError::InvalidUrl(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(opts.busy_timeout);
        let file = options.get_filename().to_path_buf();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)
                .map_err(|source| StorageError::CreateDir { path: dir.display().to_string(), source })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.busy_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StorageError::Connect { kind: "sqlite", reason: e.to_string() })?;
        Ok(Database {
            conn: SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
            kind: DbKind::Sqlite,
            sqlite_file: Some(file),
            busy_timeout: opts.busy_timeout,
        })
    }

    async fn connect_postgres(url: &str, opts: &PoolOptions) -> Result<Database, StorageError> {
        // sqlx's parse errors do not echo the URL, so they are safe to show.
        let options = PgConnectOptions::from_str(url).map_err(|e| StorageError::InvalidUrl(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.busy_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StorageError::Connect { kind: "postgres", reason: e.to_string() })?;
        Ok(Database {
            conn: SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
            kind: DbKind::Postgres,
            sqlite_file: None,
            busy_timeout: opts.busy_timeout,
        })
    }

    /// Which engine this is.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The SQLite database file, when this is SQLite.
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.sqlite_file.as_deref()
    }

    /// How long to wait for a lock.
    pub fn busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// The sea-orm connection.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Applies every pending migration. On PostgreSQL, replicas starting
    /// together take turns: the first migrates, the others then find nothing
    /// pending.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        if self.kind != DbKind::Postgres {
            return Migrator::up(&self.conn, None).await.map_err(StorageError::Migrate);
        }
        use sea_orm::TransactionTrait as _;
        let guard = self.conn.begin().await?;
        // Held until `guard` ends; the key is "custos-migrate" as an integer.
        guard.execute_unprepared("SELECT pg_advisory_xact_lock(4302917144236181)").await?;
        let result = Migrator::up(&self.conn, None).await.map_err(StorageError::Migrate);
        guard.commit().await?;
        result
    }

    /// Names of migrations not yet applied.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StorageError> {
        let pending = Migrator::get_pending_migrations(&self.conn).await.map_err(StorageError::Migrate)?;
        Ok(pending.iter().map(|m| m.name().to_owned()).collect())
    }

    /// A trivial round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.conn.execute_unprepared("SELECT 1").await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(self) -> Result<(), StorageError> {
        self.conn.close().await?;
        Ok(())
    }

    /// A statement for this backend; `sql` uses `?` placeholders.
    pub fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        stmt_for(self.backend(), sql, values)
    }

    /// The sea-orm backend.
    pub fn backend(&self) -> DbBackend {
        match self.kind {
            DbKind::Sqlite => DbBackend::Sqlite,
            DbKind::Postgres => DbBackend::Postgres,
        }
    }
}

/// Creates a new, empty PostgreSQL database `name` through the server at
/// `admin_url` and returns the URL of the new database (tests, benchmarks).
pub async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String, StorageError> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
        return Err(StorageError::InvalidUrl(format!("invalid database name {name:?}")));
    }
    let admin = Database::connect(&SecretString::from(admin_url.to_owned()), &PoolOptions::default()).await?;
    admin.conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
    admin.close().await?;
    let base = admin_url.split('?').next().unwrap_or(admin_url);
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// Builds a statement for `backend` from SQL written with `?` placeholders
/// (rewritten to `$1, $2, …` for PostgreSQL).
pub fn stmt_for(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, placeholders(backend, sql), values)
}

fn placeholders(backend: DbBackend, sql: &str) -> Cow<'_, str> {
    if backend != DbBackend::Postgres || !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Reads a column that must hold exactly `N` bytes.
pub fn get_array<const N: usize>(row: &QueryResult, col: &str) -> Result<[u8; N], DbErr> {
    array_of(row.try_get("", col)?, col)
}

/// Column `col`'s bytes as a fixed-size array (a hash, an IV, a MAC).
pub fn array_of<const N: usize>(v: Vec<u8>, col: &str) -> Result<[u8; N], DbErr> {
    v.try_into().map_err(|v: Vec<u8>| DbErr::Type(format!("column {col}: expected {N} bytes, found {}", v.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_in_order() {
        assert_eq!(placeholders(DbBackend::Postgres, "a = ? AND b IN (?, ?)"), "a = $1 AND b IN ($2, $3)");
        assert_eq!(placeholders(DbBackend::Sqlite, "a = ?"), "a = ?");
    }

    #[test]
    fn unreachable_databases_are_told_from_failed_statements() {
        use sea_orm::sqlx::Error as X;
        use sea_orm::{ConnAcquireErr, RuntimeErr};
        let sqlx = |e: X| DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(e)));
        assert!(is_unreachable(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)));
        assert!(is_unreachable(&sqlx(X::PoolTimedOut)));
        assert!(is_unreachable(&sqlx(X::Io(std::io::ErrorKind::ConnectionRefused.into()))));
        assert!(!is_unreachable(&sqlx(X::RowNotFound)));
        // Errors the server sent, by their code.
        #[derive(Debug)]
        struct Coded(&'static str);
        impl std::fmt::Display for Coded {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Coded {}
        impl sea_orm::sqlx::error::DatabaseError for Coded {
            fn message(&self) -> &str {
                self.0
            }
            fn code(&self) -> Option<Cow<'_, str>> {
                Some(Cow::Borrowed(self.0))
            }
            fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
                self
            }
            fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
                self
            }
            fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
                self
            }
            fn kind(&self) -> sea_orm::sqlx::error::ErrorKind {
                sea_orm::sqlx::error::ErrorKind::Other
            }
        }
        let coded = |c: &'static str| is_unreachable(&sqlx(X::Database(Box::new(Coded(c)))));
        // PostgreSQL shutting down, crashed, starting; a connection failure; SQLite busy.
        for c in ["57P01", "57P02", "57P03", "08006", "08001", "5", "261", "517"] {
            assert!(coded(c), "{c}");
        }
        // A unique violation, a syntax error, a constraint: the statement failed.
        for c in ["23505", "42601", "23514", "2067"] {
            assert!(!coded(c), "{c}");
        }
        assert!(!is_unreachable(&DbErr::Custom("constraint failed".into())));
        assert!(!is_unreachable(&DbErr::RecordNotFound("x".into())));
    }
}
