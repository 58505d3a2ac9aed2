//! Sessions in the database (tower-sessions `SessionStore` over sea-orm), so
//! that every replica sees every session and a restart signs nobody out.

use std::sync::Arc;

use async_trait::async_trait;
use custos_engine::identity::service::Identity;
use custos_engine::storage::Database;
use sea_orm::ConnectionTrait;
use tower_sessions::cookie::time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// The session key holding the signed-in user's id.
pub const USER_ID: &str = "uid";
/// The session key holding when the user signed in (µs).
pub const AUTH_AT: &str = "auth_at";
/// The session key holding the user's session epoch when it started (see
/// `Principal::session_epoch`).
pub const EPOCH: &str = custos_engine::identity::service::SESSION_EPOCH_KEY;
/// The session key holding a user who passed the password step and owes a code.
pub const MFA_PENDING: &str = "mfa_pending";

/// Sessions stored in the `sessions` table.
#[derive(Clone)]
pub struct DbSessionStore {
    db: Database,
    identity: Arc<Identity>,
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbSessionStore")
    }
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

impl DbSessionStore {
    /// A store on `db`; `identity` records expiries.
    pub fn new(db: Database, identity: Arc<Identity>) -> Self {
        DbSessionStore { db, identity }
    }

    /// Deletes expired sessions (run periodically).
    pub async fn delete_expired(&self) -> Result<u64, sea_orm::DbErr> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let r = self
            .db
            .conn()
            .execute_raw(self.db.stmt("DELETE FROM sessions WHERE expiry_date < ?", vec![now.into()]))
            .await?;
        Ok(r.rows_affected())
    }
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // Ids are 128 random bits; on the unthinkable collision, draw again.
        loop {
            let data = serde_json::to_vec(&record).map_err(backend)?;
            let inserted = self
                .db
                .conn()
                .execute_raw(self.db.stmt(
                    "INSERT INTO sessions (id, data, expiry_date) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    vec![record.id.to_string().into(), data.into(), record.expiry_date.unix_timestamp().into()],
                ))
                .await
                .map_err(backend)?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_vec(&record).map_err(backend)?;
        self.db
            .conn()
            .execute_raw(self.db.stmt(
                "INSERT INTO sessions (id, data, expiry_date) VALUES (?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data, expiry_date = excluded.expiry_date",
                vec![record.id.to_string().into(), data.into(), record.expiry_date.unix_timestamp().into()],
            ))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt("SELECT data FROM sessions WHERE id = ?", vec![id.to_string().into()]))
            .await
            .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let data: Vec<u8> = row.try_get("", "data").map_err(backend)?;
        let record: Record = match serde_json::from_slice(&data) {
            Ok(r) => r,
            Err(e) => {
                // Unreadable (corrupt, or from another version): no session.
                tracing::warn!(error = %e, "discarding an unreadable session");
                self.delete(id).await?;
                return Ok(None);
            }
        };
        if record.expiry_date > OffsetDateTime::now_utc() {
            return Ok(Some(record));
        }
        // Expired by inactivity: forget it, and record it if someone was signed in.
        self.delete(id).await?;
        if let Some(uid) = record.data.get(USER_ID).and_then(|v| v.as_i64()) {
            self.identity.record_session_expired(uid, "idle timeout").await;
        }
        Ok(None)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.db
            .conn()
            .execute_raw(self.db.stmt("DELETE FROM sessions WHERE id = ?", vec![id.to_string().into()]))
            .await
            .map_err(backend)?;
        Ok(())
    }
}
