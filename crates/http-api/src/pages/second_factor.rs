//! The second factor: setting up TOTP on the account page, and the code step of the login.

use std::net::SocketAddr;

use accounts::password::{Password, Verification};
use accounts::session::SessionToken;
use accounts::throttle::ThrottlePolicy;
use accounts::totp::{TotpSecret, generate_recovery_codes, recovery_code_hash};
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::accounts::{NextQuery, error_message, failed_login, safe_next, verify_blocking};
use super::{
    SESSION_COOKIE, cookie, csrf_ok, csrf_token, current_user, forbidden_form, page, redirect,
    with_cookies,
};
use crate::journal::{Origin, account, account_holder};
use crate::throttle::Attempt;
use crate::{ApiContext, ApiError};
use audit::Action;

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    code: String,
    csrf: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub(crate) struct DisableForm {
    password: String,
    csrf: String,
}

/// Shows the state of the second factor; when it is off, a new secret to add to an authenticator
/// app and a field for the first code.
pub(crate) async fn setup_page(
    State(context): State<ApiContext>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(user) = current_user(&context, &headers).await? else {
        return Ok(redirect("/login?next=/account/totp"));
    };
    let (csrf, new_cookie) = csrf_token(&headers);
    let state = context.store.second_factor().get(user.id).await?;
    if state.totp_secret.is_some() {
        let body = html! {
            h1 { "Two-step login is on" }
            p { "Logins ask for a code from your authenticator app." }
            form method="post" action="/account/totp/disable" {
                input type="hidden" name="csrf" value=(csrf);
                label for="password" { "Your password, to turn it off" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Turn off two-step login" }
            }
        };
        return Ok(with_cookies(
            page(StatusCode::OK, "Two-step login", body),
            new_cookie,
        ));
    }
    // A reload shows the same key, so an app that scanned it already keeps working.
    let secret = match state
        .totp_pending_secret
        .as_deref()
        .and_then(TotpSecret::from_base32)
    {
        Some(secret) => secret,
        None => {
            let secret = TotpSecret::generate();
            context
                .store
                .second_factor()
                .set_pending(user.id, &secret.to_base32())
                .await?;
            secret
        }
    };
    let uri = secret.otpauth_uri("Warden", user.email.as_str());
    let body = html! {
        h1 { "Turn on two-step login" }
        p { "Add this key to your authenticator app, then enter the code it shows." }
        p { "Key: " code id="totp-secret" { (secret.to_base32()) } }
        p class="hint" { "Or open this link on the phone with the app: " a href=(uri) { "add to authenticator" } }
        (code_form("/account/totp", &csrf, "", None))
    };
    Ok(with_cookies(
        page(StatusCode::OK, "Two-step login", body),
        new_cookie,
    ))
}

fn code_form(action: &str, csrf: &str, next: &str, error: Option<&str>) -> maud::Markup {
    html! {
        (error_message(error))
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value=(next);
            label for="code" { "Code" }
            input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required;
            button type="submit" { "Continue" }
        }
    }
}

/// Confirms the pending secret with a first code, turns TOTP on and shows the recovery codes once.
pub(crate) async fn enable(
    State(context): State<ApiContext>,
    origin: Origin,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, ApiError> {
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(forbidden_form());
    }
    let Some(user) = current_user(&context, &headers).await? else {
        return Ok(redirect("/login?next=/account/totp"));
    };
    let state = context.store.second_factor().get(user.id).await?;
    let Some(secret) = state
        .totp_pending_secret
        .as_deref()
        .and_then(TotpSecret::from_base32)
    else {
        return Ok(redirect("/account/totp"));
    };
    let now = context.identity.clock.now();
    let Some(step) = secret.verify(&form.code, now, None) else {
        let body = html! {
            h1 { "Turn on two-step login" }
            p { "Key: " code { (secret.to_base32()) } }
            (code_form("/account/totp", &form.csrf, "", Some("That code is not right; check the app's clock and try the next one.")))
        };
        return Ok(page(StatusCode::BAD_REQUEST, "Two-step login", body));
    };
    let codes = generate_recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|code| recovery_code_hash(code)).collect();
    context
        .store
        .second_factor()
        .enable(user.id, &secret.to_base32(), step, &hashes)
        .await?;
    tracing::info!(user_id = %user.id, "two-step login turned on");
    let record = context.audit_record(
        account_holder(&user),
        Action::AccountSecondFactorEnable,
        account(user.id),
    );
    context.audit(&origin, record).await?;
    let body = html! {
        h1 { "Two-step login is on" }
        p { "Keep these recovery codes somewhere safe. Each works once if you lose your phone; they are not shown again." }
        ul id="recovery-codes" { @for code in &codes { li { code { (code) } } } }
        p { a href="/account" { "Back to your account" } }
    };
    Ok(page(StatusCode::OK, "Recovery codes", body))
}

