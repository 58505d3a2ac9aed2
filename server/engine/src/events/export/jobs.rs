//! Background exports and the end of every export.
//!
//! A background export writes its file under the exports directory while
//! its progress is polled; only the user who started it sees it, and its
//! file is deleted after 24 hours. Every export, background or streamed,
//! ends in [`ExportJobs::complete`]: the export is recorded in the ledger
//! (`audit.export.completed` with the manifest, or `audit.export.failed`),
//! then its manifest, signed with the ledger's key, is kept in the
//! database (the export's row of `jobs`; manifests kept as
//! `<id>.manifest` files by earlier versions are still read). If the
//! record cannot be committed the file is discarded and no manifest kept:
//! an export the ledger does not know of is not handed out.
//!
//! Several replicas: a background export's progress and outcome are in
//! its job's row, so any replica answers a poll; its file is uploaded to
//! the object store (`<prefix>/exports/`) when one is configured for
//! exports, so any replica serves the download (else only the replica
//! that wrote it, or all of them if the exports directory is shared). The
//! store's copies are deleted after 24 hours like the local files.

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
use crate::jobs::{Job, JobKind, JobStore, Place, Registry, Snapshot};
use crate::objstore::{Kind, Remote, Source};

/// Files of finished exports are deleted after this long.
const FILE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Finished jobs kept in this process's memory, and of one principal (every
/// job is also a row in `jobs`).
const KEPT: usize = 200;
const KEPT_PER_OWNER: usize = 20;

/// Background exports in the job registry.
struct Export;

impl JobKind for Export {
    const KIND: &'static str = "export";
    type Info = (ExportFormat, Option<u64>);
    type Progress = ExportProgress;
    type Output = (String, ExportManifest);
}

/// Streamed exports' rows (their manifests only).
const STREAMED: &str = "export-streamed";

impl Snapshot for ExportProgress {
    fn save(&self) -> serde_json::Value {
        serde_json::json!({ "rows": self.rows.load(Ordering::Relaxed), "bytes": self.bytes.load(Ordering::Relaxed) })
    }

    fn load(saved: &serde_json::Value) -> ExportProgress {
        let n = |k: &str| saved.get(k).and_then(serde_json::Value::as_u64).unwrap_or_default();
        let p = ExportProgress::default();
        p.rows.store(n("rows"), Ordering::Relaxed);
        p.bytes.store(n("bytes"), Ordering::Relaxed);
        p
    }

    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
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
    /// Written by another replica, and this one reads no store for exports.
    #[error(
        "the file was written by another replica and is kept only there: turn on object_store.exports (or share the exports directory) so that every replica serves it, or try again (another request may reach that replica)"
    )]
    Elsewhere,
    /// Written by another replica whose upload to the store did not happen.
    #[error(
        "the file was written by another replica and is not in the object store (its upload failed; that replica's log says why): try again (another request may reach that replica)"
    )]
    NotUploaded,
    /// The object store or the database did not answer.
    #[error("{0}")]
    Unavailable(String),
}

/// Background exports: this process's, and (through their rows) every
/// replica's.
pub struct ExportJobs {
    dir: PathBuf,
    jobs: Registry<Export>,
    formats: Arc<dyn super::ExportFormats>,
    /// Where finished files are uploaded for the other replicas.
    remote: Option<Arc<Remote>>,
    /// A sweep of the store runs.
    sweeping: std::sync::atomic::AtomicBool,
}

