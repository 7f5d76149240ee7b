//! The web console (docs/console.md): a browser application of hand-written JavaScript modules in
//! `crates/http-api/console/`, embedded in the binary at compile time and served under
//! `/console/`. It logs in as the public first-party client `warden-console` and calls the API
//! through the gateway like any other client; this module only serves its files, with a
//! Content-Security-Policy that lets them run and nothing else.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::{ApiContext, ApiError};

/// Scripts, styles and API calls from Warden's own origin only; no inline code, no frames.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                           connect-src 'self'; img-src 'self'; form-action 'self'; \
                           frame-ancestors 'none'; base-uri 'none'";

/// Every file of the console: its name under `/console/`, its type, its content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_str!("../console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/api.js"),
    ),
    (
        "auth.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/auth.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
];

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|| async { file("") }))
        .route(
            "/console/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

fn file(name: &str) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, content)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CONTENT_SECURITY_POLICY, CONSOLE_CSP),
                // Always asked again (a 304 is cheap), so a new Warden is never half old.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *content,
        )
            .into_response(),
        None => ApiError::NotFound.into_response(),
    }
}
