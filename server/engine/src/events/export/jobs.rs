//! Background exports and the end of every export.
//!
//! A background export writes its file under the exports directory while
//! its progress is polled; only the user who started it sees it, and its
//! file is deleted after 24 hours. Every export, background or streamed,
//! ends in [`ExportJobs::complete`]: the manifest is signed with the
//! ledger's key, kept as `<id>.manifest`, and the export is recorded in the
//! ledger (`audit.export.completed` with the manifest, or
//! `audit.export.failed`). If that record cannot be committed the file is
//! discarded: an export the ledger does not know of is not handed out.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use uuid::Uuid;

use super::run::{ExportProgress, PreparedExport};
use super::{ExportFormat, manifest_note};
use crate::events::Events;
use crate::events::model::{ExportJob, ExportManifest, Outcome};
use crate::events::own::Requester;
use crate::events::own::{OwnAction, OwnEvent};
use crate::jobs::{Job, JobKind, Registry};

/// Files of finished exports are deleted after this long.
const FILE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Finished jobs kept in memory, and of one principal.
const KEPT: usize = 200;
const KEPT_PER_OWNER: usize = 20;

/// Background exports in the job registry.
struct Export;

impl JobKind for Export {
    type Info = (ExportFormat, Option<u64>);
    type Progress = ExportProgress;
    type Output = (String, ExportManifest);
}

/// Why a background export's file cannot be handed out.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No such export of this user's.
    #[error("no such export of yours")]
    NotFound,
    /// Still running, or failed.
    #[error("the export has not finished")]
    NotReady,
    /// Deleted after 24 hours.
    #[error("the file was deleted (exports are kept 24 hours)")]
    Gone,
}

/// The exports of this process.
pub struct ExportJobs {
    dir: PathBuf,
    jobs: Registry<Export>,
    formats: Arc<dyn super::ExportFormats>,
}

