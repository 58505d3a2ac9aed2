//! Anonymous noise: refused API keys, anonymous API calls and throttled
//! sign-ins, counted per source and minute before anything is recorded.
//!
//! An audit log that records every refused request in its ledger can be
//! made to fill its disk (and, since recording fails closed, to refuse
//! service) by anyone who can reach it. So each kind of noise is gated per
//! source address key (see [`super::throttle::address_key`]) and minute:
//! - the first request of a minute on each topic (an endpoint, say) is
//!   recorded as it is (with its details);
//! - the following ones are only counted, and once the minute is over one
//!   summary event per source records how many there were;
//! - beyond `limit` in a minute: an anonymous call is refused (429) before
//!   any work is done for it (no query, no record); a refused key is
//!   answered 429 instead of 401 and not recorded (its lookup, one indexed
//!   read, has been done: a valid key from the same address must work); a
//!   throttled sign-in is answered as before (the address throttle already
//!   refused it before any hash) and not recorded. Anonymous calls of public
//!   endpoints are never refused, only counted.

use crate::time::{MINUTE_US, SECOND_US};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

/// Most (kind, source) windows kept; beyond it new sources share one key.
const MAX_SOURCES: usize = 50_000;
/// Most topics recorded on their own per source and minute.
const MAX_TOPICS: usize = 4;
/// The key sources share once [`MAX_SOURCES`] is reached.
pub const OVERFLOW_SOURCE: &str = "(many sources)";

/// What kind of noise a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoiseKind {
    /// A bearer token that is not a valid API key.
    RefusedApiKey,
    /// An API or server-function call without credentials, refused.
    Anonymous,
    /// An anonymous call of a public endpoint (the API document, the
    /// sign-in page's `whoami`): recorded the same way, never refused
    /// (a whole office behind one address signs in at nine).
    AnonymousPublic,
    /// A sign-in from a client address that is throttled.
    ThrottledSignIn,
}

impl NoiseKind {
    /// The action of the per-minute summary event.
    pub fn summary_action(self) -> &'static str {
        match self {
            NoiseKind::RefusedApiKey => "apikey.use.summary",
            NoiseKind::Anonymous => "access.anonymous.summary",
            NoiseKind::AnonymousPublic => "access.public.summary",
            NoiseKind::ThrottledSignIn => "user.login.summary",
        }
    }

    /// The name in details and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NoiseKind::RefusedApiKey => "refused_api_key",
            NoiseKind::Anonymous => "anonymous",
            NoiseKind::AnonymousPublic => "anonymous_public",
            NoiseKind::ThrottledSignIn => "throttled_sign_in",
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first of its minute: handle it and record it as usual.
    Record,
    /// Handle it, but do not record it on its own (the summary counts it).
    Count,
    /// Refuse it at once (429); it is counted in the summary.
    Refuse {
        /// Seconds until the next minute.
        retry_after_secs: u64,
    },
}

#[derive(Debug)]
struct Window {
    minute: i64,
    seen: u64,
    refused: u64,
    topics: std::collections::HashSet<String>,
    first_us: i64,
    last_us: i64,
}

impl Window {
    fn new(minute: i64, now: i64) -> Self {
        Window { minute, seen: 0, refused: 0, topics: Default::default(), first_us: now, last_us: now }
    }
}

/// A finished minute of one source's noise, for its summary event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseSummary {
    /// The kind.
    pub kind: NoiseKind,
    /// The source's address key.
    pub source: String,
    /// Requests not recorded on their own (beyond the first per topic).
    pub unrecorded: u64,
    /// Of those, refused with 429.
    pub refused: u64,
    /// First request of the minute (µs).
    pub first_us: i64,
    /// Last request (µs).
    pub last_us: i64,
}

/// Per-source, per-minute gate for anonymous noise.
#[derive(Debug)]
pub struct NoiseGate {
    limit: u64,
    clock: Arc<dyn Clock>,
    windows: Mutex<HashMap<(NoiseKind, String), Window>>,
    finished: Mutex<Vec<NoiseSummary>>,
    /// The minute the full map was last swept (at most once a minute, so a
    /// flood of new sources cannot make every request walk the map).
    swept: std::sync::atomic::AtomicI64,
}

