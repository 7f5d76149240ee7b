//! Sign-up, login, logout and the account page.

use std::net::SocketAddr;
use std::time::Duration;

use accounts::password::{Password, Verification};
use accounts::rules::check_new_password;
use accounts::session::SessionToken;
use accounts::throttle::ThrottlePolicy;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};
use model::{Email, PasswordHash, Role, UserId};
use serde::Deserialize;
use store::{NewUser, StoreError, UserRecord};

use super::{
    SESSION_COOKIE, cookie, csrf_ok, csrf_token, forbidden_form, page, redirect, set_cookie,
    with_cookies,
};
use crate::journal::{Origin, account, account_holder};
use crate::throttle::Attempt;
use crate::{ApiContext, ApiError};
use audit::{Action, Actor, Outcome};

/// How long the second-factor step may take after the password was accepted.
pub(super) const SECOND_FACTOR_WINDOW: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
pub(crate) struct SignupForm {
    email: String,
    password: String,
    csrf: String,
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    email: String,
    password: String,
    csrf: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    pub(super) next: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    current: String,
    new: String,
    csrf: String,
}

pub(crate) async fn signup_page(headers: HeaderMap) -> Response {
    let (csrf, new_cookie) = csrf_token(&headers);
    with_cookies(signup_form(StatusCode::OK, &csrf, "", None), new_cookie)
}

fn signup_form(status: StatusCode, csrf: &str, email: &str, error: Option<&str>) -> Response {
    page(
        status,
        "Sign up",
        html! {
            h1 { "Create your Warden account" }
            (error_message(error))
            form method="post" action="/signup" {
                input type="hidden" name="csrf" value=(csrf);
                label for="email" { "E-mail address" }
                input id="email" name="email" type="email" autocomplete="username" required value=(email);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="new-password" required
                    minlength=(accounts::rules::MIN_LENGTH) maxlength=(accounts::rules::MAX_LENGTH)
                    aria-describedby="password-hint";
                p id="password-hint" class="hint" {
                    "At least " (accounts::rules::MIN_LENGTH) " characters. Passwords found in known breaches are refused."
                }
                button type="submit" { "Create account" }
            }
            p { "Have an account? " a href="/login" { "Log in" } }
        },
    )
}

pub(crate) async fn signup(
    State(context): State<ApiContext>,
    origin: Origin,
    headers: HeaderMap,
    Form(form): Form<SignupForm>,
) -> Result<Response, ApiError> {
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(forbidden_form());
    }
    let refuse =
        |status, message: &str| Ok(signup_form(status, &form.csrf, &form.email, Some(message)));
    let email = match Email::parse(&form.email) {
        Ok(email) => email,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let password = Password::new(form.password.clone());
    if let Err(rejection) =
        check_new_password(&password, &email, context.identity.breached.as_ref())
    {
        return refuse(StatusCode::BAD_REQUEST, &rejection.to_string());
    }
    let password_hash = hash_blocking(&context, password).await?;
    let user = NewUser {
        id: UserId::generate(),
        email,
        password_hash,
        role: Role::Customer,
        created_at: context.identity.clock.now(),
    };
    match context.store.users().insert(&user).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            return refuse(
                StatusCode::CONFLICT,
                "An account with this e-mail address exists already. Log in instead.",
            );
        }
        Err(error) => return Err(error.into()),
    }
    tracing::info!(user_id = %user.id, "account created");
    let holder = Actor::User {
        id: user.id.to_string(),
        email: Some(user.email.to_string()),
    };
    let record = context.audit_record(holder, Action::AccountSignup, account(user.id));
    context.audit(&origin, record).await?;
    let session = start_session(&context, user.id).await?;
    Ok(with_cookies(redirect("/account"), [session]))
}

pub(crate) async fn login_page(headers: HeaderMap, Query(query): Query<NextQuery>) -> Response {
    let (csrf, new_cookie) = csrf_token(&headers);
    let next = safe_next(query.next.as_deref().unwrap_or_default());
    with_cookies(
        login_form(StatusCode::OK, &csrf, "", next, None),
        new_cookie,
    )
}

