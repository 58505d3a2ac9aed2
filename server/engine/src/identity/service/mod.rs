//! The identity service: users, roles, logins, MFA and API keys. Every
//! change and every security event is recorded in the ledger (anonymous
//! noise, such as refused keys and throttled sign-ins, once per source and
//! minute plus a summary: see `noise`). A change may grant, or act on, only
//! what the actor holds ([`Authority`]); changing a user's credentials or
//! narrowing their roles ends their sessions (the session epoch).
//!
//! Ordering of a change (the ledger and the identity tables share one SQLite
//! writer, so a write transaction cannot wait on the sequencer): check the
//! preconditions, record the event (if the ledger cannot record it, the
//! change is refused), apply the change, and if applying still fails record
//! a failure event that points at the first. No change goes unrecorded.
//!
//! The service is one type, `impl`emented by concern: `types` (errors,
//! actors, principals, outcomes), `rows` (table rows, what users type),
//! `users`, `roles`, `signin`, `mfa`, `apikeys`; here, the service itself
//! and what they share (the record, hashing, authority, session epochs).

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::apikey::{self, Scope};
use super::names::{Email, Username};
use super::noise::{NoiseGate, NoiseKind, Verdict};
use super::password::{self, PolicyError};
use super::permission::{BUILTIN_ROLES, Permission, PermissionSet, UnknownPermission};
use super::throttle::{SharedThrottle, Throttle};
use super::totp;
use crate::clock::{Clock, RandomError, RandomSource};
use crate::events::EventsError;
use crate::events::model::{Channel, Outcome, Severity};
use crate::events::own::{OwnAction, OwnEvent};
use crate::ledger::{Ledger, LedgerError, Receipt};
use crate::storage::Database;

mod apikeys;
mod mfa;
mod roles;
mod rows;
mod signin;
mod types;
mod users;

use self::rows::*;
pub use self::types::*;

/// A failed sign-in attempt, for [`Identity::login_failure`].
#[derive(Clone, Copy)]
struct Failed<'a> {
    actor: &'a Acting,
    username: &'a str,
    /// The throttles' slots were already taken for this attempt.
    counted: bool,
}

/// The key a client address is throttled under (its /64 for IPv6).
fn throttle_key(actor: &Acting) -> String {
    match actor.actor.ip.as_deref().map(str::parse::<std::net::IpAddr>) {
        Some(Ok(ip)) => super::throttle::address_key(ip),
        Some(Err(_)) => actor.actor.ip.clone().unwrap_or_default(),
        None => String::new(),
    }
}

/// Refuses a change that would grant (or act on) permissions the actor does
/// not hold; only `admin` (or Custos itself) may.
fn need_authority(actor: &Acting, involved: &PermissionSet, what: &str) -> Result<(), IdentityError> {
    let Authority::Holds(held) = &actor.authority else { return Ok(()) };
    let missing = involved.not_held_by(held);
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
    Err(IdentityError::Refused(format!("{what} involves {list}, which you do not hold; only an admin may do this")))
}

/// Password hashes computed at once (each takes ~19 MiB and tens of ms of
/// one core); more wait their turn instead of starving the server.
const CONCURRENT_HASHES: usize = 2;
/// Password checks that may wait for a turn; beyond, and after
/// [`HASH_WAIT`], the attempt is refused (busy) instead of queueing for
/// minutes behind a flood.
const WAITING_HASHES: usize = 32;
/// Longest wait for a turn to hash.
const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The key a typed user name is throttled under: a digest, so that the
/// throttles' memory does not grow with what is typed.
fn name_key(name: &str) -> String {
    hex::encode(&Sha256::digest(name.as_bytes())[..16])
}

