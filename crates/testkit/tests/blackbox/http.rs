//! What every HTTP response carries: security headers, request ids, the one error shape, metrics.

use reqwest::StatusCode;
use serde_json::Value;
use testkit::TestApp;

#[tokio::test]
async fn every_response_has_hsts_and_the_security_headers() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz", "/metrics", "/no/such/route"] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert_eq!(
            headers
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=63072000; includeSubDomains"),
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'"),
            "{path}"
        );
        assert!(headers.contains_key("x-request-id"), "{path}");
    }
}

#[tokio::test]
async fn errors_have_one_json_shape_with_the_request_id() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/nothing-here").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["request_id"], request_id.as_str());
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    // No gateway rule takes POST here: the gateway answers 404 itself, in the same shape.
    let response = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["request_id"], request_id.as_str());
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_in_the_error_shape() {
    let app = TestApp::spawn_with(|config| config.http.max_body_bytes = 1024).await;
    // Refused by the rule's limit before anything else, the caller's token included.
    let response = app
        .client
        .post(app.url("/api/v1/devices/claim"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn metrics_count_requests_per_route_template_and_show_build_info() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    }
    app.get("/devices/1234/unknown").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            r#"warden_http_requests_total{method="GET",route="/healthz",status="200"} 3"#
        ),
        "{text}"
    );
    // The gateway counts by rule and decision; a path no rule matches never reaches the router.
    assert!(
        text.contains(r#"warden_gateway_requests_total{rule="health",decision="allowed"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"warden_gateway_requests_total{rule="none",decision="no_rule"} 1"#),
        "{text}"
    );
    assert!(
        !text.contains("/devices/1234"),
        "raw paths must not become labels"
    );
    assert!(
        text.contains("warden_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "warden_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

#[tokio::test]
async fn the_plain_http_listener_only_redirects_to_https() {
    let app =
        TestApp::spawn_with(|config| config.http.redirect_listen = "127.0.0.1:0".into()).await;
    let redirect = app.warden.addresses.http_redirect.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{redirect}/readyz?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        response.headers()["location"],
        format!(
            "https://localhost:{}/readyz?x=1",
            app.warden.addresses.https.port()
        )
        .as_str()
    );
    assert!(
        !response.headers().contains_key("strict-transport-security"),
        "HSTS is for HTTPS only"
    );
}

/// A client that writes a whole large body before it reads (as Python's `requests` does, with no
/// `Expect: 100-continue`) still gets the refusal, whether the body is too large, no rule takes
/// the path, or the request is refused before its body is read: the listener reads a bounded part
/// of an unread body on, instead of closing the connection under the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_an_oversized_body_first_reads_the_refusal() {
    use rustls_pki_types::pem::PemObject;
    use std::io::{Read, Write};
    use std::sync::Arc;

    let app = TestApp::spawn_with(|config| config.http.max_body_bytes = 4 * 1024 * 1024).await;
    let ca = std::fs::read(&app.warden.tls_files.ca_cert).unwrap();
    let address = app.warden.addresses.https;
    // Over the 4 MiB limit, to a path no rule takes, and within the limit without a token.
    for (path, size, expected, code) in [
        (
            "/api/v1/devices/claim",
            6,
            "HTTP/1.1 413",
            "payload_too_large",
        ),
        ("/no/such/path", 6, "HTTP/1.1 404", "not_found"),
        ("/api/v1/devices/claim", 3, "HTTP/1.1 401", "unauthorized"),
    ] {
        let ca = ca.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
                roots.add(certificate.unwrap()).unwrap();
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            let connection =
                rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap())
                    .unwrap();
            let socket = std::net::TcpStream::connect(address).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, socket);
            let body = vec![b' '; size * 1024 * 1024];
            write!(
                tls,
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            for chunk in body.chunks(64 * 1024) {
                tls.write_all(chunk)
                    .expect("the whole body is taken before the answer");
            }
            tls.flush().unwrap();
            let mut answer = Vec::new();
            let _ = tls.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer).into_owned()
        })
        .await
        .unwrap();
        assert!(answer.starts_with(expected), "{path}: {answer}");
        assert!(answer.contains(code), "{path}: {answer}");
    }
}
