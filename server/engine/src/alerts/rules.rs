//! Alert rules and their evaluation, pure: events in (with their commit
//! time), firings out. The same evaluator runs live on the sequencer's
//! commits and as the dry-run over history, so "would have fired N times"
//! is what live evaluation would have done.
//!
//! Rule types (issue 16): **immediate** (every match), **threshold** (at
//! least N matches in a sliding window, per group), **distinct** (at least N
//! distinct values of a field in a window, per group: one address failing
//! for ten user names), **sequence** (a match of `first` then one of `then`
//! within a window, per group: failures, then a success) and **absence** (no
//! match within a window: an application gone quiet). A group that fired
//! does not fire again within the rule's cooldown; what matches meanwhile is
//! counted in the firing that is open.

use std::collections::{BTreeMap, VecDeque};

use custos_model::EventView;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a `details.<path>` value is compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
pub enum DetailTest {
    /// Equal (strings, numbers, booleans as JSON).
    Equals(Value),
    /// A string containing this text, or a list with an element equal to
    /// it (case-insensitive).
    Contains(String),
    /// A number greater than this.
    GreaterThan(f64),
}

/// One condition on `details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailMatch {
    /// Dotted path under `details`, e.g. `rows` or `request.method`.
    pub path: String,
    /// The comparison.
    #[serde(flatten)]
    pub test: DetailTest,
}

/// Which events a rule looks at: the explorer's filters (each list is "any
/// of", lists are "all of"; an empty list does not filter).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Matcher {
    /// Categories.
    pub categories: Vec<String>,
    /// Actions, exact or `prefix.*`.
    pub actions: Vec<String>,
    /// Outcomes.
    pub outcomes: Vec<String>,
    /// Severities.
    pub severities: Vec<String>,
    /// Actor ids.
    pub actors: Vec<String>,
    /// Resource types.
    pub resource_types: Vec<String>,
    /// Resource ids.
    pub resource_ids: Vec<String>,
    /// Tenants.
    pub tenants: Vec<String>,
    /// Channels.
    pub channels: Vec<String>,
    /// Source applications.
    pub applications: Vec<String>,
    /// Conditions on `details`, all of them.
    pub details: Vec<DetailMatch>,
    /// Only events that occurred outside these hours of the day, UTC
    /// (`[8, 18]`: before 08:00 or from 18:00): working hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_hours: Option<[u8; 2]>,
}

fn any_of(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
}

fn action_matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(prefix) => action.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')),
        None => pattern == action,
    }
}

/// The value at a dotted path under `details`.
fn detail<'a>(e: &'a EventView, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(e.details.as_ref()?, |v, k| v.get(k))
}

impl DetailTest {
    fn holds(&self, v: &Value) -> bool {
        match self {
            DetailTest::Equals(x) => v == x,
            DetailTest::Contains(s) => match v {
                Value::String(t) => t.to_lowercase().contains(&s.to_lowercase()),
                Value::Array(items) => items.iter().any(|i| i.as_str().is_some_and(|t| t.eq_ignore_ascii_case(s))),
                _ => false,
            },
            DetailTest::GreaterThan(n) => v.as_f64().is_some_and(|x| x > *n),
        }
    }
}

impl Matcher {
    /// Whether `e` matches.
    pub fn matches(&self, e: &EventView) -> bool {
        any_of(&self.categories, Some(&e.category))
            && (self.actions.is_empty() || self.actions.iter().any(|a| action_matches(a, &e.action)))
            && any_of(&self.outcomes, Some(&e.outcome))
            && any_of(&self.severities, Some(&e.severity))
            && any_of(&self.actors, Some(&e.actor.id))
            && any_of(&self.resource_types, e.resource.as_ref().map(|r| r.kind.as_str()))
            && any_of(&self.resource_ids, e.resource.as_ref().and_then(|r| r.id.as_deref()))
            && any_of(&self.tenants, e.tenant.as_deref())
            && any_of(&self.channels, Some(&e.source.channel))
            && any_of(&self.applications, e.source.application.as_deref())
            && self.details.iter().all(|d| detail(e, &d.path).is_some_and(|v| d.test.holds(v)))
            && self.outside_hours.is_none_or(|[from, to]| {
                crate::time::parse_rfc3339(&e.occurred_at)
                    .map(|us| us.div_euclid(3_600_000_000).rem_euclid(24) as u8)
                    .is_some_and(|h| h < from || h >= to)
            })
    }
}

