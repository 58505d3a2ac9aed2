//! The retention and legal-hold policies: their documents, how an event's
//! period is found, and what a hold keeps.
//!
//! **Precedence.** An event's period is the *longest* among the enabled
//! rules that match it (forever beats any number of days): among matching
//! rules a rule can only keep events longer, never shorten what another
//! requires. The default period (forever unless set) applies only to
//! events no rule matches. Legal holds
//! override every period. The entries that anchor purges and removals are
//! never removed. Expiry counts from the time Custos recorded the event
//! (`recorded_at`), never from the time the application claims
//! (`occurred_at`), which a client could backdate.
//!
//! **Floor.** No period may be shorter than `retention.min_days` (default
//! 365) unless the rule gives `floor_override` (a reason); proposing such a
//! rule needs `admin`, and the proposal (with the reason) is in the ledger.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::SearchFilter;
use crate::events::validate::FieldError;
use crate::time::{DAY_US, parse_rfc3339};

/// The retention policy kind's name.
pub const RETENTION_KIND: &str = "retention";
/// The legal-hold policy kind's name.
pub const HOLDS_KIND: &str = "legal_holds";

static FLOOR_DAYS: AtomicU32 = AtomicU32::new(365);

/// Sets the floor (`retention.min_days`), at start-up.
pub fn set_floor_days(days: u32) {
    FLOOR_DAYS.store(days, Ordering::Relaxed);
}

/// The floor in force (days).
pub fn floor_days() -> u32 {
    FLOOR_DAYS.load(Ordering::Relaxed)
}

static SCHEDULED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Records whether retention runs daily (`retention.run_at` not `off`), at
/// start-up, for the compliance check.
pub fn set_scheduled(on: bool) {
    SCHEDULED.store(on, Ordering::Relaxed);
}

/// Whether retention runs daily.
pub fn scheduled() -> bool {
    SCHEDULED.load(Ordering::Relaxed)
}

const MAX_RULES: usize = 100;
const MAX_HOLDS: usize = 200;
/// The longest period a rule may give (100 years); longer is "forever".
const MAX_DAYS: u32 = 36_500;

fn yes() -> bool {
    true
}

fn bad(path: String, reason: impl Into<String>) -> FieldError {
    FieldError { path, reason: reason.into() }
}

fn check_id(path: String, id: &str) -> Result<(), FieldError> {
    if id.is_empty()
        || id.len() > 64
        || !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(bad(path, "1 to 64 characters: a-z, 0-9, _ and -"));
    }
    Ok(())
}

fn check_text(path: String, t: &str, max: usize, required: bool) -> Result<(), FieldError> {
    if (required && t.trim().is_empty()) || t.chars().count() > max {
        let least = if required { "1 to" } else { "at most" };
        return Err(bad(path, format!("{least} {max} characters")));
    }
    Ok(())
}

/// One retention rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Its id (a-z, 0-9, `_`, `-`).
    pub id: String,
    /// For people.
    #[serde(default)]
    pub name: String,
    /// Only this category.
    #[serde(default)]
    pub category: Option<String>,
    /// Only this action: exact, `prefix.*`, or `*`.
    #[serde(default)]
    pub action: Option<String>,
    /// Only this tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Only this source application.
    #[serde(default)]
    pub source_app: Option<String>,
    /// Days kept after recording; `None`: forever.
    pub days: Option<u32>,
    /// The regime the period comes from (a label: PCI DSS, HIPAA, …).
    #[serde(default)]
    pub framework: Option<String>,
    /// Why this rule goes below the floor (needs `admin`).
    #[serde(default)]
    pub floor_override: Option<String>,
    /// In force.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// The clear columns a rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct Clear<'a> {
    /// Category.
    pub category: &'a str,
    /// Action.
    pub action: &'a str,
    /// Tenant.
    pub tenant: Option<&'a str>,
    /// Source application.
    pub source_app: Option<&'a str>,
}

fn action_matches(pattern: &str, action: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => action.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')),
        None => pattern == action,
    }
}

impl RetentionRule {
    /// Whether it applies to an event.
    pub fn matches(&self, e: &Clear<'_>) -> bool {
        self.enabled
            && self.category.as_deref().is_none_or(|c| c == e.category)
            && self.action.as_deref().is_none_or(|a| action_matches(a, e.action))
            && self.tenant.as_deref().is_none_or(|t| Some(t) == e.tenant)
            && self.source_app.as_deref().is_none_or(|s| Some(s) == e.source_app)
    }
}

