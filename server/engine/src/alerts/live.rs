//! Live evaluation: the rules in force, on every event the ledger commits,
//! on exactly one replica.
//!
//! The replica holding the `alert-evaluator` lease reads the events
//! committed after its cursor, in commit order, feeds them to the
//! [`Evaluator`] at their commit times, lets time pass for the absence
//! rules, stores what fires ([`Alerts::on_firing`]) and then saves the
//! cursor. On taking the lease (a start, a takeover, a restart) or when the
//! rules change, the evaluator's windows are rebuilt by replaying the
//! recent window of the ledger up to the cursor, firings discarded: a
//! threshold half-way through its window before a restart fires at the
//! right count after it. Everything it stores is idempotent, so events
//! evaluated twice (a crash before the cursor was saved) open nothing
//! twice. It never blocks ingest: the ledger is its buffer.
//!
//! The alerts' own ledger entries (`custos.alert.*`) are not evaluated: an
//! alert about alerts would feed itself.

use std::sync::Arc;

use custos_model::{Alert, EventView};

use serde_json::json;

use super::rules::{Condition, Evaluator, Rule};
use super::store::{Alerts, AlertsError};
use crate::events::SearchFilter;
use crate::events::model::{Channel, Outcome};
use crate::events::own::{OwnAction, OwnEvent};
use crate::lease::Lease;
use crate::policies::PolicyStore;
use crate::policies::kinds::alert_rules::AlertRulesDoc;
use crate::time::{DAY_US, SECOND_US, parse_rfc3339};

/// The lease's name.
pub const LEASE: &str = "alert-evaluator";
/// Renewed (and the cursor saved) at least this often.
const RENEW_US: i64 = 3 * SECOND_US;
/// The most events replayed to rebuild the windows.
const REPLAY_MAX: u64 = 200_000;
/// The most events evaluated in one pass (the next pass goes on).
const PASS_MAX: u64 = 20_000;

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub struct Pass {
    /// This replica holds the lease (and evaluated).
    pub held: bool,
    /// The windows were rebuilt first: events replayed.
    pub replayed: Option<u64>,
    /// Events evaluated.
    pub events: u64,
    /// Alerts opened.
    pub opened: Vec<Alert>,
    /// Firings counted into open alerts.
    pub counted: u64,
    /// Where the cursor is now.
    pub cursor: u64,
}

struct Run {
    x: Evaluator,
    version: u64,
    /// The last event evaluated.
    cursor: u64,
    /// The cursor this replica last saved (the lease's, unless another
    /// replica took over meanwhile).
    saved: u64,
    /// Commit time of the last event evaluated.
    last_at: i64,
    saved_at: i64,
}

/// The live evaluator of one replica.
pub struct Live {
    alerts: Arc<Alerts>,
    policies: Arc<PolicyStore>,
    lease: Lease,
    run: Option<Run>,
    /// The event being evaluated (or the first one a failing search was
    /// to read), and how many passes failed on it since when.
    current: Option<u64>,
    failing: Option<(u64, u32, i64)>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("holder", &self.lease.holder()).finish_non_exhaustive()
    }
}

fn is_alert_step(e: &EventView) -> bool {
    e.action.starts_with("custos.alert.")
}

/// How far back the windows reach: the longest window or cooldown of the
/// enabled rules, twice (an absence seen just before a restart), at most a
/// day.
fn replay_span_us(rules: &[Rule]) -> i64 {
    let longest = rules
        .iter()
        .filter(|r| r.enabled)
        .map(|r| {
            let window = match &r.condition {
                Condition::Immediate => 0,
                Condition::Threshold { window_secs, .. }
                | Condition::Distinct { window_secs, .. }
                | Condition::Sequence { window_secs, .. }
                | Condition::Absence { window_secs } => *window_secs,
            };
            window.max(r.cooldown_secs)
        })
        .max()
        .unwrap_or(0);
    (2 * longest as i64 * SECOND_US).min(DAY_US)
}

