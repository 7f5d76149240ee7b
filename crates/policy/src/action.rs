//! The actions one can take on a device, the token scopes that allow them, and sets of actions (a
//! technician grant's scopes).

use std::fmt;

/// Something a subject may or may not do to one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The device's detail, reported and desired state, and command results.
    ReadStatus,
    /// The events the device sent.
    ReadEvents,
    /// The desired settings.
    WriteSettings,
    /// Commands to the device.
    SendCommands,
    /// Granting technicians access and revoking it.
    ManageGrants,
    /// Releasing the device or transferring it to another account; the owner's alone.
    ManageOwnership,
    /// Firmware updates for the device.
    ManageFirmware,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown action {0:?}: expected one of read_status, read_events, write_settings, send_commands, manage_grants, manage_ownership, manage_firmware"
)]
pub struct UnknownAction(pub String);

impl Action {
    pub const ALL: [Action; 7] = [
        Action::ReadStatus,
        Action::ReadEvents,
        Action::WriteSettings,
        Action::SendCommands,
        Action::ManageGrants,
        Action::ManageOwnership,
        Action::ManageFirmware,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadStatus => "read_status",
            Action::ReadEvents => "read_events",
            Action::WriteSettings => "write_settings",
            Action::SendCommands => "send_commands",
            Action::ManageGrants => "manage_grants",
            Action::ManageOwnership => "manage_ownership",
            Action::ManageFirmware => "manage_firmware",
        }
    }

    pub fn parse(input: &str) -> Result<Self, UnknownAction> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == input)
            .ok_or_else(|| UnknownAction(input.to_owned()))
    }

    /// The OAuth scope a token must carry for its bearer to take this action.
    pub fn required_scope(self) -> &'static str {
        match self {
            Action::ReadStatus | Action::ReadEvents => "devices:read",
            Action::WriteSettings => "devices:write",
            Action::SendCommands => "devices:command",
            Action::ManageGrants | Action::ManageOwnership => "devices:manage",
            Action::ManageFirmware => "firmware:manage",
        }
    }

    /// Whether an owner may hand this action to a technician. Managing grants and ownership stays
    /// with the owner, so a technician can never widen or pass on their own access.
    pub fn is_grantable(self) -> bool {
        !matches!(self, Action::ManageGrants | Action::ManageOwnership)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of actions, for example a grant's scopes or what a token's scopes allow.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ActionSet(u8);

impl ActionSet {
    pub const EMPTY: ActionSet = ActionSet(0);

    pub fn all() -> Self {
        Action::ALL.into_iter().collect()
    }

    /// The actions a token with these OAuth scopes allows.
    pub fn allowed_by_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let scopes: Vec<&str> = scopes.into_iter().collect();
        Action::ALL
            .into_iter()
            .filter(|action| scopes.contains(&action.required_scope()))
            .collect()
    }

    /// Parses a comma- or space-separated list of action names, as a grant's scopes are written.
    pub fn parse(input: &str) -> Result<Self, UnknownAction> {
        input
            .split([',', ' '])
            .filter(|name| !name.is_empty())
            .map(Action::parse)
            .collect()
    }

    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersection(self, other: ActionSet) -> ActionSet {
        ActionSet(self.0 & other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL
            .into_iter()
            .filter(move |action| self.contains(*action))
    }
}

impl FromIterator<Action> for ActionSet {
    fn from_iter<I: IntoIterator<Item = Action>>(actions: I) -> Self {
        ActionSet(
            actions
                .into_iter()
                .fold(0, |bits, action| bits | action.bit()),
        )
    }
}

impl fmt::Display for ActionSet {
    /// Comma-separated names, the form [`ActionSet::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Action::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for ActionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActionSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Ok(action));
        }
        assert_eq!(
            Action::parse("write"),
            Err(UnknownAction("write".to_owned()))
        );
        let set = ActionSet::parse("read_status, read_events").unwrap();
        assert_eq!(set.to_string(), "read_status,read_events");
        assert_eq!(ActionSet::parse(&set.to_string()), Ok(set));
        assert!(ActionSet::parse("read_status,root").is_err());
        assert!(ActionSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn scopes_allow_their_actions_only() {
        fn check(scopes: &str, expected: &str) {
            let allowed = ActionSet::allowed_by_scopes(scopes.split(' '));
            assert_eq!(allowed.to_string(), expected, "scopes {scopes:?}");
        }
        check("openid", "");
        check("openid devices:read", "read_status,read_events");
        check("devices:write", "write_settings");
        check("devices:command", "send_commands");
        check("devices:manage", "manage_grants,manage_ownership");
        check(
            "firmware:manage devices:read",
            "read_status,read_events,manage_firmware",
        );
    }

    #[test]
    fn only_device_use_is_grantable() {
        let grantable: Vec<Action> = Action::ALL
            .into_iter()
            .filter(|a| a.is_grantable())
            .collect();
        assert_eq!(
            grantable,
            [
                Action::ReadStatus,
                Action::ReadEvents,
                Action::WriteSettings,
                Action::SendCommands,
                Action::ManageFirmware
            ]
        );
    }
}
