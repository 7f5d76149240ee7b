//! The authorization endpoint (RFC 6749 section 3.1, OpenID Connect Core section 3.1.2): checks
//! the request, sends the user to log in when needed, asks third-party clients' users for consent,
//! and redirects back with a one-time code.
//!
//! A request naming an unknown client or an unregistered redirect URI gets an error page, never a
//! redirect: Warden does not send anyone to an address it cannot vouch for. Every other problem is
//! reported to the client at its redirect URI, with `state`.

use std::time::Duration;

use axum::Form;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use model::Role;
use oauth::client::{Client, ClientKind};
use oauth::pkce::CodeChallenge;
use oauth::scope::Scopes;
use oauth::{random_token, redirect, token_hash};
use serde::Deserialize;
use store::{CodeRecord, UserRecord};

use crate::pages::{
    csrf_ok, csrf_token, current_user, end_browser_session, forbidden_form, page,
    redirect as see_other, url_encode, with_cookies,
};
use crate::{ApiContext, ApiError};

/// Codes are exchanged by the client right after the redirect; a minute is plenty.
const CODE_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ConsentForm {
    #[serde(flatten)]
    params: AuthorizeParams,
    csrf: String,
    decision: String,
}

/// A request that passed every check.
struct Approved {
    client: Client,
    redirect_uri: String,
    scopes: Scopes,
    state: Option<String>,
    nonce: Option<String>,
    challenge: Option<CodeChallenge>,
}

pub(crate) async fn authorize(
    State(context): State<ApiContext>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(params): Query<AuthorizeParams>,
) -> Result<Response, ApiError> {
    let approved = match check(&context, &params).await? {
        Ok(approved) => approved,
        Err(refusal) => return Ok(refusal),
    };
    let Some(user) = current_user(&context, &headers).await? else {
        let here = uri
            .path_and_query()
            .map_or("/oauth2/authorize", |p| p.as_str());
        let next: String = url_encode(here);
        return Ok(see_other(&format!("/login?next={next}")));
    };
    if let Some(refusal) = refuse_scopes_beyond_role(&context, &approved, &user) {
        return Ok(refusal);
    }
    if approved.client.first_party {
        return issue_code(&context, approved, &user).await;
    }
    let (csrf, new_cookie) = csrf_token(&headers);
    Ok(with_cookies(
        consent_page(&approved, &params, &csrf),
        new_cookie,
    ))
}

pub(crate) async fn consent(
    State(context): State<ApiContext>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Result<Response, ApiError> {
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(forbidden_form());
    }
    let approved = match check(&context, &form.params).await? {
        Ok(approved) => approved,
        Err(refusal) => return Ok(refusal),
    };
    let Some(user) = current_user(&context, &headers).await? else {
        return Ok(see_other("/login"));
    };
    if let Some(refusal) = refuse_scopes_beyond_role(&context, &approved, &user) {
        return Ok(refusal);
    }
    if form.decision != "allow" {
        return Ok(error_redirect(
            &approved.redirect_uri,
            "access_denied",
            "the user declined",
            approved.state.as_deref(),
            &context,
        ));
    }
    issue_code(&context, approved, &user).await
}

