//! Access tokens as JWTs in the RFC 9068 profile, signed with ES256.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, Header, Validation};
use model::Timestamp;
use serde::{Deserialize, Serialize};

use crate::keys::KeyRing;

/// The `typ` header RFC 9068 gives access tokens, so they cannot pass for ID tokens.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Clock difference tolerated between issuer and verifier for `iat`.
const ALLOWED_SKEW_SECONDS: i64 = 60;

/// The claims of an access token (RFC 9068 section 2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user, or for client credentials the client itself.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The authorization grant the token was issued under, so that revoking the grant revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// Who acts on the subject's behalf, after a token exchange (RFC 8693 section 4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// The `act` claim: the party acting for the subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
}

/// What a verifier requires besides a valid signature.
#[derive(Clone, Debug)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    /// The audience, or a path below it: `https://w.example/api` also accepts tokens for
    /// `https://w.example/api/devices` (a part of the API, after a token exchange).
    pub audience: &'a str,
}

impl Expectations<'_> {
    pub fn accepts_audience(&self, audience: &str) -> bool {
        audience == self.audience
            || audience
                .strip_prefix(self.audience)
                .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token names no key, or a key that is not published (kid {kid:?})")]
    UnknownKey { kid: Option<String> },
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is not an access token (typ must be at+jwt)")]
    WrongType,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("cannot sign the token: {0}")]
    Signing(String),
    #[error("no signing key is usable now")]
    NoSigningKey,
}

/// The claims of an OpenID Connect ID token (Core 1.0 section 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    /// The client the token is for.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub at_hash: String,
    pub azp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Signs access token `claims` with the key of `ring` that signs at `now`.
pub fn issue(ring: &KeyRing, now: Timestamp, claims: &AccessClaims) -> Result<String, TokenError> {
    sign_with(ring, now, ACCESS_TOKEN_TYPE, claims)
}

/// Signs ID token `claims` with the key of `ring` that signs at `now`.
pub fn issue_id_token(
    ring: &KeyRing,
    now: Timestamp,
    claims: &IdClaims,
) -> Result<String, TokenError> {
    sign_with(ring, now, "JWT", claims)
}

/// Signs `claims` as a compact JWS (ES256) of type `typ` with the key of `ring` that signs at
/// `now`; the key's id is in the header.
pub fn sign_with(
    ring: &KeyRing,
    now: Timestamp,
    typ: &str,
    claims: &impl Serialize,
) -> Result<String, TokenError> {
    let key = ring.signer(now).ok_or(TokenError::NoSigningKey)?;
    let parsed = ring.parsed(&key.kid).ok_or(TokenError::NoSigningKey)?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &parsed.encoding)
        .map_err(|e| TokenError::Signing(e.to_string()))
}

/// Signs `claims` the gateway asserts to a service behind it (its `id_token` mutator). The type
/// is `JWT`, not `at+jwt`, so Warden's own API never takes such an assertion as an access token.
pub fn issue_assertion(
    ring: &KeyRing,
    now: Timestamp,
    claims: &serde_json::Value,
) -> Result<String, TokenError> {
    sign_with(ring, now, "JWT", claims)
}

