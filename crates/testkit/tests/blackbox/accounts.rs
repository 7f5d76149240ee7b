//! Sign-up, login, logout and the account page, driven like a browser: HTML forms, cookies, CSRF.

use std::time::Duration;

use model::{Email, HashScheme, PasswordHash, Role, Timestamp, UserId};
use reqwest::StatusCode;
use store::NewUser;
use testkit::TestApp;

const GOOD_PASSWORD: &str = "correct horse battery staple";

async fn csrf(app: &TestApp, path: &str) -> String {
    app.csrf(path).await
}

async fn signup(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.signup(email, password).await
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.login(email, password, "/account").await
}

fn location(response: &reqwest::Response) -> &str {
    response.headers()["location"].to_str().unwrap()
}

#[tokio::test]
async fn sign_up_logs_in_with_a_secure_session_cookie_and_shows_the_account() {
    let app = TestApp::spawn().await;
    let response = signup(&app, "Ada@Example.com", GOOD_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/account");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("__Host-warden_session="))
        .expect("a session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing from {cookie}"
        );
    }

    let home = app.get("/").await;
    assert_eq!(
        location(&home),
        "/account",
        "the printed URL leads to the account"
    );
    let page = app.get("/account").await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("ada@example.com") && html.contains("customer"),
        "{html}"
    );

    let stored = app
        .warden
        .store
        .users()
        .by_email(&Email::parse("ada@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash.scheme(), HashScheme::Argon2id);
    assert!(
        stored
            .password_hash
            .as_str()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
}

#[tokio::test]
async fn sign_up_refuses_breached_short_and_duplicate_passwords_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "password1234",
            StatusCode::BAD_REQUEST,
            "known data breaches",
        ),
        (
            "washingmachine",
            StatusCode::BAD_REQUEST,
            "known data breaches",
        ),
        ("short", StatusCode::BAD_REQUEST, "at least 12 characters"),
        (
            "new@example.com",
            StatusCode::BAD_REQUEST,
            "must not be your e-mail address",
        ),
    ];
    for (password, status, message) in cases {
        let response = signup(&app, "new@example.com", password).await;
        assert_eq!(response.status(), status, "{password}");
        let html = response.text().await.unwrap();
        assert!(html.contains(message), "{password}: {html}");
        assert!(
            !html.contains(password) || password == "new@example.com",
            "the password is not echoed"
        );
    }
    let bad_email = signup(&app, "not-an-address", GOOD_PASSWORD).await;
    assert_eq!(bad_email.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.warden.store.users().count().await.unwrap(), 0);

    assert_eq!(
        signup(&app, "new@example.com", GOOD_PASSWORD)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let again = signup(&app, "NEW@example.com", "another good passphrase").await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(app.warden.store.users().count().await.unwrap(), 1);
}