fn login_form(
    status: StatusCode,
    csrf: &str,
    email: &str,
    next: &str,
    error: Option<&str>,
) -> Response {
    page(
        status,
        "Log in",
        html! {
            h1 { "Log in to Warden" }
            (error_message(error))
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="email" { "E-mail address" }
                input id="email" name="email" type="email" autocomplete="username" required value=(email);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
            p { "New here? " a href="/signup" { "Create an account" } }
        },
    )
}

pub(crate) async fn login(
    State(context): State<ApiContext>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    origin: Origin,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(forbidden_form());
    }
    let next = safe_next(&form.next).to_owned();
    let now = context.identity.clock.now();
    // Keys for an account that does not exist are throttled the same way, so the answer never
    // tells whether the address has an account.
    let keys = [
        (
            format!("account:{}", form.email.trim().to_lowercase()),
            ThrottlePolicy::PER_ACCOUNT,
        ),
        (
            format!("address:{}", peer.ip()),
            ThrottlePolicy::PER_ADDRESS,
        ),
    ];
    let attempt = match Attempt::begin(&context.store, keys, now).await? {
        Ok(attempt) => attempt,
        Err(wait) => {
            let record = failed_login(&context, None, Some(&form.email), "throttled");
            context.audit(&origin, record).await?;
            return Ok(too_many_attempts(&form, &next, wait));
        }
    };

    let user = match Email::parse(&form.email) {
        Ok(email) => context.store.users().by_email(&email).await?,
        Err(_) => None,
    };
    let password = Password::new(form.password.clone());
    let stored = user.as_ref().map(|user| user.password_hash.clone());
    let verification = verify_blocking(&context, password, stored).await?;

    match (user, verification) {
        (Some(user), Verification::Match { rehash }) => {
            attempt.succeeded(&context.store).await?;
            if rehash {
                upgrade_hash(&context, &user, form.password.clone()).await?;
            }
            if context
                .store
                .second_factor()
                .get(user.id)
                .await?
                .totp_secret
                .is_some()
            {
                let pending = start_session_in_state(&context, user.id, true).await?;
                let target = format!("/login/totp?next={}", super::url_encode(&next));
                return Ok(with_cookies(redirect(&target), [pending]));
            }
            tracing::info!(user_id = %user.id, "login succeeded");
            let record = context.audit_record(
                account_holder(&user),
                Action::AccountLogin,
                account(user.id),
            );
            context.audit(&origin, record).await?;
            let session = start_session(&context, user.id).await?;
            Ok(with_cookies(redirect(&next), [session]))
        }
        (user, _) => {
            attempt.failed(&context.store).await?;
            tracing::info!(peer = %peer.ip(), "login failed");
            let record = failed_login(
                &context,
                user.as_ref(),
                Some(&form.email),
                "wrong_credentials",
            );
            context.audit(&origin, record).await?;
            Ok(login_form(
                StatusCode::UNAUTHORIZED,
                &form.csrf,
                &form.email,
                &next,
                Some("Wrong e-mail address or password."),
            ))
        }
    }
}

/// A refused login: the account when it exists, else the address as typed (cut short).
pub(crate) fn failed_login(
    context: &ApiContext,
    user: Option<&UserRecord>,
    typed: Option<&str>,
    reason: &str,
) -> audit::Record {
    let target = match user {
        Some(user) => account(user.id),
        None => audit::Target::new("account", ""),
    };
    let mut detail = serde_json::json!({ "reason": reason });
    if let Some(typed) = typed {
        detail["email"] = typed
            .trim()
            .chars()
            .take(MAX_TYPED_EMAIL)
            .collect::<String>()
            .into();
    }
    context
        .audit_record(Actor::Anonymous, Action::AccountLogin, target)
        .outcome(Outcome::Failure)
        .detail(detail)
}

/// The most characters of a typed e-mail address an audit record keeps (RFC 5321's limit).
const MAX_TYPED_EMAIL: usize = 254;

