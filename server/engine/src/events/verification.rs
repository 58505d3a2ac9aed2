//! Verifying the ledger and recording that it was verified: one operation
//! for the API's jobs, the scheduled verification and anything else that
//! checks the whole log or a range of it.
//!
//! Every verification ends in an `audit.verify` event: `success` (intact),
//! `failure` (the report names the first bad seq) or `error` (it could not
//! run), with the requested scope (both ends null: the whole ledger).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use uuid::Uuid;

use super::model::Outcome;
use super::own::Requester;
use super::own::{OwnAction, OwnEvent};
use super::{Events, EventsError};
use crate::jobs::{Job, JobKind, JobStore, Registry, Snapshot};
use crate::ledger::LedgerError;
use crate::ledger::verify::{Progress, VerifyReport, VerifyScope};

/// Finished verification jobs kept in this process's memory (every job is
/// also a row in `jobs`, which the other replicas read).
const KEPT: usize = 50;

impl Events {
    /// Verifies `scope` of the ledger, reporting progress, and records the
    /// verification's end (`audit.verify` by `who`; `job` names the
    /// background job it ran in). A verification whose end cannot be
    /// recorded is still returned (the report is true either way) and the
    /// failure to record it is logged.
    pub async fn verify_and_record(
        &self,
        scope: VerifyScope,
        who: &Requester,
        job: Option<Uuid>,
        progress: impl FnMut(Progress) + Send,
    ) -> Result<VerifyReport, LedgerError> {
        let result = self.ledger().verify(scope, progress).await;
        let outcome = match &result {
            Ok(r) if r.is_intact() => Outcome::Success,
            Ok(_) => Outcome::Failure,
            Err(_) => Outcome::Error,
        };
        let asked = json!({ "from_seq": scope.from_seq, "to_seq": scope.to_seq });
        let details = match &result {
            Ok(r) => json!({ "job": job, "scope": asked, "report": r }),
            Err(e) => json!({ "job": job, "scope": asked, "error": e.to_string() }),
        };
        let event = OwnEvent::new(OwnAction::Verify, who.actor.clone(), who.channel)
            .outcome(outcome)
            .resource("ledger", Some(self.ledger().origin().into()))
            .request(who.request_id.clone())
            .details(details);
        if let Err(e) = self.record_own(event).await {
            tracing::error!(error = %e, "could not record the end of a verification");
        }
        result
    }

    /// Checks that `scope` can run on this ledger: seqs start at 1, the
    /// range is not reversed and does not start past the head (such a
    /// range would be recorded as a verification that could not run).
    /// Errors name the field.
    pub async fn check_verify_scope(&self, scope: VerifyScope) -> Result<(), EventsError> {
        let bad = |field: &str, reason: String| super::service::invalid(field, reason);
        if scope.from_seq == Some(0) {
            return Err(bad("from_seq", "seqs start at 1".into()));
        }
        if let (Some(a), Some(b)) = (scope.from_seq, scope.to_seq)
            && b < a
        {
            return Err(bad("to_seq", "must be at least from_seq (seqs start at 1)".into()));
        }
        let head = self.ledger().head().await?.seq;
        if let Some(from) = scope.from_seq
            && from > head
        {
            return Err(bad("from_seq", format!("is beyond the ledger's last entry (seq {head})")));
        }
        Ok(())
    }
}

/// Verification jobs in the job registry.
pub struct Verification;

/// A running verification's progress.
#[derive(Debug, Default)]
pub struct VerifyProgress {
    /// Entries checked so far.
    pub checked: AtomicU64,
    /// Entries to check.
    pub total: AtomicU64,
}

impl Snapshot for VerifyProgress {
    fn save(&self) -> serde_json::Value {
        json!({ "checked": self.checked.load(Ordering::Relaxed), "total": self.total.load(Ordering::Relaxed) })
    }

    fn load(saved: &serde_json::Value) -> VerifyProgress {
        let n = |k: &str| saved.get(k).and_then(serde_json::Value::as_u64).unwrap_or_default();
        VerifyProgress { checked: AtomicU64::new(n("checked")), total: AtomicU64::new(n("total")) }
    }
}

impl JobKind for Verification {
    const KIND: &'static str = "verification";
    type Info = VerifyScope;
    type Progress = VerifyProgress;
    type Output = VerifyReport;
}

/// Verifications run in the background: this process's, and (through
/// their rows) every replica's.
#[derive(Debug)]
pub struct Verifications {
    jobs: Registry<Verification>,
}

impl Default for Verifications {
    fn default() -> Verifications {
        Verifications::new(None)
    }
}

impl Verifications {
    /// Verifications kept in this process and, with `store`, shared with
    /// the other replicas.
    pub fn new(store: Option<JobStore>) -> Verifications {
        Verifications { jobs: Registry::with_owner_bound(KEPT, 10).shared(store) }
    }

    /// Starts verifying `scope` for `who`; `hold` (a slot of the caller's
    /// bounds) is kept until the verification ends. The handle resolves
    /// when it has ended and been recorded.
    pub async fn start(
        &self,
        events: Arc<Events>,
        scope: VerifyScope,
        who: Requester,
        hold: impl Send + 'static,
    ) -> (Arc<Job<Verification>>, tokio::task::JoinHandle<()>) {
        let owner = who.owner.clone();
        self.jobs
            .spawn(None, &owner, scope, hold, move |job| async move {
                let progress = job.progress.clone();
                let result = events
                    .verify_and_record(scope, &who, Some(job.id), move |p: Progress| {
                        progress.checked.store(p.checked, Ordering::Relaxed);
                        progress.total.store(p.total, Ordering::Relaxed);
                    })
                    .await;
                if let Ok(r) = &result {
                    job.progress.checked.store(r.entries_checked, Ordering::Relaxed);
                    job.progress.total.fetch_max(r.entries_checked, Ordering::Relaxed);
                }
                result.map_err(|e| e.to_string())
            })
            .await
    }

    /// Waits up to `timeout` for the running verifications to end.
    pub async fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        self.jobs.wait_idle(timeout).await
    }

    /// A verification job (any caller allowed to verify may follow one),
    /// wherever it runs.
    pub async fn get(&self, id: Uuid) -> Result<Option<Arc<Job<Verification>>>, sea_orm::DbErr> {
        self.jobs.get(id).await
    }
}
