//! Client authentication with a signed JWT (`private_key_jwt`, RFC 7523 section 2.2 and OpenID
//! Connect Core section 9): the client signs a short-lived assertion with its private key; Warden
//! checks it against the public keys the client registered.

use std::collections::HashSet;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use model::Timestamp;
use serde::Deserialize;

use crate::client::Client;
use crate::error::{ErrorCode, OAuthError};

/// The only `client_assertion_type` there is.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An assertion may not claim to be valid for longer than this: it is made for one request.
const MAX_LIFETIME_SECONDS: i64 = 300;

/// A checked assertion: its `jti` (to refuse a replay) and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub expires_at: Timestamp,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    jti: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &[&str]) -> bool {
        match self {
            Audience::One(one) => wanted.contains(&one.as_str()),
            Audience::Many(many) => many.iter().any(|one| wanted.contains(&one.as_str())),
        }
    }
}

/// Parses a client's registered JWK Set; at least one signing key of a supported kind.
pub fn parse_key_set(text: &str) -> Result<JwkSet, String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|error| format!("not a JWK Set: {error}"))?;
    if set.keys.is_empty() {
        return Err("the key set has no keys".into());
    }
    for key in &set.keys {
        DecodingKey::from_jwk(key).map_err(|error| format!("unusable key: {error}"))?;
    }
    Ok(set)
}

/// The `iss` of an assertion, read before its signature is checked, to find the client when the
/// request does not name it. Nothing else is trusted from an unverified token.
pub fn claimed_client_id(assertion: &str) -> Option<String> {
    use base64::Engine;
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// Checks an assertion made by `client` for this token endpoint: signature by one of the client's
/// keys, `iss` = `sub` = client id, `aud` the token endpoint or the issuer, not expired and not
/// valid for longer than five minutes.
pub fn verify(
    assertion: &str,
    client: &Client,
    audiences: &[&str],
    now: Timestamp,
) -> Result<VerifiedAssertion, OAuthError> {
    let refuse = |why: &str| {
        OAuthError::new(
            ErrorCode::InvalidClient,
            format!("client assertion refused: {why}"),
        )
    };
    let keys = client
        .jwks
        .as_deref()
        .ok_or_else(|| refuse("the client has no registered keys"))
        .and_then(|text| parse_key_set(text).map_err(|why| refuse(&why)))?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| refuse("not a JWT"))?;
    let candidates: Vec<_> = match header.kid.as_deref() {
        Some(kid) => keys
            .keys
            .iter()
            .filter(|key| key.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => keys.keys.iter().collect(),
    };
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let claims = candidates
        .into_iter()
        .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
        .find_map(|key| jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation).ok())
        .map(|data| data.claims)
        .ok_or_else(|| refuse("no registered key verifies the signature"))?;
    if claims.iss != client.client_id || claims.sub != client.client_id {
        return Err(refuse("iss and sub must be the client id"));
    }
    if !claims.aud.contains(audiences) {
        return Err(refuse("aud must be the token endpoint"));
    }
    let now_seconds = now.unix_millis().div_euclid(1000);
    if claims.exp <= now_seconds {
        return Err(refuse("expired"));
    }
    if claims.exp > now_seconds + MAX_LIFETIME_SECONDS {
        return Err(refuse("valid for too long"));
    }
    if claims.jti.is_empty() || claims.jti.len() > 200 {
        return Err(refuse("jti is required"));
    }
    Ok(VerifiedAssertion {
        jti: claims.jti,
        expires_at: Timestamp::from_unix_millis(claims.exp.saturating_mul(1000)),
    })
}