/// The retention policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RetentionDoc {
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RetentionRule>,
    /// Days events no rule matches are kept; `None`: forever.
    #[serde(default)]
    pub default_days: Option<u32>,
}

impl RetentionDoc {
    /// Parses a document; the first bad rule is named.
    pub fn parse(doc: &Value) -> Result<RetentionDoc, FieldError> {
        serde_json::from_value(doc.clone()).map_err(|e| {
            if let Some(items) = doc.get("rules").and_then(Value::as_array) {
                for (i, item) in items.iter().enumerate() {
                    if let Err(e) = serde_json::from_value::<RetentionRule>(item.clone()) {
                        return bad(format!("content.rules[{i}]"), e.to_string());
                    }
                }
            }
            bad("content".into(), format!("not a retention policy ({{\"rules\": [...], \"default_days\": n}}): {e}"))
        })
    }

    /// Checks it against the floor in force.
    pub fn check(&self) -> Result<(), FieldError> {
        let floor = floor_days();
        if self.rules.len() > MAX_RULES {
            return Err(bad("content.rules".into(), format!("at most {MAX_RULES} rules")));
        }
        if let Some(d) = self.default_days {
            if d == 0 || d > MAX_DAYS {
                return Err(bad("content.default_days".into(), format!("1 to {MAX_DAYS} days, or null (forever)")));
            }
            if d < floor {
                return Err(bad(
                    "content.default_days".into(),
                    format!("{d} days is below the floor of {floor} days (retention.min_days)"),
                ));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = |f: &str| format!("content.rules[{i}].{f}");
            check_id(at("id"), &r.id)?;
            if !ids.insert(r.id.as_str()) {
                return Err(bad(at("id"), format!("`{}` is used by another rule", r.id)));
            }
            check_text(at("name"), &r.name, 200, false)?;
            if let Some(c) = &r.category
                && !custos_model::CATEGORIES.contains(&c.as_str())
            {
                return Err(bad(at("category"), format!("one of {}", custos_model::CATEGORIES.join(", "))));
            }
            if let Some(a) = &r.action {
                let stem = a.strip_suffix(".*").unwrap_or(a);
                if a.is_empty() || a.len() > 128 || (a != "*" && (stem.is_empty() || stem.contains('*'))) {
                    return Err(bad(at("action"), "an action, `prefix.*` or `*`"));
                }
            }
            for (f, v) in [("tenant", &r.tenant), ("source_app", &r.source_app)] {
                if v.as_ref().is_some_and(|v| v.is_empty() || v.len() > 128) {
                    return Err(bad(at(f), "1 to 128 characters, or leave it out"));
                }
            }
            check_text(at("framework"), r.framework.as_deref().unwrap_or(""), 64, false)?;
            match r.days {
                Some(d) if d == 0 || d > MAX_DAYS => {
                    return Err(bad(at("days"), format!("1 to {MAX_DAYS} days, or null (forever)")));
                }
                Some(d) if d < floor && r.floor_override.as_deref().is_none_or(|o| o.trim().is_empty()) => {
                    return Err(bad(
                        at("days"),
                        format!(
                            "{d} days is below the floor of {floor} days (retention.min_days); an admin may go \
                             below it by giving `floor_override` (the reason)"
                        ),
                    ));
                }
                _ => {}
            }
            if let Some(o) = &r.floor_override {
                check_text(at("floor_override"), o, 500, true)?;
                if r.days.is_none_or(|d| d >= floor) {
                    return Err(bad(at("floor_override"), "only for a rule below the floor; leave it out"));
                }
            }
        }
        Ok(())
    }

    /// Whether a rule goes below the floor (proposing it needs `admin`).
    pub fn overrides_floor(&self) -> bool {
        self.rules.iter().any(|r| r.floor_override.is_some())
    }

    /// The period of an event, in days (`None`: forever), and the rule
    /// that gives it (`None`: the default).
    pub fn period(&self, e: &Clear<'_>) -> (Option<u32>, Option<&str>) {
        let mut best: Option<(Option<u32>, &str)> = None;
        for r in self.rules.iter().filter(|r| r.matches(e)) {
            let longer = match best {
                None => true,
                Some((None, _)) => false,
                Some((Some(b), _)) => r.days.is_none_or(|d| d > b),
            };
            if longer {
                best = Some((r.days, r.id.as_str()));
            }
        }
        match best {
            Some((d, id)) => (d, Some(id)),
            None => (self.default_days, None),
        }
    }

    /// The shortest finite period of any rule or the default (days): no
    /// event recorded more recently than that can expire.
    pub fn shortest_days(&self) -> Option<u32> {
        self.rules.iter().filter(|r| r.enabled).filter_map(|r| r.days).chain(self.default_days).min()
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let on: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.enabled)
            .map(|r| format!("{} {}", r.id, r.days.map_or("forever".into(), |d| format!("{d}d"))))
            .collect();
        let default = self.default_days.map_or("forever".into(), |d| format!("{d} days"));
        if on.is_empty() {
            format!("No rule; everything kept {default}")
        } else {
            format!("{} rule(s): {}; otherwise {default}", on.len(), on.join(", "))
        }
    }
}

