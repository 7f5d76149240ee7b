//! The rules file: Ory Oathkeeper's access rules (`id`, `match`, `authenticators`, `authorizer`,
//! `mutators`, `upstream`) plus Warden's `throttle` and `max_body_bytes`, in JSON or YAML.
//!
//! The file is either a list of rules (Oathkeeper's own format, matched with the `regexp`
//! strategy) or `{"matching_strategy": "regexp" | "glob", "rules": [...]}`. Loading checks
//! everything a request would otherwise find out: unknown fields and handlers, patterns,
//! templates, rates, upstream URLs, duplicate ids. Every problem is reported with where it is.
//!
//! The first rule in file order whose URL pattern and methods match a request decides it
//! (Oathkeeper refuses a request that two rules match; first-match is predictable and lets a
//! narrow rule sit before a broad one). No matching rule: 404.

use std::collections::HashSet;
use std::fmt;

use axum::http::{HeaderName, Method};
use policy::Action;
use serde::Deserialize;
use serde_json::Value;

use crate::pattern::{RequestUrl, Strategy, UrlPattern};
use crate::template::Template;
use crate::throttle::{LimitSpec, Per, Rate, Tier};

/// The syntax of a rules file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// YAML for `.yaml` and `.yml` files, JSON otherwise.
    pub fn of_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|extension| extension.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Json,
        }
    }
}

/// One thing wrong with a rules file, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `line 3 column 7`, or a path such as `rules[2] (id "devices").match.url`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Everything wrong with a rules file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RulesError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("; "))
    }
}

/// The checked rules, in file order.
#[derive(Debug)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// One checked rule.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pattern: UrlPattern,
    methods: Vec<Method>,
    pub authenticators: Vec<Authenticator>,
    pub authorizer: Authorizer,
    pub mutators: Vec<Mutator>,
    pub upstream: Upstream,
    pub limits: Vec<LimitSpec>,
    /// The largest request body this rule lets through, instead of `gateway.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
}

/// Who the caller is; tried in order until one is responsible for the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authenticator {
    /// A Bearer JWT access token, verified locally against Warden's published keys.
    Jwt(JwtRequirements),
    /// A Bearer token Warden's authorization server says is active (RFC 7662), so revocation
    /// counts; answers are remembered for `cache_ttl`, the rule's checks made on every use.
    Introspection {
        requirements: JwtRequirements,
        cache_ttl: std::time::Duration,
    },
    /// The login session cookie of Warden's pages.
    CookieSession,
    /// Anyone, as `subject`.
    Anonymous { subject: String },
    /// No identity at all; the request passes as it came.
    Noop,
}

/// What a `jwt` authenticator requires besides a valid signature and time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtRequirements {
    /// Accepted audiences, one of which the token must name; empty means Warden's API.
    pub target_audience: Vec<String>,
    /// Scopes the token must all carry.
    pub required_scope: Vec<String>,
}

/// Whether the authenticated caller may go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorizer {
    Allow,
    Deny,
    /// The policy's decision on `action` for the device whose id `device_id` renders.
    Device {
        action: Action,
        device_id: Template,
    },
    /// An external policy service (Open Policy Agent, say) asked with a JSON payload; anything
    /// but a clear yes within `timeout` is a no.
    RemoteJson {
        remote: url::Url,
        payload: Template,
        timeout: std::time::Duration,
    },
}

/// What the gateway changes in the request before the upstream sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutator {
    Noop,
    /// Headers set from templates; a client's own copies are always removed first.
    Header {
        headers: Vec<(HeaderName, Template)>,
    },
    /// `Authorization: Bearer` with a short-lived JWT Warden signs for the upstream, naming the
    /// caller (`sub`, `client_id`, `scope`) for `audience`, valid for `ttl`.
    IdToken {
        audience: String,
        ttl: std::time::Duration,
    },
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub target: Target,
    /// A prefix removed from the path before forwarding.
    pub strip_path: Option<String>,
    /// Forward the client's `Host` instead of the upstream's.
    pub preserve_host: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A part of Warden in this process: `warden://identity`, `warden://devices`, …
    Local { part: String },
    /// An HTTP(S) service elsewhere.
    Remote(url::Url),
}