#[tokio::test]
async fn forms_without_the_matching_csrf_token_are_refused() {
    let app = TestApp::spawn().await;
    csrf(&app, "/signup").await;
    let forged = app
        .client
        .post(app.url("/signup"))
        .form(&[
            ("email", "x@example.com"),
            ("password", GOOD_PASSWORD),
            ("csrf", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // A client with no CSRF cookie at all, as a cross-site form post would be.
    let stranger = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&app.warden.tls_files.ca_cert).unwrap())
                .unwrap(),
        )
        .resolve("localhost", app.warden.addresses.https)
        .build()
        .unwrap();
    let token = csrf(&app, "/login").await;
    let cross_site = stranger
        .post(app.url("/login"))
        .form(&[
            ("email", "x@example.com"),
            ("password", GOOD_PASSWORD),
            ("csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.warden.store.users().count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_account_get_the_same_answer() {
    let app = TestApp::spawn().await;
    signup(&app, "ada@example.com", GOOD_PASSWORD).await;
    let wrong = login(&app, "ada@example.com", "not the password at all").await;
    let unknown = login(&app, "bob@example.com", "not the password at all").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let wrong = wrong
        .text()
        .await
        .unwrap()
        .replace("ada@example.com", "EMAIL");
    let unknown = unknown
        .text()
        .await
        .unwrap()
        .replace("bob@example.com", "EMAIL");
    assert_eq!(wrong, unknown);
    assert!(wrong.contains("Wrong e-mail address or password."));
}

#[tokio::test]
async fn logins_are_throttled_after_repeated_failures_and_allowed_again_later() {
    let app = TestApp::spawn().await;
    signup(&app, "ada@example.com", GOOD_PASSWORD).await;
    for attempt in 1..=6 {
        let response = login(&app, "ada@example.com", "wrong password here").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    // The sixth failure started a 2 s delay: even the right password waits.
    let throttled = login(&app, "ada@example.com", GOOD_PASSWORD).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()["retry-after"], "2");
    assert!(
        throttled
            .text()
            .await
            .unwrap()
            .contains("Too many failed attempts")
    );

    app.clock.advance(Duration::from_secs(3));
    let response = login(&app, "ada@example.com", "wrong password here").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let throttled = login(&app, "ada@example.com", GOOD_PASSWORD).await;
    assert_eq!(throttled.headers()["retry-after"], "4", "the delay doubles");

    app.clock.advance(Duration::from_secs(5));
    let response = login(&app, "ada@example.com", GOOD_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/account");
}

#[tokio::test]
async fn an_imported_bcrypt_account_logs_in_and_its_hash_is_upgraded() {
    let app = TestApp::spawn().await;
    // Made by the bcrypt library, as the reference system's user-service made its hashes.
    let bcrypt_hash = PasswordHash::parse(&bcrypt::hash("password", 4).unwrap()).unwrap();
    let user = NewUser {
        id: UserId::generate(),
        email: Email::parse("old@example.com").unwrap(),
        password_hash: bcrypt_hash.clone(),
        role: Role::Technician,
        created_at: Timestamp::from_unix_millis(0),
    };
    app.warden.store.users().insert(&user).await.unwrap();
    assert_eq!(
        login(&app, "old@example.com", "wrong").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let response = login(&app, "old@example.com", "password").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let stored = app
        .warden
        .store
        .users()
        .by_id(user.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash.scheme(), HashScheme::Argon2id);
    // The new hash works, the old one is gone.
    app.client
        .post(app.url("/logout"))
        .form(&[("csrf", csrf(&app, "/account").await.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        login(&app, "old@example.com", "password").await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn logout_and_expiry_end_the_session() {
    let app = TestApp::spawn().await;
    signup(&app, "ada@example.com", GOOD_PASSWORD).await;
    assert_eq!(app.get("/account").await.status(), StatusCode::OK);
    let token = csrf(&app, "/account").await;
    let response = app
        .client
        .post(app.url("/logout"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let after = app.get("/account").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&after), "/login?next=/account");

    assert_eq!(
        login(&app, "ada@example.com", GOOD_PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.get("/account").await.status(), StatusCode::OK);
    app.clock.advance(Duration::from_secs(12 * 3600 + 1));
    assert_eq!(
        app.get("/account").await.status(),
        StatusCode::SEE_OTHER,
        "the session expired"
    );
}

#[tokio::test]
async fn a_malformed_form_gets_the_json_error_shape_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/signup"))
        .form(&[("email", "x@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    assert_eq!(app.warden.store.users().count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_logs_out_other_devices() {
    let app = TestApp::spawn().await;
    signup(&app, "ada@example.com", GOOD_PASSWORD).await;
    let phone = app.browser();
    let response = app
        .login_in(&phone, "ada@example.com", GOOD_PASSWORD, "/account")
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let app = &app;
    let change = |current: &'static str, new: &'static str| async move {
        let token = csrf(app, "/account/password").await;
        app.client
            .post(app.url("/account/password"))
            .form(&[("current", current), ("new", new), ("csrf", token.as_str())])
            .send()
            .await
            .unwrap()
    };
    assert_eq!(
        change("not my password", "a brand new passphrase")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let breached = change(GOOD_PASSWORD, "password1234").await;
    assert_eq!(breached.status(), StatusCode::BAD_REQUEST);
    assert!(
        breached
            .text()
            .await
            .unwrap()
            .contains("known data breaches")
    );
    assert_eq!(
        phone
            .get(app.url("/account"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let changed = change(GOOD_PASSWORD, "a brand new passphrase").await;
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get("/account").await.status(),
        StatusCode::OK,
        "this device stays logged in"
    );
    assert_eq!(
        phone
            .get(app.url("/account"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::SEE_OTHER,
        "the other device is logged out"
    );
    app.logout().await;
    assert_eq!(
        login(app, "ada@example.com", GOOD_PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(app, "ada@example.com", "a brand new passphrase")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
}

/// The code an authenticator app (the `totp-rs` crate here) shows for `secret` at Warden's time.
pub(crate) fn authenticator_code(app: &TestApp, secret: &str) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes).unwrap();
    totp.generate(u64::try_from(model::Clock::now(&app.clock).unix_millis() / 1000).unwrap())
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    html.split(start)
        .skip(1)
        .filter_map(|part| part.split(end).next())
        .collect()
}

async fn send_code(app: &TestApp, path: &str, code: &str, next: &str) -> reqwest::Response {
    let token = csrf(app, &format!("{path}?next={next}")).await;
    app.client
        .post(app.url(path))
        .form(&[("code", code), ("csrf", token.as_str()), ("next", next)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_step_login_with_an_authenticator_app_and_recovery_codes() {
    let app = TestApp::spawn().await;
    signup(&app, "ada@example.com", GOOD_PASSWORD).await;
    let setup = app.get("/account/totp").await.text().await.unwrap();
    let secret = between(&setup, r#"<code id="totp-secret">"#, "</code>")[0].to_owned();
    assert!(
        setup.contains("otpauth://totp/Warden:ada@example.com?secret="),
        "{setup}"
    );

    assert_eq!(
        send_code(&app, "/account/totp", "000000", "")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    let enabled = send_code(
        &app,
        "/account/totp",
        &authenticator_code(&app, &secret),
        "",
    )
    .await;
    assert_eq!(enabled.status(), StatusCode::OK);
    let html = enabled.text().await.unwrap();
    let recovery: Vec<String> = between(&html, "<li><code>", "</code>")
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(recovery.len(), 10);

    // The password alone no longer logs in.
    app.logout().await;
    let step_one = login(&app, "ada@example.com", GOOD_PASSWORD).await;
    assert_eq!(location(&step_one), "/login/totp?next=%2Faccount");
    assert_eq!(
        app.get("/account").await.status(),
        StatusCode::SEE_OTHER,
        "not logged in yet"
    );
    assert_eq!(
        send_code(&app, "/login/totp", "123456", "/account")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    app.clock.advance(Duration::from_secs(30));
    let code = authenticator_code(&app, &secret);
    let done = send_code(&app, "/login/totp", &code, "/account").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/account");
    assert_eq!(app.get("/account").await.status(), StatusCode::OK);

    // The same code a second time is a replay.
    app.logout().await;
    login(&app, "ada@example.com", GOOD_PASSWORD).await;
    assert_eq!(
        send_code(&app, "/login/totp", &code, "/account")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // A recovery code works once.
    let used = send_code(&app, "/login/totp", &recovery[0].to_uppercase(), "/account").await;
    assert_eq!(used.status(), StatusCode::SEE_OTHER);
    app.logout().await;
    login(&app, "ada@example.com", GOOD_PASSWORD).await;
    assert_eq!(
        send_code(&app, "/login/totp", &recovery[0], "/account")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send_code(&app, "/login/totp", &recovery[1], "/account")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_beyond_the_hashing_capacity_is_answered_503_not_queued() {
    let app = TestApp::spawn_with(|config| config.accounts.hash_wait_millis = 1).await;
    signup(&app, "ada@example.com", GOOD_PASSWORD).await;
    let token = csrf(&app, "/login").await;
    let attempts = (0..24).map(|_| {
        let request = app.client.post(app.url("/login")).form(&[
            ("email", "ada@example.com"),
            ("password", GOOD_PASSWORD),
            ("csrf", token.as_str()),
        ]);
        tokio::spawn(async move { request.send().await.unwrap() })
    });
    let mut statuses = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        let response = attempt.await.unwrap();
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unavailable");
        }
        statuses.push(status);
    }
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&StatusCode::SEE_OTHER),
        "some logins get through: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SEE_OTHER || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
}
