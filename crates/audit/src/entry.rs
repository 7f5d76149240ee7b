//! What an audit entry says, and the hash that chains it to the one before.

use std::fmt;

use model::Timestamp;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// A SHA-256 value: an entry's hash, or the hash it follows.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// What the first entry of a journal follows.
    pub const GENESIS: Digest = Digest([0; 32]);

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn parse_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A person, with the e-mail address they had then (so that the record reads on its own).
    User { id: String, email: Option<String> },
    /// An OAuth client acting for itself (client credentials).
    Client { id: String },
    /// A device, proven by its certificate and password.
    Device { id: String },
    /// One of Warden's parts running apart, proven by its workload certificate.
    Part { name: String },
    /// The operator at the server's command line (`warden admin …`), by operating-system user.
    Operator { name: String },
    /// Someone not (yet) known: a failed login names the account it tried in the target.
    Anonymous,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User { .. } => "user",
            Actor::Client { .. } => "client",
            Actor::Device { .. } => "device",
            Actor::Part { .. } => "part",
            Actor::Operator { .. } => "operator",
            Actor::Anonymous => "anonymous",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Actor::User { id, .. }
            | Actor::Client { id }
            | Actor::Device { id }
            | Actor::Part { name: id }
            | Actor::Operator { name: id } => id,
            Actor::Anonymous => "",
        }
    }

    pub fn label(&self) -> Option<&str> {
        match self {
            Actor::User { email, .. } => email.as_deref(),
            _ => None,
        }
    }

    /// The actor from its stored columns; `None` for a kind this version does not know.
    pub fn from_parts(kind: &str, id: String, label: Option<String>) -> Option<Self> {
        Some(match kind {
            "user" => Actor::User { id, email: label },
            "client" => Actor::Client { id },
            "device" => Actor::Device { id },
            "part" => Actor::Part { name: id },
            "operator" => Actor::Operator { name: id },
            "anonymous" => Actor::Anonymous,
            _ => return None,
        })
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.label() {
            Some(label) => write!(f, "{}:{} ({label})", self.kind(), self.id()),
            None => write!(f, "{}:{}", self.kind(), self.id()),
        }
    }
}

/// What was acted on: a kind (`account`, `device`, `grant`, …) and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: String,
    pub id: String,
}

impl Target {
    pub fn new(kind: &str, id: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.into(),
        }
    }
}

/// How the action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The action was tried and failed (a wrong password, a reused code).
    Failure,
    /// The policy refused it.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// Every action the journal records, named `area.verb`. The names are the stored form and the
/// API's; they never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    AccountSignup,
    AccountLogin,
    AccountLogout,
    AccountPasswordChange,
    AccountSecondFactorEnable,
    AccountSecondFactorDisable,
    AccountRoleChange,
    AccountImport,
    TokenIssue,
    TokenRevoke,
    /// An authorization code or refresh token used twice: what it issued is revoked.
    TokenReuse,
    ClientCreate,
    DeviceCreate,
    DeviceClaim,
    DeviceRelease,
    DeviceTransfer,
    DeviceClaimCode,
    DeviceSchema,
    DeviceTags,
    /// A read of a device's data by someone other than its owner.
    DeviceRead,
    /// A request on a device its caller can see but may not do (a technician outside the grant's
    /// scopes, say).
    DeviceAccessDenied,
    DeviceSettingsChange,
    DeviceCommand,
    GrantCreate,
    GrantRevoke,
    CertificateIssue,
    CertificateRenew,
    CertificateRevoke,
    CaInit,
    CaExportRoot,
    CaRemoveRootKey,
    CaImportRootKey,
    CaReissueIntermediate,
    KeyRotate,
    KeyRetire,
    FirmwareUpload,
    FirmwareOffer,
    FirmwareRollout,
    AuditRead,
}

