//! Names an operator gives: device models, as the maker calls its products ("washer-w500"), and
//! tags put on devices to pick them ("beta", "region-eu"). Both follow one rule.

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

/// 1 to 64 characters of lower-case letters, digits, `-`, `_` and `.`, starting with a letter or
/// digit.
fn well_formed(input: &str) -> bool {
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
    let starts_well = input
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    input.len() <= 64 && starts_well && input.chars().all(allowed)
}

impl ModelName {
    pub fn parse(input: &str) -> Result<Self, ModelNameError> {
        if !well_formed(input) {
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

/// A device tag, with a model name's rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a tag is 1 to 64 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
)]
pub struct TagError;

impl Tag {
    pub fn parse(input: &str) -> Result<Self, TagError> {
        if !well_formed(input) {
            return Err(TagError);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The most tags one device carries.
pub const MAX_TAGS: usize = 32;

/// A device's tags as an operator gives them: each checked, sorted, duplicates dropped, at most
/// [`MAX_TAGS`]. The error names the offending tag.
pub fn parse_tags<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Tag>, String> {
    if texts.len() > MAX_TAGS {
        return Err(format!("a device has at most {MAX_TAGS} tags"));
    }
    let mut tags = texts
        .iter()
        .map(|text| {
            let text = text.as_ref();
            Tag::parse(text).map_err(|error| format!("{text:?}: {error}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    tags.sort();
    tags.dedup();
    Ok(tags)
}

impl fmt::Display for Tag {
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
            assert_eq!(Tag::parse(bad), Err(TagError), "{bad:?}");
        }
        assert_eq!(Tag::parse("region-eu").unwrap().as_str(), "region-eu");
        let tags = parse_tags(&["beta", "region-eu", "beta"]).unwrap();
        assert_eq!(
            tags,
            [
                Tag::parse("beta").unwrap(),
                Tag::parse("region-eu").unwrap()
            ]
        );
        assert!(parse_tags(&["Beta"]).unwrap_err().contains("\"Beta\""));
        assert!(parse_tags(&vec!["x"; MAX_TAGS + 1]).is_err());
    }
}
