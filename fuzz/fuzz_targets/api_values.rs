//! The values Warden parses out of API requests, device messages and command lines, each with
//! the public function the HTTP API calls on them (the request body types themselves are private
//! to `http-api`: see docs/fuzzing.md): ids, e-mail addresses, roles, password hashes, times,
//! model names and tags, claim codes, command names, grant actions, firmware versions and rollout
//! stages, event query cursors and filters, session cookies, TOTP secrets and codes, new
//! passwords, database URLs, and the account import file.
//!
//! Input: the first line names the value (`email`, `claim_code`, …, see `match` below); the rest
//! is the text to parse.
//!
//! Properties: nothing panics, and every value that has a written form reads back from it as the
//! same value: a parsed value is already normal, so the text Warden stores or shows parses again
//! to what it parsed.

#![no_main]

use std::sync::OnceLock;

use accounts::breached::BreachedPasswords;
use accounts::password::Password;
use accounts::totp::TotpSecret;
use libfuzzer_sys::fuzz_target;
use model::{DeviceId, Email, PasswordHash, Role, Timestamp, UserId};
use policy::ActionSet;
use policy::topic::DeviceTopic;
use registry::{ClaimCode, CommandName, ModelName, Tag, parse_tags};
use warden_fuzz::{NOW, check};

