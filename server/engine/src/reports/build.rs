//! Building an evidence report: the framework's controls over the period
//! from the daily snapshots (gaps shown, never filled in), the events the
//! framework asks to be recorded counted per class, the verifications,
//! operations and policy changes of the period, and a reproducible sample.

use std::collections::{BTreeMap, BTreeSet};

use custos_model::{
    CheckStatus, ComplianceCheck, ControlSample, DayCounts, EventClassCount, EvidenceOf, OperationFact, PolicyChange,
    ReportCheck, ReportControl, ReportException, ReportSample, ReportVerification, ReportVerifications, SampledEvent,
};
use sea_orm::ConnectionTrait as _;
use sha2::{Digest as _, Sha256};

use super::period::date;
use super::snapshot::Snapshot;
use crate::alerts::store::AlertsError;
use crate::events::compliance::is_full_verification;
use crate::events::{Events, SearchFilter};
use crate::ledger::LedgerError;
use crate::storage::stmt_for;
use crate::time::DAY_US;

/// Events drawn per control.
pub const SAMPLE_PER_CONTROL: u32 = 5;
/// Exceptions listed (all are counted).
const MAX_EXCEPTIONS: usize = 500;
/// Failing days listed per control.
const MAX_FAILING_DAYS: usize = 31;
/// Verifications listed.
const MAX_VERIFICATIONS: usize = 100;
/// Verification records read.
const MAX_VERIFICATIONS_READ: usize = 20_000;

/// A control as the framework maps it: (id, title, check ids).
pub type Control = (&'static str, &'static str, &'static [&'static str]);

/// A status over days: the worst; a pass with days missing is a warning;
/// no day at all is no evidence.
fn over_period(days: &DayCounts, worst: Option<CheckStatus>) -> CheckStatus {
    match worst {
        None => CheckStatus::NoEvidence,
        Some(CheckStatus::Pass) if days.missing > 0 => CheckStatus::Warn,
        Some(s) => s,
    }
}

/// The controls and checks over the period, and the exceptions.
pub fn controls_over(
    controls: &[Control],
    snapshots: &BTreeMap<i64, Snapshot>,
    (from, to): (i64, i64),
) -> (Vec<ReportControl>, Vec<ReportCheck>, Vec<ReportException>, u64) {
    let usable = |day: i64| snapshots.get(&day).filter(|s| s.verified);
    let status_of = |s: &Snapshot, id: &str| s.checks.iter().find(|c| c.id == id).map(|c| c.status);
    let mut out_controls = Vec::new();
    for (id, title, checks) in controls {
        let (mut days, mut worst, mut failing) = (DayCounts::default(), None::<CheckStatus>, Vec::new());
        let mut daily = String::new();
        for day in from..=to {
            let Some(s) = usable(day) else {
                days.missing += 1;
                daily.push('-');
                continue;
            };
            // A check the snapshot lacks (added since) counts as not configured.
            let st = checks
                .iter()
                .map(|c| status_of(s, c).unwrap_or(CheckStatus::NotConfigured))
                .min()
                .unwrap_or(CheckStatus::Pass);
            days.add(st);
            daily.push(custos_model::status_letter(st));
            worst = Some(worst.map_or(st, |w| w.min(st)));
            if st == CheckStatus::Fail && failing.len() < MAX_FAILING_DAYS {
                failing.push(date(day));
            }
        }
        out_controls.push(ReportControl {
            id: (*id).into(),
            title: (*title).into(),
            status: over_period(&days, worst),
            days,
            checks: checks.iter().map(|c| (*c).to_owned()).collect(),
            failing_days: failing,
            daily,
        });
    }
    let ids: BTreeSet<&str> = controls.iter().flat_map(|(_, _, c)| c.iter().copied()).collect();
    let last = (from..=to).rev().find_map(usable);
    let mut out_checks = Vec::new();
    let mut exceptions = Vec::new();
    for id in ids {
        let (mut days, mut worst) = (DayCounts::default(), None::<CheckStatus>);
        for day in from..=to {
            let Some(s) = usable(day) else {
                days.missing += 1;
                continue;
            };
            let check = s.checks.iter().find(|c| c.id == id);
            let st = check.map_or(CheckStatus::NotConfigured, |c| c.status);
            days.add(st);
            worst = Some(worst.map_or(st, |w| w.min(st)));
            if st != CheckStatus::Pass {
                exceptions.push(ReportException {
                    day: date(day),
                    check: id.to_owned(),
                    status: st,
                    detail: check.map_or_else(|| "Not computed on that day.".into(), |c| c.detail.clone()),
                });
            }
        }
        let latest: Option<&ComplianceCheck> = last.and_then(|s| s.checks.iter().find(|c| c.id == id));
        out_checks.push(ReportCheck {
            id: id.to_owned(),
            title: latest.map_or_else(|| id.to_owned(), |c| c.title.clone()),
            status: over_period(&days, worst),
            days,
            last_detail: latest.map(|c| c.detail.clone()),
            evidence: latest.map(|c| with_period(&c.evidence, from, to)).unwrap_or_default(),
        });
    }
    // Failures first, then by day.
    exceptions.sort_by(|a, b| (a.status, &a.day, &a.check).cmp(&(b.status, &b.day, &b.check)));
    let total = exceptions.len() as u64;
    exceptions.truncate(MAX_EXCEPTIONS);
    (out_controls, out_checks, exceptions, total)
}

