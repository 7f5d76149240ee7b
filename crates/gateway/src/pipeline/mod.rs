//! One request through the gateway: match → authenticate → authorize → throttle → mutate →
//! upstream, with a metric and an access-log line per request naming the rule and the decision.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::Limited;
use model::Clock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

mod authenticate;
mod authorize;
mod mutate;

use authenticate::TokenMemory;

use crate::pattern::RequestUrl;
use crate::proxy::{self, UpstreamError};
use crate::rules::{Mutator, Rule, RuleSet, Target};
use crate::throttle::{Headroom, Limit, LimiterClock, SharedCounters, Throttled};
use crate::{Facts, RequestOrigin, Session};

/// How the gateway runs, from configuration.
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// The longest an upstream may take to answer with its response head; then 504.
    pub upstream_timeout: Duration,
    /// Roots trusted for `https://` upstreams, in PEM: Warden's own CA for its parts. No
    /// public roots: the gateway fronts services of its own deployment.
    pub upstream_roots: Vec<Vec<u8>>,
    /// Origins whose browser scripts may call through the gateway (CORS); empty: none.
    pub cors_origins: Vec<HeaderValue>,
    /// The largest request body the gateway passes on; a larger one gets 413.
    pub max_body_bytes: usize,
    /// Parts of Warden that run apart, by name: `warden://NAME` upstreams go to these URLs
    /// instead of this process.
    pub part_urls: HashMap<String, url::Url>,
    /// Where throttle counters are kept when replicas enforce limits together; `None`: in this
    /// process.
    pub shared_counters: Option<Arc<dyn SharedCounters>>,
}

/// The gateway's figures on `/metrics`: requests by rule and decision, and the time per rule.
#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    requests: Family<DecisionLabels, Counter>,
    durations: Family<RuleLabels, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    rule: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<DecisionLabels, Counter>::default();
        let durations = Family::<RuleLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "gateway_requests",
            "Requests through the gateway, by rule and decision (allowed, unauthenticated, \
             denied, throttled, no_rule, upstream_error)",
            requests.clone(),
        );
        registry.register(
            "gateway_request_duration_seconds",
            "Time from request to response head through the gateway, by rule",
            durations.clone(),
        );
        Self {
            requests,
            durations,
        }
    }
}

/// The gateway. Cloning shares it; [`Gateway::replace_rules`] swaps the rules for every clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    loaded: RwLock<Arc<Loaded>>,
    facts: Arc<dyn Facts>,
    local: Router,
    client: reqwest::Client,
    clock: LimiterClock,
    metrics: GatewayMetrics,
    settings: GatewaySettings,
    verified: TokenMemory,
    introspected: TokenMemory,
}

/// A rule set with its counters and the headers its mutators set.
#[derive(Debug)]
struct Loaded {
    rules: RuleSet,
    limits: HashMap<String, Vec<Arc<Limit>>>,
    mutated_headers: HashSet<HeaderName>,
}

/// What came of a request, for the metric and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Allowed,
    Unauthenticated,
    Denied,
    Throttled,
    NoRule,
    UpstreamError,
    Unavailable,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Unauthenticated => "unauthenticated",
            Decision::Denied => "denied",
            Decision::Throttled => "throttled",
            Decision::NoRule => "no_rule",
            Decision::UpstreamError => "upstream_error",
            Decision::Unavailable => "unavailable",
        }
    }
}

/// A refusal, with what the caller is told.
struct Refusal {
    decision: Decision,
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(HeaderName, String)>,
}

impl Refusal {
    fn new(decision: Decision, status: StatusCode, code: &'static str, message: String) -> Self {
        Self {
            decision,
            status,
            code,
            message,
            headers: Vec::new(),
        }
    }

    /// No credential any authenticator takes: the challenge alone (RFC 6750 section 3).
    fn no_credentials() -> Self {
        let mut refusal = Self::new(
            Decision::Unauthenticated,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid Bearer access token is required".into(),
        );
        refusal
            .headers
            .push((header::WWW_AUTHENTICATE, "Bearer realm=\"warden\"".into()));
        refusal
    }