/// A release of a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Why.
    pub reason: String,
}

/// One legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// Its id.
    pub id: String,
    /// The case it is for.
    pub case_id: String,
    /// Why.
    pub reason: String,
    /// What it keeps, in the explorer's filter language (tenant, actor,
    /// resource, category, action, …; empty: everything).
    #[serde(default)]
    pub query: String,
    /// Events that occurred from (RFC 3339).
    #[serde(default)]
    pub from: Option<String>,
    /// Events that occurred before (RFC 3339).
    #[serde(default)]
    pub to: Option<String>,
    /// Released (kept in the policy, no longer in force).
    #[serde(default)]
    pub released: Option<Release>,
}

impl Hold {
    /// The events it keeps, as a search filter.
    pub fn filter(&self, at: &str) -> Result<SearchFilter, FieldError> {
        let mut f = crate::events::search::filter_of_query(&self.query, &format!("{at}.query"))?;
        for (field, value, slot) in [("from", &self.from, &mut f.from_us), ("to", &self.to, &mut f.to_us)] {
            if let Some(v) = value {
                *slot = Some(parse_rfc3339(v).ok_or_else(|| bad(format!("{at}.{field}"), "a time in RFC 3339 (UTC)"))?);
            }
        }
        if let (Some(a), Some(b)) = (f.from_us, f.to_us)
            && a >= b
        {
            return Err(bad(format!("{at}.to"), "must be after `from`"));
        }
        Ok(f)
    }

    /// In force.
    pub fn active(&self) -> bool {
        self.released.is_none()
    }
}

/// The legal-hold policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HoldsDoc {
    /// Every hold, released ones included.
    #[serde(default)]
    pub holds: Vec<Hold>,
}

impl HoldsDoc {
    /// Parses a document; the first bad hold is named.
    pub fn parse(doc: &Value) -> Result<HoldsDoc, FieldError> {
        serde_json::from_value(doc.clone()).map_err(|e| {
            if let Some(items) = doc.get("holds").and_then(Value::as_array) {
                for (i, item) in items.iter().enumerate() {
                    if let Err(e) = serde_json::from_value::<Hold>(item.clone()) {
                        return bad(format!("content.holds[{i}]"), e.to_string());
                    }
                }
            }
            bad("content".into(), format!("not a legal-hold policy ({{\"holds\": [...]}}): {e}"))
        })
    }

