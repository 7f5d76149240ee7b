//! Login session tokens: 256 random bits in a cookie; only their SHA-256 is stored, so a copy of
//! the database does not let anyone log in.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The secret a browser holds. Not shown in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

/// What the database keeps of a token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionTokenHash(String);

impl SessionToken {
    pub fn generate() -> Self {
        Self(tokens::opaque::random_token())
    }

    /// Accepts only what [`SessionToken::generate`] makes, so arbitrary cookie values are refused
    /// before they reach the database.
    pub fn parse(text: &str) -> Option<Self> {
        let decoded = URL_SAFE_NO_PAD.decode(text).ok()?;
        (decoded.len() == 32).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SessionTokenHash {
        SessionTokenHash(tokens::opaque::token_hash(&self.0))
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl SessionTokenHash {
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_parse_back_and_hash_stably() {
        let token = SessionToken::generate();
        assert_ne!(token, SessionToken::generate());
        assert_eq!(SessionToken::parse(token.as_str()), Some(token.clone()));
        assert_eq!(
            token.hash(),
            SessionToken::parse(token.as_str()).unwrap().hash()
        );
        assert_eq!(token.hash().as_str().len(), 64);
        assert!(!format!("{token:?}").contains(token.as_str()));
        for bad in ["", "short", "!!!!", &"A".repeat(44)] {
            assert_eq!(SessionToken::parse(bad), None, "{bad:?}");
        }
    }
}