impl Action {
    pub const ALL: [Action; 39] = [
        Action::AccountSignup,
        Action::AccountLogin,
        Action::AccountLogout,
        Action::AccountPasswordChange,
        Action::AccountSecondFactorEnable,
        Action::AccountSecondFactorDisable,
        Action::AccountRoleChange,
        Action::AccountImport,
        Action::TokenIssue,
        Action::TokenRevoke,
        Action::TokenReuse,
        Action::ClientCreate,
        Action::DeviceCreate,
        Action::DeviceClaim,
        Action::DeviceRelease,
        Action::DeviceTransfer,
        Action::DeviceClaimCode,
        Action::DeviceSchema,
        Action::DeviceTags,
        Action::DeviceRead,
        Action::DeviceAccessDenied,
        Action::DeviceSettingsChange,
        Action::DeviceCommand,
        Action::GrantCreate,
        Action::GrantRevoke,
        Action::CertificateIssue,
        Action::CertificateRenew,
        Action::CertificateRevoke,
        Action::CaInit,
        Action::CaExportRoot,
        Action::CaRemoveRootKey,
        Action::CaImportRootKey,
        Action::CaReissueIntermediate,
        Action::KeyRotate,
        Action::KeyRetire,
        Action::FirmwareUpload,
        Action::FirmwareOffer,
        Action::FirmwareRollout,
        Action::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::AccountSignup => "account.signup",
            Action::AccountLogin => "account.login",
            Action::AccountLogout => "account.logout",
            Action::AccountPasswordChange => "account.password_change",
            Action::AccountSecondFactorEnable => "account.second_factor_enable",
            Action::AccountSecondFactorDisable => "account.second_factor_disable",
            Action::AccountRoleChange => "account.role_change",
            Action::AccountImport => "account.import",
            Action::TokenIssue => "token.issue",
            Action::TokenRevoke => "token.revoke",
            Action::TokenReuse => "token.reuse",
            Action::ClientCreate => "client.create",
            Action::DeviceCreate => "device.create",
            Action::DeviceClaim => "device.claim",
            Action::DeviceRelease => "device.release",
            Action::DeviceTransfer => "device.transfer",
            Action::DeviceClaimCode => "device.claim_code",
            Action::DeviceSchema => "device.schema",
            Action::DeviceTags => "device.tags",
            Action::DeviceRead => "device.read",
            Action::DeviceAccessDenied => "device.access_denied",
            Action::DeviceSettingsChange => "device.settings_change",
            Action::DeviceCommand => "device.command",
            Action::GrantCreate => "grant.create",
            Action::GrantRevoke => "grant.revoke",
            Action::CertificateIssue => "certificate.issue",
            Action::CertificateRenew => "certificate.renew",
            Action::CertificateRevoke => "certificate.revoke",
            Action::CaInit => "ca.init",
            Action::CaExportRoot => "ca.export_root",
            Action::CaRemoveRootKey => "ca.remove_root_key",
            Action::CaImportRootKey => "ca.import_root_key",
            Action::CaReissueIntermediate => "ca.reissue_intermediate",
            Action::KeyRotate => "key.rotate",
            Action::KeyRetire => "key.retire",
            Action::FirmwareUpload => "firmware.upload",
            Action::FirmwareOffer => "firmware.offer",
            Action::FirmwareRollout => "firmware.rollout",
            Action::AuditRead => "audit.read",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == text)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one entry says: everything but its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub at: Timestamp,
    pub actor: Actor,
    /// An [`Action`] name; kept as text so that entries of later versions still read.
    pub action: String,
    pub target: Target,
    /// The device the action concerns, when there is one: what an owner's access log selects on.
    pub device: Option<String>,
    pub outcome: Outcome,
    /// The caller's network address, when the action came over the network.
    pub source: Option<String>,
    pub request_id: Option<String>,
    /// A JSON object with the action's particulars (scopes, a grant id, a reason); never a
    /// secret. Kept as the text that was hashed.
    pub detail: String,
}

