//! The access table: every route and every server function, with what it
//! requires. One middleware (`auth::enforce`) applies it to every request,
//! deny by default: `HEAD` is looked up as `GET`, the last row (`/{*page}`)
//! covers unknown pages (never `/api`, `/rpc` or static files), and a
//! request no row covers is refused before any handler (401 anonymous,
//! else 405 or 404). Tests walk it for every role and every method and
//! check that no route exists that it does not list. Server functions also
//! check for themselves.

use custos_engine::identity::permission::Permission;
use custos_engine::identity::permission::Permission as P;
use custos_engine::identity::service::Caller;

/// What kind of endpoint a route is; decides how a refusal looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An HTML page: anonymous callers are sent to sign in, others see the 403 page.
    Page,
    /// A form target (sign-in, sign-out): answered with redirects.
    Form,
    /// A JSON API route: 401 or 403 with a JSON error.
    Api,
    /// A Leptos server function: like an API route.
    Rpc,
    /// Health, readiness, metrics.
    Ops,
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing.
    Public,
    /// A signed-in user or an API key.
    SignedIn,
    /// A signed-in user (not an API key): their own account.
    User,
    /// A permission.
    Permission(Permission),
    /// A signed-in user (not an API key) holding a permission: pages for
    /// people that show data.
    UserWith(Permission),
}

/// How the self-audit names a request to a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// A REST route: its action and category (from `routes::rest_table`).
    Named(&'static str, &'static str),
    /// A page: `ui.page.view`.
    PageView,
    /// A server function: `rpc.<name>`, in this category (`admin` for one
    /// that changes things, `data_access` for one that reads).
    ServerFunction(&'static str),
    /// Not recorded on its own (health, sign-in forms: they record themselves).
    None,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path pattern: `{name}` matches one segment, `{*name}` the rest.
    pub path: &'static str,
    /// Kind.
    pub kind: Kind,
    /// Requirement.
    pub need: Need,
    /// Usable while a signed-in user must first change the password or
    /// enrol MFA (the account page and what it calls).
    pub during_setup: bool,
    /// How the self-audit names it.
    pub audit: Audit,
}

const fn audit_of(kind: Kind) -> Audit {
    match kind {
        Kind::Page => Audit::PageView,
        Kind::Rpc => Audit::ServerFunction("admin"),
        Kind::Api | Kind::Form | Kind::Ops => Audit::None,
    }
}

const fn r(method: &'static str, path: &'static str, kind: Kind, need: Need) -> Route {
    Route { method, path, kind, need, during_setup: false, audit: audit_of(kind) }
}

const fn setup(method: &'static str, path: &'static str, kind: Kind, need: Need) -> Route {
    Route { method, path, kind, need, during_setup: true, audit: audit_of(kind) }
}

impl Route {
    /// A server function that only reads: recorded as data access.
    const fn reads(mut self) -> Route {
        self.audit = Audit::ServerFunction("data_access");
        self
    }

    /// Whether pages read this endpoint again by themselves (a refresh every
    /// few seconds, a running job's progress): a signed-in user's repeats
    /// of a read already recorded are counted into one `audit.presence` per
    /// period (`api::summaries`) instead of recorded one by one.
    pub fn polled(&self) -> bool {
        POLLED.contains(&(self.method, self.path))
    }

    /// The self-audit's (category, action) for this route.
    pub fn audit_name(&self) -> (&'static str, String) {
        match self.audit {
            Audit::Named(action, category) => (category, action.to_owned()),
            Audit::PageView => ("data_access", "ui.page.view".to_owned()),
            Audit::ServerFunction(category) => {
                (category, format!("rpc.{}", self.path.strip_prefix("/rpc/").unwrap_or(self.path)))
            }
            Audit::None => ("data_access", "http.request".to_owned()),
        }
    }
}

/// The endpoints the pages poll (see [`Route::polled`]).
const POLLED: &[(&str, &str)] = &[
    ("POST", "/rpc/status"),
    ("GET", "/api/forwarding/destinations"),
    ("GET", "/api/alerts"),
    ("GET", "/api/audit/analytics"),
    ("GET", "/api/audit/exports/{id}"),
    ("GET", "/api/audit/verify/{job}"),
    ("GET", "/api/backups/{name}"),
    ("GET", "/api/retention/runs/{id}"),
];

use Kind::*;
use Need::*;
const USERS: Need = Permission(custos_engine::identity::permission::Permission::UserManage);

