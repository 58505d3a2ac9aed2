//! The key ring: data keys and the checkpoint signing key, stored in
//! `ledger_keys` only wrapped under the KEK.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use sea_orm::{ConnectionTrait, TransactionTrait, Value};
use zeroize::Zeroizing;

use super::crypto::{DataKey, Kek, KeyPurpose};
use super::error::LedgerError;
use super::note::NoteSigner;
use crate::clock::{Clock, RandomSource};
use crate::keys::KekProvider;
use crate::storage::Database;

#[derive(Debug)]
struct DataKeys {
    keys: BTreeMap<u32, Arc<DataKey>>,
    current: u32,
}

/// Unwrapped keys, loaded once at start and extended by rotation.
#[derive(Debug)]
pub struct Keyring {
    kek: Kek,
    data: RwLock<DataKeys>,
    signer: NoteSigner,
    origin: String,
}

/// One row of `ledger_keys`.
struct KeyRow {
    key_id: u32,
    purpose: String,
    wrapped: Vec<u8>,
    public_key: Option<Vec<u8>>,
}

async fn load_rows(conn: &impl ConnectionTrait, db: &Database) -> Result<Vec<KeyRow>, LedgerError> {
    let rows = conn
        .query_all_raw(db.stmt("SELECT key_id, purpose, wrapped, public_key FROM ledger_keys ORDER BY key_id", vec![]))
        .await?;
    rows.iter()
        .map(|r| {
            let key_id: i32 = r.try_get("", "key_id")?;
            Ok(KeyRow {
                key_id: u32::try_from(key_id).map_err(|_| LedgerError::Corrupt(format!("negative key id {key_id}")))?,
                purpose: r.try_get("", "purpose")?,
                wrapped: r.try_get("", "wrapped")?,
                public_key: r.try_get("", "public_key")?,
            })
        })
        .collect()
}

/// Reads a `ledger_meta` value.
pub(crate) async fn read_meta(db: &Database, name: &str) -> Result<Option<String>, LedgerError> {
    let row =
        db.conn().query_one_raw(db.stmt("SELECT value FROM ledger_meta WHERE name = ?", vec![name.into()])).await?;
    Ok(row.map(|r| r.try_get("", "value")).transpose()?)
}

impl Keyring {
    /// The keys of a backup file with this salt (derived from the KEK).
    pub fn backup_key(&self, salt: &[u8; 32]) -> super::crypto::BackupKey {
        self.kek.backup_key(salt)
    }

    /// Loads the keys, creating them on a brand-new ledger (and only then).
    ///
    /// `origin` names a new ledger; an existing ledger keeps the origin it was
    /// created with.
    pub async fn open(
        db: &Database,
        kek_provider: &dyn KekProvider,
        origin: &str,
        clock: &dyn Clock,
        rng: &dyn RandomSource,
    ) -> Result<Keyring, LedgerError> {
        let kek = kek_provider.load()?;
        let mut rows = load_rows(db.conn(), db).await?;
        if rows.is_empty() {
            Self::initialise(db, &kek, origin, clock, rng).await?;
            rows = load_rows(db.conn(), db).await?;
        }
        let origin =
            read_meta(db, "origin").await?.ok_or_else(|| LedgerError::Corrupt("ledger_meta has no origin".into()))?;
        Self::unwrap_all(kek, rows, origin, &kek_provider.describe())
    }

    /// Loads the keys of an existing ledger without ever creating any
    /// (offline verification, tools).
    pub async fn load(db: &Database, kek_provider: &dyn KekProvider) -> Result<Keyring, LedgerError> {
        let kek = kek_provider.load()?;
        let rows = load_rows(db.conn(), db).await?;
        if rows.is_empty() {
            return Err(LedgerError::Corrupt("the database holds no ledger keys".into()));
        }
        let origin =
            read_meta(db, "origin").await?.ok_or_else(|| LedgerError::Corrupt("ledger_meta has no origin".into()))?;
        Self::unwrap_all(kek, rows, origin, &kek_provider.describe())
    }