impl Record {
    /// A successful `action` by `actor` on `target` at `at`, with no particulars yet.
    pub fn new(at: Timestamp, actor: Actor, action: Action, target: Target) -> Self {
        Self {
            at,
            actor,
            action: action.as_str().to_owned(),
            target,
            device: None,
            outcome: Outcome::Success,
            source: None,
            request_id: None,
            detail: "{}".to_owned(),
        }
    }

    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }

    /// Names the device the action concerns from what is already said: the target when it is a
    /// device, else a `device_id` in the particulars (a certificate issued for a device, say).
    pub fn device_from_target(mut self) -> Self {
        self.device = if self.target.kind == "device" {
            Some(self.target.id.clone())
        } else {
            self.detail_json()["device_id"].as_str().map(str::to_owned)
        };
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Adds particulars: the members of `detail` join (and replace) those already set; a value
    /// that is not an object is kept under `value`.
    pub fn detail(mut self, detail: Value) -> Self {
        let added = match detail {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        let mut object = match self.detail_json() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        object.extend(added);
        self.detail = Value::Object(object).to_string();
        self
    }

    /// The particulars as JSON (an empty object when the stored text is not one).
    pub fn detail_json(&self) -> Value {
        serde_json::from_str(&self.detail).unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// This record's hash when it follows `previous`: SHA-256 over a domain tag, `previous`, and
    /// every field length-prefixed (an absent field is marked apart from an empty one), so no two
    /// different records hash alike. The sequence number is not hashed: an entry's place is the
    /// hash it follows.
    pub fn hash_after(&self, previous: Digest) -> Digest {
        let mut hasher = Sha256::new();
        hasher.update(b"warden-audit-entry-v1\0");
        hasher.update(previous.0);
        let at = self.at.unix_millis().to_string();
        let fields: [Option<&str>; 12] = [
            Some(&at),
            Some(self.actor.kind()),
            Some(self.actor.id()),
            self.actor.label(),
            Some(&self.action),
            Some(&self.target.kind),
            Some(&self.target.id),
            self.device.as_deref(),
            Some(self.outcome.as_str()),
            self.source.as_deref(),
            self.request_id.as_deref(),
            Some(&self.detail),
        ];
        for field in fields {
            match field {
                Some(text) => {
                    let length = u32::try_from(text.len()).unwrap_or(u32::MAX - 1);
                    hasher.update(length.to_be_bytes());
                    hasher.update(text.as_bytes());
                }
                None => hasher.update(u32::MAX.to_be_bytes()),
            }
        }
        Digest(hasher.finalize().into())
    }
}

/// A record in its place: its number, the hash it follows and its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub record: Record,
    pub prev_hash: Digest,
    pub hash: Digest,
}

impl Entry {
    /// The entry whole, as admins read it and exports write it (one NDJSON line each); `detail`
    /// is the hashed text parsed, which serializes back to the same text.
    pub fn to_json(&self) -> Value {
        let record = &self.record;
        serde_json::json!({
            "seq": self.seq,
            "at": record.at.to_rfc3339_millis(),
            "actor": { "kind": record.actor.kind(), "id": record.actor.id(), "email": record.actor.label() },
            "action": record.action,
            "target": { "kind": record.target.kind, "id": record.target.id },
            "device_id": record.device,
            "outcome": record.outcome.as_str(),
            "source": record.source,
            "request_id": record.request_id,
            "detail": record.detail_json(),
            "prev_hash": self.prev_hash.to_hex(),
            "hash": self.hash.to_hex(),
        })
    }

    /// Whether the stored hash is the hash of what the entry says after what it claims to follow.
    pub fn is_intact(&self) -> bool {
        self.record.hash_after(self.prev_hash) == self.hash
    }
}

/// Where the journal ends: the last entry's number and hash (0 and [`Digest::GENESIS`] when
/// empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: Digest,
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: Digest::GENESIS,
    };
}

