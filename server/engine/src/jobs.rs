//! The jobs of this process: long work (an export, a verification) that
//! runs in the background while its progress is polled.
//!
//! One registry for every kind of job: it hands out ids, keeps who started
//! each job, its kind's progress and its outcome, and forgets the oldest
//! finished jobs beyond the number it keeps (running jobs are never
//! forgotten; how many may run at once is bounded by the caller's slots).
//! What the work did is in the ledger, recorded by the work itself. Who
//! started a job is its owner: a principal (`kind:id`,
//! [`crate::events::Requester::owner`]).
//!
//! With a [`JobStore`], every job is also a row in the database (`jobs`):
//! written when it starts, its progress every [`BEAT`] while it runs, its
//! outcome when it ends. A replica that does not run a job answers its
//! status from that row (behind a load balancer, each poll may reach
//! another replica, and a restarted process still knows its jobs); a
//! running job whose row has not been updated for [`STALE_US`] is reported
//! failed (its replica stopped). Cancelling one sets a flag its replica
//! reads at its next beat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use custos_model::JobState;
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::ledger::Ledger;
use crate::storage::stmt_for;

/// How often a running job's row is updated.
pub const BEAT: std::time::Duration = std::time::Duration::from_secs(2);
/// A running job whose row is older than this is reported failed.
pub const STALE_US: i64 = 15_000_000;
/// Finished jobs' rows are deleted after this long (µs); rows holding a
/// note (an export's signed manifest) are kept.
const ROW_TTL_US: i64 = 30 * 86_400 * 1_000_000;

/// A kind of job: what it shows while it runs and what it ends with.
pub trait JobKind: Send + Sync + 'static {
    /// Its name in the `jobs` table.
    const KIND: &'static str;
    /// What is fixed when the job starts (an export's format and size).
    type Info: Serialize + DeserializeOwned + Send + Sync;
    /// Updated by the work while it runs (shared with it).
    type Progress: Snapshot + Default + Send + Sync;
    /// What a finished job has to show.
    type Output: Clone + Serialize + DeserializeOwned + Send + Sync;
}

/// A job's progress as kept in its row.
pub trait Snapshot: Sized {
    /// The progress now.
    fn save(&self) -> serde_json::Value;
    /// Progress as saved (what does not parse counts as none).
    fn load(saved: &serde_json::Value) -> Self;
    /// Asks the work to stop (a kind that cannot stop ignores it).
    fn cancel(&self) {}
}

/// Where a job runs or ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In this process.
    Here,
    /// Known from its row: the replica that ran it, where its file is kept
    /// in the shared store, and when it ended (µs).
    Replica {
        /// The replica's name.
        name: String,
        /// Where its file is in the shared object store, once uploaded.
        file_uri: Option<String>,
        /// When it ended.
        finished_at: Option<i64>,
    },
}

/// One job.
pub struct Job<K: JobKind> {
    /// Its id (UUIDv7: ids sort by start).
    pub id: Uuid,
    /// Who started it (`kind:id`).
    pub owner: String,
    /// Fixed at the start.
    pub info: K::Info,
    /// Shared with the work.
    pub progress: Arc<K::Progress>,
    /// Here, or on which replica.
    pub place: Place,
    outcome: Mutex<Option<Result<K::Output, String>>>,
}

impl<K: JobKind> Job<K> {
    /// Running, done or failed.
    pub fn state(&self) -> JobState {
        match &*self.lock() {
            None => JobState::Running,
            Some(Ok(_)) => JobState::Done,
            Some(Err(_)) => JobState::Failed,
        }
    }

    /// The outcome, once finished (`Err` holds why it failed).
    pub fn outcome(&self) -> Option<Result<K::Output, String>> {
        self.lock().clone()
    }