/// Passes failing on the same event before it is passed over (and that
/// recorded): one event the evaluator cannot take must not stop it.
const POISON_AFTER: u32 = 3;
/// ... over at least this long (a minute).
const POISON_SPAN_US: i64 = 60 * SECOND_US;
/// A pass stops after this long; the next goes on (the lease is renewed in
/// between).
const PASS_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

impl Live {
    /// The evaluator of the replica `holder` (unique per process).
    pub fn new(alerts: Arc<Alerts>, policies: Arc<PolicyStore>, holder: &str) -> Live {
        let lease =
            Lease::new(alerts.events().ledger().clone(), LEASE, holder, alerts.events().ledger().lease_ttl_us());
        Live { alerts, policies, lease, run: None, current: None, failing: None }
    }

    /// Gives the lease up (a clean stop): another replica takes over at
    /// once, from the cursor saved here.
    pub async fn release(&mut self) -> Result<(), AlertsError> {
        if let Some(run) = self.run.take() {
            self.lease.save(run.cursor).await?;
        }
        self.lease.release().await?;
        Ok(())
    }

    async fn rules_in_force(&self) -> Result<(u64, Vec<Rule>), AlertsError> {
        let v = self.policies.active("alert_rules").await.map_err(|e| AlertsError::Conflict(e.to_string()))?;
        let doc: AlertRulesDoc = serde_json::from_value(v.content)
            .map_err(|e| AlertsError::Conflict(format!("the alert rules in force do not parse: {e}")))?;
        // The system rules always apply: a policy rule with the same id is
        // left out (no policy turns Custos's own health off).
        let system = super::rules::system_rules();
        let mut rules: Vec<Rule> = doc.rules.into_iter().filter(|r| !system.iter().any(|x| x.id == r.id)).collect();
        rules.extend(system);
        Ok((v.version, rules))
    }

    /// Evaluates what was committed since the last pass (if this replica
    /// holds the lease). On an error nothing is lost: the next pass starts
    /// again from the cursor last saved. An event on which three passes in
    /// a row failed is passed over, and that is recorded
    /// (`custos.alert.evaluation_failed`, with the error): one event cannot
    /// stop the evaluation of all the others.
    pub async fn step(&mut self) -> Result<Pass, AlertsError> {
        self.current = None;
        let r = self.pass().await;
        let now = self.alerts.events().ledger().now_us();
        match (&r, self.current) {
            // Forgotten only once the evaluation went past it (a pass that
            // only rebuilt its windows did not).
            (Ok(p), _) => {
                if self.failing.is_some_and(|(s, _, _)| p.cursor >= s) {
                    self.failing = None;
                }
            }
            (Err(e), Some(seq)) => {
                self.run = None;
                let (n, since) = match self.failing {
                    Some((s, n, since)) if s == seq => (n + 1, since),
                    _ => (1, now),
                };
                self.failing = Some((seq, n, since));
                // A passing hiccup (a busy database) is not a poison: the
                // failures must span POISON_SPAN_US too.
                if n >= POISON_AFTER && now - since >= POISON_SPAN_US && self.lease.save(seq).await.unwrap_or(false) {
                    self.failing = None;
                    let event = OwnEvent::by_custos(
                        OwnAction::AlertStep("custos.alert.evaluation_failed"),
                        "alert evaluator",
                        Channel::System,
                    )
                    .outcome(Outcome::Error)
                    .reason(Some(e.to_string()))
                    .details(json!({ "seq": seq, "passes": n }));
                    if let Err(e) = self.alerts.events().record_own(event).await {
                        tracing::error!(error = %e, seq, "could not record an event passed over by the alert evaluator");
                    }
                }
            }
            (Err(_), None) => self.run = None,
        }
        r
    }

