//! Backups of the embedded SQLite database, encrypted and authenticated
//! under a key derived from the KEK, taken without stopping ingest; their
//! schedule, catalogue and pruning; and the reading side of a restore.
//!
//! **Taking one.** A checkpoint is signed first (so the backup holds a
//! signed tree head covering its entries), then `VACUUM INTO` writes a
//! consistent copy of the database from one read transaction (SQLite in WAL
//! mode: writers go on meanwhile) to a private temporary file, which is
//! encrypted into the backup file and removed.
//!
//! **The file** (`custos-backup/v1`):
//! ```text
//! "CUSTOS-BACKUP-01" | u32 BE header length | header (JSON) | chunk…
//! chunk = u8 last (0 or 1) | u32 BE ciphertext length | [16] IV | ciphertext | [32] MAC
//! ```
//! Each chunk is up to 1 MiB of the database, AES-256-CBC encrypted, and its
//! MAC (HMAC-SHA256) covers its index, whether it is the last, the SHA-256
//! of the header, the IV and the ciphertext (encrypt-then-MAC): a changed,
//! reordered, dropped or truncated chunk, or a changed header, is refused.
//! The keys come from the KEK and a random salt in the header
//! (`Kek::backup_key`): without the KEK a backup is unreadable, so keep the
//! KEK apart from the backups.
//!
//! PostgreSQL is backed up by its own tools (`pg_basebackup`, point-in-time
//! recovery; see the README) and checked after a restore with `custos
//! verify`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use custos_model::{BackupInfo, BackupStatus, Severity};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::alerts::store::AlertsError;
use crate::events::Events;
use crate::events::model::Outcome;
use crate::events::own::{OwnAction, OwnEvent, Requester};
use crate::lease::Lease;
use crate::ledger::crypto::{BackupKey, Kek};
use crate::objstore::{Kind, LocalCopy, Remote, Source};
use crate::retention::db_err;
use crate::storage::stmt_for;
use crate::time::{HOUR_US, rfc3339};

/// The header's format name.
pub const FORMAT: &str = "custos-backup/v1";
const MAGIC: &[u8; 16] = b"CUSTOS-BACKUP-01";
const CHUNK: usize = 1 << 20;
/// The lease of the scheduled backups.
pub const LEASE: &str = "backup";
const LEASE_TTL_US: i64 = 120_000_000;
const MAX_HEADER: u32 = 1 << 20;

/// The clear header of a backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// [`FORMAT`].
    pub format: String,
    /// The ledger's origin.
    pub origin: String,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// The ledger's head when the copy began (the copy may hold a few more).
    pub head_seq: u64,
    /// The signed checkpoint taken just before (its note).
    pub checkpoint: Option<String>,
    /// Its tree size.
    pub checkpoint_size: u64,
    /// The key derivation's salt (hex).
    pub salt: String,
    /// How the copy was made.
    pub source: String,
}

/// Why a backup file could not be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a Custos backup, or damaged.
    #[error("not a readable Custos backup: {0}")]
    Format(String),
    /// A chunk's MAC did not match: changed, reordered, truncated, or
    /// another KEK.
    #[error(
        "chunk {0} does not authenticate: the file was changed or truncated, or this is not the KEK it was taken under"
    )]
    Auth(u64),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

