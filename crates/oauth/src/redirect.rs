//! Redirect URI matching: exact string comparison (RFC 6749 section 3.1.2, OAuth 2.1), except that
//! a registered loopback URI matches any port, for native apps that listen on a port of their
//! choosing (RFC 8252 section 7.3).

/// Whether `requested` may be used as the redirect for a client that registered `registered`.
pub fn matches(registered: &[String], requested: &str) -> bool {
    registered
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

/// `http://127.0.0.1:PORT/path` as (host, port, path-and-query); `None` for anything else.
fn split_loopback(uri: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let (authority, path) = rest
        .find('/')
        .map_or((rest, ""), |index| rest.split_at(index));
    let (host, port) = if let Some(bracketed) = authority.strip_prefix("[::1]") {
        ("[::1]", bracketed.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host != "127.0.0.1" && host != "[::1]" {
        return None;
    }
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
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
    }
}
