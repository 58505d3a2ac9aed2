//! What this replica knows of the ledger's head, for live tails: its own
//! commits at once, other replicas' through PostgreSQL `LISTEN/NOTIFY` (one
//! listener per replica, fanned out through a watch channel to every open
//! tail), and a read of the head every few seconds in case a notification
//! was lost (while the listener reconnects).
//!
//! A notification is only a wake-up: anyone who can connect to the
//! database may `NOTIFY`, so its payload is ignored and the head is read
//! from the database (once per burst of notifications, however many).

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgListener, PgPool};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::{Notify, watch};

use super::Inner;
use crate::ledger::store;

/// The channel commits are announced on (no payload).
pub(crate) const CHANNEL: &str = "custos_commits";

/// Announces a commit to every replica's listener, after it (outside the
/// transaction, so that a full notification queue never fails a commit).
/// A lost announcement costs a tail at most one head poll.
pub(super) async fn announce(inner: &Inner) {
    let conn = inner.db.conn();
    if conn.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, "SELECT pg_notify($1, '')", [CHANNEL.into()]);
    if let Err(e) = conn.execute_raw(stmt).await {
        tracing::debug!(error = %e, "announcing a commit failed; other replicas' tails catch up at their next poll");
    }
}
/// How long a listener that failed waits before connecting again.
const RECONNECT: Duration = Duration::from_secs(2);

/// Raises the heard head to `seq`; it never goes back.
pub(super) fn raise(heard: &watch::Sender<u64>, seq: u64) {
    heard.send_if_modified(|h| {
        let newer = seq > *h;
        if newer {
            *h = seq;
        }
        newer
    });
}

async fn catch_up(inner: &Inner) {
    match store::read_head(inner.db.conn()).await {
        Ok(h) => raise(&inner.heard, h.seq),
        Err(e) => tracing::debug!(error = %e, "reading the head failed; the next poll retries"),
    }
}

/// Reads the head every `LedgerConfig::head_poll`; ends when the ledger stops.
pub(super) async fn run_poller(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut tick = tokio::time::interval(inner.cfg.head_poll.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            return;
        }
        catch_up(&inner).await;
    }
}

/// On PostgreSQL: hears the commits of every replica (its own included)
/// and reconnects by itself; runs until aborted at shutdown.
pub(super) async fn run_listener(inner: Arc<Inner>, pool: PgPool) {
    // The head is read by a second task, woken by the listener: a burst of
    // notifications costs one read at a time, at most one more pending.
    let wake = Arc::new(Notify::new());
    let reader = {
        let (inner, wake) = (inner.clone(), wake.clone());
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                catch_up(&inner).await;
            }
        })
    };
    let _reader = AbortOnDrop(reader);
    let mut failing = false;
    loop {
        match connect(&pool).await {
            Ok(mut listener) => {
                if failing {
                    tracing::info!("listening for other replicas' commits again");
                }
                // Commits made while nobody listened.
                wake.notify_one();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => {
                            metrics::counter!("custos_ledger_commit_notifications_total").increment(1);
                            wake.notify_one();
                        }
                        // The connection dropped and was made again: what
                        // was announced meanwhile is lost, so read the head.
                        Ok(None) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the connection that hears other replicas' commits; live tails fall back to reading the head every few seconds until it is back");
                            break;
                        }
                    }
                }
                failing = true;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot listen for other replicas' commits; live tails fall back to reading the head every few seconds");
                    failing = true;
                }
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// Ends the head reader with the listener (which is aborted at shutdown).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
