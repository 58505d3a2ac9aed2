//! The sequencer: the one task that owns the chain head. It collects queued
//! appends into batches and commits them, pipelined (on PostgreSQL through
//! its committer task), answering each caller after its own commit.

use super::commit::*;
use super::*;
use crate::ledger::pg_direct;

/// Collects the next batch: waits for one request (the one [`top_up`] left
/// in `carry` first), then takes whatever else is queued, up to
/// `max_batch` events. None once stopped and drained.
///
/// A request whose caller stopped waiting (its commit timeout passed, or
/// the client went away) is dropped unsealed: what was answered 503 does
/// not land later unless it was already being committed.
pub(super) async fn next_batch(
    inner: &Inner,
    rx: &mut mpsc::Receiver<AppendRequest>,
    stop: &mut watch::Receiver<bool>,
    carry: &mut Option<AppendRequest>,
) -> Option<Vec<AppendRequest>> {
    let first = loop {
        // (Taken and returned in one poll: a `select!` that drops this
        // future cannot lose it.)
        let next = match carry.take() {
            Some(r) => Some(r),
            None => tokio::select! {
                biased;
                req = rx.recv() => req,
                _ = stopped(stop) => {
                    // Drain what was queued before the stop, then end.
                    rx.close();
                    rx.recv().await
                }
            },
        };
        let r = next?;
        if r.reply.is_closed() {
            abandoned(&r);
            continue;
        }
        break r;
    };
    let mut n = first.items.len();
    let mut batch = vec![first];
    while n < inner.cfg.max_batch {
        match rx.try_recv() {
            Ok(r) if r.reply.is_closed() => abandoned(&r),
            Ok(r) => {
                n += r.items.len();
                batch.push(r);
            }
            Err(_) => break,
        }
    }
    mark(&mut batch, |t| &mut t.taken);
    Some(batch)
}

/// A batch of under this many events that waited for the commit before it
/// is topped up ([`top_up`]) and sealed again.
const TOP_UP_BELOW: usize = 64;

/// What a topped-up batch holds at most (events): everything in it is
/// sealed while no commit runs (about 1 ms for 256), where what is left
/// for the next batch is sealed while this one commits.
const TOP_UP_MAX: usize = 256;

/// Adds to a waiting batch of under [`TOP_UP_BELOW`] events the requests
/// queued meanwhile, up to [`TOP_UP_MAX`] events in all (callers who gave
/// up left out); a request that would go past it is left in `carry`, the
/// next batch's first. Whether it took any.
fn top_up(
    inner: &Inner,
    rx: &mut mpsc::Receiver<AppendRequest>,
    batch: &mut Vec<AppendRequest>,
    carry: &mut Option<AppendRequest>,
) -> bool {
    let mut n: usize = batch.iter().map(|r| r.items.len()).sum();
    if n >= TOP_UP_BELOW || carry.is_some() {
        return false;
    }
    let limit = TOP_UP_MAX.min(inner.cfg.max_batch);
    let before = batch.len();
    while n < limit {
        match rx.try_recv() {
            Ok(r) if r.reply.is_closed() => abandoned(&r),
            Ok(r) if n + r.items.len() > limit => {
                *carry = Some(r);
                break;
            }
            Ok(mut r) => {
                n += r.items.len();
                r.timeline.taken = Some(std::time::Instant::now());
                batch.push(r);
            }
            Err(_) => break,
        }
    }
    batch.len() > before
}

