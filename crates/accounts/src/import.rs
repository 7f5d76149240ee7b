//! Bulk import of accounts: one JSON object per line, all validated before anything is written.
//!
//! ```json
//! {"email": "ada@example.com", "password_hash": "$2b$12$…", "role": "customer"}
//! ```
//!
//! `role` is optional (default `customer`). `password_hash` is a bcrypt or Argon2id hash; clear-text
//! passwords are never accepted here. A file with any bad line is refused whole, with every bad
//! line reported by number, so a half-imported user base never happens.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

use model::{Email, PasswordHash, Role};
use serde::Deserialize;

/// One account to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedUser {
    pub email: Email,
    pub password_hash: PasswordHash,
    pub role: Role,
}

/// A line that cannot be imported, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// Why an import file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the import file: {0}")]
    Read(#[from] std::io::Error),
    #[error("{} bad line(s); nothing was imported", .0.len())]
    BadLines(Vec<LineError>),
}

/// The longest line accepted; a real account record is far shorter.
pub const MAX_LINE_BYTES: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    email: String,
    password_hash: String,
    #[serde(default)]
    role: Option<String>,
}

/// Reads and validates a whole import file. Blank lines are skipped.
pub fn parse(reader: impl BufRead) -> Result<Vec<ImportedUser>, ImportError> {
    let mut users = Vec::new();
    let mut errors = Vec::new();
    let mut first_seen: HashMap<Email, usize> = HashMap::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok(user) => match first_seen.get(&user.email) {
                Some(first) => errors.push(LineError {
                    line: number,
                    problem: format!("{} already appears on line {first}", user.email),
                }),
                None => {
                    first_seen.insert(user.email.clone(), number);
                    users.push(user);
                }
            },
            Err(problem) => errors.push(LineError {
                line: number,
                problem,
            }),
        }
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        Err(ImportError::BadLines(errors))
    }
}

fn parse_line(line: &str) -> Result<ImportedUser, String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!("longer than {MAX_LINE_BYTES} bytes"));
    }
    let record: Record =
        serde_json::from_str(line).map_err(|error| format!("not a valid record: {error}"))?;
    let email = Email::parse(&record.email).map_err(|error| format!("email: {error}"))?;
    let password_hash = PasswordHash::parse(&record.password_hash)
        .map_err(|error| format!("password_hash: {error}"))?;
    let role = match record.role.as_deref() {
        None => Role::Customer,
        Some(role) => role.parse().map_err(|error| format!("role: {error}"))?,
    };
    Ok(ImportedUser {
        email,
        password_hash,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";

    fn line(email: &str, role: Option<&str>) -> String {
        match role {
            Some(role) => {
                format!(r#"{{"email":"{email}","password_hash":"{HASH}","role":"{role}"}}"#)
            }
            None => format!(r#"{{"email":"{email}","password_hash":"{HASH}"}}"#),
        }
    }

    #[test]
    fn a_good_file_yields_every_user_with_default_roles() {
        let file = format!(
            "{}\n\n{}\n",
            line("Ada@Example.com", None),
            line("tech@example.com", Some("technician"))
        );
        let users = parse(file.as_bytes()).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].email.as_str(), "ada@example.com");
        assert_eq!(users[0].role, Role::Customer);
        assert_eq!(users[1].role, Role::Technician);
    }

    #[test]
    fn every_bad_line_is_reported_by_number_and_nothing_is_returned() {
        let file = [
            line("ok@example.com", None),
            "not json".to_owned(),
            line("bad-address", None),
            r#"{"email":"x@example.com","password_hash":"hunter2"}"#.to_owned(),
            line("y@example.com", Some("root")),
            line("OK@example.com", None),
            r#"{"email":"z@example.com","password_hash":"h","extra":1}"#.to_owned(),
            "x".repeat(MAX_LINE_BYTES + 1),
        ]
        .join("\n");
        let Err(ImportError::BadLines(errors)) = parse(file.as_bytes()) else {
            panic!("the file must be refused");
        };
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8]);
        assert!(errors[1].problem.starts_with("email:"), "{}", errors[1]);
        assert!(
            errors[2].problem.starts_with("password_hash:"),
            "{}",
            errors[2]
        );
        assert!(errors[3].problem.contains("unknown role"), "{}", errors[3]);
        assert!(
            errors[4].problem.contains("already appears on line 1"),
            "{}",
            errors[4]
        );
        assert!(errors[5].problem.contains("unknown field"), "{}", errors[5]);
        assert!(errors[6].problem.contains("longer than"), "{}", errors[6]);
    }
}
