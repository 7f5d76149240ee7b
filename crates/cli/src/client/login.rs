//! `warden login`: the authorization code flow with PKCE (S256) of a native app (RFC 8252). The
//! client listens on a loopback port of its own, sends the person to Warden's login in their
//! browser, takes the code on the redirect, checks `state`, and swaps the code for tokens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::session::{Api, Credentials, http_client, now_seconds, token_request};
use crate::Failure;
use crate::args::LoginArgs;

/// How long the client waits for the person to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// What the client asks for unless told more; a person gets only what their role allows.
const DEFAULT_SCOPES: &[&str] = &[
    "openid",
    "email",
    "offline_access",
    "devices:read",
    "devices:write",
    "devices:command",
    "devices:manage",
];

pub(crate) async fn login(args: LoginArgs, data_dir: &Path) -> Result<(), Failure> {
    let server = args.server.trim_end_matches('/').to_owned();
    if !server.starts_with("https://") {
        return Err(Failure::Input(anyhow!(
            "the server must be an https:// address, not {server:?}"
        )));
    }
    let ca_file = match args.ca_file {
        Some(file) => file,
        None => local_ca(data_dir)?,
    };
    let http = http_client(&ca_file)?;
    let discovery: Value = http
        .get(format!("{server}/.well-known/openid-configuration"))
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?
        .error_for_status()
        .with_context(|| format!("{server} is not a Warden (no OpenID Connect discovery)"))?
        .json()
        .await
        .context("the discovery document is not JSON")?;
    let endpoint = |name: &str| {
        discovery[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::Failed(anyhow!("the discovery document has no {name}")))
    };
    let authorization_endpoint = endpoint("authorization_endpoint")?;
    let token_endpoint = endpoint("token_endpoint")?;
    let revocation_endpoint = endpoint("revocation_endpoint").ok();

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on a loopback port for the redirect")?;
    let port = listener
        .local_addr()
        .context("cannot read the loopback port")?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = random_text();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random_text();
    let mut scopes: Vec<&str> = DEFAULT_SCOPES.to_vec();
    scopes.extend(args.scopes.iter().map(String::as_str));
    let client_id = oauth::client::CLI_CLIENT_ID;
    let mut url = url::Url::parse(&authorization_endpoint)
        .context("the authorization endpoint is not a URL")?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &random_text())
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    eprintln!("Open this address in a browser to log in to {server}:\n\n  {url}\n");
    if !args.no_browser {
        open_browser(url.as_str());
    }

    let waiting = super::table::spinner("Waiting for the login in the browser…".to_owned());
    let query = tokio::time::timeout(LOGIN_TIMEOUT, redirected(&listener)).await;
    waiting.finish_and_clear();
    let query = query
        .map_err(|_| Failure::Failed(anyhow!("no login within {} s", LOGIN_TIMEOUT.as_secs())))??;
    let parameter = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    if parameter("state").as_deref() != Some(state.as_str()) {
        return Err(Failure::Failed(anyhow!(
            "the redirect does not carry this login's state; not logged in"
        )));
    }
    if let Some(error) = parameter("error") {
        let description = parameter("error_description").unwrap_or_default();
        return Err(Failure::Unauthenticated(anyhow!(
            "the login was refused: {error} {description}"
        )));
    }
    let code = parameter("code")
        .ok_or_else(|| Failure::Failed(anyhow!("the redirect carries no code")))?;
    let tokens = token_request(
        &http,
        &token_endpoint,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("client_id", client_id),
            ("code_verifier", &verifier),
        ],
    )
    .await?;
    let mut credentials = Credentials {
        server: server.clone(),
        ca_file: absolute(ca_file),
        client_id: client_id.to_owned(),
        token_endpoint,
        revocation_endpoint,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_at: now_seconds() + tokens.expires_in.unwrap_or(300),
        email: None,
    };
    credentials.save()?;
    let mut api = Api::open()?;
    let userinfo = api.get("/oauth2/userinfo").await.ok();
    credentials.email = userinfo
        .as_ref()
        .and_then(|info| info["email"].as_str())
        .map(str::to_owned);
    credentials.save()?;
    println!(
        "Logged in to {server} as {}",
        credentials.email.as_deref().unwrap_or("(no e-mail shared)")
    );
    Ok(())
}

/// `warden logout`: revokes the refresh token (which ends what it issued) and forgets the login.
pub(crate) async fn logout() -> Result<(), Failure> {
    let credentials = match Credentials::load() {
        Ok(credentials) => credentials,
        Err(Failure::Unauthenticated(_)) => {
            println!("Not logged in");
            return Ok(());
        }
        Err(other) => return Err(other),
    };
    if let (Some(endpoint), Some(token)) =
        (&credentials.revocation_endpoint, &credentials.refresh_token)
    {
        let http = http_client(&credentials.ca_file)?;
        let revoked = http
            .post(endpoint)
            .form(&[
                ("token", token.as_str()),
                ("token_type_hint", "refresh_token"),
                ("client_id", credentials.client_id.as_str()),
            ])
            .send()
            .await;
        if let Err(error) = revoked {
            eprintln!("warning: the refresh token could not be revoked: {error}");
        }
    }
    Credentials::remove()?;
    println!("Logged out of {}", credentials.server);
    Ok(())
}

/// The CA that `warden serve` made in the local data directory.
fn local_ca(data_dir: &Path) -> Result<PathBuf, Failure> {
    let path = server::tls::TlsFiles::in_data_dir(data_dir).ca_cert;
    if path.exists() {
        Ok(path)
    } else {
        Err(Failure::Input(anyhow!(
            "there is no Warden CA at {}; give the server's root certificate with --ca-file",
            path.display()
        )))
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// 32 random bytes, base64url: a PKCE verifier, a state, a nonce.
fn random_text() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Opens `url` in the desktop's browser when there is one; the address is printed either way.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Waits for the browser's request on the redirect path and answers it; returns its query.
async fn redirected(listener: &TcpListener) -> Result<Vec<(String, String)>, Failure> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .context("cannot take the redirect")?;
        let mut request = Vec::new();
        let mut buffer = [0u8; 2048];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") && request.len() < 16_384 {
            let read = stream.read(&mut buffer).await.unwrap_or(0);
            if read == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..read]);
        }
        let text = String::from_utf8_lossy(&request);
        let target = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("GET "))
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_default()
            .to_owned();
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
            continue;
        };
        if url.path() != "/callback" {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            continue;
        }
        let page = "<!doctype html><title>Warden</title><p>Done: you can close this tab and go back to the terminal.</p>";
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        return Ok(url.query_pairs().into_owned().collect());
    }
}