    /// Checks it.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.holds.len() > MAX_HOLDS {
            return Err(bad("content.holds".into(), format!("at most {MAX_HOLDS} holds")));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, h) in self.holds.iter().enumerate() {
            let at = format!("content.holds[{i}]");
            check_id(format!("{at}.id"), &h.id)?;
            if !ids.insert(h.id.as_str()) {
                return Err(bad(format!("{at}.id"), format!("`{}` is used by another hold", h.id)));
            }
            check_text(format!("{at}.case_id"), &h.case_id, 128, true)?;
            check_text(format!("{at}.reason"), &h.reason, 1000, true)?;
            if h.query.len() > 2000 {
                return Err(bad(format!("{at}.query"), "at most 2,000 characters"));
            }
            h.filter(&at)?;
            if let Some(r) = &h.released {
                check_text(format!("{at}.released.reason"), &r.reason, 1000, true)?;
            }
        }
        Ok(())
    }

    /// A change may add holds and release them, never remove or rewrite
    /// one (released holds are kept): checked against the version in force.
    pub fn check_change(&self, in_force: &HoldsDoc) -> Result<(), FieldError> {
        for old in &in_force.holds {
            let Some((i, new)) = self.holds.iter().enumerate().find(|(_, h)| h.id == old.id) else {
                return Err(bad(
                    "content.holds".into(),
                    format!("hold `{}` (case {}) cannot be removed: release it instead", old.id, old.case_id),
                ));
            };
            let same = new.case_id == old.case_id
                && new.reason == old.reason
                && new.query == old.query
                && new.from == old.from
                && new.to == old.to;
            if !same {
                return Err(bad(
                    format!("content.holds[{i}]"),
                    "a hold cannot be changed once placed: release it and place a new one",
                ));
            }
            if old.released.is_some() && new.released != old.released {
                return Err(bad(format!("content.holds[{i}].released"), "a released hold stays released"));
            }
        }
        Ok(())
    }

    /// The holds in force, with their filters.
    pub fn active_filters(&self) -> Result<Vec<(&Hold, SearchFilter)>, FieldError> {
        self.holds
            .iter()
            .enumerate()
            .filter(|(_, h)| h.active())
            .map(|(i, h)| h.filter(&format!("content.holds[{i}]")).map(|f| (h, f)))
            .collect()
    }
}

/// When an event recorded at `recorded_at_us` with a period of `days`
/// expires (µs).
pub fn expires_at(recorded_at_us: i64, days: u32) -> i64 {
    recorded_at_us.saturating_add(i64::from(days) * DAY_US)
}

/// The erasure-request policy kind's name.
pub const ERASURES_KIND: &str = "erasures";

/// One erasure request (GDPR Art. 17): one data subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// Its id.
    pub id: String,
    /// The subject, in the explorer's filter language, naming an actor
    /// (`actor=alice`, or a pseudonym as stored) or a resource
    /// (`resource_id=…`, with `resource_type` if wanted); `tenant` may
    /// narrow it.
    pub subject: String,
    /// Why (the data subject's request, its reference).
    pub reason: String,
    /// The request's reference (a ticket).
    #[serde(default)]
    pub reference: Option<String>,
}

impl ErasureRequest {
    /// The events it erases, as a search filter.
    pub fn filter(&self, at: &str) -> Result<SearchFilter, FieldError> {
        let f = crate::events::search::filter_of_query(&self.subject, &format!("{at}.subject"))?;
        if f.actors.is_empty() && f.resource_ids.is_empty() {
            return Err(bad(format!("{at}.subject"), "must name the data subject: `actor=…` or `resource_id=…`"));
        }
        if f.actors.iter().any(|a| a == crate::events::validate::RESERVED_NAME) {
            return Err(bad(format!("{at}.subject"), "Custos itself is not a data subject"));
        }
        let allowed = f.actions.is_empty()
            && f.outcomes.is_empty()
            && f.categories.is_empty()
            && f.channels.is_empty()
            && f.severities.is_empty()
            && !f.exclude_own;
        if !allowed {
            return Err(bad(
                format!("{at}.subject"),
                "names a subject only: actor, resource_type, resource_id, tenant (an erasure takes all their events)",
            ));
        }
        Ok(f)
    }
}

/// The erasure-request policy: the register of requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ErasuresDoc {
    /// Every request, carried out or not.
    #[serde(default)]
    pub requests: Vec<ErasureRequest>,
}

impl ErasuresDoc {
    /// Parses a document; the first bad request is named.
    pub fn parse(doc: &Value) -> Result<ErasuresDoc, FieldError> {
        serde_json::from_value(doc.clone()).map_err(|e| {
            if let Some(items) = doc.get("requests").and_then(Value::as_array) {
                for (i, item) in items.iter().enumerate() {
                    if let Err(e) = serde_json::from_value::<ErasureRequest>(item.clone()) {
                        return bad(format!("content.requests[{i}]"), e.to_string());
                    }
                }
            }
            bad("content".into(), format!("not an erasure register ({{\"requests\": [...]}}): {e}"))
        })
    }

