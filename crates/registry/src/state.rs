//! Device state: the settings people want (desired) and what the device says it has (reported),
//! the difference between them, and the schema a model's settings must follow.

use serde_json::{Map, Value};

/// A model's JSON Schema for desired settings, compiled once. Remote references are not fetched
/// (the crate is built without its HTTP resolver), so a schema cannot make Warden call out.
#[derive(Debug)]
pub struct SettingsSchema {
    validator: jsonschema::Validator,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsSchemaError {
    #[error("the settings schema is not a valid JSON Schema: {0}")]
    BadSchema(String),
    #[error("the settings do not match the model's schema: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("settings must be a JSON object")]
    NotAnObject,
}

impl SettingsSchema {
    pub fn compile(schema: &Value) -> Result<Self, SettingsSchemaError> {
        jsonschema::validator_for(schema)
            .map(|validator| Self { validator })
            .map_err(|error| SettingsSchemaError::BadSchema(error.to_string()))
    }

    /// Every way `settings` breaks the schema, each with where (a JSON pointer) and why.
    pub fn check(&self, settings: &Value) -> Result<(), SettingsSchemaError> {
        let problems: Vec<String> = self
            .validator
            .iter_errors(settings)
            .take(10)
            .map(|error| match error.instance_path().to_string() {
                path if path.is_empty() => error.to_string(),
                path => format!("{path}: {error}"),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsSchemaError::Invalid(problems))
        }
    }
}

/// Desired settings must be an object, so a delta can be taken key by key.
pub fn check_settings_shape(settings: &Value) -> Result<(), SettingsSchemaError> {
    if settings.is_object() {
        Ok(())
    } else {
        Err(SettingsSchemaError::NotAnObject)
    }
}

/// What the device still has to apply: every desired key whose value the reported state does not
/// have, descending into objects present on both sides. Empty when the device is in step.
pub fn delta(desired: &Value, reported: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Value::Object(desired) = desired else {
        return out;
    };
    let empty = Map::new();
    let reported = reported.as_object().unwrap_or(&empty);
    for (key, wanted) in desired {
        match (wanted, reported.get(key)) {
            (Value::Object(_), Some(have @ Value::Object(_))) => {
                let inner = delta(wanted, have);
                if !inner.is_empty() {
                    out.insert(key.clone(), Value::Object(inner));
                }
            }
            (wanted, Some(have)) if wanted == have => {}
            (wanted, _) => {
                out.insert(key.clone(), wanted.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(desired: Value, reported: Value, expected: Value) {
        assert_eq!(Value::Object(delta(&desired, &reported)), expected);
    }

    #[test]
    fn delta_holds_what_is_not_yet_reported() {
        check(json!({}), json!({"a": 1}), json!({}));
        check(json!({"a": 1}), json!({"a": 1}), json!({}));
        check(json!({"a": 1}), json!({"a": 2}), json!({"a": 1}));
        check(
            json!({"a": 1, "b": true}),
            json!({}),
            json!({"a": 1, "b": true}),
        );
        check(
            json!({"program": {"temp": 40, "spin": 1200}}),
            json!({"program": {"temp": 40, "spin": 800}, "door": "closed"}),
            json!({"program": {"spin": 1200}}),
        );
        check(
            json!({"a": {"b": 1}}),
            json!({"a": 5}),
            json!({"a": {"b": 1}}),
        );
        check(json!({"a": [1, 2]}), json!({"a": [1, 2]}), json!({}));
        check(json!({"a": null}), json!({}), json!({"a": null}));
        check(json!({"a": 1}), json!(null), json!({"a": 1}));
    }

    #[test]
    fn schemas_refuse_settings_with_reasons() {
        let schema = SettingsSchema::compile(&json!({
            "type": "object",
            "properties": {"temperature": {"type": "integer", "minimum": 20, "maximum": 90}},
            "additionalProperties": false
        }))
        .unwrap();
        assert_eq!(schema.check(&json!({"temperature": 40})), Ok(()));
        let Err(SettingsSchemaError::Invalid(problems)) = schema.check(&json!({"temperature": 95}))
        else {
            panic!("accepted an out-of-range value")
        };
        assert!(problems[0].starts_with("/temperature: "), "{problems:?}");
        assert!(schema.check(&json!({"colour": "red"})).is_err());
        assert!(matches!(
            SettingsSchema::compile(&json!({"type": "no-such-type"})),
            Err(SettingsSchemaError::BadSchema(_))
        ));
        assert_eq!(
            check_settings_shape(&json!([1])),
            Err(SettingsSchemaError::NotAnObject)
        );
    }
}
