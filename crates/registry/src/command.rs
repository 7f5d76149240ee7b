//! Commands to a device: their names (a topic level), lifetimes and states.

use std::fmt;
use std::time::Duration;

use model::Timestamp;

/// A command's name, the last level of `devices/{id}/commands/{name}`: 1 to 64 lower-case letters,
/// digits, `-` and `_`, so it can never add a level or a wildcard to the topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a command name is 1 to 64 lower-case letters, digits, '-' or '_'")]
pub struct CommandNameError;

impl CommandName {
    pub fn parse(input: &str) -> Result<Self, CommandNameError> {
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_');
        // "response" is the reply topic's last level; a command by that name would collide.
        if input.is_empty()
            || input.len() > 64
            || !input.chars().all(allowed)
            || input == "response"
        {
            return Err(CommandNameError);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shortest and longest time a command may wait for its device.
pub const TTL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 60 * 60));

/// Where a command is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandStatus {
    /// Sent, not yet answered, still within its time to live.
    Pending,
    /// The device answered; the response is stored with the command.
    Answered,
    /// The time to live passed before an answer came; a late answer is refused.
    Expired,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Pending => "pending",
            CommandStatus::Answered => "answered",
            CommandStatus::Expired => "expired",
        }
    }

    /// The status at `now` of a command stored as answered or not, with its expiry.
    pub fn at(answered: bool, expires_at: Timestamp, now: Timestamp) -> Self {
        if answered {
            CommandStatus::Answered
        } else if now >= expires_at {
            CommandStatus::Expired
        } else {
            CommandStatus::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_stay_one_topic_level() {
        for good in ["start", "set-program", "dry_2"] {
            assert!(CommandName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "+", "#", "Start", "response", &"a".repeat(65)] {
            assert_eq!(CommandName::parse(bad), Err(CommandNameError), "{bad:?}");
        }
    }

    #[test]
    fn a_command_expires_unless_answered() {
        let at = Timestamp::from_unix_millis;
        assert_eq!(
            CommandStatus::at(false, at(10), at(9)),
            CommandStatus::Pending
        );
        assert_eq!(
            CommandStatus::at(false, at(10), at(10)),
            CommandStatus::Expired
        );
        assert_eq!(
            CommandStatus::at(true, at(10), at(11)),
            CommandStatus::Answered
        );
    }
}