impl NoiseGate {
    /// At most `limit_per_minute` requests of a kind per source and minute.
    pub fn new(limit_per_minute: u64, clock: Arc<dyn Clock>) -> Self {
        NoiseGate {
            limit: limit_per_minute.max(1),
            clock,
            windows: Mutex::new(HashMap::new()),
            finished: Mutex::new(Vec::new()),
            swept: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// Decides for one request of `kind` from `source` (an address key) on
    /// `topic` (what it asked for): the first per topic and minute is
    /// recorded, the rest counted; beyond the limit (all topics together)
    /// it is refused.
    pub fn admit(&self, kind: NoiseKind, source: &str, topic: &str) -> Verdict {
        let now = self.clock.now_us();
        let minute = now.div_euclid(MINUTE_US);
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.len() >= MAX_SOURCES && !map.contains_key(&(kind, source.to_owned())) {
            if self.swept.swap(minute, std::sync::atomic::Ordering::Relaxed) != minute {
                self.close_before(&mut map, minute);
            }
            if map.len() >= MAX_SOURCES { OVERFLOW_SOURCE.to_owned() } else { source.to_owned() }
        } else {
            source.to_owned()
        };
        let w = map.entry((kind, key.clone())).or_insert_with(|| Window::new(minute, now));
        if w.minute != minute {
            let old = std::mem::replace(w, Window::new(minute, now));
            self.finish(kind, &key, old);
        }
        w.seen += 1;
        w.last_us = now;
        if w.seen > self.limit && kind != NoiseKind::AnonymousPublic {
            w.refused += 1;
            let next = (minute + 1) * MINUTE_US;
            Verdict::Refuse {
                retry_after_secs: u64::try_from(next - now).unwrap_or(0).div_ceil(SECOND_US as u64).max(1),
            }
        } else if w.topics.len() < MAX_TOPICS && !w.topics.contains(topic) {
            w.topics.insert(topic.to_owned());
            Verdict::Record
        } else {
            Verdict::Count
        }
    }

    fn finish(&self, kind: NoiseKind, source: &str, w: Window) {
        let recorded = w.topics.len() as u64;
        if w.seen > recorded {
            self.finished.lock().unwrap_or_else(|p| p.into_inner()).push(NoiseSummary {
                kind,
                source: source.to_owned(),
                unrecorded: w.seen - recorded,
                refused: w.refused,
                first_us: w.first_us,
                last_us: w.last_us,
            });
        }
    }

    fn close_before(&self, map: &mut HashMap<(NoiseKind, String), Window>, minute: i64) {
        let old: Vec<(NoiseKind, String)> =
            map.iter().filter(|(_, w)| w.minute < minute).map(|(k, _)| k.clone()).collect();
        for k in old {
            if let Some(w) = map.remove(&k) {
                self.finish(k.0, &k.1, w);
            }
        }
    }

    /// The summaries of every minute that has ended, oldest first; they are
    /// handed out once.
    pub fn drain(&self) -> Vec<NoiseSummary> {
        let minute = self.clock.now_us().div_euclid(MINUTE_US);
        {
            let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            self.close_before(&mut map, minute);
        }
        let mut out = std::mem::take(&mut *self.finished.lock().unwrap_or_else(|p| p.into_inner()));
        out.sort_by(|a, b| (a.first_us, a.kind, &a.source).cmp(&(b.first_us, b.kind, &b.source)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn the_first_of_a_minute_is_recorded_the_rest_counted_then_refused_and_summarised_once() {
        let clock = Arc::new(ManualClock::new(1_000 * MINUTE_US));
        let gate = NoiseGate::new(6, clock.clone());
        let a = NoiseKind::Anonymous;
        assert_eq!(gate.admit(a, "192.0.2.1", "GET /a"), Verdict::Record);
        for _ in 0..4 {
            assert_eq!(gate.admit(a, "192.0.2.1", "GET /a"), Verdict::Count);
        }
        assert_eq!(gate.admit(a, "192.0.2.1", "GET /b"), Verdict::Record, "each topic once a minute");
        assert_eq!(
            gate.admit(a, "192.0.2.1", "GET /c"),
            Verdict::Refuse { retry_after_secs: 60 },
            "the limit is per source"
        );
        assert_eq!(gate.admit(a, "192.0.2.2", "GET /a"), Verdict::Record, "sources are independent");
        assert_eq!(gate.admit(NoiseKind::RefusedApiKey, "192.0.2.1", "k"), Verdict::Record, "kinds are independent");
        for _ in 0..20 {
            assert_ne!(
                gate.admit(NoiseKind::AnonymousPublic, "192.0.2.1", "GET /p"),
                Verdict::Refuse { retry_after_secs: 60 }
            );
        }
        assert!(gate.drain().is_empty(), "nothing is summarised before its minute ends");
        clock.advance_us(MINUTE_US);
        let s = gate.drain();
        assert_eq!(s.len(), 2, "only the sources with requests not recorded: {s:?}");
        let anon = s.iter().find(|x| x.kind == a).unwrap();
        assert_eq!((anon.source.as_str(), anon.unrecorded, anon.refused), ("192.0.2.1", 5, 1));
        let public = s.iter().find(|x| x.kind == NoiseKind::AnonymousPublic).unwrap();
        assert_eq!((public.unrecorded, public.refused), (19, 0), "public endpoints are never refused");
        assert!(gate.drain().is_empty(), "a summary is handed out once");
        assert_eq!(gate.admit(a, "192.0.2.1", "GET /a"), Verdict::Record, "a new minute starts afresh");
    }
}
