//! Gateway rules files, as `warden gateway check-rules` and the server's rules reload read them:
//! `gateway::RuleSet::parse` in YAML and in JSON.
//!
//! Properties: parsing never panics; a refusal names at least one problem, each with a location
//! and a message; a YAML file and the same document written as JSON are judged alike (same rule
//! ids, or both refused); and for accepted rules, matching a set of requests never panics.

#![no_main]

use gateway::{Format, RequestUrl, RuleSet};
use http::Method;
use libfuzzer_sys::fuzz_target;
use warden_fuzz::check;

/// Requests every rules file is probed with: the shipped rules' routes and some near misses.
const PROBES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("POST", "/login"),
    ("GET", "/console/app.js"),
    ("POST", "/oauth2/token"),
    ("GET", "/api/v1/devices/washer-1/state"),
    ("PUT", "/api/v1/devices/washer-1/state/desired"),
    ("POST", "/api/v1/devices/washer-1/commands/start"),
    ("GET", "/api/v1/devices/washer-1/events"),
    ("DELETE", "/api/v1/devices/a/b/c"),
    ("GET", "/internal/breached/00"),
    ("GET", "/"),
    ("OPTIONS", "/x"),
    ("GET", "/%2e%2e/admin"),
];

fuzz_target!(|data: &[u8]| {
    let Some(text) = warden_fuzz::text(data) else {
        return;
    };
    let yaml = RuleSet::parse(text, Format::Yaml);
    let json = RuleSet::parse(text, Format::Json);
    for result in [&yaml, &json] {
        if let Err(error) = result {
            check!(
                "gateway-problems",
                !error.problems.is_empty(),
                "a refusal without problems"
            );
            for problem in &error.problems {
                check!(
                    "gateway-problems",
                    !problem.location.is_empty() && !problem.message.is_empty(),
                    "a problem without location or message: {problem:?}"
                );
            }
        }
    }

    // The same document as JSON is judged as the YAML file was.
    if let Ok(document) = serde_yaml_ng::from_str::<serde_json::Value>(text)
        && let Ok(as_json) = serde_json::to_string(&document)
    {
        let from_json = RuleSet::parse(&as_json, Format::Json);
        let ids = |rules: &Result<RuleSet, gateway::RulesError>| {
            rules.as_ref().ok().map(|rules| {
                rules
                    .rules
                    .iter()
                    .map(|rule| rule.id.clone())
                    .collect::<Vec<_>>()
            })
        };
        check!(
            "gateway-yaml-json",
            ids(&yaml) == ids(&from_json),
            "YAML gave {:?}, the same document as JSON {:?}",
            ids(&yaml),
            ids(&from_json)
        );
    }

    for rules in [yaml, json].into_iter().flatten() {
        probe(&rules);
    }
});

fn probe(rules: &RuleSet) {
    for (method, path) in PROBES {
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            continue;
        };
        for host in ["warden.example", "localhost:8443"] {
            let url = RequestUrl {
                scheme: "https",
                host,
                path,
            };
            if let Some((rule, captures)) = rules.find(&method, &url) {
                // The types of a rule's handlers are not public (see docs/fuzzing.md), so
                // their templates cannot be rendered here; formatting walks them whole.
                let _ = format!("{rule:?} {captures:?}");
            }
        }
    }
}
