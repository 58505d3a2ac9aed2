//! The sequencer: the one task that owns the chain head. It collects queued
//! appends into batches and commits them, pipelined, answering each caller
//! after its own commit.

use super::commit::*;
use super::*;

/// Collects the next batch: waits for one request, then takes whatever else
/// is queued, up to `max_batch` events. None once stopped and drained.
///
/// A request whose caller stopped waiting (its commit timeout passed, or
/// the client went away) is dropped unsealed: what was answered 503 does
/// not land later unless it was already being committed.
pub(super) async fn next_batch(
    inner: &Inner,
    rx: &mut mpsc::Receiver<AppendRequest>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Vec<AppendRequest>> {
    let first = loop {
        let next = tokio::select! {
            biased;
            req = rx.recv() => req,
            _ = stopped(stop) => {
                // Drain what was queued before the stop, then end.
                rx.close();
                rx.recv().await
            }
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
    Some(batch)
}

fn abandoned(r: &AppendRequest) {
    metrics::counter!("custos_ledger_abandoned_entries_total").increment(r.items.len() as u64);
}

/// Answers every caller of a batch.
pub(super) fn reply(batch: Vec<AppendRequest>, result: Result<Vec<Vec<Receipt>>, LedgerError>) {
    let n: usize = batch.iter().map(|r| r.items.len()).sum();
    metrics::histogram!("custos_ledger_batch_entries").record(n as f64);
    match result {
        Ok(receipts) => {
            metrics::counter!("custos_ledger_entries_total").increment(n as u64);
            for (req, r) in batch.into_iter().zip(receipts) {
                let _ = req.reply.send(Ok(r));
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
                let _ = req.reply.send(Err(theirs));
            }
        }
    }
}

/// A batch sealed on an expected head, being committed (on a blocking
/// thread for SQLite, a task for PostgreSQL).
pub(super) struct InFlight {
    /// The head the batch leaves when it commits: the base for the next one.
    pub(super) after: Head,
    pub(super) task: tokio::task::JoinHandle<CommitOutcome>,
}

/// What a commit in flight hands back: the batch (for the replies), its
/// receipts, and whether it committed.
pub(super) type CommitOutcome = (Vec<AppendRequest>, Vec<Vec<Receipt>>, Result<(), TryCommitError>);

pub(super) enum Step {
    Settled(Result<CommitOutcome, tokio::task::JoinError>),
    Batch(Option<Vec<AppendRequest>>),
}

/// The sequencer, pipelined: while batch N is committed (on SQLite,
/// inserted and fsynced on a blocking thread; on PostgreSQL, copied and
/// committed on the sequencer's own connection), batch N+1 is sealed (on a
/// blocking thread) on the head N will leave. N+1 is submitted only after
/// N has committed. If N fails, if the database head is not the expected
/// one (another process or replica wrote), or if an event id is already
/// committed, the batch takes the full path instead (`commit_batch`: lock
/// and read the head, verify foreign entries, look up duplicates, reseal).
/// Callers are answered only after their own commit.
pub(super) async fn run_sequencer(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<AppendRequest>,
    mut trusted: Head,
    conn: Committer,
) {
    let mut stop = inner.stop.subscribe();
    let mut in_flight: Option<InFlight> = None;
    loop {
        let step = match in_flight.as_mut() {
            Some(f) => tokio::select! {
                biased;
                joined = &mut f.task => Step::Settled(joined),
                b = next_batch(&inner, &mut rx, &mut stop) => Step::Batch(b),
            },
            None => Step::Batch(next_batch(&inner, &mut rx, &mut stop).await),
        };
        match step {
            Step::Settled(joined) => {
                if let Some(f) = in_flight.take() {
                    settle(&inner, f.after, joined, &mut trusted, &conn).await;
                }
            }
            Step::Batch(None) => break,
            Step::Batch(Some(batch)) => {
                let base = in_flight.as_ref().map_or_else(|| trusted.clone(), |f| f.after.clone());
                // This is the work that overlaps with the in-flight commit,
                // on a blocking thread: a few ms of MACs and hashes for
                // 1,000 events, which on a runtime worker would hold up the
                // tasks queued behind it there. On PostgreSQL that was the
                // commit's own task: spawned from this worker, tokio puts it
                // in the worker's LIFO slot, which no other worker may take,
                // and it sent its BEGIN only once this task yielded.
                let (inner2, base2, now) = (inner.clone(), base.clone(), inner.clock.now_us());
                let sealing = tokio::task::spawn_blocking(move || {
                    let sealed = seal_batch(&inner2.keys, now, base2, &batch, &HashMap::new());
                    (batch, sealed)
                });
                let (batch, sealed) = match sealing.await {
                    Ok(done) => done,
                    // A panic while sealing: the batch's callers see their
                    // replies dropped (a failed commit); the rest goes on.
                    Err(e) => {
                        if e.is_panic() {
                            tracing::error!(error = %e, "sealing a batch stopped; its callers get an error");
                            metrics::counter!("custos_ledger_commit_failures_total").increment(1);
                        }
                        continue;
                    }
                };
                let base_holds = match in_flight.take() {
                    Some(f) => {
                        let joined = f.task.await;
                        settle(&inner, f.after, joined, &mut trusted, &conn).await
                    }
                    None => true,
                };
                // Callers who gave up while the batch before committed: their
                // events are dropped unsealed (the rest is sealed afresh).
                let taken = batch.len();
                let batch: Vec<AppendRequest> = batch
                    .into_iter()
                    .filter(|r| {
                        let gone = r.reply.is_closed();
                        if gone {
                            abandoned(r);
                        }
                        !gone
                    })
                    .collect();
                if batch.is_empty() {
                    continue;
                }
                let pruned = batch.len() != taken;
                match sealed {
                    Ok(sealed) if base_holds && !pruned => in_flight = Some(submit(&inner, &conn, batch, sealed, base)),
                    _ => {
                        let (batch, result) = commit_batch(&inner, batch, &mut trusted, &conn).await;
                        reply(batch, result);
                    }
                }
            }
        }
    }
    if let Some(f) = in_flight.take() {
        let joined = f.task.await;
        settle(&inner, f.after, joined, &mut trusted, &conn).await;
    }
    if let Committer::Postgres(pg) = &conn {
        pg.lock().await.close().await;
    }
}

/// Starts committing a sealed batch on `prev`.
pub(super) fn submit(
    inner: &Arc<Inner>,
    conn: &Committer,
    batch: Vec<AppendRequest>,
    sealed: Sealed,
    prev: Head,
) -> InFlight {
    let after = sealed.head.clone();
    let task = match conn {
        Committer::Sqlite(conn) => {
            let conn = conn.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
                let result = commit_sealed(&mut c, &sealed, &prev);
                metrics::histogram!("custos_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
                (batch, sealed.receipts, result)
            })
        }
        Committer::Postgres(pg) => {
            let (pg, inner) = (pg.clone(), inner.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let result = pg.lock().await.commit_sealed(&inner, &sealed, &prev).await;
                metrics::histogram!("custos_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
                (batch, sealed.receipts, result)
            })
        }
    };
    InFlight { after, task }
}

/// Answers the callers of a finished in-flight batch. Returns whether the
/// ledger now ends at `after` (so that a batch sealed on it may be submitted).
pub(super) async fn settle(
    inner: &Arc<Inner>,
    after: Head,
    joined: Result<CommitOutcome, tokio::task::JoinError>,
    trusted: &mut Head,
    conn: &Committer,
) -> bool {
    match joined {
        Ok((batch, receipts, Ok(()))) => {
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
        Ok((batch, _, Err(TryCommitError::Other(e)))) if !matches!(e, LedgerError::UnknownKey { .. }) => {
            reply(batch, Err(e));
            false
        }
        // The head moved, an id was a duplicate, or a key is new: full path.
        Ok((batch, _, Err(_))) => {
            let (batch, result) = commit_batch(inner, batch, trusted, conn).await;
            reply(batch, result);
            false
        }
        // The commit's task panicked: its callers' replies are dropped, which
        // they see as a failed commit. The database rolls back: SQLite's
        // transaction on unwinding; PostgreSQL's as the connection, left in
        // its transaction (holding the head row's lock, which other
        // replicas wait for), is dropped here.
        Err(_) => {
            if let Committer::Postgres(pg) = conn {
                pg.lock().await.discard();
            }
            false
        }
    }
}

/// Resolves once the stop flag is set.
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
