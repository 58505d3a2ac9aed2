//! The server's background tasks (session cleaning, noise summaries, the
//! scheduled verification): each is named, owned here, told to stop with
//! the server and awaited before the ledger closes, so none is cut off in
//! the middle of recording an event. One that does not stop within the
//! shutdown timeout is aborted and named in the log and the report.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// The running background tasks.
#[derive(Debug)]
pub struct Background {
    set: JoinSet<&'static str>,
    names: Vec<&'static str>,
    stop: watch::Sender<bool>,
}

/// How the background tasks ended at shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Tasks that finished when told to stop.
    pub finished: Vec<&'static str>,
    /// Tasks aborted after the shutdown timeout.
    pub aborted: Vec<&'static str>,
}

impl Background {
    /// No tasks yet; `stop` is the server's stop signal.
    pub fn new(stop: watch::Sender<bool>) -> Background {
        Background { set: JoinSet::new(), names: Vec::new(), stop }
    }

    /// Runs `work` every `period` (the first time after one period) until
    /// the server stops. A run in progress is finished, not interrupted.
    pub fn every<F, Fut>(&mut self, name: &'static str, period: Duration, mut work: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let mut stop = self.stop.subscribe();
        self.names.push(name);
        self.set.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                work().await;
            }
            name
        });
    }

    /// The tasks' names.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Tells every task to stop and waits up to `timeout` for them; the
    /// ones still running then are aborted.
    pub async fn stop(mut self, timeout: Duration) -> Stopped {
        self.stop.send_replace(true);
        let mut finished = Vec::new();
        let all = async {
            while let Some(done) = self.set.join_next().await {
                match done {
                    Ok(name) => finished.push(name),
                    Err(e) => tracing::error!(error = %e, "a background task failed"),
                }
            }
        };
        let timed_out = tokio::time::timeout(timeout, all).await.is_err();
        let mut aborted = Vec::new();
        if timed_out {
            aborted = self.names.iter().filter(|n| !finished.contains(n)).copied().collect();
            tracing::warn!(?aborted, "background tasks did not stop in time; aborting them");
            self.set.abort_all();
            while self.set.join_next().await.is_some() {}
        }
        Stopped { finished, aborted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn tasks_run_on_their_period_and_are_awaited_or_aborted_at_stop() {
        let (stop, _) = watch::channel(false);
        let mut bg = Background::new(stop);
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        bg.every("counter", Duration::from_secs(10), move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
            }
        });
        bg.every("stuck", Duration::from_secs(1), || async {
            // A run that never ends: only the abort stops it.
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "runs at 10, 20 and 30 s");
        assert_eq!(bg.names(), ["counter", "stuck"]);
        let stopped = bg.stop(Duration::from_secs(5)).await;
        assert_eq!(stopped, Stopped { finished: vec!["counter"], aborted: vec!["stuck"] });
    }
}
