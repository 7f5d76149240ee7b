//! The rules a technician grant must meet when an owner makes it.

use std::time::Duration;

use model::{Role, Timestamp, UserId};
use policy::{Action, ActionSet};

/// The longest a grant may run; a technician's visit is days, not a standing access.
pub const MAX_GRANT: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// An owner's request to let `grantee` in, as parsed from the API.
#[derive(Clone, Debug)]
pub struct GrantRequest {
    pub grantee: UserId,
    pub grantee_role: Role,
    pub actions: ActionSet,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("access can be granted only to an account with the technician role")]
    NotATechnician,
    #[error("you cannot grant access to yourself")]
    ToSelf,
    #[error("a grant needs at least one scope")]
    NoScopes,
    #[error("{0} cannot be granted; it stays with the owner")]
    NotGrantable(Action),
    #[error("the expiry must be in the future")]
    AlreadyExpired,
    #[error("a grant can last at most 90 days")]
    TooLong,
}

impl GrantRequest {
    /// Checks the request of `owner` at `now`.
    pub fn check(&self, owner: UserId, now: Timestamp) -> Result<(), GrantError> {
        if self.grantee == owner {
            return Err(GrantError::ToSelf);
        }
        if self.grantee_role != Role::Technician {
            return Err(GrantError::NotATechnician);
        }
        if self.actions.is_empty() {
            return Err(GrantError::NoScopes);
        }
        if let Some(action) = self.actions.iter().find(|action| !action.is_grantable()) {
            return Err(GrantError::NotGrantable(action));
        }
        if self.expires_at <= now {
            return Err(GrantError::AlreadyExpired);
        }
        if self.expires_at > now.plus(MAX_GRANT) {
            return Err(GrantError::TooLong);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_000_000);

    fn user(n: u128) -> UserId {
        format!("00000000-0000-7000-8000-{n:012}").parse().unwrap()
    }

    fn check(
        grantee: u128,
        role: Role,
        actions: &str,
        expires_in: Duration,
        expected: Result<(), GrantError>,
    ) {
        let request = GrantRequest {
            grantee: user(grantee),
            grantee_role: role,
            actions: ActionSet::parse(actions).unwrap(),
            expires_at: NOW.plus(expires_in),
        };
        assert_eq!(request.check(user(1), NOW), expected, "{request:?}");
    }

    #[test]
    fn grant_rules() {
        let hour = Duration::from_secs(3600);
        check(2, Role::Technician, "read_status", hour, Ok(()));
        check(
            2,
            Role::Technician,
            "read_status,write_settings,send_commands",
            MAX_GRANT,
            Ok(()),
        );
        check(
            2,
            Role::Customer,
            "read_status",
            hour,
            Err(GrantError::NotATechnician),
        );
        check(
            2,
            Role::Admin,
            "read_status",
            hour,
            Err(GrantError::NotATechnician),
        );
        check(
            1,
            Role::Technician,
            "read_status",
            hour,
            Err(GrantError::ToSelf),
        );
        check(2, Role::Technician, "", hour, Err(GrantError::NoScopes));
        check(
            2,
            Role::Technician,
            "read_status,manage_grants",
            hour,
            Err(GrantError::NotGrantable(Action::ManageGrants)),
        );
        check(
            2,
            Role::Technician,
            "read_status",
            Duration::ZERO,
            Err(GrantError::AlreadyExpired),
        );
        check(
            2,
            Role::Technician,
            "read_status",
            MAX_GRANT + Duration::from_millis(1),
            Err(GrantError::TooLong),
        );
    }
}