/// A field events are grouped or counted by: `actor`, `actor.ip`,
/// `actor.name`, `resource`, `resource.type`, `tenant`, `channel`,
/// `application`, `action`, `outcome` or `details.<path>`.
pub fn field(e: &EventView, name: &str) -> Option<String> {
    let s = |v: &Option<String>| v.clone();
    match name {
        "actor" => Some(e.actor.id.clone()),
        "actor.ip" => s(&e.actor.ip),
        "actor.name" => s(&e.actor.name),
        "resource" => e.resource.as_ref().and_then(|r| r.id.clone()),
        "resource.type" => e.resource.as_ref().map(|r| r.kind.clone()),
        "tenant" => s(&e.tenant),
        "channel" => Some(e.source.channel.clone()),
        "application" => s(&e.source.application),
        "action" => Some(e.action.clone()),
        "outcome" => Some(e.outcome.clone()),
        _ => {
            let path = name.strip_prefix("details.")?;
            detail(e, path).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        }
    }
}

/// Whether a field name is one [`field`] knows.
pub fn is_field(name: &str) -> bool {
    matches!(
        name,
        "actor"
            | "actor.ip"
            | "actor.name"
            | "resource"
            | "resource.type"
            | "tenant"
            | "channel"
            | "application"
            | "action"
            | "outcome"
    ) || name.strip_prefix("details.").is_some_and(|p| !p.is_empty())
}

/// What a rule looks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Every match fires.
    Immediate,
    /// At least `count` matches within `window_secs`.
    Threshold {
        /// Matches needed.
        count: u32,
        /// The sliding window.
        window_secs: u64,
    },
    /// At least `count` distinct values of `field` within `window_secs`.
    Distinct {
        /// Distinct values needed.
        count: u32,
        /// The field counted.
        field: String,
        /// The sliding window.
        window_secs: u64,
    },
    /// A match of the rule's matcher, then one of `then`, within
    /// `window_secs` (same group).
    Sequence {
        /// The second step.
        then: Box<Matcher>,
        /// Between the two.
        window_secs: u64,
    },
    /// No match within `window_secs` (per group seen before).
    Absence {
        /// How long the silence may last.
        window_secs: u64,
    },
}

/// An alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id, `[a-z0-9_]+`.
    pub id: String,
    /// For people.
    pub name: String,
    /// Evaluated.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The alert's severity.
    pub severity: String,
    /// The events it looks at.
    #[serde(default)]
    pub matcher: Matcher,
    /// What it looks for.
    pub condition: Condition,
    /// Fields the events are grouped by (e.g. `["actor"]`); none: one group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// A group that fired does not fire again within this.
    #[serde(default)]
    pub cooldown_secs: u64,
}

fn yes() -> bool {
    true
}

const SECOND_US: i64 = 1_000_000;

impl Rule {
    /// Checks a rule; the problem names its field.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, r: &str| Err((f.to_owned(), r.to_owned()));
        if self.id.is_empty()
            || self.id.len() > 64
            || !self.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return bad("id", "1 to 64 characters: a-z, 0-9, _");
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return bad("name", "1 to 200 characters");
        }
        if !custos_model::SEVERITIES.contains(&self.severity.as_str()) {
            return bad("severity", &format!("one of {}", custos_model::SEVERITIES.join(", ")));
        }
        if let Some([from, to]) = self.matcher.outside_hours
            && !(from < to && to <= 24)
        {
            return bad("matcher.outside_hours", "[from, to): hours of the day, UTC, from < to <= 24 (e.g. [8, 18])");
        }
        if let Some(g) = self.group_by.iter().find(|g| !is_field(g)) {
            return bad(
                "group_by",
                &format!("`{g}` is not a field (actor, actor.ip, resource, tenant, application, details.<path>…)"),
            );
        }
        let window = |w: u64| {
            if (1..=30 * 86_400).contains(&w) { Ok(()) } else { bad("condition.window_secs", "1 second to 30 days") }
        };
        match &self.condition {
            Condition::Immediate => Ok(()),
            Condition::Threshold { count, window_secs } => {
                if !(1..=MAX_RECENT as u32).contains(count) {
                    return bad("condition.count", "1 to 10,000");
                }
                window(*window_secs)
            }
            Condition::Distinct { count, field: f, window_secs } => {
                if !(2..=MAX_RECENT as u32).contains(count) {
                    return bad("condition.count", "2 to 10,000");
                }
                if !is_field(f) {
                    return bad("condition.field", &format!("`{f}` is not a field"));
                }
                window(*window_secs)
            }
            Condition::Sequence { window_secs, .. } | Condition::Absence { window_secs } => window(*window_secs),
        }
    }
}

