//! The decision: subject × action × device relation × time → a permit or a denial.

use std::fmt;
use std::marker::PhantomData;

use model::{DeviceId, Role, Timestamp, UserId};

use crate::action::{Action, ActionSet};

/// Who is asking. Admins and the platform's own services are subjects with rules of their own,
/// not bypasses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A person calling with their own access token.
    Person {
        user_id: UserId,
        role: Role,
        /// What the token's scopes allow; never more than the person's relation allows.
        token_allows: ActionSet,
    },
    /// A person with the admin role whose token carries the `admin` scope.
    Admin {
        user_id: UserId,
        token_allows: ActionSet,
    },
    /// One of Warden's own services (a client-credentials token, no person behind it).
    Service {
        client_id: String,
        token_allows: ActionSet,
    },
}

impl Subject {
    /// The person behind the subject, if there is one.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Subject::Person { user_id, .. } | Subject::Admin { user_id, .. } => Some(*user_id),
            Subject::Service { .. } => None,
        }
    }

    fn token_allows(&self) -> ActionSet {
        match self {
            Subject::Person { token_allows, .. }
            | Subject::Admin { token_allows, .. }
            | Subject::Service { token_allows, .. } => *token_allows,
        }
    }
}

impl fmt::Display for Subject {
    /// How the subject appears in logs and audit records.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Person { user_id, .. } => write!(f, "user:{user_id}"),
            Subject::Admin { user_id, .. } => write!(f, "admin:{user_id}"),
            Subject::Service { client_id, .. } => write!(f, "service:{client_id}"),
        }
    }
}

/// A technician grant's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantTerms {
    pub grantee: UserId,
    pub actions: ActionSet,
    pub expires_at: Timestamp,
    pub revoked: bool,
}

impl GrantTerms {
    /// Whether the grant lets `user_id` in at `now`: theirs, not revoked, not yet expired.
    fn admits(&self, user_id: UserId, now: Timestamp) -> bool {
        self.grantee == user_id && !self.revoked && now < self.expires_at
    }
}

/// What is known about one device that decisions depend on: its owner and the technician grants
/// on it (any grants; the decision picks the subject's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRelation {
    pub device_id: DeviceId,
    pub owner: Option<UserId>,
    pub grants: Vec<GrantTerms>,
}

/// Why an action was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    Owner,
    Grant,
    Admin,
    Service,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Owner => "owner",
            Basis::Grant => "grant",
            Basis::Admin => "admin",
            Basis::Service => "service",
        }
    }
}

/// Why an action was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The subject has no relation to the device at all; callers answer as if it did not exist.
    #[error("no such device")]
    NotVisible,
    /// The subject may see the device but not do this.
    #[error("your access to this device does not allow {0}")]
    NotPermitted(Action),
    /// The relation allows it but the token's scopes do not.
    #[error("the token lacks the {scope} scope this needs")]
    MissingScope { scope: &'static str },
}

/// What an admin may do to any device: look and keep firmware current. Settings, commands, grants
/// and ownership stay with the owner.
const ADMIN_ACTIONS: [Action; 3] = [
    Action::ReadStatus,
    Action::ReadEvents,
    Action::ManageFirmware,
];

/// What Warden's own services may do to any device: store and read what devices send, publish
/// desired state on an owner's behalf, roll out firmware. Never grants or ownership.
const SERVICE_ACTIONS: [Action; 4] = [
    Action::ReadStatus,
    Action::ReadEvents,
    Action::WriteSettings,
    Action::ManageFirmware,
];

/// The one decision.
pub fn decide(
    subject: &Subject,
    action: Action,
    device: &DeviceRelation,
    now: Timestamp,
) -> Result<Basis, Denial> {
    let basis = relation_allows(subject, action, device, now)?;
    if subject.token_allows().contains(action) {
        Ok(basis)
    } else {
        Err(Denial::MissingScope {
            scope: action.required_scope(),
        })
    }
}

/// Everything the subject may do to the device right now (for lists and detail views).
pub fn permissions(subject: &Subject, device: &DeviceRelation, now: Timestamp) -> ActionSet {
    Action::ALL
        .into_iter()
        .filter(|action| decide(subject, *action, device, now).is_ok())
        .collect()
}