fn too_many_attempts(form: &LoginForm, next: &str, wait: Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let message = format!("Too many failed attempts. Try again in {seconds} seconds.");
    let mut response = login_form(
        StatusCode::TOO_MANY_REQUESTS,
        &form.csrf,
        &form.email,
        next,
        Some(&message),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Replaces a bcrypt (or weaker Argon2id) hash by a current one after a successful login.
async fn upgrade_hash(
    context: &ApiContext,
    user: &UserRecord,
    password: String,
) -> Result<(), ApiError> {
    let hash = hash_blocking(context, Password::new(password)).await?;
    context
        .store
        .users()
        .set_password_hash(user.id, &hash, context.identity.clock.now())
        .await?;
    tracing::info!(user_id = %user.id, "password hash upgraded to Argon2id");
    Ok(())
}

pub(crate) async fn logout(
    State(context): State<ApiContext>,
    origin: Origin,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(forbidden_form());
    }
    if let Some(user) = current_user(&context, &headers).await? {
        let record = context.audit_record(
            account_holder(&user),
            Action::AccountLogout,
            account(user.id),
        );
        context.audit(&origin, record).await?;
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE).and_then(SessionToken::parse) {
        context
            .store
            .sessions()
            .delete(token.hash().as_str())
            .await?;
    }
    Ok(with_cookies(
        redirect("/login"),
        [set_cookie(SESSION_COOKIE, "", "Lax", Some(0))],
    ))
}

pub(crate) async fn account_page(
    State(context): State<ApiContext>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(user) = current_user(&context, &headers).await? else {
        return Ok(redirect("/login?next=/account"));
    };
    let (csrf, new_cookie) = csrf_token(&headers);
    let body = html! {
        h1 { "Your account" }
        dl {
            dt { "E-mail address" } dd { (user.email) }
            dt { "Role" } dd { (user.role) }
        }
        p { a href="/account/password" { "Change your password" } }
        p { a href="/account/totp" { "Two-step login" } }
        form method="post" action="/logout" {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Log out" }
        }
    };
    Ok(with_cookies(
        page(StatusCode::OK, "Account", body),
        new_cookie,
    ))
}

pub(crate) async fn password_page(
    State(context): State<ApiContext>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if current_user(&context, &headers).await?.is_none() {
        return Ok(redirect("/login?next=/account/password"));
    }
    let (csrf, new_cookie) = csrf_token(&headers);
    Ok(with_cookies(
        password_form(StatusCode::OK, &csrf, None),
        new_cookie,
    ))
}

fn password_form(status: StatusCode, csrf: &str, error: Option<&str>) -> Response {
    page(
        status,
        "Change password",
        html! {
            h1 { "Change your password" }
            (error_message(error))
            form method="post" action="/account/password" {
                input type="hidden" name="csrf" value=(csrf);
                label for="current" { "Current password" }
                input id="current" name="current" type="password" autocomplete="current-password" required;
                label for="new" { "New password" }
                input id="new" name="new" type="password" autocomplete="new-password" required
                    minlength=(accounts::rules::MIN_LENGTH) maxlength=(accounts::rules::MAX_LENGTH);
                button type="submit" { "Change password" }
            }
            p class="hint" { "Your other devices will be logged out." }
        },
    )
}

/// Changes the password after checking the current one; every other session of the account ends.
pub(crate) async fn change_password(
    State(context): State<ApiContext>,
    origin: Origin,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, ApiError> {
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(forbidden_form());
    }
    let Some(user) = current_user(&context, &headers).await? else {
        return Ok(redirect("/login?next=/account/password"));
    };
    let current = Password::new(form.current.clone());
    let verification = verify_blocking(&context, current, Some(user.password_hash.clone())).await?;
    if verification == Verification::Mismatch {
        let record = context
            .audit_record(
                account_holder(&user),
                Action::AccountPasswordChange,
                account(user.id),
            )
            .outcome(Outcome::Failure)
            .detail(serde_json::json!({ "reason": "wrong_current_password" }));
        context.audit(&origin, record).await?;
        return Ok(password_form(
            StatusCode::UNAUTHORIZED,
            &form.csrf,
            Some("The current password is wrong."),
        ));
    }
    let new = Password::new(form.new.clone());
    if let Err(rejection) =
        check_new_password(&new, &user.email, context.identity.breached.as_ref())
    {
        return Ok(password_form(
            StatusCode::BAD_REQUEST,
            &form.csrf,
            Some(&rejection.to_string()),
        ));
    }
    let hash = hash_blocking(&context, new).await?;
    let now = context.identity.clock.now();
    context
        .store
        .users()
        .set_password_hash(user.id, &hash, now)
        .await?;
    let keep = cookie(&headers, SESSION_COOKIE)
        .and_then(SessionToken::parse)
        .map(|token| token.hash().as_str().to_owned())
        .unwrap_or_default();
    let ended = context
        .store
        .sessions()
        .delete_others(user.id, &keep)
        .await?;
    tracing::info!(user_id = %user.id, other_sessions_ended = ended, "password changed");
    let record = context
        .audit_record(
            account_holder(&user),
            Action::AccountPasswordChange,
            account(user.id),
        )
        .detail(serde_json::json!({ "other_sessions_ended": ended }));
    context.audit(&origin, record).await?;
    Ok(redirect("/account"))
}

/// Deletes the request's login session, if any, and returns the header that clears its cookie.
pub(crate) async fn end_browser_session(
    context: &ApiContext,
    headers: &HeaderMap,
) -> Result<HeaderValue, ApiError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE).and_then(SessionToken::parse) {
        context
            .store
            .sessions()
            .delete(token.hash().as_str())
            .await?;
    }
    Ok(set_cookie(SESSION_COOKIE, "", "Lax", Some(0)))
}