    /// A credential that does not hold; the message says why.
    fn invalid_token(message: impl Into<String>) -> Self {
        let mut refusal = Self::new(
            Decision::Unauthenticated,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message.into(),
        );
        refusal.headers.push((
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"warden\", error=\"invalid_token\"".into(),
        ));
        refusal
    }

    fn insufficient_scope(scope: &str) -> Self {
        let mut refusal = Self::new(
            Decision::Denied,
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token lacks the {scope} scope this needs"),
        );
        refusal.headers.push((
            header::WWW_AUTHENTICATE,
            format!("Bearer realm=\"warden\", error=\"insufficient_scope\", scope=\"{scope}\""),
        ));
        refusal
    }

    fn not_found() -> Self {
        Self::new(
            Decision::Denied,
            StatusCode::NOT_FOUND,
            "not_found",
            "no such resource".into(),
        )
    }

    fn unavailable(error: &crate::FactsError) -> Self {
        tracing::warn!(%error, "the gateway could not learn what it needs to decide");
        Self::new(
            Decision::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is unavailable; retry later".into(),
        )
    }

    fn into_response(self, request_id: &str) -> Response {
        let mut response =
            http_api::error_response(self.status, self.code, &self.message, request_id);
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

impl Gateway {
    /// A gateway over `rules`, handing `warden://` upstreams to `local`.
    pub fn new(
        rules: RuleSet,
        facts: Arc<dyn Facts>,
        local: Router,
        clock: Arc<dyn Clock>,
        metrics: GatewayMetrics,
        settings: GatewaySettings,
    ) -> Result<Self, reqwest::Error> {
        let mut client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.upstream_timeout);
        for root in &settings.upstream_roots {
            client = client.add_root_certificate(reqwest::Certificate::from_pem(root)?);
        }
        let clock = LimiterClock(clock);
        let loaded = RwLock::new(Arc::new(Loaded::new(rules, &clock, None)));
        Ok(Self {
            inner: Arc::new(Inner {
                loaded,
                facts,
                local,
                client: client.build()?,
                clock,
                metrics,
                settings,
                verified: TokenMemory::default(),
                introspected: TokenMemory::default(),
            }),
        })
    }

    /// Takes new rules for every request from now on. Counters of limits that did not change
    /// (same rule id, same limit) carry over; the others start afresh.
    pub fn replace_rules(&self, rules: RuleSet) {
        let mut slot = self
            .inner
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = Loaded::new(rules, &self.inner.clock, Some(&slot));
        *slot = Arc::new(next);
    }

    /// Ids of the rules in force, in order.
    pub fn rule_ids(&self) -> Vec<String> {
        self.loaded()
            .rules
            .rules
            .iter()
            .map(|rule| rule.id.clone())
            .collect()
    }

    /// Drops throttle counters of callers who are back at full allowance, and verified tokens
    /// that expired; call it now and then so idle callers cost no memory.
    pub fn forget_idle(&self) {
        for limit in self.loaded().limits.values().flatten() {
            limit.forget_idle();
        }
        let now = self.inner.clock.0.now();
        self.inner.verified.forget_expired(now);
        self.inner.introspected.forget_expired(now);
    }

    /// The gateway as a router serving every path. CORS preflights from configured origins are
    /// answered before the rules; other origins get no CORS headers, so browsers refuse them.
    pub fn router(self) -> Router {
        let origins = self.inner.settings.cors_origins.clone();
        let router = Router::new().fallback(handle).with_state(self);
        let router = if origins.is_empty() {
            router
        } else {
            router.layer(
                CorsLayer::new()
                    .allow_origin(AllowOrigin::list(origins))
                    .allow_methods([
                        Method::GET,
                        Method::POST,
                        Method::PUT,
                        Method::PATCH,
                        Method::DELETE,
                    ])
                    .allow_headers([
                        header::AUTHORIZATION,
                        header::CONTENT_TYPE,
                        header::IF_MATCH,
                        HeaderName::from_static("last-event-id"),
                    ])
                    .expose_headers([
                        header::ETAG,
                        header::RETRY_AFTER,
                        http_api::REQUEST_ID_HEADER,
                    ])
                    .max_age(Duration::from_secs(600)),
            )
        };
        router.layer(axum::middleware::from_fn(http_api::security_headers))
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.inner
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Loaded {
    fn new(rules: RuleSet, clock: &LimiterClock, previous: Option<&Arc<Loaded>>) -> Self {
        let mut limits = HashMap::new();
        let mut mutated_headers = HashSet::new();
        for rule in &rules.rules {
            let kept = previous.and_then(|previous| previous.limits.get(&rule.id));
            let counters = rule
                .limits
                .iter()
                .map(|spec| {
                    kept.and_then(|kept| kept.iter().find(|limit| limit.spec == *spec))
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Limit::new(spec.clone(), clock)))
                })
                .collect();
            limits.insert(rule.id.clone(), counters);
            for mutator in &rule.mutators {
                if let Mutator::Header { headers } = mutator {
                    mutated_headers.extend(headers.iter().map(|(name, _)| name.clone()));
                }
            }
        }
        Self {
            rules,
            limits,
            mutated_headers,
        }
    }
}

async fn handle(State(gateway): State<Gateway>, mut request: Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    request
        .extensions_mut()
        .insert(http_api::RequestId(request_id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span =
        tracing::info_span!("gateway", request_id = %request_id, method = %method, path = %path);
    let loaded = gateway.loaded();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.as_str())
        })
        .unwrap_or_default()
        .to_owned();
    let url = RequestUrl {
        scheme: "https",
        host: &host,
        path: &path,
    };
    let (rule_id, outcome) = match loaded.rules.find(&method, &url) {
        None => {
            // The unread body is read on and dropped by the listener (lingering close).
            drop(request);
            (
                "none".to_owned(),
                Err(Refusal::new(
                    Decision::NoRule,
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such resource".into(),
                )),
            )
        }
        Some((rule, captures)) => {
            let max_body = rule
                .max_body_bytes
                .unwrap_or(gateway.inner.settings.max_body_bytes as u64);
            let outcome = match limit_body(request, max_body).await {
                Ok(request) => {
                    gateway
                        .pass(rule, &captures, &loaded, request)
                        .instrument(span.clone())
                        .await
                }
                Err(refusal) => Err(refusal),
            };
            (rule.id.clone(), outcome)
        }
    };
    let (decision, response) = match outcome {
        Ok(response) => (Decision::Allowed, response),
        Err(refusal) => (refusal.decision, refusal.into_response(&request_id)),
    };
    let elapsed = started.elapsed();
    let metrics = &gateway.inner.metrics;
    metrics
        .requests
        .get_or_create(&DecisionLabels {
            rule: rule_id.clone(),
            decision: decision.as_str(),
        })
        .inc();
    metrics
        .durations
        .get_or_create(&RuleLabels {
            rule: rule_id.clone(),
        })
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            rule = %rule_id,
            decision = decision.as_str(),
            status = response.status().as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "gateway"
        );
    });
    response
}