/// The routes that are not REST routes (`routes::rest_table` has those):
/// operations, forms, pages, server functions, and last the catch-all page.
const OTHER_ROUTES: &[Route] = &[
    // Operations.
    setup("GET", "/healthz", Ops, Public),
    setup("GET", "/readyz", Ops, Public),
    setup("GET", "/metrics", Ops, Public),
    // Signing in and out.
    setup("GET", "/login", Page, Public),
    setup("GET", "/login/mfa", Page, Public),
    setup("POST", "/auth/login", Form, Public),
    setup("POST", "/auth/mfa", Form, Public),
    setup("POST", "/auth/logout", Form, Public),
    // Pages.
    r("GET", "/", Page, SignedIn),
    setup("GET", "/account", Page, User),
    r("GET", "/events", Page, UserWith(P::AuditRead)),
    r("GET", "/analytics", Page, UserWith(P::AuditRead)),
    r("GET", "/compliance", Page, UserWith(P::ReportGenerate)),
    r("GET", "/reports", Page, UserWith(P::ReportGenerate)),
    r("GET", "/integrity", Page, UserWith(P::AuditVerify)),
    r("GET", "/policies", Page, UserWith(P::PolicyRead)),
    r("GET", "/policies/trail", Page, UserWith(P::PolicyRead)),
    r("GET", "/policies/masking/edit", Page, UserWith(P::PolicyManage)),
    r("GET", "/policies/proposals/{id}", Page, UserWith(P::PolicyRead)),
    r("GET", "/policies/alert_rules/edit", Page, UserWith(P::AlertManage)),
    r("GET", "/alerts", Page, UserWith(P::AuditRead)),
    r("GET", "/notifications", Page, UserWith(P::NotificationManage)),
    r("GET", "/forwarding", Page, UserWith(P::SiemManage)),
    r("GET", "/retention", Page, UserWith(P::PolicyRead)),
    r("GET", "/backups", Page, UserWith(P::PolicyRead)),
    r("GET", "/admin/users", Page, USERS),
    r("GET", "/admin/roles", Page, USERS),
    r("GET", "/admin/api-keys", Page, USERS),
    // Server functions.
    setup("POST", "/rpc/whoami", Rpc, Public).reads(),
    r("POST", "/rpc/status", Rpc, SignedIn).reads(),
    setup("POST", "/rpc/change_password", Rpc, User),
    setup("POST", "/rpc/mfa_begin", Rpc, User),
    setup("POST", "/rpc/mfa_confirm", Rpc, User),
    r("POST", "/rpc/list_users", Rpc, USERS).reads(),
    r("POST", "/rpc/create_user", Rpc, USERS),
    r("POST", "/rpc/set_user_disabled", Rpc, USERS),
    r("POST", "/rpc/reset_user_password", Rpc, USERS),
    r("POST", "/rpc/set_user_roles", Rpc, USERS),
    r("POST", "/rpc/reset_user_mfa", Rpc, USERS),
    r("POST", "/rpc/list_roles", Rpc, USERS).reads(),
    r("POST", "/rpc/create_role", Rpc, USERS),
    r("POST", "/rpc/update_role", Rpc, USERS),
    r("POST", "/rpc/delete_role", Rpc, USERS),
    r("POST", "/rpc/list_api_keys", Rpc, USERS).reads(),
    r("POST", "/rpc/create_api_key", Rpc, USERS),
    r("POST", "/rpc/revoke_api_key", Rpc, USERS),
    // Any other page: the "not found" page, for signed-in users only (an
    // anonymous caller is sent to sign in and learns nothing of what exists).
    // Never matches under /api or /rpc: an unknown endpoint there is refused.
    r("GET", NOT_FOUND_PAGE, Page, SignedIn),
];

/// Every route: the other routes with the REST table's rows placed before
/// the server functions (and the catch-all page last).
pub fn routes() -> &'static [Route] {
    static ALL: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let split = OTHER_ROUTES.iter().position(|r| r.kind == Kind::Rpc).unwrap_or(OTHER_ROUTES.len());
        let mut all: Vec<Route> = OTHER_ROUTES[..split].to_vec();
        all.extend(crate::routes::table().iter().map(|t| Route {
            method: t.method,
            path: t.path,
            kind: Kind::Api,
            need: t.need,
            during_setup: t.during_setup,
            audit: Audit::Named(t.action, t.category),
        }));
        all.extend_from_slice(&OTHER_ROUTES[split..]);
        all
    })
}

/// The table's last row: every other GET of a page path.
pub const NOT_FOUND_PAGE: &str = "/{*page}";

/// Paths served as static files (the built site); public, not in the table.
pub fn is_static(path: &str) -> bool {
    path.starts_with("/pkg/") || path.starts_with("/vendor/") || path == "/favicon.ico" || path == "/api-docs.js"
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut q = path.split('/');
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(seg), _) if seg.starts_with("{*") => return true,
            (Some(seg), Some(part)) if seg.starts_with('{') && seg.ends_with('}') && !part.is_empty() => {}
            (Some(seg), Some(part)) if seg == part => {}
            _ => return false,
        }
    }
}

/// Whether a path is under the API or the server functions, where no
/// catch-all row applies.
pub fn is_endpoint_path(path: &str) -> bool {
    path == "/api" || path == "/rpc" || path.starts_with("/api/") || path.starts_with("/rpc/")
}

/// The method a request is looked up under: `HEAD` is `GET` (axum answers
/// it with the GET handler), every other method is itself.
pub fn table_method(method: &str) -> &str {
    if method.eq_ignore_ascii_case("HEAD") { "GET" } else { method }
}

