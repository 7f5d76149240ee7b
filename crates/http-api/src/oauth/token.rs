//! The token endpoint (RFC 6749 section 3.2): client credentials, authorization code with PKCE,
//! and refresh tokens that rotate on every use with reuse detection.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use model::{Timestamp, UserId};
use oauth::client::{Client, ClientKind, ClientSecret};
use oauth::error::{ErrorCode, OAuthError};
use oauth::pkce::CodeChallenge;
use oauth::scope::Scopes;
use oauth::{assertion, grant, random_token, token_hash};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{Redemption, RefreshRecord};
use tokens::jwt::{self, AccessClaims, IdClaims};

use super::{OAuthErrorResponse, key_ring};
use crate::journal::Origin;
use crate::{ApiContext, ApiError};
use audit::{Action, Actor, Outcome, Target};

/// How long a refresh token lives when unused.
const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    requested_token_type: Option<String>,
    audience: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

pub(crate) async fn token(
    State(context): State<ApiContext>,
    origin: Origin,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, ApiError> {
    match issue(&context, &origin, &headers, form).await {
        Ok(issued) => {
            let actor = match &issued.user {
                Some(user) => Actor::User {
                    id: user.clone(),
                    email: None,
                },
                None => Actor::Client {
                    id: issued.client_id.clone(),
                },
            };
            let record = context
                .audit_record(
                    actor,
                    Action::TokenIssue,
                    Target::new("client", &issued.client_id),
                )
                .detail(json!({
                    "grant_type": issued.grant_type,
                    "scope": issued.body.get("scope"),
                    "refresh_token": issued.body.get("refresh_token").is_some(),
                }));
            context.audit(&origin, record).await?;
            Ok(Json(issued.body).into_response())
        }
        Err(Failure::OAuth(error)) => Ok(OAuthErrorResponse(error).into_response()),
        Err(Failure::Api(error)) => Err(error),
    }
}

pub(super) enum Failure {
    OAuth(OAuthError),
    Api(ApiError),
}

impl From<OAuthError> for Failure {
    fn from(error: OAuthError) -> Self {
        Failure::OAuth(error)
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure::Api(error)
    }
}

impl From<store::StoreError> for Failure {
    fn from(error: store::StoreError) -> Self {
        Failure::Api(error.into())
    }
}

fn invalid_grant(description: &str) -> Failure {
    OAuthError::new(ErrorCode::InvalidGrant, description).into()
}

/// What a token request issued: the response body, to which client, for which person (none for
/// client credentials) and by which grant.
struct Issued {
    body: Value,
    client_id: String,
    user: Option<String>,
    grant_type: String,
}

async fn issue(
    context: &ApiContext,
    origin: &Origin,
    headers: &HeaderMap,
    form: TokenForm,
) -> Result<Issued, Failure> {
    let grant_type = form
        .grant_type
        .clone()
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "grant_type is required"))?;
    let client = authenticate(context, headers, &form.client_auth()).await?;
    let (body, user) = match grant_type.as_str() {
        "client_credentials" => {
            let scopes = grant::client_credentials(&client, form.scope.as_deref())?;
            let (access_token, _) =
                access_token(context, &client.client_id, &client.client_id, &scopes, None).await?;
            (access_token, None)
        }
        "authorization_code" => authorization_code(context, origin, &client, &form).await?,
        TOKEN_EXCHANGE => exchange(context, &client, &form).await?,
        "refresh_token" => refresh(context, origin, &client, &form).await?,
        other => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type {other:?} is not supported"),
            )
            .into());
        }
    };
    Ok(Issued {
        body,
        client_id: client.client_id,
        user,
        grant_type,
    })
}

/// Records that a code or refresh token was presented again, and that its grant was revoked.
async fn record_reuse(
    context: &ApiContext,
    origin: &Origin,
    client_id: &str,
    user_id: UserId,
    what: &str,
    revoked: u64,
) -> Result<(), Failure> {
    let record = context
        .audit_record(
            Actor::Client {
                id: client_id.to_owned(),
            },
            Action::TokenReuse,
            crate::journal::account(user_id),
        )
        .outcome(Outcome::Failure)
        .detail(json!({ "presented": what, "revoked_tokens": revoked }));
    Ok(context.audit(origin, record).await?)
}

