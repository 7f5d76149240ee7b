//! HTTP requests through the gateway, the one door of Warden's HTTPS listener: the shipped rules
//! (`gateway::SHIPPED_RULES`) plus one rule with header mutators, run by `gateway::Gateway` as
//! `warden serve` runs it, with the parts of Warden behind it replaced by one handler that
//! records what reached it. This is how the request parsing of the API is reached from outside
//! the crates: the request body types of `http-api` are private (see docs/fuzzing.md).
//!
//! Input: `METHOD PATH` on the first line, then header lines `Name: value`, an empty line, and
//! the body. In header values `$OWNER`, `$STRANGER` and `$ADMIN` stand for access tokens signed
//! with the genuine key (the fuzzer cannot sign): for the owner of device `washer-1`, for a
//! customer who owns nothing, and for an admin.
//!
//! Properties: nothing panics; a request reaches a part of Warden behind a `jwt` rule only with
//! a genuine token; a request on one device's routes (`/api/v1/devices/{id}/…`) reaches it only
//! for `washer-1` and only with its owner's token (or an admin's), whether the part reads the
//! path as given or with its dot segments resolved (as a part that runs apart receives it); and
//! the headers the `header` mutator sets reach the part once, with the gateway's values, never
//! the client's.

#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use gateway::{
    Credential, Facts, FactsError, Format, Gateway, GatewayMetrics, GatewaySettings, RequestOrigin,
    RuleSet,
};
use libfuzzer_sys::fuzz_target;
use model::{DeviceId, ManualClock, Role, Timestamp, UserId};
use policy::{ActionSet, Denial, DeviceRelation, Subject};
use tokens::jwt::AccessClaims;
use tokens::keys::KeyRing;
use tower::ServiceExt;
use warden_fuzz::{NOW, check};

const ISSUER: &str = "https://warden.example";
const AUDIENCE: &str = "https://warden.example/api";
const OWNER: &str = "00000000-0000-7000-8000-000000000001";
const STRANGER: &str = "00000000-0000-7000-8000-000000000002";
const ADMIN: &str = "00000000-0000-7000-8000-000000000003";

/// A rule of this target's own, after the shipped ones: header mutators over a capture group.
const ECHO_RULE: &str = r#"
  - id: fuzz-echo
    match: { url: "/fuzz-echo/<[^/]*>", methods: [GET, POST] }
    authenticators: [{ handler: jwt }, { handler: anonymous, config: { subject: guest } }]
    authorizer: { handler: allow }
    mutators:
      - handler: header
        config:
          headers:
            X-User-Id: "{{ print .Subject }}"
            X-Scope: "{{ .Extra.scope }}"
            X-Group: "{{ index .MatchContext.RegexpCaptureGroups 0 }}"
    upstream: { url: "warden://devices", strip_path: "/fuzz-echo" }
"#;

/// What a part of Warden behind the gateway received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
}

#[derive(Debug)]
struct World {
    ring: Arc<KeyRing>,
}