/// Seals `batch` on `base` on a blocking thread (with, for PostgreSQL's
/// committer, its statement's parameters: `encode`); `None` after a panic
/// while sealing (the batch's callers see their replies dropped: a failed
/// commit).
async fn seal_off_thread(
    inner: &Arc<Inner>,
    base: Head,
    batch: Vec<AppendRequest>,
    encode: bool,
) -> Option<(Vec<AppendRequest>, Result<Sealed, LedgerError>, Option<pg_direct::OneStatementArgs>)> {
    // This is the work that overlaps with the in-flight commit, on a
    // blocking thread: a few ms of MACs and hashes for 1,000 events, which
    // on a runtime worker would hold up the tasks queued behind it there
    // (once, on PostgreSQL, the commit's own task, spawned from this worker
    // into its LIFO slot, which no other worker may take; on SQLite, on the
    // sequencer's own thread, the settling of the commit in flight). On
    // PostgreSQL the commit's statement's parameters are encoded here too
    // (about 0.7 ms for 845 events), not by the committer between one
    // commit's answer and the next statement, while PostgreSQL would wait.
    let (inner2, now) = (inner.clone(), inner.clock.now_us());
    let sealing = tokio::task::spawn_blocking(move || {
        let mut batch = batch;
        let sealed = seal_batch(&inner2.keys, now, base.clone(), &batch, &HashMap::new());
        // Sealed again (topped up): the first sealing's time is kept, so
        // that the wait for the commit before shows as `behind`.
        let at = std::time::Instant::now();
        for r in &mut batch {
            r.timeline.sealed.get_or_insert(at);
        }
        let args = match &sealed {
            // A batch whose parameters cannot be encoded (a value too long
            // for the protocol) is encoded again by the committer, which
            // says why.
            Ok(s) if encode => pg_one_statement_args(&inner2, s, &base).ok(),
            _ => None,
        };
        (batch, sealed, args)
    });
    match sealing.await {
        Ok(done) => Some(done),
        Err(e) => {
            if e.is_panic() {
                tracing::error!(error = %e, "sealing a batch stopped; its callers get an error");
                metrics::counter!("custos_ledger_commit_failures_total").increment(1);
            }
            None
        }
    }
}

fn abandoned(r: &AppendRequest) {
    metrics::counter!("custos_ledger_abandoned_entries_total").increment(r.items.len() as u64);
}

/// The batch without the requests whose callers gave up (counted).
fn without_abandoned(batch: Vec<AppendRequest>) -> Vec<AppendRequest> {
    batch
        .into_iter()
        .filter(|r| {
            let gone = r.reply.is_closed();
            if gone {
                abandoned(r);
            }
            !gone
        })
        .collect()
}

/// Answers every caller of a batch.
pub(super) fn reply(batch: Vec<AppendRequest>, result: Result<Vec<Vec<Receipt>>, LedgerError>) {
    let n: usize = batch.iter().map(|r| r.items.len()).sum();
    metrics::histogram!("custos_ledger_batch_entries").record(n as f64);
    match result {
        Ok(receipts) => {
            metrics::counter!("custos_ledger_entries_total").increment(n as u64);
            for (req, r) in batch.into_iter().zip(receipts) {
                let sent = std::time::Instant::now();
                req.timeline.record(sent);
                let _ = req.reply.send(Answer { result: Ok(r), sent });
            }
        }
        Err(e) => {
            metrics::counter!("custos_ledger_commit_failures_total").increment(1);
            tracing::error!(error = %e, entries = n, "ledger batch commit failed; every caller in it gets an error");
            for req in batch {
                // The error itself is not `Clone`; its callers learn the
                // reason when it is theirs to act on.
                let theirs = match &e {
                    LedgerError::ClockAhead { ahead_secs, limit_secs } => {
                        LedgerError::ClockAhead { ahead_secs: *ahead_secs, limit_secs: *limit_secs }
                    }
                    _ => LedgerError::CommitFailed,
                };
                let _ = req.reply.send(Answer { result: Err(theirs), sent: std::time::Instant::now() });
            }
        }
    }
}

/// A batch sealed on an expected head, being committed (on a blocking
/// thread for SQLite, by the committer task for PostgreSQL).
pub(super) struct InFlight {
    /// The head the batch leaves when it commits: the base for the next one.
    pub(super) after: Head,
    pub(super) done: Done,
}

/// How a commit in flight ends: its outcome, or `None` if the commit
/// stopped (a panic; its callers' replies are dropped).
pub(super) enum Done {
    /// SQLite: the blocking commit's task.
    Task(tokio::task::JoinHandle<CommitOutcome>),
    /// PostgreSQL: the committer's answer.
    Answer(tokio::sync::oneshot::Receiver<CommitOutcome>),
}

impl std::future::Future for Done {
    type Output = Option<CommitOutcome>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Done::Task(t) => std::pin::Pin::new(t).poll(cx).map(Result::ok),
            Done::Answer(a) => std::pin::Pin::new(a).poll(cx).map(Result::ok),
        }
    }
}