pub(crate) async fn disable(
    State(context): State<ApiContext>,
    origin: Origin,
    headers: HeaderMap,
    Form(form): Form<DisableForm>,
) -> Result<Response, ApiError> {
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(forbidden_form());
    }
    let Some(user) = current_user(&context, &headers).await? else {
        return Ok(redirect("/login?next=/account/totp"));
    };
    let verification = verify_blocking(
        &context,
        Password::new(form.password),
        Some(user.password_hash.clone()),
    )
    .await?;
    if verification == Verification::Mismatch {
        let body = html! {
            h1 { "Two-step login is on" }
            (error_message(Some("The password is wrong.")))
            p { a href="/account/totp" { "Try again" } }
        };
        return Ok(page(StatusCode::UNAUTHORIZED, "Two-step login", body));
    }
    context.store.second_factor().disable(user.id).await?;
    tracing::info!(user_id = %user.id, "two-step login turned off");
    let record = context.audit_record(
        account_holder(&user),
        Action::AccountSecondFactorDisable,
        account(user.id),
    );
    context.audit(&origin, record).await?;
    Ok(redirect("/account"))
}

pub(crate) async fn login_page(
    State(context): State<ApiContext>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, ApiError> {
    if pending_user(&context, &headers).await?.is_none() {
        return Ok(redirect("/login"));
    }
    let (csrf, new_cookie) = csrf_token(&headers);
    let next = safe_next(query.next.as_deref().unwrap_or_default()).to_owned();
    let body = html! {
        h1 { "Enter your code" }
        p { "Open your authenticator app, or use one of your recovery codes." }
        (code_form("/login/totp", &csrf, &next, None))
    };
    Ok(with_cookies(
        page(StatusCode::OK, "Two-step login", body),
        new_cookie,
    ))
}

/// The second step of a login: a TOTP code (each works once) or an unused recovery code, throttled
/// like passwords.
pub(crate) async fn login(
    State(context): State<ApiContext>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    origin: Origin,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, ApiError> {
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(forbidden_form());
    }
    let Some((user, token_hash)) = pending_user(&context, &headers).await? else {
        return Ok(redirect("/login"));
    };
    let next = safe_next(&form.next).to_owned();
    let now = context.identity.clock.now();
    let key = (
        format!("account:{}", user.email),
        ThrottlePolicy::PER_ACCOUNT,
    );
    let attempt = match Attempt::begin(&context.store, [key], now).await? {
        Ok(attempt) => attempt,
        Err(wait) => {
            let record = failed_login(&context, Some(&user), None, "throttled");
            context.audit(&origin, record).await?;
            let message = format!(
                "Too many failed attempts. Try again in {} seconds.",
                wait.as_secs().max(1)
            );
            let body = html! { h1 { "Enter your code" } (code_form("/login/totp", &form.csrf, &next, Some(&message))) };
            return Ok(page(StatusCode::TOO_MANY_REQUESTS, "Two-step login", body));
        }
    };
    let second_factor = context.store.second_factor();
    let state = second_factor.get(user.id).await?;
    let by_totp = match state
        .totp_secret
        .as_deref()
        .and_then(TotpSecret::from_base32)
    {
        Some(secret) => match secret.verify(&form.code, now, state.totp_last_step) {
            Some(step) => second_factor.use_step(user.id, step).await?,
            None => false,
        },
        None => false,
    };
    let accepted = by_totp
        || second_factor
            .use_recovery_code(user.id, &recovery_code_hash(&form.code), now)
            .await?;
    if !accepted {
        attempt.failed(&context.store).await?;
        tracing::info!(peer = %peer.ip(), "second factor refused");
        let record = failed_login(&context, Some(&user), None, "wrong_second_factor");
        context.audit(&origin, record).await?;
        let body = html! {
            h1 { "Enter your code" }
            (code_form("/login/totp", &form.csrf, &next, Some("That code is not right.")))
        };
        return Ok(page(StatusCode::UNAUTHORIZED, "Two-step login", body));
    }
    attempt.succeeded(&context.store).await?;
    context
        .store
        .sessions()
        .complete_second_factor(&token_hash, now.plus(context.identity.session_lifetime))
        .await?;
    tracing::info!(user_id = %user.id, recovery_code = !by_totp, "login succeeded with second factor");
    let second_factor = if by_totp { "totp" } else { "recovery_code" };
    let record = context
        .audit_record(
            account_holder(&user),
            Action::AccountLogin,
            account(user.id),
        )
        .detail(serde_json::json!({ "second_factor": second_factor }));
    context.audit(&origin, record).await?;
    Ok(redirect(&next))
}

/// The account of the request's session when it waits for the second factor, with the session's
/// token hash.
async fn pending_user(
    context: &ApiContext,
    headers: &HeaderMap,
) -> Result<Option<(store::UserRecord, String)>, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).and_then(SessionToken::parse) else {
        return Ok(None);
    };
    let hash = token.hash().as_str().to_owned();
    let now = context.identity.clock.now();
    Ok(context
        .store
        .sessions()
        .pending_user(&hash, now)
        .await?
        .map(|user| (user, hash)))
}
