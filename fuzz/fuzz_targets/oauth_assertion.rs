//! Client authentication with a signed JWT (`private_key_jwt`) as Warden's token endpoint runs
//! it: the client's registered JWK Set (`oauth::assertion::parse_key_set`, also run when an admin
//! registers a client), the `iss` read before verifying (`claimed_client_id`), and the check of
//! the assertion against the client's keys (`oauth::assertion::verify`).
//!
//! Input, first byte:
//! - even: the rest is text in two parts separated by a line `---`: a JWK Set, then an assertion.
//! - odd: the rest is claims (JSON), signed with the genuine key as an assertion would be (the
//!   fuzzer cannot sign, so this is how the checks after the signature are reached).
//!
//! Properties: nothing panics; an accepted assertion has `iss` = `sub` = the client id, an
//! accepted audience, a `jti` of 1 to 200 bytes and an expiry in the next five minutes, which is
//! what `expires_at` says; an assertion signed with the genuine key never passes for a client
//! that registered only the impostor key (same `kid`); and one that meets every check passes for
//! the client that registered the genuine key.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oauth::assertion;
use oauth::client::{Client, ClientKind};
use oauth::scope::Scopes;
use serde_json::{Value, json};
use tokens::jwt;
use warden_fuzz::{NOW, check};

const CLIENT_ID: &str = "wc_0123456789abcdef0123456789abcdef";
const AUDIENCES: &[&str] = &[
    "https://warden.example/oauth2/token",
    "https://warden.example",
];

fn client(jwks: String) -> Client {
    Client {
        client_id: CLIENT_ID.to_owned(),
        name: "fuzzed client".to_owned(),
        kind: ClientKind::Confidential,
        secret_hash: None,
        allowed_scopes: Scopes::default(),
        redirect_uris: Vec::new(),
        first_party: false,
        jwks: Some(jwks),
        created_at: NOW,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, text)) = warden_fuzz::mode_and_text(data) else {
        return;
    };
    if mode & 1 == 0 {
        let parts = warden_fuzz::parts(text);
        let jwks = parts[0];
        let token = parts.get(1).map_or("", |token| token.trim_end());
        let _ = assertion::parse_key_set(jwks);
        let _ = assertion::claimed_client_id(token);
        let verified = assertion::verify(token, &client(jwks.to_owned()), AUDIENCES, NOW);
        if let Ok(verified) = verified {
            let claims = unverified_claims(token).unwrap_or_default();
            check_accepted(&claims, &verified);
        }
        return;
    }

    let Ok(claims) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let keys = warden_fuzz::keys();
    let Ok(token) = jwt::sign_with(&keys.genuine_ring, NOW, "JWT", &claims) else {
        return;
    };
    let set = |keys: Vec<tokens::keys::Jwk>| json!({ "keys": keys }).to_string();
    let genuine = assertion::verify(
        &token,
        &client(set(vec![keys.genuine.jwk()])),
        AUDIENCES,
        NOW,
    );
    let impostor = assertion::verify(
        &token,
        &client(set(vec![keys.impostor.jwk()])),
        AUDIENCES,
        NOW,
    );
    check!(
        "assertion-wrong-key",
        impostor.is_err(),
        "an assertion signed with the genuine key passed with the impostor's: {claims}"
    );
    let _ = assertion::claimed_client_id(&token);
    match &genuine {
        Ok(verified) => check_accepted(&claims, verified),
        Err(error) => check!(
            "assertion-complete",
            !acceptable(&claims),
            "acceptable claims {claims} were refused: {error:?}"
        ),
    }
});

/// Whether `claims` meet every check `verify` makes after the signature.
fn acceptable(claims: &Value) -> bool {
    let now_seconds = NOW.unix_millis().div_euclid(1000);
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let audience_ok = match claims.get("aud") {
        Some(Value::String(one)) => AUDIENCES.contains(&one.as_str()),
        Some(Value::Array(many)) => {
            many.iter().all(Value::is_string)
                && many
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|one| AUDIENCES.contains(&one))
        }
        _ => false,
    };
    text("iss") == Some(CLIENT_ID)
        && text("sub") == Some(CLIENT_ID)
        && audience_ok
        && claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|exp| exp > now_seconds && exp <= now_seconds + 300)
        && text("jti").is_some_and(|jti| !jti.is_empty() && jti.len() <= 200)
}

fn check_accepted(claims: &Value, verified: &assertion::VerifiedAssertion) {
    check!(
        "assertion-accepted",
        acceptable(claims),
        "claims {claims} were accepted as {verified:?}"
    );
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    check!(
        "assertion-accepted",
        verified.expires_at.unix_millis() == exp * 1000
            && Some(verified.jti.as_str()) == claims.get("jti").and_then(Value::as_str),
        "claims {claims} were accepted as {verified:?}"
    );
}

/// The payload of a JWS, read without verifying.
fn unverified_claims(token: &str) -> Option<Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
