//! The templates of the `header` mutator and the `device` authorizer, in the small subset of Go
//! template syntax Oathkeeper's rules use: `{{ print .Subject }}`, `{{ .Extra.email }}` (any
//! depth), `{{ index .MatchContext.RegexpCaptureGroups 0 }}`. Anything else is refused when the
//! rules are loaded, so a typo is found by `warden gateway check-rules`, not by a request.

use serde_json::Value;

use crate::Session;

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Subject,
    Extra(Vec<String>),
    CaptureGroup(usize),
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` without `}}}}` in {source:?}"))?;
            parts.push(expression(after[..close].trim())?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The text for one request. Values that are not strings are written as JSON; a missing value
    /// is empty.
    pub fn render(&self, session: &Session, captures: &[String]) -> String {
        self.render_with(session, captures, |value, out| out.push_str(value))
    }

    /// The text with every value written as the inside of a JSON string, for JSON payloads
    /// (`{"sub": "{{ print .Subject }}"}`): a value cannot close the string and add members.
    pub fn render_json(&self, session: &Session, captures: &[String]) -> String {
        self.render_with(session, captures, |value, out| {
            let quoted = Value::from(value).to_string();
            out.push_str(&quoted[1..quoted.len() - 1]);
        })
    }

    fn render_with(
        &self,
        session: &Session,
        captures: &[String],
        write_value: impl Fn(&str, &mut String),
    ) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Subject => write_value(&session.subject, &mut out),
                Part::Extra(path) => {
                    let mut value = session.extra.get(&path[0]);
                    for name in &path[1..] {
                        value = value.and_then(|inner| inner.get(name));
                    }
                    match value {
                        Some(Value::String(text)) => write_value(text, &mut out),
                        Some(Value::Null) | None => {}
                        Some(other) => write_value(&other.to_string(), &mut out),
                    }
                }
                Part::CaptureGroup(index) => {
                    write_value(captures.get(*index).map_or("", String::as_str), &mut out);
                }
            }
        }
        out
    }

    /// The highest capture group the template reads, to check against the rule's pattern.
    pub fn highest_capture_group(&self) -> Option<usize> {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::CaptureGroup(index) => Some(*index),
                _ => None,
            })
            .max()
    }
}

fn expression(text: &str) -> Result<Part, String> {
    let text = text.strip_prefix("print ").map_or(text, str::trim);
    if text == ".Subject" {
        return Ok(Part::Subject);
    }
    if let Some(path) = text.strip_prefix(".Extra.") {
        let names: Vec<String> = path.split('.').map(str::to_owned).collect();
        if names.iter().any(String::is_empty) {
            return Err(format!("`{text}` names an empty field"));
        }
        return Ok(Part::Extra(names));
    }
    if let Some(index) = text.strip_prefix("index .MatchContext.RegexpCaptureGroups ") {
        return index
            .trim()
            .parse()
            .map(Part::CaptureGroup)
            .map_err(|_| format!("`{text}`: the group must be a number from 0"));
    }
    Err(format!(
        "`{{{{ {text} }}}}` is not supported: use .Subject, .Extra.NAME or \
         index .MatchContext.RegexpCaptureGroups N"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(source: &str, expected: Result<&str, &str>) {
        let session = Session {
            subject: "u-1".into(),
            extra: json!({"email": "a@example.com", "n": 3, "deep": {"x": "y"}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..Session::default()
        };
        let captures = vec!["d-1".to_owned()];
        let got = Template::parse(source).map(|template| template.render(&session, &captures));
        match expected {
            Ok(text) => assert_eq!(got.as_deref(), Ok(text), "{source}"),
            Err(reason) => {
                let error = got.expect_err(source);
                assert!(error.contains(reason), "{source}: {error}");
            }
        }
    }

    #[test]
    fn json_rendering_keeps_values_inside_their_strings() {
        let session = Session {
            subject: "x\", \"admin\": true, \"y\": \"".into(),
            ..Session::default()
        };
        let template = Template::parse("{\"sub\": \"{{ print .Subject }}\"}").unwrap();
        let rendered = template.render_json(&session, &[]);
        let parsed: Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(parsed["sub"], session.subject.as_str());
        assert!(parsed.get("admin").is_none(), "{rendered}");
    }

    #[test]
    fn templates_render_the_session_and_the_match() {
        check("plain", Ok("plain"));
        check("{{ print .Subject }}", Ok("u-1"));
        check("user {{.Subject}}!", Ok("user u-1!"));
        check("{{ .Extra.email }}", Ok("a@example.com"));
        check("{{ .Extra.n }}", Ok("3"));
        check("{{ .Extra.deep.x }}", Ok("y"));
        check("{{ .Extra.missing }}", Ok(""));
        check("{{ index .MatchContext.RegexpCaptureGroups 0 }}", Ok("d-1"));
        check("{{ index .MatchContext.RegexpCaptureGroups 4 }}", Ok(""));
        check("{{ .Subject", Err("without"));
        check("{{ .Header.X }}", Err("not supported"));
        check("{{ .Extra. }}", Err("empty field"));
        check(
            "{{ index .MatchContext.RegexpCaptureGroups x }}",
            Err("must be a number"),
        );
    }
}