impl TokenForm {
    fn client_auth(&self) -> ClientAuth<'_> {
        ClientAuth {
            client_id: self.client_id.as_deref(),
            client_secret: self.client_secret.as_deref(),
            assertion_type: self.client_assertion_type.as_deref(),
            assertion: self.client_assertion.as_deref(),
        }
    }
}

/// How a client identifies itself in a form, besides HTTP Basic.
pub(super) struct ClientAuth<'a> {
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    pub assertion_type: Option<&'a str>,
    pub assertion: Option<&'a str>,
}

/// Who is asking: a confidential client proves it with its secret or a signed assertion
/// (`private_key_jwt`); a public client names itself and is held to PKCE and its redirect URIs.
pub(super) async fn authenticate(
    context: &ApiContext,
    headers: &HeaderMap,
    auth: &ClientAuth<'_>,
) -> Result<Client, Failure> {
    if let Some(assertion_type) = auth.assertion_type {
        return authenticate_with_assertion(context, auth, assertion_type).await;
    }
    let (client_id, secret) = client_credentials_of(headers, auth.client_id, auth.client_secret)?;
    let client = client_by_id(context, &client_id).await?;
    match &client {
        Some(client) if client.kind == ClientKind::Public && secret.is_none() => Ok(client.clone()),
        _ => {
            grant::authenticate_client(
                client.as_ref(),
                secret.as_ref(),
                &context.oauth.secret_hasher,
            )?;
            client.ok_or_else(|| {
                OAuthError::new(ErrorCode::InvalidClient, "client authentication failed").into()
            })
        }
    }
}

/// A client from the cache while it is fresh, else from the database.
pub(super) async fn client_by_id(
    context: &ApiContext,
    client_id: &str,
) -> Result<Option<Client>, store::StoreError> {
    let cache = &context.oauth.clients;
    if let Some(client) = cache.get(client_id) {
        return Ok(Some(client));
    }
    let client = context.store.oauth_clients().by_id(client_id).await?;
    if let Some(client) = &client {
        cache.put(client);
    }
    Ok(client)
}

/// The tokens' body and the person they act for.
type Granted = (Value, Option<String>);

