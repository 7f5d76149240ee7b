//! Scopes: the OpenID Connect ones and Warden's device scopes, parsed from the space-separated form.

use std::collections::BTreeSet;
use std::fmt;

/// Every scope Warden knows. Anything else in a request is refused, never ignored.
pub const KNOWN_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "offline_access",
    "devices:read",
    "devices:write",
    "devices:command",
    "devices:manage",
    "firmware:manage",
    "admin",
    // Services running apart from Warden that ask whether a password hash is breached.
    "breach:read",
    // Parts that ask the authorization policy about someone else's token (gateway, broker hooks).
    "authz:check",
];

/// A set of known scopes, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<&'static str>);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}")]
pub struct UnknownScope(pub String);

impl Scopes {
    /// Parses `scope` as OAuth writes it (RFC 6749 section 3.3): space-separated, case-sensitive.
    pub fn parse(scope: &str) -> Result<Self, UnknownScope> {
        scope
            .split(' ')
            .filter(|item| !item.is_empty())
            .map(|item| {
                KNOWN_SCOPES
                    .iter()
                    .find(|known| **known == item)
                    .copied()
                    .ok_or_else(|| UnknownScope(item.to_owned()))
            })
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.0.iter().copied().collect();
        f.write_str(&joined.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_from_the_space_separated_form_and_unknown_ones_are_refused() {
        let scopes = Scopes::parse("devices:read  openid").unwrap();
        assert_eq!(scopes.to_string(), "devices:read openid");
        assert!(scopes.contains("openid"));
        assert!(Scopes::parse("").unwrap().is_empty());
        assert_eq!(
            Scopes::parse("openid Devices:read"),
            Err(UnknownScope("Devices:read".into()))
        );
        let all = Scopes::parse("devices:read devices:write openid").unwrap();
        assert!(scopes.is_subset_of(&all));
        assert!(!all.is_subset_of(&scopes));
    }
}
