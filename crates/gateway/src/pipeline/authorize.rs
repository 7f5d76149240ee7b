//! Whether the caller may go on: `allow`, `deny`, `device` (the policy's decision on the
//! device the rule names) and `remote_json` (a policy service asked over HTTP, failing closed).

use std::time::Duration;

use axum::http::{StatusCode, header};
use model::DeviceId;
use policy::Denial;

use super::{Decision, Gateway, Refusal};
use crate::rules::{Authorizer, Rule};
use crate::{RequestOrigin, Session};

impl Gateway {
    pub(super) async fn authorize(
        &self,
        rule: &Rule,
        captures: &[String],
        session: &Session,
        origin: &RequestOrigin,
    ) -> Result<(), Refusal> {
        let (action, template) = match &rule.authorizer {
            Authorizer::Allow => return Ok(()),
            Authorizer::Deny => {
                return Err(Refusal::new(
                    Decision::Denied,
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this rule refuses every request".into(),
                ));
            }
            Authorizer::Device { action, device_id } => (*action, device_id),
            Authorizer::RemoteJson {
                remote,
                payload,
                timeout,
            } => {
                let payload = payload.render_json(session, captures);
                return self.ask_remote(rule, remote, payload, *timeout).await;
            }
        };
        let Ok(device_id) = DeviceId::parse(&template.render(session, captures)) else {
            return Err(Refusal::not_found());
        };
        let facts = &self.inner.facts;
        let subject = facts
            .subject(&session.credential)
            .await
            .map_err(|error| Refusal::unavailable(&error))?
            .ok_or_else(|| Refusal::invalid_token("nobody stands behind this credential"))?;
        let now = self.inner.clock.0.now();
        let relation = facts
            .relation(&device_id, now)
            .await
            .map_err(|error| Refusal::unavailable(&error))?
            .ok_or_else(Refusal::not_found)?;
        let decision = policy::decide(&subject, action, &relation, now);
        if let Err(denial) = &decision
            && *denial != Denial::NotVisible
        {
            facts
                .device_denied(&subject, &device_id, action, denial, origin)
                .await
                .map_err(|error| Refusal::unavailable(&error))?;
        }
        match decision {
            Ok(_) => Ok(()),
            Err(Denial::NotVisible) => Err(Refusal::not_found()),
            Err(Denial::MissingScope { scope }) => Err(Refusal::insufficient_scope(scope)),
            Err(denial @ Denial::NotPermitted(_)) => Err(Refusal::new(
                Decision::Denied,
                StatusCode::FORBIDDEN,
                "forbidden",
                denial.to_string(),
            )),
        }
    }

    /// `remote_json`: POSTs the payload; a 2xx answer allows unless its JSON body says
    /// `"result": false` or `"allowed": false` (Open Policy Agent's and the common shape); a 403
    /// denies, and so does everything else: another status, no answer within the timeout, or a
    /// payload that did not render as JSON. The policy service's details stay in the log.
    async fn ask_remote(
        &self,
        rule: &Rule,
        remote: &url::Url,
        payload: String,
        timeout: Duration,
    ) -> Result<(), Refusal> {
        let denied = |why: &str| {
            tracing::warn!(rule = %rule.id, remote = %remote, why, "the policy service said no or did not answer");
            Refusal::new(
                Decision::Denied,
                StatusCode::FORBIDDEN,
                "forbidden",
                "the access policy does not allow this".into(),
            )
        };
        if serde_json::from_str::<serde_json::Value>(&payload).is_err() {
            return Err(denied("the payload template did not render as JSON"));
        }
        let request = self
            .inner
            .client
            .post(remote.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(payload)
            .timeout(timeout)
            .send();
        let answer = match tokio::time::timeout(timeout, request).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => return Err(denied("no answer within the timeout")),
        };
        if answer.status() == StatusCode::FORBIDDEN {
            return Err(denied("403"));
        }
        if !answer.status().is_success() {
            return Err(denied(answer.status().as_str()));
        }
        let body = match tokio::time::timeout(timeout, answer.bytes()).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) | Err(_) => return Err(denied("the answer's body did not arrive")),
        };
        let verdict: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let says_no = verdict.as_ref().is_some_and(|value| {
            ["result", "allowed"]
                .iter()
                .any(|name| value.get(name) == Some(&serde_json::Value::Bool(false)))
        });
        if says_no {
            Err(denied("the answer says no"))
        } else {
            Ok(())
        }
    }
}
