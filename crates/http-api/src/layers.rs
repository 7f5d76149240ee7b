//! The layers every request passes through, outermost first: security headers, then telemetry
//! (request id, log span, metrics, the error body), then the request timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use crate::HttpMetrics;
use crate::error::{ErrorBody, body_for_status};

/// The header that carries the request id back to the caller, to quote when reporting a problem.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request id, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub(crate) fn timeout(limit: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limit)
}

/// Gives the request an id, runs it inside a log span carrying that id (so every log line of the
/// request has it), records metrics, logs one access line, and writes error bodies in the API's one
/// shape.
pub(crate) async fn telemetry(
    State(metrics): State<Arc<HttpMetrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // The gateway in front names the request first; its id is kept so both log lines share it.
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |id| id.0.clone());
    let method = request.method().as_str().to_owned();
    // The route template, not the raw path: `/api/v1/devices/{id}`, never one series per device.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);

    let response = next.run(request).instrument(span.clone()).await;
    let mut response = render_error_body(response, &request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.observe(&method, &route, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    response
}

/// Turns an error response into the documented JSON error shape, whichever layer produced it.
/// Responses a handler made on purpose (an HTML page explaining a refused form, a JSON answer) are
/// left alone; empty and plain-text ones, which come from layers and extractors, are replaced.
fn render_error_body(response: Response, request_id: &str) -> Response {
    let status = response.status();
    let explained = response.extensions().get::<ErrorBody>().cloned();
    let has_content = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("text/html") || value.starts_with("application/json")
        });
    let body = match explained {
        Some(body) => body,
        None if (status.is_client_error() || status.is_server_error()) && !has_content => {
            body_for_status(status)
        }
        None => return response,
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let (json_parts, json_body) =
        error_response(status, body.code, &body.message, request_id).into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, json_body)
}

/// A response in the API's one error shape, for refusals made outside a handler (the gateway's).
pub fn error_response(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let json = Json(json!({
        "error": {"code": code, "message": message, "request_id": request_id}
    }));
    let mut response = json.into_response();
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Headers every HTTPS response carries. Pages that need a looser Content-Security-Policy set their
/// own; everything else gets the strictest one.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let always: [(HeaderName, &'static str); 5] = [
        // Two years, the HSTS preload list's expectation.
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in always {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let defaults: [(HeaderName, &'static str); 3] = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}
