//! The signed release manifest: a compact JWS (ES256) whose payload names the release, and the
//! check a device runs on it.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use model::Timestamp;
use serde::{Deserialize, Serialize};
use tokens::keys::KeyRing;

/// The JWS `typ` of a manifest, so that no other token Warden signs passes as one.
pub const MANIFEST_TYPE: &str = "warden-firmware+jwt";

/// What a release promises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The release's id.
    pub release: String,
    pub model: String,
    pub version: String,
    /// Bytes in the file.
    pub size: u64,
    /// The file's SHA-256, lowercase hex.
    pub sha256: String,
    /// Where a device fetches the file: a path on Warden's device listener.
    pub url: String,
    /// When the manifest was signed (seconds since the epoch).
    pub iat: i64,
}

/// A firmware-signing public key as a device holds it: P-256 coordinates, base64url (a JWK's
/// `x` and `y`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub kid: String,
    pub x: String,
    pub y: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the manifest is not a signed firmware manifest")]
    Malformed,
    #[error("the manifest is signed by key {0:?}, which is not a firmware key this device trusts")]
    UnknownKey(Option<String>),
    #[error("the manifest's signature does not verify")]
    BadSignature,
    #[error("no firmware-signing key can sign now")]
    NoSigningKey,
}

/// Signs `manifest` with the firmware key of `ring` that signs at `now`.
pub fn sign_manifest(
    ring: &KeyRing,
    now: Timestamp,
    manifest: &Manifest,
) -> Result<String, ManifestError> {
    tokens::jwt::sign_with(ring, now, MANIFEST_TYPE, manifest)
        .map_err(|_| ManifestError::NoSigningKey)
}

impl Manifest {
    /// The manifest `jws` carries, when one of `keys` signed it as a manifest. Time is not
    /// checked: a release stays valid until a newer one replaces it.
    pub fn verify(jws: &str, keys: &[PublicKey]) -> Result<Self, ManifestError> {
        let header = jsonwebtoken::decode_header(jws).map_err(|_| ManifestError::Malformed)?;
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(MANIFEST_TYPE) {
            return Err(ManifestError::Malformed);
        }
        let key = keys
            .iter()
            .find(|key| Some(&key.kid) == header.kid.as_ref())
            .ok_or_else(|| ManifestError::UnknownKey(header.kid.clone()))?;
        let decoding = DecodingKey::from_ec_components(&key.x, &key.y)
            .map_err(|_| ManifestError::UnknownKey(header.kid.clone()))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        jsonwebtoken::decode::<Manifest>(jws, &decoding, &validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => ManifestError::BadSignature,
                _ => ManifestError::Malformed,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokens::keys::SigningKey;

    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            release: "fw_1".into(),
            model: "washer-w500".into(),
            version: "1.2.0".into(),
            size: 1024,
            sha256: "ab".repeat(32),
            url: "/device/firmware/fw_1".into(),
            iat: 1,
        }
    }

    fn public(key: &SigningKey) -> PublicKey {
        PublicKey {
            kid: key.kid.clone(),
            x: key.public_x.clone(),
            y: key.public_y.clone(),
        }
    }

    #[test]
    fn a_signed_manifest_verifies_with_its_key_only() {
        let now = Timestamp::from_unix_millis(1_000);
        let key = SigningKey::generate(now, now).unwrap();
        let other = SigningKey::generate(now, now).unwrap();
        let ring = KeyRing::new(vec![key.clone()], Duration::from_secs(60));
        let jws = sign_manifest(&ring, now, &manifest()).unwrap();
        assert_eq!(Manifest::verify(&jws, &[public(&key)]), Ok(manifest()));
        assert!(matches!(
            Manifest::verify(&jws, &[public(&other)]),
            Err(ManifestError::UnknownKey(_))
        ));
        // Another key claiming the same id does not verify it.
        let impostor = PublicKey {
            kid: key.kid.clone(),
            ..public(&other)
        };
        assert_eq!(
            Manifest::verify(&jws, &[impostor]),
            Err(ManifestError::BadSignature)
        );
        // A payload changed after signing does not verify.
        let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
        let mut changed = manifest();
        changed.sha256 = "cd".repeat(32);
        use base64::Engine;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&changed).unwrap());
        assert_eq!(
            Manifest::verify(&parts.join("."), &[public(&key)]),
            Err(ManifestError::BadSignature)
        );
        assert_eq!(
            Manifest::verify("garbage", &[]),
            Err(ManifestError::Malformed)
        );
    }

    #[test]
    fn another_token_type_is_not_a_manifest() {
        let now = Timestamp::from_unix_millis(1_000);
        let key = SigningKey::generate(now, now).unwrap();
        let ring = KeyRing::new(vec![key.clone()], Duration::from_secs(60));
        let token = tokens::jwt::sign_with(&ring, now, "JWT", &manifest()).unwrap();
        assert_eq!(
            Manifest::verify(&token, &[public(&key)]),
            Err(ManifestError::Malformed)
        );
    }
}