async fn authorization_code(
    context: &ApiContext,
    origin: &Origin,
    client: &Client,
    form: &TokenForm,
) -> Result<Granted, Failure> {
    let code = form
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "code is required"))?;
    let now = context.identity.clock.now();
    let record = match context
        .store
        .grants()
        .redeem_code(&token_hash(code), now)
        .await?
    {
        Redemption::Fresh(record) => record,
        Redemption::Replayed(record, _) | Redemption::Revoked(record) => {
            // A code used twice means it leaked: withdraw everything the first use issued.
            let revoked = super::revocation::revoke_grant(context, &record.grant_id, now).await?;
            tracing::warn!(client_id = %record.client_id, revoked, "authorization code reused; its grant is revoked");
            record_reuse(
                context,
                origin,
                &record.client_id,
                record.user_id,
                "authorization_code",
                revoked,
            )
            .await?;
            return Err(invalid_grant(
                "the authorization code was already used; its tokens are revoked",
            ));
        }
        Redemption::NotFound => return Err(invalid_grant("unknown authorization code")),
    };
    if record.client_id != client.client_id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if record.expires_at <= now {
        return Err(invalid_grant("the authorization code has expired"));
    }
    if form.redirect_uri.as_deref() != Some(record.redirect_uri.as_str()) {
        return Err(invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    match (&record.code_challenge, form.code_verifier.as_deref()) {
        (Some(challenge), Some(verifier))
            if CodeChallenge::from_stored(challenge.clone()).is_met_by(verifier) => {}
        (Some(_), _) => {
            return Err(invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        (None, Some(_)) => return Err(invalid_grant("no code_challenge was sent for this code")),
        (None, None) => {}
    }
    let scopes = Scopes::parse(&record.scope).map_err(|e| invalid_grant(&e.to_string()))?;
    let subject = record.user_id.to_string();
    let (mut body, access) = access_token(
        context,
        &client.client_id,
        &subject,
        &scopes,
        Some(&record.grant_id),
    )
    .await?;
    if scopes.contains("openid") {
        let id_token = id_token(
            context,
            client,
            record.user_id,
            &access,
            record.nonce.clone(),
            &scopes,
            record.created_at,
        )
        .await?;
        body["id_token"] = id_token.into();
    }
    if scopes.contains("offline_access") || client.first_party {
        let refresh = new_refresh_token(
            context,
            client,
            record.user_id,
            &record.grant_id,
            &scopes,
            now,
        )
        .await?;
        body["refresh_token"] = refresh.into();
    }
    tracing::info!(client_id = %client.client_id, user_id = %record.user_id, "authorization code exchanged");
    Ok((body, Some(record.user_id.to_string())))
}

async fn refresh(
    context: &ApiContext,
    origin: &Origin,
    client: &Client,
    form: &TokenForm,
) -> Result<Granted, Failure> {
    let presented = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "refresh_token is required"))?;
    let now = context.identity.clock.now();
    let record = match context
        .store
        .grants()
        .use_refresh(&token_hash(presented), now)
        .await?
    {
        Redemption::Fresh(record) => record,
        Redemption::Replayed(record, used_at) => {
            if now < used_at.plus(context.oauth.refresh_reuse_grace) {
                return Err(invalid_grant(
                    "the refresh token was just rotated; use the new one",
                ));
            }
            let revoked = super::revocation::revoke_grant(context, &record.grant_id, now).await?;
            tracing::warn!(client_id = %record.client_id, revoked, "refresh token reused; its grant is revoked");
            record_reuse(
                context,
                origin,
                &record.client_id,
                record.user_id,
                "refresh_token",
                revoked,
            )
            .await?;
            return Err(invalid_grant(
                "the refresh token was already used; the grant is revoked",
            ));
        }
        Redemption::Revoked(_) => return Err(invalid_grant("the refresh token was revoked")),
        Redemption::NotFound => return Err(invalid_grant("unknown refresh token")),
    };
    if record.client_id != client.client_id {
        return Err(invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if record.expires_at <= now {
        return Err(invalid_grant("the refresh token has expired"));
    }
    let granted = Scopes::parse(&record.scope).map_err(|e| invalid_grant(&e.to_string()))?;
    let scopes = match form.scope.as_deref() {
        Some(requested) => {
            let requested = Scopes::parse(requested)
                .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
            if !requested.is_subset_of(&granted) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "a refresh cannot widen the grant",
                )
                .into());
            }
            requested
        }
        None => granted,
    };
    let (mut body, _) = access_token(
        context,
        &client.client_id,
        &record.user_id.to_string(),
        &scopes,
        Some(&record.grant_id),
    )
    .await?;
    let refresh = new_refresh_token(
        context,
        client,
        record.user_id,
        &record.grant_id,
        &scopes,
        now,
    )
    .await?;
    body["refresh_token"] = refresh.into();
    Ok((body, Some(record.user_id.to_string())))
}