    fn unwrap_all(kek: Kek, rows: Vec<KeyRow>, origin: String, kek_source: &str) -> Result<Keyring, LedgerError> {
        let mut keys = BTreeMap::new();
        let mut signer = None;
        let mut failed = Vec::new();
        let mut unwrapped_any = false;
        for row in &rows {
            let purpose = match row.purpose.as_str() {
                "data" => KeyPurpose::Data,
                "signing" => KeyPurpose::Signing,
                other => {
                    return Err(LedgerError::Corrupt(format!("key {} has unknown purpose {other}", row.key_id)));
                }
            };
            let secret = match kek.unwrap(purpose, row.key_id, &row.wrapped) {
                Ok(s) => s,
                Err(_) => {
                    failed.push((row.key_id, row.purpose.clone()));
                    continue;
                }
            };
            unwrapped_any = true;
            match purpose {
                KeyPurpose::Data => {
                    keys.insert(row.key_id, Arc::new(DataKey::derive(row.key_id, &secret)));
                }
                KeyPurpose::Signing => {
                    let s = NoteSigner::new(&origin, &secret).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
                    let stored_public = row.public_key.as_deref().unwrap_or_default();
                    // The clear public key must be the one the wrapped seed yields.
                    if stored_public != s.verifier().public_key().as_slice() {
                        failed.push((row.key_id, row.purpose.clone()));
                        continue;
                    }
                    signer = Some(s);
                }
            }
        }
        if !unwrapped_any {
            return Err(LedgerError::WrongKek(kek_source.to_owned()));
        }
        if let Some((key_id, purpose)) = failed.into_iter().next() {
            return Err(LedgerError::KeyTampered { key_id, purpose });
        }
        let signer = signer.ok_or_else(|| LedgerError::Corrupt("no checkpoint signing key is stored".into()))?;
        let current = *keys.keys().next_back().ok_or_else(|| LedgerError::Corrupt("no data key is stored".into()))?;
        Ok(Keyring { kek, data: RwLock::new(DataKeys { keys, current }), signer, origin })
    }

