//! Device model names, as the maker calls its products ("washer-w500").

use std::fmt;

/// 1 to 64 characters of lower-case letters, digits, `-`, `_` and `.`, starting with a letter or
/// digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a model name is 1 to 64 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
)]
pub struct ModelNameError;

impl ModelName {
    pub fn parse(input: &str) -> Result<Self, ModelNameError> {
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
        let starts_well = input
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if input.len() > 64 || !starts_well || !input.chars().all(allowed) {
            return Err(ModelNameError);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for good in ["washer-w500", "dryer_2.1", "x"] {
            assert_eq!(ModelName::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "-washer", "Washer", "washer/500", &"w".repeat(65)] {
            assert_eq!(ModelName::parse(bad), Err(ModelNameError), "{bad:?}");
        }
    }
}
