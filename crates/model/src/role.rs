//! The roles an account can have; everything a role allows is decided by the policy, not here.

use std::fmt;
use std::str::FromStr;

/// What kind of person an account belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Owns and uses appliances; the role every sign-up gets.
    Customer,
    /// Services appliances, and only those an owner has granted.
    Technician,
    /// Operates Warden.
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected customer, technician or admin")]
pub struct RoleError(pub String);

impl Role {
    pub const ALL: [Role; 3] = [Role::Customer, Role::Technician, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Technician => "technician",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == input)
            .ok_or_else(|| RoleError(input.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!("Admin".parse::<Role>(), Err(RoleError("Admin".into())));
        assert_eq!("".parse::<Role>(), Err(RoleError(String::new())));
    }
}
