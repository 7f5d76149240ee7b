//! The list of settings, read from [`Config`]'s JSON Schema (so from its doc comments), and the
//! configuration reference rendered from it.

use schemars::schema_for;
use serde_json::Value;

use super::Config;

/// What kind of value a setting takes, which decides how an environment variable is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Integer,
    Boolean,
    /// Comma-separated in an environment variable.
    TextList,
    OneOf(Vec<String>),
}

/// One setting: its dotted path in the file, its environment variable and its documentation.
#[derive(Clone, Debug)]
pub(crate) struct Setting {
    pub path: String,
    pub env: String,
    pub kind: Kind,
    pub description: String,
    pub default: Value,
}

pub(crate) const ENV_PREFIX: &str = "WARDEN_";

/// The environment variable of a setting path: `http.listen` is `WARDEN_HTTP_LISTEN`.
pub(crate) fn env_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "_").to_ascii_uppercase()
    )
}

/// Every leaf setting of [`Config`], in file order.
pub(crate) fn settings() -> Vec<Setting> {
    let schema = schema_for!(Config);
    let root = schema.as_value();
    let mut found = Vec::new();
    collect(root, root, "", &mut found);
    found
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name))
            .unwrap_or(node),
        None => node,
    }
}

fn collect(root: &Value, node: &Value, prefix: &str, found: &mut Vec<Setting>) {
    let Some(properties) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, property) in properties {
        let path = format!("{prefix}{name}");
        let resolved = resolve(root, property);
        if resolved.get("properties").is_some() {
            collect(root, resolved, &format!("{path}."), found);
            continue;
        }
        let description = property
            .get("description")
            .or_else(|| resolved.get("description"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace('\n', " ");
        found.push(Setting {
            env: env_name(&path),
            kind: kind_of(resolved),
            description,
            default: property.get("default").cloned().unwrap_or(Value::Null),
            path,
        });
    }
}

fn kind_of(schema: &Value) -> Kind {
    let constants = |values: &Value| -> Vec<String> {
        values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                v.get("const")
                    .or(Some(v))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    };
    if let Some(values) = schema.get("enum") {
        return Kind::OneOf(constants(values));
    }
    if let Some(values) = schema.get("oneOf") {
        return Kind::OneOf(constants(values));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => Kind::Integer,
        Some("boolean") => Kind::Boolean,
        Some("array") => Kind::TextList,
        _ => Kind::Text,
    }
}

/// The configuration reference in Markdown, as kept in `docs/configuration.md`.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from the doc comments in crates/server/src/config/mod.rs by \
         `warden config reference`; a test fails when this file is out of date. -->\n\n\
         Warden reads its settings from, in rising precedence: the built-in defaults, the TOML file \
         given with `--config FILE` (or `WARDEN_CONFIG`), environment variables, and command-line \
         flags. A wrong value, an unknown key or an unknown `WARDEN_*` variable stops the start with \
         a message naming the setting; `warden config check FILE` runs the same checks without \
         starting.\n\n\
         Every setting has an environment variable: `WARDEN_` and the setting's path in capitals, \
         dots as underscores. Any of them can instead be given as a file by appending `_FILE` to \
         the variable's name (for example `WARDEN_DATABASE_URL_FILE=/run/secrets/db-url`); the file's \
         content, less a trailing newline, is the value. That is the way to pass secrets. Lists are \
         comma-separated in a variable.\n\n\
         | Setting | Environment variable | Default | Description |\n\
         |---|---|---|---|\n",
    );
    for setting in settings() {
        let default = match &setting.default {
            Value::String(text) if text.is_empty() => "(empty)".to_owned(),
            Value::String(text) => format!("`{text}`"),
            Value::Array(items) if items.is_empty() => "(empty)".to_owned(),
            Value::Array(items) => format!(
                "`{}`",
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => format!("`{other}`"),
        };
        let choices = match &setting.kind {
            Kind::OneOf(values) => format!(" One of: {}.", values.join(", ")),
            _ => String::new(),
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {}{} |\n",
            setting.path,
            setting.env,
            default,
            setting.description.replace('|', "\\|"),
            choices
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_setting_is_documented_and_has_its_own_variable() {
        let settings = settings();
        assert!(
            settings
                .iter()
                .any(|s| s.path == "http.listen" && s.env == "WARDEN_HTTP_LISTEN")
        );
        assert!(settings.iter().any(|s| s.path == "database.url"));
        let mut seen = HashSet::new();
        for setting in &settings {
            assert!(
                !setting.description.is_empty(),
                "{} has no doc comment",
                setting.path
            );
            assert!(
                seen.insert(setting.env.clone()),
                "{} is used twice",
                setting.env
            );
        }
        for setting in &settings {
            let file_form = format!("{}_FILE", setting.env);
            assert!(
                !seen.contains(&file_form),
                "{file_form} is both a setting and a secret-file variable"
            );
        }
        let format = settings.iter().find(|s| s.path == "log.format").unwrap();
        assert_eq!(
            format.kind,
            Kind::OneOf(vec!["human".into(), "json".into()])
        );
    }

    /// Regenerate with `warden config reference > docs/configuration.md`.
    #[test]
    fn the_reference_in_docs_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == reference_markdown(),
            "docs/configuration.md is out of date; run: cargo run -- config reference > docs/configuration.md"
        );
    }
}
