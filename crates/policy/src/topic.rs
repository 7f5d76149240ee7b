//! MQTT topics under `devices/` and subscription filters, and who may publish or subscribe to
//! them: the topic table of DESIGN.md as decisions, on top of [`crate::decide`].
//!
//! Deny by default: a topic outside the table, a filter that could match a topic the subscriber
//! may not read, or a wildcard in the device level for anyone whose rules do not reach every
//! device, is refused, never narrowed.

use std::fmt;

use model::{DeviceId, Timestamp};

use crate::{Action, DeviceRelation, Subject, decide};

/// The topics a device has, after `devices/{id}/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `events`
    Events,
    /// `state/reported`
    StateReported,
    /// `state/desired`
    StateDesired,
    /// `commands/{name}`
    Command,
    /// `commands/{name}/response`
    CommandResponse,
    /// `ota`
    Ota,
    /// `ota/status`
    OtaStatus,
    /// `presence`
    Presence,
    /// `certificate/request`: a device asks for a new certificate (a CSR).
    CertificateRequest,
    /// `certificate`: the platform's answer, the new certificate chain or why not.
    Certificate,
}

/// Who may publish to a kind of topic, besides the device where it says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publisher {
    /// The device itself.
    Device,
    /// People and services with the action.
    Allowed(Action),
    /// Only Warden's own services with the action.
    Platform(Action),
}

impl TopicKind {
    pub const ALL: [TopicKind; 10] = [
        TopicKind::Events,
        TopicKind::StateReported,
        TopicKind::StateDesired,
        TopicKind::Command,
        TopicKind::CommandResponse,
        TopicKind::Ota,
        TopicKind::OtaStatus,
        TopicKind::Presence,
        TopicKind::CertificateRequest,
        TopicKind::Certificate,
    ];

    /// The levels after the device id; `None` stands for the command's name.
    fn pattern(self) -> &'static [Option<&'static str>] {
        match self {
            TopicKind::Events => &[Some("events")],
            TopicKind::StateReported => &[Some("state"), Some("reported")],
            TopicKind::StateDesired => &[Some("state"), Some("desired")],
            TopicKind::Command => &[Some("commands"), None],
            TopicKind::CommandResponse => &[Some("commands"), None, Some("response")],
            TopicKind::Ota => &[Some("ota")],
            TopicKind::OtaStatus => &[Some("ota"), Some("status")],
            TopicKind::Presence => &[Some("presence")],
            TopicKind::CertificateRequest => &[Some("certificate"), Some("request")],
            TopicKind::Certificate => &[Some("certificate")],
        }
    }

    fn publisher(self) -> Publisher {
        match self {
            TopicKind::Events
            | TopicKind::StateReported
            | TopicKind::CommandResponse
            | TopicKind::OtaStatus
            | TopicKind::CertificateRequest => Publisher::Device,
            TopicKind::StateDesired => Publisher::Allowed(Action::WriteSettings),
            TopicKind::Command => Publisher::Allowed(Action::SendCommands),
            TopicKind::Ota => Publisher::Platform(Action::ManageFirmware),
            // The device's will message, or the platform when it sees the device go.
            TopicKind::Presence => Publisher::Platform(Action::ReadStatus),
            // Warden answers from inside the broker. No client may publish it: no service may
            // manage ownership, and a certificate is the device's identity, which goes with it.
            TopicKind::Certificate => Publisher::Platform(Action::ManageOwnership),
        }
    }

    /// The device publishes to the kinds it does not subscribe to, and the other way round,
    /// except presence, which only others read.
    fn device_publishes(self) -> bool {
        matches!(self.publisher(), Publisher::Device) || self == TopicKind::Presence
    }

    fn device_subscribes(self) -> bool {
        matches!(
            self,
            TopicKind::StateDesired | TopicKind::Command | TopicKind::Ota | TopicKind::Certificate
        )
    }

    /// What a person or service needs to subscribe; `None`: only the device subscribes.
    fn reader_action(self) -> Option<Action> {
        match self {
            TopicKind::Events => Some(Action::ReadEvents),
            TopicKind::StateReported | TopicKind::CommandResponse | TopicKind::Presence => {
                Some(Action::ReadStatus)
            }
            TopicKind::OtaStatus => Some(Action::ManageFirmware),
            // Only the platform reads a device's certificate requests, in-process.
            TopicKind::StateDesired
            | TopicKind::Command
            | TopicKind::Ota
            | TopicKind::CertificateRequest
            | TopicKind::Certificate => None,
        }
    }
}

