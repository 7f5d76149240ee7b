//! The OAuth 2.0 / OpenID Connect server's decisions, without HTTP: who a client is and what it may
//! ask for ([`client`], [`scope`]), what a token request yields ([`grant`]), and the error codes of
//! RFC 6749 ([`error`]). The HTTP endpoints in `http-api` parse requests into these types, ask, and
//! write the answer.

pub mod assertion;
pub mod client;
pub mod error;
pub mod grant;
pub mod pkce;
pub mod redirect;
pub mod scope;

pub use tokens::opaque::{constant_time_eq, random_token, token_hash};