/// The table's row for a request, if any (under [`table_method`]); the
/// catch-all page row never covers `/api`, `/rpc` or the static files.
pub fn find(method: &str, path: &str) -> Option<&'static Route> {
    let method = table_method(method);
    routes().iter().find(|r| {
        r.method == method
            && matches(r.path, path)
            && !(r.path == NOT_FOUND_PAGE && (is_endpoint_path(path) || is_static(path)))
    })
}

/// The methods the table serves on a path (none: the path is unknown; the
/// answer to a wrong method on a known path is 405 with these as `Allow`).
/// As the router does, only the most specific pattern counts: a static
/// segment beats `{id}` (`/api/audit/exports` is not `/api/audit/{id}`).
pub fn methods_for(path: &str) -> Vec<&'static str> {
    let candidates: Vec<&Route> =
        routes().iter().filter(|r| r.path != NOT_FOUND_PAGE && matches(r.path, path)).collect();
    let Some(best) = candidates.iter().map(|r| specificity(r.path)).max() else {
        return Vec::new();
    };
    let mut m: Vec<&'static str> =
        candidates.iter().filter(|r| specificity(r.path) == best).map(|r| r.method).collect();
    m.sort_unstable();
    m.dedup();
    m
}

/// Per segment: static 2, `{param}` 1, `{*rest}` 0, compared in order.
fn specificity(pattern: &str) -> Vec<u8> {
    pattern
        .split('/')
        .map(|seg| {
            if seg.starts_with("{*") {
                0
            } else if seg.starts_with('{') {
                1
            } else {
                2
            }
        })
        .collect()
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Sign in first.
    Unauthenticated,
    /// Signed in, but not allowed.
    Forbidden,
    /// Signed in, but must change the password or enrol MFA first.
    SetupRequired,
}

impl Route {
    /// Decides for a caller.
    pub fn decide(&self, caller: &Caller) -> Decision {
        let allowed = match self.need {
            Public => return Decision::Allow,
            SignedIn => caller.is_authenticated(),
            User => caller.user().is_some(),
            Permission(p) => caller.allows(p),
            UserWith(p) => caller.user().is_some() && caller.allows(p),
        };
        if !caller.is_authenticated() {
            return Decision::Unauthenticated;
        }
        if !allowed {
            return Decision::Forbidden;
        }
        if let Some(user) = caller.user() {
            let pending = user.must_change_password || (user.mfa_required && !user.mfa_enabled);
            if pending && !self.during_setup {
                return Decision::SetupRequired;
            }
        }
        Decision::Allow
    }

    /// The requirement as a string, for messages.
    pub fn need_text(&self) -> String {
        match self.need {
            Public => "nothing".into(),
            SignedIn => "sign-in".into(),
            User => "a signed-in user".into(),
            Permission(p) => format!("permission `{p}`"),
            UserWith(p) => format!("a signed-in user with permission `{p}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_polled_endpoint_is_a_read_in_the_table() {
        for (method, path) in POLLED {
            let r = routes().iter().find(|r| r.method == *method && r.path == *path);
            let r = r.unwrap_or_else(|| panic!("{method} {path} is polled but not a route"));
            assert!(r.polled());
            assert!(
                *method == "GET" || r.audit == Audit::ServerFunction("data_access"),
                "{method} {path}: only reads may be counted"
            );
        }
    }

    #[test]
    fn patterns_match_whole_segments() {
        assert!(matches("/api/audit/{id}", "/api/audit/42"));
        assert!(!matches("/api/audit/{id}", "/api/audit/"));
        assert!(!matches("/api/audit/{id}", "/api/audit/42/x"));
        assert!(matches("/pkg/{*rest}", "/pkg/a/b.js"));
        assert!(matches("/", "/"));
        assert!(!matches("/admin/users", "/admin/users-x"));
        assert_eq!(find("GET", "/admin/users").map(|r| r.need), Some(USERS));
        assert!(find("DELETE", "/admin/users").is_none());
        // HEAD is GET; unknown endpoints match nothing, unknown pages the catch-all.
        assert_eq!(find("HEAD", "/api/audit").map(|r| r.path), Some("/api/audit"));
        assert!(find("GET", "/api/nothing").is_none());
        assert!(find("HEAD", "/rpc/nothing").is_none());
        assert!(find("GET", "/api").is_none());
        assert_eq!(find("GET", "/no/such/page").map(|r| r.path), Some(NOT_FOUND_PAGE));
        assert!(find("POST", "/no/such/page").is_none());
        assert_eq!(methods_for("/api/policies/masking"), ["GET"]);
        assert_eq!(methods_for("/api/policies/masking/proposals"), ["POST"]);
        assert!(methods_for("/no/such/page").is_empty());
        // A static segment beats {id}, as in the router.
        assert_eq!(methods_for("/api/audit/exports"), ["POST"]);
        // Static files are served to anyone, not taken for unknown pages.
        assert!(find("GET", "/pkg/custos.js").is_none() && find("GET", "/favicon.ico").is_none());
    }

    #[test]
    fn every_route_is_listed_once() {
        for (i, a) in routes().iter().enumerate() {
            for b in &routes()[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{} {} twice", a.method, a.path);
            }
        }
    }
}
