//! The OAuth token endpoint and the JWKS, driven by OAuth and JOSE libraries written by others
//! (`oauth2`, `jsonwebtoken`), the way a service of the appliance maker would use them.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use model::Timestamp;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{ClientId, ClientSecret, RequestTokenError, Scope, TokenResponse, TokenUrl};
use reqwest::StatusCode;
use serde_json::Value;
use testkit::{TestApp, warden_command};

/// `warden admin …` against the app's data directory, as an operator would run it beside the server.
fn admin(app: &TestApp, args: &[&str]) -> String {
    let mut full = vec!["admin"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--data-dir", app.data_dir.path().to_str().unwrap()]);
    let output = warden_command(&full).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

pub(crate) struct Registered {
    pub(crate) id: String,
    pub(crate) secret: String,
}

pub(crate) fn register_client(app: &TestApp, scope: &str) -> Registered {
    let out = admin(
        app,
        &[
            "clients",
            "create",
            "--name",
            "fleet service",
            "--scope",
            scope,
        ],
    );
    Registered {
        id: field(&out, "client_id:").to_owned(),
        secret: field(&out, "client_secret:").to_owned(),
    }
}

/// An HTTP client for the oauth2 crate: trusts the app's CA and, as oauth2 requires, never
/// follows redirects.
fn http(app: &TestApp) -> reqwest::Client {
    app.client.clone()
}

pub(crate) async fn client_credentials(
    app: &TestApp,
    client: &Registered,
    secret: &str,
    scopes: &[&str],
) -> Result<
    oauth2::basic::BasicTokenResponse,
    RequestTokenError<oauth2::HttpClientError<reqwest::Error>, oauth2::basic::BasicErrorResponse>,
> {
    let oauth = BasicClient::new(ClientId::new(client.id.clone()))
        .set_client_secret(ClientSecret::new(secret.to_owned()))
        .set_token_uri(TokenUrl::new(app.url("/oauth2/token")).unwrap());
    let mut request = oauth.exchange_client_credentials();
    for scope in scopes {
        request = request.add_scope(Scope::new((*scope).to_owned()));
    }
    request.request_async(&http(app)).await
}

/// Verifies `token` the way a resource server does: by the key the JWKS publishes for its `kid`.
async fn verify_with_jwks(app: &TestApp, token: &str) -> Result<Value, String> {
    verify_with_jwks_for(app, token, &format!("{}/api", app.base_url)).await
}

/// The same, for a token meant for `audience`.
pub(crate) async fn verify_with_jwks_for(
    app: &TestApp,
    token: &str,
    audience: &str,
) -> Result<Value, String> {
    let jwks: Value = app.get("/oauth2/jwks").await.json().await.unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[app.base_url.as_str()]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|error| error.to_string())
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_gets_a_signed_access_token_with_client_credentials() {
    let app = TestApp::spawn().await;
    let client = register_client(&app, "devices:read devices:write");
    let response = client_credentials(&app, &client, &client.secret, &["devices:read"])
        .await
        .unwrap();
    assert_eq!(response.expires_in(), Some(Duration::from_secs(600)));
    let scopes: Vec<String> = response
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scopes, ["devices:read"]);

    let token = response.access_token().secret();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let claims = verify_with_jwks(&app, token).await.unwrap();
    assert_eq!(claims["client_id"], client.id.as_str());
    assert_eq!(claims["sub"], client.id.as_str());
    assert_eq!(claims["scope"], "devices:read");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );

    // Without a scope it gets every machine scope it is allowed.
    let all = client_credentials(&app, &client, &client.secret, &[])
        .await
        .unwrap();
    let claims = verify_with_jwks(&app, all.access_token().secret())
        .await
        .unwrap();
    assert_eq!(claims["scope"], "devices:read devices:write");
}