/// Puts `records` in the journal after `head`: numbers and hashes them in order. Returns the
/// entries and the new head.
pub fn link(head: Head, records: Vec<Record>) -> (Vec<Entry>, Head) {
    let mut head = head;
    let entries = records
        .into_iter()
        .map(|record| {
            let hash = record.hash_after(head.hash);
            let entry = Entry {
                seq: head.seq + 1,
                record,
                prev_hash: head.hash,
                hash,
            };
            head = Head {
                seq: entry.seq,
                hash,
            };
            entry
        })
        .collect();
    (entries, head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(action: Action) -> Record {
        Record::new(
            Timestamp::from_unix_millis(1_700_000_000_000),
            Actor::User {
                id: "u1".into(),
                email: Some("a@example.com".into()),
            },
            action,
            Target::new("device", "d1"),
        )
        .device("d1")
    }

    #[test]
    fn every_action_name_parses_back_and_is_unique() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        let mut names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = record(Action::DeviceRead);
        let original = base.hash_after(Digest::GENESIS);
        let mut variants = vec![
            Record {
                at: Timestamp::from_unix_millis(1),
                ..base.clone()
            },
            Record {
                actor: Actor::Client { id: "u1".into() },
                ..base.clone()
            },
            Record {
                actor: Actor::User {
                    id: "u1".into(),
                    email: None,
                },
                ..base.clone()
            },
            Record {
                action: "device.claim".into(),
                ..base.clone()
            },
            Record {
                target: Target::new("grant", "d1"),
                ..base.clone()
            },
            Record {
                device: None,
                ..base.clone()
            },
            Record {
                device: Some(String::new()),
                ..base.clone()
            },
            base.clone().outcome(Outcome::Denied),
            Record {
                source: Some("127.0.0.1".into()),
                ..base.clone()
            },
            Record {
                request_id: Some("r".into()),
                ..base.clone()
            },
            base.clone().detail(json!({"grant": "g1"})),
        ];
        variants.push(base.clone());
        let hashes: Vec<_> = variants
            .iter()
            .map(|r| r.hash_after(Digest::GENESIS))
            .collect();
        for hash in &hashes[..hashes.len() - 1] {
            assert_ne!(*hash, original);
        }
        assert_eq!(hashes[hashes.len() - 1], original);
        assert_ne!(base.hash_after(Digest([1; 32])), original);
    }

    #[test]
    fn link_numbers_and_chains_in_order() {
        let (entries, head) = link(
            Head::EMPTY,
            vec![record(Action::DeviceRead), record(Action::GrantCreate)],
        );
        assert_eq!(entries[0].seq, 1);
        assert_eq!(entries[0].prev_hash, Digest::GENESIS);
        assert_eq!(entries[1].prev_hash, entries[0].hash);
        assert_eq!(head.seq, 2);
        assert_eq!(head.hash, entries[1].hash);
        assert!(entries.iter().all(Entry::is_intact));
    }

    #[test]
    fn the_device_comes_from_the_target_or_the_particulars() {
        let base = Record::new(
            Timestamp::from_unix_millis(1),
            Actor::Anonymous,
            Action::CertificateIssue,
            Target::new("certificate", "0a"),
        );
        assert_eq!(base.clone().device_from_target().device, None);
        let named = base.clone().detail(json!({"device_id": "d7"}));
        assert_eq!(named.device_from_target().device.as_deref(), Some("d7"));
        let device = Record {
            target: Target::new("device", "d9"),
            ..base
        };
        assert_eq!(device.device_from_target().device.as_deref(), Some("d9"));
    }

    #[test]
    fn particulars_add_up() {
        let record = record(Action::GrantCreate)
            .detail(json!({"a": 1, "b": 2}))
            .detail(json!({"b": 3}))
            .detail(json!("plain"));
        assert_eq!(
            record.detail_json(),
            json!({"a": 1, "b": 3, "value": "plain"})
        );
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let digest = Digest([0xab; 32]);
        assert_eq!(Digest::parse_hex(&digest.to_hex()), Some(digest));
        assert_eq!(Digest::parse_hex("abcd"), None);
        assert_eq!(Digest::parse_hex("zz"), None);
    }
}