fn relation_allows(
    subject: &Subject,
    action: Action,
    device: &DeviceRelation,
    now: Timestamp,
) -> Result<Basis, Denial> {
    match subject {
        Subject::Service { .. } => SERVICE_ACTIONS
            .contains(&action)
            .then_some(Basis::Service)
            .ok_or(Denial::NotPermitted(action)),
        Subject::Admin { user_id, .. } => {
            if device.owner == Some(*user_id) {
                Ok(Basis::Owner)
            } else if ADMIN_ACTIONS.contains(&action) {
                Ok(Basis::Admin)
            } else {
                Err(Denial::NotPermitted(action))
            }
        }
        Subject::Person { user_id, role, .. } => {
            if device.owner == Some(*user_id) {
                return Ok(Basis::Owner);
            }
            // A grant counts only while its holder is a technician: taking the role away ends
            // every grant at once.
            if *role != Role::Technician {
                return Err(Denial::NotVisible);
            }
            let mut grants = device
                .grants
                .iter()
                .filter(|grant| grant.admits(*user_id, now))
                .peekable();
            if grants.peek().is_none() {
                return Err(Denial::NotVisible);
            }
            if grants.any(|grant| grant.actions.contains(action) && action.is_grantable()) {
                Ok(Basis::Grant)
            } else {
                Err(Denial::NotPermitted(action))
            }
        }
    }
}

/// The kinds of permit; each names the one action its permit allows.
pub trait Permission {
    const ACTION: Action;
}

/// Marker types for [`Permit`], one per [`Action`].
pub mod may {
    use super::{Action, Permission};

    macro_rules! permissions {
        ($($name:ident),*) => {$(
            #[doc = concat!("Allows [`Action::", stringify!($name), "`].")]
            #[derive(Debug)]
            pub enum $name {}
            impl Permission for $name {
                const ACTION: Action = Action::$name;
            }
        )*};
    }

    permissions!(
        ReadStatus,
        ReadEvents,
        WriteSettings,
        SendCommands,
        ManageGrants,
        ManageOwnership,
        ManageFirmware
    );
}

/// Proof that a subject may take action `P` on one device: the only way to get one is
/// [`authorize`], and code that changes a device takes a permit instead of a device id, so it
/// cannot run without the check.
pub struct Permit<P: Permission> {
    device_id: DeviceId,
    subject: Subject,
    basis: Basis,
    kind: PhantomData<P>,
}

impl<P: Permission> Permit<P> {
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    pub fn basis(&self) -> Basis {
        self.basis
    }
}

impl<P: Permission> fmt::Debug for Permit<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("action", &P::ACTION)
            .field("device_id", &self.device_id)
            .field("subject", &self.subject)
            .field("basis", &self.basis)
            .finish()
    }
}