/// The identity service.
pub struct Identity {
    db: Database,
    ledger: Ledger,
    /// The writer of Custos's own events.
    events: Arc<crate::events::Events>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
    settings: IdentitySettings,
    ip_throttle: SharedThrottle,
    name_throttle: SharedThrottle,
    /// Failures per unknown user name, so that an unknown name is "locked"
    /// at the same threshold as an account (the answer never tells them apart).
    unknown_names: SharedThrottle,
    /// Anonymous noise, per source and minute.
    noise: NoiseGate,
    /// Keys found valid in the last second.
    key_cache: apikeys::KeyCache,
    /// Bounds concurrent password hashing.
    hashing: tokio::sync::Semaphore,
    /// Password checks waiting for a turn.
    hash_waiting: std::sync::atomic::AtomicUsize,
    /// A hash to verify against when the user does not exist, so that an
    /// unknown name costs as much time as a wrong password.
    dummy_hash: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    /// The service, with the built-in roles in place.
    pub async fn new(
        events: Arc<crate::events::Events>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn RandomSource>,
        settings: IdentitySettings,
    ) -> Result<Identity, IdentityError> {
        let dummy_hash =
            password::hash("custos dummy password for timing", rng.as_ref()).map_err(|_| IdentityError::Hash)?;
        let window = settings.throttle_window_secs;
        let (ledger, db) = (events.ledger().clone(), events.ledger().db().clone());
        let id = Identity {
            events,
            ip_throttle: SharedThrottle::new(
                Throttle::new(settings.ip_failures, window, clock.clone()),
                &ledger,
                "address",
            ),
            name_throttle: SharedThrottle::new(
                Throttle::new(settings.name_failures, window, clock.clone()),
                &ledger,
                "name",
            ),
            unknown_names: SharedThrottle::new(
                Throttle::new(
                    usize::try_from(settings.lockout_threshold.max(1)).unwrap_or(usize::MAX),
                    settings.lockout_secs.max(1),
                    clock.clone(),
                ),
                &ledger,
                "unknown-name",
            ),
            noise: NoiseGate::new(settings.noise_per_minute, clock.clone()),
            key_cache: apikeys::KeyCache::default(),
            hashing: tokio::sync::Semaphore::new(CONCURRENT_HASHES),
            hash_waiting: std::sync::atomic::AtomicUsize::new(0),
            db,
            ledger,
            clock,
            rng,
            settings,
            dummy_hash,
        };
        id.ensure_builtin_roles().await?;
        Ok(id)
    }

