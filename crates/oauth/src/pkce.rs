//! Proof Key for Code Exchange (RFC 7636), S256 only: `plain` would let anyone who sees the
//! authorization request redeem the code.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A code challenge as sent in the authorization request: 43 base64url characters (a SHA-256).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Accepts only `S256` challenges of the right form.
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, &'static str> {
        match method {
            Some("S256") => {}
            Some("plain") | None => {
                return Err("code_challenge_method must be S256; plain is not allowed");
            }
            Some(_) => return Err("unknown code_challenge_method; use S256"),
        }
        let decoded = URL_SAFE_NO_PAD
            .decode(challenge)
            .map_err(|_| "code_challenge is not base64url")?;
        if decoded.len() != 32 {
            return Err("code_challenge must be the base64url SHA-256 of the verifier");
        }
        Ok(Self(challenge.to_owned()))
    }

    pub fn from_stored(challenge: String) -> Self {
        Self(challenge)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `verifier` is the secret this challenge was made from.
    pub fn is_met_by(&self, verifier: &str) -> bool {
        let well_formed = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !well_formed {
            return false;
        }
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        crate::constant_time_eq(&computed, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifies_and_nothing_else_does() {
        // Appendix B of RFC 7636.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge =
            CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Some("S256"))
                .unwrap();
        assert!(challenge.is_met_by(verifier));
        assert!(!challenge.is_met_by("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK"));
        assert!(!challenge.is_met_by("short"));
        assert!(
            CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Some("plain"))
                .is_err()
        );
        assert!(CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", None).is_err());
        assert!(CodeChallenge::parse("tooshort", Some("S256")).is_err());
    }
}
