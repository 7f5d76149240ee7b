//! The whole OpenID Connect flow driven by the `openidconnect` crate, a client library written by
//! others: discovery, login through the HTML form, authorization code with PKCE, ID token
//! verification against the JWKS, userinfo, refresh rotation. And the refusals, each with its
//! exact error.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::Value;
use testkit::{TestApp, warden_command};

pub(crate) const PASSWORD: &str = "correct horse battery staple";
const REDIRECT: &str = "http://127.0.0.1:8765/callback";

/// Registers the console-like first-party public client and returns its id.
fn register_public_client(app: &TestApp, first_party: bool) -> String {
    let mut args = vec![
        "admin",
        "clients",
        "create",
        "--name",
        "Warden console",
        "--public",
        "--scope",
        "openid email offline_access devices:read",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--data-dir",
        app.data_dir.path().to_str().unwrap(),
    ];
    if first_party {
        args.push("--first-party");
    }
    let output = warden_command(&args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_id:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Registers a confidential client (a resource server that introspects tokens).
fn register_confidential_client(app: &TestApp) -> (String, String) {
    let args = [
        "admin",
        "clients",
        "create",
        "--name",
        "API gateway",
        "--data-dir",
        app.data_dir.path().to_str().unwrap(),
    ];
    let output = warden_command(&args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    (field("client_id:"), field("client_secret:"))
}

/// The console-like public client, registered and discovered: its id and an OIDC client for it.
async fn console(app: &TestApp, first_party: bool) -> (String, Client) {
    let client_id = register_public_client(app, first_party);
    let client = discover(app, &client_id).await;
    (client_id, client)
}

type TokenResult = Result<
    openidconnect::core::CoreTokenResponse,
    RequestTokenError<
        openidconnect::HttpClientError<reqwest::Error>,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
>;

async fn exchange_code(
    app: &TestApp,
    client: &Client,
    code: String,
    verifier: PkceCodeVerifier,
) -> TokenResult {
    client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&app.client)
        .await
}

async fn refresh_with(
    app: &TestApp,
    client: &Client,
    token: &openidconnect::RefreshToken,
) -> TokenResult {
    client
        .exchange_refresh_token(token)
        .unwrap()
        .request_async(&app.client)
        .await
}

pub(crate) type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

pub(crate) async fn discover(app: &TestApp, client_id: &str) -> Client {
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(app.base_url.clone()).unwrap(),
        &app.client,
    )
    .await
    .expect("discovery");
    CoreClient::from_provider_metadata(metadata, ClientId::new(client_id.to_owned()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap())
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Follows the authorization request like a browser: to the login form if there is no session yet,
/// logs in, and back; returns the URL the client was redirected to.
async fn authorize_in_browser(app: &TestApp, authorize_url: &str) -> String {
    let first = app.client.get(authorize_url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let login_page = location(&first);
    if !login_page.starts_with("/login?next=") {
        return login_page;
    }
    let next = query_param(&app.url(&login_page), "next").unwrap();
    let logged_in = app.login("ada@example.com", PASSWORD, &next).await;
    assert_eq!(logged_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&logged_in), next);
    let back = app.client.get(app.url(&next)).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    location(&back)
}

struct Started {
    url: String,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

fn start(client: &Client, scopes: &[&str]) -> Started {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in scopes {
        request = request.add_scope(Scope::new((*scope).to_owned()));
    }
    let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
    Started {
        url: url.to_string(),
        state,
        nonce,
        verifier,
    }
}

async fn user_app() -> TestApp {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.signup("ada@example.com", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    app.logout().await;
    app
}

fn oauth_error<T: std::fmt::Debug, RE: std::error::Error + 'static>(
    result: Result<
        T,
        RequestTokenError<
            RE,
            openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
        >,
    >,
) -> String {
    match result {
        Err(RequestTokenError::ServerResponse(response)) => response.error().to_string(),
        other => panic!("expected an OAuth error response, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_login_code_pkce_tokens_userinfo_and_refresh() {
    let app = user_app().await;
    let (client_id, client) = console(&app, true).await;
    let started = start(&client, &["email", "offline_access"]);

    let redirected = authorize_in_browser(&app, &started.url).await;
    assert!(redirected.starts_with(REDIRECT), "{redirected}");
    assert_eq!(
        query_param(&redirected, "state").as_deref(),
        Some(started.state.secret().as_str())
    );
    assert_eq!(
        query_param(&redirected, "iss").as_deref(),
        Some(app.base_url.as_str())
    );
    let code = query_param(&redirected, "code").unwrap();

    let tokens = exchange_code(&app, &client, code, started.verifier)
        .await
        .expect("the code exchange");
    // The library checks the signature against the JWKS, iss, aud, exp, nonce and at_hash.
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&client.id_token_verifier(), &started.nonce)
        .expect("a valid ID token");
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.com"));
    let access = tokens.access_token().clone();
    assert_eq!(
        *id_token.signing_alg().unwrap(),
        openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256
    );

    let userinfo: CoreUserInfoClaims = client
        .user_info(access.clone(), None)
        .unwrap()
        .request_async(&app.client)
        .await
        .expect("userinfo");
    assert_eq!(userinfo.subject(), claims.subject());
    assert_eq!(
        userinfo.email().map(|e| e.as_str()),
        Some("ada@example.com")
    );

    // Refresh rotates the refresh token.
    let first_refresh = tokens.refresh_token().expect("a refresh token").clone();
    let refreshed = refresh_with(&app, &client, &first_refresh)
        .await
        .expect("refresh");
    let second_refresh = refreshed
        .refresh_token()
        .expect("a rotated refresh token")
        .clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());

    // A resource server asks whether the token is active, then the user's app revokes its grant.
    let (gateway_id, gateway_secret) = register_confidential_client(&app);
    let introspect = |token: String| {
        app.client
            .post(app.url("/oauth2/introspect"))
            .basic_auth(&gateway_id, Some(&gateway_secret))
            .form(&[("token", token)])
            .send()
    };
    let fresh_access = refreshed.access_token().secret().clone();
    let answer: Value = introspect(fresh_access.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["sub"], claims.subject().as_str());
    assert_eq!(answer["client_id"], client_id.as_str());
    let revoked = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[
            ("token", second_refresh.secret().as_str()),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let answer: Value = introspect(fresh_access)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"active": false}),
        "revoking the refresh token revokes its grant"
    );
    let answer: Value = introspect(second_refresh.secret().clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["active"], false);
    let after = refresh_with(&app, &client, &second_refresh).await;
    assert_eq!(oauth_error(after), "invalid_grant");

    // Introspection is for authenticated clients only.
    let anonymous = app
        .client
        .post(app.url("/oauth2/introspect"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let app = user_app().await;
    let (_, client) = console(&app, true).await;
    let started = start(&client, &["offline_access"]);
    let code = query_param(&authorize_in_browser(&app, &started.url).await, "code").unwrap();
    let tokens = exchange_code(&app, &client, code, started.verifier)
        .await
        .unwrap();
    let first_refresh = tokens.refresh_token().unwrap().clone();
    let refreshed = refresh_with(&app, &client, &first_refresh).await.unwrap();
    let second_refresh = refreshed.refresh_token().unwrap().clone();

    // Within the grace window (two tabs refreshing at once) the old token is refused, nothing more.
    let racing = refresh_with(&app, &client, &first_refresh).await;
    assert_eq!(oauth_error(racing), "invalid_grant");
    let still = refresh_with(&app, &client, &second_refresh).await.unwrap();
    let third_refresh = still.refresh_token().unwrap().clone();

    // After it, a reuse means theft: the whole family is revoked.
    app.clock.advance(std::time::Duration::from_secs(11));
    let reuse = refresh_with(&app, &client, &first_refresh).await;
    assert_eq!(oauth_error(reuse), "invalid_grant");
    let after = refresh_with(&app, &client, &third_refresh).await;
    assert_eq!(oauth_error(after), "invalid_grant", "the family is revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_code_or_a_wrong_verifier_is_refused_and_reuse_revokes_the_first_tokens() {
    let app = user_app().await;
    let (_, client) = console(&app, true).await;

    // Wrong verifier.
    let started = start(&client, &["offline_access"]);
    let code = query_param(&authorize_in_browser(&app, &started.url).await, "code").unwrap();
    let wrong = PkceCodeVerifier::new("x".repeat(64));
    let result = exchange_code(&app, &client, code, wrong).await;
    assert_eq!(oauth_error(result), "invalid_grant");

    // A code used twice: the second use fails and revokes what the first issued.
    let started = start(&client, &["offline_access"]);
    let code = query_param(&authorize_in_browser(&app, &started.url).await, "code").unwrap();
    let verifier = started.verifier.secret().clone();
    let first = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.clone()))
        .request_async(&app.client)
        .await
        .unwrap();
    let second = exchange_code(&app, &client, code, PkceCodeVerifier::new(verifier)).await;
    assert_eq!(oauth_error(second), "invalid_grant");
    let refresh = first.refresh_token().unwrap();
    let revoked = refresh_with(&app, &client, refresh).await;
    assert_eq!(oauth_error(revoked), "invalid_grant");
    // The reuse is in the audit journal once: the refused refresh after it is no reuse.
    let store = store::Store::connect(&app.settings.database, &store::StoreOptions::default())
        .await
        .unwrap();
    let reuses = store
        .audit()
        .query(&audit::Query {
            action: Some("token.reuse".into()),
            limit: 10,
            ..audit::Query::default()
        })
        .await
        .unwrap();
    assert_eq!(reuses.len(), 1, "{reuses:#?}");
    assert_eq!(reuses[0].record.actor.id(), client.client_id().as_str());
    assert_eq!(
        reuses[0].record.detail_json()["presented"],
        "authorization_code"
    );

    // An expired code.
    let started = start(&client, &[]);
    let code = query_param(&authorize_in_browser(&app, &started.url).await, "code").unwrap();
    app.clock.advance(std::time::Duration::from_secs(61));
    let late = exchange_code(&app, &client, code, started.verifier).await;
    assert_eq!(oauth_error(late), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_authorization_requests_get_the_right_answer() {
    let app = user_app().await;
    let client_id = register_public_client(&app, true);
    app.login("ada@example.com", PASSWORD, "/account").await;
    let authorize = |query: &str| {
        app.client
            .get(app.url(&format!("/oauth2/authorize?{query}")))
            .send()
    };
    let base = format!(
        "response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&state=s1"
    );
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    // Unregistered redirect URI and unknown client: an error page, never a redirect.
    let response = authorize(&format!("response_type=code&client_id={client_id}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&code_challenge={challenge}&code_challenge_method=S256")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
    let response = authorize(
        "response_type=code&client_id=wc_nobody&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Everything else is reported at the redirect URI, with the state.
    let cases = [
        (
            format!("{base}&code_challenge={challenge}&code_challenge_method=plain"),
            "invalid_request",
        ),
        (base.clone(), "invalid_request"),
        (
            format!("{base}&code_challenge={challenge}&code_challenge_method=S256&scope=admin"),
            "invalid_scope",
        ),
        (
            format!(
                "{base}&code_challenge={challenge}&code_challenge_method=S256&scope=devices%3Afly"
            ),
            "invalid_scope",
        ),
        (
            base.replace("response_type=code", "response_type=token")
                + &format!("&code_challenge={challenge}&code_challenge_method=S256"),
            "unsupported_response_type",
        ),
    ];
    for (query, expected) in cases {
        let response = authorize(&query).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{query}");
        let target = location(&response);
        assert!(
            target.starts_with("http://127.0.0.1:9/callback?"),
            "{target}"
        );
        assert_eq!(
            query_param(&target, "error").as_deref(),
            Some(expected),
            "{query}"
        );
        assert_eq!(query_param(&target, "state").as_deref(), Some("s1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_clients_need_consent_and_a_denial_is_reported() {
    let app = user_app().await;
    let (_, client) = console(&app, false).await;
    let started = start(&client, &["devices:read"]);
    app.login("ada@example.com", PASSWORD, "/account").await;
    let page = app.client.get(&started.url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Allow Warden console to use your Warden account?"),
        "{html}"
    );
    assert!(html.contains("devices:read"));

    let form = |decision: &'static str, html: &str| {
        let mut fields: Vec<(String, String)> = Vec::new();
        for chunk in html.split("<input type=\"hidden\" name=\"").skip(1) {
            let (name, rest) = chunk.split_once('"').unwrap();
            let value = rest
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            fields.push((name.to_owned(), value.replace("&amp;", "&")));
        }
        fields.push(("decision".into(), decision.into()));
        fields
    };
    let denied = app
        .client
        .post(app.url("/oauth2/authorize"))
        .form(&form("deny", &html))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query_param(&location(&denied), "error").as_deref(),
        Some("access_denied")
    );
    let allowed = app
        .client
        .post(app.url("/oauth2/authorize"))
        .form(&form("allow", &html))
        .send()
        .await
        .unwrap();
    let target = location(&allowed);
    assert!(query_param(&target, "code").is_some(), "{target}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_refuses_missing_tampered_and_expired_tokens() {
    let app = user_app().await;
    let (_, client) = console(&app, true).await;
    let started = start(&client, &[]);
    let code = query_param(&authorize_in_browser(&app, &started.url).await, "code").unwrap();
    let tokens = exchange_code(&app, &client, code, started.verifier)
        .await
        .unwrap();
    let token = tokens.access_token().secret().clone();

    let call = |bearer: Option<String>| {
        let mut request = app.client.get(app.url("/oauth2/userinfo"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    assert_eq!(
        call(Some(token.clone())).await.unwrap().status(),
        StatusCode::OK
    );
    let missing = call(None).await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(
        missing.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    let mut tampered = token.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let body: Value = call(Some(tampered)).await.unwrap().json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    app.clock.advance(std::time::Duration::from_secs(601));
    let expired: Value = call(Some(token)).await.unwrap().json().await.unwrap();
    assert_eq!(expired["error_description"], "the token has expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_session_logs_out_and_returns_only_to_a_registered_uri() {
    let app = user_app().await;
    let client_id = register_public_client(&app, true);
    app.login("ada@example.com", PASSWORD, "/account").await;
    let metadata: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["end_session_endpoint"],
        format!("{}/oauth2/logout", app.base_url).as_str()
    );

    let foreign = app
        .get(&format!("/oauth2/logout?client_id={client_id}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F"))
        .await;
    assert_eq!(
        foreign.status(),
        StatusCode::OK,
        "an unregistered URI gets the logged-out page"
    );
    assert_eq!(
        app.get("/account").await.status(),
        StatusCode::SEE_OTHER,
        "the session ended"
    );

    app.login("ada@example.com", PASSWORD, "/account").await;
    let back = app
        .get(&format!(
            "/oauth2/logout?client_id={client_id}&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcallback&state=bye"
        ))
        .await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "http://127.0.0.1:4000/callback?state=bye");
    assert_eq!(app.get("/account").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_exchanges_a_users_token_for_another_part_of_the_api() {
    let app = user_app().await;
    let (client_id, client) = console(&app, true).await;
    let started = start(&client, &["devices:read", "offline_access"]);
    let code = query_param(&authorize_in_browser(&app, &started.url).await, "code").unwrap();
    let tokens = exchange_code(&app, &client, code, started.verifier)
        .await
        .unwrap();
    let user_token = tokens.access_token().secret().clone();
    let (service_id, service_secret) = register_confidential_client(&app);
    let devices_audience = format!("{}/api/devices", app.base_url);

    let exchange = |audience: String, scope: Option<&'static str>, subject: String| {
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            ("subject_token", subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_owned(),
            ),
            ("audience", audience),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.to_owned()));
        }
        app.client
            .post(app.url("/oauth2/token"))
            .basic_auth(&service_id, Some(&service_secret))
            .form(&form)
            .send()
    };

    let response = exchange(
        devices_audience.clone(),
        Some("devices:read"),
        user_token.clone(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let exchanged = body["access_token"].as_str().unwrap().to_owned();
    let payload = exchanged.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&base64_url_decode(payload)).unwrap();
    let user_claims: Value =
        serde_json::from_slice(&base64_url_decode(user_token.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(claims["aud"], devices_audience.as_str());
    assert_eq!(claims["sub"], user_claims["sub"], "still the user");
    assert_eq!(
        claims["act"]["sub"],
        service_id.as_str(),
        "the service is the actor"
    );
    assert!(claims["exp"].as_i64().unwrap() <= user_claims["exp"].as_i64().unwrap());

    let refusals = [
        (
            exchange(
                devices_audience.clone(),
                Some("devices:write"),
                user_token.clone(),
            )
            .await
            .unwrap(),
            "invalid_scope",
        ),
        (
            exchange("https://evil.example/api".into(), None, user_token.clone())
                .await
                .unwrap(),
            "invalid_target",
        ),
        (
            exchange(format!("{}/apix", app.base_url), None, user_token.clone())
                .await
                .unwrap(),
            "invalid_target",
        ),
        (
            exchange(devices_audience.clone(), None, "not-a-token".into())
                .await
                .unwrap(),
            "invalid_grant",
        ),
    ];
    for (response, expected) in refusals {
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], expected);
    }

    // Revoking the user's grant revokes what was exchanged from it.
    let refresh = tokens.refresh_token().unwrap().secret().clone();
    app.client
        .post(app.url("/oauth2/revoke"))
        .form(&[
            ("token", refresh.as_str()),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let introspected: Value = app
        .client
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&service_id, Some(&service_secret))
        .form(&[("token", exchanged.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], false);
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// An access token for `email` from the first-party console client, through the browser flow.
pub(crate) async fn token_for(
    app: &TestApp,
    client: &Client,
    email: &str,
    scopes: &[&str],
) -> Result<String, String> {
    app.logout().await;
    app.login(email, PASSWORD, "/account").await;
    let started = start(client, scopes);
    let redirected = authorize_in_browser(app, &started.url).await;
    if let Some(error) = query_param(&redirected, "error") {
        return Err(error);
    }
    let code = query_param(&redirected, "code").unwrap();
    let tokens = exchange_code(app, client, code, started.verifier)
        .await
        .unwrap();
    Ok(tokens.access_token().secret().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_manage_clients_through_the_api_and_nobody_else_can() {
    let app = user_app().await;
    app.signup("root@example.com", PASSWORD).await;
    let data_dir = app.data_dir.path().to_str().unwrap().to_owned();
    let promoted = warden_command(&[
        "admin",
        "users",
        "set-role",
        "root@example.com",
        "admin",
        "--data-dir",
        &data_dir,
    ])
    .output()
    .unwrap();
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    let output = warden_command(&[
        "admin",
        "clients",
        "create",
        "--name",
        "Warden console",
        "--public",
        "--first-party",
        "--scope",
        "openid admin devices:read",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--data-dir",
        &data_dir,
    ])
    .output()
    .unwrap();
    let console_id = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("client_id:"))
        .unwrap()
        .trim()
        .to_owned();
    let console = discover(&app, &console_id).await;

    // A customer cannot even get the admin scope.
    assert_eq!(
        token_for(&app, &console, "ada@example.com", &["admin"]).await,
        Err("invalid_scope".into())
    );
    let customer = token_for(&app, &console, "ada@example.com", &["devices:read"])
        .await
        .unwrap();
    let admin_without_scope = token_for(&app, &console, "root@example.com", &["devices:read"])
        .await
        .unwrap();
    let admin = token_for(&app, &console, "root@example.com", &["admin"])
        .await
        .unwrap();

    let list = |token: Option<String>| {
        let mut request = app.client.get(app.url("/api/v1/admin/clients"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let anonymous = list(None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"warden\""
    );
    assert_eq!(
        anonymous.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    assert_eq!(
        list(Some(customer.clone())).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        list(Some(admin_without_scope)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        list(Some("garbage".into())).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let clients: Value = list(Some(admin.clone()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        clients["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_id"] == console_id.as_str())
    );

    let create = |token: String, body: Value| {
        app.client
            .post(app.url("/api/v1/admin/clients"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let refused = create(
        customer,
        serde_json::json!({"name": "sneaky", "scope": "admin"}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let bad = create(
        admin.clone(),
        serde_json::json!({"name": "fleet", "redirect_uris": ["http://evil.example/cb"]}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad: Value = bad.json().await.unwrap();
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http://evil.example/cb"),
        "{bad}"
    );
    let unknown_field = create(
        admin.clone(),
        serde_json::json!({"name": "fleet", "secret": "mine"}),
    )
    .await
    .unwrap();
    assert_eq!(unknown_field.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let created = create(
        admin,
        serde_json::json!({"name": "fleet service", "scope": "devices:read"}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let (id, secret) = (
        created["client_id"].as_str().unwrap(),
        created["client_secret"].as_str().unwrap(),
    );
    let token = app
        .client
        .post(app.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        token.status(),
        StatusCode::OK,
        "the new client works at once"
    );
}
