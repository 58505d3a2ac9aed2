//! Alerting (issue 16): rules evaluated on the live stream of commits and,
//! by the same evaluator, as a dry-run over history.
//!
//! - [`rules`]: the rules and their evaluator, pure: events and their
//!   commit times in, firings out;
//! - [`store`]: the alerts they open, counted into while unresolved, and
//!   their transitions, each a ledger event;
//! - [`live`]: the evaluation of every commit on the replica holding the
//!   lease, its windows rebuilt from the ledger after a restart.
//!
//! The rules are a policy kind (`policies::kinds::alert_rules`). The
//! notification channels and their durable outbox come next.

pub mod live;
pub mod rules;
pub mod silences;
pub mod store;

use std::collections::BTreeMap;

use self::rules::{Evaluator, Rule};
use crate::events::{Events, EventsError, SearchFilter};

/// What a rule would have done over a period of history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WouldHaveFired {
    /// New alerts it would have opened.
    pub alerts: u64,
    /// Matches counted into them while open (repeats within the cooldown).
    pub repeats: u64,
    /// The ledger positions of the first alerts' matches (for the explorer).
    pub first_seqs: Vec<u64>,
}

/// What a dry-run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DryRun {
    /// Per rule id.
    pub fired: BTreeMap<String, WouldHaveFired>,
    /// Events read.
    pub events: u64,
    /// The period was cut short at the bound.
    pub cut: bool,
}

/// A dry-run: `rules` over the events that occurred in `from_us..to_us`, in
/// commit order, by the evaluator that runs live. At most `max_events` are
/// read: it answers the events read and whether the period was cut short.
pub async fn dry_run(
    events: &Events,
    rules: Vec<Rule>,
    from_us: i64,
    to_us: i64,
    max_events: u64,
) -> Result<DryRun, EventsError> {
    let mut out: BTreeMap<String, WouldHaveFired> =
        rules.iter().map(|r| (r.id.clone(), WouldHaveFired::default())).collect();
    let mut x = Evaluator::new(rules);
    let mut f = SearchFilter {
        from_us: Some(from_us),
        to_us: Some(to_us),
        descending: false,
        limit: 1000,
        ..Default::default()
    };
    let mut seen = 0u64;
    let note = |fired: Vec<rules::Firing>, out: &mut BTreeMap<String, WouldHaveFired>| {
        for firing in fired {
            let w = out.entry(firing.rule).or_default();
            if firing.new {
                w.alerts += 1;
                if w.first_seqs.len() < 20 {
                    w.first_seqs.extend(firing.seqs.iter().take(20 - w.first_seqs.len()));
                }
            } else {
                w.repeats += 1;
            }
        }
    };
    let mut last_at = from_us;
    loop {
        let page = events.search(&f).await?;
        let last = page.items.last().map(|e| e.seq);
        for e in &page.items {
            let at = crate::time::parse_rfc3339(&e.recorded_at).unwrap_or(last_at).max(last_at);
            // Silences end when time passes them, as the live ticks would see.
            note(x.on_tick(at), &mut out);
            note(x.on_event(e, at), &mut out);
            last_at = at;
            seen += 1;
            if seen >= max_events {
                return Ok(DryRun { fired: out, events: seen, cut: true });
            }
        }
        match (page.next_cursor, last) {
            (Some(_), Some(seq)) => f.after_seq = Some(seq),
            _ => break,
        }
    }
    // Silences are judged up to now, not up to a bound in the future.
    note(x.on_tick(to_us.min(events.ledger().now_us())), &mut out);
    Ok(DryRun { fired: out, events: seen, cut: false })
}
