//! The login the client keeps (docs/cli.md): where the server is, which root certificate to trust
//! for it, and the tokens, in the user's configuration directory with mode 0600; and the calls
//! to the API with them, refreshing the access token when it runs out.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Failure;

/// How long before its expiry an access token is refreshed.
const REFRESH_AHEAD: Duration = Duration::from_secs(30);

/// What `warden login` stores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Credentials {
    /// `https://host:port`, without a trailing slash.
    pub server: String,
    /// The root certificate trusted for the server.
    pub ca_file: PathBuf,
    pub client_id: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    pub email: Option<String>,
}

/// The file the login is kept in: `$XDG_CONFIG_HOME/warden/credentials.json`, or
/// `~/.config/warden/credentials.json`.
pub(crate) fn credentials_path() -> Result<PathBuf, Failure> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .filter(|dir| !dir.is_empty())
            .map(|home| PathBuf::from(home).join(".config"))
            .ok_or_else(|| Failure::Input(anyhow!("neither XDG_CONFIG_HOME nor HOME is set")))?,
    };
    Ok(base.join("warden").join("credentials.json"))
}

impl Credentials {
    pub(crate) fn load() -> Result<Self, Failure> {
        let path = credentials_path()?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_logged_in());
            }
            Err(error) => {
                return Err(Failure::Failed(
                    anyhow!(error).context(format!("cannot read {}", path.display())),
                ));
            }
        };
        serde_json::from_str(&text).map_err(|error| {
            Failure::Unauthenticated(anyhow!(
                "{} is not a login this version understands ({error}); run `warden login` again",
                path.display()
            ))
        })
    }

    /// Writes the login readable by its owner only: a new file with mode 0600, renamed over the
    /// old one, in a directory with mode 0700.
    pub(crate) fn save(&self) -> Result<(), Failure> {
        let path = credentials_path()?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let written = (|| -> anyhow::Result<()> {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            server::tls::write_atomically(&path, &serde_json::to_string_pretty(self)?, 0o600)
        })();
        written.with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub(crate) fn remove() -> Result<bool, Failure> {
        let path = credentials_path()?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(Failure::Failed(
                anyhow!(error).context(format!("cannot remove {}", path.display())),
            )),
        }
    }
}

fn not_logged_in() -> Failure {
    Failure::Unauthenticated(anyhow!("not logged in; run `warden login`"))
}

pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// An HTTPS client that trusts `ca_file` and nothing else.
pub(crate) fn http_client(ca_file: &Path) -> Result<reqwest::Client, Failure> {
    let pem = std::fs::read(ca_file)
        .with_context(|| format!("cannot read the root certificate {}", ca_file.display()))
        .map_err(Failure::Input)?;
    let root = reqwest::Certificate::from_pem(&pem)
        .with_context(|| format!("{} is not a PEM certificate", ca_file.display()))
        .map_err(Failure::Input)?;
    reqwest::Client::builder()
        .add_root_certificate(root)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot make an HTTPS client")
        .map_err(Failure::Failed)
}

/// Tokens as the token endpoint answers.
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

/// Posts a form to the token endpoint; an OAuth error answer becomes a failure naming it.
pub(crate) async fn token_request(
    http: &reqwest::Client,
    endpoint: &str,
    form: &[(&str, &str)],
) -> Result<TokenAnswer, Failure> {
    let response = http
        .post(endpoint)
        .form(form)
        .send()
        .await
        .with_context(|| format!("cannot reach {endpoint}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let error = body["error"].as_str().unwrap_or("unknown_error");
        let description = body["error_description"].as_str().unwrap_or_default();
        return Err(Failure::Unauthenticated(anyhow!(
            "the server refused the tokens ({error}{}{description}); run `warden login` again",
            if description.is_empty() { "" } else { ": " }
        )));
    }
    serde_json::from_value(body)
        .context("the token endpoint's answer has no access token")
        .map_err(Failure::Failed)
}

/// The API as the person logged in.
#[derive(Debug)]
pub(crate) struct Api {
    http: reqwest::Client,
    credentials: Credentials,
}

/// An answer of the API that succeeded.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Api {
    pub(crate) fn open() -> Result<Self, Failure> {
        let credentials = Credentials::load()?;
        let http = http_client(&credentials.ca_file)?;
        Ok(Self { http, credentials })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.credentials.server)
    }

    /// Swaps the refresh token for new tokens and keeps them.
    async fn refresh(&mut self) -> Result<(), Failure> {
        let Some(refresh_token) = self.credentials.refresh_token.clone() else {
            return Err(Failure::Unauthenticated(anyhow!(
                "the login has expired; run `warden login` again"
            )));
        };
        let answer = token_request(
            &self.http,
            &self.credentials.token_endpoint,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", &self.credentials.client_id),
            ],
        )
        .await?;
        self.credentials.access_token = answer.access_token;
        self.credentials.refresh_token = answer.refresh_token.or(Some(refresh_token));
        self.credentials.expires_at = now_seconds() + answer.expires_in.unwrap_or(300);
        self.credentials.save()
    }

    /// Sends a request with the access token, refreshed first when it is about to run out and
    /// once more when the server says it is not valid (revoked keys, a clock apart).
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response, Failure> {
        if self.credentials.expires_at <= now_seconds() + REFRESH_AHEAD.as_secs() {
            self.refresh().await?;
        }
        let mut retried = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(&self.credentials.access_token);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot reach {}", self.credentials.server))?;
            if response.status() == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                self.refresh().await?;
                continue;
            }
            return Ok(response);
        }
    }

    /// [`Api::send`], with an error answer turned into a failure that carries the server's
    /// message.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, Failure> {
        let response = self.send(method, path, body, headers).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .context("the answer was cut off")
            .map_err(Failure::Failed)?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
        Err(refusal(status, &body))
    }

    pub(crate) async fn get(&mut self, path: &str) -> Result<Value, Failure> {
        Ok(self.call(Method::GET, path, None, &[]).await?.body)
    }

    pub(crate) async fn post(&mut self, path: &str, body: &Value) -> Result<Answer, Failure> {
        self.call(Method::POST, path, Some(body), &[]).await
    }
}

/// The failure for an error answer: its exit code by what went wrong, its message the server's.
pub(crate) fn refusal(status: StatusCode, body: &Value) -> Failure {
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| status.to_string());
    let error = anyhow!("{message} ({})", status.as_u16());
    match status {
        StatusCode::UNAUTHORIZED => Failure::Unauthenticated(error.context("run `warden login`")),
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Failure::Refused(error),
        status if status.is_client_error() => Failure::Input(error),
        _ => Failure::Failed(error),
    }
}
