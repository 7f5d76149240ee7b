//! Reading the layers (file, environment, flags) into one table, and reporting any problem with
//! the setting's name and where its value came from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::reference::{ENV_PREFIX, Kind, Setting, settings};
use super::{Config, Settings};

/// The environment variable that names the configuration file; read by the command line, not a
/// setting itself.
pub const CONFIG_FILE_VARIABLE: &str = "WARDEN_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error(
        "unknown environment variable {name}: no setting has this name \
         (settings and their variables are listed in docs/configuration.md)"
    )]
    UnknownVariable { name: String },
    #[error("{origin}: {problem}")]
    BadValue { origin: String, problem: String },
    #[error("cannot read the secret file {} named by {name}: {source}", path.display())]
    SecretFile {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid setting `{setting}` (from {origin}): {problem}")]
    Invalid {
        setting: String,
        origin: String,
        problem: String,
    },
}

/// Loads the configuration the way `warden` does: the file (if any), this process's environment,
/// then the flags given as `(setting path, value)`.
pub fn load(file: Option<&Path>, flags: &[(&str, String)]) -> Result<Settings, ConfigError> {
    load_from(file, std::env::vars(), flags)
}

/// [`load`] with the environment passed in, for tests.
pub fn load_from(
    file: Option<&Path>,
    environment: impl IntoIterator<Item = (String, String)>,
    flags: &[(&str, String)],
) -> Result<Settings, ConfigError> {
    let known = settings();
    let mut origins: HashMap<String, String> = HashMap::new();
    let mut table = match file {
        Some(path) => read_file(path, &known, &mut origins)?,
        None => Table::new(),
    };

    for (name, raw) in environment {
        if !name.starts_with(ENV_PREFIX) || name == CONFIG_FILE_VARIABLE {
            continue;
        }
        let (setting, raw) = match known.iter().find(|s| s.env == name) {
            Some(setting) => (setting, raw),
            None => {
                let Some(setting) = name
                    .strip_suffix("_FILE")
                    .and_then(|base| known.iter().find(|s| s.env == base))
                else {
                    return Err(ConfigError::UnknownVariable { name });
                };
                let path = PathBuf::from(&raw);
                let content =
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
                        name: name.clone(),
                        path,
                        source,
                    })?;
                (setting, content.trim_end_matches(['\n', '\r']).to_owned())
            }
        };
        let origin = format!("environment variable {name}");
        if let Some(previous) = origins
            .get(&setting.path)
            .filter(|o| o.starts_with("environment"))
        {
            return Err(ConfigError::BadValue {
                origin,
                problem: format!("`{}` is also set by {previous}; set it once", setting.path),
            });
        }
        insert(&mut table, setting, &raw, &origin)?;
        origins.insert(setting.path.clone(), origin);
    }

    for (path, raw) in flags {
        let setting =
            known
                .iter()
                .find(|s| s.path == *path)
                .ok_or_else(|| ConfigError::UnknownVariable {
                    name: (*path).to_owned(),
                })?;
        let origin = format!("command-line flag for {path}");
        insert(&mut table, setting, raw, &origin)?;
        origins.insert(setting.path.clone(), origin);
    }

    let origin_of = |setting: &str| {
        origins
            .get(setting)
            .cloned()
            .unwrap_or_else(|| "the built-in default".to_owned())
    };
    let config: Config =
        serde_path_to_error::deserialize(Value::Table(table)).map_err(|error| {
            let setting = error.path().to_string();
            ConfigError::Invalid {
                origin: origin_of(&setting),
                problem: error.into_inner().to_string(),
                setting,
            }
        })?;
    config.validate().map_err(|invalid| ConfigError::Invalid {
        setting: invalid.setting.to_owned(),
        origin: origin_of(invalid.setting),
        problem: invalid.problem,
    })
}

fn read_file(
    path: &Path,
    known: &[Setting],
    origins: &mut HashMap<String, String>,
) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    // Deserializing the text itself (not a table) keeps line and column in the message.
    toml::from_str::<Config>(&text).map_err(|error| ConfigError::File {
        path: path.to_path_buf(),
        message: error.to_string().trim_end().to_owned(),
    })?;
    let table: Table = toml::from_str(&text).map_err(|error| ConfigError::File {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    for setting in known {
        if lookup(&table, &setting.path).is_some() {
            origins.insert(setting.path.clone(), format!("{}", path.display()));
        }
    }
    Ok(table)
}

fn lookup<'a>(table: &'a Table, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = table.get(parts.next()?)?;
    for part in parts {
        current = current.as_table()?.get(part)?;
    }
    Some(current)
}

