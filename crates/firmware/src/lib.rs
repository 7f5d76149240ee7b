//! Firmware updates over the air, without IO (docs/firmware.md).
//!
//! [`Manifest`] is what a release promises (model, version, size, SHA-256, where to fetch it),
//! signed as a JWS with a firmware-signing key that is not a CA key and rotates on its own
//! timeline; devices check the signature with [`Manifest::verify`] before they download, and the
//! hash before they install. [`OtaState`] is one device's progress through an update, moved only
//! by the transitions [`OtaState::after`] allows. [`Policy`] decides a staged rollout's next step
//! from where its devices stand.

mod manifest;
mod release;
mod rollout;
mod state;

pub use manifest::{MANIFEST_TYPE, Manifest, ManifestError, PublicKey, sign_manifest};
pub use release::{MAX_FIRMWARE_BYTES, MAX_NOTES_BYTES, NewRelease, UploadError};
pub use rollout::{BadStages, Counts, Next, Policy, Stages};
pub use state::{OtaState, StatusError, StatusReport, TransitionError};

/// A firmware version: semantic versioning 2.0 (`1.4.0`, `2.0.0-rc.1`), compared by its rules.
pub type Version = semver::Version;

/// The longest version text taken (`1.4.0-rc.1` is 10 characters).
pub const MAX_VERSION_LENGTH: usize = 64;

/// Parses a version as a release names it; build metadata (`+…`) is refused, since it does not
/// order releases.
pub fn parse_version(text: &str) -> Result<Version, String> {
    if text.chars().count() > MAX_VERSION_LENGTH {
        return Err(format!(
            "a version has at most {MAX_VERSION_LENGTH} characters"
        ));
    }
    let version = Version::parse(text.trim())
        .map_err(|error| format!("{text:?} is not a semantic version (as 1.4.0): {error}"))?;
    if !version.build.is_empty() {
        return Err(format!(
            "{text:?} carries build metadata (+…), which does not order releases; leave it out"
        ));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_semantic_versioning() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2.0",
            "1.10.0",
            "2.0.0",
        ];
        let parsed: Vec<Version> = order.iter().map(|v| parse_version(v).unwrap()).collect();
        assert!(parsed.windows(2).all(|pair| pair[0] < pair[1]));
        for bad in ["1.0", "v1.0.0", "1.0.0+build.5", "", "01.0.0"] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
        let long = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LENGTH));
        assert!(parse_version(&long).unwrap_err().contains("at most"));
    }
}
