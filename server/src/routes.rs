//! The REST route table: one row per route. Its method and path are written
//! once, in the handler's `#[utoipa::path]` attribute; the row adds what it
//! needs and how the self-audit names it. The router, the access table
//! (`access`), the self-audit and the OpenAPI document are all derived from
//! this list, so a route cannot be served without a need and an action, nor
//! documented without being served.
//!
//! A new route: write the handler with its `#[utoipa::path]`, then add one
//! line to [`rest_table`].

use axum::routing::{MethodFilter, MethodRouter};
use custos_engine::identity::permission::Permission as P;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::{RefOr, schema::Schema};

use crate::access::Need::{self, Permission, Public, SignedIn};
use crate::http::AppState;

/// One REST route.
pub struct RestRoute {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path pattern (`{name}` matches one segment), from the handler's attribute.
    pub path: &'static str,
    /// What it needs.
    pub need: Need,
    /// The self-audit's action, e.g. `audit.search`.
    pub action: &'static str,
    /// The self-audit's category.
    pub category: &'static str,
    /// Usable while a signed-in user owes a password change or MFA.
    pub during_setup: bool,
    /// The handler.
    pub router: MethodRouter<AppState>,
    /// Its OpenAPI operation.
    pub operation: Operation,
    /// Its OpenAPI method.
    pub http_method: HttpMethod,
    /// The schemas its operation names.
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

impl std::fmt::Debug for RestRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.method, self.path, self.action)
    }
}

impl RestRoute {
    /// A row from a handler and its `utoipa::Path`.
    fn of<Doc, H, T>(handler: H, need: Need, action: &'static str, category: &'static str) -> RestRoute
    where
        Doc: utoipa::Path + utoipa::__dev::SchemaReferences + for<'t> utoipa::__dev::Tags<'t>,
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        let http_method = Doc::methods().into_iter().next().unwrap_or(HttpMethod::Get);
        let (method, filter) = match http_method {
            HttpMethod::Get => ("GET", MethodFilter::GET),
            HttpMethod::Post => ("POST", MethodFilter::POST),
            HttpMethod::Put => ("PUT", MethodFilter::PUT),
            HttpMethod::Delete => ("DELETE", MethodFilter::DELETE),
            HttpMethod::Patch => ("PATCH", MethodFilter::PATCH),
            HttpMethod::Head => ("HEAD", MethodFilter::HEAD),
            HttpMethod::Options => ("OPTIONS", MethodFilter::OPTIONS),
            HttpMethod::Trace => ("TRACE", MethodFilter::TRACE),
        };
        // The schemas the operation names and its tags, as
        // `#[openapi(paths(...))]` and utoipa-axum's `routes!` collect them.
        let mut operation = Doc::operation();
        let tags = <Doc as utoipa::__dev::Tags>::tags();
        if !tags.is_empty() {
            operation.tags.get_or_insert_with(Vec::new).extend(tags.iter().map(|t| (*t).to_owned()));
        }
        let mut schemas = Vec::new();
        <Doc as utoipa::__dev::SchemaReferences>::schemas(&mut schemas);
        RestRoute {
            method,
            // Built once per process (see `table`): the leak is bounded.
            path: Box::leak(Doc::path().into_boxed_str()),
            need,
            action,
            category,
            during_setup: false,
            router: axum::routing::on(filter, handler),
            operation,
            http_method,
            schemas,
        }
    }

    fn during_setup(mut self) -> Self {
        self.during_setup = true;
        self
    }
}

/// One row: `module::handler => need, "action", "category"`.
macro_rules! row {
    ($module:ident :: $handler:ident => $need:expr, $action:literal, $category:literal) => {
        paste::paste! {
            RestRoute::of::<crate::api::$module::[<__path_ $handler>], _, _>(
                crate::api::$module::$handler, $need, $action, $category,
            )
        }
    };
}

