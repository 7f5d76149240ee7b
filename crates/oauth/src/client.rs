//! OAuth clients: who they are, what they may ask for, and how a confidential client proves it.
//!
//! Client secrets are 256 random bits made by Warden, so a fast keyed hash (HMAC-SHA256 under a
//! server key) is enough to store them: there is nothing to guess, and without the key a stolen
//! table cannot even be checked against candidates.

use model::Timestamp;

use crate::scope::Scopes;

/// Whether a client can keep a secret (a server) or not (a browser app, a CLI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Confidential,
    Public,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Confidential => "confidential",
            ClientKind::Public => "public",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "confidential" => Some(ClientKind::Confidential),
            "public" => Some(ClientKind::Public),
            _ => None,
        }
    }
}

/// A registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub kind: ClientKind,
    /// Hex HMAC of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub allowed_scopes: Scopes,
    /// Where the authorization endpoint may send the user back to (see [`crate::redirect`]).
    pub redirect_uris: Vec<String>,
    /// Warden's own clients (console, CLI) need no consent screen.
    pub first_party: bool,
    /// For `private_key_jwt`: the client's public keys (a JWK Set, JSON). Such a client has no
    /// secret.
    pub jwks: Option<String>,
    pub created_at: Timestamp,
}

/// A client secret as handed to its owner, once.
pub type ClientSecret = tokens::keyed::RandomSecret;

/// Client secrets are hashed under Warden's server key (the root purpose, no derived key).
pub use tokens::keyed::SecretHasher;

/// The client id of Warden's command-line client (`warden login`): a public, first-party client
/// that Warden registers itself, redirecting to a loopback address on any port (RFC 8252).
pub const CLI_CLIENT_ID: &str = "warden-cli";
/// The client id of Warden's web console, served at `/console/` (docs/console.md): public and
/// first-party, redirecting to the console's own address.
pub const CONSOLE_CLIENT_ID: &str = "warden-console";

/// What Warden's own clients may ask for; a person gets only what their role allows.
const BUILTIN_CLIENT_SCOPE: &str = "openid email offline_access devices:read devices:write devices:command devices:manage firmware:manage admin";

/// The command-line client as Warden registers it.
pub fn cli_client(now: Timestamp) -> Result<Client, crate::scope::UnknownScope> {
    builtin_client(
        CLI_CLIENT_ID,
        "Warden command line",
        vec![
            "http://127.0.0.1/callback".to_owned(),
            "http://[::1]/callback".to_owned(),
        ],
        now,
    )
}

/// The web console as Warden registers it, for a Warden whose public address is `issuer`.
pub fn console_client(issuer: &str, now: Timestamp) -> Result<Client, crate::scope::UnknownScope> {
    builtin_client(
        CONSOLE_CLIENT_ID,
        "Warden console",
        vec![console_redirect_uri(issuer)],
        now,
    )
}

/// Where the console's login comes back to: the console itself.
pub fn console_redirect_uri(issuer: &str) -> String {
    format!("{}/console/", issuer.trim_end_matches('/'))
}

fn builtin_client(
    client_id: &str,
    name: &str,
    redirect_uris: Vec<String>,
    now: Timestamp,
) -> Result<Client, crate::scope::UnknownScope> {
    Ok(Client {
        client_id: client_id.to_owned(),
        name: name.to_owned(),
        kind: ClientKind::Public,
        secret_hash: None,
        allowed_scopes: Scopes::parse(BUILTIN_CLIENT_SCOPE)?,
        redirect_uris,
        first_party: true,
        jwks: None,
        created_at: now,
    })
}