    /// The ledger events go to.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn now(&self) -> i64 {
        self.clock.now_us()
    }

    /// A turn to hash: at most [`CONCURRENT_HASHES`] at once, at most
    /// [`WAITING_HASHES`] waiting, none waiting longer than [`HASH_WAIT`].
    async fn hash_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, IdentityError> {
        use std::sync::atomic::Ordering;
        if self.hash_waiting.fetch_add(1, Ordering::SeqCst) >= WAITING_HASHES {
            self.hash_waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(IdentityError::Busy);
        }
        let turn = tokio::time::timeout(HASH_WAIT, self.hashing.acquire()).await;
        self.hash_waiting.fetch_sub(1, Ordering::SeqCst);
        match turn {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(IdentityError::Busy),
        }
    }

    /// Checks a password against a PHC string on the blocking pool, in turn.
    async fn password_matches(&self, password: &SecretString, phc: &str) -> Result<bool, IdentityError> {
        let _permit = self.hash_turn().await?;
        let (pw, phc) = (password.clone(), phc.to_owned());
        Ok(tokio::task::spawn_blocking(move || password::verify(pw.expose_secret(), &phc)).await.unwrap_or(false))
    }

    /// Hashes a password on the blocking pool, in turn.
    async fn hash_password(&self, password: &SecretString) -> Result<String, IdentityError> {
        let _permit = self.hash_turn().await?;
        let (pw, rng) = (password.clone(), self.rng.clone());
        tokio::task::spawn_blocking(move || password::hash(pw.expose_secret(), rng.as_ref()))
            .await
            .map_err(|_| IdentityError::Hash)?
            .map_err(|_| IdentityError::Hash)
    }

    /// Every permission a user holds through their roles.
    async fn user_permissions(&self, user_id: i64) -> Result<PermissionSet, IdentityError> {
        let mut held = PermissionSet::default();
        for (_, p, _) in self.roles_of(user_id).await? {
            held.extend(&p);
        }
        Ok(held)
    }

    /// Every permission the named roles grant together.
    async fn roles_permissions(&self, names: &[String]) -> Result<PermissionSet, IdentityError> {
        let roles = self.list_roles().await?;
        let mut all = PermissionSet::default();
        for name in names {
            match roles.iter().find(|r| &r.name == name) {
                Some(r) => all.extend(&r.permissions),
                None => return Err(invalid("roles", format!("no role named `{name}`"))),
            }
        }
        Ok(all)
    }

    /// Ends every session of a user (they started under an older epoch).
    async fn end_sessions(&self, user_id: i64) -> Result<i64, IdentityError> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt(
                "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ? RETURNING session_epoch",
                vec![user_id.into()],
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "session_epoch")).transpose()?.unwrap_or(0))
    }

    async fn ensure_builtin_roles(&self) -> Result<(), IdentityError> {
        let now = self.now();
        for r in BUILTIN_ROLES {
            let perms = PermissionSet::of(r.permissions).to_text();
            self.db
                .conn()
                .execute_raw(self.db.stmt(
                    "INSERT INTO roles (name, description, builtin, require_mfa, permissions, created_at, updated_at) \
                     VALUES (?, ?, 1, 0, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    vec![r.name.into(), r.description.into(), perms.clone().into(), now.into(), now.into()],
                ))
                .await?;
            // Built-in roles always grant what this version defines.
            self.db
                .conn()
                .execute_raw(self.db.stmt(
                    "UPDATE roles SET permissions = ?, builtin = 1 WHERE name = ? AND permissions <> ?",
                    vec![perms.clone().into(), r.name.into(), perms.into()],
                ))
                .await?;
        }
        Ok(())
    }

    // --- the audit record -------------------------------------------------

    /// Records a security event; returns its receipt.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        actor: &Acting,
        category: &'static str,
        action: &'static str,
        outcome: Outcome,
        severity: Severity,
        resource: (&str, Option<String>),
        details: serde_json::Value,
    ) -> Result<Receipt, LedgerError> {
        // Through the one writer of own events: sealed with the server as the
        // submitter, masked by the policy like any event.
        let own = OwnEvent::new(OwnAction::Identity { action, category }, actor.recorded(), actor.channel)
            .outcome(outcome)
            .severity(severity)
            .resource(resource.0, resource.1)
            .request(actor.request_id.clone())
            .details(details);
        self.events.record_own(own).await.map_err(|e| match e {
            EventsError::Ledger(l) => l,
            other => LedgerError::Invalid(other.to_string()),
        })
    }

    /// Records a change before it is made (refusing it if the ledger cannot).
    async fn record_change(
        &self,
        actor: &Acting,
        action: &'static str,
        resource: (&str, Option<String>),
        details: serde_json::Value,
    ) -> Result<Receipt, IdentityError> {
        self.record(actor, "admin", action, Outcome::Success, Severity::Notice, resource, details)
            .await
            .map_err(IdentityError::NotRecorded)
    }

    /// Applies a change recorded by `record_change`; if it fails, records the
    /// failure too, pointing at the first event.
    async fn apply<T>(
        &self,
        actor: &Acting,
        action: &'static str,
        recorded: Receipt,
        resource: (&str, Option<String>),
        change: impl std::future::Future<Output = Result<T, IdentityError>>,
    ) -> Result<T, IdentityError> {
        match change.await {
            Ok(v) => Ok(v),
            Err(e) => {
                let details = serde_json::json!({ "reason": e.to_string(), "recorded_as": recorded.event_id });
                if let Err(le) =
                    self.record(actor, "admin", action, Outcome::Error, Severity::Error, resource, details).await
                {
                    tracing::error!(error = %le, "could not record the failure of a recorded change");
                }
                Err(e)
            }
        }
    }
}

/// A fingerprint of a secret for logs and correlation (never the secret).
pub fn fingerprint(secret: &str) -> String {
    hex::encode(&Sha256::digest(secret.as_bytes())[..6])
}
