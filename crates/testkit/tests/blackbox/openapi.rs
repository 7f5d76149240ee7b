//! The OpenAPI document Warden serves: every operation it lists for the main listener exists there
//! and answers a caller without a token as documented, and the device listener's paths are not
//! served on the main listener.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::TestApp;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// A value for a path parameter that the route accepts as well-formed, so a refusal comes from the
/// handler's checks and not from a parameter that does not parse.
fn plausible(parameter: &str) -> &'static str {
    match parameter {
        "device_id" => "abc",
        "grant_id" => "gr_0191c0b4a7e87d3c9b1e2f3a4b5c6d7e",
        "command_id" => "cmd_0191c0b4a7e87d3c9b1e2f3a4b5c6d7e",
        "model" => "washer-w500",
        "sha1" => "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8",
        "release_id" => "fw_0191c0b4a7e87d3c9b1e2f3a4b5c6d7e",
        "rollout_id" => "ro_0191c0b4a7e87d3c9b1e2f3a4b5c6d7e",
        "step" => "pause",
        other => panic!("the test has no value for the path parameter {{{other}}}"),
    }
}

/// The path template with each `{parameter}` replaced by a plausible value.
fn concrete(template: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a parameter is closed") + open;
        path.push_str(&rest[..open]);
        path.push_str(plausible(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    path.push_str(rest);
    path
}

fn media_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_exists_and_answers_an_anonymous_caller_as_documented() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(media_type(&response), "application/json");
    let document: Value = response.json().await.unwrap();
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().unwrap();

    let mut checked = 0;
    for (template, item) in paths {
        let path = concrete(template);
        let on_device_listener = item.get("servers").is_some();
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let what = format!("{} {path}", method.to_uppercase());
            let mut request = app.client.request(
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                app.url(&path),
            );
            if operation.get("requestBody").is_some() {
                request = request.json(&json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let media = media_type(&response);

            if on_device_listener {
                // Only the mutual-TLS listener serves these; here they are unknown routes.
                let body: Value = response.json().await.unwrap();
                assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
                assert_eq!(body["error"]["code"], "not_found", "{what}");
                continue;
            }

            // The router's fallbacks answer 405 for a method a path does not have and 404 for a
            // path it does not know; no documented operation may reach either without a token.
            let text = response.text().await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}: {text}");
            assert_ne!(status, StatusCode::NOT_FOUND, "{what}: {text}");
            let documented = &operation["responses"][status.as_str()];
            assert!(
                documented.is_object(),
                "{what} answered {status}, which the document does not list"
            );
            let public = operation["security"].as_array().is_some_and(Vec::is_empty);
            if public {
                assert_eq!(status, StatusCode::OK, "{what}: {text}");
                assert!(
                    documented["content"].get(&media).is_some(),
                    "{what} answered {media}, which the document does not list"
                );
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {text}");
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(body["error"]["code"], "unauthorized", "{what}");
            }
            checked += 1;
        }
    }
    // The /api/v1/ operations, the PKI documents and the internal breached-password lookups.
    assert!(checked >= 28, "only {checked} operations checked");
    app.stop().await;
}