/// Decides, and on success hands out the capability.
pub fn authorize<P: Permission>(
    subject: &Subject,
    device: &DeviceRelation,
    now: Timestamp,
) -> Result<Permit<P>, Denial> {
    let basis = decide(subject, P::ACTION, device, now)?;
    Ok(Permit {
        device_id: device.device_id.clone(),
        subject: subject.clone(),
        basis,
        kind: PhantomData,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_000_000);

    fn user(n: u128) -> UserId {
        format!("00000000-0000-7000-8000-{n:012}").parse().unwrap()
    }

    fn all_scopes() -> ActionSet {
        ActionSet::all()
    }

    fn device(grants: Vec<GrantTerms>) -> DeviceRelation {
        DeviceRelation {
            device_id: DeviceId::parse("washer-1").unwrap(),
            owner: Some(user(1)),
            grants,
        }
    }

    fn grant(actions: &str, expires_in: i64, revoked: bool) -> GrantTerms {
        GrantTerms {
            grantee: user(2),
            actions: ActionSet::parse(actions).unwrap(),
            expires_at: Timestamp::from_unix_millis(NOW.unix_millis() + expires_in),
            revoked,
        }
    }

    fn person(n: u128, role: Role) -> Subject {
        Subject::Person {
            user_id: user(n),
            role,
            token_allows: all_scopes(),
        }
    }

    /// One row: a subject and a device, and the expected answer for every action in
    /// `Action::ALL` order (`O` owner, `G` grant, `A` admin, `S` service, `-` not visible,
    /// `x` not permitted, `s` missing scope).
    fn check(subject: Subject, device: DeviceRelation, expected: &str) {
        let got: String = Action::ALL
            .into_iter()
            .map(|action| match decide(&subject, action, &device, NOW) {
                Ok(Basis::Owner) => 'O',
                Ok(Basis::Grant) => 'G',
                Ok(Basis::Admin) => 'A',
                Ok(Basis::Service) => 'S',
                Err(Denial::NotVisible) => '-',
                Err(Denial::NotPermitted(_)) => 'x',
                Err(Denial::MissingScope { .. }) => 's',
            })
            .collect();
        assert_eq!(got, expected, "{subject} on {device:?}");
    }

    #[test]
    fn every_subject_and_action() {
        let technician = || person(2, Role::Technician);
        // Columns: read_status read_events write_settings send_commands manage_grants
        // manage_ownership manage_firmware.
        check(person(1, Role::Customer), device(vec![]), "OOOOOOO");
        check(person(3, Role::Customer), device(vec![]), "-------");
        check(technician(), device(vec![]), "-------");
        check(
            technician(),
            device(vec![grant("read_status", 1, false)]),
            "Gxxxxxx",
        );
        check(
            technician(),
            device(vec![grant(
                "read_status,read_events,write_settings,send_commands,manage_firmware",
                1,
                false,
            )]),
            "GGGGxxG",
        );
        // A grant recorded with non-grantable actions still cannot reach them.
        check(
            technician(),
            device(vec![grant(
                "manage_grants,manage_ownership,read_status",
                1,
                false,
            )]),
            "Gxxxxxx",
        );
        check(
            technician(),
            device(vec![grant("read_status", 0, false)]),
            "-------",
        );
        check(
            technician(),
            device(vec![grant("read_status", -5, false)]),
            "-------",
        );
        check(
            technician(),
            device(vec![grant("read_status", 1, true)]),
            "-------",
        );
        // Someone else's grant does not admit this technician.
        check(
            person(4, Role::Technician),
            device(vec![grant("read_status", 1, false)]),
            "-------",
        );
        // The grantee lost the technician role: the grant stops working.
        check(
            person(2, Role::Customer),
            device(vec![grant("read_status", 1, false)]),
            "-------",
        );
        // A person with the admin role but an ordinary token is an ordinary person.
        check(person(5, Role::Admin), device(vec![]), "-------");
        check(
            Subject::Admin {
                user_id: user(5),
                token_allows: all_scopes(),
            },
            device(vec![]),
            "AAxxxxA",
        );
        check(
            Subject::Admin {
                user_id: user(1),
                token_allows: all_scopes(),
            },
            device(vec![]),
            "OOOOOOO",
        );
        check(
            Subject::Service {
                client_id: "events".into(),
                token_allows: all_scopes(),
            },
            device(vec![]),
            "SSSxxxS",
        );
        let unclaimed = DeviceRelation {
            owner: None,
            ..device(vec![])
        };
        check(person(1, Role::Customer), unclaimed, "-------");
    }

    #[test]
    fn the_token_scopes_narrow_every_basis() {
        let read_only = ActionSet::allowed_by_scopes(["devices:read"]);
        check(
            Subject::Person {
                user_id: user(1),
                role: Role::Customer,
                token_allows: read_only,
            },
            device(vec![]),
            "OOsssss",
        );
        check(
            Subject::Person {
                user_id: user(2),
                role: Role::Technician,
                token_allows: ActionSet::EMPTY,
            },
            device(vec![grant("read_status,write_settings", 1, false)]),
            "sxsxxxx",
        );
        check(
            Subject::Service {
                client_id: "events".into(),
                token_allows: read_only,
            },
            device(vec![]),
            "SSsxxxs",
        );
        // Without a relation the scopes do not matter: the device stays invisible.
        check(
            Subject::Person {
                user_id: user(3),
                role: Role::Customer,
                token_allows: read_only,
            },
            device(vec![]),
            "-------",
        );
    }

    #[test]
    fn a_permit_names_its_device_and_basis() {
        let technician = person(2, Role::Technician);
        let relation = device(vec![grant("read_status", 1, false)]);
        let permit = authorize::<may::ReadStatus>(&technician, &relation, NOW).unwrap();
        assert_eq!(permit.device_id().as_str(), "washer-1");
        assert_eq!(permit.basis(), Basis::Grant);
        assert_eq!(
            authorize::<may::WriteSettings>(&technician, &relation, NOW).unwrap_err(),
            Denial::NotPermitted(Action::WriteSettings)
        );
        assert_eq!(
            permissions(&technician, &relation, NOW),
            ActionSet::parse("read_status").unwrap()
        );
    }
}
