//! Warden's gateway: the one HTTP door. Every request is matched against the access rules
//! (`rules`), its caller authenticated, the rule's authorizer asked, its throttle counted, the
//! request changed by the mutators and handed to the upstream: a part of Warden in this process,
//! or an HTTP(S) service elsewhere (`proxy`). Refusals leave in the API's one error shape.
//!
//! What the gateway needs to know about the world (signing keys, login sessions, who a token's
//! subject is, how a person relates to a device) comes through [`Facts`], which the composition
//! root implements; the decisions themselves are made here and in the `policy` crate.
//!
//! Written by hand because no library does this job: the rule shape is Ory Oathkeeper's, the
//! parts are well-kept crates (axum/tower, governor for GCRA, regex, reqwest).

mod pattern;
mod pipeline;
mod proxy;
mod rules;
mod template;
mod throttle;

use std::fmt;
use std::sync::Arc;

use axum::http::HeaderMap;
use model::{DeviceId, Role, Timestamp, UserId};
use policy::{Denial, DeviceRelation, Subject};
use tokens::jwt::AccessClaims;
use tokens::keys::KeyRing;

pub use pattern::{RequestUrl, Strategy};
pub use pipeline::{Gateway, GatewayMetrics, GatewaySettings};
pub use rules::{Format, Problem, Rule, RuleSet, RulesError};
pub use throttle::{Per, Rate, SharedCount, SharedCounters};

/// The rules Warden ships with: every public route of `warden serve`, nothing under `/internal/`.
pub const SHIPPED_RULES: &str = include_str!("../rules/warden.yaml");

/// Who an authenticator found behind a request.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// The subject: a user id, a client id, or the anonymous subject's name.
    pub subject: String,
    /// What templates read as `.Extra`: a token's claims, or a login's email and role.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The client application, for limits per client.
    pub client_id: Option<String>,
    /// The token's scopes, for tiers and required scopes.
    pub scopes: Vec<String>,
    /// Set by the `anonymous` and `noop` authenticators.
    pub anonymous: bool,
    /// What the identity rests on, for the policy.
    pub credential: Credential,
}

/// What a session's identity rests on.
#[derive(Clone, Debug, Default)]
pub enum Credential {
    #[default]
    None,
    AccessToken(Box<AccessClaims>),
    Login {
        user_id: UserId,
        role: Role,
    },
}

/// A failure to learn a fact (the database is unreachable, say); the request gets a 503.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FactsError(pub String);

/// What the gateway asks the rest of Warden.
#[async_trait::async_trait]
pub trait Facts: Send + Sync + fmt::Debug {
    /// The keys that sign Warden's access tokens, as published now.
    async fn signing_keys(&self) -> Result<Arc<KeyRing>, FactsError>;
    /// The issuer Warden's access tokens carry.
    fn issuer(&self) -> &str;
    /// The audience of Warden's API, what `jwt` requires when a rule names none.
    fn audience(&self) -> &str;
    /// The claims of `token` when Warden's authorization server holds it active: signature,
    /// time, issuer, audience, and neither it nor its grant revoked (what RFC 7662
    /// introspection answers).
    async fn introspect(&self, token: &str) -> Result<Option<AccessClaims>, FactsError>;
    /// The person whose login session cookie `headers` carry, with their email.
    async fn login_session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(UserId, Role, String)>, FactsError>;
    /// The policy's subject for a credential; `None` when nobody stands behind it any more.
    async fn subject(&self, credential: &Credential) -> Result<Option<Subject>, FactsError>;
    /// How the device relates to people now; `None` when there is no such device.
    async fn relation(
        &self,
        device_id: &DeviceId,
        now: Timestamp,
    ) -> Result<Option<DeviceRelation>, FactsError>;
    /// Records that `subject`, who can see the device, was refused `action` on it, so that its
    /// owner's access log shows the attempt; an error refuses the request as unavailable.
    async fn device_denied(
        &self,
        subject: &Subject,
        device_id: &DeviceId,
        action: policy::Action,
        denial: &Denial,
        origin: &RequestOrigin,
    ) -> Result<(), FactsError>;
}

/// Where a request came from: the caller's address and the request id the gateway gave it.
#[derive(Clone, Debug, Default)]
pub struct RequestOrigin {
    pub address: Option<String>,
    pub request_id: Option<String>,
}