    async fn initialise(
        db: &Database,
        kek: &Kek,
        origin: &str,
        clock: &dyn Clock,
        rng: &dyn RandomSource,
    ) -> Result<(), LedgerError> {
        let txn = db.conn().begin().await?;
        // Write-lock first: SQLite cannot upgrade a read lock while another
        // connection writes, and PostgreSQL replicas must not race here.
        super::store::lock_head(&txn).await?;
        let entries = txn
            .query_one_raw(db.stmt("SELECT COUNT(*) AS n FROM ledger_entries", vec![]))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if entries > 0 {
            return Err(LedgerError::KeysMissing);
        }
        let now = clock.now_us();
        let mut dek = Zeroizing::new([0u8; 32]);
        rng.fill(dek.as_mut_slice())?;
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill(seed.as_mut_slice())?;
        let mut iv = [0u8; 16];
        rng.fill(&mut iv)?;
        let wrapped_dek = kek.wrap(KeyPurpose::Data, 1, &iv, &dek);
        rng.fill(&mut iv)?;
        let wrapped_seed = kek.wrap(KeyPurpose::Signing, 2, &iv, &seed);
        let signer = NoteSigner::new(origin, &seed).map_err(|e| LedgerError::Invalid(format!("ledger origin: {e}")))?;
        let public = signer.verifier().public_key().to_vec();
        let inserted = async {
            txn.execute_raw(db.stmt(
                "INSERT INTO ledger_meta (name, value) VALUES ('origin', ?)",
                vec![origin.into()],
            ))
            .await?;
            txn.execute_raw(db.stmt(
                "INSERT INTO ledger_keys (key_id, purpose, wrapped, public_key, created_at) VALUES (1, 'data', ?, NULL, ?), (2, 'signing', ?, ?, ?)",
                vec![wrapped_dek.into(), now.into(), wrapped_seed.into(), public.into(), now.into()],
            ))
            .await?;
            Ok::<_, sea_orm::DbErr>(())
        }
        .await;
        match inserted {
            Ok(()) => {
                txn.commit().await?;
                tracing::warn!(
                    origin,
                    "created a new ledger: data key 1 and checkpoint signing key 2, wrapped under the KEK"
                );
                Ok(())
            }
            // Another replica initialised the same database first: use its keys.
            Err(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The ledger's origin (checkpoint log name and signing key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The key that seals new payloads. `current` is set together with
    /// `keys`, so a miss is a bug; it is an error, never a fallback key
    /// (an all-zero key would seal events anyone could open).
    pub fn current(&self) -> Result<Arc<DataKey>, LedgerError> {
        let d = self.data.read().unwrap_or_else(|p| p.into_inner());
        d.keys.get(&d.current).cloned().ok_or(LedgerError::KeysMissing)
    }

    /// A data key by id, if this process knows it.
    pub fn get(&self, key_id: u32) -> Option<Arc<DataKey>> {
        self.data.read().unwrap_or_else(|p| p.into_inner()).keys.get(&key_id).cloned()
    }

    /// Seals a small secret under the KEK, bound to `purpose` and `id`.
    pub fn seal_secret(
        &self,
        purpose: &str,
        id: u64,
        secret: &[u8],
        rng: &dyn RandomSource,
    ) -> Result<Vec<u8>, LedgerError> {
        let mut iv = [0u8; 16];
        rng.fill(&mut iv)?;
        Ok(self.kek.seal(purpose, id, &iv, secret))
    }

    /// Opens a secret sealed by `seal_secret`.
    pub fn open_secret(&self, purpose: &str, id: u64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, LedgerError> {
        self.kek
            .open(purpose, id, sealed)
            .map_err(|e| LedgerError::Corrupt(format!("sealed {purpose} secret of {id}: {e}")))
    }

    /// A keyed pseudonym of a masked value (equal values, equal pseudonyms).
    pub fn pseudonym(&self, value: &str) -> String {
        self.kek.pseudonym(value)
    }

    /// All known data keys, for a scan on another thread.
    pub fn snapshot(&self) -> std::collections::HashMap<u32, Arc<DataKey>> {
        let d = self.data.read().unwrap_or_else(|p| p.into_inner());
        d.keys.iter().map(|(id, k)| (*id, k.clone())).collect()
    }

    /// Ids of all known data keys, and the current one.
    pub fn data_key_ids(&self) -> (Vec<u32>, u32) {
        let d = self.data.read().unwrap_or_else(|p| p.into_inner());
        (d.keys.keys().copied().collect(), d.current)
    }

    /// The checkpoint signer.
    pub fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    /// Loads data keys added by other replicas (after their rotation).
    pub async fn refresh(&self, db: &Database) -> Result<(), LedgerError> {
        let rows = load_rows(db.conn(), db).await?;
        let mut d = self.data.write().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            if row.purpose != "data" || d.keys.contains_key(&row.key_id) {
                continue;
            }
            let secret = self
                .kek
                .unwrap(KeyPurpose::Data, row.key_id, &row.wrapped)
                .map_err(|_| LedgerError::KeyTampered { key_id: row.key_id, purpose: row.purpose.clone() })?;
            d.keys.insert(row.key_id, Arc::new(DataKey::derive(row.key_id, &secret)));
            d.current = d.current.max(row.key_id);
        }
        Ok(())
    }

    /// The id the next key will get.
    pub async fn next_key_id(db: &Database) -> Result<u32, LedgerError> {
        next_key_id_on(db, db.conn()).await
    }

    /// Creates a new data key and seals new payloads with it from now on.
    /// Old keys stay for reading. Returns the new key's id. With `expected`,
    /// refuses if the new key would get another id (another process rotated
    /// since the rotation was recorded).
    pub async fn rotate(
        &self,
        db: &Database,
        clock: &dyn Clock,
        rng: &dyn RandomSource,
        expected: Option<u32>,
    ) -> Result<u32, LedgerError> {
        let mut dek = Zeroizing::new([0u8; 32]);
        rng.fill(dek.as_mut_slice())?;
        let mut iv = [0u8; 16];
        rng.fill(&mut iv)?;
        let txn = db.conn().begin().await?;
        // Serialise with the sequencer and other replicas (see `initialise`).
        super::store::lock_head(&txn).await?;
        let key_id = next_key_id_on(db, &txn).await?;
        if expected.is_some_and(|e| e != key_id) {
            return Err(LedgerError::Invalid(format!(
                "another rotation made key {} first; this one was not made",
                key_id - 1
            )));
        }
        let wrapped = self.kek.wrap(KeyPurpose::Data, key_id, &iv, &dek);
        txn.execute_raw(db.stmt(
            "INSERT INTO ledger_keys (key_id, purpose, wrapped, public_key, created_at) VALUES (?, 'data', ?, NULL, ?)",
            vec![Value::Int(Some(key_id as i32)), wrapped.into(), clock.now_us().into()],
        ))
        .await?;
        txn.commit().await?;
        let mut d = self.data.write().unwrap_or_else(|p| p.into_inner());
        d.keys.insert(key_id, Arc::new(DataKey::derive(key_id, &dek)));
        d.current = key_id;
        tracing::info!(key_id, "data key rotated");
        Ok(key_id)
    }
}
/// The id the next key will get, read on `conn` (the pool, or the
/// transaction of a rotation that holds the head lock).
async fn next_key_id_on(db: &Database, conn: &impl sea_orm::ConnectionTrait) -> Result<u32, LedgerError> {
    let next: i64 = conn
        .query_one_raw(db.stmt("SELECT CAST(COALESCE(MAX(key_id), 0) + 1 AS BIGINT) AS next FROM ledger_keys", vec![]))
        .await?
        .map(|r| r.try_get("", "next"))
        .transpose()?
        .unwrap_or(1);
    u32::try_from(next).map_err(|_| LedgerError::Corrupt("key ids exhausted".into()))
}
