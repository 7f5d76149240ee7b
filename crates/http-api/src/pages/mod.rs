//! Server-rendered pages (sign-up, login, account) that work without JavaScript, with their own
//! strict Content-Security-Policy, CSRF protection and cookie handling.
//!
//! CSRF uses the double-submit pattern: a random token in a `__Host-` cookie (so no subdomain can
//! plant one) must match the token in the form. Cookies are always `Secure; HttpOnly`; the session
//! cookie is `SameSite=Lax` so that a top-level navigation from an OAuth client keeps the login.

mod accounts;
mod second_factor;

pub use accounts::current_user;
pub(crate) use accounts::end_browser_session;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use crate::ApiContext;

pub(crate) const SESSION_COOKIE: &str = "__Host-warden_session";
const CSRF_COOKIE: &str = "__Host-warden_csrf";

/// Pages load only their own stylesheet and post only to Warden.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                        frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        // The address `warden serve` prints: the account page, or the login on the way there.
        .route("/", get(|| async { redirect("/account") }))
        .route("/signup", get(accounts::signup_page).post(accounts::signup))
        .route("/login", get(accounts::login_page).post(accounts::login))
        .route("/logout", axum::routing::post(accounts::logout))
        .route("/account", get(accounts::account_page))
        .route(
            "/account/password",
            get(accounts::password_page).post(accounts::change_password),
        )
        .route(
            "/account/totp",
            get(second_factor::setup_page).post(second_factor::enable),
        )
        .route(
            "/account/totp/disable",
            axum::routing::post(second_factor::disable),
        )
        .route(
            "/login/totp",
            get(second_factor::login_page).post(second_factor::login),
        )
        .route("/assets/warden.css", get(stylesheet))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/warden.css"),
    )
        .into_response()
}

/// A complete HTML page with the page CSP.
pub(crate) fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Warden" }
                link rel="stylesheet" href="/assets/warden.css";
            }
            body { main { (body) } }
        }
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a host-only, HTTPS-only cookie script cannot read.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    same_site: &str,
    max_age_seconds: Option<u64>,
) -> HeaderValue {
    let max_age = max_age_seconds.map_or(String::new(), |seconds| format!("; Max-Age={seconds}"));
    let text = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}{max_age}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The CSRF token for a form: the one the browser holds, or a new one with the cookie to set.
pub(crate) fn csrf_token(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, CSRF_COOKIE).filter(|token| token.len() == 43) {
        Some(token) => (token.to_owned(), None),
        None => {
            let token = tokens::opaque::random_token();
            let cookie = set_cookie(CSRF_COOKIE, &token, "Strict", None);
            (token, Some(cookie))
        }
    }
}

/// Whether a submitted form carries the token its browser's cookie holds.
pub(crate) fn csrf_ok(headers: &HeaderMap, submitted: &str) -> bool {
    cookie(headers, CSRF_COOKIE)
        .is_some_and(|token| tokens::opaque::constant_time_eq(token, submitted))
}

pub(crate) fn with_cookies(
    mut response: Response,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> Response {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Percent-encodes a value for a URL query.
pub(crate) fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub(crate) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

pub(crate) fn forbidden_form() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Form expired",
        html! {
            h1 { "This form has expired" }
            p { "Go back, reload the page and send the form again." }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_several_headers_and_pairs() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-warden_csrf=tok"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn cookies_are_secure_http_only_and_host_bound() {
        let value = set_cookie(SESSION_COOKIE, "v", "Lax", Some(60));
        assert_eq!(
            value,
            "__Host-warden_session=v; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
        );
    }
}
