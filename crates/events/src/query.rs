//! What a reader asks of one device's events: a time range, an order, a topic, equality on JSON
//! members, and where the previous page ended. Parsed once from the caller's text.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use model::Timestamp;

/// The most events one page holds.
pub const MAX_PAGE: u32 = 1_000;
/// The most JSON member conditions one query takes.
pub const MAX_FIELD_FILTERS: usize = 8;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// One device's events, filtered and ordered; the device itself is given apart, by the caller
/// that was allowed to read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Received at or after.
    pub from: Option<Timestamp>,
    /// Received before.
    pub to: Option<Timestamp>,
    pub order: Order,
    pub topic: Option<TopicSelector>,
    pub fields: Vec<FieldFilter>,
    /// Continue after this position (exclusive), in the query's order.
    pub after: Option<Cursor>,
}

/// Which of the device's topics, written as the part after `devices/{id}/`: an exact topic
/// (`events`, `state/reported`) or a prefix ending in `/#` (`commands/#`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicSelector {
    Exact(String),
    Prefix(String),
}

impl TopicSelector {
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let bad = || QueryError::Topic(text.to_owned());
        if text.is_empty() || text.len() > 256 || text.contains(['+', '\0']) {
            return Err(bad());
        }
        match text.strip_suffix('#') {
            Some(prefix) if prefix.is_empty() || prefix.ends_with('/') => {
                Ok(TopicSelector::Prefix(prefix.to_owned()))
            }
            Some(_) => Err(bad()),
            None => Ok(TopicSelector::Exact(text.to_owned())),
        }
    }

    /// The selector as a condition on full topics of `device_topic_root` (`devices/{id}/`).
    pub fn full(&self, device_topic_root: &str) -> TopicSelector {
        match self {
            TopicSelector::Exact(tail) => {
                TopicSelector::Exact(format!("{device_topic_root}{tail}"))
            }
            TopicSelector::Prefix(tail) => {
                TopicSelector::Prefix(format!("{device_topic_root}{tail}"))
            }
        }
    }
}

/// A top-level member of a JSON payload equal to a value, compared as text (`21`, `true`,
/// `door`): `field.state=open` in the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldFilter {
    name: String,
    pub value: String,
}

impl FieldFilter {
    /// Member names are letters, digits, `_` and `-`, at most 64 of them, so that a name is never
    /// read as a JSON path.
    pub fn new(name: &str, value: &str) -> Result<Self, QueryError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid || value.len() > 256 {
            return Err(QueryError::Field(name.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where a page ended: the last event's receive time and its sequence number. Opaque to readers
/// (URL-safe base64 of `millis.sequence`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub received_at: Timestamp,
    pub sequence: i64,
}

impl Cursor {
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}.{}",
            self.received_at.unix_millis(),
            self.sequence
        ))
    }

    pub fn decode(text: &str) -> Result<Self, QueryError> {
        let bad = || QueryError::Cursor;
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        let (millis, sequence) = text.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            received_at: Timestamp::from_unix_millis(millis.parse().map_err(|_| bad())?),
            sequence: sequence.parse().map_err(|_| bad())?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "topic {0:?} is not a topic of the device: give the part after devices/{{id}}/, for example events, or a prefix ending in /#"
    )]
    Topic(String),
    #[error(
        "field filter {0:?}: a member name is 1 to 64 letters, digits, _ or -, and a value at most 256 bytes"
    )]
    Field(String),
    #[error("at most {MAX_FIELD_FILTERS} field filters")]
    TooManyFields,
    #[error("the cursor is not one this API gave out")]
    Cursor,
    #[error("from must be before to")]
    EmptyRange,
}

impl EventQuery {
    /// Checks what only the whole query can tell.
    pub fn checked(self) -> Result<Self, QueryError> {
        if self.fields.len() > MAX_FIELD_FILTERS {
            return Err(QueryError::TooManyFields);
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(QueryError::EmptyRange);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_selectors() {
        let check = |text: &str, expected: Option<TopicSelector>| {
            assert_eq!(TopicSelector::parse(text).ok(), expected, "{text}");
        };
        check("events", Some(TopicSelector::Exact("events".into())));
        check(
            "state/reported",
            Some(TopicSelector::Exact("state/reported".into())),
        );
        check(
            "commands/#",
            Some(TopicSelector::Prefix("commands/".into())),
        );
        check("#", Some(TopicSelector::Prefix(String::new())));
        check("commands#", None);
        check("commands/+/response", None);
        check("", None);
        assert_eq!(
            TopicSelector::Prefix("commands/".into()).full("devices/oven-1/"),
            TopicSelector::Prefix("devices/oven-1/commands/".into())
        );
    }

    #[test]
    fn field_names_cannot_become_paths() {
        assert!(FieldFilter::new("temperature", "21").is_ok());
        assert!(FieldFilter::new("door_state-2", "open").is_ok());
        for name in ["", "a.b", "a[0]", "$", "a b", "ä", &"x".repeat(65)] {
            assert!(FieldFilter::new(name, "1").is_err(), "{name}");
        }
        assert!(FieldFilter::new("a", &"v".repeat(257)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            received_at: Timestamp::from_unix_millis(1_796_284_800_250),
            sequence: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        for text in ["", "abc", "MTIz", "!!!!", "MS54"] {
            assert_eq!(Cursor::decode(text), Err(QueryError::Cursor), "{text}");
        }
    }

    #[test]
    fn a_range_must_not_be_empty() {
        let at = Timestamp::from_unix_millis;
        let query = |from, to| EventQuery {
            from: Some(at(from)),
            to: Some(at(to)),
            ..EventQuery::default()
        };
        assert!(query(1, 2).checked().is_ok());
        assert_eq!(query(2, 2).checked(), Err(QueryError::EmptyRange));
        let many = EventQuery {
            fields: vec![FieldFilter::new("a", "1").unwrap(); MAX_FIELD_FILTERS + 1],
            ..EventQuery::default()
        };
        assert_eq!(many.checked(), Err(QueryError::TooManyFields));
    }
}
