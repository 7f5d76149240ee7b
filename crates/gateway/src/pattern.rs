//! URL patterns of `match.url`, as Ory Oathkeeper writes them: literal text with the variable
//! parts between `<` and `>`, a regular expression (`regexp` strategy) or a glob (`glob`
//! strategy) inside each pair. Each `<…>` part is a capture group, in order, that templates read
//! as `.MatchContext.RegexpCaptureGroups`.
//!
//! A pattern that starts with `/` matches the path alone, on any host; any other pattern matches
//! `scheme://host/path`. The query string is never part of what is matched.

use regex::Regex;

/// How the parts between `<` and `>` are read; one strategy per rules file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Regular expressions (Rust's `regex` syntax), Oathkeeper's default.
    #[default]
    Regexp,
    /// Globs: `*` within one path segment or host label, `**` across them, `?` one such
    /// character, `{a,b}` alternatives, `[…]` a character class (`[!…]` negated).
    Glob,
}

/// A compiled `match.url`.
#[derive(Clone, Debug)]
pub struct UrlPattern {
    regex: Regex,
    path_only: bool,
}

/// What a request offers to be matched.
#[derive(Clone, Copy, Debug)]
pub struct RequestUrl<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub path: &'a str,
}

impl UrlPattern {
    /// Compiles `source`; the error says what is wrong and where in the pattern.
    pub fn compile(source: &str, strategy: Strategy) -> Result<Self, String> {
        let mut expression = String::from("^");
        let mut rest = source;
        while let Some(open) = rest.find('<') {
            expression.push_str(&regex::escape(&rest[..open]));
            let inner_start = open + 1;
            let close = closing_bracket(&rest[inner_start..]).ok_or_else(|| {
                format!(
                    "the `<` at character {} has no matching `>`",
                    source.len() - rest.len() + open + 1
                )
            })?;
            let inner = &rest[inner_start..inner_start + close];
            expression.push('(');
            match strategy {
                Strategy::Regexp => expression.push_str(inner),
                Strategy::Glob => expression.push_str(&glob_to_regex(inner)?),
            }
            expression.push(')');
            rest = &rest[inner_start + close + 1..];
        }
        if rest.contains('>') {
            return Err("a `>` has no matching `<`".into());
        }
        expression.push_str(&regex::escape(rest));
        expression.push('$');
        let regex = Regex::new(&expression).map_err(|error| match error {
            regex::Error::Syntax(text) => format!("not a valid regular expression: {text}"),
            other => other.to_string(),
        })?;
        Ok(Self {
            regex,
            path_only: source.starts_with('/'),
        })
    }

    /// The capture groups when `url` matches, `None` otherwise.
    pub fn captures(&self, url: &RequestUrl<'_>) -> Option<Vec<String>> {
        let whole;
        let subject = if self.path_only {
            url.path
        } else {
            whole = format!("{}://{}{}", url.scheme, url.host, url.path);
            &whole
        };
        let captures = self.regex.captures(subject)?;
        Some(
            captures
                .iter()
                .skip(1)
                .map(|group| group.map_or_else(String::new, |m| m.as_str().to_owned()))
                .collect(),
        )
    }

    /// How many capture groups a match yields.
    pub fn groups(&self) -> usize {
        self.regex.captures_len() - 1
    }
}