/// A task aborted when this is dropped: PostgreSQL's committer ends with
/// the sequencer, even one aborted (a test's stand-in for a kill).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A sealed batch for PostgreSQL's committer, and where its outcome goes.
pub(super) struct Job {
    batch: Vec<AppendRequest>,
    sealed: Sealed,
    prev: Head,
    /// The commit's statement's parameters, encoded while sealing (none:
    /// their encoding failed there; the committer encodes them again and
    /// says why).
    args: Option<pg_direct::OneStatementArgs>,
    answer: tokio::sync::oneshot::Sender<CommitOutcome>,
}

/// PostgreSQL's committer: commits the sealed batches the sequencer sends,
/// one after the other on the sequencer's connection. With two batches in
/// flight ([`depth`]), the next one is already waiting when a commit's
/// answer returns, and its statement goes out at once, from this same task: no
/// other task has to wake first (the sequencer answering callers, a task
/// spawned per batch; about 2 ms per commit on two busy cores). A batch one
/// of whose callers gave up while it waited is not committed as sealed
/// (the full path reseals it without them), nor is one sealed on a batch
/// that did not commit. A commit that panics drops the connection (its
/// state is unknown) and its callers' replies.
async fn run_pg_committer(inner: Arc<Inner>, pg: SharedPg, mut jobs: mpsc::Receiver<Job>) {
    use futures_util::FutureExt as _;
    /// Says the committer ended, also when it panics or is aborted.
    struct Ended(Arc<Inner>);
    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.committer_ended.store(true, std::sync::atomic::Ordering::Release);
        }
    }
    let _ended = Ended(inner.clone());
    // The head the last batch would have left had it committed, when it did
    // not: a batch sealed on it cannot commit as sealed, and is sent down
    // the full path without a trip for the head's lock.
    let mut failed: Option<Head> = None;
    while let Some(Job { mut batch, sealed, prev, args, answer }) = jobs.recv().await {
        let result = if failed.as_ref().is_some_and(|f| prev.is(f)) {
            Err(TryCommitError::Conflict)
        } else {
            let mut w = pg.lock().await;
            if batch.iter().any(|r| r.reply.is_closed()) {
                Err(TryCommitError::Abandoned)
            } else {
                let started = std::time::Instant::now();
                let committed =
                    std::panic::AssertUnwindSafe(w.commit_sealed(&inner, &sealed, &prev, args)).catch_unwind().await;
                metrics::histogram!("custos_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
                match committed {
                    Ok(result) => result,
                    Err(_) => {
                        w.discard();
                        failed = Some(sealed.head.clone());
                        tracing::error!("a commit stopped (panic); its callers get an error");
                        continue;
                    }
                }
            }
        };
        failed = result.is_err().then(|| sealed.head.clone());
        mark(&mut batch, |t| &mut t.committed);
        let _ = answer.send((batch, sealed.receipts, result));
    }
}

/// What a commit in flight hands back: the batch (for the replies), its
/// receipts, and whether it committed.
pub(super) type CommitOutcome = (Vec<AppendRequest>, Vec<Vec<Receipt>>, Result<(), TryCommitError>);

pub(super) enum Step {
    Settled(Option<CommitOutcome>),
    Batch(Option<Vec<AppendRequest>>),
}

/// How many sealed batches may be in flight at once. On PostgreSQL two:
/// the committer ([`run_pg_committer`]) finds batch N+1 waiting when N's
/// commit returns. On SQLite one: its commit is a blocking call on the
/// writer's connection, and N+1 is submitted once N has settled.
fn depth(conn: &Committer) -> usize {
    match conn {
        Committer::Postgres(_) => 2,
        Committer::Sqlite(_) => 1,
    }
}