/// Hashes on a blocking thread: an Argon2id hash takes tens of milliseconds of CPU.
async fn hash_blocking(context: &ApiContext, password: Password) -> Result<PasswordHash, ApiError> {
    context
        .identity
        .run_hash(move |hasher| hasher.hash(&password))
        .await?
        .map_err(|error| ApiError::Internal(Box::new(error)))
}

/// Verifies on a blocking thread; with no stored hash (no such account) it spends the same time
/// on a decoy and answers mismatch.
pub(super) async fn verify_blocking(
    context: &ApiContext,
    password: Password,
    stored: Option<PasswordHash>,
) -> Result<Verification, ApiError> {
    context
        .identity
        .run_hash(move |hasher| match stored {
            Some(stored) => hasher.verify(&password, &stored),
            None => hasher.verify_decoy(&password),
        })
        .await
}

/// The account whose valid session cookie the request carries.
pub async fn current_user(
    context: &ApiContext,
    headers: &HeaderMap,
) -> Result<Option<UserRecord>, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).and_then(SessionToken::parse) else {
        return Ok(None);
    };
    let now = context.identity.clock.now();
    Ok(context
        .store
        .sessions()
        .user(token.hash().as_str(), now)
        .await?)
}

pub(super) async fn start_session(
    context: &ApiContext,
    user_id: UserId,
) -> Result<HeaderValue, ApiError> {
    start_session_in_state(context, user_id, false).await
}

/// A new session cookie. A session waiting for the second factor lives only a few minutes and logs
/// nobody in until the code is given.
pub(super) async fn start_session_in_state(
    context: &ApiContext,
    user_id: UserId,
    second_factor_pending: bool,
) -> Result<HeaderValue, ApiError> {
    let token = SessionToken::generate();
    let now = context.identity.clock.now();
    let lifetime = if second_factor_pending {
        SECOND_FACTOR_WINDOW
    } else {
        context.identity.session_lifetime
    };
    context
        .store
        .sessions()
        .insert(
            token.hash().as_str(),
            user_id,
            now,
            now.plus(lifetime),
            second_factor_pending,
        )
        .await?;
    Ok(set_cookie(
        SESSION_COOKIE,
        token.as_str(),
        "Lax",
        Some(lifetime.as_secs()),
    ))
}

/// Where to go after logging in: only a path on this site, never another origin.
pub(super) fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if local { next } else { "/account" }
}

/// The problem with a form, as a sentence at the top of the page.
pub(super) fn error_message(error: Option<&str>) -> Markup {
    let sentence = error.map(|error| {
        let mut chars = error.chars();
        let first = chars
            .next()
            .map(|c| c.to_uppercase().collect::<String>())
            .unwrap_or_default();
        let rest = chars.as_str();
        let stop = if rest.ends_with('.') { "" } else { "." };
        format!("{first}{rest}{stop}")
    });
    html! {
        @if let Some(sentence) = sentence {
            p class="error" role="alert" { (sentence) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        for (next, expected) in [
            ("/account", "/account"),
            (
                "/oauth2/authorize?client_id=x",
                "/oauth2/authorize?client_id=x",
            ),
            ("", "/account"),
            ("https://evil.example/", "/account"),
            ("//evil.example/", "/account"),
            ("/\\evil.example", "/account"),
        ] {
            assert_eq!(safe_next(next), expected, "{next:?}");
        }
    }
}