/// A rule fired (or counted one more match into its open firing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// The rule.
    pub rule: String,
    /// The group's values, by field.
    pub group: BTreeMap<String, String>,
    /// The matches in the window that made it fire (0 for absence).
    pub count: u64,
    /// The ledger positions of the matches it saw (at most 20; for
    /// absence, the last match before the silence).
    pub seqs: Vec<u64>,
    /// When (µs, commit time of the last match, or the tick for absence).
    pub at_us: i64,
    /// A new alert (false: a repeat within the cooldown, to count into the
    /// open one).
    pub new: bool,
}

#[derive(Debug, Default)]
struct GroupState {
    /// (time, seq, counted value) of recent matches (at most
    /// [`MAX_RECENT`], and for a threshold no more than it needs).
    recent: VecDeque<(i64, u64, Option<String>)>,
    /// How often each counted value is in `recent` (distinct).
    values: BTreeMap<String, u32>,
    /// When the group last fired.
    fired_at: Option<i64>,
    /// When `first` of a sequence last matched.
    first_at: Option<(i64, u64)>,
    /// When the group last matched, and the match (absence).
    seen_at: Option<i64>,
    seen_seq: u64,
    /// Absence already reported for this silence.
    silent: bool,
}

/// Most recent matches a group keeps: a flood makes a distinct count
/// approximate (the oldest values go first), never unbounded.
pub const MAX_RECENT: usize = 10_000;
/// Most groups a rule keeps: beyond, new groups are not tracked (counted in
/// [`Evaluator::overflow`]) and the ones tracked keep working.
pub const MAX_GROUPS: usize = 10_000;
/// Longest group value kept (characters).
const MAX_VALUE: usize = 200;

impl GroupState {
    fn push(&mut self, at: i64, seq: u64, value: Option<String>, cap: usize) {
        if let Some(v) = &value {
            *self.values.entry(v.clone()).or_default() += 1;
        }
        self.recent.push_back((at, seq, value));
        while self.recent.len() > cap {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some((_, _, Some(v))) = self.recent.pop_front()
            && let Some(n) = self.values.get_mut(&v)
        {
            *n -= 1;
            if *n == 0 {
                self.values.remove(&v);
            }
        }
    }

    fn expire(&mut self, now_us: i64, window_us: i64) {
        while self.recent.front().is_some_and(|(t, _, _)| now_us - t >= window_us) {
            self.pop();
        }
    }
}

/// The state of all rules: feed it events in commit order, and ticks.
#[derive(Debug, Default)]
pub struct Evaluator {
    rules: Vec<Rule>,
    groups: BTreeMap<(usize, Vec<String>), GroupState>,
    /// Groups held per rule.
    per_rule: Vec<usize>,
    /// Matches not tracked because their rule was at [`MAX_GROUPS`].
    overflow: u64,
}

impl Evaluator {
    /// An evaluator for these rules (the disabled ones are kept, silent).
    pub fn new(rules: Vec<Rule>) -> Evaluator {
        let per_rule = vec![0; rules.len()];
        Evaluator { rules, groups: BTreeMap::new(), per_rule, overflow: 0 }
    }

    /// Matches not tracked because their rule held [`MAX_GROUPS`] groups.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn key(rule: &Rule, e: &EventView) -> Option<Vec<String>> {
        rule.group_by.iter().map(|g| field(e, g).map(|v| v.chars().take(MAX_VALUE).collect())).collect()
    }

    fn fire(&mut self, i: usize, key: Vec<String>, count: u64, seqs: Vec<u64>, at: i64) -> Firing {
        let rule = &self.rules[i];
        let state = self.groups.entry((i, key.clone())).or_default();
        let cooling = state.fired_at.is_some_and(|t| at - t < rule.cooldown_secs as i64 * SECOND_US);
        if !cooling {
            state.fired_at = Some(at);
        }
        Firing {
            rule: rule.id.clone(),
            group: rule.group_by.iter().cloned().zip(key).collect(),
            count,
            seqs,
            at_us: at,
            new: !cooling,
        }
    }