/// Evidence links with the period instead of a relative range.
fn with_period(evidence: &[custos_model::Evidence], from: i64, to: i64) -> Vec<custos_model::Evidence> {
    evidence
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let EvidenceOf::Events { filters } = &mut e.about {
                filters.remove("range");
                filters.insert("from".into(), format!("{}T00:00:00Z", date(from)));
                filters.insert("to".into(), format!("{}T00:00:00Z", date(to + 1)));
            }
            e
        })
        .collect()
}

/// A class of event: (id, title, search parameters).
pub type EventClass = (&'static str, &'static str, Vec<(&'static str, &'static str)>);

/// The classes of event a framework asks to be recorded.
pub fn event_classes(framework: &str) -> Vec<EventClass> {
    match framework {
        "pcidss4" => vec![
            ("10.2.1.1", "Individual user access to cardholder data", vec![("category", "data_access")]),
            ("10.2.1.2", "Actions taken with administrative access", vec![("category", "admin")]),
            ("10.2.1.3", "Access to audit logs", vec![("action", "audit.*")]),
            (
                "10.2.1.4",
                "Invalid logical access attempts",
                vec![("category", "authentication,authorization"), ("outcome", "failure,denied")],
            ),
            (
                "10.2.1.5",
                "Changes to identification and authentication credentials",
                vec![(
                    "action",
                    "user.create,user.disable,user.enable,user.password.change,user.password.reset,\
                     user.roles.update,apikey.create,apikey.revoke,role.*",
                )],
            ),
            (
                "10.2.1.6",
                "Initialisation, stopping or pausing of the audit logs",
                vec![("action", "custos.start,custos.stop,custos.forward.paused,custos.forward.resumed")],
            ),
            (
                "10.2.1.7",
                "Creation and deletion of system-level objects",
                vec![("category", "infrastructure,configuration")],
            ),
        ],
        _ => vec![
            ("auth", "Authentication events", vec![("category", "authentication")]),
            (
                "auth-failed",
                "Failed or denied access attempts",
                vec![("category", "authentication,authorization"), ("outcome", "failure,denied")],
            ),
            ("admin", "Administrative actions", vec![("category", "admin")]),
            ("policy", "Policy and configuration changes", vec![("category", "policy,configuration")]),
            ("log-access", "Access to the audit log", vec![("action", "audit.*")]),
            ("lifecycle", "Start and stop of audit logging", vec![("action", "custos.start,custos.stop")]),
        ],
    }
}

