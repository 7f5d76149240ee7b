//! Forwarding to an upstream elsewhere: the request streamed out, the response streamed back,
//! hop-by-hop headers dropped both ways (RFC 9110 section 7.6.1), `X-Forwarded-*` added, and
//! the upstream's failures turned into 502 or 504 without its details.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use axum::response::Response;
use futures_util::TryStreamExt;

/// Why an upstream gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("no response head within the upstream timeout")]
    Timeout,
    #[error("{0}")]
    Unreachable(String),
}

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn drop_hop_by_hop(headers: &mut HeaderMap) {
    // Headers a `Connection` header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Warden's own cookies (the login session, the CSRF token) are for Warden's pages: a service
/// elsewhere learns who the caller is from the mutators, never by holding their session.
const WARDEN_COOKIE_PREFIX: &str = "__Host-warden_";

fn drop_warden_cookies(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with(WARDEN_COOKIE_PREFIX))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&kept.join("; "))
        && !kept.is_empty()
    {
        headers.insert(header::COOKIE, value);
    }
}

/// Removes `prefix` from the request's path (`/prefix/x` → `/x`), keeping the query.
pub(crate) fn strip_prefix(request: &mut Request, prefix: &str) {
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix(prefix.trim_end_matches('/')) else {
        return;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return;
    }
    let rest = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = path_and_query.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

/// Sends `request` to `base` joined with the request's path and query.
pub(crate) async fn forward(
    client: &reqwest::Client,
    base: &url::Url,
    preserve_host: bool,
    timeout: Duration,
    request: Request,
) -> Result<Response, UpstreamError> {
    let (mut parts, body) = request.into_parts();
    let mut target = base.clone();
    let base_path = base.path().trim_end_matches('/');
    target.set_path(&format!("{base_path}{}", parts.uri.path()));
    target.set_query(parts.uri.query());

    let client_host = parts.headers.get(header::HOST).cloned();
    drop_hop_by_hop(&mut parts.headers);
    drop_warden_cookies(&mut parts.headers);
    if !preserve_host {
        parts.headers.remove(header::HOST);
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>() {
        let forwarded_for = match parts.headers.get("x-forwarded-for") {
            Some(earlier) => format!("{}, {}", earlier.to_str().unwrap_or_default(), peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
            parts.headers.insert("x-forwarded-for", value);
        }
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("https"));
    if let Some(host) = client_host {
        parts.headers.insert("x-forwarded-host", host);
    }
    if let Some(request_id) = parts.extensions.get::<http_api::RequestId>()
        && let Ok(value) = HeaderValue::from_str(&request_id.0)
    {
        parts.headers.insert(http_api::REQUEST_ID_HEADER, value);
    }

    let outgoing = client
        .request(parts.method, target)
        .headers(parts.headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let answer = match tokio::time::timeout(timeout, outgoing.send()).await {
        Err(_) => return Err(UpstreamError::Timeout),
        Ok(Err(error)) if error.is_timeout() => return Err(UpstreamError::Timeout),
        Ok(Err(error)) => return Err(UpstreamError::Unreachable(error.to_string())),
        Ok(Ok(answer)) => answer,
    };
    let mut response = Response::builder().status(answer.status());
    if let Some(headers) = response.headers_mut() {
        headers.extend(answer.headers().clone());
        drop_hop_by_hop(headers);
    }
    response
        .body(Body::from_stream(
            answer.bytes_stream().map_err(std::io::Error::other),
        ))
        .map_err(|error| UpstreamError::Unreachable(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_stripped_only_at_a_segment_boundary() {
        let check = |uri: &str, prefix: &str, expected: &str| {
            let mut request = Request::builder().uri(uri).body(Body::empty()).unwrap();
            strip_prefix(&mut request, prefix);
            assert_eq!(request.uri().to_string(), expected, "{uri} - {prefix}");
        };
        check("/svc/a/b?x=1", "/svc", "/a/b?x=1");
        check("/svc", "/svc", "/");
        check("/svc/", "/svc/", "/");
        check("/service/a", "/svc", "/service/a");
        check("/other/a", "/svc", "/other/a");
    }

    #[test]
    fn wardens_own_cookies_stay_behind_and_others_go_on() {
        let check = |cookies: &[&str], expected: Option<&str>| {
            let mut headers = HeaderMap::new();
            for cookie in cookies {
                headers.append(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            }
            drop_warden_cookies(&mut headers);
            let got = headers.get(header::COOKIE).map(|v| v.to_str().unwrap());
            assert_eq!(got, expected, "{cookies:?}");
        };
        check(&["__Host-warden_session=s; theme=dark"], Some("theme=dark"));
        check(&["a=1", "__Host-warden_csrf=c; b=2"], Some("a=1; b=2"));
        check(&["__Host-warden_session=s"], None);
        check(&[], None);
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-kept", HeaderValue::from_static("1"));
        drop_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }
}