    /// Records how the job ended. The first outcome stays.
    pub fn finish(&self, outcome: Result<K::Output, String>) {
        let mut o = self.lock();
        if o.is_none() {
            *o = Some(outcome);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Result<K::Output, String>>> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `jobs` table, as one replica writes and reads it.
#[derive(Clone)]
pub struct JobStore {
    ledger: Ledger,
    replica: String,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore").field("replica", &self.replica).finish_non_exhaustive()
    }
}

/// A job's row.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// Who started it.
    pub owner: String,
    /// The replica that ran it.
    pub replica: String,
    info: String,
    progress: String,
    outcome: Option<String>,
    heartbeat_at: i64,
    /// When it ended (µs).
    pub finished_at: Option<i64>,
    /// Where its file is in the shared store.
    pub file_uri: Option<String>,
}

fn outcome_json<T: Serialize>(outcome: &Result<T, String>) -> String {
    match outcome {
        Ok(v) => serde_json::json!({ "ok": v }),
        Err(e) => serde_json::json!({ "error": e }),
    }
    .to_string()
}

impl JobStore {
    /// Jobs in `ledger`'s database, run by replica `replica`.
    pub fn new(ledger: Ledger, replica: &str) -> JobStore {
        JobStore { ledger, replica: replica.to_owned() }
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The ledger's time (µs).
    pub fn now_us(&self) -> i64 {
        self.ledger.now_us()
    }

    async fn exec(&self, sql: &str, values: Vec<sea_orm::Value>) -> Result<u64, DbErr> {
        let db = self.ledger.db();
        Ok(db.conn().execute_raw(stmt_for(db.backend(), sql, values)).await?.rows_affected())
    }

    async fn insert(&self, kind: &str, id: Uuid, owner: &str, info: String, progress: String) -> Result<(), DbErr> {
        let now = self.ledger.now_us();
        self.exec(
            "INSERT INTO jobs (id, kind, owner, replica, info, progress, started_at, heartbeat_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                id.to_string().into(),
                kind.into(),
                owner.into(),
                self.replica.clone().into(),
                info.into(),
                progress.into(),
                now.into(),
                now.into(),
            ],
        )
        .await?;
        // Old rows go as new ones come (an indexed delete).
        self.exec(
            "DELETE FROM jobs WHERE kind = ? AND heartbeat_at < ? AND note IS NULL",
            vec![kind.into(), (now - ROW_TTL_US).into()],
        )
        .await?;
        Ok(())
    }