#[async_trait::async_trait]
impl Facts for World {
    async fn signing_keys(&self) -> Result<Arc<KeyRing>, FactsError> {
        Ok(self.ring.clone())
    }
    fn issuer(&self) -> &str {
        ISSUER
    }
    fn audience(&self) -> &str {
        AUDIENCE
    }
    async fn introspect(&self, token: &str) -> Result<Option<AccessClaims>, FactsError> {
        let expected = tokens::jwt::Expectations {
            issuer: ISSUER,
            audience: AUDIENCE,
        };
        Ok(tokens::jwt::verify(token, &self.ring, NOW, &expected).ok())
    }
    async fn login_session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(UserId, Role, String)>, FactsError> {
        let owner_cookie = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| {
                value
                    .split(';')
                    .any(|pair| pair.trim() == "warden_session=owner")
            });
        Ok(owner_cookie
            .then(|| OWNER.parse().ok())
            .flatten()
            .map(|user_id| (user_id, Role::Customer, "ada@example.com".to_owned())))
    }
    async fn subject(&self, credential: &Credential) -> Result<Option<Subject>, FactsError> {
        Ok(match credential {
            Credential::None => None,
            Credential::Login { user_id, role } => Some(Subject::Person {
                user_id: *user_id,
                role: *role,
                token_allows: ActionSet::all(),
            }),
            Credential::AccessToken(claims) => {
                let Ok(user_id) = claims.sub.parse::<UserId>() else {
                    return Ok(None);
                };
                let token_allows = ActionSet::allowed_by_scopes(claims.scope.split(' '));
                Some(if claims.sub == ADMIN {
                    Subject::Admin {
                        user_id,
                        token_allows,
                    }
                } else {
                    Subject::Person {
                        user_id,
                        role: Role::Customer,
                        token_allows,
                    }
                })
            }
        })
    }
    async fn relation(
        &self,
        device_id: &DeviceId,
        _now: Timestamp,
    ) -> Result<Option<DeviceRelation>, FactsError> {
        // Every well-formed id names a device; only washer-1 has an owner.
        Ok(Some(DeviceRelation {
            device_id: device_id.clone(),
            owner: (device_id.as_str() == "washer-1")
                .then(|| OWNER.parse().ok())
                .flatten(),
            grants: Vec::new(),
        }))
    }
    async fn device_denied(
        &self,
        _subject: &Subject,
        _device_id: &DeviceId,
        _action: policy::Action,
        _denial: &Denial,
        _origin: &RequestOrigin,
    ) -> Result<(), FactsError> {
        Ok(())
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: Router,
    clock: ManualClock,
    seen: Arc<Mutex<Vec<Seen>>>,
    tokens: [(&'static str, String); 3],
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = warden_fuzz::keys();
        let ring = Arc::new(keys.genuine_ring.clone());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorder = seen.clone();
        let parts = Router::new().fallback(move |request: Request<Body>| {
            let recorder = recorder.clone();
            async move {
                if let Ok(mut seen) = recorder.lock() {
                    seen.push(Seen {
                        path: request.uri().path().to_owned(),
                        headers: request.headers().clone(),
                    });
                }
                "reached"
            }
        });
        let rules = format!("{}{ECHO_RULE}", gateway::SHIPPED_RULES);
        let rules = RuleSet::parse(&rules, Format::Yaml).expect("the shipped rules and one more");
        let clock = ManualClock::new(NOW);
        let mut registry = prometheus_client::registry::Registry::default();
        let settings = GatewaySettings {
            upstream_timeout: Duration::from_secs(1),
            upstream_roots: Vec::new(),
            cors_origins: vec![HeaderValue::from_static("https://console.example.com")],
            max_body_bytes: 64 * 1024,
            part_urls: Default::default(),
            shared_counters: None,
        };
        let gateway = Gateway::new(
            rules,
            Arc::new(World { ring: ring.clone() }),
            parts,
            Arc::new(clock.clone()),
            GatewayMetrics::register(&mut registry),
            settings,
        )
        .expect("a gateway");
        let sign = |sub: &str, scope: &str| {
            let claims = AccessClaims {
                iss: ISSUER.into(),
                sub: sub.into(),
                aud: AUDIENCE.into(),
                // Valid for a century: every input moves the clock on (see below).
                exp: NOW.unix_millis() / 1000 + 100 * 365 * 86_400,
                iat: NOW.unix_millis() / 1000,
                jti: format!("jti-{sub}"),
                client_id: "warden-console".into(),
                scope: scope.into(),
                gid: None,
                act: None,
            };
            tokens::jwt::issue(&ring, NOW, &claims).expect("a token")
        };
        let person = "openid devices:read devices:write devices:command devices:manage";
        let tokens = [
            ("$OWNER", sign(OWNER, person)),
            ("$STRANGER", sign(STRANGER, person)),
            (
                "$ADMIN",
                sign(ADMIN, "openid admin firmware:manage devices:read"),
            ),
        ];
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a runtime"),
            router: gateway.router(),
            clock,
            seen,
            tokens,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = warden_fuzz::text(data) else {
        return;
    };
    let fixture = fixture();
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let Some((method, target)) = lines.next().and_then(|line| line.split_once(' ')) else {
        return;
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), target.parse::<Uri>())
    else {
        return;
    };
    let mut request = Request::builder().method(method).uri(uri);
    let mut token_used = None;
    let mut authorization_seen = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let mut value = value.trim().to_owned();
        for (placeholder, token) in &fixture.tokens {
            value = value.replace(placeholder, token);
        }
        // A line that is not a valid header never reaches the gateway, nor does its token.
        if let (Ok(header_name), Ok(header_value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            // The gateway reads the first Authorization header; a token counts as presented
            // when that header is exactly a bearer credential with one of the tokens.
            if header_name == axum::http::header::AUTHORIZATION && !authorization_seen {
                authorization_seen = true;
                token_used = fixture.tokens.iter().find_map(|(placeholder, token)| {
                    let (scheme, credential) = value.split_once(' ')?;
                    (scheme.eq_ignore_ascii_case("bearer") && credential.trim() == token)
                        .then_some(*placeholder)
                });
            }
            request = request.header(header_name, header_value);
        }
    }
    let Ok(request) = request.body(Body::from(body.to_owned())) else {
        return;
    };
    let client_headers = request.headers().clone();
    let path = request.uri().path().to_owned();

    // An hour on per input: every throttle has its allowance back, so an input does the same
    // alone as in a run.
    fixture.clock.advance(Duration::from_secs(3600));
    if let Ok(mut seen) = fixture.seen.lock() {
        seen.clear();
    }
    let response = fixture
        .runtime
        .block_on(fixture.router.clone().oneshot(request));
    let Ok(response) = response;
    let _ = response.status();
    let seen: Vec<Seen> = fixture
        .seen
        .lock()
        .map(|seen| seen.clone())
        .unwrap_or_default();
    let Some(reached) = seen.first() else {
        return;
    };

    // Behind `jwt` rules (everything under /api/v1/ but the OpenAPI document and the
    // fuzz-echo rule), only a genuine token gets through.
    let guarded = path.starts_with("/api/v1/") && path != "/api/v1/openapi.json";
    check!(
        "gateway-unauthenticated",
        !guarded || token_used.is_some(),
        "{path:?} reached a part without a token"
    );

    // One device's routes reach a part only for the device the caller may use.
    let resolved = url::Url::parse(&format!("https://warden.example{}", reached.path))
        .map(|url| url.path().to_owned())
        .unwrap_or_default();
    for (how, seen_path) in [
        ("as given", reached.path.as_str()),
        ("resolved", resolved.as_str()),
    ] {
        let Some(device) = device_segment(seen_path) else {
            continue;
        };
        let allowed =
            token_used == Some("$ADMIN") || (device == "washer-1" && token_used == Some("$OWNER"));
        check!(
            "gateway-device",
            allowed,
            "{path:?} with {token_used:?} reached the part as {seen_path:?} ({how}), device {device:?}"
        );
    }

    if let Some(group) = path.strip_prefix("/fuzz-echo/") {
        let expected_subject = match token_used {
            Some("$OWNER") => OWNER,
            Some("$STRANGER") => STRANGER,
            Some("$ADMIN") => ADMIN,
            _ => "guest",
        };
        for (name, expected) in [
            ("x-user-id", Some(expected_subject)),
            ("x-group", Some(group)),
            ("x-scope", None),
        ] {
            let values: Vec<&HeaderValue> = reached.headers.get_all(name).iter().collect();
            let right = match (expected, values.as_slice()) {
                (Some(expected), [value]) => value.as_bytes() == expected.as_bytes(),
                (None, [] | [_]) => true,
                _ => false,
            };
            check!(
                "gateway-header-spoof",
                right,
                "{name} reached the part as {values:?}, expected {expected:?}; the client sent {:?}",
                client_headers.get_all(name).iter().collect::<Vec<_>>()
            );
        }
    }
});

/// The device id segment of a one-device route: `/api/v1/devices/{id}/…` or
/// `/api/v1/devices/{id}`, percent-decoding left to the part; `None` for other paths and for the
/// routes on all devices (`/api/v1/devices`, `/api/v1/devices/claim`).
fn device_segment(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/devices/")?;
    let segment = rest.split('/').next().unwrap_or_default();
    let decoded = percent_decode(segment);
    if rest == "claim" || decoded.is_empty() {
        return None;
    }
    Some(decoded)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = text.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
