//! Warden's HTTP API as an axum router: the routes, the one mapping from errors to HTTP, and the
//! layers every response passes through (request ids, logs, metrics, security headers).
//!
//! The router is built from an [`ApiContext`] handed in by the composition root; this crate opens no
//! sockets and reads no files.

mod api;
mod broker_hooks;
mod console;
mod device_api;
mod error;
mod firmware;
mod health;
mod identity;
pub mod journal;
mod layers;
mod metrics;
mod oauth;
mod openapi;
mod pages;
mod pki;
mod rollouts;
mod throttle;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use prometheus_client::registry::Registry;
use store::Store;
use tower_http::limit::RequestBodyLimitLayer;

pub use api::caller::token_subject;
pub use api::subject_of;
pub use broker_hooks::BrokerSessions;
pub use device_api::{authenticate_device, record_answer, record_report, redeliver};
pub use error::ApiError;
pub use firmware::{FirmwareFiles, record_ota_status};
pub use identity::Identity;
pub use layers::{REQUEST_ID_HEADER, RequestId, error_response, security_headers};
pub use metrics::HttpMetrics;
pub use oauth::{ActiveTokens, ClientCache, KeyCache, OAuthSettings};
pub use oauth::{active_claims, key_ring, own_service_token};
pub use pages::current_user;
pub use pki::{PeerCertificate, PkiContext, renew_for_device};
pub use rollouts::tend_rollouts;

/// What the device API needs besides the database.
#[derive(Debug)]
pub struct DeviceContext {
    /// Stores what devices send; an acknowledgement waits for its commit.
    pub events: events::Recorder,
    /// Keyed hashes of device passwords and claim codes.
    pub hashers: registry::DeviceHashers,
    /// Wakes senders waiting for a command's answer when a device answers on this replica.
    pub command_answers: tokio::sync::Notify,
    /// The longest a sender may wait for an answer within one request.
    pub max_command_wait: Duration,
    /// Where firmware files are read from.
    pub firmware_files: Arc<dyn FirmwareFiles>,
    /// The MQTT connections this replica let in through the broker hooks.
    pub broker_sessions: BrokerSessions,
    /// Where desired settings and commands go to reach devices (the MQTT broker), once it runs.
    pub messages: std::sync::OnceLock<Arc<dyn DeviceMessages>>,
}

/// Delivery of what people send to devices: desired settings (retained) and commands. The
/// composition root provides it (over MQTT); without it, devices fetch both over HTTPS.
#[async_trait::async_trait]
pub trait DeviceMessages: Send + Sync + std::fmt::Debug {
    async fn desired(
        &self,
        device_id: &model::DeviceId,
        version: i64,
        settings: &serde_json::Value,
    );
    async fn command(&self, command: &store::CommandRecord);
    /// A firmware offer (the signed manifest), retained on `devices/{id}/ota`.
    async fn ota(&self, device_id: &model::DeviceId, offer: &serde_json::Value);
    /// Withdraws the retained offer on `devices/{id}/ota` (an aborted rollout).
    async fn withdraw_ota(&self, device_id: &model::DeviceId);
    /// The answer to a certificate request, on `devices/{id}/certificate` (not retained).
    async fn certificate(&self, device_id: &model::DeviceId, answer: &serde_json::Value);
}

impl DeviceContext {
    /// The delivery channel, if one is set up.
    pub(crate) fn messages(&self) -> Option<&Arc<dyn DeviceMessages>> {
        self.messages.get()
    }
}

/// Everything the handlers need, built once at start.
#[derive(Clone, Debug)]
pub struct ApiContext {
    pub store: Store,
    pub metrics: Arc<HttpMetrics>,
    /// The registry `/metrics` renders; every part registers its metrics in it before start.
    pub registry: Arc<Registry>,
    pub limits: Limits,
    pub identity: Arc<Identity>,
    pub oauth: Arc<OAuthSettings>,
    pub pki: Arc<PkiContext>,
    pub devices: Arc<DeviceContext>,
    /// Where security-relevant actions are recorded (docs/audit.md).
    pub audit: audit::Journal,
}

/// Bounds on what one request may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

/// The whole HTTP API, with every layer applied. Unknown paths answer 404 in the API's error shape.
pub fn router(context: ApiContext) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::render))
        .merge(pages::routes())
        .merge(console::routes())
        .merge(oauth::routes())
        .merge(openapi::routes())
        .merge(pki::routes())
        .merge(firmware::routes())
        .merge(rollouts::routes())
        .merge(api::routes());
    with_layers(routes, firmware::upload_routes(), context)
}

/// What the device listener serves: only requests from clients that proved a certificate from
/// Warden's CA during the handshake (see `server::tls::device_server_config`). The broker hooks
/// are here, never on the main listener, because only the broker's certificate may call them;
/// so are the internal endpoints for Warden's services, which the gateway never exposes.
pub fn device_router(context: ApiContext) -> Router {
    let routes = pki::device_routes()
        .merge(device_api::routes())
        .merge(firmware::device_routes())
        .merge(broker_hooks::routes())
        .merge(api::internal_routes());
    with_layers(routes, Router::new(), context)
}

/// The longest a firmware upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Applies the layers: `routes` take bodies up to `limits.max_body_bytes` within
/// `limits.request_timeout`; `uploads` check their own (larger) bounds while they stream and
/// have [`UPLOAD_TIMEOUT`].
fn with_layers(
    routes: Router<ApiContext>,
    uploads: Router<ApiContext>,
    context: ApiContext,
) -> Router {
    let limits = context.limits;
    let metrics = context.metrics.clone();
    let routes = routes
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // Refuses a declared oversize body before the handler; the line above bounds streamed ones.
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(layers::timeout(limits.request_timeout));
    let uploads = uploads
        .layer(DefaultBodyLimit::disable())
        .layer(layers::timeout(UPLOAD_TIMEOUT.max(limits.request_timeout)));
    routes
        .merge(uploads)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(context)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            layers::telemetry,
        ))
        .layer(axum::middleware::from_fn(layers::security_headers))
}
