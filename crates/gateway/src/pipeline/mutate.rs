//! What the upstream sees: headers from templates (spoofed copies always removed first) and
//! identity assertions Warden signs for the upstream.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use tokens::jwt;

use super::{Decision, Gateway, Loaded, Refusal};
use crate::Session;
use crate::rules::{Mutator, Rule};

impl Gateway {
    /// Removes every header any rule's mutators set (a client's copy is never trusted), then
    /// applies this rule's mutators in order.
    pub(super) async fn mutate(
        &self,
        rule: &Rule,
        loaded: &Loaded,
        session: &Session,
        captures: &[String],
        request: &mut Request,
    ) -> Result<(), Refusal> {
        let headers = request.headers_mut();
        for name in &loaded.mutated_headers {
            headers.remove(name);
        }
        for mutator in &rule.mutators {
            match mutator {
                Mutator::Noop => {}
                Mutator::Header { headers: templates } => {
                    for (name, template) in templates {
                        let value = HeaderValue::from_str(&template.render(session, captures))
                            .map_err(|_| {
                                tracing::warn!(rule = %rule.id, header = %name, "a header template rendered an invalid value");
                                Refusal::new(
                                    Decision::Denied,
                                    StatusCode::BAD_REQUEST,
                                    "bad_request",
                                    "the request cannot be forwarded with the identity it carries"
                                        .into(),
                                )
                            })?;
                        headers.insert(name.clone(), value);
                    }
                }
                Mutator::IdToken { audience, ttl } => {
                    let token = self.assertion(session, audience, *ttl).await?;
                    let value =
                        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                            Refusal::unavailable(&crate::FactsError("unsignable".into()))
                        })?;
                    headers.insert(header::AUTHORIZATION, value);
                }
            }
        }
        Ok(())
    }

    /// The `id_token` mutator's JWT: who the caller is, for one upstream, for a short time,
    /// signed with Warden's current signing key (verifiable with Warden's JWKS).
    async fn assertion(
        &self,
        session: &Session,
        audience: &str,
        ttl: Duration,
    ) -> Result<String, Refusal> {
        let facts = &self.inner.facts;
        let ring = facts
            .signing_keys()
            .await
            .map_err(|error| Refusal::unavailable(&error))?;
        let now = self.inner.clock.0.now();
        let issued = now.unix_millis().div_euclid(1000);
        let mut claims = serde_json::json!({
            "iss": facts.issuer(),
            "sub": session.subject,
            "aud": audience,
            "iat": issued,
            "exp": issued + i64::try_from(ttl.as_secs()).unwrap_or(60),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(client_id) = &session.client_id {
            claims["client_id"] = client_id.as_str().into();
        }
        if !session.scopes.is_empty() {
            claims["scope"] = session.scopes.join(" ").into();
        }
        jwt::issue_assertion(&ring, now, &claims).map_err(|error| {
            Refusal::unavailable(&crate::FactsError(format!("cannot sign: {error}")))
        })
    }
}