/// Encrypts the database copy `src` into `dst` under `key`; returns the
/// file's SHA-256 (hex) and size.
fn encrypt_file(
    src: &Path,
    dst: &Path,
    key: &BackupKey,
    header: &BackupHeader,
    mut iv_source: impl FnMut(&mut [u8; 16]) -> Result<(), String>,
) -> Result<(String, u64), BackupError> {
    let header_json = serde_json::to_vec(header).map_err(|e| BackupError::Format(e.to_string()))?;
    let header_digest: [u8; 32] = Sha256::digest(&header_json).into();
    let mut input = std::fs::File::open(src).map_err(io(src))?;
    let file = private_file(dst).map_err(io(dst))?;
    let mut out = std::io::BufWriter::new(file);
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    let mut put = |out: &mut std::io::BufWriter<std::fs::File>, b: &[u8]| -> Result<(), BackupError> {
        hash.update(b);
        bytes += b.len() as u64;
        out.write_all(b).map_err(io(dst))
    };
    put(&mut out, MAGIC)?;
    put(&mut out, &(header_json.len() as u32).to_be_bytes())?;
    put(&mut out, &header_json)?;
    let mut buf = vec![0u8; CHUNK];
    let mut next = read_full(&mut input, &mut buf).map_err(io(src))?;
    let mut index = 0u64;
    loop {
        let mut ahead = vec![0u8; CHUNK];
        let n_ahead = if next == CHUNK { read_full(&mut input, &mut ahead).map_err(io(src))? } else { 0 };
        let last = n_ahead == 0;
        let mut iv = [0u8; 16];
        iv_source(&mut iv).map_err(BackupError::Format)?;
        let (ct, mac) = key.seal_chunk(index, last, &header_digest, &iv, &buf[..next]);
        put(&mut out, &[u8::from(last)])?;
        put(&mut out, &(ct.len() as u32).to_be_bytes())?;
        put(&mut out, &iv)?;
        put(&mut out, &ct)?;
        put(&mut out, &mac)?;
        if last {
            break;
        }
        buf = ahead;
        next = n_ahead;
        index += 1;
    }
    out.flush().map_err(io(dst))?;
    out.into_inner()
        .map_err(|e| BackupError::Io { path: dst.display().to_string(), source: e.into_error() })?
        .sync_all()
        .map_err(io(dst))?;
    Ok((hex::encode(hash.finalize()), bytes))
}

fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

/// Reads a backup's clear header (nothing authenticated yet: [`decrypt`]
/// checks it with every chunk).
pub fn read_header(path: &Path) -> Result<BackupHeader, BackupError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    Ok(header_of(&mut f, path)?.0)
}

fn header_of(f: &mut std::fs::File, path: &Path) -> Result<(BackupHeader, [u8; 32]), BackupError> {
    let mut magic = [0u8; 16];
    f.read_exact(&mut magic).map_err(|_| BackupError::Format("too short".into()))?;
    if &magic != MAGIC {
        return Err(BackupError::Format(format!("{} does not start like a Custos backup", path.display())));
    }
    let mut len = [0u8; 4];
    f.read_exact(&mut len).map_err(|_| BackupError::Format("too short".into()))?;
    let len = u32::from_be_bytes(len);
    if len > MAX_HEADER {
        return Err(BackupError::Format("header too large".into()));
    }
    let mut json = vec![0u8; len as usize];
    f.read_exact(&mut json).map_err(|_| BackupError::Format("truncated header".into()))?;
    let header: BackupHeader = serde_json::from_slice(&json).map_err(|e| BackupError::Format(e.to_string()))?;
    if header.format != FORMAT {
        return Err(BackupError::Format(format!("unknown format {}", header.format)));
    }
    Ok((header, Sha256::digest(&json).into()))
}

