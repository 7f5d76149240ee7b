//! What a token request is granted: client authentication and the scopes of each grant type.

use crate::client::{Client, ClientKind, ClientSecret, SecretHasher};
use crate::error::{ErrorCode, OAuthError};
use crate::scope::Scopes;

/// Scopes that only make sense with a user, never for a client acting as itself.
const USER_ONLY_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// Checks a confidential client's secret. An unknown client and a wrong secret get the same answer.
pub fn authenticate_client(
    client: Option<&Client>,
    secret: Option<&ClientSecret>,
    hasher: &SecretHasher,
) -> Result<(), OAuthError> {
    let refused = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
    let client = client.ok_or_else(refused)?;
    match (&client.secret_hash, secret) {
        (Some(hash), Some(secret)) if hasher.matches(secret.as_str(), hash) => Ok(()),
        _ => Err(refused()),
    }
}

/// The scopes a client-credentials request gets (RFC 6749 section 4.4): what it asked for, all of
/// which it must be allowed; or, when it asked for nothing, everything it is allowed that needs no
/// user.
pub fn client_credentials(client: &Client, requested: Option<&str>) -> Result<Scopes, OAuthError> {
    if client.kind != ClientKind::Confidential {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "public clients cannot use the client_credentials grant",
        ));
    }
    let requested = match requested {
        Some(scope) => Scopes::parse(scope)
            .map_err(|error| OAuthError::new(ErrorCode::InvalidScope, error.to_string()))?,
        None => {
            let machine: Vec<String> = client
                .allowed_scopes
                .to_string()
                .split(' ')
                .filter(|scope| !scope.is_empty() && !USER_ONLY_SCOPES.contains(scope))
                .map(str::to_owned)
                .collect();
            Scopes::parse(&machine.join(" "))
                .map_err(|error| OAuthError::new(ErrorCode::InvalidScope, error.to_string()))?
        }
    };
    if USER_ONLY_SCOPES
        .iter()
        .any(|scope| requested.contains(scope))
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "user scopes need a user; use the authorization code flow",
        ));
    }
    if !requested.is_subset_of(&client.allowed_scopes) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "the client may not ask for these scopes",
        ));
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use model::Timestamp;

    use super::*;

    fn client(kind: ClientKind, hasher: &SecretHasher, secret: &ClientSecret) -> Client {
        Client {
            client_id: "wc_1".into(),
            name: "fleet service".into(),
            kind,
            secret_hash: (kind == ClientKind::Confidential).then(|| hasher.hash(secret.as_str())),
            allowed_scopes: Scopes::parse("openid devices:read devices:write").unwrap(),
            redirect_uris: Vec::new(),
            first_party: false,
            jwks: None,
            created_at: Timestamp::from_unix_millis(0),
        }
    }

    #[test]
    fn only_the_right_secret_authenticates_a_confidential_client() {
        let hasher = SecretHasher::new(vec![1; 32]);
        let secret = ClientSecret::generate();
        let confidential = client(ClientKind::Confidential, &hasher, &secret);
        assert_eq!(
            authenticate_client(Some(&confidential), Some(&secret), &hasher),
            Ok(())
        );
        let wrong = ClientSecret::generate();
        let refusals = [
            authenticate_client(Some(&confidential), Some(&wrong), &hasher),
            authenticate_client(Some(&confidential), None, &hasher),
            authenticate_client(None, Some(&secret), &hasher),
            authenticate_client(
                Some(&client(ClientKind::Public, &hasher, &secret)),
                Some(&secret),
                &hasher,
            ),
        ];
        for refusal in refusals {
            assert_eq!(refusal.unwrap_err().code, ErrorCode::InvalidClient);
        }
    }

    fn check(kind: ClientKind, requested: Option<&str>, expected: Result<&str, ErrorCode>) {
        let hasher = SecretHasher::new(vec![1; 32]);
        let secret = ClientSecret::generate();
        let actual = client_credentials(&client(kind, &hasher, &secret), requested);
        assert_eq!(
            actual.map(|s| s.to_string()).map_err(|e| e.code),
            expected.map(str::to_owned),
            "{requested:?}"
        );
    }

    #[test]
    fn client_credentials_grant_only_allowed_machine_scopes() {
        check(
            ClientKind::Confidential,
            None,
            Ok("devices:read devices:write"),
        );
        check(
            ClientKind::Confidential,
            Some("devices:read"),
            Ok("devices:read"),
        );
        check(
            ClientKind::Confidential,
            Some("devices:manage"),
            Err(ErrorCode::InvalidScope),
        );
        check(
            ClientKind::Confidential,
            Some("openid"),
            Err(ErrorCode::InvalidScope),
        );
        check(
            ClientKind::Confidential,
            Some("devices:fly"),
            Err(ErrorCode::InvalidScope),
        );
        check(ClientKind::Public, None, Err(ErrorCode::UnauthorizedClient));
    }
}
