//! Audit records from HTTP requests: every record carries the caller's address and the request
//! id, and is committed before the response goes out (docs/audit.md).

use std::convert::Infallible;
use std::net::SocketAddr;

use audit::{Action, Actor, Record, Target};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use model::UserId;
use policy::Subject;

use crate::{ApiContext, ApiError, RequestId};

/// Where a request came from: the peer's address and the request's id.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origin {
    source: Option<String>,
    request_id: Option<String>,
}

impl Origin {
    pub(crate) fn of(parts: &Parts) -> Self {
        Self {
            source: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip().to_string()),
            request_id: parts
                .extensions
                .get::<RequestId>()
                .map(|RequestId(id)| id.clone()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}

impl ApiContext {
    /// A successful `action` by `actor` on `target`, now; the caller adds particulars.
    pub(crate) fn audit_record(&self, actor: Actor, action: Action, target: Target) -> Record {
        Record::new(self.identity.clock.now(), actor, action, target)
    }

    /// Appends `record`, from `origin`, to the audit journal and returns once it is committed.
    pub(crate) async fn audit(&self, origin: &Origin, mut record: Record) -> Result<(), ApiError> {
        record.source.clone_from(&origin.source);
        record.request_id.clone_from(&origin.request_id);
        self.audit.append(record).await.map_err(|error| {
            tracing::error!(%error, "audit record not written");
            ApiError::Unavailable {
                what: "the audit journal",
            }
        })
    }
}

/// A person, by id.
pub(crate) fn person(user_id: UserId) -> Actor {
    Actor::User {
        id: user_id.to_string(),
        email: None,
    }
}

/// Who acts with a policy subject's token.
pub fn actor_of(subject: &Subject) -> Actor {
    match subject {
        Subject::Person { user_id, .. } | Subject::Admin { user_id, .. } => person(*user_id),
        Subject::Service { client_id, .. } => Actor::Client {
            id: client_id.clone(),
        },
    }
}

/// A refused request on a device its caller can see (a technician outside the grant's scopes,
/// say): what the owner's access log shows of it, wherever it was refused (here or at the
/// gateway).
pub fn device_denied(
    now: model::Timestamp,
    subject: &Subject,
    device_id: &model::DeviceId,
    permission: policy::Action,
    denial: &policy::Denial,
) -> Record {
    Record::new(
        now,
        actor_of(subject),
        Action::DeviceAccessDenied,
        Target::new("device", device_id.as_str()),
    )
    .device(device_id.as_str())
    .outcome(audit::Outcome::Denied)
    .detail(serde_json::json!({ "permission": permission.as_str(), "reason": denial.to_string() }))
}

/// The target naming an account.
pub(crate) fn account(user_id: UserId) -> Target {
    Target::new("account", user_id.to_string())
}

/// A person known by their account, named with their e-mail address.
pub(crate) fn account_holder(user: &store::UserRecord) -> Actor {
    Actor::User {
        id: user.id.to_string(),
        email: Some(user.email.to_string()),
    }
}