fn common_passwords() -> &'static breach::BreachFilter {
    static FILTER: OnceLock<breach::BreachFilter> = OnceLock::new();
    FILTER.get_or_init(|| accounts::breached::common_passwords().expect("the built-in list"))
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = warden_fuzz::text(data) else {
        return;
    };
    let (kind, input) = warden_fuzz::first_line(text);
    match kind {
        "device_id" => {
            if let Ok(device_id) = DeviceId::parse(input) {
                check!(
                    "device-id",
                    device_id.as_str() == input && device_id.to_string() == input,
                    "{input:?} became {device_id}"
                );
            }
        }
        "email" => {
            if let Ok(email) = Email::parse(input) {
                let again = Email::parse(email.as_str());
                check!(
                    "email-normal",
                    again.as_ref() == Ok(&email),
                    "{input:?} is kept as {:?}, which parses as {again:?}",
                    email.as_str()
                );
            }
        }
        "user_id" => {
            if let Ok(user_id) = input.parse::<UserId>() {
                check!(
                    "user-id",
                    user_id.to_string().parse::<UserId>() == Ok(user_id),
                    "{input:?} is written as {user_id}"
                );
            }
        }
        "role" => {
            if let Ok(role) = input.parse::<Role>() {
                check!("role", role.as_str() == input, "{input:?} became {role}");
            }
        }
        "password_hash" => {
            if let Ok(hash) = PasswordHash::parse(input) {
                check!(
                    "password-hash",
                    PasswordHash::parse(hash.as_str()).as_ref() == Ok(&hash),
                    "{input:?} does not read back"
                );
            }
        }
        "timestamp" => {
            if let Some(at) = Timestamp::parse_rfc3339(input) {
                let written = at.to_rfc3339_millis();
                check!(
                    "timestamp-roundtrip",
                    Timestamp::parse_rfc3339(&written) == Some(at),
                    "{input:?} is {at}, written as {written:?}, which reads {:?}",
                    Timestamp::parse_rfc3339(&written)
                );
                let _ = at.to_rfc3339();
            }
        }
        "model" => {
            if let Ok(model) = ModelName::parse(input) {
                check!(
                    "model-name",
                    model.as_str() == input,
                    "{input:?} became {model}"
                );
            }
        }
        "tags" => {
            let texts: Vec<&str> = input.split(',').collect();
            if let Ok(tags) = parse_tags(&texts) {
                check!(
                    "tags",
                    tags.len() <= registry::MAX_TAGS
                        && tags.windows(2).all(|pair| pair[0] < pair[1])
                        && tags
                            .iter()
                            .all(|tag| Tag::parse(tag.as_str()).as_ref() == Ok(tag)),
                    "{texts:?} became {tags:?}"
                );
            }
        }
        "claim_code" => {
            if let Ok(code) = ClaimCode::parse(input) {
                let grouped = ClaimCode::parse(&code.grouped());
                let canonical = ClaimCode::parse(code.as_str());
                check!(
                    "claim-code",
                    grouped.as_ref().map(ClaimCode::as_str) == Ok(code.as_str())
                        && canonical.as_ref().map(ClaimCode::as_str) == Ok(code.as_str()),
                    "{input:?} is {:?} ({:?}), which reads back as {:?}",
                    code.as_str(),
                    code.grouped(),
                    grouped.as_ref().map(ClaimCode::as_str)
                );
                if let Ok(device_id) = DeviceId::parse("washer-1") {
                    let _ = code.label_uri(&device_id);
                }
            }
        }
        "command" => {
            if let Ok(command) = CommandName::parse(input) {
                let topic = format!("devices/washer-1/commands/{command}");
                let parsed = DeviceTopic::parse(&topic);
                check!(
                    "command-topic",
                    command.as_str() == input
                        && parsed
                            .as_ref()
                            .is_ok_and(|topic| topic.command.as_deref() == Some(input)),
                    "the command {input:?} is sent on {topic:?}, which the broker reads as {parsed:?}"
                );
            }
        }
        "actions" => {
            if let Ok(actions) = ActionSet::parse(input) {
                let written: Vec<&str> = actions.iter().map(|action| action.as_str()).collect();
                check!(
                    "actions",
                    ActionSet::parse(&written.join(",")) == Ok(actions),
                    "{input:?} is written as {written:?}"
                );
            }
        }
        "version" => {
            if let Ok(version) = firmware::parse_version(input) {
                check!(
                    "firmware-version",
                    firmware::parse_version(&version.to_string()) == Ok(version.clone()),
                    "{input:?} is written as {version}"
                );
            }
        }
        "stages" => {
            let percentages: Vec<u8> = input
                .split(',')
                .filter_map(|part| part.trim().parse().ok())
                .collect();
            if let Ok(stages) = firmware::Stages::new(percentages) {
                for total in [0usize, 1, 3, 99, 100, 1001] {
                    let reached: Vec<usize> = (0..=stages.last())
                        .map(|stage| stages.reach(stage, total))
                        .collect();
                    check!(
                        "stages",
                        reached.windows(2).all(|pair| pair[0] <= pair[1])
                            && reached.last() == Some(&total),
                        "stages {:?} reach {reached:?} of {total}",
                        stages.percentages()
                    );
                }
            }
        }
        "cursor" => {
            if let Ok(cursor) = events::Cursor::decode(input) {
                check!(
                    "cursor",
                    events::Cursor::decode(&cursor.encode()) == Ok(cursor),
                    "{input:?} is {cursor:?}, written as {:?}",
                    cursor.encode()
                );
            }
        }
        "field" => {
            let (name, value) = input.split_once('=').unwrap_or((input, ""));
            if let Ok(field) = events::FieldFilter::new(name, value) {
                check!(
                    "field",
                    field.name() == name,
                    "{name:?} became {:?}",
                    field.name()
                );
            }
        }
        "session" => {
            if let Some(token) = accounts::session::SessionToken::parse(input) {
                check!("session", token.as_str() == input, "{input:?} changed");
                let _ = token.hash();
            }
        }
        "totp" => {
            let (secret, code) = warden_fuzz::first_line(input);
            if let Some(secret) = TotpSecret::from_base32(secret) {
                check!(
                    "totp",
                    TotpSecret::from_base32(&secret.to_base32()).as_ref() == Some(&secret),
                    "a TOTP secret does not read back from its base32"
                );
                let _ = secret.verify(code, NOW, None);
                let step = accounts::totp::step_at(NOW);
                let current = secret.code_at_step(step);
                check!(
                    "totp",
                    secret.verify(&current, NOW, None) == Some(step)
                        && secret.verify(&current, NOW, Some(step)).is_none(),
                    "the current code {current:?} is not accepted once"
                );
                let _ = secret.otpauth_uri("Warden", code);
            }
        }
        "password" => {
            let (email, password) = warden_fuzz::first_line(input);
            if let Ok(email) = Email::parse(email) {
                let password = Password::new(password);
                let _ = accounts::rules::check_new_password(&password, &email, common_passwords());
                let _ = common_passwords().contains(&password);
            }
        }
        "part" => {
            if let Ok(part) = pki::PartName::parse(input) {
                check!("part", part.as_str() == input, "{input:?} changed");
            }
        }
        "revocation" => {
            if let Ok(reason) = pki::RevocationReason::parse(input) {
                check!("revocation", reason.as_str() == input, "{input:?} changed");
            }
        }
        "database_url" => {
            let _ = store::DatabaseUrl::parse(input);
        }
        "encryption_key" => {
            let _ = pki::KeyEncryptionKey::parse(input);
        }
        "rate" => {
            let (rate, burst) = warden_fuzz::first_line(input);
            let _ = gateway::Rate::parse(rate, burst.trim().parse().ok());
        }
        "ota_state" => {
            if let Some(state) = firmware::OtaState::parse(input) {
                check!("ota-state", state.as_str() == input, "{input:?} changed");
            }
        }
        "import" => import(input),
        _ => {}
    }
});

/// The account import file (`warden admin users import`).
fn import(input: &str) {
    match accounts::import::parse(input.as_bytes()) {
        Ok(users) => {
            for (index, user) in users.iter().enumerate() {
                let again = Email::parse(user.email.as_str());
                check!(
                    "email-normal",
                    again.as_ref() == Ok(&user.email),
                    "an imported e-mail address is kept as {:?}, which parses as {again:?}",
                    user.email.as_str()
                );
                check!(
                    "import-distinct",
                    users[..index].iter().all(|other| other.email != user.email),
                    "{} is imported twice",
                    user.email
                );
            }
        }
        Err(accounts::import::ImportError::BadLines(lines)) => {
            check!(
                "import-errors",
                !lines.is_empty(),
                "refused without a bad line"
            );
        }
        Err(_) => {}
    }
}
