//! Keeping a part's workload certificate fresh (docs/decisions.md, "PKI"): a part of Warden that runs apart
//! holds a short-lived certificate from Warden's CA (`warden admin certs issue-workload`). Before
//! it runs out, a new key and request are made and sent to `POST /certificate/renew` on the
//! device listener, authenticated with the current certificate; the answer replaces the files.
//! `warden workload renew` runs this beside a part (as a sidecar would), once or for as long as
//! it lives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use model::Timestamp;
use pki::{PartName, Requester};
use tokio_util::sync::CancellationToken;

/// The files of a part's identity, as `issue-workload` writes them: `DIR/PART.crt` (the
/// certificate and the intermediate's), `DIR/PART.key`, `DIR/ca.pem` (the root).
#[derive(Clone, Debug)]
pub struct WorkloadFiles {
    pub dir: PathBuf,
    pub part: PartName,
}

impl WorkloadFiles {
    pub fn certificate(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.part.as_str()))
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join(format!("{}.key", self.part.as_str()))
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// What one check did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// A new certificate, valid until then, is in the files.
    Renewed { not_after: Timestamp },
    /// Not yet: renewal is due then.
    NotDue { due_at: Timestamp },
}

/// When a certificate valid from `not_before` to `not_after` is renewed: `renew_before` before
/// its end, or without it after two thirds of its lifetime (so a part that misses one attempt
/// has a third of the lifetime to try again).
pub fn due_at(
    not_before: Timestamp,
    not_after: Timestamp,
    renew_before: Option<Duration>,
) -> Timestamp {
    let end = not_after.unix_millis();
    let lead = match renew_before {
        Some(lead) => i64::try_from(lead.as_millis()).unwrap_or(i64::MAX),
        None => (end - not_before.unix_millis()) / 3,
    };
    Timestamp::from_unix_millis(end.saturating_sub(lead))
}

/// Renews the certificate in `files` through `renewer` (the device listener,
/// `https://HOST:PORT`) if it is due at `now`.
pub async fn renew_if_due(
    files: &WorkloadFiles,
    renewer: &str,
    renew_before: Option<Duration>,
    now: Timestamp,
) -> anyhow::Result<Renewal> {
    let chain = read(&files.certificate())?;
    let key = read(&files.key())?;
    let (not_before, not_after) = pki::validity_of(&chain)
        .with_context(|| format!("{} holds no certificate", files.certificate().display()))?;
    let due = due_at(not_before, not_after, renew_before);
    if now < due {
        return Ok(Renewal::NotDue { due_at: due });
    }
    let root = reqwest::Certificate::from_pem(read(&files.root())?.as_bytes())
        .context("the root certificate does not read")?;
    let identity = reqwest::Identity::from_pem(format!("{chain}{key}").as_bytes())
        .context("the certificate and key do not make an identity")?;
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .identity(identity)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()?;
    let (new_key, csr) = pki::new_request(&Requester::Part(files.part.clone()))?;
    let url = format!("{}/certificate/renew", renewer.trim_end_matches('/'));
    let answer = client
        .post(&url)
        .header("Content-Type", "application/pkcs10")
        .body(csr)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = answer.status();
    let body = answer.text().await?;
    if !status.is_success() {
        return Err(anyhow!("{url} refused the renewal ({status}): {body}"));
    }
    let (_, renewed_until) =
        pki::validity_of(&body).context("the renewal's answer holds no certificate")?;
    // The key first: a reader that sees the new certificate finds its key.
    crate::tls::write_atomically(&files.key(), &new_key, 0o600)?;
    crate::tls::write_atomically(&files.certificate(), &body, 0o644)?;
    Ok(Renewal::Renewed {
        not_after: renewed_until,
    })
}

/// Keeps the certificate in `files` renewed until `shutdown`: checks when it is due, at most an
/// hour apart, and after a failed attempt tries again a minute later.
pub async fn keep_renewed(
    files: WorkloadFiles,
    renewer: String,
    renew_before: Option<Duration>,
    clock: &dyn model::Clock,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match renew_if_due(&files, &renewer, renew_before, clock.now()).await {
            Ok(Renewal::Renewed { not_after }) => {
                tracing::info!(part = %files.part.as_str(), until = %not_after.to_rfc3339(), "workload certificate renewed");
                Duration::ZERO
            }
            Ok(Renewal::NotDue { due_at }) => Duration::from_millis(
                u64::try_from(due_at.unix_millis() - clock.now().unix_millis()).unwrap_or(0),
            )
            .min(Duration::from_secs(3600)),
            Err(error) => {
                tracing::warn!(part = %files.part.as_str(), %error, "workload certificate not renewed; trying again in a minute");
                Duration::from_secs(60)
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_after_two_thirds_or_a_set_lead_before_the_end() {
        let at = Timestamp::from_unix_millis;
        assert_eq!(due_at(at(0), at(3_000), None), at(2_000));
        assert_eq!(
            due_at(at(0), at(3_000), Some(Duration::from_millis(500))),
            at(2_500)
        );
        assert_eq!(
            due_at(at(1_000), at(3_000), Some(Duration::from_secs(3600))),
            at(3_000 - 3_600_000)
        );
    }
}