    async fn pass(&mut self) -> Result<Pass, AlertsError> {
        let events = self.alerts.events().clone();
        let ledger = events.ledger().clone();
        let now = ledger.now_us();
        let mut pass = Pass::default();
        // Take the lease, or renew it when due.
        let due = self.run.as_ref().is_none_or(|r| now - r.saved_at >= RENEW_US);
        if due {
            let Some(held) = self.lease.acquire().await? else {
                self.run = None;
                return Ok(pass);
            };
            // Another replica held it meanwhile and saved another cursor:
            // start again from its cursor.
            if let Some(run) = &mut self.run {
                if held.cursor != Some(run.saved) {
                    self.run = None;
                } else {
                    run.saved_at = now;
                }
            }
            if self.run.is_none() {
                let (version, rules) = self.rules_in_force().await?;
                let head = ledger.head().await.map_err(crate::events::EventsError::from)?.seq;
                // The first holder ever starts at the live edge: history is
                // what the dry-run is for.
                let cursor = held.cursor.unwrap_or(head).min(head);
                let (x, replayed, last_at) = self.rebuild(rules, cursor, now).await?;
                pass.replayed = Some(replayed);
                if !self.lease.save(cursor).await? {
                    // Taken over during the rebuild.
                    return Ok(pass);
                }
                self.run = Some(Run { x, version, cursor, saved: cursor, last_at, saved_at: now });
            }
        }
        pass.held = true;
        // The rules changed (looked at on every pass, before the events:
        // an event committed after a change is judged by the new rules):
        // rebuild the windows for the new ones.
        if let Some((old, cursor)) = self.run.as_ref().map(|r| (r.version, r.cursor)) {
            let current =
                self.policies.active_version("alert_rules").await.map_err(|e| AlertsError::Conflict(e.to_string()))?;
            if current != old {
                let (version, rules) = self.rules_in_force().await?;
                let (x, replayed, last_at) = self.rebuild(rules, cursor, now).await?;
                pass.replayed = Some(replayed);
                if let Some(run) = &mut self.run {
                    run.x = x;
                    run.version = version;
                    run.last_at = run.last_at.max(last_at);
                    // The rebuild renewed the lease with this cursor.
                    run.saved = cursor;
                }
            }
        }
        let Some(run) = &mut self.run else { return Ok(pass) };
        // The budget is for reading events (a rebuild has its own).
        let started = std::time::Instant::now();
        let head = ledger.head().await.map_err(crate::events::EventsError::from)?.seq;
        let upto = head.min(run.cursor + PASS_MAX);
        let mut f = SearchFilter { descending: false, limit: 500, max_seq: Some(upto), ..Default::default() };
        while run.cursor < upto && started.elapsed() < PASS_BUDGET {
            f.after_seq = Some(run.cursor);
            // A search that fails is pinned on the next event: one that
            // cannot be read is passed over like one that cannot be judged.
            self.current = Some(run.cursor + 1);
            let page = events.search(&f).await?;
            for e in &page.items {
                self.current = Some(e.seq);
                if !is_alert_step(e) {
                    let at = parse_rfc3339(&e.recorded_at).unwrap_or(run.last_at).max(run.last_at);
                    run.last_at = at;
                    for firing in run.x.on_event(e, at) {
                        note(&self.alerts, &mut pass, &run.x, &firing, run.version).await?;
                    }
                    pass.events += 1;
                }
                run.cursor = e.seq;
            }
            self.current = None;
            if page.next_cursor.is_none() {
                // Entries the search does not show (purged) are passed over.
                run.cursor = upto;
            }
            // A long pass keeps its lease.
            let t = ledger.now_us();
            if t - run.saved_at >= RENEW_US {
                if !self.lease.save(run.cursor).await? {
                    self.run = None;
                    pass.held = false;
                    return Ok(pass);
                }
                run.saved = run.cursor;
                run.saved_at = t;
            }
        }
        // Time passes for the absence rules: the clock once the evaluator is
        // at the head, the last commit it read while it catches up (a backlog
        // is not a silence).
        let tick_at = if run.cursor >= head { now.max(run.last_at) } else { run.last_at };
        for firing in run.x.on_tick(tick_at) {
            // An absence that cannot be stored does not hold the events
            // back: it is logged, and the evaluation goes on.
            if let Err(e) = note(&self.alerts, &mut pass, &run.x, &firing, run.version).await {
                tracing::error!(error = %e, rule = %firing.rule, "an absence alert could not be stored");
            }
        }
        pass.cursor = run.cursor;
        if run.cursor != run.saved && (!pass.opened.is_empty() || now - run.saved_at >= SECOND_US) {
            if !self.lease.save(run.cursor).await? {
                // Another replica took over: it goes on from the cursor
                // last saved; what was evaluated here since is idempotent.
                self.run = None;
                pass.held = false;
                return Ok(pass);
            }
            run.saved = run.cursor;
            run.saved_at = now;
        }
        Ok(pass)
    }