/// A topic a message is published to, parsed: `devices/{id}/…` of a known kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceTopic {
    pub device_id: DeviceId,
    pub kind: TopicKind,
    /// The command's name, for command topics.
    pub command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topics and filters are 1 to 65535 bytes without NUL")]
    Length,
    #[error("'+' and '#' must fill a whole level, and '#' must be the last")]
    Wildcard,
    #[error("a topic name cannot contain '+' or '#'")]
    WildcardInTopic,
    #[error("a shared subscription is $share/GROUP/FILTER")]
    Share,
    #[error("not a device topic: devices/{{id}}/ then one of the topics in the topic table")]
    NotADeviceTopic,
}

fn is_command_name(level: &str) -> bool {
    !level.is_empty()
        && level.len() <= 64
        && level != "response"
        && level
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
}

impl DeviceTopic {
    /// Parses a topic name (no wildcards) of the device topic table.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if topic.is_empty() || topic.len() > 65_535 || topic.contains('\0') {
            return Err(TopicError::Length);
        }
        if topic.contains(['+', '#']) {
            return Err(TopicError::WildcardInTopic);
        }
        let levels: Vec<&str> = topic.split('/').collect();
        let (Some(&"devices"), Some(id)) = (levels.first(), levels.get(1)) else {
            return Err(TopicError::NotADeviceTopic);
        };
        let device_id = DeviceId::parse(id).map_err(|_| TopicError::NotADeviceTopic)?;
        let rest = &levels[2..];
        TopicKind::ALL
            .into_iter()
            .find(|kind| {
                let pattern = kind.pattern();
                pattern.len() == rest.len()
                    && pattern.iter().zip(rest).all(|(want, have)| match want {
                        Some(literal) => literal == have,
                        None => is_command_name(have),
                    })
            })
            .map(|kind| DeviceTopic {
                device_id: device_id.clone(),
                kind,
                command: matches!(kind, TopicKind::Command | TopicKind::CommandResponse)
                    .then(|| rest[1].to_owned()),
            })
            .ok_or(TopicError::NotADeviceTopic)
    }
}

impl fmt::Display for DeviceTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "devices/{}", self.device_id)?;
        for level in self.kind.pattern() {
            match level {
                Some(literal) => write!(f, "/{literal}")?,
                None => write!(f, "/{}", self.command.as_deref().unwrap_or_default())?,
            }
        }
        Ok(())
    }
}

/// One level of a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    Exact(String),
    /// `+`
    One,
    /// `#`
    Rest,
}

/// A subscription filter, parsed and checked against the MQTT rules (`+` and `#` fill a level,
/// `#` comes last). A shared subscription (`$share/GROUP/FILTER`) keeps its group apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicFilter {
    levels: Vec<Level>,
    pub share_group: Option<String>,
}

/// Which devices a filter can reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterReach {
    /// Only this device's topics.
    Device(DeviceId),
    /// Topics of every device (a wildcard in the device level).
    AllDevices,
    /// Nothing under `devices/{id}/` at all.
    NoDevice,
}

