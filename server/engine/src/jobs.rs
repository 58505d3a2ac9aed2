//! Jobs: long work (an export, a verification) that runs in the
//! background while its progress is polled.
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
    /// in the shared store, and how long ago it ended.
    Replica {
        /// The replica's name.
        name: String,
        /// Where its file is in the shared object store, once uploaded.
        file_uri: Option<String>,
        /// How long ago (µs, the database's clock) it ended.
        ended_us_ago: Option<i64>,
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
        state_of(&self.lock())
    }

    /// The outcome, once finished (`Err` holds why it failed).
    pub fn outcome(&self) -> Option<Result<K::Output, String>> {
        self.lock().clone()
    }

    /// The state and the outcome read together: a job seen between two
    /// separate reads could show `failed` with no error.
    pub fn snapshot(&self) -> (JobState, Option<Result<K::Output, String>>) {
        let outcome = self.lock().clone();
        (state_of(&outcome), outcome)
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

/// The `jobs` table, as one replica writes and reads it. Its times
/// (`started_at`, `heartbeat_at`, `finished_at`) are the database server's
/// clock, so that a replica's clock running behind or ahead does not make
/// another replica's jobs look stopped or alive.
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
    /// How long ago (µs, the database's clock) the row was last updated.
    age_us: i64,
    /// How long ago (µs) the job ended.
    pub ended_us_ago: Option<i64>,
    /// Where its file is in the shared store.
    pub file_uri: Option<String>,
}

fn state_of<T>(outcome: &Option<Result<T, String>>) -> JobState {
    match outcome {
        None => JobState::Running,
        Some(Ok(_)) => JobState::Done,
        Some(Err(_)) => JobState::Failed,
    }
}

fn outcome_json<T: Serialize>(outcome: &Result<T, String>) -> String {
    match outcome {
        Ok(v) => serde_json::json!({ "ok": v }),
        Err(e) => serde_json::json!({ "error": e }),
    }
    .to_string()
}

/// The database server's clock in µs, as SQL.
fn db_now(backend: sea_orm::DbBackend) -> &'static str {
    match backend {
        sea_orm::DbBackend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
        _ => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
    }
}

impl JobStore {
    /// Jobs in `ledger`'s database, run by replica `replica`.
    pub fn new(ledger: Ledger, replica: &str) -> JobStore {
        JobStore { ledger, replica: replica.to_owned() }
    }

    /// `sql` with `NOW` replaced by the database's clock (µs).
    fn sql(&self, sql: &str, values: Vec<sea_orm::Value>) -> sea_orm::Statement {
        let b = self.ledger.db().backend();
        stmt_for(b, &sql.replace("NOW", db_now(b)), values)
    }

    async fn exec(&self, sql: &str, values: Vec<sea_orm::Value>) -> Result<u64, DbErr> {
        Ok(self.ledger.db().conn().execute_raw(self.sql(sql, values)).await?.rows_affected())
    }

    async fn insert(&self, kind: &str, id: Uuid, owner: &str, info: String, progress: String) -> Result<(), DbErr> {
        self.exec(
            "INSERT INTO jobs (id, kind, owner, replica, info, progress, started_at, heartbeat_at) \
             VALUES (?, ?, ?, ?, ?, ?, NOW, NOW)",
            vec![
                id.to_string().into(),
                kind.into(),
                owner.into(),
                self.replica.clone().into(),
                info.into(),
                progress.into(),
            ],
        )
        .await?;
        // Old rows go as new ones come (an indexed delete; a failure only
        // leaves them for the next one).
        if let Err(e) =
            self.exec("DELETE FROM jobs WHERE note IS NULL AND heartbeat_at < NOW - ?", vec![ROW_TTL_US.into()]).await
        {
            tracing::debug!(error = %e, "old job rows could not be deleted");
        }
        Ok(())
    }

