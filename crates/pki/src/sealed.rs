//! CA private keys sealed at rest: AES-256-GCM under a key-encryption key from the configuration,
//! so that a copy of the database alone does not give away the CA.
//!
//! A sealed value is `warden-sealed-v1:` followed by base64 of a random 96-bit nonce and the
//! ciphertext with its tag. The purpose (`ca-root`, `ca-intermediate`) is bound as associated
//! data: a sealed root key pasted in the intermediate's place does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

const PREFIX: &str = "warden-sealed-v1:";

/// The key that seals CA keys: 32 bytes.
pub struct KeyEncryptionKey(LessSafeKey);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(…)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the key-encryption key must be 32 bytes, given as 64 hex digits or base64")]
    BadKey,
    #[error("the sealed value is not in Warden's sealed format")]
    Malformed,
    #[error("the sealed value does not open with this key: wrong key, or the value was altered")]
    WrongKeyOrAltered,
}

impl KeyEncryptionKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadKey)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// Parses the key as configured: 64 hex digits or base64 of 32 bytes, surrounding space ignored.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .filter(|bytes| bytes.len() == 32)
            .or_else(|| STANDARD.decode(text).ok())
            .ok_or(SealError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    /// A new random key, in the hex form [`KeyEncryptionKey::parse`] reads.
    pub fn generate_hex() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut buffer = plaintext.to_vec();
        // Sealing in place cannot fail for inputs far below AES-GCM's 64 GiB limit.
        let sealed = self.0.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(purpose.as_bytes()),
            &mut buffer,
        );
        debug_assert!(sealed.is_ok());
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buffer);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let encoded = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let mut bytes = STANDARD.decode(encoded).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Malformed)?;
        let plaintext = self
            .0
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut ciphertext)
            .map_err(|_| SealError::WrongKeyOrAltered)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_purpose() {
        let key = KeyEncryptionKey::parse(&KeyEncryptionKey::generate_hex()).unwrap();
        let sealed = key.seal("ca-root", b"secret key bytes");
        assert!(!sealed.contains("secret"));
        assert_eq!(key.open("ca-root", &sealed).unwrap(), b"secret key bytes");
        assert_eq!(
            key.open("ca-intermediate", &sealed),
            Err(SealError::WrongKeyOrAltered)
        );
        let other = KeyEncryptionKey::parse(&KeyEncryptionKey::generate_hex()).unwrap();
        assert_eq!(
            other.open("ca-root", &sealed),
            Err(SealError::WrongKeyOrAltered)
        );
        let mut altered = sealed.clone();
        altered.replace_range(sealed.len() - 4.., "AAAA");
        assert_eq!(
            key.open("ca-root", &altered),
            Err(SealError::WrongKeyOrAltered)
        );
        assert_eq!(key.open("ca-root", "plain"), Err(SealError::Malformed));
    }

    #[test]
    fn keys_are_32_bytes_in_hex_or_base64() {
        assert!(KeyEncryptionKey::parse(&"ab".repeat(32)).is_ok());
        assert!(KeyEncryptionKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
        assert_eq!(
            KeyEncryptionKey::parse("abcd").unwrap_err(),
            SealError::BadKey
        );
        assert_eq!(
            KeyEncryptionKey::parse(&STANDARD.encode([7u8; 16])).unwrap_err(),
            SealError::BadKey
        );
    }
}