/// Decrypts a backup into `dst` (a new file), checking every chunk; `dst`
/// is removed unless the whole file authenticates.
pub fn decrypt(src: &Path, dst: &Path, kek: &Kek) -> Result<BackupHeader, BackupError> {
    let run = || -> Result<BackupHeader, BackupError> {
        let mut f = std::fs::File::open(src).map_err(io(src))?;
        let (header, digest) = header_of(&mut f, src)?;
        let salt: [u8; 32] = hex::decode(&header.salt)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| BackupError::Format("bad salt".into()))?;
        let key = kek.backup_key(&salt);
        let mut r = std::io::BufReader::new(f);
        let mut out = std::io::BufWriter::new(private_file(dst).map_err(io(dst))?);
        let mut index = 0u64;
        loop {
            let mut head = [0u8; 21];
            r.read_exact(&mut head).map_err(|_| BackupError::Auth(index))?;
            let last = match head[0] {
                0 => false,
                1 => true,
                _ => return Err(BackupError::Auth(index)),
            };
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > CHUNK + 16 || len == 0 || !len.is_multiple_of(16) {
                return Err(BackupError::Auth(index));
            }
            let iv: [u8; 16] = head[5..21].try_into().map_err(|_| BackupError::Auth(index))?;
            let mut ct = vec![0u8; len];
            r.read_exact(&mut ct).map_err(|_| BackupError::Auth(index))?;
            let mut mac = [0u8; 32];
            r.read_exact(&mut mac).map_err(|_| BackupError::Auth(index))?;
            let plain = key.open_chunk(index, last, &digest, &iv, &ct, &mac).map_err(|_| BackupError::Auth(index))?;
            out.write_all(&plain).map_err(io(dst))?;
            if last {
                let mut rest = [0u8; 1];
                if r.read(&mut rest).map_err(io(src))? != 0 {
                    return Err(BackupError::Auth(index + 1));
                }
                break;
            }
            index += 1;
        }
        out.flush().map_err(io(dst))?;
        out.into_inner()
            .map_err(|e| BackupError::Io { path: dst.display().to_string(), source: e.into_error() })?
            .sync_all()
            .map_err(io(dst))?;
        Ok(header)
    };
    let result = run();
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

/// `PRAGMA integrity_check` of an SQLite file: `Ok(())` or what it found.
pub fn sqlite_integrity(path: &Path) -> Result<(), String> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    let found: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(|e| e.to_string())?;
    if found == ["ok"] { Ok(()) } else { Err(found.join("; ")) }
}

static INTERVAL_HOURS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(24);

/// Records the configured backup interval (hours, 0: on demand only), at
/// start-up, for the compliance check.
pub fn set_interval_hours(hours: u64) {
    INTERVAL_HOURS.store(hours, std::sync::atomic::Ordering::Relaxed);
}