    /// Saves a running job's progress; whether it was asked to stop.
    async fn beat(&self, id: Uuid, progress: String) -> Result<bool, DbErr> {
        self.exec(
            "UPDATE jobs SET progress = ?, heartbeat_at = ? WHERE id = ? AND outcome IS NULL",
            vec![progress.into(), self.ledger.now_us().into(), id.to_string().into()],
        )
        .await?;
        let db = self.ledger.db();
        let row = db
            .conn()
            .query_one_raw(stmt_for(db.backend(), "SELECT cancel FROM jobs WHERE id = ?", vec![id.to_string().into()]))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "cancel")).transpose()?.unwrap_or(0) != 0)
    }

    async fn finish(&self, id: Uuid, progress: String, outcome: String) -> Result<(), DbErr> {
        let now = self.ledger.now_us();
        self.exec(
            "UPDATE jobs SET progress = ?, outcome = ?, heartbeat_at = ?, finished_at = ? WHERE id = ?",
            vec![progress.into(), outcome.into(), now.into(), now.into(), id.to_string().into()],
        )
        .await
        .map(|_| ())
    }

    /// A job's row (`kind`, `id`).
    pub async fn row(&self, kind: &str, id: Uuid) -> Result<Option<JobRow>, DbErr> {
        let db = self.ledger.db();
        let Some(r) = db
            .conn()
            .query_one_raw(stmt_for(
                db.backend(),
                "SELECT owner, replica, info, progress, outcome, heartbeat_at, finished_at, file_uri \
                 FROM jobs WHERE id = ? AND kind = ?",
                vec![id.to_string().into(), kind.into()],
            ))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(JobRow {
            owner: r.try_get("", "owner")?,
            replica: r.try_get("", "replica")?,
            info: r.try_get("", "info")?,
            progress: r.try_get("", "progress")?,
            outcome: r.try_get("", "outcome")?,
            heartbeat_at: r.try_get("", "heartbeat_at")?,
            finished_at: r.try_get("", "finished_at")?,
            file_uri: r.try_get("", "file_uri")?,
        }))
    }

    /// Asks the replica running job `id` of `owner` (any owner: `None`)
    /// to stop it; false when there is no such running job.
    async fn request_cancel(&self, kind: &str, owner: Option<&str>, id: Uuid) -> Result<bool, DbErr> {
        let n = self
            .exec(
                "UPDATE jobs SET cancel = 1 WHERE id = ? AND kind = ? AND (owner = ? OR ?) AND outcome IS NULL",
                vec![id.to_string().into(), kind.into(), owner.unwrap_or_default().into(), owner.is_none().into()],
            )
            .await?;
        Ok(n > 0)
    }

    /// Records where job `id`'s file is kept in the shared store (`None`:
    /// nowhere any more).
    pub async fn set_file(&self, id: Uuid, uri: Option<&str>) -> Result<(), DbErr> {
        self.exec(
            "UPDATE jobs SET file_uri = ? WHERE id = ?",
            vec![uri.map(str::to_owned).into(), id.to_string().into()],
        )
        .await
        .map(|_| ())
    }

    /// Files in the shared store of `kind`'s jobs that ended before
    /// `before` (µs), up to `limit`: id and URI.
    pub async fn files_ended_before(&self, kind: &str, before: i64, limit: u64) -> Result<Vec<(Uuid, String)>, DbErr> {
        let db = self.ledger.db();
        let rows = db
            .conn()
            .query_all_raw(stmt_for(
                db.backend(),
                "SELECT id, file_uri FROM jobs WHERE kind = ? AND file_uri IS NOT NULL AND finished_at < ? LIMIT ?",
                vec![kind.into(), before.into(), (limit as i64).into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("", "id")?;
                let id = Uuid::parse_str(&id).map_err(|e| DbErr::Custom(e.to_string()))?;
                Ok((id, r.try_get("", "file_uri")?))
            })
            .collect()
    }

    /// Keeps a signed note of job `id` (an export's manifest) for `owner`:
    /// on its row, or on a row of `kind` made for it (work that ran
    /// without a job, such as a streamed export). `None` removes it.
    pub async fn set_note(&self, kind: &str, id: Uuid, owner: &str, note: Option<&str>) -> Result<(), DbErr> {
        let now = self.ledger.now_us();
        self.exec(
            "INSERT INTO jobs (id, kind, owner, replica, info, progress, outcome, started_at, heartbeat_at, \
             finished_at, note) VALUES (?, ?, ?, ?, 'null', '{}', '{\"error\":\"no job\"}', ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET note = excluded.note",
            vec![
                id.to_string().into(),
                kind.into(),
                owner.into(),
                self.replica.clone().into(),
                now.into(),
                now.into(),
                now.into(),
                note.map(str::to_owned).into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Job `id`'s note, for `owner` only.
    pub async fn note(&self, id: Uuid, owner: &str) -> Result<Option<String>, DbErr> {
        let db = self.ledger.db();
        let row = db
            .conn()
            .query_one_raw(stmt_for(
                db.backend(),
                "SELECT note FROM jobs WHERE id = ? AND owner = ?",
                vec![id.to_string().into(), owner.into()],
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>>("", "note")).transpose()?.flatten())
    }
}

/// Keeps a job's row up to date while its work runs: its progress every
/// [`BEAT`], and a cancel asked on another replica.
async fn beat<K: JobKind>(store: JobStore, job: Arc<Job<K>>) {
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match store.beat(job.id, job.progress.save().to_string()).await {
            Ok(true) => job.progress.cancel(),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, job = %job.id, "a job's progress could not be saved"),
        }
    }
}

/// Writes a job's end to its row (a few tries: a replica that cannot
/// would leave it to be reported as stopped).
async fn save_end<K: JobKind>(store: &JobStore, job: &Job<K>) {
    let Some(outcome) = job.outcome() else { return };
    let outcome = outcome_json(&outcome);
    for attempt in 0..3 {
        match store.finish(job.id, job.progress.save().to_string(), outcome.clone()).await {
            Ok(()) => return,
            Err(e) if attempt == 2 => {
                tracing::warn!(error = %e, job = %job.id, "a job's end could not be saved for the other replicas")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
}

/// The jobs of one kind in this process.
pub struct Registry<K: JobKind> {
    jobs: Mutex<HashMap<Uuid, Arc<Job<K>>>>,
    kept: usize,
    per_owner: usize,
    /// How many jobs' tasks are running (shutdown waits for none).
    running: tokio::sync::watch::Sender<usize>,
    /// The rows other replicas read, if shared.
    store: Option<JobStore>,
}

/// Ends a job when its task ends, however it ends: a task that panics or
/// is aborted leaves a failed job, not one that runs forever.
struct Finisher<K: JobKind> {
    job: Arc<Job<K>>,
    running: tokio::sync::watch::Sender<usize>,
    store: Option<JobStore>,
}

impl<K: JobKind> Drop for Finisher<K> {
    fn drop(&mut self) {
        let ended = self.job.state() != JobState::Running;
        self.job.finish(Err("the job stopped before its end".into()));
        // An end the task did not save (a panic, an abort): saved now if a
        // runtime is still there, else its row is reported stale.
        if !ended && let (Some(store), Ok(rt)) = (self.store.clone(), tokio::runtime::Handle::try_current()) {
            let job = self.job.clone();
            rt.spawn(async move { save_end(&store, &job).await });
        }
        self.running.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl<K: JobKind> std::fmt::Debug for Registry<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("jobs", &self.lock().len()).field("kept", &self.kept).finish()
    }
}

impl<K: JobKind> Registry<K> {
    /// A registry that remembers at most `kept` finished jobs.
    pub fn new(kept: usize) -> Registry<K> {
        Registry::with_owner_bound(kept, kept)
    }

    /// At most `kept` finished jobs, and at most `per_owner` of one owner's:
    /// an owner's new job forgets that owner's oldest finished ones first,
    /// so one principal's flood of jobs cannot push out everyone else's
    /// results.
    pub fn with_owner_bound(kept: usize, per_owner: usize) -> Registry<K> {
        Registry {
            jobs: Mutex::default(),
            kept: kept.max(1),
            per_owner: per_owner.clamp(1, kept.max(1)),
            running: tokio::sync::watch::Sender::new(0),
            store: None,
        }
    }

    /// The same, with every job also kept in `store` for other replicas.
    pub fn shared(mut self, store: Option<JobStore>) -> Registry<K> {
        self.store = store;
        self
    }

    /// The store jobs are shared through, if any.
    pub fn store(&self) -> Option<&JobStore> {
        self.store.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Job<K>>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new running job with id `id` (a fresh UUIDv7 when `None`); only
    /// through `spawn`, which makes sure it ends.
    fn insert(&self, id: Option<Uuid>, owner: &str, info: K::Info) -> Arc<Job<K>> {
        let job = Arc::new(Job {
            id: id.unwrap_or_else(Uuid::now_v7),
            owner: owner.to_owned(),
            info,
            progress: Arc::default(),
            place: Place::Here,
            outcome: Mutex::new(None),
        });
        let mut jobs = self.lock();
        let mut own: Vec<Uuid> = jobs
            .iter()
            .filter(|(_, j)| j.owner == owner && j.state() != JobState::Running)
            .map(|(id, _)| *id)
            .collect();
        if own.len() >= self.per_owner {
            own.sort(); // UUIDv7: oldest first
            for id in own.iter().take(own.len() + 1 - self.per_owner) {
                jobs.remove(id);
            }
        }
        if jobs.len() >= self.kept {
            let mut finished: Vec<Uuid> =
                jobs.iter().filter(|(_, j)| j.state() != JobState::Running).map(|(id, _)| *id).collect();
            finished.sort(); // UUIDv7: oldest first
            let extra = jobs.len() + 1 - self.kept;
            for id in finished.into_iter().take(extra) {
                jobs.remove(&id);
            }
        }
        jobs.insert(job.id, job.clone());
        job
    }

    /// Starts a job: `work` gets the job (for its progress) and returns its
    /// outcome, which the job keeps. `hold` (a slot of the caller's
    /// bounds) is released after the outcome is kept. The handle resolves
    /// when the job has ended. When shared, the job's row is written
    /// before this returns (a poll on another replica finds it); a row
    /// that cannot be written leaves the job known here only (logged).
    pub async fn spawn<F, Fut>(
        &self,
        id: Option<Uuid>,
        owner: &str,
        info: K::Info,
        hold: impl Send + 'static,
        work: F,
    ) -> (Arc<Job<K>>, tokio::task::JoinHandle<()>)
    where
        F: FnOnce(Arc<Job<K>>) -> Fut,
        Fut: std::future::Future<Output = Result<K::Output, String>> + Send + 'static,
    {
        let job = self.insert(id, owner, info);
        self.running.send_modify(|n| *n += 1);
        let store = match &self.store {
            Some(store) => {
                let info = serde_json::to_string(&job.info).unwrap_or_else(|_| "null".into());
                match store.insert(K::KIND, job.id, owner, info, job.progress.save().to_string()).await {
                    Ok(()) => Some(store.clone()),
                    Err(e) => {
                        tracing::warn!(error = %e, job = %job.id, "a job could not be shared with the other replicas");
                        None
                    }
                }
            }
            None => None,
        };
        let finisher = Finisher { job: job.clone(), running: self.running.clone(), store: store.clone() };
        let run = work(job.clone());
        let task = tokio::spawn(async move {
            let _hold = hold;
            let finisher = finisher;
            let beating = store.clone().map(|s| tokio::spawn(beat(s, finisher.job.clone())));
            let outcome = run.await;
            if let Some(b) = beating {
                b.abort();
            }
            finisher.job.finish(outcome);
            if let Some(store) = &store {
                save_end(store, &finisher.job).await;
            }
        });
        (job, task)
    }

    /// Waits up to `timeout` for every running job to end; false if some
    /// still run (shutdown: none is cut off while it records its end).
    pub async fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.running.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0)).await.is_ok()
    }

    /// A job by id, whoever started it: this process's, else (when shared)
    /// from its row.
    pub async fn get(&self, id: Uuid) -> Result<Option<Arc<Job<K>>>, DbErr> {
        if let Some(job) = self.lock().get(&id).cloned() {
            return Ok(Some(job));
        }
        let Some(store) = &self.store else { return Ok(None) };
        let Some(row) = store.row(K::KIND, id).await? else { return Ok(None) };
        Ok(Self::from_row(id, row, store.ledger.now_us()))
    }

    /// A job by id, only for the one who started it.
    pub async fn get_owned(&self, owner: &str, id: Uuid) -> Result<Option<Arc<Job<K>>>, DbErr> {
        Ok(self.get(id).await?.filter(|j| j.owner == owner))
    }

    /// Asks job `id` of `owner` to stop, wherever it runs; false when no
    /// such job runs.
    pub async fn cancel(&self, owner: &str, id: Uuid) -> Result<bool, DbErr> {
        if let Some(job) = self.lock().get(&id).cloned() {
            if job.owner != owner {
                return Ok(false);
            }
            job.progress.cancel();
            return Ok(true);
        }
        match &self.store {
            Some(store) => store.request_cancel(K::KIND, Some(owner), id).await,
            None => Ok(false),
        }
    }

    /// A job as its row tells it (`now`: the ledger's time, µs). A row that
    /// does not parse (written by another version) is no job.
    fn from_row(id: Uuid, row: JobRow, now: i64) -> Option<Arc<Job<K>>> {
        let info: K::Info = match serde_json::from_str(&row.info) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, job = %id, "a job's row could not be read");
                return None;
            }
        };
        let progress = serde_json::from_str(&row.progress).unwrap_or(serde_json::Value::Null);
        let outcome = match row.outcome.as_deref().map(serde_json::from_str::<serde_json::Value>) {
            None if now - row.heartbeat_at > STALE_US => Some(Err(format!(
                "the job stopped: replica {} stopped updating it ({} s ago)",
                row.replica,
                (now - row.heartbeat_at) / 1_000_000
            ))),
            None => None,
            Some(Ok(mut v)) => match (v.get_mut("ok").map(serde_json::Value::take), v.get("error")) {
                (Some(ok), _) => match serde_json::from_value(ok) {
                    Ok(out) => Some(Ok(out)),
                    Err(e) => Some(Err(format!("the job's result could not be read: {e}"))),
                },
                (None, Some(e)) => Some(Err(e.as_str().unwrap_or("failed").to_owned())),
                (None, None) => Some(Err("the job's result could not be read".into())),
            },
            Some(Err(e)) => Some(Err(format!("the job's result could not be read: {e}"))),
        };
        Some(Arc::new(Job {
            id,
            owner: row.owner,
            info,
            progress: Arc::new(K::Progress::load(&progress)),
            place: Place::Replica { name: row.replica, file_uri: row.file_uri, finished_at: row.finished_at },
            outcome: Mutex::new(outcome),
        }))
    }

    /// How many jobs are remembered in this process.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Count;
    impl JobKind for Count {
        const KIND: &'static str = "count";
        type Info = String;
        type Progress = AtomicU64;
        type Output = u64;
    }

    impl Snapshot for AtomicU64 {
        fn save(&self) -> serde_json::Value {
            self.load(Ordering::Relaxed).into()
        }
        fn load(saved: &serde_json::Value) -> AtomicU64 {
            AtomicU64::new(saved.as_u64().unwrap_or_default())
        }
    }

    #[tokio::test]
    async fn jobs_have_owners_states_and_forget_only_the_oldest_finished() {
        let r: Registry<Count> = Registry::new(3);
        let a = r.insert(None, "user:a", "first".into());
        let b = r.insert(None, "user:b", "second".into());
        a.progress.store(5, Ordering::Relaxed);
        assert_eq!(r.get(a.id).await.unwrap().unwrap().progress.load(Ordering::Relaxed), 5, "progress is shared");
        assert_eq!(a.state(), JobState::Running);
        assert!(r.get_owned("user:b", a.id).await.unwrap().is_none(), "another principal does not see the job");
        assert_eq!(r.get_owned("user:a", a.id).await.unwrap().unwrap().info, "first");

        a.finish(Ok(7));
        a.finish(Err("late".into()));
        assert_eq!(a.state(), JobState::Done);
        assert_eq!(a.outcome(), Some(Ok(7)), "the first outcome stays");
        b.finish(Err("disk full".into()));
        assert_eq!(b.state(), JobState::Failed);

        let c = r.insert(None, "user:a", "third".into());
        assert_eq!(r.len(), 3);
        // Full: the oldest finished (a) goes, then b; the running c and d stay.
        let d = r.insert(None, "user:a", "fourth".into());
        assert!(
            r.get(a.id).await.unwrap().is_none()
                && r.get(b.id).await.unwrap().is_some()
                && r.get(c.id).await.unwrap().is_some()
                && r.get(d.id).await.unwrap().is_some()
        );
        let e = r.insert(None, "user:a", "fifth".into());
        assert!(r.get(b.id).await.unwrap().is_none());
        // Only running jobs left: none is forgotten, the registry grows.
        let f = r.insert(None, "user:a", "sixth".into());
        for id in [c.id, d.id, e.id, f.id] {
            assert!(r.get(id).await.unwrap().is_some());
        }
        assert_eq!(r.len(), 4);
    }

    #[tokio::test]
    async fn one_owner_cannot_push_out_the_others_finished_jobs() {
        let r: Registry<Count> = Registry::with_owner_bound(10, 2);
        let victim = r.insert(None, "user:v", "report".into());
        victim.finish(Ok(1));
        for _ in 0..50 {
            r.insert(None, "user:flood", "x".into()).finish(Ok(0));
        }
        assert!(r.get_owned("user:v", victim.id).await.unwrap().is_some(), "the victim's finished job is still there");
        assert_eq!(r.len(), 3, "the flood kept only its own 2 newest");
    }

    #[tokio::test]
    async fn a_spawned_job_always_ends_and_shutdown_can_wait_for_it() {
        let r: Registry<Count> = Registry::new(10);
        let (ok, task) = r
            .spawn(None, "user:a", "fine".into(), (), |job| async move {
                job.progress.store(3, Ordering::Relaxed);
                Ok(3)
            })
            .await;
        task.await.unwrap();
        assert_eq!((ok.state(), ok.outcome()), (JobState::Done, Some(Ok(3))));
        // A task that panics leaves a failed job, not a running one.
        let (broken, task) = r
            .spawn(None, "user:a", "broken".into(), (), |_| async move {
                if true {
                    panic!("boom");
                }
                Ok(0)
            })
            .await;
        assert!(task.await.is_err());
        assert_eq!(broken.state(), JobState::Failed);
        // One that never ends is waited for, up to the timeout.
        let (stuck, _task) = r.spawn(None, "user:a", "stuck".into(), (), |_| std::future::pending()).await;
        assert!(!r.wait_idle(std::time::Duration::from_millis(20)).await, "a job still runs");
        assert_eq!(stuck.state(), JobState::Running);
        _task.abort();
        assert!(r.wait_idle(std::time::Duration::from_secs(5)).await, "aborted: it ended, as failed");
        assert_eq!(stuck.state(), JobState::Failed);
    }
}