    /// One committed event at its commit time `at_us` (non-decreasing).
    pub fn on_event(&mut self, e: &EventView, at_us: i64) -> Vec<Firing> {
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            if !rule.enabled {
                continue;
            }
            let first = rule.matcher.matches(e);
            let then = match &rule.condition {
                Condition::Sequence { then, .. } => then.matches(e),
                _ => false,
            };
            if !first && !then {
                continue;
            }
            let Some(key) = Self::key(rule, e) else { continue };
            let condition = rule.condition.clone();
            if !self.groups.contains_key(&(i, key.clone())) {
                if self.per_rule[i] >= MAX_GROUPS {
                    self.overflow += 1;
                    continue;
                }
                self.per_rule[i] += 1;
            }
            let state = self.groups.entry((i, key.clone())).or_default();
            match condition {
                Condition::Immediate => out.push(self.fire(i, key, 1, vec![e.seq], at_us)),
                Condition::Threshold { count, window_secs } => {
                    // A threshold needs no more than its count (and 20 for
                    // the alert's list).
                    state.push(at_us, e.seq, None, (count as usize).clamp(20, MAX_RECENT));
                    state.expire(at_us, window_secs as i64 * SECOND_US);
                    let n = state.recent.len() as u64;
                    if n >= u64::from(count) {
                        let seqs = state.recent.iter().rev().take(20).map(|(_, s, _)| *s).collect();
                        out.push(self.fire(i, key, n, seqs, at_us));
                    }
                }
                Condition::Distinct { count, field: f, window_secs } => {
                    let Some(v) = field(e, &f) else { continue };
                    state.push(at_us, e.seq, Some(v.chars().take(MAX_VALUE).collect()), MAX_RECENT);
                    state.expire(at_us, window_secs as i64 * SECOND_US);
                    let n = state.values.len() as u64;
                    if n >= u64::from(count) {
                        let seqs = state.recent.iter().rev().take(20).map(|(_, s, _)| *s).collect();
                        out.push(self.fire(i, key, n, seqs, at_us));
                    }
                }
                Condition::Sequence { window_secs, .. } => {
                    // `then` is checked first: one event may close a sequence
                    // and open the next.
                    if then
                        && let Some((t, s)) = state.first_at
                        && at_us - t < window_secs as i64 * SECOND_US
                    {
                        state.first_at = None;
                        out.push(self.fire(i, key.clone(), 2, vec![s, e.seq], at_us));
                    }
                    if first {
                        self.groups.entry((i, key)).or_default().first_at = Some((at_us, e.seq));
                    }
                }
                Condition::Absence { .. } => {
                    state.seen_at = Some(at_us);
                    state.seen_seq = e.seq;
                    state.silent = false;
                }
            }
        }
        out
    }

    /// Time passes (`now_us`): absence rules report groups silent for
    /// their window, once per silence.
    pub fn on_tick(&mut self, now_us: i64) -> Vec<Firing> {
        let mut out = Vec::new();
        let mut due = Vec::new();
        for ((i, key), state) in &mut self.groups {
            let rule = &self.rules[*i];
            if let (true, Condition::Absence { window_secs }) = (rule.enabled, &rule.condition)
                && let Some(seen) = state.seen_at
                && !state.silent
                && now_us - seen >= *window_secs as i64 * SECOND_US
            {
                state.silent = true;
                due.push((*i, key.clone(), state.seen_seq));
            }
        }
        for (i, key, seen) in due {
            // The last match before the silence: where to look, and what
            // makes this firing unique.
            out.push(self.fire(i, key, 0, vec![seen], now_us));
        }
        self.prune(now_us);
        out
    }

    /// Forgets groups nothing can fire from any more (their matches out of
    /// the window, their cooldown over): the state stays bounded by the
    /// groups active within the rules' windows. Absence groups are kept:
    /// their silence is what the rule watches.
    fn prune(&mut self, now_us: i64) {
        let rules = &self.rules;
        let per_rule = &mut self.per_rule;
        self.groups.retain(|(i, _), state| {
            let rule = &rules[*i];
            let window = match &rule.condition {
                Condition::Absence { .. } => return true,
                Condition::Immediate => 0,
                Condition::Threshold { window_secs, .. }
                | Condition::Distinct { window_secs, .. }
                | Condition::Sequence { window_secs, .. } => *window_secs as i64 * SECOND_US,
            };
            state.expire(now_us, window);
            let cooling = state.fired_at.is_some_and(|t| now_us - t < rule.cooldown_secs as i64 * SECOND_US);
            let waiting = state.first_at.is_some_and(|(t, _)| now_us - t < window);
            let keep = !state.recent.is_empty() || cooling || waiting;
            if !keep {
                per_rule[*i] -= 1;
            }
            keep
        });
    }

    /// Groups held in memory.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

