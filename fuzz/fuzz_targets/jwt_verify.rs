//! JSON Web Tokens as Warden verifies them: access tokens presented to the API, the gateway and
//! the broker (`tokens::jwt::verify` with a fixed key ring, `tokens::jwt::key_id`), and signed
//! firmware manifests (`firmware::Manifest::verify`).
//!
//! Input, first byte:
//! - even: the rest is a token, verified as it is.
//! - odd: the rest is lines: a `typ`, then claims (JSON), then optionally `OFFSET,XOR`. The
//!   claims are signed with the genuine key under that `typ` (what an attacker cannot do, so
//!   that the checks after the signature are reached), and the token is verified; with the third
//!   line, the byte at OFFSET of the signed token is XORed and the changed token verified too.
//!
//! Properties: verifying never panics; no token verifies with the impostor key (same `kid`,
//! other key material); an accepted access token has type `at+jwt`, has not expired, was not
//! issued in the future, and names the expected issuer and an accepted audience; a token signed
//! by the genuine key that meets all of that is accepted (the checks refuse nothing else); a
//! changed token that still verifies carries the same claims; and the same for manifests.

#![no_main]

use firmware::{MANIFEST_TYPE, Manifest, PublicKey};
use libfuzzer_sys::fuzz_target;
use tokens::jwt::{self, ACCESS_TOKEN_TYPE, AccessClaims, Expectations};
use tokens::keys::SigningKey;
use warden_fuzz::{NOW, check};

const EXPECTED: Expectations<'static> = Expectations {
    issuer: "https://warden.example",
    audience: "https://warden.example/api",
};

fn public(key: &SigningKey) -> PublicKey {
    PublicKey {
        kid: key.kid.clone(),
        x: key.public_x.clone(),
        y: key.public_y.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, text)) = warden_fuzz::mode_and_text(data) else {
        return;
    };
    if mode & 1 == 0 {
        verify_as_given(text);
        return;
    }
    let mut lines = text.splitn(3, '\n');
    let (typ, claims_text, mutation) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
        lines.next(),
    );
    let Ok(claims) = serde_json::from_str::<serde_json::Value>(claims_text) else {
        return;
    };
    let keys = warden_fuzz::keys();
    let Ok(token) = jwt::sign_with(&keys.genuine_ring, NOW, typ, &claims) else {
        check!("jwt-sign", false, "the genuine ring cannot sign {claims}");
        return;
    };
    let verified = verify_as_given(&token);

    // Everything that meets the checks is accepted.
    if typ == ACCESS_TOKEN_TYPE
        && let Ok(expected) = serde_json::from_value::<AccessClaims>(claims.clone())
    {
        let now_seconds = NOW.unix_millis().div_euclid(1000);
        let acceptable = expected.exp > now_seconds
            && expected.iat <= now_seconds + 60
            && expected.iss == EXPECTED.issuer
            && EXPECTED.accepts_audience(&expected.aud);
        check!(
            "jwt-complete",
            !acceptable || verified.as_ref() == Some(&expected),
            "acceptable claims {claims} were verified as {verified:?}"
        );
    }
    if typ == MANIFEST_TYPE
        && let Ok(expected) = serde_json::from_value::<Manifest>(claims.clone())
    {
        let manifest = Manifest::verify(&token, &[public(&keys.genuine)]);
        check!(
            "manifest-complete",
            manifest.as_ref() == Ok(&expected),
            "a manifest signed with the genuine key was verified as {manifest:?}"
        );
    }

    // A changed token that still verifies says what the original said.
    if let Some((offset, xor)) = mutation.and_then(|line| line.trim().split_once(','))
        && let (Ok(offset), Ok(xor)) = (offset.parse::<usize>(), xor.parse::<u8>())
        && xor != 0
    {
        let mut changed = token.clone().into_bytes();
        let offset = offset % changed.len().max(1);
        if let Some(byte) = changed.get_mut(offset) {
            *byte ^= xor;
        }
        if let Ok(changed) = String::from_utf8(changed) {
            let accepted = verify_as_given(&changed);
            check!(
                "jwt-integrity",
                accepted.is_none() || accepted == verified,
                "the token changed to {changed:?} verifies as {accepted:?}, the original as {verified:?}"
            );
            let manifest = Manifest::verify(&changed, &[public(&keys.genuine)]).ok();
            let original = Manifest::verify(&token, &[public(&keys.genuine)]).ok();
            check!(
                "jwt-integrity",
                manifest.is_none() || manifest == original,
                "the manifest changed to {changed:?} verifies as {manifest:?}"
            );
        }
    }
});

/// Verifies `token` as an access token and as a manifest with the genuine and the impostor key;
/// the access token's claims when the genuine key accepts it.
fn verify_as_given(token: &str) -> Option<AccessClaims> {
    let keys = warden_fuzz::keys();
    let _ = jwt::key_id(token);
    let impostor = jwt::verify(token, &keys.impostor_ring, NOW, &EXPECTED);
    let genuine = jwt::verify(token, &keys.genuine_ring, NOW, &EXPECTED);
    check!(
        "jwt-wrong-key",
        !(impostor.is_ok() && genuine.is_ok()),
        "{token:?} verifies with two different keys of the same kid"
    );
    if let Ok(claims) = &genuine {
        let now_seconds = NOW.unix_millis().div_euclid(1000);
        check!(
            "jwt-accepted",
            claims.exp > now_seconds
                && claims.iat <= now_seconds + 60
                && claims.iss == EXPECTED.issuer
                && EXPECTED.accepts_audience(&claims.aud),
            "accepted claims {claims:?}"
        );
        check!(
            "jwt-accepted",
            jwsheader_typ(token).as_deref() == Some(ACCESS_TOKEN_TYPE),
            "an accepted token of type {:?}",
            jwsheader_typ(token)
        );
    }
    let manifest_genuine = Manifest::verify(token, &[public(&keys.genuine)]);
    let manifest_impostor = Manifest::verify(token, &[public(&keys.impostor)]);
    check!(
        "manifest-wrong-key",
        !(manifest_genuine.is_ok() && manifest_impostor.is_ok()),
        "{token:?} verifies as a manifest with two different keys of the same kid"
    );
    genuine.ok()
}

/// The `typ` of a JWS header, read without verifying.
fn jwsheader_typ(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    header.get("typ")?.as_str().map(str::to_owned)
}