/// A new client id: unguessable, so that ids cannot be enumerated.
pub fn generate_client_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("wc_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(registration: Registration, expected: Result<ClientKind, RegistrationError>) {
        let hasher = SecretHasher::new(vec![1; 32]);
        let result = registration.register(&hasher, Timestamp::from_unix_millis(0));
        match (&result, &expected) {
            (Ok((client, secret)), Ok(kind)) => {
                assert_eq!(client.kind, *kind);
                assert_eq!(
                    secret.is_some(),
                    *kind == ClientKind::Confidential && client.jwks.is_none()
                );
                if let Some(secret) = secret {
                    assert!(
                        hasher.matches(secret.as_str(), client.secret_hash.as_deref().unwrap())
                    );
                }
            }
            (Err(actual), Err(expected)) => assert_eq!(actual, expected),
            _ => panic!("{:?} instead of {expected:?}", result.map(|(c, _)| c.kind)),
        }
    }

    #[test]
    fn registrations_are_checked_before_a_client_exists() {
        let base = || Registration {
            name: "Console".into(),
            scope: "openid devices:read".into(),
            redirect_uris: vec![
                "https://console.example/cb".into(),
                "http://127.0.0.1/cb".into(),
            ],
            ..Registration::default()
        };
        check(base(), Ok(ClientKind::Confidential));
        check(
            Registration {
                public: true,
                ..base()
            },
            Ok(ClientKind::Public),
        );
        check(
            Registration {
                name: "  ".into(),
                ..base()
            },
            Err(RegistrationError::Name),
        );
        check(
            Registration {
                scope: "root".into(),
                ..base()
            },
            Err(RegistrationError::Scope("unknown scope \"root\"".into())),
        );
        for bad in [
            "http://console.example/cb",
            "https://console.example/cb#frag",
            "javascript:alert(1)",
        ] {
            check(
                Registration {
                    redirect_uris: vec![bad.into()],
                    ..base()
                },
                Err(RegistrationError::RedirectUri(bad.into())),
            );
        }
        check(
            Registration {
                redirect_uris: vec!["https://a.example/".into(); 21],
                ..base()
            },
            Err(RegistrationError::TooManyRedirectUris),
        );
    }

    #[test]
    fn secrets_match_only_their_own_hash_under_the_same_key() {
        let hasher = SecretHasher::new(vec![7; 32]);
        let secret = ClientSecret::generate();
        let hash = hasher.hash(secret.as_str());
        assert!(hasher.matches(secret.as_str(), &hash));
        assert!(!hasher.matches(ClientSecret::generate().as_str(), &hash));
        assert!(!format!("{secret:?}").contains(secret.as_str()));
        assert!(generate_client_id().starts_with("wc_"));
    }
}

/// What an operator asks for when registering a client, before it is checked.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    pub name: String,
    /// Space-separated.
    pub scope: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub first_party: bool,
    /// Public keys for `private_key_jwt` instead of a secret.
    pub jwks: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("the name must have 1 to 100 characters")]
    Name,
    #[error("{0}")]
    Scope(String),
    #[error(
        "redirect URI {0:?}: use https://, or http://127.0.0.1/… or http://[::1]/… for native apps, without a fragment"
    )]
    RedirectUri(String),
    #[error("at most 20 redirect URIs")]
    TooManyRedirectUris,
    #[error("jwks: {0}")]
    Jwks(String),
    #[error("a public client cannot have keys")]
    PublicWithKeys,
}

impl Registration {
    /// Checks the registration and makes the client, with its secret (shown once) when it is
    /// confidential.
    pub fn register(
        self,
        hasher: &SecretHasher,
        now: Timestamp,
    ) -> Result<(Client, Option<ClientSecret>), RegistrationError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(RegistrationError::Name);
        }
        let allowed_scopes =
            Scopes::parse(&self.scope).map_err(|e| RegistrationError::Scope(e.to_string()))?;
        if self.redirect_uris.len() > 20 {
            return Err(RegistrationError::TooManyRedirectUris);
        }
        for uri in &self.redirect_uris {
            let acceptable = uri.starts_with("https://") || crate::redirect::is_loopback(uri);
            if !acceptable
                || uri.contains('#')
                || uri.chars().any(char::is_whitespace)
                || uri.len() > 2000
            {
                return Err(RegistrationError::RedirectUri(uri.clone()));
            }
        }
        if let Some(jwks) = &self.jwks {
            if self.public {
                return Err(RegistrationError::PublicWithKeys);
            }
            crate::assertion::parse_key_set(jwks).map_err(RegistrationError::Jwks)?;
        }
        // A client with keys proves itself with them; only the others get a secret.
        let secret = (!self.public && self.jwks.is_none()).then(ClientSecret::generate);
        let client = Client {
            client_id: generate_client_id(),
            name,
            kind: if self.public {
                ClientKind::Public
            } else {
                ClientKind::Confidential
            },
            secret_hash: secret.as_ref().map(|secret| hasher.hash(secret.as_str())),
            allowed_scopes,
            redirect_uris: self.redirect_uris,
            first_party: self.first_party,
            jwks: self.jwks,
            created_at: now,
        };
        Ok((client, secret))
    }
}