/// The rules Custos ships with, enabled and editable (issue 16's pack,
/// for what Custos already records; rules on SIEM forwarding, the
/// checkpointer and working hours come with those features).
pub fn builtin_rules() -> Vec<Rule> {
    let m = |actions: &[&str], outcomes: &[&str]| Matcher {
        actions: actions.iter().map(|a| a.to_string()).collect(),
        outcomes: outcomes.iter().map(|o| o.to_string()).collect(),
        ..Matcher::default()
    };
    let rule = |id: &str,
                name: &str,
                severity: &str,
                matcher: Matcher,
                condition: Condition,
                group_by: &[&str],
                cooldown_secs: u64| Rule {
        id: id.into(),
        name: name.into(),
        enabled: true,
        severity: severity.into(),
        matcher,
        condition,
        group_by: group_by.iter().map(|g| g.to_string()).collect(),
        cooldown_secs,
    };
    let threshold = |count, window_secs| Condition::Threshold { count, window_secs };
    let detail = |path: &str, test: DetailTest| DetailMatch { path: path.into(), test };
    vec![
        rule(
            "brute_force",
            "Brute force: 5 failed sign-ins of one account in 5 minutes",
            "warning",
            m(&["user.login"], &["failure"]),
            threshold(5, 300),
            &["actor"],
            900,
        ),
        rule(
            "password_spraying",
            "Password spraying: one address failing for 10 accounts in 10 minutes",
            "error",
            m(&["user.login"], &["failure"]),
            Condition::Distinct { count: 10, field: "actor".into(), window_secs: 600 },
            &["actor.ip"],
            1800,
        ),
        rule(
            "account_locked",
            "An account was locked after failed sign-ins",
            "warning",
            m(&["user.lockout"], &[]),
            Condition::Immediate,
            &["actor"],
            0,
        ),
        rule(
            "admin_granted",
            "The admin role was granted",
            "critical",
            // Custos's own record of a role change: an application cannot
            // send one (its name is reserved), so it cannot be forged.
            Matcher {
                applications: vec!["custos".into()],
                details: vec![detail("after", DetailTest::Contains("admin".into()))],
                ..m(&["user.roles.update"], &["success"])
            },
            Condition::Immediate,
            &[],
            0,
        ),
        rule(
            "apikey_off_hours",
            "An API key was created outside working hours (08:00-18:00 UTC)",
            "warning",
            Matcher {
                applications: vec!["custos".into()],
                outside_hours: Some([8, 18]),
                ..m(&["apikey.create"], &["success"])
            },
            Condition::Immediate,
            &[],
            0,
        ),
        rule(
            "export_mass",
            "An export of more than 100,000 events",
            "warning",
            Matcher {
                details: vec![detail("rows", DetailTest::GreaterThan(100_000.0))],
                ..m(&["audit.export.completed"], &[])
            },
            Condition::Immediate,
            &["actor"],
            0,
        ),
        rule(
            "export_repeated",
            "Repeated exports: 5 by one actor in an hour",
            "warning",
            m(&["audit.export.completed"], &[]),
            threshold(5, 3600),
            &["actor"],
            3600,
        ),
        rule(
            "unmask_burst",
            "Unmasking burst: 10 by one actor in 10 minutes",
            "warning",
            m(&["audit.unmask"], &[]),
            threshold(10, 600),
            &["actor"],
            1800,
        ),
        rule(
            "access_denied_burst",
            "Access denied 20 times to one actor in 5 minutes",
            "warning",
            m(&[], &["denied"]),
            threshold(20, 300),
            &["actor"],
            900,
        ),
        rule(
            "verification_failed",
            "Ledger verification failed",
            "critical",
            m(&["audit.verify"], &["failure", "error"]),
            Condition::Immediate,
            &[],
            0,
        ),
        rule(
            "application_silent",
            "An application sent nothing for an hour",
            "notice",
            Matcher::default(),
            Condition::Absence { window_secs: 3600 },
            &["application"],
            0,
        ),
    ]
}