/// The offset of the `>` that closes a part, counting nested `<…>` (as in `(?P<name>…)`).
fn closing_bracket(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (offset, character) in text.char_indices() {
        match character {
            '<' => depth += 1,
            '>' if depth == 0 => return Some(offset),
            '>' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// A glob as a regular expression. `/` and `.` separate what `*` and `?` may cross, as in
/// Oathkeeper, so `*` stays within one path segment or host label.
fn glob_to_regex(glob: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut characters = glob.chars().peekable();
    let mut in_alternatives = false;
    while let Some(character) = characters.next() {
        match character {
            '*' if characters.peek() == Some(&'*') => {
                characters.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/.]*"),
            '?' => out.push_str("[^/.]"),
            '{' if !in_alternatives => {
                in_alternatives = true;
                out.push_str("(?:");
            }
            '}' if in_alternatives => {
                in_alternatives = false;
                out.push(')');
            }
            ',' if in_alternatives => out.push('|'),
            '[' => {
                out.push('[');
                if characters.peek() == Some(&'!') {
                    characters.next();
                    out.push('^');
                }
                let mut closed = false;
                for inner in characters.by_ref() {
                    if inner == ']' {
                        closed = true;
                        break;
                    }
                    if inner == '\\' || inner == '[' {
                        out.push('\\');
                    }
                    out.push(inner);
                }
                if !closed {
                    return Err("a `[` in the glob has no matching `]`".into());
                }
                out.push(']');
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    if in_alternatives {
        return Err("a `{` in the glob has no matching `}`".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(whole: &str) -> (String, String, String) {
        let (scheme, rest) = whole.split_once("://").unwrap_or(("https", whole));
        let (host, path) = rest.find('/').map_or((rest, "/"), |at| rest.split_at(at));
        (scheme.into(), host.into(), path.into())
    }

    /// `expected`: `None` for no match, else the capture groups.
    fn check(pattern: &str, strategy: Strategy, request: &str, expected: Option<&[&str]>) {
        let compiled = UrlPattern::compile(pattern, strategy)
            .unwrap_or_else(|error| panic!("{pattern}: {error}"));
        let (scheme, host, path) = url(request);
        let request_url = RequestUrl {
            scheme: &scheme,
            host: &host,
            path: &path,
        };
        let got = compiled.captures(&request_url);
        let expected = expected.map(|groups| groups.iter().map(|g| (*g).to_owned()).collect());
        assert_eq!(got, expected, "{pattern} against {request}");
    }

    #[test]
    fn regexp_patterns_match_whole_urls_or_paths_and_capture_each_part() {
        use Strategy::Regexp;
        let cases: &[(&str, &str, Option<&[&str]>)] = &[
            ("/healthz", "https://w.example/healthz", Some(&[])),
            ("/healthz", "https://w.example/healthz/x", None),
            ("/healthz", "https://w.example/healthzx", None),
            (
                "/api/v1/devices/<[^/]+>/state",
                "https://w.example/api/v1/devices/d-1/state",
                Some(&["d-1"]),
            ),
            (
                "/api/v1/devices/<[^/]+>/state",
                "https://w.example/api/v1/devices/d-1/x/state",
                None,
            ),
            (
                "<https|http>://w.example/<.*>",
                "http://w.example/a/b",
                Some(&["http", "a/b"]),
            ),
            (
                "<https|http>://w.example/<.*>",
                "https://evil.example/a",
                None,
            ),
            // Literal text is literal: the dot does not match any character.
            ("https://w.example/a.b", "https://w.example/aXb", None),
            (
                "/x/<(?P<name>[a-z]+)>",
                "https://h/x/abc",
                Some(&["abc", "abc"]),
            ),
        ];
        for (pattern, request, expected) in cases {
            check(pattern, Regexp, request, *expected);
        }
    }

    #[test]
    fn glob_patterns_keep_single_stars_within_a_segment() {
        use Strategy::Glob;
        let cases: &[(&str, &str, Option<&[&str]>)] = &[
            ("/api/<*>", "https://h/api/devices", Some(&["devices"])),
            ("/api/<*>", "https://h/api/devices/d-1", None),
            (
                "/api/<**>",
                "https://h/api/devices/d-1",
                Some(&["devices/d-1"]),
            ),
            ("/<{login,signup}>", "https://h/signup", Some(&["signup"])),
            ("/<{login,signup}>", "https://h/logout", None),
            ("/v<?>/x", "https://h/v1/x", Some(&["1"])),
            ("/v<[!0-9]>/x", "https://h/v1/x", None),
            ("/v<[0-9]>/x", "https://h/v1/x", Some(&["1"])),
            ("https://<*>.example/<**>", "https://a.b.example/x", None),
        ];
        for (pattern, request, expected) in cases {
            check(pattern, Glob, request, *expected);
        }
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_reason() {
        let cases: &[(&str, Strategy, &str)] = &[
            ("/a/<[^/]+", Strategy::Regexp, "has no matching `>`"),
            ("/a/>", Strategy::Regexp, "no matching `<`"),
            ("/a/<(>", Strategy::Regexp, "not a valid regular expression"),
            ("/a/<{x,y>", Strategy::Glob, "no matching `}`"),
            ("/a/<[xy>", Strategy::Glob, "no matching `]`"),
        ];
        for (pattern, strategy, reason) in cases {
            let error = UrlPattern::compile(pattern, *strategy).expect_err(pattern);
            assert!(error.contains(reason), "{pattern}: {error}");
        }
    }
}
