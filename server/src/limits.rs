//! Bounds on expensive work per principal: verifications, exports, live
//! tails and free-text scans. Each holds a slot for as long as it runs; a
//! principal (a user, or an API key) over its bound gets 429 with
//! `Retry-After`, and the server over its global bound too, so that one
//! caller cannot take both cores or every connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::api::ApiError;

/// Expensive operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    /// A whole-ledger or range verification.
    Verify,
    /// An export, streamed or in the background.
    Export,
    /// A live tail (server-sent events).
    Tail,
    /// The alerts' live stream (server-sent events).
    AlertStream,
    /// A search with free text (decrypts what it scans).
    TextScan,
}

impl Work {
    /// (per principal, for the whole server).
    fn bounds(self) -> (u32, u32) {
        match self {
            Work::Verify => (1, 2),
            Work::Export => (2, 4),
            Work::Tail => (8, 256),
            Work::AlertStream => (8, 256),
            Work::TextScan => (2, 8),
        }
    }

    /// (one, many), for messages.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Work::Verify => ("verification", "verifications"),
            Work::Export => ("export", "exports"),
            Work::Tail => ("live tail", "live tails"),
            Work::AlertStream => ("live stream of the alerts", "live streams of the alerts"),
            Work::TextScan => ("free-text search", "free-text searches"),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    per: HashMap<(Work, String), u32>,
    total: HashMap<Work, u32>,
}

/// The slots in use.
#[derive(Debug, Default)]
pub struct Busy {
    counts: Mutex<Counts>,
}

/// A slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    busy: Arc<Busy>,
    work: Work,
    principal: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.busy.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.per.get_mut(&(self.work, self.principal.clone())) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per.remove(&(self.work, std::mem::take(&mut self.principal)));
            }
        }
        if let Some(n) = c.total.get_mut(&self.work) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Busy {
    /// Takes a slot of `work` for `principal`, or says why not (a 429).
    pub fn start(self: &Arc<Self>, work: Work, principal: &str) -> Result<Slot, ApiError> {
        let (per, total) = work.bounds();
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.per.get(&(work, principal.to_owned())).copied().unwrap_or(0);
        let all = c.total.get(&work).copied().unwrap_or(0);
        if mine >= per {
            let (one, many) = work.names();
            return Err(ApiError::too_many(
                format!(
                    "you already have {mine} {} running (at most {per} at once); wait for one to finish",
                    if mine == 1 { one } else { many }
                ),
                5,
            ));
        }
        if all >= total {
            return Err(ApiError::too_many(
                format!("the server is running {all} {} at once, its most; try again shortly", work.names().1),
                5,
            ));
        }
        *c.per.entry((work, principal.to_owned())).or_default() += 1;
        *c.total.entry(work).or_default() += 1;
        Ok(Slot { busy: self.clone(), work, principal: principal.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;

    #[test]
    fn slots_are_bounded_per_principal_and_given_back() {
        let busy = Arc::new(Busy::default());
        let a = busy.start(Work::Verify, "user:1").unwrap();
        let refused = busy.start(Work::Verify, "user:1").unwrap_err().into_response();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
        let b = busy.start(Work::Verify, "user:2").unwrap();
        assert!(busy.start(Work::Verify, "user:3").is_err(), "two verifications at once server-wide");
        drop(a);
        let _c = busy.start(Work::Verify, "user:1").unwrap();
        drop(b);
        assert!(busy.start(Work::Export, "user:1").is_ok(), "kinds are independent");
    }
}