/// Every REST route. Static segments before `{id}`: the first match wins.
pub fn rest_table() -> Vec<RestRoute> {
    let read = Permission(P::AuditRead);
    let export = Permission(P::AuditExport);
    let verify = Permission(P::AuditVerify);
    let policy = Permission(P::PolicyManage);
    let policy_read = Permission(P::PolicyRead);
    let approve = Permission(P::PolicyApprove);
    let alert = Permission(P::AlertManage);
    let notify = Permission(P::NotificationManage);
    let siem = Permission(P::SiemManage);
    let retention = Permission(P::RetentionManage);
    let report = Permission(P::ReportGenerate);
    vec![
        row!(session::whoami => SignedIn, "session.whoami", "data_access").during_setup(),
        row!(audit::ingest => Permission(P::AuditIngest), "audit.ingest", "data_access"),
        row!(audit::search => read, "audit.search", "data_access"),
        row!(audit::stats => read, "audit.stats", "data_access"),
        row!(explorer::histogram => read, "audit.histogram", "data_access"),
        row!(explorer::tail => read, "audit.tail", "data_access"),
        row!(explorer::list => read, "search.saved.list", "data_access"),
        row!(explorer::save => read, "search.saved.save", "data_access"),
        row!(explorer::delete => read, "search.saved.delete", "data_access"),
        row!(exports::export => export, "audit.export", "data_access"),
        row!(exports::start => export, "audit.export", "data_access"),
        row!(exports::status => export, "audit.export.status", "data_access"),
        row!(exports::file => export, "audit.export.download", "data_access"),
        row!(exports::manifest => export, "audit.export.manifest", "data_access"),
        row!(audit::checkpoints => read, "audit.checkpoints.read", "integrity"),
        row!(dashboards::analytics => read, "audit.analytics", "data_access"),
        row!(dashboards::verifications => verify, "audit.verify.history", "integrity"),
        row!(dashboards::public_key => read, "audit.public_key.read", "integrity"),
        row!(dashboards::compliance => report, "compliance.report", "data_access"),
        row!(dashboards::keys => verify, "ledger.keys.read", "integrity"),
        row!(dashboards::rotate => Permission(P::Admin), "ledger.key.rotate.request", "admin"),
        row!(verify_jobs::start => verify, "audit.verify.start", "integrity"),
        row!(verify_jobs::status => verify, "audit.verify.status", "integrity"),
        row!(audit::read_one => read, "audit.read", "data_access"),
        row!(masking::history => policy, "policy.masking.history", "data_access"),
        row!(masking::preview => policy, "policy.masking.preview", "data_access"),
        row!(policies::overview => policy_read, "api.policies.overview", "data_access"),
        row!(policies::trail => policy_read, "api.policies.trail", "data_access"),
        row!(policies::proposal => policy_read, "api.policies.proposal.read", "data_access"),
        row!(policies::approve => approve, "api.policies.proposal.approve", "admin"),
        row!(policies::reject => approve, "api.policies.proposal.reject", "admin"),
        row!(policies::activate => policy_read, "api.policies.proposal.activate", "admin"),
        row!(policies::withdraw => policy_read, "api.policies.proposal.withdraw", "admin"),
        row!(policies::kind => policy_read, "api.policies.kind.read", "data_access"),
        row!(policies::versions => policy_read, "api.policies.versions", "data_access"),
        row!(policies::version => policy_read, "api.policies.version.read", "data_access"),
        row!(policies::diff => policy_read, "api.policies.diff", "data_access"),
        row!(policies::propose => policy_read, "api.policies.propose", "admin"),
        row!(policies::test => policy_read, "api.policies.test", "admin"),
        row!(alerts::list => read, "alerts.list", "data_access"),
        row!(alerts::silences => read, "alerts.silences.list", "data_access"),
        row!(alerts::silence => alert, "alerts.silence", "admin"),
        row!(alerts::end_silence => alert, "alerts.silence.end", "admin"),
        row!(alerts::live => read, "alerts.live", "data_access"),
        row!(alerts::read => read, "alerts.read", "data_access"),
        row!(alerts::acknowledge => alert, "alerts.acknowledge", "admin"),
        row!(alerts::resolve => alert, "alerts.resolve", "admin"),
        row!(alerts::comment => alert, "alerts.comment", "admin"),
        row!(notifications::logs => notify, "notifications.logs", "data_access"),
        row!(notifications::test => notify, "notifications.channel.test", "admin"),
        row!(forwarding::status => siem, "forwarding.status", "data_access"),
        row!(forwarding::pause => siem, "forwarding.destination.pause", "admin"),
        row!(forwarding::resume => siem, "forwarding.destination.resume", "admin"),
        row!(forwarding::replay => siem, "forwarding.destination.replay", "admin"),
        row!(forwarding::test => siem, "forwarding.destination.test", "admin"),
        row!(forwarding::preview => siem, "forwarding.preview", "data_access"),
        row!(retention::status => policy_read, "retention.status", "data_access"),
        row!(retention::plan => policy_read, "retention.plan", "data_access"),
        row!(retention::runs => policy_read, "retention.runs", "data_access"),
        row!(retention::start => retention, "retention.run.start", "admin"),
        row!(retention::run => policy_read, "retention.run.read", "data_access"),
        row!(retention::archives => policy_read, "retention.archives", "data_access"),
        row!(retention::verify => retention, "retention.archive.verify", "integrity"),
        row!(retention::download => retention, "retention.archive.download", "data_access"),
        row!(backups::list => policy_read, "backups.list", "data_access"),
        row!(backups::start => retention, "backups.create", "admin"),
        row!(backups::read => policy_read, "backups.read", "data_access"),
        row!(backups::download => retention, "backups.download", "data_access"),
        row!(reports::frameworks => report, "reports.frameworks", "data_access"),
        row!(reports::history => report, "compliance.history", "data_access"),
        row!(reports::list => report, "reports.list", "data_access"),
        row!(reports::generate => report, "reports.generate", "data_access"),
        row!(reports::schedules => report, "reports.schedules.list", "data_access"),
        row!(reports::runs => report, "reports.runs.list", "data_access"),
        row!(reports::read => report, "reports.read", "data_access"),
        row!(reports::manifest => report, "reports.manifest", "data_access"),
        row!(reports::download => report, "reports.download", "data_access"),
        row!(docs::openapi_json => Public, "api.docs.read", "data_access"),
        row!(docs::docs_page => Public, "api.docs.read", "data_access"),
    ]
}

