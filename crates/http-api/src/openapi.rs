//! The OpenAPI 3.1 document of the JSON API, written by hand in `openapi.json` and served at
//! `GET /api/v1/openapi.json` without a token. The tests below keep it in step with the routers.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::ApiContext;

/// The document, compiled into the binary so it is served without reading a file.
const DOCUMENT: &str = include_str!("openapi.json");

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new().route("/api/v1/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::DOCUMENT;

    const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

    /// The source of every router whose routes the document describes.
    const ROUTERS: [(&str, &str); 5] = [
        ("api/mod.rs", include_str!("api/mod.rs")),
        ("broker_hooks/mod.rs", include_str!("broker_hooks/mod.rs")),
        ("api/devices/mod.rs", include_str!("api/devices/mod.rs")),
        ("device_api.rs", include_str!("device_api.rs")),
        ("pki.rs", include_str!("pki.rs")),
    ];

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    /// Every string literal in `source` that starts with `prefix`.
    fn literals_starting<'a>(source: &'a str, prefix: &str) -> Vec<&'a str> {
        let opening = format!("\"{prefix}");
        source
            .match_indices(&opening)
            .filter_map(|(start, _)| {
                let text = &source[start + 1..];
                text.find('"').map(|end| &text[..end])
            })
            .collect()
    }

    /// `(path, method)` for each `.route(PATH, METHOD_ROUTER)` call in a router's source: the
    /// methods are the `get(…)`, `.post(…)`, … inside the call's parentheses.
    fn routes_in(source: &str) -> Vec<(String, String)> {
        let mut routes = Vec::new();
        for (start, call) in source.match_indices(".route(") {
            let arguments = &source[start + call.len()..];
            let mut depth = 1;
            let end = arguments
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(end, _)| end)
                .expect("a .route( call is closed");
            let arguments = &arguments[..end];
            let path = literals_starting(arguments, "/")
                .first()
                .copied()
                .expect("a route's first argument is a path literal");
            for method in METHODS {
                let called = arguments
                    .match_indices(&format!("{method}("))
                    .any(|(at, _)| {
                        // `get(` or `.get(`, not the tail of another name such as `target(`.
                        at == 0
                            || !arguments[..at]
                                .ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                    });
                if called {
                    routes.push((path.to_owned(), method.to_owned()));
                }
            }
        }
        routes
    }

    fn resolve<'a>(document: &'a Value, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("{reference} is not local"));
                document
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference} resolves to nothing"))
            }
            None => node,
        }
    }

    fn every_ref<'a>(node: &'a Value, found: &mut Vec<&'a str>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    found.push(reference);
                }
                map.values().for_each(|value| every_ref(value, found));
            }
            Value::Array(items) => items.iter().for_each(|value| every_ref(value, found)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let document = document();
        let version = document["openapi"].as_str().unwrap_or_default();
        assert!(version.starts_with("3.1"), "openapi is {version:?}");
        assert_eq!(document["info"]["title"], "Warden API");
        assert_eq!(document["servers"][0]["url"], "/");
    }

    #[test]
    fn every_path_literal_in_the_routers_is_documented() {
        let document = document();
        let paths = document["paths"].as_object().expect("paths is an object");
        for prefix in ["/api/v1/", "/device/", "/hooks/"] {
            let mut found = 0;
            for (file, source) in ROUTERS {
                for path in literals_starting(source, prefix) {
                    assert!(
                        paths.contains_key(path),
                        "{path} (in {file}) is not in openapi.json"
                    );
                    found += 1;
                }
            }
            // Guards the scan itself: a test that finds nothing would pass whatever the document.
            assert!(found > 0, "no {prefix} literals found in the routers");
        }
    }

    #[test]
    fn every_route_and_method_of_the_routers_is_documented() {
        let document = document();
        for (file, source) in ROUTERS {
            let routes = routes_in(source);
            assert!(!routes.is_empty(), "no routes found in {file}");
            for (path, method) in routes {
                assert!(
                    document["paths"][&path][&method].is_object(),
                    "{} {path} (in {file}) is not in openapi.json",
                    method.to_uppercase()
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let document = document();
        let mut references = Vec::new();
        every_ref(&document, &mut references);
        assert!(!references.is_empty());
        for reference in references {
            resolve(&document, &serde_json::json!({ "$ref": reference }));
        }
    }

    #[test]
    fn every_error_response_has_the_one_error_shape() {
        let document = document();
        let paths = document["paths"].as_object().expect("paths is an object");
        let mut operation_ids = std::collections::BTreeSet::new();
        for (path, item) in paths {
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let id = operation["operationId"].as_str().unwrap_or_default();
                assert!(
                    operation_ids.insert(id),
                    "{method} {path}: operationId {id:?}"
                );
                let responses = operation["responses"].as_object().expect("responses");
                assert!(responses.contains_key("default"), "{method} {path}");
                for (status, response) in responses {
                    let is_error = status == "default" || !status.starts_with(['1', '2', '3']);
                    // 414 comes from the HTTP layer (hyper) before Warden sees the request:
                    // documented where a query can grow that long, and without a body.
                    if !is_error || status == "414" {
                        continue;
                    }
                    let schema = &resolve(&document, response)["content"]["application/json"]["schema"]
                        ["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn device_listener_paths_are_marked_and_api_paths_are_not() {
        let document = document();
        let paths = document["paths"].as_object().expect("paths is an object");
        for (path, item) in paths {
            let on_device_listener = path.starts_with("/device/")
                || path.starts_with("/hooks/")
                || path.starts_with("/internal/")
                || path == "/certificate/renew";
            assert_eq!(
                item.get("servers").is_some(),
                on_device_listener,
                "{path}: only device-listener paths name their own server"
            );
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    let tagged = operation["tags"]
                        .as_array()
                        .is_some_and(|tags| tags.iter().any(|tag| tag == "device listener"));
                    assert_eq!(tagged, on_device_listener, "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn the_route_scan_reads_method_chains() {
        let source = r#"
            .route("/a/{id}", get(list).post(create))
            .route(
                "/b",
                put(state::write).delete(remove),
            )
            .route("/c", post(target::get_ready))
        "#;
        let routes: Vec<(&str, &str)> = vec![
            ("/a/{id}", "get"),
            ("/a/{id}", "post"),
            ("/b", "put"),
            ("/b", "delete"),
            ("/c", "post"),
        ];
        let found = routes_in(source);
        let found: Vec<(&str, &str)> = found
            .iter()
            .map(|(path, method)| (path.as_str(), method.as_str()))
            .collect();
        assert_eq!(found, routes);
    }
}
