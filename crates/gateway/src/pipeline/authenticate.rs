//! Who is calling: the rule's authenticators in order, the first responsible one deciding
//! (`jwt` verified locally, `oauth2_introspection` asked of the authorization server,
//! `cookie_session`, `anonymous`, `noop`), and the memory of tokens found good.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use tokens::jwt::{self, AccessClaims, Expectations, TokenError};

use super::{Gateway, Refusal};
use crate::rules::{Authenticator, JwtRequirements, Rule};
use crate::{Credential, Session};

impl Gateway {
    pub(super) async fn authenticate(
        &self,
        rule: &Rule,
        headers: &HeaderMap,
    ) -> Result<Session, Refusal> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| model::authorization::credentials(value, "Bearer"));
        for authenticator in &rule.authenticators {
            match authenticator {
                Authenticator::Jwt(requirements) => {
                    if let Some(token) = bearer {
                        return self.verify_jwt(token, requirements).await;
                    }
                }
                Authenticator::Introspection {
                    requirements,
                    cache_ttl,
                } => {
                    if let Some(token) = bearer {
                        return self.introspect(token, requirements, *cache_ttl).await;
                    }
                }
                Authenticator::CookieSession => {
                    let login = self
                        .inner
                        .facts
                        .login_session(headers)
                        .await
                        .map_err(|error| Refusal::unavailable(&error))?;
                    if let Some((user_id, role, email)) = login {
                        let mut extra = serde_json::Map::new();
                        extra.insert("email".into(), email.into());
                        extra.insert("role".into(), role.as_str().into());
                        return Ok(Session {
                            subject: user_id.to_string(),
                            extra,
                            credential: Credential::Login { user_id, role },
                            ..Session::default()
                        });
                    }
                }
                Authenticator::Anonymous { subject } => {
                    if headers.get(header::AUTHORIZATION).is_none() {
                        return Ok(Session {
                            subject: subject.clone(),
                            anonymous: true,
                            ..Session::default()
                        });
                    }
                }
                Authenticator::Noop => {
                    return Ok(Session {
                        anonymous: true,
                        ..Session::default()
                    });
                }
            }
        }
        Err(Refusal::no_credentials())
    }

    async fn verify_jwt(
        &self,
        token: &str,
        requirements: &JwtRequirements,
    ) -> Result<Session, Refusal> {
        let facts = &self.inner.facts;
        let now = self.inner.clock.0.now();
        let ring = facts
            .signing_keys()
            .await
            .map_err(|error| Refusal::unavailable(&error))?;
        // A remembered token is used only while its key is still published; `admit` checks
        // time, audience and scopes on every use.
        let remembered = self.inner.verified.get(token).filter(|_| {
            jwt::key_id(token).is_some_and(|kid| ring.find_published(&kid, now).is_some())
        });
        let claims = match remembered {
            Some((claims, _)) => claims,
            None => {
                let mut outcome = Err(TokenError::WrongAudience);
                for audience in self.audiences(requirements) {
                    let expected = Expectations {
                        issuer: facts.issuer(),
                        audience,
                    };
                    outcome = jwt::verify(token, &ring, now, &expected);
                    if !matches!(outcome, Err(TokenError::WrongAudience)) {
                        break;
                    }
                }
                let claims =
                    Arc::new(outcome.map_err(|error| Refusal::invalid_token(error.to_string()))?);
                self.inner.verified.put(token, claims.clone(), now);
                claims
            }
        };
        self.admit(&claims, requirements, now)
    }

    /// Asks Warden's authorization server whether the token is active, remembering a yes for
    /// `cache_ttl`; `admit` checks time, audience and scopes on every use, remembered or not.
    async fn introspect(
        &self,
        token: &str,
        requirements: &JwtRequirements,
        cache_ttl: Duration,
    ) -> Result<Session, Refusal> {
        let now = self.inner.clock.0.now();
        let remembered = self
            .inner
            .introspected
            .get(token)
            .filter(|(_, at)| now < at.plus(cache_ttl));
        let claims = match remembered {
            Some((claims, _)) => claims,
            None => {
                let claims = self
                    .inner
                    .facts
                    .introspect(token)
                    .await
                    .map_err(|error| Refusal::unavailable(&error))?
                    .ok_or_else(|| Refusal::invalid_token("the token is not active"))?;
                let claims = Arc::new(claims);
                if !cache_ttl.is_zero() {
                    self.inner.introspected.put(token, claims.clone(), now);
                }
                claims
            }
        };
        self.admit(&claims, requirements, now)
    }

    /// The audiences a rule accepts; Warden's API when it names none.
    fn audiences<'a>(&'a self, requirements: &'a JwtRequirements) -> Vec<&'a str> {
        if requirements.target_audience.is_empty() {
            vec![self.inner.facts.audience()]
        } else {
            requirements
                .target_audience
                .iter()
                .map(String::as_str)
                .collect()
        }
    }

    /// The session of valid claims that meet the rule's audience and scopes.
    fn admit(
        &self,
        claims: &Arc<AccessClaims>,
        requirements: &JwtRequirements,
        now: model::Timestamp,
    ) -> Result<Session, Refusal> {
        if claims.exp <= now.unix_millis().div_euclid(1000) {
            return Err(Refusal::invalid_token(TokenError::Expired.to_string()));
        }
        let issuer = self.inner.facts.issuer();
        let fits = self
            .audiences(requirements)
            .into_iter()
            .any(|audience| Expectations { issuer, audience }.accepts_audience(&claims.aud));
        if !fits {
            return Err(Refusal::invalid_token(
                TokenError::WrongAudience.to_string(),
            ));
        }
        let scopes: Vec<String> = claims.scope.split_whitespace().map(str::to_owned).collect();
        if let Some(missing) = requirements
            .required_scope
            .iter()
            .find(|scope| !scopes.contains(scope))
        {
            return Err(Refusal::insufficient_scope(missing));
        }
        let extra = match serde_json::to_value(claims.as_ref()) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        Ok(Session {
            subject: claims.sub.clone(),
            extra,
            client_id: Some(claims.client_id.clone()),
            scopes,
            anonymous: false,
            credential: Credential::AccessToken(Box::new(claims.as_ref().clone())),
        })
    }
}

/// Access tokens found good, by the SHA-256 of the token, with when they were found good: the
/// verified ones (so a busy caller's signature is checked once) and the introspected ones.
/// Callers decide how long an entry may be trusted. Bounded: when full, it starts afresh.
#[derive(Debug, Default)]
pub(super) struct TokenMemory {
    entries: Mutex<HashMap<[u8; 32], Remembered>>,
}

/// Claims found good, and when.
type Remembered = (Arc<AccessClaims>, model::Timestamp);

const TOKEN_MEMORY_LIMIT: usize = 50_000;

impl TokenMemory {
    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    fn get(&self, token: &str) -> Option<Remembered> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&Self::key(token))
            .cloned()
    }

    fn put(&self, token: &str, claims: Arc<AccessClaims>, now: model::Timestamp) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= TOKEN_MEMORY_LIMIT {
            entries.clear();
        }
        entries.insert(Self::key(token), (claims, now));
    }

    pub(super) fn forget_expired(&self, now: model::Timestamp) {
        let now_seconds = now.unix_millis().div_euclid(1000);
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, (claims, _)| claims.exp > now_seconds);
    }
}