    /// Saves a running job's progress; whether it was asked to stop.
    /// One statement a beat: the update answers the cancel flag.
    async fn beat(&self, id: Uuid, progress: String) -> Result<bool, DbErr> {
        let row = self
            .ledger
            .db()
            .conn()
            .query_one_raw(self.sql(
                "UPDATE jobs SET progress = ?, heartbeat_at = NOW WHERE id = ? AND outcome IS NULL RETURNING cancel",
                vec![progress.into(), id.to_string().into()],
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "cancel")).transpose()?.unwrap_or(0) != 0)
    }

    async fn finish(&self, id: Uuid, progress: String, outcome: String) -> Result<(), DbErr> {
        self.exec(
            "UPDATE jobs SET progress = ?, outcome = ?, heartbeat_at = NOW, finished_at = NOW WHERE id = ?",
            vec![progress.into(), outcome.into(), id.to_string().into()],
        )
        .await
        .map(|_| ())
    }

    /// A job's row (`kind`, `id`).
    pub async fn row(&self, kind: &str, id: Uuid) -> Result<Option<JobRow>, DbErr> {
        let Some(r) = self
            .ledger
            .db()
            .conn()
            .query_one_raw(self.sql(
                "SELECT owner, replica, info, progress, outcome, NOW - heartbeat_at AS age_us, \
                 NOW - finished_at AS ended_us_ago, file_uri FROM jobs WHERE id = ? AND kind = ?",
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
            age_us: r.try_get("", "age_us")?,
            ended_us_ago: r.try_get("", "ended_us_ago")?,
            file_uri: r.try_get("", "file_uri")?,
        }))
    }

    /// Asks the replica running job `id` of `owner` to stop it; false when
    /// `owner` has no such running job.
    async fn request_cancel(&self, kind: &str, owner: &str, id: Uuid) -> Result<bool, DbErr> {
        let n = self
            .exec(
                "UPDATE jobs SET cancel = 1 WHERE id = ? AND kind = ? AND owner = ? AND outcome IS NULL",
                vec![id.to_string().into(), kind.into(), owner.into()],
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

    /// Files in the shared store of jobs that ended more than `older_than`
    /// (µs) ago, oldest first, up to `limit`: id and URI.
    pub async fn files_older_than(&self, older_than: i64, limit: u64) -> Result<Vec<(Uuid, String)>, DbErr> {
        let rows = self
            .ledger
            .db()
            .conn()
            .query_all_raw(self.sql(
                "SELECT id, file_uri FROM jobs WHERE file_uri IS NOT NULL AND finished_at < NOW - ? \
                 ORDER BY finished_at LIMIT ?",
                vec![older_than.into(), (limit as i64).into()],
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
        self.exec(
            "INSERT INTO jobs (id, kind, owner, replica, info, progress, outcome, started_at, heartbeat_at, \
             finished_at, note) VALUES (?, ?, ?, ?, 'null', '{}', '{\"error\":\"no job\"}', NOW, NOW, NOW, ?) \
             ON CONFLICT (id) DO UPDATE SET note = excluded.note",
            vec![
                id.to_string().into(),
                kind.into(),
                owner.into(),
                self.replica.clone().into(),
                note.map(str::to_owned).into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Job `id`'s note, for `owner` only.
    pub async fn note(&self, id: Uuid, owner: &str) -> Result<Option<String>, DbErr> {
        let row = self
            .ledger
            .db()
            .conn()
            .query_one_raw(
                self.sql("SELECT note FROM jobs WHERE id = ? AND owner = ?", vec![id.to_string().into(), owner.into()]),
            )
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
    /// The task updating the job's row, stopped with the job.
    beat: Option<tokio::task::AbortHandle>,
}

impl<K: JobKind> Drop for Finisher<K> {
    fn drop(&mut self) {
        if let Some(beat) = &self.beat {
            beat.abort();
        }
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

    /// Keeps `job` (running), forgetting the oldest finished jobs beyond
    /// the bounds; only through `spawn`, which makes sure it ends.
    fn insert(&self, job: Arc<Job<K>>) {
        let owner = job.owner.as_str();
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
        jobs.insert(job.id, job);
    }

    /// A new job, not yet kept.
    fn new_job(id: Option<Uuid>, owner: &str, info: K::Info) -> Arc<Job<K>> {
        Arc::new(Job {
            id: id.unwrap_or_else(Uuid::now_v7),
            owner: owner.to_owned(),
            info,
            progress: Arc::default(),
            place: Place::Here,
            outcome: Mutex::new(None),
        })
    }

    /// Starts a job: `work` gets the job (for its progress) and returns its
    /// outcome, which the job keeps. `hold` (a slot of the caller's
    /// bounds) is released after the outcome is kept. The handle resolves
    /// when the job has ended. When shared, the job's row is written
    /// before the job is kept or started (a poll on another replica finds
    /// it; a caller that goes away meanwhile leaves nothing running); a
    /// row that cannot be written leaves the job known here only (logged).
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
        let job = Self::new_job(id, owner, info);
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
        // From here on nothing awaits before the task owns the job's end.
        self.insert(job.clone());
        self.running.send_modify(|n| *n += 1);
        let beat = store.clone().map(|s| tokio::spawn(beat(s, job.clone())).abort_handle());
        let finisher = Finisher { job: job.clone(), running: self.running.clone(), store: store.clone(), beat };
        let run = work(job.clone());
        let task = tokio::spawn(async move {
            let _hold = hold;
            let finisher = finisher;
            let outcome = run.await;
            if let Some(b) = &finisher.beat {
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
        Ok(Self::from_row(id, row))
    }

    /// A job by id, only for the one who started it.
    pub async fn get_owned(&self, owner: &str, id: Uuid) -> Result<Option<Arc<Job<K>>>, DbErr> {
        Ok(self.get(id).await?.filter(|j| j.owner == owner))
    }

    /// Asks job `id` of `owner` to stop, wherever it runs; false when no
    /// such job runs.
    pub async fn cancel(&self, owner: &str, id: Uuid) -> Result<bool, DbErr> {
        if let Some(job) = self.lock().get(&id).cloned() {
            if job.owner != owner || job.state() != JobState::Running {
                return Ok(false);
            }
            job.progress.cancel();
            return Ok(true);
        }
        match &self.store {
            Some(store) => store.request_cancel(K::KIND, owner, id).await,
            None => Ok(false),
        }
    }

    /// A job as its row tells it. A row that does not parse (written by
    /// another version) is no job.
    fn from_row(id: Uuid, row: JobRow) -> Option<Arc<Job<K>>> {
        let info: K::Info = match serde_json::from_str(&row.info) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, job = %id, "a job's row could not be read");
                return None;
            }
        };
        let progress = serde_json::from_str(&row.progress).unwrap_or(serde_json::Value::Null);
        let outcome = match row.outcome.as_deref().map(serde_json::from_str::<serde_json::Value>) {
            None if row.age_us > STALE_US => Some(Err(format!(
                "the job stopped: replica {} stopped updating it ({} s ago)",
                row.replica,
                row.age_us / 1_000_000
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
            place: Place::Replica { name: row.replica, file_uri: row.file_uri, ended_us_ago: row.ended_us_ago },
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

    fn add(r: &Registry<Count>, owner: &str, info: String) -> Arc<Job<Count>> {
        let job = Registry::<Count>::new_job(None, owner, info);
        r.insert(job.clone());
        job
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
        let a = add(&r, "user:a", "first".into());
        let b = add(&r, "user:b", "second".into());
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

        let c = add(&r, "user:a", "third".into());
        assert_eq!(r.len(), 3);
        // Full: the oldest finished (a) goes, then b; the running c and d stay.
        let d = add(&r, "user:a", "fourth".into());
        assert!(
            r.get(a.id).await.unwrap().is_none()
                && r.get(b.id).await.unwrap().is_some()
                && r.get(c.id).await.unwrap().is_some()
                && r.get(d.id).await.unwrap().is_some()
        );
        let e = add(&r, "user:a", "fifth".into());
        assert!(r.get(b.id).await.unwrap().is_none());
        // Only running jobs left: none is forgotten, the registry grows.
        let f = add(&r, "user:a", "sixth".into());
        for id in [c.id, d.id, e.id, f.id] {
            assert!(r.get(id).await.unwrap().is_some());
        }
        assert_eq!(r.len(), 4);
    }

    #[tokio::test]
    async fn one_owner_cannot_push_out_the_others_finished_jobs() {
        let r: Registry<Count> = Registry::with_owner_bound(10, 2);
        let victim = add(&r, "user:v", "report".into());
        victim.finish(Ok(1));
        for _ in 0..50 {
            add(&r, "user:flood", "x".into()).finish(Ok(0));
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
