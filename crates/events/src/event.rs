//! One stored device message: what arrived, from whom, when, and the key that makes a resend of
//! the same message land once.

use model::{DeviceId, Timestamp};
use serde_json::Value;

/// The longest message id a device may choose; longer ones are not used for de-duplication.
pub const MAX_MESSAGE_ID_BYTES: usize = 128;

/// A device message as it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub device_id: DeviceId,
    /// Unique per device: the device's own id for the message when it gave one (so a resend after
    /// a lost acknowledgement is stored once), otherwise one made on receipt.
    pub message_id: String,
    /// The full MQTT topic, `devices/{id}/…`.
    pub topic: String,
    pub received_at: Timestamp,
    /// The time the device put in the message, when it put one there.
    pub device_time: Option<Timestamp>,
    pub content_type: String,
    pub body: Body,
}

/// The payload, byte for byte. JSON is kept as its text, so that queries can look inside it;
/// anything else as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Json(String),
    Bytes(Vec<u8>),
}

impl Body {
    /// JSON text when the payload parsed as JSON, bytes otherwise.
    fn new(payload: Vec<u8>, is_json: bool) -> Self {
        if !is_json {
            return Body::Bytes(payload);
        }
        // JSON text is UTF-8 by definition, so a parsed document's bytes always convert.
        match String::from_utf8(payload) {
            Ok(text) => Body::Json(text),
            Err(error) => Body::Bytes(error.into_bytes()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Json(text) => text.as_bytes(),
            Body::Bytes(bytes) => bytes,
        }
    }
}

/// What MQTT 5 properties of a PUBLISH say about the message (none on MQTT 3.1.1).
#[derive(Clone, Debug, Default)]
pub struct MessageProperties {
    /// The Content Type property.
    pub content_type: Option<String>,
    /// A User Property named `message-id`.
    pub message_id: Option<String>,
}

impl Event {
    /// The event for a message a device published, received now.
    ///
    /// The message id is, in this order: a `message-id` user property (MQTT 5), the `id` member
    /// of a JSON object payload (a string or an integer), or a new UUIDv7. The device time is the
    /// payload's `at` member, RFC 3339 text or Unix milliseconds. Devices that want exactly-once
    /// storage across resends give every message an id (docs/events.md).
    pub fn received(
        device_id: DeviceId,
        topic: String,
        payload: Vec<u8>,
        properties: MessageProperties,
        received_at: Timestamp,
    ) -> Self {
        let document = serde_json::from_slice::<Value>(&payload).ok();
        // PostgreSQL's jsonb cannot hold a NUL character (`\u0000`): such a document is kept as
        // bytes, or it would make its whole batch fail to commit.
        let storable = document
            .as_ref()
            .is_some_and(|document| !holds_nul(document));
        let body = Body::new(payload, storable);
        let member = |name: &str| document.as_ref().and_then(|value| value.get(name));
        let message_id = properties
            .message_id
            .filter(|id| usable_id(id))
            .or_else(|| member("id").and_then(id_text))
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let device_time = member("at").and_then(device_time);
        let content_type = properties
            .content_type
            .filter(|content_type| usable_content_type(content_type))
            .unwrap_or_else(|| {
                match body {
                    Body::Json(_) => "application/json",
                    Body::Bytes(_) => "application/octet-stream",
                }
                .to_owned()
            });
        Self {
            device_id,
            message_id,
            topic,
            received_at,
            device_time,
            content_type,
            body,
        }
    }
}

/// Whether a JSON document has a NUL character in a string or a member name.
fn holds_nul(document: &Value) -> bool {
    match document {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(members) => members
            .iter()
            .any(|(name, value)| name.contains('\0') || holds_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// An id a device chose is used when it is short and printable: control characters (NUL
/// above all, which PostgreSQL's text cannot hold) would make the whole batch fail to commit.
fn usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_MESSAGE_ID_BYTES && !id.chars().any(char::is_control)
}

/// A Content Type property is kept when it is short and printable, for the same reason as ids.
fn usable_content_type(content_type: &str) -> bool {
    !content_type.is_empty()
        && content_type.len() <= 255
        && !content_type.chars().any(char::is_control)
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if usable_id(text) => Some(text.clone()),
        Value::Number(number) if number.is_i64() || number.is_u64() => Some(number.to_string()),
        _ => None,
    }
}

fn device_time(value: &Value) -> Option<Timestamp> {
    match value {
        Value::String(text) => Timestamp::parse_rfc3339(text),
        Value::Number(number) => number.as_i64().map(Timestamp::from_unix_millis),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(payload: &[u8], properties: MessageProperties) -> Event {
        Event::received(
            DeviceId::parse("oven-1").unwrap(),
            "devices/oven-1/events".to_owned(),
            payload.to_vec(),
            properties,
            Timestamp::from_unix_millis(1_000),
        )
    }

    /// (payload, message id property, expected message id or None for a generated one, expected
    /// device time in ms, expected content type, stored as JSON)
    fn check(
        payload: &[u8],
        property_id: Option<&str>,
        id: Option<&str>,
        at: Option<i64>,
        content_type: &str,
        json: bool,
    ) {
        let properties = MessageProperties {
            content_type: None,
            message_id: property_id.map(str::to_owned),
        };
        let event = received(payload, properties);
        match id {
            Some(id) => assert_eq!(event.message_id, id, "{payload:?}"),
            None => assert!(
                uuid::Uuid::parse_str(&event.message_id).is_ok(),
                "{payload:?}"
            ),
        }
        assert_eq!(
            event.device_time.map(Timestamp::unix_millis),
            at,
            "{payload:?}"
        );
        assert_eq!(event.content_type, content_type, "{payload:?}");
        assert_eq!(matches!(event.body, Body::Json(_)), json, "{payload:?}");
        assert_eq!(event.body.as_bytes(), payload, "bytes kept as sent");
    }

    #[test]
    fn ids_times_and_bodies_come_from_the_message() {
        let json = "application/json";
        let bytes = "application/octet-stream";
        check(
            br#"{"id":"e-1","t":21}"#,
            None,
            Some("e-1"),
            None,
            json,
            true,
        );
        check(br#"{"id":42}"#, None, Some("42"), None, json, true);
        check(
            br#"{"id":"e-1"}"#,
            Some("p-9"),
            Some("p-9"),
            None,
            json,
            true,
        );
        check(br#"{"id":""}"#, None, None, None, json, true);
        check(br#"{"id":1.5}"#, None, None, None, json, true);
        check(br#"{"id":{"x":1}}"#, None, None, None, json, true);
        check(
            br#"{"at":"2026-12-03T08:00:00.250Z"}"#,
            None,
            None,
            Some(1_796_284_800_250),
            json,
            true,
        );
        check(
            br#"{"at":1700000000000}"#,
            None,
            None,
            Some(1_700_000_000_000),
            json,
            true,
        );
        check(br#"{"at":"yesterday"}"#, None, None, None, json, true);
        check(br#"[1,2,3]"#, None, None, None, json, true);
        check(b"21.5", None, None, None, json, true);
        check(b"\xff\x00binary", None, None, None, bytes, false);
        check(b"{not json", None, None, None, bytes, false);
        check(b"", None, None, None, bytes, false);
        let long = "x".repeat(MAX_MESSAGE_ID_BYTES + 1);
        check(
            format!(r#"{{"id":"{long}"}}"#).as_bytes(),
            None,
            None,
            None,
            json,
            true,
        );
        check(b"raw", Some(&long), None, None, bytes, false);
        // A NUL in the document: kept as bytes (PostgreSQL's jsonb cannot hold it), its id not
        // used either.
        check(br#"{"id":"a\u0000b"}"#, None, None, None, bytes, false);
        check(br#"{"t":"\u0000"}"#, None, None, None, bytes, false);
        check(br#"{"a\u0000":1}"#, None, None, None, bytes, false);
        check(b"raw", Some("tab\there"), None, None, bytes, false);
    }

    #[test]
    fn a_content_type_property_is_kept() {
        let event = received(
            b"<temp>21</temp>",
            MessageProperties {
                content_type: Some("application/xml".to_owned()),
                message_id: None,
            },
        );
        assert_eq!(event.content_type, "application/xml");
        let control = received(
            b"{}",
            MessageProperties {
                content_type: Some("text/plain\0".to_owned()),
                message_id: None,
            },
        );
        assert_eq!(control.content_type, "application/json");
    }
}