    /// Checks it.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.requests.len() > 10_000 {
            return Err(bad("content.requests".into(), "at most 10,000 requests"));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, r) in self.requests.iter().enumerate() {
            let at = format!("content.requests[{i}]");
            check_id(format!("{at}.id"), &r.id)?;
            if !ids.insert(r.id.as_str()) {
                return Err(bad(format!("{at}.id"), format!("`{}` is used by another request", r.id)));
            }
            if r.subject.len() > 1000 {
                return Err(bad(format!("{at}.subject"), "at most 1,000 characters"));
            }
            r.filter(&at)?;
            check_text(format!("{at}.reason"), &r.reason, 1000, true)?;
            check_text(format!("{at}.reference"), r.reference.as_deref().unwrap_or(""), 128, false)?;
        }
        Ok(())
    }

    /// A change may only add requests: a filed request is never removed or
    /// rewritten (the policy is their register).
    pub fn check_change(&self, in_force: &ErasuresDoc) -> Result<(), FieldError> {
        for old in &in_force.requests {
            match self.requests.iter().enumerate().find(|(_, r)| r.id == old.id) {
                None => {
                    return Err(bad(
                        "content.requests".into(),
                        format!("request `{}` cannot be removed: filed requests are kept", old.id),
                    ));
                }
                Some((i, r)) if r != old => {
                    return Err(bad(format!("content.requests[{i}]"), "a filed request cannot be changed"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, category: Option<&str>, action: Option<&str>, days: Option<u32>) -> RetentionRule {
        RetentionRule {
            id: id.into(),
            name: String::new(),
            category: category.map(Into::into),
            action: action.map(Into::into),
            tenant: None,
            source_app: None,
            days,
            framework: None,
            floor_override: None,
            enabled: true,
        }
    }

    #[test]
    fn the_longest_matching_period_wins_and_forever_beats_all() {
        let doc = RetentionDoc {
            rules: vec![
                rule("auth", Some("authentication"), None, Some(400)),
                rule("login", None, Some("user.*"), Some(2555)),
                rule("keep", None, Some("user.delete"), None),
            ],
            default_days: Some(3650),
        };
        doc.check().unwrap();
        let e = |category, action| Clear { category, action, tenant: None, source_app: None };
        assert_eq!(doc.period(&e("authentication", "token.issue")), (Some(400), Some("auth")));
        assert_eq!(doc.period(&e("authentication", "user.login")), (Some(2555), Some("login")));
        assert_eq!(doc.period(&e("admin", "user.delete")), (None, Some("keep")));
        assert_eq!(doc.period(&e("admin", "users.x")), (Some(3650), None));
        assert_eq!(doc.shortest_days(), Some(400));
    }

    #[test]
    fn the_floor_needs_an_override_with_a_reason() {
        let mut doc = RetentionDoc { rules: vec![rule("short", Some("tool"), None, Some(90))], default_days: None };
        let e = doc.check().unwrap_err();
        assert_eq!(e.path, "content.rules[0].days");
        assert!(e.reason.contains("below the floor of 365 days"), "{}", e.reason);
        doc.rules[0].floor_override = Some("tool calls hold no personal data; 90 days is enough".into());
        doc.check().unwrap();
        assert!(doc.overrides_floor());
        doc.rules[0].days = Some(400);
        assert_eq!(doc.check().unwrap_err().path, "content.rules[0].floor_override");
    }

    #[test]
    fn holds_may_be_released_but_not_removed_or_rewritten() {
        let hold = Hold {
            id: "case-1".into(),
            case_id: "LIT-2026-7".into(),
            reason: "litigation".into(),
            query: "actor=alice".into(),
            from: None,
            to: None,
            released: None,
        };
        let in_force = HoldsDoc { holds: vec![hold.clone()] };
        in_force.check().unwrap();
        assert!(HoldsDoc::default().check_change(&in_force).unwrap_err().reason.contains("release it instead"));
        let mut rewritten = in_force.clone();
        rewritten.holds[0].query = "actor=bob".into();
        assert!(rewritten.check_change(&in_force).is_err());
        let mut released = in_force.clone();
        released.holds[0].released = Some(Release { reason: "case closed".into() });
        released.check_change(&in_force).unwrap();
        assert!(in_force.check_change(&released).is_err(), "a release cannot be undone");
        let mut bad_query = in_force.clone();
        bad_query.holds[0].query = "q=secret".into();
        assert_eq!(bad_query.check().unwrap_err().path, "content.holds[0].query");
    }
}
