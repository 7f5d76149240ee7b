//! A message a device publishes, as Warden stores it as an event (`events::Event::received`,
//! called for every message the broker lets in): the body kept as JSON text or bytes, the message
//! id the device chose (for storing a resend once), the device's time and the content type.
//!
//! Input: a first byte whose bit 0 says that a `message-id` user property follows and bit 1 that
//! a Content Type property follows, each as one line; the rest is the payload.
//!
//! Properties: nothing panics; the body is kept byte for byte; a body kept as JSON is JSON and
//! holds nothing the database's text column or its JSON cast refuses (a NUL byte, or the escape
//! `\u0000` that PostgreSQL's `jsonb` cannot hold: the store casts `body_json::jsonb` to answer
//! field filters, so one such event would make every filtered query over the device's events
//! fail); the message id and the content type are never empty, never too long and never hold
//! control characters (NUL above all, which PostgreSQL's text cannot hold and which would fail the
//! whole batch's commit).

#![no_main]

use events::{Body, Event, MessageProperties};
use libfuzzer_sys::fuzz_target;
use model::DeviceId;
use warden_fuzz::{NOW, check};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut take_line = |wanted: bool| -> Option<String> {
        if !wanted {
            return None;
        }
        let end = rest
            .iter()
            .position(|&byte| byte == b'\n')
            .unwrap_or(rest.len());
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = rest.get(end + 1..).unwrap_or_default();
        Some(line)
    };
    let message_id = take_line(flags & 1 != 0);
    let content_type = take_line(flags & 2 != 0);
    let payload = rest.to_vec();
    let Ok(device_id) = DeviceId::parse("washer-1") else {
        return;
    };
    let topic = "devices/washer-1/events".to_owned();
    let event = Event::received(
        device_id.clone(),
        topic.clone(),
        payload.clone(),
        MessageProperties {
            content_type,
            message_id,
        },
        NOW,
    );
    check!(
        "event-body",
        event.body.as_bytes() == payload.as_slice() && event.topic == topic,
        "the body or topic changed"
    );
    if let Body::Json(text) = &event.body {
        check!(
            "event-body",
            serde_json::from_str::<serde_json::Value>(text).is_ok() && !text.contains('\0'),
            "a body kept as JSON that is not: {text:?}"
        );
        check!(
            "event-json-postgres",
            !contains_nul_escape(text),
            "a body kept as JSON that PostgreSQL's jsonb refuses: {text:?}"
        );
    }
    let usable = |text: &str, most: usize| {
        !text.is_empty() && text.len() <= most && !text.chars().any(char::is_control)
    };
    check!(
        "event-id",
        usable(&event.message_id, events::MAX_MESSAGE_ID_BYTES),
        "message id {:?}",
        event.message_id
    );
    check!(
        "event-content-type",
        usable(&event.content_type, 255),
        "content type {:?}",
        event.content_type
    );
});

/// Whether JSON text holds the escape `\u0000` (an odd number of backslashes before `u0000`).
fn contains_nul_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\' {
            if bytes[index + 1..].starts_with(b"u0000") {
                return true;
            }
            index += 2;
        } else {
            index += 1;
        }
    }
    false
}