/// Token exchange (RFC 8693): a service turns the access token it received into one for another
/// part of Warden's API, for the same user, with at most the same scopes and lifetime, naming itself
/// as the actor. Tokens are only issued for audiences below Warden's own API audience.
async fn exchange(
    context: &ApiContext,
    client: &Client,
    form: &TokenForm,
) -> Result<Granted, Failure> {
    if client.kind != ClientKind::Confidential {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "only confidential clients may exchange tokens",
        )
        .into());
    }
    let invalid_request =
        |why: &str| Failure::OAuth(OAuthError::new(ErrorCode::InvalidRequest, why));
    if form.subject_token_type.as_deref() != Some(ACCESS_TOKEN_TYPE) {
        return Err(invalid_request(
            "subject_token_type must be urn:ietf:params:oauth:token-type:access_token",
        ));
    }
    if form
        .requested_token_type
        .as_deref()
        .is_some_and(|kind| kind != ACCESS_TOKEN_TYPE)
    {
        return Err(invalid_request("only access tokens can be requested"));
    }
    let subject_token = form
        .subject_token
        .as_deref()
        .ok_or_else(|| invalid_request("subject_token is required"))?;
    let subject = match super::revocation::active_claims(context, subject_token).await? {
        Ok(claims) => claims,
        Err(why) => {
            return Err(invalid_grant(&format!(
                "the subject token is not active: {why}"
            )));
        }
    };
    let audience = form.audience.clone().unwrap_or_else(|| subject.aud.clone());
    let own = tokens::jwt::Expectations {
        issuer: &context.oauth.issuer,
        audience: &context.oauth.audience,
    };
    if !own.accepts_audience(&audience) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            format!(
                "tokens are issued only for {} and the parts below it",
                context.oauth.audience
            ),
        )
        .into());
    }
    let granted = Scopes::parse(&subject.scope).map_err(|e| invalid_grant(&e.to_string()))?;
    let scopes = match form.scope.as_deref() {
        Some(requested) => {
            let requested = Scopes::parse(requested)
                .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
            if !requested.is_subset_of(&granted) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "an exchange cannot widen the scopes",
                )
                .into());
            }
            requested
        }
        None => granted,
    };
    let now = context.identity.clock.now();
    let ring = key_ring(context).await?;
    let issued_at = now.unix_millis().div_euclid(1000);
    let lifetime = i64::try_from(context.oauth.access_token_lifetime.as_secs()).unwrap_or(i64::MAX);
    let claims = AccessClaims {
        iss: context.oauth.issuer.clone(),
        sub: subject.sub.clone(),
        aud: audience,
        iat: issued_at,
        // Never outlives the token it was exchanged for.
        exp: subject.exp.min(issued_at + lifetime),
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: client.client_id.clone(),
        scope: scopes.to_string(),
        gid: subject.gid.clone(),
        act: Some(tokens::jwt::Actor {
            sub: client.client_id.clone(),
        }),
    };
    let token = jwt::issue(&ring, now, &claims).map_err(signing_failed)?;
    tracing::info!(client_id = %client.client_id, audience = %claims.aud, "token exchanged");
    let body = json!({
        "access_token": token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": claims.exp - issued_at,
        "scope": claims.scope,
    });
    Ok((body, Some(claims.sub)))
}

async fn authenticate_with_assertion(
    context: &ApiContext,
    auth: &ClientAuth<'_>,
    assertion_type: &str,
) -> Result<Client, Failure> {
    let invalid_client = |why: &str| Failure::OAuth(OAuthError::new(ErrorCode::InvalidClient, why));
    if assertion_type != assertion::JWT_BEARER {
        return Err(invalid_client("unsupported client_assertion_type"));
    }
    let token = auth
        .assertion
        .ok_or_else(|| invalid_client("client_assertion is required"))?;
    let client_id = match auth.client_id {
        Some(id) => id.to_owned(),
        None => assertion::claimed_client_id(token)
            .ok_or_else(|| invalid_client("the assertion names no client"))?,
    };
    let client = context
        .store
        .oauth_clients()
        .by_id(&client_id)
        .await?
        .ok_or_else(|| invalid_client("client authentication failed"))?;
    let now = context.identity.clock.now();
    let token_endpoint = format!("{}/oauth2/token", context.oauth.issuer);
    let verified = assertion::verify(
        token,
        &client,
        &[&token_endpoint, &context.oauth.issuer],
        now,
    )?;
    let fresh = context
        .store
        .oauth_clients()
        .record_assertion(&client.client_id, &verified.jti, verified.expires_at)
        .await?;
    if !fresh {
        return Err(invalid_client("this client assertion was used before"));
    }
    Ok(client)
}

/// No usable signing key is an outage, not a fault of the request.
fn signing_failed(error: jwt::TokenError) -> ApiError {
    match error {
        jwt::TokenError::NoSigningKey => ApiError::Unavailable {
            what: "token signing",
        },
        other => ApiError::Internal(Box::new(other)),
    }
}

async fn new_refresh_token(
    context: &ApiContext,
    client: &Client,
    user_id: UserId,
    grant_id: &str,
    scopes: &Scopes,
    now: Timestamp,
) -> Result<String, Failure> {
    let token = random_token();
    context
        .store
        .grants()
        .insert_refresh(&RefreshRecord {
            token_hash: token_hash(&token),
            grant_id: grant_id.to_owned(),
            client_id: client.client_id.clone(),
            user_id,
            scope: scopes.to_string(),
            created_at: now,
            expires_at: now.plus(REFRESH_TOKEN_LIFETIME),
        })
        .await?;
    Ok(token)
}