/// The table, built once per process.
pub fn table() -> &'static [RestRoute] {
    static TABLE: std::sync::OnceLock<Vec<RestRoute>> = std::sync::OnceLock::new();
    TABLE.get_or_init(rest_table)
}

/// Every schema the table's operations name.
pub fn schemas() -> impl Iterator<Item = (String, RefOr<Schema>)> {
    table().iter().flat_map(|r| r.schemas.iter().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_an_api_route_with_a_named_action() {
        let categories = ["data_access", "integrity", "policy", "admin"];
        for (i, r) in table().iter().enumerate() {
            assert!(r.path.starts_with("/api/"), "{r:?}");
            assert!(
                !r.action.is_empty() && r.action.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
                "{r:?}"
            );
            assert!(categories.contains(&r.category), "{r:?}");
            assert!(r.operation.responses.responses.keys().any(|k| k.starts_with('2')), "{r:?} documents its success");
            for other in &table()[i + 1..] {
                assert!(!(r.method == other.method && r.path == other.path), "{r:?} twice");
            }
        }
        assert!(table().len() >= 30);
    }

    #[test]
    fn the_access_table_takes_each_rows_need_and_action() {
        for r in table() {
            let found = crate::access::find(r.method, r.path).unwrap_or_else(|| panic!("{r:?} not in access"));
            assert_eq!(found.need, r.need, "{r:?}");
            assert_eq!(found.audit_name(), (r.category, r.action.to_owned()), "{r:?}");
        }
    }
}
