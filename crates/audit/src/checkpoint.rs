//! Signed checkpoints: at an interval the journal's head is signed with the audit key, an ECDSA
//! P-256 key kept sealed under the key-encryption key. A checkpoint closes a segment (the entries
//! since the previous one); retention removes whole segments and keeps their checkpoints, so what
//! remains still verifies from the last removed one.

use model::Timestamp;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use sha2::{Digest as _, Sha256};

use crate::Digest;

/// One signed checkpoint: the segment `first_seq..=last_seq` ends with the hash `last_hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub number: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: Digest,
    pub at: Timestamp,
    pub key_id: String,
    pub signature: Vec<u8>,
    /// When retention removed the segment's entries; the checkpoint itself stays.
    pub pruned_at: Option<Timestamp>,
}

impl Checkpoint {
    /// The bytes the signature covers: every field but the signature and the pruning mark.
    fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "warden-audit-checkpoint-v1\n{}\n{}\n{}\n{}\n{}\n{}",
            self.number,
            self.first_seq,
            self.last_seq,
            self.last_hash,
            self.at.unix_millis(),
            self.key_id
        )
        .into_bytes()
    }

    /// Whether `public_key` (an uncompressed P-256 point) signed this checkpoint.
    pub fn is_signed_by(&self, public_key: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key)
            .verify(&self.signed_bytes(), &self.signature)
            .is_ok()
    }
}

/// The key that signs checkpoints.
pub struct CheckpointKey {
    id: String,
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the audit key is not a P-256 private key in PKCS#8, or no key could be made")]
pub struct BadKey;

impl CheckpointKey {
    /// A new key and its PKCS#8 bytes, which the caller seals before storing. Fails only when
    /// the system's randomness does.
    pub fn generate() -> Result<(Self, Vec<u8>), BadKey> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| BadKey)?;
        let pkcs8 = pkcs8.as_ref().to_vec();
        Ok((Self::from_pkcs8(&pkcs8)?, pkcs8))
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, BadKey> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| BadKey)?;
        let id = key_id(pair.public_key().as_ref());
        Ok(Self { id, pair })
    }

    /// Names the key: the first 8 bytes of the SHA-256 of its public key, in hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// A signed checkpoint for the segment `first_seq..=last_seq` ending with `last_hash`.
    pub fn checkpoint(
        &self,
        number: i64,
        first_seq: i64,
        last_seq: i64,
        last_hash: Digest,
        at: Timestamp,
    ) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            number,
            first_seq,
            last_seq,
            last_hash,
            at,
            key_id: self.id.clone(),
            signature: Vec::new(),
            pruned_at: None,
        };
        checkpoint.signature = self
            .pair
            .sign(&SystemRandom::new(), &checkpoint.signed_bytes())
            .map(|signature| signature.as_ref().to_vec())
            .unwrap_or_default();
        checkpoint
    }
}

/// The id [`CheckpointKey::id`] gives the key with this public key.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_its_key_only() {
        let (key, pkcs8) = CheckpointKey::generate().unwrap();
        let again = CheckpointKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(again.id(), key.id());
        assert_eq!(key_id(key.public_key()), key.id());
        let checkpoint = key.checkpoint(3, 11, 20, Digest([7; 32]), Timestamp::from_unix_millis(5));
        assert!(checkpoint.is_signed_by(key.public_key()));

        let (other, _) = CheckpointKey::generate().unwrap();
        assert!(!checkpoint.is_signed_by(other.public_key()));
        for altered in [
            Checkpoint {
                last_seq: 21,
                ..checkpoint.clone()
            },
            Checkpoint {
                last_hash: Digest([8; 32]),
                ..checkpoint.clone()
            },
            Checkpoint {
                first_seq: 10,
                ..checkpoint.clone()
            },
            Checkpoint {
                at: Timestamp::from_unix_millis(6),
                ..checkpoint.clone()
            },
        ] {
            assert!(!altered.is_signed_by(key.public_key()));
        }
        // Retention's mark is not signed: pruning does not invalidate the checkpoint.
        let pruned = Checkpoint {
            pruned_at: Some(Timestamp::from_unix_millis(9)),
            ..checkpoint
        };
        assert!(pruned.is_signed_by(key.public_key()));
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert_eq!(CheckpointKey::from_pkcs8(b"nope").unwrap_err(), BadKey);
    }
}
