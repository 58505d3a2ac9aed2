//! Report schedules as a policy kind (`reports::schedule`), version 0
//! having none. Each schedule names a cron expression, a framework, a
//! period, its recipients (channels of the notifications policy) and how
//! many reports to keep. The dry-run checks the recipients against the
//! notifications policy in force and lists each schedule's next runs with
//! the period each would cover. Proposing needs `report:generate`, and,
//! since the reports carry a sample of events, the verifications and the
//! policy changes, `audit:read`, `audit:verify` and `policy:read`; sending
//! them out needs `audit:export` (as an export), and addresses in place of
//! an e-mail channel's own, `notification:manage`.

use custos_model::cron::Cron;
use custos_model::{PolicyVersion, TestReport, TestRow};
use serde_json::{Value, json};

use super::{KindFuture, PolicyKind, Sample};
use crate::events::Events;
use crate::events::validate::FieldError;
use crate::identity::permission::Permission;
use crate::notify::channels::NotificationsDoc;
use crate::policies::PolicyError;
use crate::reports::period::{date, day_of, resolve};
use crate::reports::schedule::{KIND, check, check_recipients, parse, when};
use crate::time::rfc3339;

/// The report schedules kind.
#[derive(Debug, Clone, Copy)]
pub struct ReportSchedulesKind;

impl PolicyKind for ReportSchedulesKind {
    fn name(&self) -> &'static str {
        KIND
    }

    fn title(&self) -> &'static str {
        "Report schedules"
    }

    fn permission(&self) -> Permission {
        Permission::ReportGenerate
    }

    fn needs(&self, doc: &Value) -> Vec<(Permission, &'static str)> {
        let why = "a scheduled report carries a sample of events, the verifications and the policy changes";
        let mut need =
            vec![(Permission::AuditRead, why), (Permission::AuditVerify, why), (Permission::PolicyRead, why)];
        let d = parse(doc).unwrap_or_default();
        if d.schedules.iter().any(|s| !s.recipients.is_empty()) {
            need.push((
                Permission::AuditExport,
                "a scheduled report sends its contents out of Custos, as an export does",
            ));
        }
        if d.schedules.iter().flat_map(|s| &s.recipients).any(|r| !r.to.is_empty()) {
            need.push((
                Permission::NotificationManage,
                "addresses instead of an e-mail channel's own redirect what that channel sends",
            ));
        }
        need
    }

    fn defaults(&self) -> Value {
        json!({"schedules": []})
    }

    fn validate(&self, doc: &Value) -> Result<Value, FieldError> {
        let d = parse(doc)?;
        check(&d)?;
        serde_json::to_value(&d).map_err(|e| FieldError { path: "content".into(), reason: e.to_string() })
    }

    fn summary(&self, doc: &Value) -> String {
        match parse(doc) {
            Ok(d) if d.schedules.is_empty() => "No report schedule".into(),
            Ok(d) => {
                let list: Vec<String> = d
                    .schedules
                    .iter()
                    .map(|s| {
                        format!(
                            "{} ({}, {}, `{}`{})",
                            s.id,
                            s.framework,
                            s.period,
                            s.cron,
                            if s.enabled { "" } else { ", off" }
                        )
                    })
                    .collect();
                format!("{} schedule(s): {}", d.schedules.len(), list.join(", "))
            }
            Err(e) => e.reason,
        }
    }

    fn test<'a>(
        &'a self,
        events: &'a Events,
        current: &'a Value,
        doc: &'a Value,
        _sample: Sample,
    ) -> KindFuture<'a, TestReport> {
        Box::pin(async move {
            let proposed = parse(doc).map_err(PolicyError::Invalid)?;
            let in_force = parse(current).unwrap_or_default();
            let conn = events.ledger().db().conn();
            let channels = match crate::policies::in_force(conn, crate::notify::KIND).await? {
                Some((_, c)) => NotificationsDoc::parse(&c).map_err(PolicyError::Invalid)?,
                None => NotificationsDoc::default(),
            };
            check_recipients(&proposed, &channels).map_err(PolicyError::Invalid)?;
            let now = events.ledger().now_us();
            let mut rows = Vec::new();
            let mut notes = Vec::new();
            for s in &proposed.schedules {
                let was = in_force.schedules.iter().find(|c| c.id == s.id);
                let label = format!(
                    "{} ({}{})",
                    s.name,
                    match was {
                        None => "new",
                        Some(w) if w == s => "unchanged",
                        Some(_) => "changed",
                    },
                    if s.enabled { "" } else { ", off" }
                );
                let runs = Cron::parse(&s.cron).map(|c| c.next_runs(now, 3)).unwrap_or_default();
                let examples: Vec<String> = runs
                    .iter()
                    .map(|t| match resolve(Some(&s.period), None, None, day_of(*t)) {
                        Ok((a, b)) => format!("{}: {} covering {} to {}", when(*t), s.framework, date(a), date(b)),
                        Err(e) => format!("{}: {}", when(*t), e.reason),
                    })
                    .collect();
                rows.push(TestRow {
                    label,
                    current: u64::from(was.is_some_and(|w| w.enabled)),
                    proposed: u64::from(s.enabled),
                    examples: vec![],
                });
                if s.enabled {
                    notes.push(format!("{}: next runs {}", s.id, examples.join("; ")));
                }
                let off: Vec<&str> = s
                    .recipients
                    .iter()
                    .filter(|r| channels.channels.iter().any(|c| c.id == r.channel && !c.enabled))
                    .map(|r| r.channel.as_str())
                    .collect();
                if !off.is_empty() {
                    notes.push(format!(
                        "{}: the channel(s) {} are turned off; messages wait until they are on (at most a day)",
                        s.id,
                        off.join(", ")
                    ));
                }
            }
            for w in in_force.schedules.iter().filter(|w| !proposed.schedules.iter().any(|s| s.id == w.id)) {
                rows.push(TestRow {
                    label: format!("{} (removed)", w.name),
                    current: u64::from(w.enabled),
                    proposed: 0,
                    examples: vec![],
                });
            }
            notes.push(
                "Each row: whether the schedule is on now (1) and as proposed; above, each schedule's next three runs \
                 (UTC) with the days each report would cover. A changed schedule's planned run is cancelled and \
                 planned anew."
                    .into(),
            );
            Ok(TestReport {
                kind: KIND.into(),
                sha256: crate::policies::patch::sha256_hex(doc),
                events: 0,
                from: None,
                to: Some(rfc3339(now)),
                rows,
                notes,
            })
        })
    }

    fn persist<'a>(&'a self, _tx: &'a sea_orm::DatabaseTransaction, _v: &'a PolicyVersion) -> KindFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn apply<'a>(&'a self, _events: &'a Events, _active: &'a PolicyVersion) -> KindFuture<'a, ()> {
        // The scheduler reads the version in force on each pass.
        Box::pin(async { Ok(()) })
    }
}