/// Refuses a body declared larger than `max_body` bytes; one streamed without a declared length
/// is cut off at the limit on its way.
async fn limit_body(request: Request, max_body: u64) -> Result<Request, Refusal> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body) {
        // The unread body is read on and dropped by the listener (lingering close).
        drop(request);
        return Err(Refusal::new(
            Decision::Denied,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large".into(),
        ));
    }
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    Ok(request.map(|body| Body::new(Limited::new(body, limit))))
}

impl Gateway {
    async fn pass(
        &self,
        rule: &Rule,
        captures: &[String],
        loaded: &Loaded,
        mut request: Request,
    ) -> Result<Response, Refusal> {
        let session = self.authenticate(rule, request.headers()).await?;
        let address = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip().to_string())
            .unwrap_or_default();
        let origin = RequestOrigin {
            address: Some(address.clone()).filter(|address| !address.is_empty()),
            request_id: request
                .extensions()
                .get::<http_api::RequestId>()
                .map(|id| id.0.clone()),
        };
        self.authorize(rule, captures, &session, &origin).await?;
        let headroom = self.throttle(rule, loaded, &session, &address).await?;
        self.mutate(rule, loaded, &session, captures, &mut request)
            .await?;
        let mut response = self.forward(rule, request).await?;
        if let Some(headroom) = headroom {
            let headers = response.headers_mut();
            for (name, value) in
                rate_limit_headers(headroom.limit, headroom.remaining, None, headroom.window)
            {
                headers.insert(name, value);
            }
        }
        Ok(response)
    }

    async fn throttle(
        &self,
        rule: &Rule,
        loaded: &Loaded,
        session: &Session,
        address: &str,
    ) -> Result<Option<Headroom>, Refusal> {
        let mut tightest: Option<Headroom> = None;
        let mut refused: Option<Throttled> = None;
        let shared = self.inner.settings.shared_counters.as_deref();
        for limit in loaded.limits.get(&rule.id).into_iter().flatten() {
            let counted = limit
                .check(&rule.id, session, address, &self.inner.clock, shared)
                .await;
            match counted {
                Ok(headroom) => {
                    if tightest.is_none_or(|t| headroom.remaining < t.remaining) {
                        tightest = Some(headroom);
                    }
                }
                Err(throttled) => {
                    if refused.is_none_or(|r| throttled.retry_after > r.retry_after) {
                        refused = Some(throttled);
                    }
                }
            }
        }
        let Some(throttled) = refused else {
            return Ok(tightest);
        };
        let seconds = throttled.retry_after.as_secs_f64().ceil().max(1.0);
        let mut refusal = Refusal::new(
            Decision::Throttled,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "too many requests (limit per {}); retry in {seconds} s",
                throttled.per.as_str()
            ),
        );
        refusal
            .headers
            .push((header::RETRY_AFTER, format!("{seconds}")));
        for (name, value) in rate_limit_headers(
            throttled.limit,
            0,
            Some(throttled.retry_after),
            throttled.window,
        ) {
            if let Ok(value) = value.to_str() {
                refusal.headers.push((name, value.to_owned()));
            }
        }
        Err(refusal)
    }

    async fn forward(&self, rule: &Rule, mut request: Request) -> Result<Response, Refusal> {
        let upstream = &rule.upstream;
        if let Some(prefix) = &upstream.strip_path {
            proxy::strip_prefix(&mut request, prefix);
        }
        // A part of Warden that runs apart is reached at its configured URL.
        let base = match &upstream.target {
            Target::Local { part } => match self.inner.settings.part_urls.get(part) {
                Some(url) => url,
                None => {
                    return match self.inner.local.clone().oneshot(request).await {
                        Ok(response) => Ok(response),
                        Err(never) => match never {},
                    };
                }
            },
            Target::Remote(base) => base,
        };
        proxy::forward(
            &self.inner.client,
            base,
            upstream.preserve_host,
            self.inner.settings.upstream_timeout,
            request,
        )
        .await
        .map_err(|error| {
            tracing::warn!(rule = %rule.id, %error, "upstream failed");
            let (status, code, message) = match error {
                UpstreamError::Timeout => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the service behind the gateway did not answer in time",
                ),
                UpstreamError::Unreachable(_) => (
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    "the service behind the gateway could not be reached",
                ),
            };
            Refusal::new(Decision::UpstreamError, status, code, message.into())
        })
    }
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds until the caller may
/// go on, when throttled) and `RateLimit-Policy` (`LIMIT;w=WINDOW`), as the IETF httpapi
/// working group's rate-limit header fields draft names them.
fn rate_limit_headers(
    limit: u32,
    remaining: u32,
    reset: Option<Duration>,
    window: Duration,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(limit),
        ),
        (
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from(remaining),
        ),
    ];
    if let Ok(policy) = HeaderValue::from_str(&format!("{limit};w={}", window.as_secs())) {
        headers.push((HeaderName::from_static("ratelimit-policy"), policy));
    }
    if let Some(reset) = reset {
        let seconds = reset.as_secs_f64().ceil().max(1.0);
        // Whole seconds, as the header wants; `seconds` is at most a day here.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        headers.push((
            HeaderName::from_static("ratelimit-reset"),
            HeaderValue::from(seconds as u64),
        ));
    }
    headers
}