impl TopicFilter {
    pub fn parse(filter: &str) -> Result<Self, TopicError> {
        let (share_group, filter) = match filter.strip_prefix("$share/") {
            Some(shared) => {
                let (group, inner) = shared.split_once('/').ok_or(TopicError::Share)?;
                if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
                    return Err(TopicError::Share);
                }
                (Some(group.to_owned()), inner)
            }
            None => (None, filter),
        };
        if filter.is_empty() || filter.len() > 65_535 || filter.contains('\0') {
            return Err(TopicError::Length);
        }
        let parts: Vec<&str> = filter.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            levels.push(match *part {
                "+" => Level::One,
                "#" if index == parts.len() - 1 => Level::Rest,
                part if part.contains(['+', '#']) => return Err(TopicError::Wildcard),
                part => Level::Exact(part.to_owned()),
            });
        }
        Ok(Self {
            levels,
            share_group,
        })
    }

    /// The devices whose topics the filter can match.
    pub fn reach(&self) -> FilterReach {
        match self.levels.first() {
            Some(Level::Exact(first)) if first == "devices" => {}
            // `+/…` and `#` reach `devices/…` too.
            Some(Level::One | Level::Rest) => return FilterReach::AllDevices,
            _ => return FilterReach::NoDevice,
        }
        match self.levels.get(1) {
            Some(Level::Exact(id)) => DeviceId::parse(id)
                .map(FilterReach::Device)
                .unwrap_or(FilterReach::NoDevice),
            Some(Level::One | Level::Rest) => FilterReach::AllDevices,
            None => FilterReach::NoDevice,
        }
    }

    /// The kinds of device topic the filter can match, whatever device it reaches.
    pub fn kinds(&self) -> Vec<TopicKind> {
        let rest: &[Level] = match self.levels.first() {
            // `#` at the top matches every topic of every device.
            Some(Level::Rest) => return TopicKind::ALL.to_vec(),
            _ => self.levels.get(2..).unwrap_or_default(),
        };
        TopicKind::ALL
            .into_iter()
            .filter(|kind| levels_can_match(rest, kind.pattern()))
            .collect()
    }
}

/// Whether some topic of the pattern matches the filter levels.
fn levels_can_match(filter: &[Level], pattern: &[Option<&str>]) -> bool {
    match (filter.first(), pattern.first()) {
        (Some(Level::Rest), _) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(level), Some(want)) => {
            let fits = match (level, want) {
                (Level::One, _) => true,
                (Level::Exact(have), Some(literal)) => have == literal,
                (Level::Exact(have), None) => is_command_name(have),
                (Level::Rest, _) => true,
            };
            fits && levels_can_match(&filter[1..], &pattern[1..])
        }
    }
}

/// Who is on the other end of an MQTT session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MqttClient {
    /// A device, proven by its certificate and password.
    Device(DeviceId),
    /// A person or service, proven by an access token.
    Subject(Subject),
}

impl MqttClient {
    /// Whether deciding for this client needs the device's relation (owner and grants): a
    /// device's rights follow from its id alone, so the broker's hot path for devices reads
    /// nothing.
    pub fn needs_relation(&self) -> bool {
        matches!(self, MqttClient::Subject(_))
    }
}

/// Whether `client` may publish to `topic`. `device` is the relation of the topic's device, or
/// `None` when it is not in the registry.
pub fn may_publish(
    client: &MqttClient,
    topic: &DeviceTopic,
    device: Option<&DeviceRelation>,
    now: Timestamp,
) -> bool {
    match client {
        MqttClient::Device(device_id) => {
            *device_id == topic.device_id && topic.kind.device_publishes()
        }
        MqttClient::Subject(subject) => {
            let Some(device) = device else { return false };
            match topic.kind.publisher() {
                Publisher::Device => false,
                Publisher::Allowed(action) => decide(subject, action, device, now).is_ok(),
                Publisher::Platform(action) => {
                    matches!(subject, Subject::Service { .. })
                        && decide(subject, action, device, now).is_ok()
                }
            }
        }
    }
}

/// Whether `client` may subscribe to `filter`: every topic it could match must be one the client
/// may read. `device` is the relation of the one device the filter reaches, if it reaches one
/// that is in the registry.
pub fn may_subscribe(
    client: &MqttClient,
    filter: &TopicFilter,
    device: Option<&DeviceRelation>,
    now: Timestamp,
) -> bool {
    let kinds = filter.kinds();
    if kinds.is_empty() {
        return false;
    }
    match (client, filter.reach()) {
        (_, FilterReach::NoDevice) => false,
        (MqttClient::Device(device_id), FilterReach::Device(reached)) => {
            *device_id == reached && kinds.iter().all(|kind| kind.device_subscribes())
        }
        (MqttClient::Device(_), FilterReach::AllDevices) => false,
        (MqttClient::Subject(subject), FilterReach::Device(_)) => {
            let Some(device) = device else { return false };
            readable(subject, &kinds, device, now)
        }
        (MqttClient::Subject(subject), FilterReach::AllDevices) => {
            // Allowed only where the subject's rules reach a device it has no relation to: then
            // they reach every device.
            let Ok(any) = DeviceId::parse("any") else {
                return false;
            };
            let unrelated = DeviceRelation {
                device_id: any,
                owner: None,
                grants: Vec::new(),
            };
            readable(subject, &kinds, &unrelated, now)
        }
    }
}