impl RuleSet {
    /// Parses and checks a rules file.
    pub fn parse(text: &str, format: Format) -> Result<Self, RulesError> {
        let document: Value = match format {
            Format::Json => serde_json::from_str(text).map_err(|error| {
                let location = format!("line {} column {}", error.line(), error.column());
                let message = error.to_string();
                let message = message
                    .strip_suffix(&format!(" at {location}"))
                    .unwrap_or(&message)
                    .to_owned();
                single(location, message)
            })?,
            Format::Yaml => serde_yaml_ng::from_str(text).map_err(|error| {
                let location = error.location().map_or_else(
                    || "the file".to_owned(),
                    |at| format!("line {} column {}", at.line(), at.column()),
                );
                single(location, error.to_string())
            })?,
        };
        let (strategy, raw_rules, prefix) = match document {
            Value::Array(rules) => (Strategy::Regexp, rules, "rules"),
            Value::Object(mut object) => {
                let strategy = match object.remove("matching_strategy") {
                    None => Strategy::Regexp,
                    Some(value) => serde_json::from_value(value).map_err(|_| {
                        single(
                            "matching_strategy".into(),
                            "must be \"regexp\" or \"glob\"".into(),
                        )
                    })?,
                };
                let rules = match object.remove("rules") {
                    Some(Value::Array(rules)) => rules,
                    _ => {
                        return Err(single("rules".into(), "a list of rules is required".into()));
                    }
                };
                if let Some(unknown) = object.keys().next() {
                    return Err(single(
                        unknown.clone(),
                        "unknown field; expected matching_strategy and rules".into(),
                    ));
                }
                (strategy, rules, "rules")
            }
            _ => {
                return Err(single(
                    "the file".into(),
                    "expected a list of rules or {\"matching_strategy\", \"rules\"}".into(),
                ));
            }
        };
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let mut ids = HashSet::new();
        for (index, raw) in raw_rules.into_iter().enumerate() {
            let id = raw.get("id").and_then(Value::as_str).map(str::to_owned);
            let location = match &id {
                Some(id) => format!("{prefix}[{index}] (id {id:?})"),
                None => format!("{prefix}[{index}]"),
            };
            let raw: RawRule = match serde_path_to_error::deserialize(raw) {
                Ok(raw) => raw,
                Err(error) => {
                    problems.push(Problem {
                        location: join(&location, &error.path().to_string()),
                        message: error.into_inner().to_string(),
                    });
                    continue;
                }
            };
            if !ids.insert(raw.id.clone()) {
                problems.push(Problem {
                    location: join(&location, "id"),
                    message: "another rule has this id".into(),
                });
            }
            let mut report = |field: &str, message: String| {
                problems.push(Problem {
                    location: join(&location, field),
                    message,
                });
            };
            if let Some(rule) = check_rule(raw, strategy, &mut report) {
                rules.push(rule);
            }
        }
        if problems.is_empty() {
            Ok(Self { rules })
        } else {
            Err(RulesError { problems })
        }
    }

    /// The first rule matching the request, with its capture groups.
    pub fn find(&self, method: &Method, url: &RequestUrl<'_>) -> Option<(&Rule, Vec<String>)> {
        self.rules
            .iter()
            .filter(|rule| rule.methods.contains(method))
            .find_map(|rule| rule.pattern.captures(url).map(|groups| (rule, groups)))
    }
}

fn single(location: String, message: String) -> RulesError {
    RulesError {
        problems: vec![Problem { location, message }],
    }
}