/// Clears a flag when dropped.
struct Clear<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
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
        ExportJobs {
            dir,
            jobs: Registry::with_owner_bound(KEPT, KEPT_PER_OWNER),
            formats,
            remote: None,
            sweeping: Default::default(),
        }
    }

    /// The same, with jobs and manifests kept in `store` for every replica
    /// and finished files uploaded to `remote`.
    pub fn shared(mut self, store: Option<JobStore>, remote: Option<Arc<Remote>>) -> ExportJobs {
        self.jobs = self.jobs.shared(store);
        self.remote = remote;
        self
    }

    fn store(&self) -> Option<&JobStore> {
        self.jobs.store()
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

    /// The name of export `id`'s file in the store when `uri` is where
    /// this store keeps it (`<prefix>/exports/<id>.<ext>`); `None` for any
    /// other object, which is neither served nor deleted as an export.
    fn remote_name(remote: &Remote, id: Uuid, uri: &str) -> Option<String> {
        let name = uri.rsplit('/').next()?;
        let ext = name.strip_prefix(&format!("{id}."))?;
        ExportFormat::parse(ext)?;
        (remote.uri(Kind::Exports, name) == uri).then(|| name.to_owned())
    }

    /// Deletes the store's copies of files older than the TTL, oldest
    /// first (every 10 minutes and at each export's start; one sweep at a
    /// time per replica; two replicas deleting the same one is harmless).
    async fn sweep_remote(&self) {
        let (Some(store), Some(remote)) = (self.store(), &self.remote) else { return };
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let _done = Clear(&self.sweeping);
        let old = match store.files_older_than(FILE_TTL.as_micros() as i64, 50).await {
            Ok(old) => old,
            Err(e) => return tracing::debug!(error = %e, "cannot list old export files"),
        };
        for (id, uri) in old {
            let deleted = match Self::remote_name(remote, id, &uri) {
                Some(name) => remote.delete(&name, &uri).await,
                // Not an export's object: forget it, touch nothing.
                None => Err(format!("{uri} is not where this store keeps exports; left alone")),
            };
            if let Err(e) = &deleted {
                tracing::warn!(error = %e, export = %id, "an old export was not deleted from the object store");
            }
            // Either way the row stops naming it: one that cannot be deleted
            // does not hold up the others (a lifecycle rule on the prefix is
            // the backstop).
            if let Err(e) = store.set_file(id, None).await {
                tracing::debug!(error = %e, export = %id, "cannot update an export's row");
            }
        }
    }

    /// Deletes export files older than the TTL, here and in the store.
    pub async fn sweep_files(self: &Arc<Self>) {
        let local = self.clone();
        let _ = tokio::task::spawn_blocking(move || local.sweep()).await;
        self.sweep_remote().await;
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
    pub async fn start(
        self: &Arc<Self>,
        events: Arc<Events>,
        prepared: PreparedExport,
        who: Requester,
        hold: impl Send + 'static,
    ) -> ExportJob {
        self.sweep();
        let sweeper = self.clone();
        tokio::spawn(async move { sweeper.sweep_remote().await });
        let (id, format, name) = (prepared.spec().id, prepared.spec().format, prepared.file_name());
        let jobs = self.clone();
        let owner = who.owner.clone();
        let (job, _) = self
            .jobs
            .spawn(Some(id), &owner, (format, prepared.total()), hold, move |job| async move {
                let path = jobs.file_path(id, format);
                let part = path.with_extension("part");
                let dir = jobs.dir.clone();
                let progress = job.progress.clone();
                let formats = jobs.formats.clone();
                let run = tokio::task::spawn_blocking(move || -> Result<ExportManifest, String> {
                    crate::storage::make_private_dir(&dir)
                        .map_err(|e| format!("cannot create the exports directory: {e}"))?;
                    let mut file = crate::storage::create_private_file(&part)
                        .map_err(|e| format!("cannot create the file: {e}"))?;
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
                if done.is_ok() {
                    jobs.upload(id, format, &events).await;
                }
                done.map(|m| (name, m))
            })
            .await;
        view(&job)
    }

    /// Uploads a finished file for the other replicas (a failure leaves it
    /// served by this replica only, logged).
    async fn upload(&self, id: Uuid, format: ExportFormat, events: &Events) {
        let (Some(store), Some(remote)) = (self.store(), &self.remote) else { return };
        let path = self.file_path(id, format);
        let name = format!("{id}.{}", format.ext());
        match remote.upload(Kind::Exports, &name, &path, events.ledger().now_us()).await {
            Ok(uri) => {
                if let Err(e) = store.set_file(id, Some(&uri)).await {
                    tracing::warn!(error = %e, export = %id, "an uploaded export could not be catalogued");
                }
            }
            Err(e) => tracing::warn!(error = %e, export = %id, "an export could not be uploaded to the object store"),
        }
    }

    /// Waits up to `timeout` for the running background exports to end.
    pub async fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        self.jobs.wait_idle(timeout).await
    }

    /// A background export's status, for its owner only, wherever it runs.
    pub async fn status(&self, owner: &str, id: Uuid) -> Result<Option<ExportJob>, sea_orm::DbErr> {
        Ok(self.jobs.get_owned(owner, id).await?.map(|j| view(&j)))
    }

    /// Asks a running export of `owner` to stop, wherever it runs.
    pub async fn cancel(&self, owner: &str, id: Uuid) -> Result<bool, sea_orm::DbErr> {
        self.jobs.cancel(owner, id).await
    }

    /// A finished export's file: where to read it, its name and media type.
    pub async fn file(&self, owner: &str, id: Uuid) -> Result<(Source, String, &'static str), FileError> {
        let unavailable = |e: sea_orm::DbErr| {
            tracing::warn!(error = %e, export = %id, "cannot read an export's job");
            FileError::Unavailable("the database did not answer; try again shortly".into())
        };
        let job = self.jobs.get_owned(owner, id).await.map_err(unavailable)?.ok_or(FileError::NotFound)?;
        let Some(Ok((name, _))) = job.outcome() else {
            return Err(FileError::NotReady);
        };
        let format = job.info.0;
        let path = self.file_path(id, format);
        if path.is_file() {
            return Ok((Source::Local(path), name, format.content_type()));
        }
        match &job.place {
            Place::Here => Err(FileError::Gone),
            Place::Replica { name: replica, file_uri, ended_us_ago } => {
                if ended_us_ago.is_some_and(|t| t > FILE_TTL.as_micros() as i64) {
                    return Err(FileError::Gone);
                }
                let (Some(remote), Some(uri)) = (&self.remote, file_uri) else {
                    tracing::info!(export = %id, replica, "an export's file was asked of a replica that does not have it");
                    return Err(if self.remote.is_some() { FileError::NotUploaded } else { FileError::Elsewhere });
                };
                let Some(key) = Self::remote_name(remote, id, uri) else {
                    tracing::warn!(export = %id, uri, "an export's row names an object outside this store's exports");
                    return Err(FileError::Elsewhere);
                };
                let source =
                    Remote::source(Some(remote), &self.dir, &key, ("object_store", uri)).await.map_err(|e| {
                        tracing::warn!(export = %id, error = %e, "an export could not be read from the object store");
                        FileError::Unavailable("the object store did not hand the file out; try again shortly".into())
                    })?;
                Ok((source, name, format.content_type()))
            }
        }
    }

    /// An export's signed manifest, for the export's owner only (any
    /// export that ended on any replica, background or streamed; manifests
    /// kept as files before they were kept in the database are still read).
    pub async fn manifest(&self, owner: &str, id: Uuid) -> Result<Option<String>, sea_orm::DbErr> {
        if let Some(store) = self.store()
            && let Some(note) = store.note(id, owner).await?
        {
            return Ok(Some(note));
        }
        let Ok(who) = tokio::fs::read_to_string(self.owner_path(id)).await else { return Ok(None) };
        if who != owner {
            return Ok(None);
        }
        Ok(tokio::fs::read_to_string(self.manifest_path(id)).await.ok())
    }

    /// Ends an export: records it in the ledger, then keeps its signed
    /// manifest in the database (fail closed: no record, no file and no
    /// manifest).
    pub async fn complete(
        &self,
        events: &Events,
        id: Uuid,
        format: ExportFormat,
        who: &Requester,
        result: Result<ExportManifest, String>,
    ) -> Result<ExportManifest, String> {
        if let Err(e) = record(events, id, format, who, &result).await {
            tracing::error!(error = %e, export = %id, "an export's record could not be committed");
            let _ = tokio::fs::remove_file(self.file_path(id, format)).await;
            return Err("the export could not be recorded in the ledger; its file was discarded".into());
        }
        if let (Ok(m), Some(store)) = (&result, self.store()) {
            let note = manifest_note(m, events.ledger().keys().signer());
            if let Err(e) = store.set_note(STREAMED, id, &who.owner, Some(&note)).await {
                tracing::error!(error = %e, export = %id, "cannot keep an export manifest");
            }
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
    let (state, outcome) = j.snapshot();
    let (error, file_name, manifest) = match outcome {
        None => (None, None, None),
        Some(Ok((name, m))) => (None, Some(name), Some(m)),
        Some(Err(e)) => (Some(e), None, None),
    };
    ExportJob {
        id: j.id,
        format: format.ext().into(),
        state,
        rows: j.progress.rows.load(Ordering::Relaxed),
        total,
        bytes: j.progress.bytes.load(Ordering::Relaxed),
        error,
        file_name,
        manifest,
    }
}