fn readable(
    subject: &Subject,
    kinds: &[TopicKind],
    device: &DeviceRelation,
    now: Timestamp,
) -> bool {
    kinds.iter().all(|kind| {
        kind.reader_action()
            .is_some_and(|action| decide(subject, action, device, now).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use model::{Role, UserId};

    use super::*;
    use crate::{ActionSet, GrantTerms};

    const NOW: Timestamp = Timestamp::from_unix_millis(1_000_000);

    fn user(n: u128) -> UserId {
        format!("00000000-0000-7000-8000-{n:012}").parse().unwrap()
    }

    fn relation() -> DeviceRelation {
        DeviceRelation {
            device_id: DeviceId::parse("washer-1").unwrap(),
            owner: Some(user(1)),
            grants: vec![GrantTerms {
                grantee: user(2),
                actions: ActionSet::parse("read_status").unwrap(),
                expires_at: Timestamp::from_unix_millis(2_000_000),
                revoked: false,
            }],
        }
    }

    fn person(n: u128, role: Role) -> MqttClient {
        MqttClient::Subject(Subject::Person {
            user_id: user(n),
            role,
            token_allows: ActionSet::all(),
        })
    }

    fn device(id: &str) -> MqttClient {
        MqttClient::Device(DeviceId::parse(id).unwrap())
    }

    fn service() -> MqttClient {
        MqttClient::Subject(Subject::Service {
            client_id: "events".into(),
            token_allows: ActionSet::all(),
        })
    }

    #[test]
    fn a_devices_rights_do_not_depend_on_its_relation() {
        let washer = device("washer-1");
        assert!(!washer.needs_relation());
        assert!(person(1, Role::Customer).needs_relation() && service().needs_relation());
        for topic in [
            "devices/washer-1/events",
            "devices/washer-1/state/desired",
            "devices/washer-1/presence",
            "devices/washer-2/events",
        ] {
            let topic = DeviceTopic::parse(topic).unwrap();
            assert_eq!(
                may_publish(&washer, &topic, None, NOW),
                may_publish(&washer, &topic, Some(&relation()), NOW),
                "{topic}"
            );
        }
        for filter in ["devices/washer-1/commands/+", "devices/washer-1/events"] {
            let filter = TopicFilter::parse(filter).unwrap();
            assert_eq!(
                may_subscribe(&washer, &filter, None, NOW),
                may_subscribe(&washer, &filter, Some(&relation()), NOW)
            );
        }
    }

    #[test]
    fn topics_parse_into_the_table_and_nothing_else() {
        let parsed = DeviceTopic::parse("devices/washer-1/commands/start/response").unwrap();
        assert_eq!(parsed.kind, TopicKind::CommandResponse);
        assert_eq!(parsed.command.as_deref(), Some("start"));
        assert_eq!(
            parsed.to_string(),
            "devices/washer-1/commands/start/response"
        );
        for topic in [
            "devices/washer-1/events",
            "devices/washer-1/state/reported",
            "devices/washer-1/state/desired",
            "devices/washer-1/commands/start",
            "devices/washer-1/ota",
            "devices/washer-1/ota/status",
            "devices/washer-1/presence",
        ] {
            assert_eq!(DeviceTopic::parse(topic).unwrap().to_string(), topic);
        }
        for bad in [
            "devices/washer-1",
            "devices/washer-1/",
            "devices/washer-1/events/x",
            "devices/Washer/events",
            "devices/washer-1/commands/Start",
            "devices/washer-1/commands/response",
            "other/washer-1/events",
            "/devices/washer-1/events",
        ] {
            assert_eq!(
                DeviceTopic::parse(bad),
                Err(TopicError::NotADeviceTopic),
                "{bad}"
            );
        }
        assert_eq!(
            DeviceTopic::parse("devices/+/events"),
            Err(TopicError::WildcardInTopic)
        );
        assert_eq!(DeviceTopic::parse(""), Err(TopicError::Length));
    }

    #[test]
    fn filters_follow_the_mqtt_rules() {
        for bad in [
            "devices/#/events",
            "devices/wa+/events",
            "a/b#",
            "",
            "$share/g",
            "$share//a",
        ] {
            assert!(TopicFilter::parse(bad).is_err(), "{bad}");
        }
        let shared = TopicFilter::parse("$share/store/devices/+/events").unwrap();
        assert_eq!(shared.share_group.as_deref(), Some("store"));
        assert_eq!(shared.reach(), FilterReach::AllDevices);
        assert_eq!(shared.kinds(), [TopicKind::Events]);
        let all = TopicFilter::parse("devices/washer-1/#").unwrap();
        assert_eq!(all.kinds(), TopicKind::ALL);
        let some = TopicFilter::parse("devices/washer-1/commands/+").unwrap();
        assert_eq!(some.kinds(), [TopicKind::Command]);
        assert_eq!(
            TopicFilter::parse("#").unwrap().reach(),
            FilterReach::AllDevices
        );
        assert_eq!(
            TopicFilter::parse("other/x").unwrap().reach(),
            FilterReach::NoDevice
        );
    }

    /// `expected`: one character per subscription filter, `y` granted and `n` refused.
    fn check_subscribe(client: MqttClient, expected: &str) {
        let filters = [
            "devices/washer-1/events",
            "devices/washer-1/state/reported",
            "devices/washer-1/state/desired",
            "devices/washer-1/commands/start",
            "devices/washer-1/commands/+",
            "devices/washer-1/commands/+/response",
            "devices/washer-1/ota",
            "devices/washer-1/ota/status",
            "devices/washer-1/presence",
            "devices/washer-1/#",
            "devices/+/events",
            "$share/store/devices/+/events",
            "#",
            "devices/washer-2/events",
            "devices/washer-1/certificate/request",
            "devices/washer-1/certificate",
        ];
        let relation = relation();
        let got: String = filters
            .iter()
            .map(|filter| {
                let filter = TopicFilter::parse(filter).unwrap();
                let device = match filter.reach() {
                    FilterReach::Device(id) if id == relation.device_id => Some(&relation),
                    _ => None,
                };
                if may_subscribe(&client, &filter, device, NOW) {
                    'y'
                } else {
                    'n'
                }
            })
            .collect();
        assert_eq!(got, expected, "{client:?}");
    }

    #[test]
    fn who_may_subscribe_to_what() {
        check_subscribe(device("washer-1"), "nnyyynynnnnnnnny");
        check_subscribe(device("washer-2"), "nnnnnnnnnnnnnnnn");
        check_subscribe(person(1, Role::Customer), "yynnnynyynnnnnnn");
        check_subscribe(person(2, Role::Technician), "nynnnynnynnnnnnn");
        check_subscribe(person(3, Role::Customer), "nnnnnnnnnnnnnnnn");
        check_subscribe(service(), "yynnnynyynyynnnn");
    }

    fn check_publish(client: MqttClient, expected: &str) {
        let topics = [
            "devices/washer-1/events",
            "devices/washer-1/state/reported",
            "devices/washer-1/state/desired",
            "devices/washer-1/commands/start",
            "devices/washer-1/commands/start/response",
            "devices/washer-1/ota",
            "devices/washer-1/ota/status",
            "devices/washer-1/presence",
            "devices/washer-1/certificate/request",
            "devices/washer-1/certificate",
        ];
        let relation = relation();
        let got: String = topics
            .iter()
            .map(|topic| {
                let topic = DeviceTopic::parse(topic).unwrap();
                if may_publish(&client, &topic, Some(&relation), NOW) {
                    'y'
                } else {
                    'n'
                }
            })
            .collect();
        assert_eq!(got, expected, "{client:?}");
    }

    #[test]
    fn who_may_publish_to_what() {
        check_publish(device("washer-1"), "yynnynyyyn");
        check_publish(device("washer-2"), "nnnnnnnnnn");
        check_publish(person(1, Role::Customer), "nnyynnnnnn");
        check_publish(person(2, Role::Technician), "nnnnnnnnnn");
        check_publish(person(3, Role::Customer), "nnnnnnnnnn");
        check_publish(service(), "nnynnynynn");
    }
}
