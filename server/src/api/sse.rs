//! Streams of server-sent events (the live tail, the alerts' changes): the
//! response, and the upkeep every stream does besides its own events — a
//! comment line when quiet, so that proxies keep it open, and a check of
//! its caller every few seconds.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use custos_engine::identity::permission::Permission;
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};

use crate::auth::Credential;
use crate::http::AppState;

/// How often a stream checks that its caller may still read.
const RECHECK: Duration = Duration::from_secs(5);
/// How long a quiet stream waits before a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where a stream's task writes.
pub(super) type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// A stream's channel (holding `depth` messages) and the response that
/// sends what is written to it.
pub(super) fn channel(depth: usize) -> (Tx, Response) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(depth);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let response = (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    (tx, response)
}

/// An event named `name` with `data` (one line of JSON).
pub(super) fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Which chore of [`Upkeep`] is due.
pub(super) enum Chore {
    KeepAlive,
    Recheck,
}

/// A stream's keep-alive and caller check. Wait for [`Upkeep::due`] in the
/// stream's `select!` (it is cancel-safe), then [`Upkeep::run`] it outside.
pub(super) struct Upkeep {
    s: AppState,
    credential: Credential,
    need: Permission,
    recheck: Interval,
    keep_alive: Interval,
}

impl Upkeep {
    /// For a stream whose caller (`credential`) needs `need`.
    pub(super) fn new(s: AppState, credential: Credential, need: Permission) -> Upkeep {
        let start = tokio::time::Instant::now();
        let mut recheck = tokio::time::interval_at(start + RECHECK, RECHECK);
        recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut keep_alive = tokio::time::interval_at(start + KEEP_ALIVE, KEEP_ALIVE);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Upkeep { s, credential, need, recheck, keep_alive }
    }

    /// The next chore, when it is due.
    pub(super) async fn due(&mut self) -> Chore {
        tokio::select! {
            _ = self.keep_alive.tick() => Chore::KeepAlive,
            _ = self.recheck.tick() => Chore::Recheck,
        }
    }

    /// Something was sent: no comment line is needed for a while.
    pub(super) fn sent(&mut self) {
        self.keep_alive.reset();
    }

    /// Does `chore`; false when the stream should end: its client went
    /// away, the server is shutting down, or its caller may no longer read
    /// (a session that ended, a user disabled or without the role, a key
    /// revoked: the stream is told `end` first).
    pub(super) async fn run(&mut self, chore: Chore, tx: &Tx) -> bool {
        match chore {
            Chore::KeepAlive => tx.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await.is_ok(),
            Chore::Recheck => {
                if tx.is_closed() {
                    return false;
                }
                let reason = if self.s.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
                    "shutting down"
                } else if !crate::auth::still_valid(&self.s, &self.credential, self.need).await {
                    "signed out"
                } else {
                    return true;
                };
                let _ = tx.send(Ok(event("end", &format!("{{\"reason\":\"{reason}\"}}")))).await;
                false
            }
        }
    }
}
