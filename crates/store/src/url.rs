//! Where the database is: parsed once from configuration, with any password kept out of logs.

use std::fmt;
use std::path::{Path, PathBuf};

/// The two kinds of database Warden runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// A database location: a SQLite file, or a PostgreSQL connection URL.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error("the database URL must start with sqlite:// or postgres:// (got {scheme:?})")]
    UnknownScheme { scheme: String },
    #[error(
        "the SQLite URL names no file: write sqlite:///absolute/path.db or sqlite://relative/path.db"
    )]
    EmptyPath,
    #[error("the PostgreSQL URL has no host: write postgres://USER:PASSWORD@HOST:PORT/DATABASE")]
    MissingHost,
}

impl DatabaseUrl {
    pub fn parse(input: &str) -> Result<Self, DatabaseUrlError> {
        let (scheme, rest) = input.split_once("://").unwrap_or((input, ""));
        match scheme {
            "sqlite" => {
                // Query parameters are ours to set, not the operator's.
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(DatabaseUrlError::EmptyPath);
                }
                Ok(Self::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => {
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                let host = authority.rsplit('@').next().unwrap_or_default();
                if host.is_empty() || host.starts_with(':') {
                    return Err(DatabaseUrlError::MissingHost);
                }
                Ok(Self::Postgres(input.to_owned()))
            }
            other => Err(DatabaseUrlError::UnknownScheme {
                scheme: other.to_owned(),
            }),
        }
    }

    pub fn sqlite_file(path: &Path) -> Self {
        Self::Sqlite(path.to_path_buf())
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL handed to the driver. SQLite files are created when missing.
    pub(crate) fn connection_string(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            DatabaseUrl::Postgres(url) => url.clone(),
        }
    }
}

/// Shows the location with any password replaced, so the value is safe to log.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => {
                let Some((scheme, rest)) = url.split_once("://") else {
                    return f.write_str("postgres://<unparsable>");
                };
                let (authority, tail) = match rest.find(['/', '?']) {
                    Some(index) => rest.split_at(index),
                    None => (rest, ""),
                };
                match authority.rsplit_once('@') {
                    Some((credentials, host)) => {
                        let user = credentials.split(':').next().unwrap_or_default();
                        write!(f, "{scheme}://{user}:<redacted>@{host}{tail}")
                    }
                    None => write!(f, "{scheme}://{authority}{tail}"),
                }
            }
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, DatabaseUrlError>) {
        let actual = DatabaseUrl::parse(input).map(|url| url.to_string());
        assert_eq!(actual, expected.map(str::to_owned), "input {input:?}");
    }

    #[test]
    fn parses_both_backends_and_hides_passwords() {
        check(
            "sqlite:///var/lib/warden/warden.db",
            Ok("sqlite:///var/lib/warden/warden.db"),
        );
        check(
            "sqlite://data/warden.db?mode=ro",
            Ok("sqlite://data/warden.db"),
        );
        check("sqlite://", Err(DatabaseUrlError::EmptyPath));
        check(
            "postgres://warden:s3cret@db.example:5432/warden?sslmode=require",
            Ok("postgres://warden:<redacted>@db.example:5432/warden?sslmode=require"),
        );
        check(
            "postgresql://db.example/warden",
            Ok("postgresql://db.example/warden"),
        );
        check(
            "postgres://user:pw@/warden",
            Err(DatabaseUrlError::MissingHost),
        );
        check(
            "mysql://localhost/warden",
            Err(DatabaseUrlError::UnknownScheme {
                scheme: "mysql".into(),
            }),
        );
        check(
            "warden.db",
            Err(DatabaseUrlError::UnknownScheme {
                scheme: "warden.db".into(),
            }),
        );
    }

    #[test]
    fn debug_output_hides_the_password_too() {
        let url = DatabaseUrl::parse("postgres://warden:s3cret@db.example/warden").unwrap();
        assert!(!format!("{url:?}").contains("s3cret"));
    }
}