/// Everything about the request except who the user is. `Err` holds the response to send.
async fn check(
    context: &ApiContext,
    params: &AuthorizeParams,
) -> Result<Result<Approved, Response>, ApiError> {
    let client = match params.client_id.as_deref() {
        Some(client_id) => context.store.oauth_clients().by_id(client_id).await?,
        None => None,
    };
    let Some(client) = client else {
        return Ok(Err(error_page(
            "The application asking you to log in is not registered with Warden.",
        )));
    };
    let Some(redirect_uri) = params
        .redirect_uri
        .clone()
        .filter(|uri| redirect::matches(&client.redirect_uris, uri))
    else {
        return Ok(Err(error_page(
            "The application asked to send you to an address it has not registered.",
        )));
    };
    let state = params.state.clone();
    let refuse = |code: &str, description: &str| {
        Ok(Err(error_redirect(
            &redirect_uri,
            code,
            description,
            state.as_deref(),
            context,
        )))
    };
    if params.response_type.as_deref() != Some("code") {
        return refuse(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let scopes = match Scopes::parse(params.scope.as_deref().unwrap_or_default()) {
        Ok(scopes) if scopes.is_subset_of(&client.allowed_scopes) => scopes,
        Ok(_) => return refuse("invalid_scope", "the client may not ask for these scopes"),
        Err(error) => return refuse("invalid_scope", &error.to_string()),
    };
    let challenge = match (
        params.code_challenge.as_deref(),
        params.code_challenge_method.as_deref(),
    ) {
        (Some(challenge), method) => match CodeChallenge::parse(challenge, method) {
            Ok(challenge) => Some(challenge),
            Err(why) => return refuse("invalid_request", why),
        },
        (None, Some(_)) => {
            return refuse(
                "invalid_request",
                "code_challenge_method without code_challenge",
            );
        }
        (None, None) if client.kind == ClientKind::Public => {
            return refuse(
                "invalid_request",
                "public clients must use PKCE (code_challenge with S256)",
            );
        }
        (None, None) => None,
    };
    Ok(Ok(Approved {
        client,
        redirect_uri,
        scopes,
        state,
        nonce: params.nonce.clone(),
        challenge,
    }))
}

/// The `admin` scope is only for administrators, whatever the client may ask for.
fn refuse_scopes_beyond_role(
    context: &ApiContext,
    approved: &Approved,
    user: &UserRecord,
) -> Option<Response> {
    (approved.scopes.contains("admin") && user.role != Role::Admin).then(|| {
        error_redirect(
            &approved.redirect_uri,
            "invalid_scope",
            "the admin scope is only for administrators",
            approved.state.as_deref(),
            context,
        )
    })
}

async fn issue_code(
    context: &ApiContext,
    approved: Approved,
    user: &UserRecord,
) -> Result<Response, ApiError> {
    let code = random_token();
    let now = context.identity.clock.now();
    context
        .store
        .grants()
        .insert_code(&CodeRecord {
            code_hash: token_hash(&code),
            grant_id: uuid::Uuid::new_v4().to_string(),
            client_id: approved.client.client_id.clone(),
            user_id: user.id,
            redirect_uri: approved.redirect_uri.clone(),
            scope: approved.scopes.to_string(),
            nonce: approved.nonce.clone(),
            code_challenge: approved.challenge.as_ref().map(|c| c.as_str().to_owned()),
            created_at: now,
            expires_at: now.plus(CODE_LIFETIME),
        })
        .await?;
    tracing::info!(client_id = %approved.client.client_id, user_id = %user.id, "authorization code issued");
    let mut query = vec![
        ("code", code.as_str()),
        ("iss", context.oauth.issuer.as_str()),
    ];
    if let Some(state) = approved.state.as_deref() {
        query.push(("state", state));
    }
    Ok(see_other(&with_query(&approved.redirect_uri, &query)))
}

#[derive(Deserialize)]
pub(crate) struct EndSessionParams {
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the browser session, then
/// returns to the client only at a URI it registered; otherwise shows that the user is logged out.
pub(crate) async fn end_session(
    State(context): State<ApiContext>,
    headers: HeaderMap,
    Query(params): Query<EndSessionParams>,
) -> Result<Response, ApiError> {
    let ended = end_browser_session(&context, &headers).await?;
    let client = match params.client_id.as_deref() {
        Some(client_id) => context.store.oauth_clients().by_id(client_id).await?,
        None => None,
    };
    let target = params.post_logout_redirect_uri.as_deref().filter(|uri| {
        client
            .as_ref()
            .is_some_and(|client| redirect::matches(&client.redirect_uris, uri))
    });
    let response = match target {
        Some(uri) => {
            let query: Vec<(&str, &str)> = params
                .state
                .as_deref()
                .map(|state| ("state", state))
                .into_iter()
                .collect();
            see_other(&if query.is_empty() {
                uri.to_owned()
            } else {
                with_query(uri, &query)
            })
        }
        None => page(
            StatusCode::OK,
            "Logged out",
            html! {
                h1 { "You are logged out" }
                p { a href="/login" { "Log in again" } }
            },
        ),
    };
    Ok(with_cookies(response, [ended]))
}

fn error_redirect(
    redirect_uri: &str,
    code: &str,
    description: &str,
    state: Option<&str>,
    context: &ApiContext,
) -> Response {
    let mut query = vec![
        ("error", code),
        ("error_description", description),
        ("iss", context.oauth.issuer.as_str()),
    ];
    if let Some(state) = state {
        query.push(("state", state));
    }
    see_other(&with_query(redirect_uri, &query))
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", url_encode(value)))
        .collect();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{}", encoded.join("&"))
}

fn error_page(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Cannot continue",
        html! {
            h1 { "This request cannot continue" }
            p { (message) }
        },
    )
}

fn consent_page(approved: &Approved, params: &AuthorizeParams, csrf: &str) -> Response {
    let hidden = [
        ("response_type", params.response_type.as_deref()),
        ("client_id", params.client_id.as_deref()),
        ("redirect_uri", params.redirect_uri.as_deref()),
        ("scope", params.scope.as_deref()),
        ("state", params.state.as_deref()),
        ("nonce", params.nonce.as_deref()),
        ("code_challenge", params.code_challenge.as_deref()),
        (
            "code_challenge_method",
            params.code_challenge_method.as_deref(),
        ),
    ];
    let scopes = approved.scopes.to_string();
    page(
        StatusCode::OK,
        "Allow access",
        html! {
            h1 { "Allow " (approved.client.name) " to use your Warden account?" }
            p { "It asks for: " }
            ul { @for scope in scopes.split(' ').filter(|s| !s.is_empty()) { li { code { (scope) } } } }
            form method="post" action="/oauth2/authorize" {
                input type="hidden" name="csrf" value=(csrf);
                @for (name, value) in hidden {
                    @if let Some(value) = value { input type="hidden" name=(name) value=(value); }
                }
                button type="submit" name="decision" value="allow" { "Allow" }
                " "
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
}
