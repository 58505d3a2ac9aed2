//! The OpenAPI 3.1 document (generated from the handlers' annotations and
//! the shared model types) and the docs UI (Swagger UI served from this
//! server's own files: nothing from a CDN).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`cst_…`) created by an administrator: `Authorization: Bearer cst_…`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "custos_session",
                "The browser session of a signed-in user.",
            ))),
        );
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Custos API",
        description = "Sealed, verifiable audit log. Every request is itself recorded in the ledger. \
            Errors are JSON `{code, message, fields[], operation_id}` for every status: `code` is stable (see `ErrorCode`), each field problem names its path and reason, and a 5xx carries an operation id to quote (the cause is in the server's log).",
    ),
    components(schemas(custos_model::EventInput, custos_model::ErrorBody, custos_model::ErrorCode, custos_model::FieldProblem, super::session::Whoami)),
    modifiers(&Security),
    tags(
        (name = "audit", description = "Record, search and read audit events"),
        (name = "verification", description = "Prove the ledger intact"),
        (name = "dashboards", description = "Analytics and compliance status"),
        (name = "masking", description = "PII masking rules"),
        (name = "policies", description = "Policies: versions, proposals, four-eyes review, dry-runs, the trail"),
        (name = "alerts", description = "Alerts the rules opened: acknowledge, comment, resolve"),
        (name = "notifications", description = "The log of every delivery attempt; a channel's test"),
        (name = "forwarding", description = "SIEM destinations: health, pause, resume, replay, test, format preview"),
        (name = "retention", description = "Retention: status, dry-run, runs, archive catalogue (verify, download)"),
        (name = "backups", description = "Backups of the embedded database: schedule, list, take one, download"),
        (name = "reports", description = "Compliance evidence reports per framework and period (PDF and JSON, signed), and the daily snapshots"),
        (name = "session", description = "Who the caller is"),
        (name = "docs", description = "This description"),
    )
)]
pub struct ApiDoc;

/// The document, as served: one operation per row of the route table, so
/// what is documented is what is served.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    for route in crate::routes::table() {
        doc.paths.add_path_operation(route.path, vec![route.http_method.clone()], with_access(route));
    }
    // Schemas the operations name, collected from their handlers' attributes.
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in crate::routes::schemas() {
        components.schemas.entry(name).or_insert(schema);
    }
    doc
}

/// A row's operation with what the layers around its handler add: its
/// unique `operationId`; the security schemes it takes; and the answers
/// every route may give besides its own (401 and 403 from the access
/// check, 429 from the flood gate and the per-caller bounds; 400 for a
/// path value, query or body that does not parse, 404 for a path value
/// naming nothing, 413 for a body over the bound; 503 when the ledger
/// cannot record the request, as every request is recorded).
fn with_access(route: &crate::routes::RestRoute) -> utoipa::openapi::path::Operation {
    use crate::access::Need;
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build(),
        )
    };
    let mut op = route.operation.clone();
    // The handlers' names repeat across modules (`status`, `list`, …);
    // OpenAPI wants each operation's id unique, which clients and
    // schemathesis's links rely on.
    op.operation_id = Some(operation_id(route.method, route.path));
    let schemes: &[&str] = match route.need {
        Need::Public => &[],
        Need::User | Need::UserWith(_) => &["session"],
        Need::SignedIn | Need::Permission(_) => &["api_key", "session"],
    };
    let takes = |place: ParameterIn| op.parameters.iter().flatten().any(|p| p.parameter_in == place);
    let (in_path, in_query, body) = (takes(ParameterIn::Path), takes(ParameterIn::Query), op.request_body.is_some());
    if !schemes.is_empty() {
        op.security = Some(schemes.iter().map(|s| SecurityRequirement::new(*s, Vec::<String>::new())).collect());
    }
    let responses = &mut op.responses.responses;
    if !schemes.is_empty() {
        responses.entry("401".into()).or_insert_with(|| error("No session or API key, or one no longer valid"));
        responses.entry("403".into()).or_insert_with(|| {
            error(
                "The caller lacks what this needs (the message names it; API keys carry only `ingest` and \
                 `read`), or a signed-in user owes a password change or MFA enrolment first",
            )
        });
        responses.entry("429".into()).or_insert_with(|| {
            error(
                "Too many: refused anonymous calls or refused API keys from this address beyond \
                 `auth.anonymous_per_minute` this minute, or more of this work at once than one caller may run \
                 (verifications, exports, live tails, free-text searches); `Retry-After` says when to try again",
            )
        });
    }
    // What every handler answers for its inputs, besides its own answers.
    if in_path || in_query || body {
        let what = [(in_path, "a path value"), (in_query, "a query value"), (body, "the body")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, what)| *what)
            .collect::<Vec<_>>()
            .join(" or ");
        responses.entry("400".into()).or_insert_with(|| {
            error(&format!("Bad input: {what} is malformed or out of range; the message and `fields` name it and why"))
        });
    }
    if body {
        responses.entry("413".into()).or_insert_with(|| error("The body is larger than this operation takes"));
    }
    if in_path {
        responses.entry("404".into()).or_insert_with(|| error("Nothing by this name or id (or not yours to see)"));
    }
    responses.entry("503".into()).or_insert_with(|| {
        error(
            "The ledger cannot record this request (every request is recorded), or its commit timed out: retry \
             later (a write that timed out may still land: retry it with the same ids)",
        )
    });
    op
}

