//! Device settings and state as Warden checks and compares them: a model's settings schema (a
//! JSON Schema an admin sets, `registry::SettingsSchema::compile`, compiled again on every write),
//! desired settings a person writes (`check_settings_shape`, `SettingsSchema::check`), the state
//! a device reports, and the delta between them that the device still has to apply
//! (`registry::delta`).
//!
//! Input: text in three parts separated by lines `---`: a JSON Schema (empty: a washing machine's
//! schema), desired settings (JSON), reported state (JSON).
//!
//! Properties: nothing panics (nor takes long: libFuzzer's timeout counts as a crash); settings
//! are accepted in shape exactly when they are an object; the delta of settings against
//! themselves is empty; against an empty report it is the settings; it never names a key the
//! settings lack; and once the device applies the delta to its report, nothing is left to apply.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use registry::{SettingsSchema, check_settings_shape, delta};
use serde_json::{Map, Value, json};
use warden_fuzz::check;

fn washer_schema() -> &'static SettingsSchema {
    static SCHEMA: OnceLock<SettingsSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        SettingsSchema::compile(&json!({
            "type": "object",
            "properties": {
                "temperature": {"type": "integer", "minimum": 20, "maximum": 90},
                "spin": {"enum": [400, 800, 1200, 1400]},
                "program": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$"},
                "schedule": {
                    "type": "object",
                    "properties": {"start": {"type": "string", "format": "date-time"}},
                    "required": ["start"],
                    "additionalProperties": false
                },
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8, "uniqueItems": true}
            },
            "additionalProperties": false
        }))
        .expect("the washer schema compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = warden_fuzz::text(data) else {
        return;
    };
    let parts = warden_fuzz::parts(text);
    let json = |index: usize| {
        parts
            .get(index)
            .and_then(|part| serde_json::from_str::<Value>(part).ok())
    };
    let compiled;
    let schema = match parts[0].trim() {
        "" => Some(washer_schema()),
        _ => match json(0).map(|schema| SettingsSchema::compile(&schema)) {
            Some(Ok(schema)) => {
                compiled = schema;
                Some(&compiled)
            }
            _ => None,
        },
    };
    let Some(desired) = json(1) else {
        return;
    };
    let reported = json(2).unwrap_or(Value::Null);

    check!(
        "settings-shape",
        check_settings_shape(&desired).is_ok() == desired.is_object(),
        "the shape check of {desired} is wrong"
    );
    if let Some(schema) = schema {
        let _ = schema.check(&desired);
        let _ = schema.check(&reported);
    }

    check!(
        "delta",
        delta(&desired, &desired).is_empty(),
        "settings differ from themselves: {desired}"
    );
    let Value::Object(desired_members) = &desired else {
        return;
    };
    check!(
        "delta",
        delta(&desired, &json!({})) == *desired_members,
        "against an empty report, the delta of {desired} is not the settings"
    );
    let difference = delta(&desired, &reported);
    check!(
        "delta",
        difference
            .keys()
            .all(|key| desired_members.contains_key(key)),
        "the delta {difference:?} names keys the settings {desired} lack"
    );
    let mut applied = match &reported {
        Value::Object(members) => members.clone(),
        _ => Map::new(),
    };
    apply(&mut applied, &difference);
    let left = delta(&desired, &Value::Object(applied.clone()));
    check!(
        "delta",
        left.is_empty(),
        "after applying {difference:?} to {reported}, {left:?} is still to apply"
    );
});

/// What a device does with a delta: each member replaces its own, objects merged member by member.
fn apply(state: &mut Map<String, Value>, difference: &Map<String, Value>) {
    for (key, wanted) in difference {
        match (state.get_mut(key), wanted) {
            (Some(Value::Object(have)), Value::Object(inner)) => apply(have, inner),
            _ => {
                state.insert(key.clone(), wanted.clone());
            }
        }
    }
}
