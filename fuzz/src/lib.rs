//! What the fuzz targets share: fixed keys and a CA made once per process, the fixed clock they
//! judge time by, splitting an input into its parts, an MQTT topic matcher written from the
//! specification to hold the policy against, and the switch that lets a run go on past a finding
//! that is known and not yet fixed.

use std::sync::OnceLock;
use std::time::Duration;

use model::Timestamp;
use tokens::keys::{KeyRing, SigningKey};

/// The time every target judges tokens, grants and certificates by: 2023-11-14T22:13:20Z.
pub const NOW: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

/// Whether the property named `finding` may fail without stopping the run: the names listed,
/// comma-separated, in `WARDEN_FUZZ_ALLOW`. Only for going on fuzzing past a finding that is
/// already reported; `scripts/fuzz` sets nothing, so every finding fails the run until fixed.
pub fn allowed(finding: &str) -> bool {
    static ALLOWED: OnceLock<Vec<String>> = OnceLock::new();
    ALLOWED
        .get_or_init(|| {
            std::env::var("WARDEN_FUZZ_ALLOW")
                .unwrap_or_default()
                .split(',')
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .collect()
        })
        .iter()
        .any(|name| name == finding)
}

/// Asserts `holds` for the property `finding`, unless the finding is allowed (see [`allowed`]).
#[macro_export]
macro_rules! check {
    ($finding:expr, $holds:expr, $($message:tt)+) => {
        if !$holds && !$crate::allowed($finding) {
            panic!("[{}] {}", $finding, format!($($message)+));
        }
    };
}

/// The input as text, or `None` when it is not UTF-8 (every parser here takes `&str`).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// The input's first byte (a mode: which way the target reads the rest) and the rest as text;
/// `None` when the input is empty or the rest is not UTF-8.
pub fn mode_and_text(data: &[u8]) -> Option<(u8, &str)> {
    let (&mode, rest) = data.split_first()?;
    Some((mode, text(rest)?))
}

/// The input cut at its first `\n`: the first line and the rest (empty when there is no `\n`).
pub fn first_line(text: &str) -> (&str, &str) {
    text.split_once('\n').unwrap_or((text, ""))
}

/// The input cut at every line that is exactly `---`: the parts of a multi-part seed.
pub fn parts(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == "---" {
            parts.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    parts.push(&text[start..]);
    parts
}

/// Whether MQTT topic filter `filter` matches topic name `topic`, by MQTT 3.1.1 section 4.7 and
/// MQTT 5 section 4.8.2: `+` is one whole level, `#` the rest including the parent level, a
/// wildcard in the first level does not match a topic starting with `$`, and a shared
/// subscription `$share/GROUP/FILTER` matches what FILTER matches.
pub fn mqtt_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(shared) => match shared.split_once('/') {
            Some((group, inner)) if !group.is_empty() => inner,
            _ => return false,
        },
        None => filter,
    };
    let filter: Vec<&str> = filter.split('/').collect();
    let topic: Vec<&str> = topic.split('/').collect();
    if topic[0].starts_with('$') && matches!(filter[0], "+" | "#") {
        return false;
    }
    let mut index = 0;
    loop {
        match (filter.get(index), topic.get(index)) {
            (Some(&"#"), _) => return index + 1 == filter.len(),
            (Some(&"+"), Some(_)) => {}
            (Some(want), Some(have)) if want == have => {}
            (None, None) => return true,
            _ => return false,
        }
        index += 1;
    }
}

/// Two signing keys with the same `kid` and different key material, in rings of their own: a
/// token signed with `genuine` must never verify with `impostor`.
pub struct Keys {
    pub genuine: SigningKey,
    pub impostor: SigningKey,
    pub genuine_ring: KeyRing,
    pub impostor_ring: KeyRing,
}

/// The keys, made once per process (key generation would dominate every iteration).
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let created = Timestamp::from_unix_millis(NOW.unix_millis() - 86_400_000);
        let genuine = SigningKey::generate(created, created).expect("a P-256 key");
        let mut impostor = SigningKey::generate(created, created).expect("a P-256 key");
        impostor.kid = genuine.kid.clone();
        let retention = Duration::from_secs(3600);
        Keys {
            genuine_ring: KeyRing::new(vec![genuine.clone()], retention),
            impostor_ring: KeyRing::new(vec![impostor.clone()], retention),
            genuine,
            impostor,
        }
    })
}

/// A root and an issuing intermediate, made once per process.
pub fn authority() -> &'static pki::Authority {
    static AUTHORITY: OnceLock<pki::Authority> = OnceLock::new();
    AUTHORITY.get_or_init(|| {
        let root = pki::create_root(NOW).expect("a root CA");
        let intermediate = pki::issue_intermediate(&root, NOW).expect("an intermediate CA");
        pki::Authority::new(&root.certificate_pem, &intermediate).expect("an authority")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matcher_follows_the_specification_examples() {
        let check = |filter: &str, topic: &str, expected: bool| {
            assert_eq!(mqtt_matches(filter, topic), expected, "{filter} vs {topic}");
        };
        check("sport/tennis/player1/#", "sport/tennis/player1", true);
        check(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        );
        check("sport/#", "sport", true);
        check("#", "sport/tennis", true);
        check("sport/tennis/+", "sport/tennis/player1", true);
        check("sport/tennis/+", "sport/tennis/player1/ranking", false);
        check("sport/+", "sport", false);
        check("sport/+", "sport/", true);
        check("+/+", "/finance", true);
        check("/+", "/finance", true);
        check("+", "/finance", false);
        check("#", "$SYS/x", false);
        check("+/monitor/Clients", "$SYS/monitor/Clients", false);
        check("$SYS/#", "$SYS/x", true);
        check("$share/g/devices/+/events", "devices/a/events", true);
        check("devices/#/x", "devices/a/x", false);
    }

    #[test]
    fn parts_split_at_separator_lines() {
        assert_eq!(parts("a\n---\nb\n"), vec!["a\n", "b\n"]);
        assert_eq!(parts("a"), vec!["a"]);
    }
}
