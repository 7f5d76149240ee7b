//! The gateway in front of the HTTPS listener: its rules (the shipped ones, or the configured
//! file, read again when it changes), the facts it asks of the rest of Warden, and its upkeep.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::http::HeaderMap;
use gateway::{
    Credential, Facts, FactsError, Format, Gateway, RequestOrigin, RuleSet, SharedCount,
    SharedCounters,
};
use http_api::{ApiContext, ApiError};
use model::{DeviceId, Role, Timestamp, UserId};
use policy::{ActionSet, Denial, DeviceRelation, Subject};
use store::{Counted, Store};
use tokens::jwt::AccessClaims;
use tokens::keys::KeyRing;
use tokio_util::sync::CancellationToken;

/// How often the rules file is looked at for changes.
const RULES_POLL: Duration = Duration::from_secs(1);
/// How often idle throttle counters and expired verified tokens are dropped.
const UPKEEP: Duration = Duration::from_secs(60);

/// Warden's own state, as the gateway asks about it.
#[derive(Debug)]
pub(crate) struct WardenFacts {
    pub context: ApiContext,
}

fn unavailable(error: ApiError) -> FactsError {
    FactsError(error.to_string())
}

#[async_trait]
impl Facts for WardenFacts {
    async fn signing_keys(&self) -> Result<Arc<KeyRing>, FactsError> {
        http_api::key_ring(&self.context).await.map_err(unavailable)
    }

    fn issuer(&self) -> &str {
        &self.context.oauth.issuer
    }

    fn audience(&self) -> &str {
        &self.context.oauth.audience
    }

    async fn introspect(&self, token: &str) -> Result<Option<AccessClaims>, FactsError> {
        match http_api::active_claims(&self.context, token).await {
            Ok(Ok(claims)) => Ok(Some(claims)),
            Ok(Err(why)) => {
                tracing::info!(why, "the gateway was shown an inactive token");
                Ok(None)
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn login_session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(UserId, Role, String)>, FactsError> {
        let user = http_api::current_user(&self.context, headers)
            .await
            .map_err(unavailable)?;
        Ok(user.map(|user| (user.id, user.role, user.email.as_str().to_owned())))
    }

    async fn subject(&self, credential: &Credential) -> Result<Option<Subject>, FactsError> {
        match credential {
            Credential::None => Ok(None),
            Credential::AccessToken(claims) => {
                match http_api::subject_of(&self.context, claims).await {
                    Ok(subject) => Ok(Some(subject)),
                    Err(ApiError::Unauthorized) => Ok(None),
                    Err(error) => Err(unavailable(error)),
                }
            }
            // A login session is the person themself, not narrowed by any token's scopes; an
            // admin acts as admin only with a token that carries the `admin` scope.
            Credential::Login { user_id, role } => Ok(Some(Subject::Person {
                user_id: *user_id,
                role: *role,
                token_allows: ActionSet::all(),
            })),
        }
    }

    async fn relation(
        &self,
        device_id: &DeviceId,
        now: Timestamp,
    ) -> Result<Option<DeviceRelation>, FactsError> {
        let found = self
            .context
            .store
            .devices()
            .relation(device_id, now)
            .await
            .map_err(|error| FactsError(error.to_string()))?;
        Ok(found.map(|(_, relation)| relation))
    }

    async fn device_denied(
        &self,
        subject: &Subject,
        device_id: &DeviceId,
        action: policy::Action,
        denial: &Denial,
        origin: &RequestOrigin,
    ) -> Result<(), FactsError> {
        let now = self.context.identity.clock.now();
        let mut record = http_api::journal::device_denied(now, subject, device_id, action, denial);
        record.source.clone_from(&origin.address);
        record.request_id.clone_from(&origin.request_id);
        self.context
            .audit
            .append(record)
            .await
            .map_err(|error| FactsError(error.to_string()))
    }
}

/// The rules to start with: the configured file, or the shipped rules. A file with errors stops
/// the start, with every error and where it is.
/// The gateway's throttle counters in the database, shared by the replicas on it
/// (`gateway.throttle_store = "database"`).
#[derive(Debug)]
pub(crate) struct DatabaseCounters {
    pub store: Store,
}

#[async_trait]
impl SharedCounters for DatabaseCounters {
    async fn count(
        &self,
        key: &str,
        now: i64,
        interval: i64,
        tolerance: i64,
    ) -> Result<SharedCount, String> {
        match self
            .store
            .throttle_counters()
            .count(key, now, interval, tolerance)
            .await
        {
            Ok(Counted::Allowed { tat_micros }) => Ok(SharedCount::Allowed { tat: tat_micros }),
            Ok(Counted::Refused { tat_micros }) => Ok(SharedCount::Refused { tat: tat_micros }),
            Err(error) => Err(error.to_string()),
        }
    }
}

pub(crate) fn initial_rules(rules_file: Option<&Path>) -> anyhow::Result<RuleSet> {
    match rules_file {
        None => RuleSet::parse(gateway::SHIPPED_RULES, Format::Yaml)
            .context("the shipped gateway rules are invalid"),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the gateway rules {} (gateway.rules_file)",
                    path.display()
                )
            })?;
            RuleSet::parse(&text, Format::of_path(path)).with_context(|| {
                format!(
                    "the gateway rules {} are invalid (gateway.rules_file)",
                    path.display()
                )
            })
        }
    }
}

/// Reads the rules file again whenever its content changes. A file with errors keeps the rules
/// in force and logs why; so does a file that cannot be read (it may be mid-replacement).
pub(crate) async fn reload_rules(gateway: Gateway, path: PathBuf, shutdown: CancellationToken) {
    let mut seen = tokio::fs::read(&path).await.ok();
    let mut ticks = tokio::time::interval(RULES_POLL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Ok(content) = tokio::fs::read(&path).await else {
            continue;
        };
        if seen.as_ref() == Some(&content) {
            continue;
        }
        seen = Some(content.clone());
        let text = String::from_utf8_lossy(&content);
        match RuleSet::parse(&text, Format::of_path(&path)) {
            Ok(rules) => {
                let count = rules.rules.len();
                gateway.replace_rules(rules);
                tracing::info!(path = %path.display(), rules = count, "gateway rules reloaded");
            }
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    %error,
                    "the changed gateway rules are invalid; the rules in force stay"
                );
            }
        }
    }
}

/// Drops idle throttle counters and expired verified tokens now and then.
pub(crate) async fn upkeep(gateway: Gateway, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(UPKEEP);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => gateway.forget_idle(),
        }
    }
}
