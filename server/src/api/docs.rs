//! The OpenAPI 3.1 document (generated from the handlers' annotations and
//! the shared model types) and the docs UI (Swagger UI served from this
//! server's own files: nothing from a CDN).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, dashboards, explorer, exports, masking, verify_jobs};

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
            Errors are JSON `{code, message, fields[]}`; each field problem names its path and reason.",
    ),
    paths(
        audit::ingest, audit::search, audit::read_one, audit::checkpoints, audit::stats,
        explorer::histogram, explorer::tail, explorer::list, explorer::save, explorer::delete,
        exports::export, exports::start, exports::status, exports::file, exports::manifest,
        verify_jobs::start, verify_jobs::status,
        dashboards::analytics, dashboards::compliance, dashboards::verifications,
        dashboards::keys, dashboards::rotate, dashboards::public_key,
        masking::get_policy, masking::put_policy, masking::history, masking::preview,
    ),
    components(schemas(custos_model::EventInput, custos_model::ApiError, custos_model::FieldProblem)),
    modifiers(&Security),
    tags(
        (name = "audit", description = "Record, search and read audit events"),
        (name = "verification", description = "Prove the ledger intact"),
        (name = "dashboards", description = "Analytics and compliance status"),
        (name = "masking", description = "PII masking rules"),
    )
)]
pub struct ApiDoc;

/// The document, as served.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}

/// `GET /api/openapi.json`.
pub async fn openapi_json() -> Response {
    match document().to_pretty_json() {
        Ok(json) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response(),
        Err(e) => crate::http::internal_error("CU-API-001", "cannot render the OpenAPI document", &e),
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
