//! Custos's own events: one catalogue, one builder, one writer.
//!
//! Every event Custos records about itself (lifecycle, sign-ins and account
//! changes, key rotation, verification, exports, unmasking, policy changes,
//! the self-audit of requests, summaries of refused noise) is an
//! [`OwnAction`] of this catalogue, which fixes its action name, category and
//! default severity, and is built by [`OwnEvent`], which fills the source
//! (application `custos`), the actor and the request correlation the same
//! way for all. [`Events::record_own`] seals it with the server as the
//! submitter (the only submitter the compliance checks trust) and applies
//! the masking policy unless the action is exempt by name
//! ([`Masking::Exempt`], each with its reason).
//!
//! The ledger layer's own anchor entries (`ledger.purge`) are the one
//! exception: they are written below this layer, in the format the purge
//! record check reads (`ledger/purge.rs`).

use serde_json::Value;
use uuid::Uuid;

use super::model::{Actor, Channel, Correlation, Event, Outcome, Resource, Severity, Source};
use super::service::{Events, EventsError};
use crate::ledger::Receipt;

/// Whether the masking policy applies to an own event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masking {
    /// Masked like any event.
    Applied,
    /// Sealed as built, for the reason given.
    Exempt(&'static str),
}

/// Every action Custos records about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnAction {
    /// The server started.
    Start,
    /// The server stopped.
    Stop,
    /// A data key rotation (recorded before it happens).
    KeyRotate,
    /// A verification of the ledger (a range or all of it).
    Verify,
    /// Masked values revealed, with a reason.
    Unmask,
    /// An export ended with its signed manifest.
    ExportCompleted,
    /// An export failed.
    ExportFailed,
    /// A new version of the masking policy, as saved before the policy
    /// store (no longer written: the store records `custos.policy.*`; kept
    /// to read those entries, which the store imports).
    MaskingPolicyUpdate,
    /// Demo events seeded from the command line.
    DemoSeed,
    /// A step of the policy store: `custos.policy.proposed`, `…tested`,
    /// `…approved`, `…rejected`, `…expired`, `…activated`,
    /// `…rolled_back`, `…rule_set` (see `policies::store`).
    PolicyStep(&'static str),
    /// A step of an alert: `custos.alert.opened` (by Custos, with the
    /// rule's severity), `…acknowledged`, `…resolved`, `…commented`.
    AlertStep(&'static str),
    /// A notification step: `custos.notification.tested` (by the person),
    /// `…failed` and `…dead` (by Custos, for a delivery that failed).
    NotificationStep(&'static str),
    /// A forwarding step: `custos.forward.{paused, resumed, replayed,
    /// tested}` (by the person), `…failed`, `…recovered` and `…skipped`
    /// (by Custos).
    ForwardStep(&'static str),
    /// A retention step: `custos.retention.run_started` (by whoever asked,
    /// or Custos on its schedule), `…run_completed`, `…run_failed` (by
    /// Custos), `…archive_verified` (by the person).
    RetentionStep(&'static str),
    /// A backup step: `custos.backup.created` or `…failed` (by whoever
    /// asked, or Custos on its schedule).
    BackupStep(&'static str),
    /// A compliance evidence step: `custos.compliance.snapshot` (by
    /// Custos, daily), `custos.report.generated` (by whoever asked, or
    /// Custos on a schedule).
    ReportStep(&'static str),
    /// An account or access event of the identity service (`user.login`,
    /// `role.create`, `apikey.use`, …): its action and category.
    Identity {
        /// The action, e.g. `user.login`.
        action: &'static str,
        /// The category: authentication, admin, security, authorization.
        category: &'static str,
    },
    /// A request to Custos itself (the self-audit), named by its route.
    Request {
        /// The action, e.g. `audit.search` or `rpc.create_user`.
        action: String,
        /// The category.
        category: &'static str,
    },
}

impl OwnAction {
    /// The action name.
    pub fn name(&self) -> &str {
        match self {
            OwnAction::Start => "custos.start",
            OwnAction::Stop => "custos.stop",
            OwnAction::KeyRotate => "ledger.key.rotate",
            OwnAction::Verify => "audit.verify",
            OwnAction::Unmask => "audit.unmask",
            OwnAction::ExportCompleted => "audit.export.completed",
            OwnAction::ExportFailed => "audit.export.failed",
            OwnAction::MaskingPolicyUpdate => "policy.masking.update",
            OwnAction::DemoSeed => "demo.seed",
            OwnAction::PolicyStep(action)
            | OwnAction::AlertStep(action)
            | OwnAction::NotificationStep(action)
            | OwnAction::ForwardStep(action)
            | OwnAction::RetentionStep(action)
            | OwnAction::BackupStep(action)
            | OwnAction::ReportStep(action) => action,
            OwnAction::Identity { action, .. } => action,
            OwnAction::Request { action, .. } => action,
        }
    }

    /// The category.
    pub fn category(&self) -> &str {
        match self {
            OwnAction::Start | OwnAction::Stop | OwnAction::DemoSeed => "system",
            OwnAction::KeyRotate => "admin",
            OwnAction::Verify => "integrity",
            OwnAction::Unmask | OwnAction::ExportCompleted | OwnAction::ExportFailed => "data_access",
            OwnAction::MaskingPolicyUpdate | OwnAction::PolicyStep(_) => "policy",
            OwnAction::AlertStep(_) | OwnAction::NotificationStep(_) => "security",
            OwnAction::ForwardStep(_) => "system",
            OwnAction::RetentionStep(_) | OwnAction::BackupStep(_) | OwnAction::ReportStep(_) => "integrity",
            OwnAction::Identity { category, .. } | OwnAction::Request { category, .. } => category,
        }
    }

    /// The severity of an outcome, unless the event says otherwise.
    pub fn severity(&self, outcome: Outcome) -> Severity {
        match (self, outcome) {
            (OwnAction::Verify, Outcome::Success) => Severity::Info,
            (OwnAction::Verify, _) => Severity::Critical,
            (OwnAction::Unmask, _) => Severity::Warning,
            (_, Outcome::Error) => Severity::Error,
            (_, Outcome::Failure | Outcome::Denied) => Severity::Warning,
            (OwnAction::Request { .. } | OwnAction::Identity { .. }, _) => Severity::Info,
            _ => Severity::Notice,
        }
    }

    /// Whether the masking policy applies.
    pub fn masking(&self) -> Masking {
        match self {
            OwnAction::ExportCompleted => {
                Masking::Exempt("the record carries the export's signed manifest, which must match it byte for byte")
            }
            OwnAction::PolicyStep(_) => Masking::Exempt(
                "the record carries the document's hash and JSON Patch, which must reproduce the stored version \
                 byte for byte; its free text (reasons, comments) is masked by the store before",
            ),
            OwnAction::ReportStep(_) => Masking::Exempt(
                "the record carries the digests of the snapshot or report it stands for, which must match them",
            ),
            _ => Masking::Applied,
        }
    }
}

/// Custos itself as an actor (`custos`, kind `system`), doing `name`.
pub fn custos_actor(name: &str) -> Actor {
    Actor {
        id: super::validate::RESERVED_NAME.into(),
        kind: "system".into(),
        name: Some(name.to_owned()),
        ip: None,
        user_agent: None,
        session_id: None,
    }
}

/// The operator at the command line (`cli:$USER`, kind `system`).
pub fn cli_operator() -> Actor {
    Actor {
        id: std::env::var("USER").map(|u| format!("cli:{u}")).unwrap_or_else(|_| "cli".into()),
        kind: "system".into(),
        name: Some("command line".into()),
        ip: None,
        user_agent: None,
        session_id: None,
    }
}

/// Who asks Custos for something it records (an export, a verification,
/// an unmasking): the actor as recorded, the principal that owns the
/// resulting job, the way in and the request.
#[derive(Debug, Clone)]
pub struct Requester {
    /// The principal (`kind:id`): a job's owner. A user and an API key
    /// never share one, and a name change does not change it.
    pub owner: String,
    /// As recorded in the ledger.
    pub actor: Actor,
    /// The HTTP request, for correlation.
    pub request_id: Option<String>,
    /// The way in.
    pub channel: Channel,
}

impl Requester {
    /// `actor` through `channel`, owning what it starts as `kind:id`.
    pub fn new(actor: Actor, channel: Channel, request_id: Option<String>) -> Requester {
        Requester { owner: format!("{}:{}", actor.kind, actor.id), actor, request_id, channel }
    }

    /// Custos itself doing `name` (schedules).
    pub fn custos(name: &str) -> Requester {
        Requester::new(custos_actor(name), Channel::System, None)
    }

    /// The operator at the command line.
    pub fn cli() -> Requester {
        Requester::new(cli_operator(), Channel::Cli, None)
    }
}

/// An own event being built.
#[derive(Debug, Clone)]
pub struct OwnEvent {
    action: OwnAction,
    actor: Actor,
    channel: Channel,
    outcome: Outcome,
    severity: Option<Severity>,
    reason: Option<String>,
    resource: Option<Resource>,
    tenant: Option<String>,
    request_id: Option<String>,
    details: Option<Value>,
    duration_ms: Option<f64>,
    status_code: Option<u16>,
}

impl OwnEvent {
    /// `action` by `actor` through `channel`, a success.
    pub fn new(action: OwnAction, actor: Actor, channel: Channel) -> OwnEvent {
        OwnEvent {
            action,
            actor,
            channel,
            outcome: Outcome::Success,
            severity: None,
            reason: None,
            resource: None,
            tenant: None,
            request_id: None,
            details: None,
            duration_ms: None,
            status_code: None,
        }
    }

    /// Custos itself as the actor (`custos`, kind `system`), doing `name`.
    pub fn by_custos(action: OwnAction, name: &str, channel: Channel) -> OwnEvent {
        OwnEvent::new(action, custos_actor(name), channel)
    }

    /// The outcome (a success unless said otherwise).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// A severity other than the action's default for the outcome.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }

    /// Why (for failures and denials).
    pub fn reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }

    /// What was acted on.
    pub fn resource(mut self, kind: &str, id: Option<String>) -> Self {
        self.resource = Some(Resource { kind: kind.to_owned(), id, name: None });
        self
    }

    /// The tenant of what was acted on.
    pub fn tenant(mut self, tenant: Option<String>) -> Self {
        self.tenant = tenant;
        self
    }

    /// The HTTP request, for correlation.
    pub fn request(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    /// Context.
    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// How long it took and the HTTP status (the self-audit).
    pub fn timing(mut self, duration_ms: f64, status_code: u16) -> Self {
        self.duration_ms = Some(duration_ms);
        self.status_code = Some(status_code);
        self
    }

    /// The action.
    pub fn action(&self) -> &OwnAction {
        &self.action
    }

    /// The event, at `now_us`.
    pub fn build(self, now_us: i64) -> Event {
        let severity = self.severity.unwrap_or_else(|| self.action.severity(self.outcome));
        let metrics = (self.duration_ms.is_some() || self.status_code.is_some()).then_some(super::model::Metrics {
            duration_ms: self.duration_ms,
            status_code: self.status_code,
            bytes: None,
        });
        Event {
            id: Uuid::now_v7(),
            occurred_at_us: now_us,
            category: self.action.category().to_owned(),
            action: self.action.name().to_owned(),
            outcome: self.outcome,
            reason: self.reason,
            severity,
            actor: self.actor,
            resource: self.resource,
            tenant: self.tenant,
            source: Source {
                application: Some(super::validate::RESERVED_NAME.into()),
                host: None,
                channel: self.channel.as_str().to_owned(),
            },
            correlation: Correlation { request_id: self.request_id, trace_id: None, parent_id: None },
            metrics,
            details: self.details,
        }
    }
}

impl Events {
    /// Records one of Custos's own events: sealed with the server as the
    /// submitter, masked unless its action is exempt.
    pub async fn record_own(&self, own: OwnEvent) -> Result<Receipt, EventsError> {
        let masking = own.action().masking();
        let event = own.build(self.ledger().now_us());
        self.record_with(event, masking).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_action_is_in_a_reserved_namespace_and_named_once() {
        let fixed = [
            OwnAction::Start,
            OwnAction::Stop,
            OwnAction::KeyRotate,
            OwnAction::Verify,
            OwnAction::Unmask,
            OwnAction::ExportCompleted,
            OwnAction::ExportFailed,
            OwnAction::MaskingPolicyUpdate,
            OwnAction::DemoSeed,
            OwnAction::PolicyStep("custos.policy.proposed"),
        ];
        let mut names = std::collections::HashSet::new();
        for a in &fixed {
            assert!(super::super::validate::is_reserved_action(a.name()), "{} is not reserved", a.name());
            assert!(names.insert(a.name()), "{} twice", a.name());
            assert!(super::super::model::CATEGORIES.contains(&a.category()), "{}", a.category());
        }
        assert_eq!(OwnAction::Verify.severity(Outcome::Failure), Severity::Critical);
        assert_eq!(OwnAction::Start.severity(Outcome::Success), Severity::Notice);
        assert!(matches!(OwnAction::ExportCompleted.masking(), Masking::Exempt(_)));
        assert_eq!(OwnAction::Unmask.masking(), Masking::Applied);
    }

    #[test]
    fn the_builder_fills_source_actor_and_correlation_alike() {
        let e = OwnEvent::by_custos(OwnAction::Verify, "scheduled verification", Channel::System)
            .outcome(Outcome::Failure)
            .resource("ledger", Some("custos.test/ledger".into()))
            .request(Some("req-1".into()))
            .build(42);
        assert_eq!(
            (e.action.as_str(), e.category.as_str(), e.severity.as_str()),
            ("audit.verify", "integrity", "critical")
        );
        assert_eq!((e.actor.id.as_str(), e.actor.kind.as_str()), ("custos", "system"));
        assert_eq!(e.source.application.as_deref(), Some("custos"));
        assert_eq!(e.source.channel, "system");
        assert_eq!(e.correlation.request_id.as_deref(), Some("req-1"));
        assert_eq!(e.occurred_at_us, 42);
    }
}
