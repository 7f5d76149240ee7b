//! The identifier of an account: a UUID, time-ordered so that new rows append to indexes.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(uuid::Uuid);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a user id: {0:?}")]
pub struct UserIdError(pub String);

impl UserId {
    /// A new, random, time-ordered (UUIDv7) id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl FromStr for UserId {
    type Err = UserIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(input)
            .map(Self)
            .map_err(|_| UserIdError(input.to_owned()))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip_through_text() {
        let first = UserId::generate();
        let second = UserId::generate();
        assert_ne!(first, second);
        assert_eq!(first.to_string().parse::<UserId>(), Ok(first));
        assert!("not-a-uuid".parse::<UserId>().is_err());
    }
}