/// The sequencer, pipelined: while batch N is committed (on SQLite,
/// inserted and fsynced on a blocking thread; on PostgreSQL, committed by
/// one statement on the sequencer's own connection), batch N+1 is sealed (on a
/// blocking thread) on the head N will leave. On SQLite N+1 is submitted
/// only after N has committed, and if it is small ([`TOP_UP_BELOW`]) it
/// first takes in what was queued meanwhile and is sealed again
/// ([`top_up`]); on PostgreSQL it is submitted at once, with
/// its statement's parameters encoded while sealing, and committed when N's
/// commit ends (see [`depth`]); with two in flight, the next batch is taken
/// from the queue once N has settled. If a batch before it failed,
/// if the database head is not the expected one (another process or
/// replica wrote), or if an event id is already committed, the batch takes
/// the full path instead (`commit_batch`: lock and read the head, verify
/// foreign entries, look up duplicates, reseal), once every batch before
/// it has settled. Callers are answered only after their own commit, in
/// order.
pub(super) async fn run_sequencer(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<AppendRequest>,
    mut trusted: Head,
    conn: Committer,
) {
    let mut stop = inner.stop.subscribe();
    let depth = depth(&conn);
    let committer = match &conn {
        Committer::Postgres(pg) => {
            let (jobs, rx) = mpsc::channel(depth);
            Some((jobs, AbortOnDrop(tokio::spawn(run_pg_committer(inner.clone(), pg.clone(), rx)))))
        }
        Committer::Sqlite(_) => None,
    };
    let jobs = committer.as_ref().map(|(jobs, _)| jobs.clone());
    let mut in_flight: std::collections::VecDeque<InFlight> = std::collections::VecDeque::new();
    // A request `top_up` had no room for: the next batch's first.
    let mut carry: Option<AppendRequest> = None;
    loop {
        // With the committer holding two batches (PostgreSQL), the next is
        // taken only once the first has settled: it could not be sent
        // sooner, and taken then it holds the callers answered meanwhile
        // (fuller batches, fewer commits: a third taken at once held only
        // what had come in by then, 845 events a commit on average in the
        // bench, against a limit, `max_batch`, of 1,000). It is sealed
        // while the second commits.
        let full = depth > 1 && in_flight.len() >= depth;
        let step = match in_flight.front_mut() {
            Some(f) if full => Step::Settled((&mut f.done).await),
            Some(f) => tokio::select! {
                biased;
                joined = &mut f.done => Step::Settled(joined),
                b = next_batch(&inner, &mut rx, &mut stop, &mut carry) => Step::Batch(b),
            },
            None => Step::Batch(next_batch(&inner, &mut rx, &mut stop, &mut carry).await),
        };
        match step {
            Step::Settled(joined) => {
                if let Some(f) = in_flight.pop_front() {
                    settle(&inner, f.after, joined, &mut trusted, &conn).await;
                }
            }
            Step::Batch(None) => break,
            Step::Batch(Some(batch)) => {
                let base = in_flight.back().map_or_else(|| trusted.clone(), |f| f.after.clone());
                // Sealed while the batch before commits.
                let encode = jobs.is_some();
                let Some((batch, sealed, args)) = seal_off_thread(&inner, base.clone(), batch, encode).await else {
                    continue;
                };
                // Room for this batch (the full path only once every batch
                // before it has settled: it reads the head they leave).
                let keep = if sealed.is_ok() { depth - 1 } else { 0 };
                let mut base_holds = true;
                let mut waited = false;
                while in_flight.len() > keep {
                    let Some(f) = in_flight.pop_front() else { break };
                    let joined = f.done.await;
                    base_holds &= settle(&inner, f.after, joined, &mut trusted, &conn).await;
                    waited = true;
                }
                // SQLite: a small batch that waited for the commit before
                // it takes what came in meanwhile, and is sealed again with
                // it (on the same head: the commit it waited for left it),
                // so that those callers wait for one commit, not two (after
                // a slow fsync: every request that came in during it).
                let (batch, sealed, args) = match sealed {
                    Ok(sealed) if waited && base_holds && depth == 1 => {
                        let mut batch = batch;
                        if top_up(&inner, &mut rx, &mut batch, &mut carry) {
                            match seal_off_thread(&inner, base.clone(), batch, encode).await {
                                Some(resealed) => resealed,
                                None => continue,
                            }
                        } else {
                            (batch, Ok(sealed), args)
                        }
                    }
                    sealed => (batch, sealed, args),
                };
                // Callers who gave up meanwhile: their events are dropped
                // unsealed (the rest is sealed afresh).
                let taken = batch.len();
                let batch = without_abandoned(batch);
                if batch.is_empty() {
                    continue;
                }
                let pruned = batch.len() != taken;
                match sealed {
                    Ok(sealed) if base_holds && !pruned => {
                        in_flight.push_back(submit(&conn, jobs.as_ref(), batch, sealed, base, args).await);
                    }
                    _ => {
                        // A batch still in flight was sealed on a head that
                        // will not hold either: it settles (by the full path)
                        // before this one.
                        while let Some(f) = in_flight.pop_front() {
                            let joined = f.done.await;
                            settle(&inner, f.after, joined, &mut trusted, &conn).await;
                        }
                        let (batch, result) = commit_batch(&inner, batch, &mut trusted, &conn).await;
                        reply(batch, result);
                    }
                }
            }
        }
    }
    while let Some(f) = in_flight.pop_front() {
        let joined = f.done.await;
        settle(&inner, f.after, joined, &mut trusted, &conn).await;
    }
    // Both senders gone, the committer's `recv` ends once it is idle.
    drop(jobs);
    if let Some((jobs, mut task)) = committer {
        drop(jobs);
        let _ = (&mut task.0).await;
    }
    if let Committer::Postgres(pg) = &conn {
        pg.lock().await.close().await;
    }
}

