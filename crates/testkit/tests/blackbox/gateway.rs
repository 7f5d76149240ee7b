//! The gateway end to end, with real tokens from Warden's OAuth server: the shipped rules refusing
//! early (expired token, missing scope, a device that is not the caller's), and a rules file of
//! the operator's own in front of a service elsewhere (an echo server in this test): a wrong
//! audience, headers set by the gateway and spoofed copies stripped, throttling triggered and
//! lifted by the clock, an upstream that is down, and rules edited while Warden runs.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::extract::Request;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::devices::Fleet;

/// A service elsewhere that answers every request with what reached it.
async fn echo_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|request: Request| async move {
        let headers: serde_json::Map<String, Value> = request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    Value::from(value.to_str().unwrap_or_default()),
                )
            })
            .collect();
        axum::Json(json!({
            "method": request.method().as_str(),
            "path": request.uri().path(),
            "query": request.uri().query(),
            "headers": headers,
        }))
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The shipped rules followed by `extra` rules (YAML list items, indented by two spaces).
fn rules_file(path: &Path, extra: &str) {
    std::fs::write(path, format!("{}{extra}", gateway::SHIPPED_RULES)).unwrap();
}

fn counter(metrics: &str, rule: &str, decision: &str) -> u64 {
    let prefix =
        format!("warden_gateway_requests_total{{rule=\"{rule}\",decision=\"{decision}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rules_refuse_expired_tokens_missing_scopes_and_other_peoples_devices() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = devices[0]["device_id"].as_str().unwrap();
    let customer = fleet.person("customer@example.com", "customer").await;

    // The admin rule requires the `admin` scope: the gateway says which is missing.
    let response = fleet
        .app
        .client
        .get(fleet.app.url("/api/v1/admin/clients"))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"warden\", error=\"insufficient_scope\", scope=\"admin\""
    );

    // A device that is not the caller's does not exist for them, as the gateway's device
    // authorizer decides (counted under its rule).
    let (status, body) = fleet
        .get(&format!("/api/v1/devices/{device_id}/state"), &customer)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let metrics = fleet.app.get("/metrics").await.text().await.unwrap();
    assert_eq!(counter(&metrics, "device-state", "denied"), 1, "{metrics}");

    // Claimed, the same request passes the gateway and the handler.
    assert_eq!(fleet.claim(&customer, &devices[0]).await.0, StatusCode::OK);
    let (status, _) = fleet
        .get(&format!("/api/v1/devices/{device_id}/state"), &customer)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Past its lifetime, the token is refused with the reason.
    fleet.app.clock.advance(Duration::from_secs(601));
    let response = fleet
        .app
        .client
        .get(fleet.app.url("/api/v1/devices"))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"warden\", error=\"invalid_token\""
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "the token has expired", "{body}");
    fleet.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_rules_guard_a_service_elsewhere_and_change_while_warden_runs() {
    let echo = echo_upstream().await;
    let down = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    let custom = format!(
        r#"
  - id: echo-user
    match: {{ url: "/echo/user/<.*>", methods: [GET] }}
    authenticators: [{{ handler: jwt }}]
    authorizer: {{ handler: allow }}
    mutators:
      - handler: header
        config:
          headers:
            X-User-Id: "{{{{ print .Subject }}}}"
            X-Client: "{{{{ .Extra.client_id }}}}"
    upstream: {{ url: "http://{echo}/base", strip_path: /echo }}
    throttle:
      limits:
        - {{ per: user, rate: 2/minute }}
  - id: echo-public
    match: {{ url: "/echo/public", methods: [GET] }}
    authenticators: [{{ handler: anonymous }}]
    authorizer: {{ handler: allow }}
    upstream: {{ url: "http://{echo}" }}
  - id: other-audience
    match: {{ url: "/aud", methods: [GET] }}
    authenticators: [{{ handler: jwt, config: {{ target_audience: ["https://other.example/api"] }} }}]
    authorizer: {{ handler: allow }}
    upstream: {{ url: "http://{echo}" }}
  - id: down
    match: {{ url: "/down", methods: [GET] }}
    authenticators: [{{ handler: noop }}]
    authorizer: {{ handler: allow }}
    upstream: {{ url: "http://127.0.0.1:{down}" }}
  - id: reports
    match: {{ url: "/reports/<.*>", methods: [GET] }}
    authenticators: [{{ handler: noop }}]
    authorizer: {{ handler: allow }}
    upstream: {{ url: "warden://reports" }}
  - id: thing
    match: {{ url: "/things/<[^/]+>", methods: [GET] }}
    authenticators: [{{ handler: jwt }}]
    authorizer:
      handler: device
      config: {{ action: read_events, device_id: "{{{{ index .MatchContext.RegexpCaptureGroups 0 }}}}" }}
    upstream: {{ url: "http://{echo}" }}
"#
    );
    rules_file(&path, &custom);
    let rules = path.to_str().unwrap().to_owned();
    let fleet = Fleet::with(|config| {
        config.gateway.rules_file = rules;
        // A part of Warden that runs apart (here the echo server) is reached at its URL.
        config
            .gateway
            .part_urls
            .insert("reports".into(), format!("http://{echo}/split"));
    })
    .await;
    let app = &fleet.app;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = devices[0]["device_id"].as_str().unwrap();
    let owner = fleet.person("owner@example.com", "customer").await;
    let owner_id = app
        .client
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |path: &str, token: Option<&str>| {
        let mut request = app
            .client
            .get(app.url(path))
            .header("X-User-Id", "spoofed-admin");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // The gateway sets the identity headers; the client's copy never reaches the service.
    let response = get("/echo/user/a?x=1", Some(&owner)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["ratelimit-limit"], "2");
    assert_eq!(response.headers()["ratelimit-remaining"], "1");
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["path"], "/base/user/a", "{seen}");
    assert_eq!(seen["query"], "x=1");
    assert_eq!(seen["headers"]["x-user-id"], owner_id.as_str(), "{seen}");
    assert!(
        seen["headers"]["x-client"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert!(seen["headers"]["x-request-id"].is_string());
    let seen: Value = get("/echo/public", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(seen["headers"].get("x-user-id").is_none(), "{seen}");
    // The login session that signed this browser up stays with Warden.
    assert!(
        !seen.to_string().contains("__Host-warden_session"),
        "{seen}"
    );

    // Two a minute per user: the third is throttled until the clock moves on.
    assert_eq!(
        get("/echo/user/b", Some(&owner)).await.unwrap().status(),
        StatusCode::OK
    );
    let throttled = get("/echo/user/c", Some(&owner)).await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()["retry-after"], "30");
    assert_eq!(throttled.headers()["ratelimit-remaining"], "0");
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    // Another user is not held back by the owner's count.
    assert_eq!(
        get("/echo/user/d", Some(&admin)).await.unwrap().status(),
        StatusCode::OK
    );
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(
        get("/echo/user/e", Some(&owner)).await.unwrap().status(),
        StatusCode::OK
    );

    // A token for Warden's API is not one for another audience.
    let response = get("/aud", Some(&owner)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "the token is meant for another audience"
    );

    // The device authorizer: someone else's device is not there; one's own passes.
    let thing = format!("/things/{device_id}");
    assert_eq!(
        get(&thing, Some(&owner)).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(fleet.claim(&owner, &devices[0]).await.0, StatusCode::OK);
    assert_eq!(
        get(&thing, Some(&owner)).await.unwrap().status(),
        StatusCode::OK
    );

    // `warden://reports` goes to where that part runs.
    let seen: Value = get("/reports/weekly", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/split/reports/weekly", "{seen}");

    // A service that is down: 502 in the error shape, nothing of the cause.
    let response = get("/down", None).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");

    // A rule added to the file takes effect without a restart.
    assert_eq!(
        get("/echo/late", None).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let late = r#"
  - id: late
    match: { url: "/echo/late", methods: [GET] }
    authenticators: [{ handler: noop }]
    authorizer: { handler: allow }
    upstream: { url: "http://ECHO" }
"#
    .replace("ECHO", &echo.to_string());
    rules_file(&path, &format!("{custom}{late}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get("/echo/late", None).await.unwrap().status() != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new rule never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken file changes nothing: the rules in force stay.
    std::fs::write(&path, "rules: [ { id: broken").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        get("/echo/late", None).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/echo/public", None).await.unwrap().status(),
        StatusCode::OK
    );
    fleet.app.stop().await;
}

/// A policy service in the manner of Open Policy Agent: `/decide` allows when the payload's
/// `part` is `open` and remembers the last payload; `/slow` answers after two seconds.
async fn policy_service() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Value>>) {
    let last = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let seen = last.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/decide",
            axum::routing::post(move |axum::Json(payload): axum::Json<Value>| async move {
                let open = payload["part"] == "open";
                *seen.lock().unwrap() = payload;
                axum::Json(json!({ "result": open }))
            }),
        )
        .route(
            "/slow",
            axum::routing::post(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                axum::Json(json!({ "result": true }))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_honours_revocation_policy_services_decide_and_upstreams_get_signed_identity()
{
    let echo = echo_upstream().await;
    let (policy, last_payload) = policy_service().await;
    let down = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    let subject_part = "{{ print .Subject }}";
    let group = "{{ index .MatchContext.RegexpCaptureGroups 0 }}";
    rules_file(
        &path,
        &format!(
            r#"
  - id: intro
    match: {{ url: "/intro", methods: [GET] }}
    authenticators: [{{ handler: oauth2_introspection, config: {{ cache_ttl_seconds: 0 }} }}]
    authorizer: {{ handler: allow }}
    upstream: {{ url: "http://{echo}" }}
  - id: intro-cached
    match: {{ url: "/intro-cached", methods: [GET] }}
    authenticators: [{{ handler: oauth2_introspection, config: {{ cache_ttl_seconds: 60 }} }}]
    authorizer: {{ handler: allow }}
    upstream: {{ url: "http://{echo}" }}
  - id: intro-cached-admin
    match: {{ url: "/intro-cached-admin", methods: [GET] }}
    authenticators:
      - {{ handler: oauth2_introspection, config: {{ cache_ttl_seconds: 60, required_scope: [admin] }} }}
    authorizer: {{ handler: allow }}
    upstream: {{ url: "http://{echo}" }}
  - id: policy
    match: {{ url: "/policy/<[a-z]+>", methods: [GET] }}
    authenticators: [{{ handler: jwt }}]
    authorizer:
      handler: remote_json
      config:
        remote: "http://{policy}/decide"
        payload: '{{"subject": "{subject_part}", "part": "{group}"}}'
        timeout_ms: 1000
    upstream: {{ url: "http://{echo}" }}
  - id: policy-down
    match: {{ url: "/policy-down", methods: [GET] }}
    authenticators: [{{ handler: noop }}]
    authorizer: {{ handler: remote_json, config: {{ remote: "http://127.0.0.1:{down}/decide", payload: "{{}}" }} }}
    upstream: {{ url: "http://{echo}" }}
  - id: policy-slow
    match: {{ url: "/policy-slow", methods: [GET] }}
    authenticators: [{{ handler: noop }}]
    authorizer: {{ handler: remote_json, config: {{ remote: "http://{policy}/slow", payload: "{{}}", timeout_ms: 200 }} }}
    upstream: {{ url: "http://{echo}" }}
  - id: signed
    match: {{ url: "/signed", methods: [GET] }}
    authenticators: [{{ handler: jwt }}]
    authorizer: {{ handler: allow }}
    mutators: [{{ handler: id_token, config: {{ audience: "https://echo.internal", ttl_seconds: 30 }} }}]
    upstream: {{ url: "http://{echo}" }}
"#
        ),
    );
    let rules = path.to_str().unwrap().to_owned();
    let fleet = Fleet::with(|config| config.gateway.rules_file = rules).await;
    let app = &fleet.app;
    let owner = fleet.person("owner@example.com", "customer").await;
    let get = |path: &str, token: Option<&str>| {
        let mut request = app.client.get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // Introspection: active tokens pass; a remembered answer still meets each rule's scopes.
    assert_eq!(
        get("/intro", Some(&owner)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/intro-cached", Some(&owner)).await.unwrap().status(),
        StatusCode::OK
    );
    let response = get("/intro-cached-admin", Some(&owner)).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    // Revoked: refused at once without a cache, and once the cached answer is older than its
    // time to live.
    let revoked = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[
            ("token", owner.as_str()),
            ("client_id", &fleet.console_id()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let response = get("/intro", Some(&owner)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "the token is not active");
    assert_eq!(
        get("/intro-cached", Some(&owner)).await.unwrap().status(),
        StatusCode::OK
    );
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(
        get("/intro-cached", Some(&owner)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // A policy service decides; its payload carries the subject as a JSON string, whatever it
    // holds; anything but a clear yes, including silence, is a no.
    let person = fleet.person("person@example.com", "customer").await;
    assert_eq!(
        get("/policy/open", Some(&person)).await.unwrap().status(),
        StatusCode::OK
    );
    let payload = last_payload.lock().unwrap().clone();
    assert_eq!(payload["part"], "open");
    assert!(
        payload["subject"].as_str().is_some_and(|s| !s.is_empty()),
        "{payload}"
    );
    let response = get("/policy/closed", Some(&person)).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "the access policy does not allow this"
    );
    assert_eq!(
        get("/policy-down", None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get("/policy-slow", None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // The upstream gets a short-lived JWT signed by Warden for it alone, verifiable with the
    // JWKS, which Warden's own API refuses as an access token.
    let seen: Value = get("/signed", Some(&person))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let assertion = seen["headers"]["authorization"]
        .as_str()
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap()
        .to_owned();
    assert_ne!(assertion, person);
    let claims = crate::oauth::verify_with_jwks_for(app, &assertion, "https://echo.internal")
        .await
        .unwrap();
    assert_eq!(claims["iss"], app.base_url.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        30
    );
    assert!(
        claims["scope"].as_str().unwrap().contains("devices:read"),
        "{claims}"
    );
    let refused = app
        .client
        .get(app.url("/api/v1/devices"))
        .bearer_auth(&assertion)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    fleet.app.stop().await;
}
