//! The jobs of this process: long work (an export, a verification) that
//! runs in the background while its progress is polled.
//!
//! One registry for every kind of job: it hands out ids, keeps who started
//! each job, its kind's progress and its outcome, and forgets the oldest
//! finished jobs beyond the number it keeps (running jobs are never
//! forgotten; how many may run at once is bounded by the caller's slots).
//! Jobs live in memory only: what they did is in the ledger, recorded by
//! the work itself. Who started a job is its owner: a principal
//! (`kind:id`, [`crate::events::Requester::owner`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use custos_model::JobState;
use uuid::Uuid;

/// A kind of job: what it shows while it runs and what it ends with.
pub trait JobKind: Send + Sync + 'static {
    /// What is fixed when the job starts (an export's format and size).
    type Info: Send + Sync;
    /// Updated by the work while it runs (shared with it).
    type Progress: Default + Send + Sync;
    /// What a finished job has to show.
    type Output: Clone + Send + Sync;
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

/// The jobs of one kind in this process.
pub struct Registry<K: JobKind> {
    jobs: Mutex<HashMap<Uuid, Arc<Job<K>>>>,
    kept: usize,
    per_owner: usize,
    /// How many jobs' tasks are running (shutdown waits for none).
    running: tokio::sync::watch::Sender<usize>,
}

/// Ends a job when its task ends, however it ends: a task that panics or
/// is aborted leaves a failed job, not one that runs forever.
struct Finisher<K: JobKind> {
    job: Arc<Job<K>>,
    running: tokio::sync::watch::Sender<usize>,
}

impl<K: JobKind> Drop for Finisher<K> {
    fn drop(&mut self) {
        self.job.finish(Err("the job stopped before its end".into()));
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
        }
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
    /// when the job has ended.
    pub fn spawn<F, Fut>(
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
        let finisher = Finisher { job: job.clone(), running: self.running.clone() };
        let run = work(job.clone());
        let task = tokio::spawn(async move {
            let _hold = hold;
            let finisher = finisher;
            let outcome = run.await;
            finisher.job.finish(outcome);
        });
        (job, task)
    }

    /// Waits up to `timeout` for every running job to end; false if some
    /// still run (shutdown: none is cut off while it records its end).
    pub async fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.running.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0)).await.is_ok()
    }

    /// A job by id, whoever started it.
    pub fn get(&self, id: Uuid) -> Option<Arc<Job<K>>> {
        self.lock().get(&id).cloned()
    }

    /// A job by id, only for the one who started it.
    pub fn get_owned(&self, owner: &str, id: Uuid) -> Option<Arc<Job<K>>> {
        self.get(id).filter(|j| j.owner == owner)
    }

    /// How many jobs are remembered.
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
        type Info = &'static str;
        type Progress = AtomicU64;
        type Output = u64;
    }

    #[test]
    fn jobs_have_owners_states_and_forget_only_the_oldest_finished() {
        let r: Registry<Count> = Registry::new(3);
        let a = r.insert(None, "user:a", "first");
        let b = r.insert(None, "user:b", "second");
        a.progress.store(5, Ordering::Relaxed);
        assert_eq!(r.get(a.id).unwrap().progress.load(Ordering::Relaxed), 5, "progress is shared");
        assert_eq!(a.state(), JobState::Running);
        assert!(r.get_owned("user:b", a.id).is_none(), "another principal does not see the job");
        assert_eq!(r.get_owned("user:a", a.id).unwrap().info, "first");

        a.finish(Ok(7));
        a.finish(Err("late".into()));
        assert_eq!(a.state(), JobState::Done);
        assert_eq!(a.outcome(), Some(Ok(7)), "the first outcome stays");
        b.finish(Err("disk full".into()));
        assert_eq!(b.state(), JobState::Failed);

        let c = r.insert(None, "user:a", "third");
        assert_eq!(r.len(), 3);
        // Full: the oldest finished (a) goes, then b; the running c and d stay.
        let d = r.insert(None, "user:a", "fourth");
        assert!(r.get(a.id).is_none() && r.get(b.id).is_some() && r.get(c.id).is_some() && r.get(d.id).is_some());
        let e = r.insert(None, "user:a", "fifth");
        assert!(r.get(b.id).is_none());
        // Only running jobs left: none is forgotten, the registry grows.
        let f = r.insert(None, "user:a", "sixth");
        assert!([c.id, d.id, e.id, f.id].iter().all(|id| r.get(*id).is_some()));
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn one_owner_cannot_push_out_the_others_finished_jobs() {
        let r: Registry<Count> = Registry::with_owner_bound(10, 2);
        let victim = r.insert(None, "user:v", "report");
        victim.finish(Ok(1));
        for _ in 0..50 {
            r.insert(None, "user:flood", "x").finish(Ok(0));
        }
        assert!(r.get_owned("user:v", victim.id).is_some(), "the victim's finished job is still there");
        assert_eq!(r.len(), 3, "the flood kept only its own 2 newest");
    }

    #[tokio::test]
    async fn a_spawned_job_always_ends_and_shutdown_can_wait_for_it() {
        let r: Registry<Count> = Registry::new(10);
        let (ok, task) = r.spawn(None, "user:a", "fine", (), |job| async move {
            job.progress.store(3, Ordering::Relaxed);
            Ok(3)
        });
        task.await.unwrap();
        assert_eq!((ok.state(), ok.outcome()), (JobState::Done, Some(Ok(3))));
        // A task that panics leaves a failed job, not a running one.
        let (broken, task) = r.spawn(None, "user:a", "broken", (), |_| async move {
            if true {
                panic!("boom");
            }
            Ok(0)
        });
        assert!(task.await.is_err());
        assert_eq!(broken.state(), JobState::Failed);
        // One that never ends is waited for, up to the timeout.
        let (stuck, _task) = r.spawn(None, "user:a", "stuck", (), |_| std::future::pending());
        assert!(!r.wait_idle(std::time::Duration::from_millis(20)).await, "a job still runs");
        assert_eq!(stuck.state(), JobState::Running);
        _task.abort();
        assert!(r.wait_idle(std::time::Duration::from_secs(5)).await, "aborted: it ended, as failed");
        assert_eq!(stuck.state(), JobState::Failed);
    }
}