/// `at_hash` for an ES256 ID token: the left half of the access token's SHA-256, base64url.
pub fn at_hash(access_token: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(access_token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// The `kid` a JWT's header names, read without verifying anything (to look up a cache entry).
pub fn key_id(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Checks signature, type, time (by `now`), issuer and audience.
pub fn verify(
    token: &str,
    ring: &KeyRing,
    now: Timestamp,
    expected: &Expectations<'_>,
) -> Result<AccessClaims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::ES256 {
        return Err(TokenError::BadSignature);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| ring.find_published(kid, now))
        .ok_or(TokenError::UnknownKey {
            kid: header.kid.clone(),
        })?;
    let decoding = &ring
        .parsed(&key.kid)
        .ok_or(TokenError::BadSignature)?
        .decoding;
    let mut validation = Validation::new(Algorithm::ES256);
    // Time and audience are judged below against Warden's clock, not the system's.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let data =
        jsonwebtoken::decode::<AccessClaims>(token, decoding, &validation).map_err(|error| {
            match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            }
        })?;
    if data.header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
        return Err(TokenError::WrongType);
    }
    let claims = data.claims;
    let now_seconds = now.unix_millis().div_euclid(1000);
    if claims.exp <= now_seconds {
        return Err(TokenError::Expired);
    }
    if claims.iat > now_seconds + ALLOWED_SKEW_SECONDS {
        return Err(TokenError::IssuedInFuture);
    }
    if claims.iss != expected.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if !expected.accepts_audience(&claims.aud) {
        return Err(TokenError::WrongAudience);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::keys::SigningKey;

    const EXPECTED: Expectations<'static> = Expectations {
        issuer: "https://warden.example",
        audience: "warden-api",
    };

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(seconds * 1000)
    }

    fn claims(iat: i64, exp: i64) -> AccessClaims {
        AccessClaims {
            iss: EXPECTED.issuer.into(),
            sub: "user-1".into(),
            aud: EXPECTED.audience.into(),
            exp,
            iat,
            jti: "jti-1".into(),
            client_id: "console".into(),
            scope: "openid devices:read".into(),
            gid: None,
            act: None,
        }
    }

    /// Signs with exactly `key`, whatever its timeline.
    fn sign_with(key: &SigningKey, claims: &AccessClaims) -> Result<String, TokenError> {
        issue(
            &KeyRing::new(vec![key.clone()], Duration::ZERO),
            Timestamp::from_unix_millis(i64::MAX / 2),
            claims,
        )
    }

    fn ring(keys: &[&SigningKey]) -> KeyRing {
        KeyRing::new(
            keys.iter().map(|k| (*k).clone()).collect(),
            Duration::from_secs(3600),
        )
    }

    fn check(token: &str, ring: &KeyRing, now: i64, expected: Result<(), TokenError>) {
        assert_eq!(verify(token, ring, at(now), &EXPECTED).map(drop), expected);
    }

    #[test]
    fn tokens_verify_only_when_everything_holds() {
        let key = SigningKey::generate(at(0), at(0)).unwrap();
        let other = SigningKey::generate(at(0), at(0)).unwrap();
        let keys = ring(&[&key]);
        let token = sign_with(&key, &claims(1000, 1600)).unwrap();

        check(&token, &keys, 1000, Ok(()));
        check(&token, &keys, 1599, Ok(()));
        check(&token, &keys, 1600, Err(TokenError::Expired));
        check(&token, &keys, 900, Err(TokenError::IssuedInFuture));
        check(
            &token,
            &ring(&[&other]),
            1000,
            Err(TokenError::UnknownKey {
                kid: Some(key.kid.clone()),
            }),
        );
        check("not.a.jwt", &keys, 1000, Err(TokenError::Malformed));

        let mut wrong_issuer = claims(1000, 1600);
        wrong_issuer.iss = "https://evil.example".into();
        check(
            &sign_with(&key, &wrong_issuer).unwrap(),
            &keys,
            1000,
            Err(TokenError::WrongIssuer),
        );
        let mut part = claims(1000, 1600);
        part.aud = format!("{}/devices", EXPECTED.audience);
        check(&sign_with(&key, &part).unwrap(), &keys, 1000, Ok(()));
        let mut lookalike = claims(1000, 1600);
        lookalike.aud = format!("{}-evil", EXPECTED.audience);
        check(
            &sign_with(&key, &lookalike).unwrap(),
            &keys,
            1000,
            Err(TokenError::WrongAudience),
        );
        let mut wrong_audience = claims(1000, 1600);
        wrong_audience.aud = "other-api".into();
        check(
            &sign_with(&key, &wrong_audience).unwrap(),
            &keys,
            1000,
            Err(TokenError::WrongAudience),
        );
    }

    #[test]
    fn a_tampered_payload_or_a_foreign_signature_is_refused() {
        let key = SigningKey::generate(at(0), at(0)).unwrap();
        let token = sign_with(&key, &claims(1000, 1600)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = "admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        check(
            &tampered,
            &ring(&[&key]),
            1000,
            Err(TokenError::BadSignature),
        );

        // Another key signing under this key's kid.
        let mut impostor = SigningKey::generate(at(0), at(0)).unwrap();
        impostor.kid = key.kid.clone();
        let forged = sign_with(&impostor, &claims(1000, 1600)).unwrap();
        check(&forged, &ring(&[&key]), 1000, Err(TokenError::BadSignature));
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        let expected = URL_SAFE_NO_PAD.encode(hex_bytes("ba7816bf8f01cfea414140de5dae2223"));
        assert_eq!(at_hash("abc"), expected);
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_header_names_the_key_and_the_access_token_type() {
        let key = SigningKey::generate(at(0), at(0)).unwrap();
        let header = jsonwebtoken::decode_header(&sign_with(&key, &claims(1, 2)).unwrap()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::ES256);
    }
}