async fn introspect(app: &TestApp, client: &Registered, token: &str) -> Value {
    app.client
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Introspection remembers tokens it found active (with keys and clients cached as in
/// production), yet a revocation written to the database by another process — here straight into
/// the store, as a second replica would — turns the answer to inactive within the revocation poll,
/// and a remembered token still expires on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_from_memory_notices_revocations_made_elsewhere_and_expiry() {
    let app = TestApp::spawn_with(|config| config.oauth.cache_seconds = 60).await;
    let service = register_client(&app, "devices:read");
    let token = client_credentials(&app, &service, &service.secret, &[])
        .await
        .unwrap()
        .access_token()
        .secret()
        .clone();
    for _ in 0..2 {
        assert_eq!(introspect(&app, &service, &token).await["active"], true);
    }
    let claims = verify_with_jwks(&app, &token).await.unwrap();
    app.warden
        .store
        .grants()
        .revoke_access_token(
            claims["jti"].as_str().unwrap(),
            Timestamp::from_unix_millis(claims["exp"].as_i64().unwrap() * 1000),
        )
        .await
        .unwrap();
    let revoked_at = std::time::Instant::now();
    while introspect(&app, &service, &token).await["active"] == true {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(2),
            "a revoked token is still active after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let other = client_credentials(&app, &service, &service.secret, &[])
        .await
        .unwrap()
        .access_token()
        .secret()
        .clone();
    assert_eq!(introspect(&app, &service, &other).await["active"], true);
    app.clock.advance(Duration::from_secs(601));
    assert_eq!(
        introspect(&app, &service, &other).await,
        serde_json::json!({"active": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_refused_with_the_exact_rfc_6749_error() {
    let app = TestApp::spawn().await;
    let client = register_client(&app, "devices:read");
    let code_of =
        |result: Result<_, RequestTokenError<_, oauth2::basic::BasicErrorResponse>>| match result {
            Err(RequestTokenError::ServerResponse(response)) => response.error().clone(),
            other => panic!(
                "expected an OAuth error, got {:?}",
                other.map(|_: oauth2::basic::BasicTokenResponse| ())
            ),
        };
    let wrong_secret = client_credentials(&app, &client, "not-the-secret", &[]).await;
    assert_eq!(code_of(wrong_secret), BasicErrorResponseType::InvalidClient);
    let unknown = Registered {
        id: "wc_unknown".into(),
        secret: client.secret.clone(),
    };
    assert_eq!(
        code_of(client_credentials(&app, &unknown, &client.secret, &[]).await),
        BasicErrorResponseType::InvalidClient
    );
    let too_much = client_credentials(&app, &client, &client.secret, &["devices:write"]).await;
    assert_eq!(code_of(too_much), BasicErrorResponseType::InvalidScope);
    let made_up = client_credentials(&app, &client, &client.secret, &["devices:fly"]).await;
    assert_eq!(code_of(made_up), BasicErrorResponseType::InvalidScope);

    // A grant type Warden does not offer, and a wrong secret seen on the wire.
    let response = app
        .client
        .post(app.url("/oauth2/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[
            ("grant_type", "password"),
            ("username", "x"),
            ("password", "y"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    let response = app
        .client
        .post(app.url("/oauth2/token"))
        .basic_auth(&client.id, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"warden\""
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
}

async fn token(app: &TestApp, client: &Registered) -> String {
    let response = client_credentials(app, client, &client.secret, &[])
        .await
        .unwrap();
    response.access_token().secret().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_issued_tokens_valid_and_retiring_a_key_invalidates_its_tokens() {
    let app = TestApp::spawn().await;
    let client = register_client(&app, "devices:read");
    let before = token(&app, &client).await;
    let first_kid = kid_of(&before);

    let rotated = admin(&app, &["keys", "rotate"]);
    assert!(rotated.contains("published key"), "{rotated}");
    let jwks: Value = app.get("/oauth2/jwks").await.json().await.unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "the new key is published before it signs"
    );
    let still_old = token(&app, &client).await;
    assert_eq!(
        kid_of(&still_old),
        first_kid,
        "the new key does not sign before the publish lead"
    );

    // Just before the new key takes over, then just after.
    let keys = app.warden.store.signing_keys().all().await.unwrap();
    let takeover = keys
        .iter()
        .find(|key| key.kid != first_kid)
        .unwrap()
        .usable_from;
    app.clock
        .set(Timestamp::from_unix_millis(takeover.unix_millis() - 10_000));
    let late_old = token(&app, &client).await;
    app.clock
        .set(Timestamp::from_unix_millis(takeover.unix_millis() + 10_000));
    let new = token(&app, &client).await;
    assert_ne!(kid_of(&new), first_kid, "the new key signs after the lead");
    verify_with_jwks(&app, &new).await.unwrap();
    verify_with_jwks(&app, &late_old)
        .await
        .expect("a token signed before the rotation still verifies");

    // A compromised key is withdrawn at once: its unexpired tokens stop verifying.
    admin(&app, &["keys", "retire", &first_kid]);
    let error = verify_with_jwks(&app, &late_old).await.unwrap_err();
    assert!(error.contains("not in the JWKS"), "{error}");
    verify_with_jwks(&app, &new).await.unwrap();
}

/// A client assertion (RFC 7523) signed with `key`, as a service would make it with a JOSE library.
fn assertion(
    key: &tokens::keys::SigningKey,
    client_id: &str,
    audience: &str,
    exp: i64,
    jti: &str,
) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    let claims = serde_json::json!({"iss": client_id, "sub": client_id, "aud": audience, "exp": exp, "jti": jti});
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(key.private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_authenticates_with_a_signed_assertion_once() {
    let app = TestApp::spawn().await;
    let now = model::Clock::now(&app.clock);
    let key = tokens::keys::SigningKey::generate(now, now).unwrap();
    let jwks = serde_json::json!({"keys": [key.jwk()]});
    let jwks_file = app.data_dir.path().join("service-jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let out = admin(
        &app,
        &[
            "clients",
            "create",
            "--name",
            "fleet service",
            "--scope",
            "devices:read",
            "--jwks",
            jwks_file.to_str().unwrap(),
        ],
    );
    assert!(
        !out.contains("client_secret"),
        "a client with keys gets no secret: {out}"
    );
    let client_id = field(&out, "client_id:").to_owned();
    let endpoint = app.url("/oauth2/token");
    let exp = now.unix_millis() / 1000 + 60;

    let send = |assertion: String| {
        app.client
            .post(app.url("/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
    };
    let good = assertion(&key, &client_id, &endpoint, exp, "jti-1");
    let response = send(good.clone()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    let claims = verify_with_jwks(&app, token["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims["client_id"], client_id.as_str());

    let other_key = tokens::keys::SigningKey::generate(now, now).unwrap();
    let refusals = [
        (good, "replayed"),
        (
            assertion(
                &key,
                &client_id,
                "https://elsewhere.example/token",
                exp,
                "jti-2",
            ),
            "wrong audience",
        ),
        (
            assertion(
                &key,
                &client_id,
                &endpoint,
                now.unix_millis() / 1000 - 1,
                "jti-3",
            ),
            "expired",
        ),
        (
            assertion(&key, &client_id, &endpoint, exp + 3600, "jti-4"),
            "valid too long",
        ),
        (
            assertion(&other_key, &client_id, &endpoint, exp, "jti-5"),
            "foreign key",
        ),
        (
            assertion(&key, "wc_someone_else", &endpoint, exp, "jti-6"),
            "unknown client",
        ),
    ];
    for (assertion, case) in refusals {
        let response = send(assertion).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "invalid_client",
            "{case}"
        );
    }
    // The issuer is an accepted audience too.
    let by_issuer = send(assertion(&key, &client_id, &app.base_url, exp, "jti-7"))
        .await
        .unwrap();
    assert_eq!(by_issuer.status(), StatusCode::OK);
}