/// An operation's id from its method and path: `GET /api/audit/verify/{job}`
/// is `get_audit_verify_job`.
fn operation_id(method: &str, path: &str) -> String {
    let words = path
        .trim_start_matches("/api/")
        .split(['/', '-', '.', '{', '}'])
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase);
    std::iter::once(method.to_ascii_lowercase()).chain(words).collect::<Vec<_>>().join("_")
}

/// `GET /api/openapi.json`.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "docs",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    match document().to_pretty_json() {
        Ok(json) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response(),
        Err(e) => super::ApiError::internal("cannot render the OpenAPI document", &e).into_response(),
    }
}

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Custos API</title>
<link rel="icon" href="/favicon.ico">
<link rel="stylesheet" href="/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/api-docs.js"></script>
</body>
</html>
"#;

/// `GET /api/docs`: Swagger UI over `/api/openapi.json`, all local.
#[utoipa::path(
    get, path = "/api/docs", tag = "docs",
    responses((status = 200, description = "The docs UI (HTML)", content_type = "text/html"))
)]
pub async fn docs_page() -> Response {
    let mut res =
        ([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], DOCS_HTML).into_response();
    // Scripts and styles from this server only; Swagger UI sets inline
    // styles and shows data: images.
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    res
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_has_its_own_id() {
        let doc = super::document();
        let mut ids: Vec<String> = doc.paths.paths.values().flat_map(item_ids).collect();
        let n = ids.len();
        ids.sort();
        let repeated: Vec<&String> = ids.windows(2).filter(|w| w[0] == w[1]).map(|w| &w[0]).collect();
        assert!(repeated.is_empty(), "repeated operation ids: {repeated:?}");
        assert!(n >= 30, "{n}");
        assert_eq!(super::operation_id("GET", "/api/reports/{id}/{file}/manifest"), "get_reports_id_file_manifest");
    }

    fn item_ids(item: &utoipa::openapi::PathItem) -> Vec<String> {
        [&item.get, &item.post, &item.put, &item.delete, &item.patch]
            .into_iter()
            .flatten()
            .map(|op| op.operation_id.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let e = crate::api::query_error("Failed to deserialize query string: limit: invalid digit found in string");
        assert_eq!((e.fields[0].path.as_str(), e.message.as_str()), ("limit", "limit: invalid digit found in string"));
        let e = crate::api::query_error("Failed to deserialize query string: expected `,` or `}`");
        assert_eq!(e.fields[0].path, "query");
        let long = format!("q: {}", "x".repeat(500));
        assert!(crate::api::query_error(&long).message.chars().count() <= 210);
    }
}
