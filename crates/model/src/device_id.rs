//! Device ids: the name a device carries in its certificate, its MQTT client id and its topics.

use std::fmt;

/// A device's id: 1 to 64 characters of lower-case ASCII letters, digits and `-`, starting with a
/// letter or digit. The alphabet keeps the id safe verbatim in MQTT topics (no `/`, `+`, `#`), in
/// URIs and in a certificate's common name, and case cannot make two ids look alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("the device id is empty")]
    Empty,
    #[error("the device id is longer than {max} characters")]
    TooLong { max: usize },
    #[error(
        "the device id may contain only lower-case letters, digits and '-', and must start with a letter or digit"
    )]
    Malformed,
}

impl DeviceId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<Self, DeviceIdError> {
        if input.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        if input.len() > Self::MAX_LEN {
            return Err(DeviceIdError::TooLong { max: Self::MAX_LEN });
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !input.chars().all(allowed) || input.starts_with('-') {
            return Err(DeviceIdError::Malformed);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_topic_and_uri_safe_ids_parse() {
        assert_eq!(
            DeviceId::parse("washer-0042").unwrap().as_str(),
            "washer-0042"
        );
        assert_eq!(DeviceId::parse(""), Err(DeviceIdError::Empty));
        assert_eq!(
            DeviceId::parse(&"a".repeat(65)),
            Err(DeviceIdError::TooLong { max: 64 })
        );
        for bad in ["Washer", "a/b", "a+b", "#", "-lead", "ä", "a b", "a:b"] {
            assert_eq!(DeviceId::parse(bad), Err(DeviceIdError::Malformed), "{bad}");
        }
    }
}
