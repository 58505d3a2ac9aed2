//! Policies admins set (masking now; retention, alert rules, notification
//! channels, SIEM destinations and report schedules as further kinds):
//! every change is a proposal, reviewed by a second person ([`review`]),
//! that becomes the next immutable version ([`store`]); every step is a
//! ledger event, so the ledger alone proves the trail ([`trail`]).
//!
//! A kind is one file in [`kinds`], registered in [`kinds::all`].

pub mod kinds;
pub mod patch;
pub mod review;
pub mod store;
pub mod trail;

pub use kinds::{PolicyKind, Sample};
pub use store::{NewProposal, PolicyStore, TrailQuery};

use crate::events::EventsError;
use crate::events::validate::FieldError;
use crate::identity::service::IdentityError;

/// Why a policy operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// No such kind, version or proposal.
    #[error("{0}")]
    NotFound(String),
    /// Not allowed (the author reviewing their own proposal, a missing
    /// permission).
    #[error("{0}")]
    Forbidden(String),
    /// A field is wrong.
    #[error("{}: {}", .0.path, .0.reason)]
    Invalid(FieldError),
    /// Based on a version that is no longer in force, decided already, or
    /// lost a race with another decision: nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// The proposal expired.
    #[error("{0}")]
    Gone(String),
    /// The events service or the ledger failed (fail closed).
    #[error(transparent)]
    Events(#[from] EventsError),
    /// The identity service failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl From<sea_orm::DbErr> for PolicyError {
    fn from(e: sea_orm::DbErr) -> Self {
        PolicyError::Events(e.into())
    }
}

impl From<crate::ledger::LedgerError> for PolicyError {
    fn from(e: crate::ledger::LedgerError) -> Self {
        PolicyError::Events(e.into())
    }
}

pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(FieldError { path: path.into(), reason: reason.into() })
}

/// The version in force of `kind` and its content, read straight from the
/// store's table (for readers without the store: compliance checks,
/// dry-runs of another kind). `None` before the kind's first version.
pub async fn in_force(
    conn: &impl sea_orm::ConnectionTrait,
    kind: &str,
) -> Result<Option<(u64, serde_json::Value)>, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(crate::storage::stmt_for(
            conn.get_database_backend(),
            "SELECT version, content FROM policy_versions WHERE kind = ? ORDER BY version DESC LIMIT 1",
            vec![kind.into()],
        ))
        .await?;
    let Some(r) = row else { return Ok(None) };
    let content = serde_json::from_str(&r.try_get::<String>("", "content")?).unwrap_or_default();
    Ok(Some((r.try_get::<i64>("", "version")?.max(0) as u64, content)))
}
