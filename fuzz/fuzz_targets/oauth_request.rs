//! The parts of an OAuth authorization or token request Warden parses and compares: the
//! `redirect_uri` against a client's registered ones (`oauth::redirect::matches`), a client's
//! registration by an admin (`oauth::client::Registration::register`: name, scope, redirect URIs,
//! keys), `scope` (`oauth::scope::Scopes::parse`), and PKCE (`oauth::pkce::CodeChallenge`).
//!
//! Input: lines. The first is the requested redirect URI, the second a scope, the third a code
//! challenge, the fourth a code verifier; the others are registered redirect URIs.
//!
//! Properties: nothing panics; a requested redirect URI that `matches` accepts is a registered
//! one, or (a native app's loopback redirect on another port) one that a browser reads as the
//! same scheme, host, path and query as a registered loopback URI, with no user information: the
//! authorization code then goes nowhere but where the client asked; a registered `http://` URI
//! has a loopback host, as the registration's rule says; scopes written back parse to
//! themselves; a challenge is met by the verifier it was made from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oauth::client::{Registration, SecretHasher};
use oauth::pkce::CodeChallenge;
use oauth::redirect;
use oauth::scope::Scopes;
use url::Url;
use warden_fuzz::{NOW, check};

fuzz_target!(|data: &[u8]| {
    let Some(text) = warden_fuzz::text(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let requested = lines.next().unwrap_or_default();
    let scope = lines.next().unwrap_or_default();
    let challenge = lines.next().unwrap_or_default();
    let verifier = lines.next().unwrap_or_default();
    let registered: Vec<String> = lines.map(str::to_owned).collect();

    if redirect::matches(&registered, requested) && !registered.iter().any(|uri| uri == requested) {
        let same_place = registered
            .iter()
            .any(|uri| same_loopback_place(uri, requested));
        check!(
            "redirect-elsewhere",
            same_place,
            "{requested:?} matched {registered:?}, but a browser goes to {:?}",
            Url::parse(requested).map(|url| (
                url.scheme().to_owned(),
                url.username().to_owned(),
                url.host_str().map(str::to_owned),
                url.path().to_owned()
            ))
        );
    }

    let registration = Registration {
        name: "fuzzed client".to_owned(),
        scope: scope.to_owned(),
        public: true,
        redirect_uris: registered.clone(),
        first_party: false,
        jwks: None,
    };
    if let Ok((client, _)) = registration.register(&SecretHasher::new(vec![7; 32]), NOW) {
        for uri in client
            .redirect_uris
            .iter()
            .filter(|uri| uri.starts_with("http://"))
        {
            let host = Url::parse(uri)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned));
            check!(
                "redirect-registered-loopback",
                matches!(host.as_deref(), Some("127.0.0.1" | "[::1]")),
                "the plain-http redirect URI {uri:?} was registered; its host is {host:?}"
            );
        }
    }

    if let Ok(scopes) = Scopes::parse(scope) {
        let written = scopes.to_string();
        check!(
            "scope-roundtrip",
            Scopes::parse(&written).as_ref() == Ok(&scopes),
            "{scope:?} was written back as {written:?}"
        );
    }

    if let Ok(parsed) = CodeChallenge::parse(challenge, Some("S256")) {
        let _ = parsed.is_met_by(verifier);
    }
    let _ = CodeChallenge::parse(challenge, Some(verifier));
    let made = {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use sha2::Digest;
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    if let Ok(from_verifier) = CodeChallenge::parse(&made, Some("S256")) {
        let well_formed = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        check!(
            "pkce",
            from_verifier.is_met_by(verifier) == well_formed,
            "the challenge made from {verifier:?} is met: {}",
            from_verifier.is_met_by(verifier)
        );
    }
});

/// Whether a browser sent to `requested` reaches the loopback host, path and query of
/// `registered` over plain HTTP, with no user information in the way.
fn same_loopback_place(registered: &str, requested: &str) -> bool {
    let (Ok(registered), Ok(requested)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    requested.scheme() == "http"
        && registered.scheme() == "http"
        && requested.username().is_empty()
        && requested.password().is_none()
        && matches!(requested.host_str(), Some("127.0.0.1" | "[::1]"))
        && requested.host_str() == registered.host_str()
        && requested.path() == registered.path()
        && requested.query() == registered.query()
        && requested.fragment().is_none()
}