/// Rules always in force besides the `alert_rules` policy: Custos's own
/// health, which no policy should turn off. (They are not in the policy's
/// version 0, whose content must never change.) A rule in the policy with
/// the same id replaces one of these.
pub fn system_rules() -> Vec<Rule> {
    vec![Rule {
        id: "forward_destination_down".into(),
        name: "A SIEM forwarding destination is failing".into(),
        enabled: true,
        severity: "error".into(),
        // Custos's own records, written once when a destination starts to
        // fail, and when an event it refused is passed over (an application
        // cannot send one: the name is reserved).
        matcher: Matcher {
            actions: vec!["custos.forward.failed".into(), "custos.forward.skipped".into()],
            applications: vec!["custos".into()],
            ..Matcher::default()
        },
        condition: Condition::Immediate,
        group_by: vec!["resource".into()],
        // One alert per destination every five minutes at most (skipped
        // events could come one after another).
        cooldown_secs: 300,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    const T0: i64 = 1_800_000_000_000_000;

    fn ev(seq: u64, action: &str, outcome: &str, actor: &str, ip: &str) -> EventView {
        serde_json::from_value(json!({
            "seq": seq, "id": "0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f", "occurred_at": "2027-01-15T08:00:00Z",
            "recorded_at": "2027-01-15T08:00:00Z", "category": "authentication", "action": action,
            "outcome": outcome, "severity": "info", "actor": {"id": actor, "kind": "user", "ip": ip},
            "source": {"channel": "api", "application": "portal"}, "correlation": {},
            "details": {"rows": seq * 100, "request": {"method": "GET"}}
        }))
        .unwrap()
    }

    fn rule(condition: Condition, group_by: &[&str]) -> Rule {
        Rule {
            id: "r".into(),
            name: "r".into(),
            enabled: true,
            severity: "warning".into(),
            matcher: Matcher {
                actions: vec!["user.login".into()],
                outcomes: vec!["failure".into()],
                ..Matcher::default()
            },
            condition,
            group_by: group_by.iter().map(|s| s.to_string()).collect(),
            cooldown_secs: 0,
        }
    }

    #[test]
    fn a_forwarding_destination_failing_opens_an_alert_per_destination_from_custos_only() {
        let mut x = Evaluator::new(system_rules());
        let failed = |app: &str, dest: &str| {
            let mut e = ev(9, "custos.forward.failed", "failure", "custos", "203.0.113.7");
            e.source.application = Some(app.into());
            e.resource =
                Some(custos_model::Resource { kind: "forward_destination".into(), id: Some(dest.into()), name: None });
            e
        };
        let f = x.on_event(&failed("custos", "siem"), 1);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].group.get("resource").map(String::as_str), Some("siem"));
        assert!(x.on_event(&failed("portal", "siem"), 2).is_empty(), "an application cannot forge it");
    }

    #[test]
    fn matchers_take_the_explorers_filters_and_details() {
        let e = ev(3, "user.login", "failure", "ada", "203.0.113.7");
        let m = |j: serde_json::Value| serde_json::from_value::<Matcher>(j).unwrap().matches(&e);
        assert!(m(json!({"actions": ["user.*"], "outcomes": ["failure", "denied"]})));
        assert!(!m(json!({"actions": ["use.*"]})), "a prefix ends at a dot");
        assert!(!m(json!({"applications": ["crm"]})));
        assert!(m(json!({"details": [{"path": "rows", "op": "greater_than", "value": 250}]})));
        assert!(!m(json!({"details": [{"path": "rows", "op": "greater_than", "value": 300}]})));
        assert!(m(json!({"details": [{"path": "request.method", "op": "equals", "value": "GET"}]})));
        assert!(m(json!({"details": [{"path": "request.method", "op": "contains", "value": "ge"}]})));
        assert!(!m(json!({"details": [{"path": "missing", "op": "equals", "value": 1}]})));
        assert_eq!(field(&e, "actor.ip").as_deref(), Some("203.0.113.7"));
        assert_eq!(field(&e, "details.request.method").as_deref(), Some("GET"));
    }

    #[test]
    fn a_threshold_fires_at_n_in_the_window_per_group_and_cools_down() {
        let mut r = rule(Condition::Threshold { count: 5, window_secs: 300 }, &["actor"]);
        r.cooldown_secs = 600;
        let mut x = Evaluator::new(vec![r]);
        let mut fired = Vec::new();
        for i in 0..4 {
            fired.extend(x.on_event(&ev(i, "user.login", "failure", "ada", "a"), T0 + i as i64 * SECOND_US));
            fired.extend(x.on_event(&ev(100 + i, "user.login", "failure", "bob", "b"), T0 + i as i64 * SECOND_US));
        }
        assert!(fired.is_empty(), "4 each: not yet");
        assert!(x.on_event(&ev(9, "user.login", "success", "ada", "a"), T0 + 5 * SECOND_US).is_empty(), "not a match");
        let f = x.on_event(&ev(10, "user.login", "failure", "ada", "a"), T0 + 10 * SECOND_US);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].count, f[0].new, f[0].group["actor"].as_str()), (5, true, "ada"));
        assert_eq!(f[0].seqs, [10, 3, 2, 1, 0]);
        let again = x.on_event(&ev(11, "user.login", "failure", "ada", "a"), T0 + 20 * SECOND_US);
        assert_eq!((again[0].count, again[0].new), (6, false), "within the cooldown: counted into the open alert");
        // Outside the window the old matches no longer count.
        let late = x.on_event(&ev(12, "user.login", "failure", "bob", "b"), T0 + 400 * SECOND_US);
        assert!(late.is_empty(), "bob's four are older than five minutes");
        x.on_tick(T0 + 500 * SECOND_US);
        assert_eq!(x.groups(), 2, "ada's is cooling down, bob's last match is in its window");
        x.on_tick(T0 + 650 * SECOND_US);
        assert_eq!(x.groups(), 1, "ada's cooldown is over and her matches are old: forgotten");
        x.on_tick(T0 + 800 * SECOND_US);
        assert_eq!(x.groups(), 0);
    }

    #[test]
    fn working_hours_are_judged_in_utc() {
        let m: Matcher = serde_json::from_value(json!({"outside_hours": [8, 18]})).unwrap();
        let mut e = ev(1, "apikey.create", "success", "root", "a");
        for (at, off) in [
            ("2027-01-15T07:59:59Z", true),
            ("2027-01-15T08:00:00Z", false),
            ("2027-01-15T17:59:59Z", false),
            ("2027-01-15T18:00:00Z", true),
        ] {
            e.occurred_at = at.into();
            assert_eq!(m.matches(&e), off, "{at}");
        }
        let mut r = rule(Condition::Immediate, &[]);
        r.matcher.outside_hours = Some([18, 8]);
        assert_eq!(r.check().unwrap_err().0, "matcher.outside_hours");
    }

    #[test]
    fn groups_per_rule_are_bounded_and_freed_when_they_go_quiet() {
        let r = rule(Condition::Threshold { count: 2, window_secs: 60 }, &["actor"]);
        let mut x = Evaluator::new(vec![r]);
        for i in 0..(MAX_GROUPS as u64 + 5) {
            x.on_event(&ev(i, "user.login", "failure", &format!("a{i}"), "ip"), T0);
        }
        assert_eq!((x.groups(), x.overflow()), (MAX_GROUPS, 5));
        x.on_tick(T0 + 61 * SECOND_US);
        assert_eq!(x.groups(), 0);
        x.on_event(&ev(1, "user.login", "failure", "z", "ip"), T0 + 62 * SECOND_US);
        assert_eq!(x.groups(), 1, "room again");
    }

    #[test]
    fn distinct_values_catch_password_spraying() {
        let r = rule(Condition::Distinct { count: 3, field: "actor".into(), window_secs: 60 }, &["actor.ip"]);
        let mut x = Evaluator::new(vec![r]);
        assert!(x.on_event(&ev(1, "user.login", "failure", "ada", "198.51.100.9"), T0).is_empty());
        assert!(x.on_event(&ev(2, "user.login", "failure", "ada", "198.51.100.9"), T0 + 1).is_empty(), "same name");
        assert!(x.on_event(&ev(3, "user.login", "failure", "bob", "198.51.100.9"), T0 + 2).is_empty());
        assert!(x.on_event(&ev(4, "user.login", "failure", "eve", "192.0.2.1"), T0 + 3).is_empty(), "another address");
        let f = x.on_event(&ev(5, "user.login", "failure", "carol", "198.51.100.9"), T0 + 4);
        assert_eq!((f.len(), f[0].count, f[0].group["actor.ip"].as_str()), (1, 3, "198.51.100.9"));
    }

    #[test]
    fn a_sequence_fires_when_the_second_step_follows_within_the_window() {
        let mut r = rule(
            Condition::Sequence {
                then: Box::new(Matcher {
                    actions: vec!["user.login".into()],
                    outcomes: vec!["success".into()],
                    ..Matcher::default()
                }),
                window_secs: 60,
            },
            &["actor"],
        );
        r.id = "fail_then_success".into();
        let mut x = Evaluator::new(vec![r]);
        assert!(x.on_event(&ev(1, "user.login", "success", "ada", "a"), T0).is_empty(), "no first step yet");
        assert!(x.on_event(&ev(2, "user.login", "failure", "ada", "a"), T0 + SECOND_US).is_empty());
        assert!(x.on_event(&ev(3, "user.login", "success", "bob", "a"), T0 + 2 * SECOND_US).is_empty(), "other group");
        let f = x.on_event(&ev(4, "user.login", "success", "ada", "a"), T0 + 3 * SECOND_US);
        assert_eq!((f.len(), f[0].seqs.clone()), (1, vec![2, 4]));
        assert!(x.on_event(&ev(5, "user.login", "failure", "ada", "a"), T0 + 4 * SECOND_US).is_empty());
        assert!(x.on_event(&ev(6, "user.login", "success", "ada", "a"), T0 + 70 * SECOND_US).is_empty(), "too late");
    }

    #[test]
    fn absence_reports_a_silent_group_once_per_silence() {
        let mut r = rule(Condition::Absence { window_secs: 3600 }, &["application"]);
        r.matcher = Matcher::default();
        let mut x = Evaluator::new(vec![r]);
        x.on_event(&ev(1, "user.login", "success", "ada", "a"), T0);
        assert!(x.on_tick(T0 + 3599 * SECOND_US).is_empty());
        let f = x.on_tick(T0 + 3600 * SECOND_US);
        assert_eq!((f.len(), f[0].group["application"].as_str(), f[0].count), (1, "portal", 0));
        assert!(x.on_tick(T0 + 7200 * SECOND_US).is_empty(), "once per silence");
        x.on_event(&ev(2, "user.login", "success", "ada", "a"), T0 + 7300 * SECOND_US);
        assert_eq!(x.on_tick(T0 + 10_900 * SECOND_US).len(), 1, "a new silence after events came back");
    }

    #[test]
    fn immediate_rules_fire_on_every_match_and_disabled_rules_never() {
        let mut r = rule(Condition::Immediate, &[]);
        let mut x = Evaluator::new(vec![r.clone()]);
        assert_eq!(x.on_event(&ev(1, "user.login", "failure", "ada", "a"), T0).len(), 1);
        r.enabled = false;
        let mut x = Evaluator::new(vec![r]);
        assert!(x.on_event(&ev(1, "user.login", "failure", "ada", "a"), T0).is_empty());
    }

    #[test]
    fn the_builtin_pack_is_valid_and_catches_what_it_names() {
        let pack = builtin_rules();
        let mut ids = BTreeSet::new();
        for r in &pack {
            assert!(r.check().is_ok(), "{}: {:?}", r.id, r.check());
            assert!(ids.insert(r.id.clone()), "{} twice", r.id);
            let back: Rule = serde_json::from_value(serde_json::to_value(r).unwrap()).unwrap();
            assert_eq!(&back, r, "round-trips as JSON");
        }
        let mut x = Evaluator::new(pack);
        let mut fired = BTreeSet::new();
        for i in 0..5 {
            for f in x.on_event(&ev(i, "user.login", "failure", "ada", "198.51.100.9"), T0 + i as i64) {
                fired.insert(f.rule);
            }
        }
        let mut grant = ev(9, "user.roles.update", "success", "root", "a");
        grant.details = Some(json!({"before": ["viewer"], "after": ["viewer", "admin"]}));
        assert!(x.on_event(&grant, T0 + 10).iter().all(|f| f.rule != "admin_granted"), "an application's claim");
        grant.source.application = Some("custos".into());
        for f in x.on_event(&grant, T0 + 10) {
            fired.insert(f.rule);
        }
        grant.details = Some(json!({"before": [], "after": ["viewer"]}));
        assert!(x.on_event(&grant, T0 + 11).iter().all(|f| f.rule != "admin_granted"), "not admin");
        assert_eq!(fired.into_iter().collect::<Vec<_>>(), ["admin_granted", "brute_force"]);
    }

    #[test]
    fn rules_are_checked_and_read_from_json() {
        let r: Rule = serde_json::from_value(json!({
            "id": "brute_force", "name": "Brute force", "severity": "warning",
            "matcher": {"actions": ["user.login"], "outcomes": ["failure"]},
            "condition": {"type": "threshold", "count": 5, "window_secs": 300},
            "group_by": ["actor"], "cooldown_secs": 900
        }))
        .unwrap();
        assert!(r.check().is_ok() && r.enabled);
        let bad = |f: &dyn Fn(&mut Rule), field: &str| {
            let mut x = r.clone();
            f(&mut x);
            assert_eq!(x.check().unwrap_err().0, field);
        };
        bad(&|x| x.id = "Brute Force".into(), "id");
        bad(&|x| x.severity = "urgent".into(), "severity");
        bad(&|x| x.group_by = vec!["shoe_size".into()], "group_by");
        bad(&|x| x.condition = Condition::Threshold { count: 0, window_secs: 60 }, "condition.count");
        bad(&|x| x.condition = Condition::Threshold { count: 2, window_secs: 0 }, "condition.window_secs");
        bad(
            &|x| x.condition = Condition::Distinct { count: 3, field: "nope".into(), window_secs: 60 },
            "condition.field",
        );
        assert!(
            serde_json::from_value::<Rule>(
                json!({"id": "x", "name": "x", "severity": "info", "condition": {"type": "sometimes"}})
            )
            .is_err()
        );
    }
}