fn join(location: &str, field: &str) -> String {
    if field.is_empty() || field == "." {
        location.to_owned()
    } else {
        format!("{location}.{field}")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for the reader of the file")]
    description: Option<String>,
    #[serde(rename = "match")]
    matcher: RawMatch,
    authenticators: Vec<RawHandler>,
    authorizer: RawHandler,
    #[serde(default)]
    mutators: Vec<RawHandler>,
    upstream: RawUpstream,
    #[serde(default)]
    throttle: Option<RawThrottle>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    url: String,
    methods: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHandler {
    handler: String,
    #[serde(default)]
    config: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: String,
    #[serde(default)]
    strip_path: Option<String>,
    #[serde(default)]
    preserve_host: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    limits: Vec<RawLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    per: Per,
    rate: String,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    tiers: Vec<RawTier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    scope: String,
    rate: String,
    #[serde(default)]
    burst: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJwtConfig {
    #[serde(default)]
    target_audience: Vec<String>,
    #[serde(default)]
    required_scope: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrospectionConfig {
    #[serde(default)]
    target_audience: Vec<String>,
    #[serde(default)]
    required_scope: Vec<String>,
    #[serde(default = "default_introspection_cache")]
    cache_ttl_seconds: u64,
}

fn default_introspection_cache() -> u64 {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteJsonConfig {
    remote: String,
    payload: String,
    #[serde(default = "default_remote_timeout")]
    timeout_ms: u64,
}

fn default_remote_timeout() -> u64 {
    500
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdTokenConfig {
    audience: String,
    #[serde(default = "default_id_token_ttl")]
    ttl_seconds: u64,
}

fn default_id_token_ttl() -> u64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnonymousConfig {
    #[serde(default)]
    subject: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeviceConfig {
    action: String,
    device_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderConfig {
    headers: std::collections::BTreeMap<String, String>,
}

/// A handler's `config`, where `null` (absent) means all defaults.
fn config<T: for<'de> Deserialize<'de>>(
    value: Value,
    field: &str,
    report: &mut dyn FnMut(&str, String),
) -> Option<T> {
    let value = if value.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        value
    };
    match serde_path_to_error::deserialize(value) {
        Ok(config) => Some(config),
        Err(error) => {
            report(
                &join(field, &error.path().to_string()),
                error.into_inner().to_string(),
            );
            None
        }
    }
}

fn check_rule(
    raw: RawRule,
    strategy: Strategy,
    report: &mut dyn FnMut(&str, String),
) -> Option<Rule> {
    let mut problems = 0usize;
    let mut note = |field: &str, message: String| {
        problems += 1;
        report(field, message);
    };

    let pattern = UrlPattern::compile(&raw.matcher.url, strategy)
        .map_err(|message| note("match.url", message))
        .ok();
    let groups = pattern.as_ref().map(UrlPattern::groups);
    if raw.matcher.methods.is_empty() {
        note("match.methods", "name at least one method".into());
    }
    let mut methods = Vec::new();
    for (index, name) in raw.matcher.methods.iter().enumerate() {
        const KNOWN: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
        ];
        let upper = name.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(method) if KNOWN.contains(&upper.as_str()) => methods.push(method),
            _ => note(
                &format!("match.methods[{index}]"),
                format!("{name:?} is not an HTTP method"),
            ),
        }
    }

    if raw.authenticators.is_empty() {
        note(
            "authenticators",
            "name at least one authenticator (anonymous or noop for public routes)".into(),
        );
    }
    let mut authenticators = Vec::new();
    for (index, handler) in raw.authenticators.into_iter().enumerate() {
        let field = format!("authenticators[{index}]");
        let config_field = format!("{field}.config");
        let authenticator = match handler.handler.as_str() {
            "jwt" => config::<RawJwtConfig>(handler.config, &config_field, &mut note).map(|c| {
                Authenticator::Jwt(JwtRequirements {
                    target_audience: c.target_audience,
                    required_scope: c.required_scope,
                })
            }),
            "oauth2_introspection" => {
                config::<RawIntrospectionConfig>(handler.config, &config_field, &mut note).and_then(
                    |c| {
                        if c.cache_ttl_seconds > 300 {
                            note(
                                &format!("{config_field}.cache_ttl_seconds"),
                                "at most 300: a revoked token must stop working soon".into(),
                            );
                            return None;
                        }
                        Some(Authenticator::Introspection {
                            requirements: JwtRequirements {
                                target_audience: c.target_audience,
                                required_scope: c.required_scope,
                            },
                            cache_ttl: std::time::Duration::from_secs(c.cache_ttl_seconds),
                        })
                    },
                )
            }
            "cookie_session" | "noop" if !handler.config.is_null() => {
                note(
                    &config_field,
                    format!("{} takes no config", handler.handler),
                );
                None
            }
            "cookie_session" => Some(Authenticator::CookieSession),
            "noop" => Some(Authenticator::Noop),
            "anonymous" => config::<RawAnonymousConfig>(handler.config, &config_field, &mut note)
                .map(|c| Authenticator::Anonymous {
                    subject: c.subject.unwrap_or_else(|| "anonymous".into()),
                }),
            other => {
                note(
                    &format!("{field}.handler"),
                    format!(
                        "unknown authenticator {other:?}; expected jwt, \
                         oauth2_introspection, cookie_session, anonymous or noop"
                    ),
                );
                None
            }
        };
        authenticators.extend(authenticator);
    }

    let authorizer = match raw.authorizer.handler.as_str() {
        "allow" | "deny" if !raw.authorizer.config.is_null() => {
            note(
                "authorizer.config",
                format!("{} takes no config", raw.authorizer.handler),
            );
            None
        }
        "allow" => Some(Authorizer::Allow),
        "deny" => Some(Authorizer::Deny),
        "device" => {
            config::<RawDeviceConfig>(raw.authorizer.config, "authorizer.config", &mut note)
                .and_then(|c| {
                    let action = Action::parse(&c.action)
                        .map_err(|error| note("authorizer.config.action", error.to_string()))
                        .ok();
                    let device_id = checked_template(
                        &c.device_id,
                        groups,
                        "authorizer.config.device_id",
                        &mut note,
                    );
                    Some(Authorizer::Device {
                        action: action?,
                        device_id: device_id?,
                    })
                })
        }
        "remote_json" => {
            config::<RawRemoteJsonConfig>(raw.authorizer.config, "authorizer.config", &mut note)
                .and_then(|c| {
                    let remote = url::Url::parse(&c.remote)
                        .ok()
                        .filter(|url| matches!(url.scheme(), "http" | "https"))
                        .or_else(|| {
                            note(
                                "authorizer.config.remote",
                                format!("{:?} is not an http(s) URL", c.remote),
                            );
                            None
                        });
                    if !(1..=10_000).contains(&c.timeout_ms) {
                        note(
                            "authorizer.config.timeout_ms",
                            "must be from 1 to 10000".into(),
                        );
                        return None;
                    }
                    let payload = checked_template(
                        &c.payload,
                        groups,
                        "authorizer.config.payload",
                        &mut note,
                    );
                    Some(Authorizer::RemoteJson {
                        remote: remote?,
                        payload: payload?,
                        timeout: std::time::Duration::from_millis(c.timeout_ms),
                    })
                })
        }
        other => {
            note(
                "authorizer.handler",
                format!(
                    "unknown authorizer {other:?}; expected allow, deny, device or remote_json"
                ),
            );
            None
        }
    };

    let mut mutators = Vec::new();
    for (index, handler) in raw.mutators.into_iter().enumerate() {
        let field = format!("mutators[{index}]");
        let mutator = match handler.handler.as_str() {
            "noop" if !handler.config.is_null() => {
                note(&format!("{field}.config"), "noop takes no config".into());
                None
            }
            "noop" => Some(Mutator::Noop),
            "header" => {
                config::<RawHeaderConfig>(handler.config, &format!("{field}.config"), &mut note)
                    .map(|c| {
                        let mut headers = Vec::new();
                        for (name, source) in c.headers {
                            let at = format!("{field}.config.headers.{name}");
                            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                                note(&at, format!("{name:?} is not a header name"));
                                continue;
                            };
                            if let Some(template) =
                                checked_template(&source, groups, &at, &mut note)
                            {
                                headers.push((header, template));
                            }
                        }
                        Mutator::Header { headers }
                    })
            }
            "id_token" => {
                config::<RawIdTokenConfig>(handler.config, &format!("{field}.config"), &mut note)
                    .and_then(|c| {
                        if !(1..=3600).contains(&c.ttl_seconds) {
                            note(
                                &format!("{field}.config.ttl_seconds"),
                                "must be from 1 to 3600: the token is meant for one request".into(),
                            );
                            return None;
                        }
                        if c.audience.trim().is_empty() {
                            note(
                                &format!("{field}.config.audience"),
                                "name the service the token is for".into(),
                            );
                            return None;
                        }
                        Some(Mutator::IdToken {
                            audience: c.audience,
                            ttl: std::time::Duration::from_secs(c.ttl_seconds),
                        })
                    })
            }
            other => {
                note(
                    &format!("{field}.handler"),
                    format!("unknown mutator {other:?}; expected header, id_token or noop"),
                );
                None
            }
        };
        mutators.extend(mutator);
    }

    let upstream = check_upstream(raw.upstream)
        .map_err(|(field, message)| note(field, message))
        .ok();

    let mut limits = Vec::new();
    let raw_limits = raw
        .throttle
        .map(|throttle| throttle.limits)
        .unwrap_or_default();
    for (index, limit) in raw_limits.into_iter().enumerate() {
        let field = format!("throttle.limits[{index}]");
        let rate = Rate::parse(&limit.rate, limit.burst)
            .map_err(|message| note(&format!("{field}.rate"), message))
            .ok();
        let mut tiers = Vec::new();
        for (tier_index, tier) in limit.tiers.into_iter().enumerate() {
            match Rate::parse(&tier.rate, tier.burst) {
                Ok(rate) => tiers.push(Tier {
                    scope: tier.scope,
                    rate,
                }),
                Err(message) => note(&format!("{field}.tiers[{tier_index}].rate"), message),
            }
        }
        if let Some(rate) = rate {
            limits.push(LimitSpec {
                per: limit.per,
                rate,
                tiers,
            });
        }
    }

    if raw.max_body_bytes == Some(0) {
        note("max_body_bytes", "must be at least 1".into());
    }

    if problems > 0 {
        return None;
    }
    Some(Rule {
        id: raw.id,
        pattern: pattern?,
        methods,
        authenticators,
        authorizer: authorizer?,
        mutators,
        upstream: upstream?,
        limits,
        max_body_bytes: raw.max_body_bytes,
    })
}

/// A template whose capture groups all exist in the rule's pattern (`groups`, when it compiled).
fn checked_template(
    source: &str,
    groups: Option<usize>,
    field: &str,
    note: &mut dyn FnMut(&str, String),
) -> Option<Template> {
    let template = Template::parse(source)
        .map_err(|message| note(field, message))
        .ok()?;
    if let (Some(highest), Some(groups)) = (template.highest_capture_group(), groups)
        && highest >= groups
    {
        note(
            field,
            format!("reads capture group {highest}, but match.url has {groups} (counted from 0)"),
        );
        return None;
    }
    Some(template)
}

/// The upstream's URL: `warden://PART` for a part of Warden in this process, or an http(s) URL.
fn check_upstream(raw: RawUpstream) -> Result<Upstream, (&'static str, String)> {
    let url = url::Url::parse(&raw.url).map_err(|error| {
        (
            "upstream.url",
            format!("{:?} is not a URL: {error}", raw.url),
        )
    })?;
    let target = match url.scheme() {
        "warden" => {
            let part = url.host_str().unwrap_or_default();
            if part.is_empty() || !matches!(url.path(), "" | "/") {
                return Err((
                    "upstream.url",
                    "a part of Warden is written warden://PART, with no path".into(),
                ));
            }
            Target::Local {
                part: part.to_owned(),
            }
        }
        "http" | "https" if url.host_str().is_some() => {
            if url.query().is_some() || url.fragment().is_some() {
                return Err((
                    "upstream.url",
                    "an upstream URL takes no query or fragment".into(),
                ));
            }
            Target::Remote(url)
        }
        _ => {
            return Err((
                "upstream.url",
                format!("{:?}: use http://, https:// or warden://PART", raw.url),
            ));
        }
    };
    if let Some(strip) = &raw.strip_path
        && !strip.starts_with('/')
    {
        return Err(("upstream.strip_path", "must start with `/`".into()));
    }
    Ok(Upstream {
        target,
        strip_path: raw.strip_path,
        preserve_host: raw.preserve_host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Result<RuleSet, Vec<String>> {
        RuleSet::parse(yaml, Format::Yaml)
            .map_err(|error| error.problems.iter().map(ToString::to_string).collect())
    }

    /// A rule file with one rule of `fields` on top of a valid public rule.
    fn one(fields: &str) -> String {
        format!(
            "- id: r\n  match: {{ url: \"/r\", methods: [GET] }}\n  \
             authenticators: [{{ handler: noop }}]\n  authorizer: {{ handler: allow }}\n  \
             upstream: {{ url: \"warden://devices\" }}\n{fields}"
        )
    }

    #[test]
    fn the_shipped_rules_load_and_expose_nothing_internal() {
        let shipped = RuleSet::parse(crate::SHIPPED_RULES, Format::Yaml).unwrap();
        let url = |path| RequestUrl {
            scheme: "https",
            host: "localhost:8443",
            path,
        };
        for path in [
            "/internal/breached",
            "/internal/breached/00",
            "/hooks/vernemq",
        ] {
            for method in [Method::GET, Method::POST] {
                assert!(
                    shipped.find(&method, &url(path)).is_none(),
                    "{method} {path}"
                );
            }
        }
        let (rule, groups) = shipped
            .find(&Method::PUT, &url("/api/v1/devices/d-1/state/desired"))
            .unwrap();
        assert_eq!(rule.id, "device-settings");
        assert_eq!(groups, ["d-1"]);
        assert_eq!(
            rule.authorizer,
            Authorizer::Device {
                action: Action::WriteSettings,
                device_id: Template::parse("{{ index .MatchContext.RegexpCaptureGroups 0 }}")
                    .unwrap(),
            }
        );
    }

    #[test]
    fn the_first_matching_rule_with_the_method_decides() {
        let set = rules(
            "matching_strategy: glob\nrules:\n\
             - id: narrow\n  match: { url: \"/api/<*>/special\", methods: [get] }\n  \
               authenticators: [{ handler: noop }]\n  authorizer: { handler: deny }\n  \
               upstream: { url: \"warden://devices\" }\n\
             - id: broad\n  match: { url: \"/api/<**>\", methods: [GET, POST] }\n  \
               authenticators: [{ handler: anonymous, config: { subject: guest } }]\n  \
               authorizer: { handler: allow }\n  \
               upstream: { url: \"https://backend.internal:9000/base\", strip_path: /api }\n",
        )
        .unwrap();
        let find = |method: Method, path: &str| {
            set.find(
                &method,
                &RequestUrl {
                    scheme: "https",
                    host: "h",
                    path,
                },
            )
            .map(|(rule, _)| rule.id.clone())
        };
        assert_eq!(
            find(Method::GET, "/api/x/special").as_deref(),
            Some("narrow")
        );
        assert_eq!(
            find(Method::POST, "/api/x/special").as_deref(),
            Some("broad")
        );
        assert_eq!(find(Method::GET, "/api/x/y").as_deref(), Some("broad"));
        assert_eq!(find(Method::DELETE, "/api/x/y"), None);
        assert_eq!(find(Method::GET, "/other"), None);
        let broad = &set.rules[1];
        assert_eq!(
            broad.authenticators,
            [Authenticator::Anonymous {
                subject: "guest".into()
            }]
        );
        assert_eq!(broad.upstream.strip_path.as_deref(), Some("/api"));
        assert!(matches!(&broad.upstream.target, Target::Remote(url) if url.port() == Some(9000)));
    }

    #[test]
    fn every_problem_is_reported_with_its_location() {
        let cases: &[(&str, &[&str])] = &[
            ("- id: r\n  match: [", &["line 3 column 1"]),
            ("{\"rules\": 3}", &["rules: a list of rules is required"]),
            ("{\"rules\": [], \"extra\": 1}", &["extra: unknown field"]),
            ("\"text\"", &["expected a list of rules"]),
            (
                "{\"matching_strategy\": \"fuzzy\", \"rules\": []}",
                &["matching_strategy: must be"],
            ),
            ("- id: r\n", &["rules[0] (id \"r\"): missing field `match`"]),
            (
                &one("  max_body_bytes: 0\n"),
                &["rules[0] (id \"r\").max_body_bytes: must be at least 1"],
            ),
            (
                &one("  throttle: { limits: [{ per: tenant, rate: 1/s }] }\n"),
                &["rules[0] (id \"r\").throttle.limits[0].per: unknown variant `tenant`"],
            ),
            (
                &one(
                    "  throttle: { limits: [{ per: user, rate: 1/s, tiers: [{ scope: x, rate: \"2\" }] }] }\n",
                ),
                &["throttle.limits[0].tiers[0].rate: \"2\" is not a rate"],
            ),
            (
                &one(
                    "  mutators: [{ handler: header, config: { headers: { \"bad header\": x } } }]\n",
                ),
                &["mutators[0].config.headers.bad header: \"bad header\" is not a header name"],
            ),
            (
                &one("  mutators: [{ handler: hydrator }]\n"),
                &["mutators[0].handler: unknown mutator \"hydrator\""],
            ),
            (
                &one(
                    "  mutators: [{ handler: header, config: { headers: { X-Device: \"{{ index .MatchContext.RegexpCaptureGroups 0 }}\" } } }]\n",
                ),
                &["reads capture group 0, but match.url has 0"],
            ),
            (
                "- id: r\n  match: { url: /r, methods: [] }\n  authenticators: []\n  \
                 authorizer: { handler: allow, config: { x: 1 } }\n  \
                 upstream: { url: \"warden://devices/path\", strip_path: r }\n",
                &[
                    "match.methods: name at least one method",
                    "authenticators: name at least one authenticator",
                    "authorizer.config: allow takes no config",
                    "upstream.url: a part of Warden is written warden://PART",
                ],
            ),
            (
                "- id: r\n  match: { url: /r, methods: [GETT] }\n  \
                 authenticators: [{ handler: jwt, config: { jwks_urls: [x] } }]\n  \
                 authorizer: { handler: deny }\n  \
                 upstream: { url: \"https://h/x?q=1\" }\n",
                &[
                    "match.methods[0]: \"GETT\" is not an HTTP method",
                    "authenticators[0].config.jwks_urls: unknown field",
                    "upstream.url: an upstream URL takes no query",
                ],
            ),
        ];
        for (text, expected) in cases {
            let problems = rules(text).expect_err(text);
            assert_eq!(problems.len(), expected.len(), "{text}: {problems:?}");
            for (problem, expected) in problems.iter().zip(*expected) {
                assert!(
                    problem.contains(expected),
                    "{text}: {problem} lacks {expected}"
                );
            }
        }
        let json = RuleSet::parse("[{\"id\": 1", Format::Json).unwrap_err();
        assert!(
            json.problems[0].location.starts_with("line 1 column"),
            "{json}"
        );
    }
}
