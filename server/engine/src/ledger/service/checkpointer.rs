//! Signed checkpoints of committed heads, and the check of the ledger's
//! tail before anything is appended to it.

use super::sequencer::stopped;
use super::*;

/// Verifies (with MACs) the entries after the latest checkpoint before the
/// ledger appends anything: a row forged since then must never be chained
/// onto or signed. Returns the head, now trusted.
pub(super) async fn verify_tail_at_start(db: &Database, keys: &Keyring) -> Result<Head, LedgerError> {
    let head = store::read_head(db.conn()).await?;
    let from =
        store::latest_signed_checkpoint(db.conn(), &keys.signer().verifier()).await?.map_or(1, |c| c.tree_size + 1);
    if head.seq >= from {
        let report = crate::ledger::verify::verify(
            db,
            &keys.signer().verifier(),
            Some(keys),
            crate::ledger::verify::VerifyScope { from_seq: Some(from), to_seq: None },
            |_| {},
        )
        .await?;
        if let Some(f) = report.failure {
            return Err(LedgerError::Corrupt(format!(
                "the entries after the latest checkpoint fail verification ({}); refusing to append to a damaged ledger",
                f.detail
            )));
        }
    }
    Ok(head)
}

pub(super) async fn run_checkpointer(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut tick = tokio::time::interval(inner.cfg.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => break,
        }
        if let Err(e) = make_checkpoint(&inner, 0).await {
            metrics::counter!("custos_checkpoint_failures_total").increment(1);
            tracing::error!(error = %e, "signing a checkpoint failed");
        }
        // A data key rotated by another process (`custos keys rotate`, a
        // replica) becomes this process's sealing key too.
        if let Err(e) = inner.keys.refresh(&inner.db).await {
            tracing::error!(error = %e, "refreshing data keys failed");
        }
    }
}

/// The latest signed checkpoint if it covers `at_least` and every entry
/// this process had committed when this was called (or everything this
/// process knows to be committed: `at_least` may lie beyond it, another
/// replica's entry); if not, one signed and stored now at the newest
/// committed head. `None` for an empty ledger. One at a time in this
/// process: callers that come in while a checkpoint is being signed wait
/// for it and take it when it covers what they asked for, so that a burst
/// of proof requests signs and stores one checkpoint, not one each. Not
/// sooner than [`LedgerConfig::checkpoint_spacing`] after the latest: the
/// one signed after the wait covers what was committed during it. Each
/// caller gets the row that is stored, also when another process (or an
/// earlier caller here, given up after its insert was under way) stored
/// one of that size first; the exception is a stored row of that size not
/// validly signed by this ledger (forged, which verification reports):
/// then the row signed here, not stored. A validly signed stored row of
/// that size with another root is a fork: refused.
pub(super) async fn make_checkpoint(inner: &Inner, at_least: u64) -> Result<Option<CheckpointRow>, LedgerError> {
    let wanted = inner.committed.borrow().0.max(at_least);
    // (No read before the lock: `wanted` is at least this process's head,
    // and a caller holding the lock through the spacing does so because the
    // latest did not cover that head, so a read then finds it uncovered,
    // unless another process signed meanwhile, which the waiter takes up
    // when its wait ends.)
    let _one_at_a_time = inner.checkpointing.lock().await;
    let conn = inner.db.conn();
    let verifier = inner.keys.signer().verifier();
    let latest = store::latest_signed_checkpoint(conn, &verifier).await?;
    let seq = inner.committed.borrow().0;
    let covered = latest.as_ref().map_or(0, |c| c.tree_size);
    if seq == 0 || covered >= wanted || covered >= seq {
        return Ok(latest);
    }
    let (created_at_us, waited) = spaced(inner, latest.as_ref()).await;
    // The head now: what was committed during the wait is covered too.
    let (seq, root) = *inner.committed.borrow();
    if waited {
        // Another process (a replica, `custos checkpoint`) may have stored
        // a newer one meanwhile: not one of an older size after it.
        let theirs = store::latest_signed_checkpoint(conn, &verifier).await?;
        if theirs.as_ref().is_some_and(|c| c.tree_size >= wanted || c.tree_size >= seq) {
            return Ok(theirs);
        }
    }
    let cp = Checkpoint { origin: inner.keys.origin().to_owned(), tree_size: seq, root_hash: root };
    let row = CheckpointRow {
        tree_size: cp.tree_size,
        root_hash: cp.root_hash,
        note: inner.keys.signer().sign_checkpoint(&cp),
        created_at_us,
    };
    // On SQLite by the ledger's own connection (see `on_sqlite_writer`).
    let stored = row.clone();
    let inserted =
        match on_sqlite_writer(inner, super::Synced::Now, move |c| store::insert_checkpoint_direct(c, &stored)).await {
            Some(done) => done?,
            None => store::insert_checkpoint(conn, &row).await?,
        };
    if !inserted {
        match store::latest_signed_checkpoint(conn, &verifier).await? {
            Some(theirs) if theirs.tree_size == row.tree_size && theirs.root_hash != row.root_hash => {
                return Err(LedgerError::Corrupt(format!(
                    "a checkpoint of tree size {} signed by this ledger's key with another root is stored: the log \
                     has forked; run `custos verify`",
                    row.tree_size
                )));
            }
            Some(theirs) if theirs.tree_size >= row.tree_size => return Ok(Some(theirs)),
            _ => tracing::warn!(
                tree_size = row.tree_size,
                "a checkpoint row of this size not signed by this ledger \
                                                            is stored; run `custos verify`"
            ),
        }
        return Ok(Some(row));
    }
    metrics::counter!("custos_checkpoints_total").increment(1);
    tracing::debug!(tree_size = row.tree_size, "checkpoint signed");
    Ok(Some(row))
}

/// How often a wait for the checkpoints' spacing looks at the ledger's clock
/// again (a clock moved by hand, in tests, ends it within this).
const SPACING_POLL: Duration = Duration::from_millis(100);

/// Waits until the latest checkpoint was signed `checkpoint_spacing` ago by
/// the ledger's clock, and returns the clock's reading then, the new
/// checkpoint's date (one reading when there is nothing to wait for), and
/// whether it waited. The
/// wait lasts at most the spacing in this process's monotonic time (a clock
/// set back or stopped, a replica's ahead, cannot hold checkpoints back
/// longer), and ends at once when the ledger is stopping: shutdown signs
/// its final checkpoint without delay.
async fn spaced(inner: &Inner, latest: Option<&CheckpointRow>) -> (i64, bool) {
    let spacing = inner.cfg.checkpoint_spacing;
    let spacing_us = i64::try_from(spacing.as_micros()).unwrap_or(i64::MAX);
    let mut now = inner.clock.now_us();
    let Some(latest) = latest else { return (now, false) };
    let until = latest.created_at_us.saturating_add(spacing_us).min(now.saturating_add(spacing_us));
    let mut stop = inner.stop.subscribe();
    if now >= until || *stop.borrow() {
        return (now, false);
    }
    metrics::counter!("custos_checkpoint_spacing_waits_total").increment(1);
    let started = tokio::time::Instant::now();
    while now < until {
        let left_by_clock = Duration::from_micros(u64::try_from(until.saturating_sub(now)).unwrap_or(0));
        let left = spacing.saturating_sub(started.elapsed());
        let nap = left_by_clock.min(left).min(SPACING_POLL);
        if nap.is_zero() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = stopped(&mut stop) => return (inner.clock.now_us(), true),
        }
        now = inner.clock.now_us();
    }
    (now, true)
}
