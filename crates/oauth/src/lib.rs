//! The OAuth 2.0 / OpenID Connect server's decisions, without HTTP: who a client is and what it may
//! ask for ([`client`], [`scope`]), what a token request yields ([`grant`]), and the error codes of
//! RFC 6749 ([`error`]). The HTTP endpoints in `http-api` parse requests into these types, ask, and
//! write the answer.

pub mod client;
pub mod error;
pub mod grant;
pub mod pkce;
pub mod redirect;
pub mod scope;

/// A random, unguessable token (codes, refresh tokens): 256 bits, base64url.
pub fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a token, hex: what the database keeps of codes and refresh tokens.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Compares two secrets without leaking through timing how much of them matched.
pub fn constant_time_eq(left: &str, right: &str) -> bool {
    use subtle::ConstantTimeEq;
    left.len() == right.len() && bool::from(left.as_bytes().ct_eq(right.as_bytes()))
}