/// Puts a textual value (from the environment or a flag) into the table, typed as the setting.
fn insert(
    table: &mut Table,
    setting: &Setting,
    raw: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let bad = |problem: String| ConfigError::BadValue {
        origin: origin.to_owned(),
        problem,
    };
    let value = match &setting.kind {
        Kind::Text | Kind::OneOf(_) => Value::String(raw.to_owned()),
        Kind::Integer => raw.trim().parse::<i64>().map(Value::Integer).map_err(|_| {
            bad(format!(
                "`{}` takes a whole number, not {raw:?}",
                setting.path
            ))
        })?,
        Kind::Boolean => match raw.trim() {
            "true" | "1" | "yes" => Value::Boolean(true),
            "false" | "0" | "no" => Value::Boolean(false),
            _ => {
                return Err(bad(format!(
                    "`{}` takes true or false, not {raw:?}",
                    setting.path
                )));
            }
        },
        Kind::TextList => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        ),
    };
    let mut parts: Vec<&str> = setting.path.split('.').collect();
    let leaf = parts.pop().unwrap_or_default();
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(inner) => inner,
            _ => return Err(bad(format!("`{part}` in the file is not a section"))),
        };
    }
    current.insert(leaf.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn environment_overrides_the_file_and_flags_override_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "warden.toml",
            "[http]\nlisten = \"127.0.0.1:1000\"\nmax_body_bytes = 5\n",
        );
        let settings = load_from(
            Some(&file),
            env(&[("WARDEN_HTTP_LISTEN", "127.0.0.1:2000")]),
            &[],
        )
        .unwrap();
        assert_eq!(settings.https_listen.port(), 2000);
        assert_eq!(settings.max_body_bytes, 5);
        let flags = [("http.listen", "127.0.0.1:3000".to_owned())];
        let settings = load_from(
            Some(&file),
            env(&[("WARDEN_HTTP_LISTEN", "127.0.0.1:2000")]),
            &flags,
        )
        .unwrap();
        assert_eq!(settings.https_listen.port(), 3000);
    }

    #[test]
    fn secrets_come_from_files_named_by_file_variables() {
        let dir = tempfile::tempdir().unwrap();
        let secret = write(
            dir.path(),
            "db-url",
            "postgres://warden:s3cret@db.example/warden\n",
        );
        let variables = env(&[("WARDEN_DATABASE_URL_FILE", secret.to_str().unwrap())]);
        let settings = load_from(None, variables, &[]).unwrap();
        assert_eq!(
            settings.database.to_string(),
            "postgres://warden:<redacted>@db.example/warden"
        );

        let both = env(&[
            ("WARDEN_DATABASE_URL_FILE", secret.to_str().unwrap()),
            ("WARDEN_DATABASE_URL", "sqlite://x.db"),
        ]);
        let error = load_from(None, both, &[]).unwrap_err().to_string();
        assert!(error.contains("set it once"), "{error}");

        let missing = env(&[("WARDEN_DATABASE_URL_FILE", "/nonexistent/secret")]);
        let error = load_from(None, missing, &[]).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/secret"), "{error}");
    }

    #[test]
    fn lists_and_numbers_are_read_from_variables() {
        let variables = env(&[
            ("WARDEN_TLS_HOSTNAMES", "warden.example.com, 10.1.2.3"),
            ("WARDEN_DATABASE_MAX_CONNECTIONS", "3"),
            ("PATH", "/usr/bin"),
        ]);
        let settings = load_from(None, variables, &[]).unwrap();
        assert_eq!(
            settings.tls.hostnames,
            vec!["warden.example.com", "10.1.2.3"]
        );
        assert_eq!(settings.database_max_connections, 3);
    }

    fn error_of(file: Option<&str>, variables: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|content| write(dir.path(), "warden.toml", content));
        load_from(path.as_deref(), env(variables), &[])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_kind_of_mistake_names_the_setting_and_its_source() {
        // (file content, environment, fragments the message must contain)
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                Some("[http]\nlisen = \"127.0.0.1:1\"\n"),
                &[],
                &["warden.toml", "line 2", "unknown field `lisen`"],
            ),
            (Some("colour = true\n"), &[], &["unknown field `colour`"]),
            (
                Some("[http]\nmax_body_bytes = \"lots\"\n"),
                &[],
                &["line 2", "max_body_bytes"],
            ),
            (Some("[http\n"), &[], &["warden.toml", "line 1"]),
            (
                Some("[http]\nlisten = \"nowhere\"\n"),
                &[],
                &["`http.listen`", "warden.toml", "write IP:PORT"],
            ),
            (
                Some("[log]\nformat = \"xml\"\n"),
                &[],
                &["unknown variant `xml`"],
            ),
            (
                None,
                &[("WARDEN_HTTP_LISTNE", "x")],
                &["unknown environment variable WARDEN_HTTP_LISTNE"],
            ),
            (
                None,
                &[("WARDEN_HTTP_MAX_BODY_BYTES", "1MB")],
                &["WARDEN_HTTP_MAX_BODY_BYTES", "whole number"],
            ),
            (
                None,
                &[("WARDEN_LOG_FORMAT", "xml")],
                &["`log.format`", "WARDEN_LOG_FORMAT", "unknown variant"],
            ),
            (
                None,
                &[("WARDEN_DATABASE_URL", "mysql://x")],
                &["`database.url`", "WARDEN_DATABASE_URL"],
            ),
        ];
        for (file, variables, fragments) in cases {
            let message = error_of(*file, variables);
            for fragment in *fragments {
                assert!(
                    message.contains(fragment),
                    "{fragment:?} missing from {message:?}"
                );
            }
        }
    }
}
