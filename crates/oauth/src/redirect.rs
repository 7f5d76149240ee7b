//! Redirect URI matching: exact string comparison (RFC 6749 section 3.1.2, OAuth 2.1), except that
//! a registered loopback URI matches any port, for native apps that listen on a port of their
//! choosing (RFC 8252 section 7.3).

/// Whether `requested` may be used as the redirect for a client that registered `registered`.
/// Never one with a fragment (RFC 6749 section 3.1.2), whatever was registered: registration
/// refuses fragments, and this holds even for a list that did not pass it.
pub fn matches(registered: &[String], requested: &str) -> bool {
    !requested.contains('#')
        && registered
            .iter()
            .any(|candidate| candidate == requested || loopback_match(candidate, requested))
}

fn loopback_match(registered: &str, requested: &str) -> bool {
    let (Some(registered), Some(requested)) =
        (split_loopback(registered), split_loopback(requested))
    else {
        return false;
    };
    registered.0 == requested.0 && registered.2 == requested.2
}

/// Whether `uri` is a native app's loopback redirect (`http://127.0.0.1…` or `http://[::1]…`,
/// with nothing else in its authority), the only plain-HTTP redirects a client may register.
pub fn is_loopback(uri: &str) -> bool {
    split_loopback(uri).is_some()
}

/// `http://127.0.0.1:PORT/path` as (host, port, path-and-query); `None` for anything else,
/// including anything a browser would read as another host (user information such as
/// `http://[::1]@evil.example/`, a port that is not all digits).
fn split_loopback(uri: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (host, port) = match authority.strip_prefix("[::1]") {
        Some("") => ("[::1]", None),
        Some(after) => ("[::1]", Some(after.strip_prefix(':')?)),
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host != "127.0.0.1" && host != "[::1]" {
        return None;
    }
    let port_is_valid = |port: &str| {
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
    };
    if port.is_some_and(|port| !port_is_valid(port)) {
        return None;
    }
    Some((host, port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(registered: &str, requested: &str, expected: bool) {
        assert_eq!(
            matches(&[registered.to_owned()], requested),
            expected,
            "{registered} vs {requested}"
        );
    }

    #[test]
    fn redirects_match_exactly_or_as_loopback_with_any_port() {
        check("https://app.example/cb", "https://app.example/cb", true);
        check("https://app.example/cb", "https://app.example/cb/", false);
        check(
            "https://app.example/cb",
            "https://app.example/cb?x=1",
            false,
        );
        check("https://app.example/cb", "https://APP.example/cb", false);
        check(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:53219/callback",
            true,
        );
        check(
            "http://127.0.0.1:8000/callback",
            "http://127.0.0.1:53219/callback",
            true,
        );
        check("http://[::1]/callback", "http://[::1]:4000/callback", true);
        // A fragment is never a redirect, not even one "registered" with it.
        check("http://[::1]/cb#x", "http://[::1]:4000/cb#x", false);
        check(
            "https://app.example/cb#x",
            "https://app.example/cb#x",
            false,
        );
        check(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:53219/other",
            false,
        );
        check(
            "http://127.0.0.1/callback",
            "http://localhost:53219/callback",
            false,
        );
        check(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:99999/callback",
            false,
        );
        check(
            "http://127.0.0.1/callback",
            "http://127.0.0.1.evil.example/callback",
            false,
        );
        // Found by fuzzing: what a browser reads as another host never matches.
        check(
            "http://[::1]/callback",
            "http://[::1]@evil.example/callback",
            false,
        );
        check(
            "http://[::1]/callback?x=1",
            "http://[::1]28080/callback?x=1",
            false,
        );
        check("http://[::1]/callback", "http://[::1]:/callback", false);
        check(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:+80/callback",
            false,
        );
        check(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:80@evil.example/callback",
            false,
        );
    }

    #[test]
    fn only_true_loopback_redirects_are_loopback() {
        for uri in [
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8000/cb",
            "http://[::1]:1/cb",
        ] {
            assert!(is_loopback(uri), "{uri}");
        }
        for uri in [
            "http://127.0.0.1.evil.example/cb",
            "http://127.0.0.1=/callback",
            "http://[::1]@evil.example/cb",
            "https://127.0.0.1/cb",
            "http://localhost/cb",
        ] {
            assert!(!is_loopback(uri), "{uri}");
        }
    }
}
