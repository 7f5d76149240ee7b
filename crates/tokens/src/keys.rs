//! Signing keys (ECDSA P-256, for ES256) and when each one signs and is published.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use model::Timestamp;
use serde::Serialize;

/// One signing key and its place in the timeline.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    /// PKCS#8 PEM. Never shown in `Debug` output.
    pub private_pem: String,
    /// The public point's coordinates, base64url, as a JWK carries them.
    pub public_x: String,
    pub public_y: String,
    pub created_at: Timestamp,
    /// From this time on the key may sign; until then it is only published.
    pub usable_from: Timestamp,
    /// Set when the key was withdrawn (compromise, end of life): unpublished at once.
    pub retired_at: Option<Timestamp>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("usable_from", &self.usable_from)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a signing key: {0}")]
    Generate(String),
}

impl SigningKey {
    /// A new P-256 key that starts signing at `usable_from`.
    pub fn generate(now: Timestamp, usable_from: Timestamp) -> Result<Self, KeyError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        // The uncompressed point: 0x04, then 32 bytes of x and 32 of y.
        let point = pair.public_key_raw();
        if point.len() != 65 || point[0] != 4 {
            return Err(KeyError::Generate("unexpected public key encoding".into()));
        }
        Ok(Self {
            kid: uuid::Uuid::new_v4().simple().to_string(),
            private_pem: pair.serialize_pem(),
            public_x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            public_y: URL_SAFE_NO_PAD.encode(&point[33..65]),
            created_at: now,
            usable_from,
            retired_at: None,
        })
    }

    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "EC",
            crv: "P-256",
            alg: "ES256",
            key_use: "sig",
            kid: self.kid.clone(),
            x: self.public_x.clone(),
            y: self.public_y.clone(),
        }
    }
}

/// A public key as RFC 7517 writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub key_use: &'static str,
    pub kid: String,
    pub x: String,
    pub y: String,
}

/// `{"keys": [...]}`, what the JWKS endpoint serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// All keys, and the rules deciding which one signs and which are published. The keys are
/// parsed once, when the ring is made, not per token.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
    /// How long a superseded key stays published: at least the longest token lifetime.
    retention: Duration,
    parsed: HashMap<String, ParsedKey>,
}

#[derive(Clone)]
pub(crate) struct ParsedKey {
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring of `keys`. A key whose stored material does not parse is left out of signing and
    /// verification (and logged by the caller through [`KeyRing::unusable`]).
    pub fn new(mut keys: Vec<SigningKey>, retention: Duration) -> Self {
        keys.sort_by_key(|key| (key.usable_from, key.created_at));
        let parsed = keys
            .iter()
            .filter_map(|key| {
                let encoding = EncodingKey::from_ec_pem(key.private_pem.as_bytes()).ok()?;
                let decoding =
                    DecodingKey::from_ec_components(&key.public_x, &key.public_y).ok()?;
                Some((key.kid.clone(), ParsedKey { encoding, decoding }))
            })
            .collect();
        Self {
            keys,
            retention,
            parsed,
        }
    }

    /// Kids of keys whose stored material could not be parsed.
    pub fn unusable(&self) -> Vec<&str> {
        self.keys
            .iter()
            .filter(|key| !self.parsed.contains_key(&key.kid))
            .map(|key| key.kid.as_str())
            .collect()
    }

    pub(crate) fn parsed(&self, kid: &str) -> Option<&ParsedKey> {
        self.parsed.get(kid)
    }

    /// The key that signs at `now`: the newest one already usable, not retired, and parseable.
    pub fn signer(&self, now: Timestamp) -> Option<&SigningKey> {
        self.keys.iter().rfind(|key| {
            key.retired_at.is_none() && key.usable_from <= now && self.parsed.contains_key(&key.kid)
        })
    }

    /// Keys whose signatures are accepted at `now`: not retired, and not superseded for longer
    /// than the retention. Keys not yet usable are published already, so that verifiers that cache
    /// the JWKS know them before the first token they sign.
    pub fn published(&self, now: Timestamp) -> Vec<&SigningKey> {
        let live: Vec<&SigningKey> = self
            .keys
            .iter()
            .filter(|key| key.retired_at.is_none())
            .collect();
        live.iter()
            .enumerate()
            .filter(|(index, _)| {
                // When the next usable key took over signing, this one was superseded.
                let superseded_at = live
                    .get(index + 1)
                    .map(|next| next.usable_from)
                    .filter(|takeover| *takeover <= now);
                superseded_at.is_none_or(|at| now < at.plus(self.retention))
            })
            .map(|(_, key)| *key)
            .collect()
    }

    pub fn jwks(&self, now: Timestamp) -> Jwks {
        Jwks {
            keys: self
                .published(now)
                .into_iter()
                .map(SigningKey::jwk)
                .collect(),
        }
    }

    pub fn find_published(&self, kid: &str, now: Timestamp) -> Option<&SigningKey> {
        self.published(now).into_iter().find(|key| key.kid == kid)
    }

    pub fn all(&self) -> &[SigningKey] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(seconds * 1000)
    }

    fn kids(keys: Vec<&SigningKey>) -> Vec<String> {
        keys.into_iter().map(|key| key.kid.clone()).collect()
    }

    #[test]
    fn a_new_key_is_published_before_it_signs_and_the_old_one_stays_until_retention_ends() {
        let first = SigningKey::generate(at(0), at(0)).unwrap();
        let second = SigningKey::generate(at(100), at(160)).unwrap();
        let ring = KeyRing::new(
            vec![second.clone(), first.clone()],
            Duration::from_secs(600),
        );
        let both = vec![first.kid.clone(), second.kid.clone()];

        assert_eq!(ring.signer(at(150)).unwrap().kid, first.kid);
        assert_eq!(kids(ring.published(at(150))), both, "published before use");
        assert_eq!(ring.signer(at(160)).unwrap().kid, second.kid);
        assert_eq!(
            kids(ring.published(at(759))),
            both,
            "kept while its tokens may live"
        );
        assert_eq!(kids(ring.published(at(760))), vec![second.kid.clone()]);
        assert!(ring.find_published(&first.kid, at(760)).is_none());
    }

    #[test]
    fn a_retired_key_is_unpublished_at_once_and_never_signs() {
        let first = SigningKey::generate(at(0), at(0)).unwrap();
        let mut second = SigningKey::generate(at(0), at(10)).unwrap();
        second.retired_at = Some(at(20));
        let ring = KeyRing::new(
            vec![first.clone(), second.clone()],
            Duration::from_secs(600),
        );
        assert_eq!(ring.signer(at(30)).unwrap().kid, first.kid);
        assert_eq!(kids(ring.published(at(30))), vec![first.kid.clone()]);
        assert!(
            KeyRing::new(vec![second], Duration::ZERO)
                .signer(at(30))
                .is_none()
        );
    }

    #[test]
    fn jwks_entries_describe_p256_keys_without_private_parts() {
        let key = SigningKey::generate(at(0), at(0)).unwrap();
        let json =
            serde_json::to_value(KeyRing::new(vec![key.clone()], Duration::ZERO).jwks(at(0)))
                .unwrap();
        let jwk = &json["keys"][0];
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], key.kid.as_str());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert!(jwk.get("d").is_none());
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