impl std::fmt::Debug for ExportJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportJobs").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl ExportJobs {
    /// Exports under `dir` (created when first needed), written in the
    /// formats `formats` makes.
    pub fn new(dir: PathBuf, formats: Arc<dyn super::ExportFormats>) -> ExportJobs {
        ExportJobs { dir, jobs: Registry::with_owner_bound(KEPT, KEPT_PER_OWNER), formats }
    }

    /// The formats exports are written in.
    pub fn formats(&self) -> &dyn super::ExportFormats {
        &*self.formats
    }

    fn manifest_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.manifest"))
    }

    /// Who an export belongs to, kept beside its manifest (streamed exports
    /// have no job, and manifests outlive restarts).
    fn owner_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.owner"))
    }

    fn file_path(&self, id: Uuid, format: ExportFormat) -> PathBuf {
        self.dir.join(format!("{id}.{}", format.ext()))
    }

    /// Deletes export files older than the TTL (manifests stay).
    fn sweep(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "manifest" || x == "owner") {
                    continue;
                }
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|a| a > FILE_TTL);
                if old {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }

    /// Starts a background export; returns its first status.
    /// `hold` (a slot of the caller's bounds) is kept until the export ends.
    pub fn start(
        self: &Arc<Self>,
        events: Arc<Events>,
        prepared: PreparedExport,
        who: Requester,
        hold: impl Send + 'static,
    ) -> ExportJob {
        self.sweep();
        let (id, format, name) = (prepared.spec().id, prepared.spec().format, prepared.file_name());
        let jobs = self.clone();
        let owner = who.owner.clone();
        let (job, _) = self.jobs.spawn(Some(id), &owner, (format, prepared.total()), hold, move |job| async move {
            let path = jobs.file_path(id, format);
            let part = path.with_extension("part");
            let dir = jobs.dir.clone();
            let progress = job.progress.clone();
            let formats = jobs.formats.clone();
            let run = tokio::task::spawn_blocking(move || -> Result<ExportManifest, String> {
                crate::storage::make_private_dir(&dir)
                    .map_err(|e| format!("cannot create the exports directory: {e}"))?;
                let mut file =
                    crate::storage::create_private_file(&part).map_err(|e| format!("cannot create the file: {e}"))?;
                let m = prepared.run(&*formats, &mut file, &progress).map_err(|e| e.to_string())?;
                file.sync_all().map_err(|e| format!("cannot write the file: {e}"))?;
                std::fs::rename(&part, &path).map_err(|e| format!("cannot write the file: {e}"))?;
                Ok(m)
            })
            .await
            .unwrap_or_else(|e| Err(format!("the export stopped: {e}")));
            if run.is_err() {
                let _ = tokio::fs::remove_file(jobs.file_path(id, format).with_extension("part")).await;
            }
            let done = jobs.complete(&events, id, format, &who, run).await;
            done.map(|m| (name, m))
        });
        view(&job)
    }

    /// Waits up to `timeout` for the running background exports to end.
    pub async fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        self.jobs.wait_idle(timeout).await
    }

    /// A background export's status, for its owner only.
    pub fn status(&self, owner: &str, id: Uuid) -> Option<ExportJob> {
        self.jobs.get_owned(owner, id).map(|j| view(&j))
    }

    /// Asks a running export of `owner` to stop.
    pub fn cancel(&self, owner: &str, id: Uuid) -> bool {
        match self.jobs.get_owned(owner, id) {
            Some(job) => {
                job.progress.cancel.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// A finished export's file: path, name and media type.
    pub fn file(&self, owner: &str, id: Uuid) -> Result<(PathBuf, String, &'static str), FileError> {
        let job = self.jobs.get_owned(owner, id).ok_or(FileError::NotFound)?;
        let Some(Ok((name, _))) = job.outcome() else {
            return Err(FileError::NotReady);
        };
        let format = job.info.0;
        let path = self.file_path(id, format);
        if !path.is_file() {
            return Err(FileError::Gone);
        }
        Ok((path, name, format.content_type()))
    }

    /// An export's signed manifest, for the export's owner only (any
    /// export that ended here, background or streamed).
    pub async fn manifest(&self, owner: &str, id: Uuid) -> Option<String> {
        let who = tokio::fs::read_to_string(self.owner_path(id)).await.ok()?;
        if who != owner {
            return None;
        }
        tokio::fs::read_to_string(self.manifest_path(id)).await.ok()
    }

    /// Ends an export: signs and keeps the manifest and records the export
    /// in the ledger (fail closed: no record, no file).
    pub async fn complete(
        &self,
        events: &Events,
        id: Uuid,
        format: ExportFormat,
        who: &Requester,
        result: Result<ExportManifest, String>,
    ) -> Result<ExportManifest, String> {
        if let Ok(m) = &result {
            let note = manifest_note(m, events.ledger().keys().signer());
            let path = self.manifest_path(id);
            let (dir, owner_path, owner) = (self.dir.clone(), self.owner_path(id), who.owner.clone());
            let manifest_path = path.clone();
            let kept = tokio::task::spawn_blocking(move || {
                crate::storage::make_private_dir(&dir)?;
                crate::storage::write_private_file(&owner_path, owner.as_bytes())?;
                crate::storage::write_private_file(&manifest_path, note.as_bytes())
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            if let Err(e) = kept {
                tracing::error!(error = %e, path = %path.display(), "cannot keep an export manifest");
            }
        }
        if let Err(e) = record(events, id, format, who, &result).await {
            tracing::error!(error = %e, export = %id, "an export's record could not be committed");
            let _ = tokio::fs::remove_file(self.file_path(id, format)).await;
            let _ = tokio::fs::remove_file(self.manifest_path(id)).await;
            let _ = tokio::fs::remove_file(self.owner_path(id)).await;
            return Err("the export could not be recorded in the ledger; its file was discarded".into());
        }
        result
    }
}

/// Records an export's end in the ledger: `audit.export.completed` with
/// the manifest, or `audit.export.failed` with the reason.
pub async fn record(
    events: &Events,
    id: Uuid,
    format: ExportFormat,
    who: &Requester,
    result: &Result<ExportManifest, String>,
) -> Result<(), crate::events::EventsError> {
    let (action, outcome, details) = match result {
        Ok(m) => (OwnAction::ExportCompleted, Outcome::Success, serde_json::to_value(m).unwrap_or_default()),
        Err(e) => {
            (OwnAction::ExportFailed, Outcome::Failure, serde_json::json!({ "format": format.ext(), "error": e }))
        }
    };
    let event = OwnEvent::new(action, who.actor.clone(), who.channel)
        .outcome(outcome)
        .resource("export", Some(id.to_string()))
        .request(who.request_id.clone())
        .details(details);
    events.record_own(event).await.map(|_| ())
}

fn view(j: &Job<Export>) -> ExportJob {
    let (format, total) = j.info;
    let (error, file_name, manifest) = match j.outcome() {
        None => (None, None, None),
        Some(Ok((name, m))) => (None, Some(name), Some(m)),
        Some(Err(e)) => (Some(e), None, None),
    };
    ExportJob {
        id: j.id,
        format: format.ext().into(),
        state: j.state(),
        rows: j.progress.rows.load(Ordering::Relaxed),
        total,
        bytes: j.progress.bytes.load(Ordering::Relaxed),
        error,
        file_name,
        manifest,
    }
}
