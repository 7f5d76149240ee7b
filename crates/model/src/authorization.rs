//! The `Authorization` request header (RFC 9110 section 11.6.2): a scheme and its credentials.

/// The credentials of an `Authorization` header value when its scheme is `scheme`: the text
/// after the scheme and one or more spaces, trimmed. The scheme is compared without regard to
/// case (RFC 9110 section 11.1), so `bearer abc` and `BEARER abc` give `abc` for `Bearer`.
/// `None` for another scheme, or for a scheme without credentials.
pub fn credentials<'a>(header_value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header_value.split_once(' ')?;
    let credentials = rest.trim();
    (given.eq_ignore_ascii_case(scheme) && !credentials.is_empty()).then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::credentials;

    #[test]
    fn the_scheme_is_matched_without_regard_to_case() {
        assert_eq!(credentials("Bearer abc", "Bearer"), Some("abc"));
        assert_eq!(credentials("bearer abc", "Bearer"), Some("abc"));
        assert_eq!(
            credentials("BASIC  dXNlcjpwdw== ", "Basic"),
            Some("dXNlcjpwdw==")
        );
    }

    #[test]
    fn another_scheme_or_no_credentials_is_none() {
        assert_eq!(credentials("Basic abc", "Bearer"), None);
        assert_eq!(credentials("Bearerabc", "Bearer"), None);
        assert_eq!(credentials("Bearer", "Bearer"), None);
        assert_eq!(credentials("Bearer   ", "Bearer"), None);
        assert_eq!(credentials("", "Bearer"), None);
    }
}