    /// An evaluator for `rules` whose windows hold the events committed in
    /// the span before the cursor's event, up to it (their firings
    /// discarded: they were stored when they happened). Answers it, the
    /// events replayed and the cursor's commit time.
    async fn rebuild(&self, rules: Vec<Rule>, cursor: u64, now: i64) -> Result<(Evaluator, u64, i64), AlertsError> {
        let ledger = self.alerts.events().ledger();
        let span = replay_span_us(&rules);
        let mut x = Evaluator::new(rules);
        let committed = |seq: u64| async move {
            ledger
                .entry(seq)
                .await
                .map(|e| e.map(|e| e.header.recorded_at_us))
                .map_err(crate::events::EventsError::from)
        };
        // The cursor's commit time; if its entry is gone (purged), the next
        // one kept; at the head of an empty ledger, now.
        let anchor = match if cursor == 0 { None } else { committed(cursor).await? } {
            Some(t) => t,
            None => {
                let f = SearchFilter { descending: false, limit: 1, after_seq: Some(cursor), ..Default::default() };
                let next = self.alerts.events().search(&f).await?;
                next.items.first().and_then(|e| parse_rfc3339(&e.recorded_at)).unwrap_or(now)
            }
        };
        let mut replayed = 0;
        if span > 0 && cursor > 0 {
            // Commit times grow with the position: the first entry of the
            // span by bisection, at most REPLAY_MAX entries back.
            let (mut lo, mut hi) = (cursor.saturating_sub(REPLAY_MAX).max(1), cursor + 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if committed(mid).await?.is_some_and(|t| t >= anchor - span) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let mut f = SearchFilter {
                descending: false,
                limit: 1000,
                after_seq: Some(lo - 1),
                max_seq: Some(cursor),
                ..Default::default()
            };
            let mut last_at = anchor - span;
            let mut renewed = std::time::Instant::now();
            loop {
                let page = self.alerts.events().search(&f).await?;
                for e in &page.items {
                    if is_alert_step(e) {
                        continue;
                    }
                    let at = parse_rfc3339(&e.recorded_at).unwrap_or(last_at).max(last_at);
                    last_at = at;
                    x.on_event(e, at);
                    replayed += 1;
                }
                // A long replay keeps the lease.
                if renewed.elapsed() >= std::time::Duration::from_micros(RENEW_US as u64) {
                    self.lease.save(cursor).await?;
                    renewed = std::time::Instant::now();
                }
                match (page.next_cursor, page.items.last()) {
                    (Some(_), Some(e)) => f.after_seq = Some(e.seq),
                    _ => break,
                }
            }
        }
        Ok((x, replayed, anchor))
    }
}

async fn note(
    alerts: &Alerts,
    pass: &mut Pass,
    x: &Evaluator,
    firing: &super::rules::Firing,
    version: u64,
) -> Result<(), AlertsError> {
    let Some(rule) = x.rules().iter().find(|r| r.id == firing.rule) else { return Ok(()) };
    match alerts.on_firing(firing, rule, version).await? {
        Some(alert) => pass.opened.push(alert),
        None => pass.counted += 1,
    }
    Ok(())
}