/// An access token for one of Warden's own parts acting as a service, as the client credentials
/// grant issues them (its subject is `client_id`). Warden's client of an external MQTT broker
/// presents one, so that the broker's hooks see a service with `scopes`.
pub async fn own_service_token(
    context: &ApiContext,
    client_id: &str,
    scopes: &Scopes,
) -> Result<String, ApiError> {
    Ok(access_token(context, client_id, client_id, scopes, None)
        .await?
        .1)
}

/// A signed access token for `subject`, issued to `client_id`, and the response body that
/// carries it.
async fn access_token(
    context: &ApiContext,
    client_id: &str,
    subject: &str,
    scopes: &Scopes,
    grant_id: Option<&str>,
) -> Result<(Value, String), ApiError> {
    let now = context.identity.clock.now();
    let ring = key_ring(context).await?;
    let lifetime = context.oauth.access_token_lifetime;
    let issued_at = now.unix_millis().div_euclid(1000);
    let claims = AccessClaims {
        iss: context.oauth.issuer.clone(),
        sub: subject.to_owned(),
        aud: context.oauth.audience.clone(),
        iat: issued_at,
        exp: issued_at + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: client_id.to_owned(),
        scope: scopes.to_string(),
        gid: grant_id.map(str::to_owned),
        act: None,
    };
    let token =
        jwt::issue(&ring, now, &claims).map_err(|error| ApiError::Internal(Box::new(error)))?;
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
    });
    if !claims.scope.is_empty() {
        body["scope"] = claims.scope.into();
    }
    Ok((body, token))
}

async fn id_token(
    context: &ApiContext,
    client: &Client,
    user_id: UserId,
    access_token: &str,
    nonce: Option<String>,
    scopes: &Scopes,
    auth_time: Timestamp,
) -> Result<String, Failure> {
    let now = context.identity.clock.now();
    let ring = key_ring(context).await?;
    let email = if scopes.contains("email") {
        context
            .store
            .users()
            .by_id(user_id)
            .await?
            .map(|user| user.email.to_string())
    } else {
        None
    };
    let issued_at = now.unix_millis().div_euclid(1000);
    let claims = IdClaims {
        iss: context.oauth.issuer.clone(),
        sub: user_id.to_string(),
        aud: client.client_id.clone(),
        exp: issued_at
            + i64::try_from(context.oauth.access_token_lifetime.as_secs()).unwrap_or(i64::MAX),
        iat: issued_at,
        auth_time: auth_time.unix_millis().div_euclid(1000),
        nonce,
        at_hash: jwt::at_hash(access_token),
        azp: client.client_id.clone(),
        email,
    };
    Ok(jwt::issue_id_token(&ring, now, &claims).map_err(signing_failed)?)
}

/// The client's id and secret, from HTTP Basic (`client_secret_basic`, RFC 6749 section 2.3.1, with
/// form-encoded parts) or the form (`client_secret_post`, or a public client's bare `client_id`).
fn client_credentials_of(
    headers: &HeaderMap,
    client_id: Option<&str>,
    client_secret: Option<&str>,
) -> Result<(String, Option<ClientSecret>), OAuthError> {
    let invalid = |why: &str| OAuthError::new(ErrorCode::InvalidClient, why);
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| model::authorization::credentials(value, "Basic"));
    match (basic, client_id) {
        (Some(_), Some(_)) if client_secret.is_some() => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "use one client authentication method, not two",
        )),
        (Some(encoded), _) => {
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| invalid("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| invalid("malformed Basic credentials"))?;
            Ok((
                form_decode(id),
                Some(ClientSecret::from_presented(&form_decode(secret))),
            ))
        }
        (None, Some(id)) => Ok((
            id.to_owned(),
            client_secret.map(ClientSecret::from_presented),
        )),
        (None, None) => Err(invalid("client authentication is required")),
    }
}

/// RFC 6749 has clients form-encode id and secret before Basic encoding.
fn form_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map_or_else(|_| text.to_owned(), |decoded| decoded.into_owned())
}