/// A search over the period (occurred from the first day's start to the
/// day after the last).
fn filter_for(pairs: &[(String, String)], from: i64, to: i64) -> Result<SearchFilter, AlertsError> {
    let mut f = SearchFilter::from_pairs(pairs).map_err(|e| {
        let first = e.into_iter().next();
        AlertsError::Conflict(format!(
            "a report search is wrong: {}",
            first.map_or_else(String::new, |f| format!("{}: {}", f.path, f.reason))
        ))
    })?;
    f.from_us = Some(from * DAY_US);
    f.to_us = Some((to + 1) * DAY_US);
    f.descending = false;
    Ok(f)
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Events matching `pairs` in the period, up to `max_seq` (the report's
/// checkpoint).
pub async fn count(
    events: &Events,
    pairs: &[(String, String)],
    from: i64,
    to: i64,
    max_seq: u64,
) -> Result<u64, AlertsError> {
    let mut f = filter_for(pairs, from, to)?;
    f.max_seq = Some(max_seq);
    count_filter(events, &f).await
}

async fn count_filter(events: &Events, f: &SearchFilter) -> Result<u64, AlertsError> {
    let conn = events.ledger().db().conn();
    let b = conn.get_database_backend();
    let (sql, values) = crate::events::search::count_sql(f, &[], &[], b);
    let row = conn.query_one_raw(stmt_for(b, &sql, values)).await?;
    let n: i64 = match row {
        Some(r) => r.try_get("", "n").map_err(LedgerError::from).map_err(crate::events::EventsError::from)?,
        None => 0,
    };
    Ok(n.max(0) as u64)
}

/// The framework's event classes counted in the period.
pub async fn classes(
    events: &Events,
    framework: &str,
    from: i64,
    to: i64,
    max_seq: u64,
) -> Result<Vec<EventClassCount>, AlertsError> {
    let mut out = Vec::new();
    for (id, title, pairs) in event_classes(framework) {
        let pairs = owned(&pairs);
        let n = count(events, &pairs, from, to, max_seq).await?;
        out.push(EventClassCount { id: id.into(), title: title.into(), filters: pairs, count: n, flagged: n == 0 });
    }
    Ok(out)
}

/// The sample's domain: a draw's hash starts with it (and a NUL).
pub const SAMPLE_DOMAIN: &str = "custos.report.sample.v1";

/// Position `i` of `control`'s draw: the first 8 bytes, big-endian, of
/// SHA-256(`custos.report.sample.v1` ‖ 0 ‖ seed ‖ 0 ‖ control ‖ 0 ‖ i as
/// 4 bytes big-endian), modulo the population. Positions already drawn
/// are skipped (the next `i` is tried), so a control's sample is distinct
/// events. An auditor recomputes it with any SHA-256 (see the README).
pub fn draw(seed: &str, control: &str, i: u32, population: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(SAMPLE_DOMAIN.as_bytes());
    h.update([0]);
    h.update(seed.as_bytes());
    h.update([0]);
    h.update(control.as_bytes());
    h.update([0]);
    h.update(i.to_be_bytes());
    let d = h.finalize();
    let mut n = [0u8; 8];
    n.copy_from_slice(&d[..8]);
    u64::from_be_bytes(n) % population.max(1)
}

/// The sample: for each control, up to [`SAMPLE_PER_CONTROL`] distinct
/// events among those its checks' evidence searches find in the period.
pub async fn sample(
    events: &Events,
    controls: &[ReportControl],
    checks: &[ReportCheck],
    seed: &str,
    (from, to): (i64, i64),
    max_seq: u64,
) -> Result<ReportSample, AlertsError> {
    let conn = events.ledger().db().conn();
    let b = conn.get_database_backend();
    let mut out = ReportSample { seed: seed.to_owned(), per_control: SAMPLE_PER_CONTROL, controls: Vec::new() };
    for c in controls {
        // The first event search among the control's checks' evidence.
        let pairs = c
            .checks
            .iter()
            .filter_map(|id| checks.iter().find(|k| &k.id == id))
            .flat_map(|k| k.evidence.iter())
            .find_map(|e| match &e.about {
                EvidenceOf::Events { filters } => Some(
                    filters
                        .iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "from" | "to" | "range"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .unwrap_or_default();
        let mut f = filter_for(&pairs, from, to)?;
        f.max_seq = Some(max_seq);
        // A control whose checks name no search of events has nothing to
        // draw from (not every event of the period).
        let population = if pairs.is_empty() { 0 } else { count_filter(events, &f).await? };
        let want = (SAMPLE_PER_CONTROL as u64).min(population);
        let mut positions = Vec::new();
        let mut i = 0;
        while (positions.len() as u64) < want && i < SAMPLE_PER_CONTROL * 20 {
            let p = draw(seed, &c.id, i, population);
            if !positions.contains(&p) {
                positions.push(p);
            }
            i += 1;
        }
        let mut drawn = Vec::new();
        for p in positions {
            let (sql, values) = crate::events::search::nth_sql(&f, p);
            let Some(row) = conn.query_one_raw(stmt_for(b, &sql, values)).await? else { continue };
            let entry = crate::ledger::store::entry_from_row(&row).map_err(crate::events::EventsError::from)?;
            let v = events.view(&entry, false).await?;
            drawn.push(SampledEvent {
                seq: v.seq,
                position: p,
                occurred_at: v.occurred_at.clone(),
                action: v.action.clone(),
                outcome: v.outcome.clone(),
                actor: v.actor.id.clone(),
                leaf_hash: hex::encode(entry.leaf_hash),
            });
        }
        out.controls.push(ControlSample { control: c.id.clone(), filters: pairs, population, events: drawn });
    }
    Ok(out)
}

/// The server's verifications in the period, newest first.
pub async fn verifications(events: &Events, from: i64, to: i64) -> Result<ReportVerifications, AlertsError> {
    let mut f = filter_for(&owned(&[("action", "audit.verify")]), from, to)?;
    f.descending = true;
    let conn = events.ledger().db().conn();
    let b = conn.get_database_backend();
    let mut out = ReportVerifications::default();
    let mut days = BTreeSet::new();
    let (mut after, mut read, mut failures, mut others) = (None, 0usize, Vec::new(), Vec::new());
    loop {
        let (sql, values) =
            crate::events::search::build_sql(&f, &[], &[], after.map(crate::events::search::After::Seq), 200, b);
        let rows = conn.query_all_raw(stmt_for(b, &sql, values)).await?;
        for r in &rows {
            let entry = crate::ledger::store::entry_from_row(r).map_err(crate::events::EventsError::from)?;
            after = Some(entry.header.seq);
            read += 1;
            let plain = events.ledger().open_payload(&entry).await.map_err(crate::events::EventsError::from)?;
            if !crate::events::service::sealed_by_server(&plain) {
                continue;
            }
            let v = crate::events::service::view_of(&entry, &plain, false);
            let full = is_full_verification(&v);
            let report = v.details.as_ref().and_then(|d| d.get("report"));
            let item = ReportVerification {
                seq: v.seq,
                at: v.recorded_at.clone(),
                outcome: v.outcome.clone(),
                full,
                entries_checked: report.and_then(|r| r.get("entries_checked")).and_then(|n| n.as_u64()).unwrap_or(0),
                failed_at_seq: report
                    .and_then(|r| r.get("failure"))
                    .and_then(|f| f.get("seq"))
                    .and_then(|s| s.as_u64()),
            };
            out.total += 1;
            if v.outcome == "success" {
                out.intact += 1;
                if full {
                    days.insert(super::period::day_of(entry.header.occurred_at_us));
                }
            } else {
                out.failed += 1;
            }
            out.full += u64::from(full);
            if item.outcome != "success" {
                failures.push(item);
            } else if others.len() < MAX_VERIFICATIONS {
                others.push(item);
            }
        }
        if rows.len() < 200 || read >= MAX_VERIFICATIONS_READ {
            break;
        }
    }
    out.days_verified = days.len() as u32;
    failures.truncate(MAX_VERIFICATIONS);
    let room = MAX_VERIFICATIONS - failures.len();
    others.truncate(room);
    out.items = failures.into_iter().chain(others).collect();
    Ok(out)
}

/// Retention, backups, alerting and forwarding: the last snapshot's check
/// and the period's counts of their events.
pub async fn operations(
    events: &Events,
    last: Option<&Snapshot>,
    from: i64,
    to: i64,
) -> Result<Vec<OperationFact>, AlertsError> {
    const OPS: [(&str, &str, &[&str]); 4] = [
        (
            "Retention",
            "retention",
            &["custos.retention.run_completed", "custos.retention.run_failed", "custos.retention.compacted"],
        ),
        ("Backups", "backups", &["custos.backup.created", "custos.backup.failed"]),
        ("Alerting", "alerting", &["custos.alert.opened", "custos.alert.acknowledged", "custos.alert.resolved"]),
        (
            "Forwarding",
            "siem_forwarding",
            &["custos.forward.failed", "custos.forward.recovered", "custos.forward.skipped"],
        ),
    ];
    let mut out = Vec::new();
    for (label, check, actions) in OPS {
        let c = last.and_then(|s| s.checks.iter().find(|c| c.id == check));
        let mut counts = Vec::new();
        for a in actions {
            let n = events.count_between("action", Some(a), false, from * DAY_US, (to + 1) * DAY_US).await?;
            counts.push(((*a).to_owned(), n));
        }
        out.push(OperationFact {
            label: label.into(),
            status: c.map(|c| c.status),
            detail: c.map_or_else(|| "No snapshot in the period to read it from.".into(), |c| c.detail.clone()),
            counts,
        });
    }
    Ok(out)
}

/// The policy steps of the period (the store's own), newest first, at
/// most `max`, and how many there are.
pub async fn policy_changes(
    events: &Events,
    policies: &crate::policies::PolicyStore,
    from: i64,
    to: i64,
    max: usize,
) -> Result<(Vec<PolicyChange>, u64), AlertsError> {
    let total = events.count_between("action", Some("custos.policy."), true, from * DAY_US, (to + 1) * DAY_US).await?;
    let q = crate::policies::TrailQuery {
        pairs: owned(&[
            ("from", &format!("{}T00:00:00Z", date(from))),
            ("to", &format!("{}T00:00:00Z", date(to + 1))),
            ("limit", &max.min(1000).to_string()),
        ]),
        applications: false,
    };
    let page = policies.trail(&q).await.map_err(|e| AlertsError::Conflict(format!("the policy trail: {e}")))?;
    let items = page
        .items
        .into_iter()
        .map(|t| PolicyChange {
            at: t.at,
            kind: t.kind,
            version: t.version.unwrap_or(0),
            step: t.step,
            by: t.actor,
            seq: t.seq,
            approvers: t.approvers,
            alone: t.alone,
        })
        .collect();
    Ok((items, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_depend_on_the_seed_and_control_only() {
        let a: Vec<u64> = (0..5).map(|i| draw("seed-1", "10.2", i, 1000)).collect();
        let b: Vec<u64> = (0..5).map(|i| draw("seed-1", "10.2", i, 1000)).collect();
        let c: Vec<u64> = (0..5).map(|i| draw("seed-2", "10.2", i, 1000)).collect();
        let d: Vec<u64> = (0..5).map(|i| draw("seed-1", "10.3", i, 1000)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert!(a.iter().all(|p| *p < 1000));
        assert_eq!(draw("s", "c", 0, 0), 0, "an empty population draws nothing past it");
        // A fixed vector (computed independently, with Python's hashlib).
        let v: Vec<u64> = (0..5).map(|i| draw("auditor-2027", "10.2", i, 1000)).collect();
        assert_eq!(v, [264, 558, 398, 570, 172]);
    }

    fn snap(day: i64, statuses: &[(&str, CheckStatus)]) -> (i64, Snapshot) {
        let checks = statuses
            .iter()
            .map(|(id, st)| ComplianceCheck {
                id: (*id).into(),
                title: (*id).into(),
                status: *st,
                detail: format!("{id} on day {day}"),
                evidence: vec![custos_model::Evidence::events("e", &[("category", "admin"), ("range", "30d")])],
            })
            .collect();
        (
            day,
            Snapshot { day, taken_at_us: day * DAY_US, seq: day as u64, sha256: String::new(), checks, verified: true },
        )
    }

    #[test]
    fn controls_take_their_worst_day_show_gaps_and_list_exceptions() {
        use CheckStatus::*;
        let mut days: BTreeMap<i64, Snapshot> =
            [snap(10, &[("a", Pass), ("b", Pass)]), snap(11, &[("a", Fail), ("b", Pass)]), snap(13, &[("a", Pass)])]
                .into_iter()
                .collect();
        // Day 12 has no snapshot; day 13's lacks `b` (not configured then).
        let controls: [Control; 2] = [("C1", "one", &["a", "b"]), ("C2", "two", &["b"])];
        let (cs, checks, exceptions, total) = controls_over(&controls, &days, (10, 13));
        assert_eq!(cs[0].status, Fail);
        assert_eq!(cs[0].daily, "PF-C");
        assert_eq!(cs[0].failing_days, [date(11)]);
        assert_eq!(cs[0].days, DayCounts { pass: 1, fail: 1, not_configured: 1, missing: 1, ..Default::default() });
        assert_eq!(cs[1].status, NotConfigured, "b was not computed on day 13");
        let a = checks.iter().find(|c| c.id == "a").unwrap();
        assert_eq!(a.status, Fail);
        assert_eq!(a.last_detail.as_deref(), Some("a on day 13"));
        let EvidenceOf::Events { filters } = &a.evidence[0].about else { panic!() };
        assert_eq!(filters.get("from").map(String::as_str), Some(format!("{}T00:00:00Z", date(10)).as_str()));
        assert!(!filters.contains_key("range"), "the period replaces the relative range");
        assert_eq!(total, 2);
        assert_eq!((exceptions[0].check.as_str(), exceptions[0].status), ("a", Fail), "failures first");
        // A snapshot that no longer matches its record is not used: a gap.
        days.get_mut(&11).unwrap().verified = false;
        let (cs, ..) = controls_over(&controls, &days, (10, 13));
        assert_eq!(cs[0].daily, "P--C");
        assert_eq!(cs[0].status, NotConfigured);
        let all_pass: BTreeMap<i64, Snapshot> = [snap(10, &[("a", Pass), ("b", Pass)])].into_iter().collect();
        let (cs, ..) = controls_over(&controls, &all_pass, (10, 11));
        assert_eq!(cs[0].status, Warn, "a pass with a day missing is a warning");
        let (cs, ..) = controls_over(&controls, &BTreeMap::new(), (10, 11));
        assert_eq!(cs[0].status, NoEvidence);
    }

    #[test]
    fn a_period_with_gaps_or_without_snapshots_is_not_a_pass() {
        let days = DayCounts { pass: 3, missing: 1, ..Default::default() };
        assert_eq!(over_period(&days, Some(CheckStatus::Pass)), CheckStatus::Warn);
        let full = DayCounts { pass: 4, ..Default::default() };
        assert_eq!(over_period(&full, Some(CheckStatus::Pass)), CheckStatus::Pass);
        assert_eq!(over_period(&DayCounts { missing: 4, ..Default::default() }, None), CheckStatus::NoEvidence);
        assert_eq!(over_period(&days, Some(CheckStatus::Fail)), CheckStatus::Fail);
    }
}