/// Starts committing a sealed batch on `prev`: on SQLite on a blocking
/// thread, on PostgreSQL by the committer (`jobs`).
pub(super) async fn submit(
    conn: &Committer,
    jobs: Option<&mpsc::Sender<Job>>,
    batch: Vec<AppendRequest>,
    sealed: Sealed,
    prev: Head,
    args: Option<pg_direct::OneStatementArgs>,
) -> InFlight {
    let after = sealed.head.clone();
    let mut batch = batch;
    mark(&mut batch, |t| &mut t.submitted);
    let done = match (conn, jobs) {
        (Committer::Sqlite(conn), _) => {
            let conn = conn.clone();
            Done::Task(tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
                let result = commit_sealed(&mut c, &sealed, &prev);
                metrics::histogram!("custos_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
                drop(c);
                let mut batch = batch;
                mark(&mut batch, |t| &mut t.committed);
                (batch, sealed.receipts, result)
            }))
        }
        (Committer::Postgres(_), jobs) => {
            let (answer, done) = tokio::sync::oneshot::channel();
            // Fails only if the committer ended (it never should): the
            // answer's sender is then dropped, which settles as a stopped
            // commit (its callers get an error).
            let sent = match jobs {
                Some(jobs) => jobs.send(Job { batch, sealed, prev, args, answer }).await.is_ok(),
                None => false,
            };
            if !sent {
                tracing::error!("the PostgreSQL committer has ended; the batch is not committed");
                metrics::counter!("custos_ledger_commit_failures_total").increment(1);
            }
            Done::Answer(done)
        }
    };
    InFlight { after, done }
}

/// Answers the callers of a finished in-flight batch. Returns whether the
/// ledger now ends at `after` (so that a batch sealed on it may be submitted).
pub(super) async fn settle(
    inner: &Arc<Inner>,
    after: Head,
    joined: Option<CommitOutcome>,
    trusted: &mut Head,
    conn: &Committer,
) -> bool {
    match joined {
        Some((batch, receipts, Ok(()))) => {
            let (seq, root) = (after.seq, after.frontier.root());
            inner.committed.send_if_modified(|last| {
                let changed = seq > last.0;
                if changed {
                    *last = (seq, root);
                }
                changed
            });
            super::heard::raise(&inner.heard, seq);
            *trusted = after;
            reply(batch, Ok(receipts));
            true
        }
        Some((batch, _, Err(TryCommitError::Other(e)))) if !matches!(e, LedgerError::UnknownKey { .. }) => {
            reply(batch, Err(e));
            false
        }
        // The head moved, an id was a duplicate, a key is new, or a caller
        // gave up while the batch waited: full path, without the callers
        // who gave up by now (their events dropped unsealed, on both
        // databases: what was answered with a timeout does not land).
        Some((batch, _, Err(_))) => {
            let batch = without_abandoned(batch);
            if batch.is_empty() {
                return false;
            }
            let (batch, result) = commit_batch(inner, batch, trusted, conn).await;
            reply(batch, result);
            false
        }
        // The commit stopped (a panic): its callers' replies are dropped,
        // which they see as a failed commit. SQLite's transaction rolls
        // back on unwinding. On PostgreSQL the committer drops the
        // connection: a full path's open transaction is rolled back (its
        // lock on the head row, which other replicas wait for, goes with
        // it), but a fast commit's one statement, once sent, runs in a
        // transaction of its own and may still commit: its entries are then
        // stored although their callers got an error, and the next batch,
        // sealed on a head that is no longer the database's, takes the full
        // path, which checks them as foreign entries (a retry with the same
        // ids gets their receipts).
        None => false,
    }
}

/// Resolves once the stop flag is set.
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