/// The configured backup interval (hours, 0: on demand only).
pub fn interval_hours() -> u64 {
    INTERVAL_HOURS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Settings (`[backup]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where backups are written.
    pub dir: PathBuf,
    /// A backup is taken when the last one is older than this (µs);
    /// `None`: on demand only.
    pub interval_us: Option<i64>,
    /// Backups kept; older ones are deleted after a new one succeeds.
    pub keep: u32,
    /// The object store each backup is uploaded to, if any (a backup
    /// fails when its upload does).
    pub remote: Option<Arc<crate::objstore::Remote>>,
}

/// Backups.
pub struct Backups {
    events: Arc<Events>,
    holder: String,
    settings: Settings,
    /// One backup at a time (held from its start to its end).
    running: Arc<tokio::sync::Mutex<()>>,
}

const COLUMNS: &str = "name, location, uri, trigger, requested_by, started_at, finished_at, state, bytes, sha256, \
     head_seq, checkpoint_size, error, removed_at";

fn info_of(r: &QueryResult) -> Result<BackupInfo, DbErr> {
    let opt = |c: &str| -> Result<Option<u64>, DbErr> { Ok(r.try_get::<Option<i64>>("", c)?.map(|v| v.max(0) as u64)) };
    Ok(BackupInfo {
        name: r.try_get("", "name")?,
        location: r.try_get("", "location")?,
        uri: r.try_get("", "uri")?,
        trigger: r.try_get("", "trigger")?,
        requested_by: r.try_get("", "requested_by")?,
        started_at: rfc3339(r.try_get("", "started_at")?),
        finished_at: r.try_get::<Option<i64>>("", "finished_at")?.map(rfc3339),
        state: r.try_get("", "state")?,
        bytes: r.try_get::<i64>("", "bytes")?.max(0) as u64,
        sha256: r.try_get("", "sha256")?,
        head_seq: opt("head_seq")?,
        checkpoint_size: opt("checkpoint_size")?,
        error: r.try_get("", "error")?,
        removed_at: r.try_get::<Option<i64>>("", "removed_at")?.map(rfc3339),
    })
}

impl Backups {
    /// Backups for `holder` (this replica's name).
    pub fn new(events: Arc<Events>, holder: &str, settings: Settings) -> Backups {
        Backups { events, holder: holder.to_owned(), settings, running: Arc::new(tokio::sync::Mutex::new(())) }
    }

    fn conn(&self) -> &sea_orm::DatabaseConnection {
        self.events.ledger().db().conn()
    }

    fn backend(&self) -> sea_orm::DbBackend {
        self.events.ledger().db().backend()
    }

    /// Takes a backup now (`trigger`: `manual` or `schedule`) and waits
    /// for it. Recorded (`custos.backup.created` or `…failed`).
    pub async fn create(&self, by: &Requester, trigger: &str) -> Result<BackupInfo, AlertsError> {
        let (name, guard) = self.begin(by, trigger).await?;
        self.finish(&name, by, trigger, guard).await
    }

    /// Starts a backup in the background; returns it as started.
    pub async fn start(self: &Arc<Self>, by: &Requester) -> Result<BackupInfo, AlertsError> {
        let (name, guard) = self.begin(by, "manual").await?;
        let (me, by2, n) = (self.clone(), by.clone(), name.clone());
        tokio::spawn(async move {
            if let Err(e) = me.finish(&n, &by2, "manual", guard).await {
                tracing::warn!(backup = %n, error = %e, "backup failed");
            }
        });
        self.get(&name).await
    }

    /// Checks a backup can be taken here now and catalogues it as running.
    async fn begin(
        &self,
        by: &Requester,
        trigger: &str,
    ) -> Result<(String, tokio::sync::OwnedMutexGuard<()>), AlertsError> {
        if self.events.ledger().db().sqlite_file().is_none() {
            return Err(AlertsError::Conflict(
                "this Custos runs on PostgreSQL: back it up with pg_basebackup or point-in-time recovery (see the \
                 README), then check a restored copy with `custos verify`"
                    .into(),
            ));
        }
        let Ok(guard) = self.running.clone().try_lock_owned() else {
            return Err(AlertsError::Conflict("a backup is being taken; wait for it to finish".into()));
        };
        let ledger = self.events.ledger();
        let now = ledger.now_us();
        let stamp = rfc3339(now).replace([':', '-'], "").chars().take(15).collect::<String>();
        let name = format!(
            "custos-backup-{}-{stamp}Z-{}.cbk",
            ledger.origin().replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        );
        let path = self.settings.dir.join(&name);
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "INSERT INTO backups (name, location, uri, trigger, requested_by, started_at, state) \
                 VALUES (?, 'local', ?, ?, ?, ?, 'running')",
                vec![
                    name.clone().into(),
                    path.display().to_string().into(),
                    trigger.into(),
                    by.owner.clone().into(),
                    now.into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        Ok((name, guard))
    }

    /// Takes a begun backup, records how it ended, prunes old ones.
    async fn finish(
        &self,
        name: &str,
        by: &Requester,
        trigger: &str,
        _guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<BackupInfo, AlertsError> {
        let ledger = self.events.ledger();
        let path = self.settings.dir.join(name);
        let outcome = self.take(&path).await;
        // A backup the store did not take is kept here (done, local, with
        // the reason): the compliance check warns until one is uploaded.
        let (mut uploaded, mut upload_error) = (None, None);
        if let (Ok(_), Some(r)) = (&outcome, &self.settings.remote) {
            match r.upload(Kind::Backups, name, &path, ledger.now_us()).await {
                Ok(uri) => uploaded = Some(uri),
                Err(e) => {
                    upload_error = Some(format!("not uploaded to {} ({e}); kept in backup.dir only", r.location()))
                }
            }
        }
        let finished = ledger.now_us();
        let (state, error) = match &outcome {
            Ok(_) => ("done", upload_error.clone()),
            Err(e) => ("failed", Some(e.clone())),
        };
        let (sha, bytes, head, cp) = outcome.clone().unwrap_or_default();
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE backups SET state = ?, finished_at = ?, bytes = ?, sha256 = ?, head_seq = ?, \
                 checkpoint_size = ?, error = ? WHERE name = ?",
                vec![
                    state.into(),
                    finished.into(),
                    (bytes as i64).into(),
                    (!sha.is_empty()).then_some(sha.clone()).into(),
                    (head as i64).into(),
                    (cp as i64).into(),
                    error.clone().into(),
                    name.into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        if let Some(uri) = &uploaded {
            self.conn()
                .execute_raw(stmt_for(
                    self.backend(),
                    "UPDATE backups SET location = 'object_store', uri = ? WHERE name = ?",
                    vec![uri.clone().into(), name.into()],
                ))
                .await
                .map_err(db_err)?;
            if self.settings.remote.as_ref().is_some_and(|r| !r.keep_local()) {
                let _ = std::fs::remove_file(&path);
            }
        }
        // Not after a backup the store refused: older uploaded ones may be
        // the only ones off this machine.
        let pruned = if state == "done" && upload_error.is_none() { self.prune(trigger).await? } else { Vec::new() };
        let mut event = OwnEvent::new(
            OwnAction::BackupStep(if state == "done" { "custos.backup.created" } else { "custos.backup.failed" }),
            by.actor.clone(),
            by.channel,
        )
        .request(by.request_id.clone())
        .resource("backup", Some(name.to_owned()))
        .details(json!({
            "backup": name, "trigger": trigger, "sha256": sha, "bytes": bytes, "head_seq": head,
            "checkpoint_size": cp, "error": error, "pruned": pruned, "uri": uploaded,
        }));
        match (state, &error) {
            ("done", Some(e)) => event = event.severity(Severity::Warning).reason(Some(e.clone())),
            (_, Some(e)) => event = event.outcome(Outcome::Failure).reason(Some(e.clone())),
            _ => {}
        }
        self.events.record_own(event).await?;
        match (state, error) {
            ("done", _) => self.get(name).await,
            (_, e) => Err(AlertsError::Conflict(format!("the backup failed: {}", e.unwrap_or_default()))),
        }
    }

    /// Signs a checkpoint, copies the database, encrypts the copy.
    /// Returns (sha256, bytes, head seq, checkpoint size).
    async fn take(&self, path: &Path) -> Result<(String, u64, u64, u64), String> {
        let ledger = self.events.ledger();
        let cp = ledger.checkpoint_now().await.map_err(|e| format!("signing a checkpoint: {e}"))?;
        let head = ledger.head().await.map_err(|e| e.to_string())?.seq;
        let work = self.work_dir().map_err(|e| format!("{}: {e}", self.settings.dir.display()))?;
        // The copy is plain: in a directory only the owner can enter, in a
        // file created empty and owner-only before SQLite writes it.
        let tmp = work
            .join(format!("{}.copy", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
        private_file(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let quoted = tmp.display().to_string().replace('\'', "''");
        let copied = self.conn().execute_unprepared(&format!("VACUUM INTO '{quoted}'")).await;
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("copying the database: {e}"));
        }
        let mut salt = [0u8; 32];
        ledger.random(&mut salt).map_err(|e| e.to_string())?;
        let header = BackupHeader {
            format: FORMAT.into(),
            origin: ledger.origin().to_owned(),
            created_at: rfc3339(ledger.now_us()),
            head_seq: head,
            checkpoint: cp.as_ref().map(|c| c.note.clone()),
            checkpoint_size: cp.as_ref().map_or(0, |c| c.tree_size),
            salt: hex::encode(salt),
            source: "sqlite VACUUM INTO".into(),
        };
        let key = ledger.keys().backup_key(&salt);
        let (src, dst) = (tmp.clone(), path.to_path_buf());
        let ledger2 = ledger.clone();
        let written = tokio::task::spawn_blocking(move || {
            encrypt_file(&src, &dst, &key, &header, |iv| ledger2.random(iv).map_err(|e| e.to_string()))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let _ = std::fs::remove_file(&tmp);
        if written.is_err() {
            let _ = std::fs::remove_file(path);
        }
        let (sha, bytes) = written?;
        Ok((sha, bytes, head, cp.map_or(0, |c| c.tree_size)))
    }

    /// The private directory plain copies are made in (0700, tightened
    /// if it exists).
    fn work_dir(&self) -> std::io::Result<PathBuf> {
        let work = self.settings.dir.join(".work");
        crate::storage::create_private_dir(&work)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&self.settings.dir, std::fs::Permissions::from_mode(0o700))?;
            std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(work)
    }

    /// Deletes the files of finished backups beyond the newest `keep` of
    /// the same trigger (scheduled and manual backups rotate apart, so
    /// backups taken by hand cannot push the scheduled ones out).
    async fn prune(&self, trigger: &str) -> Result<Vec<String>, AlertsError> {
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.backend(),
                &format!(
                    "SELECT {COLUMNS} FROM backups WHERE state = 'done' AND removed_at IS NULL AND trigger = ? \
                     ORDER BY started_at DESC, name DESC"
                ),
                vec![trigger.into()],
            ))
            .await
            .map_err(db_err)?;
        let mut pruned = Vec::new();
        for r in rows.iter().skip(self.settings.keep.max(1) as usize) {
            let b = info_of(r).map_err(db_err)?;
            // Only a file of this directory, by its checked name.
            let Ok(name) = crate::storage::plain_file_name(&b.name, ".cbk") else { continue };
            if b.location == "object_store" {
                // Under Object Lock the store may refuse until the lock's
                // date (or keep the locked version behind a delete marker).
                // Without the store configured, it is left (and listed).
                let deleted = match &self.settings.remote {
                    Some(r) => r.delete(name, &b.uri).await,
                    None => Err("no object store is configured".into()),
                };
                if let Err(e) = deleted {
                    tracing::warn!(backup = %b.name, error = %e, "an old backup could not be deleted from the object store");
                    continue;
                }
            }
            match std::fs::remove_file(self.settings.dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(backup = %b.name, error = %e, "an old backup could not be deleted");
                    continue;
                }
            }
            self.conn()
                .execute_raw(stmt_for(
                    self.backend(),
                    "UPDATE backups SET removed_at = ? WHERE name = ?",
                    vec![self.events.ledger().now_us().into(), b.name.clone().into()],
                ))
                .await
                .map_err(db_err)?;
            pruned.push(b.name);
        }
        Ok(pruned)
    }

    /// One backup.
    pub async fn get(&self, name: &str) -> Result<BackupInfo, AlertsError> {
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                &format!("SELECT {COLUMNS} FROM backups WHERE name = ?"),
                vec![name.into()],
            ))
            .await
            .map_err(db_err)?
            .ok_or_else(|| AlertsError::NotFound(format!("no backup {name}")))?;
        info_of(&row).map_err(db_err)
    }

    /// The backups, newest first (removed ones included, marked).
    pub async fn list(&self, limit: u64) -> Result<Vec<BackupInfo>, AlertsError> {
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.backend(),
                &format!("SELECT {COLUMNS} FROM backups ORDER BY started_at DESC, name DESC LIMIT ?"),
                vec![(limit.clamp(1, 500) as i64).into()],
            ))
            .await
            .map_err(db_err)?;
        rows.iter().map(info_of).collect::<Result<_, _>>().map_err(db_err)
    }

    async fn last_success(&self) -> Result<Option<BackupInfo>, AlertsError> {
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                &format!("SELECT {COLUMNS} FROM backups WHERE state = 'done' ORDER BY started_at DESC LIMIT 1"),
                vec![],
            ))
            .await
            .map_err(db_err)?;
        row.as_ref().map(info_of).transpose().map_err(db_err)
    }

    /// Backups as they stand.
    pub async fn status(&self) -> Result<BackupStatus, AlertsError> {
        let supported = self.events.ledger().db().sqlite_file().is_some();
        let last = self.last_success().await?;
        let last_at = last.as_ref().and_then(|b| crate::time::parse_rfc3339(&b.started_at));
        let next_due = match (self.settings.interval_us, supported) {
            (Some(every), true) => Some(rfc3339(last_at.map_or(self.events.ledger().now_us(), |t| t + every))),
            _ => None,
        };
        Ok(BackupStatus {
            supported,
            backend: if supported { "sqlite".into() } else { "postgres".into() },
            interval_hours: self.settings.interval_us.map(|us| (us / HOUR_US) as u64),
            keep: self.settings.keep,
            dir: self.settings.dir.display().to_string(),
            object_store: self.settings.remote.as_ref().map(|r| r.describe()),
            last_success: last,
            next_due,
        })
    }

    /// The scheduler's tick: on the replica holding the lease, takes a
    /// backup when the last one is older than the interval.
    pub async fn step(&self) -> Result<Option<BackupInfo>, AlertsError> {
        let Some(every) = self.settings.interval_us else { return Ok(None) };
        if self.events.ledger().db().sqlite_file().is_none() {
            return Ok(None);
        }
        let now = self.events.ledger().now_us();
        let last_try = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                "SELECT MAX(started_at) AS t FROM backups WHERE trigger = 'schedule' OR state = 'done'",
                vec![],
            ))
            .await
            .map_err(db_err)?
            .and_then(|r| r.try_get::<Option<i64>>("", "t").ok().flatten());
        if last_try.is_some_and(|t| t + every > now) {
            return Ok(None);
        }
        let lease = Lease::new(self.events.ledger().clone(), LEASE, &self.holder, LEASE_TTL_US);
        if lease.acquire().await.map_err(db_err)?.is_none() {
            return Ok(None);
        }
        let out = self.create(&Requester::custos("backup"), "schedule").await;
        let _ = lease.release().await;
        out.map(Some)
    }

    /// Where a backup is downloaded from: the backup directory (by its
    /// checked name), or streamed from the object store.
    pub async fn source_of(&self, name: &str) -> Result<Source, AlertsError> {
        let b = self.get(crate::storage::plain_file_name(name, ".cbk")?).await?;
        if b.removed_at.is_some() || b.state != "done" {
            return Err(AlertsError::NotFound(format!("backup {name} is not available (state {})", b.state)));
        }
        Remote::source(self.settings.remote.as_deref(), &self.settings.dir, &b.name, (&b.location, &b.uri))
            .await
            .map_err(AlertsError::NotFound)
    }

    /// A backup's file: in the backup directory by its checked name (never
    /// a path read from the database), or fetched from the object store.
    pub async fn file_of(&self, name: &str) -> Result<LocalCopy, AlertsError> {
        let b = self.get(crate::storage::plain_file_name(name, ".cbk")?).await?;
        if b.removed_at.is_some() || b.state != "done" {
            return Err(AlertsError::NotFound(format!("backup {name} is not available (state {})", b.state)));
        }
        Remote::local_copy(self.settings.remote.as_deref(), &self.settings.dir, &b.name, (&b.location, &b.uri))
            .await
            .map_err(AlertsError::NotFound)
    }

    /// Backups that were being taken when a process stopped: failed, and
    /// their plain copies deleted.
    pub async fn close_interrupted(&self) -> Result<(), AlertsError> {
        if let Ok(entries) = std::fs::read_dir(self.settings.dir.join(".work")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE backups SET state = 'failed', finished_at = ?, error = 'interrupted: the server stopped' \
                 WHERE state = 'running'",
                vec![self.events.ledger().now_us().into()],
            ))
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(salt: &[u8; 32]) -> BackupHeader {
        BackupHeader {
            format: FORMAT.into(),
            origin: "custos.test/ledger".into(),
            created_at: "2027-01-15T08:00:00Z".into(),
            head_seq: 7,
            checkpoint: None,
            checkpoint_size: 0,
            salt: hex::encode(salt),
            source: "test".into(),
        }
    }

    /// The byte ranges of each chunk (after the header) of a backup file.
    fn chunks(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let hlen = u32::from_be_bytes(bytes[16..20].try_into().unwrap()) as usize;
        let mut at = 20 + hlen;
        let mut out = Vec::new();
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
            let end = at + 21 + len + 32;
            out.push(at..end);
            at = end;
        }
        out
    }

    #[test]
    fn chunks_round_trip_and_cannot_be_reordered_dropped_or_moved_between_files() {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::from_bytes(&[3; 32]);
        let salt = [5u8; 32];
        let key = kek.backup_key(&salt);
        let mut counter = 0u8;
        let mut ivs = |iv: &mut [u8; 16]| {
            counter = counter.wrapping_add(1);
            *iv = [counter; 16];
            Ok(())
        };
        // 2.5 chunks, then exactly two chunks, then empty.
        for (name, len) in [("a", CHUNK * 5 / 2), ("b", CHUNK * 2), ("c", 0)] {
            let src = dir.path().join(format!("{name}.db"));
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&src, &data).unwrap();
            let dst = dir.path().join(format!("{name}.cbk"));
            encrypt_file(&src, &dst, &key, &header(&salt), &mut ivs).unwrap();
            let out = dir.path().join(format!("{name}.out"));
            decrypt(&dst, &out, &kek).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), data, "{name}");
            let n = chunks(&std::fs::read(&dst).unwrap()).len();
            assert_eq!(n, len.div_ceil(CHUNK).max(1), "{name}: no empty trailing chunk");
        }
        let a = std::fs::read(dir.path().join("a.cbk")).unwrap();
        let ranges = chunks(&a);
        assert_eq!(ranges.len(), 3);
        let refused = dir.path().join("refused.out");
        let try_bytes = |bytes: Vec<u8>| {
            let f = dir.path().join("t.cbk");
            std::fs::write(&f, bytes).unwrap();
            let r = decrypt(&f, &refused, &kek);
            assert!(!refused.exists(), "nothing left behind");
            r
        };
        // Two chunks swapped.
        let mut swapped = a[..ranges[0].start].to_vec();
        swapped.extend_from_slice(&a[ranges[1].clone()]);
        swapped.extend_from_slice(&a[ranges[0].clone()]);
        swapped.extend_from_slice(&a[ranges[2].clone()]);
        assert!(matches!(try_bytes(swapped), Err(BackupError::Auth(0))));
        // The last chunk dropped: the file ends without its final chunk.
        assert!(matches!(try_bytes(a[..ranges[2].start].to_vec()), Err(BackupError::Auth(2))));
        // A chunk of another backup (same KEK and salt, same position).
        let b = std::fs::read(dir.path().join("b.cbk")).unwrap();
        let rb = chunks(&b);
        let mut mixed = a[..ranges[1].start].to_vec();
        mixed.extend_from_slice(&b[rb[1].clone()]);
        mixed.extend_from_slice(&a[ranges[2].clone()]);
        assert!(try_bytes(mixed).is_err());
        // The header changed (its digest is in every MAC).
        let mut h = a.clone();
        let at = a.windows(12).position(|w| w == b"\"head_seq\":7").unwrap();
        h[at + 11] = b'9';
        assert!(matches!(try_bytes(h), Err(BackupError::Auth(0))));
        // Bytes after the final chunk.
        let mut longer = a.clone();
        longer.push(0);
        assert!(matches!(try_bytes(longer), Err(BackupError::Auth(_))));
    }
}
