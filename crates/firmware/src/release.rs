//! What an operator gives to make a release, and why one is refused.

/// The largest firmware file taken.
pub const MAX_FIRMWARE_BYTES: u64 = 256 * 1024 * 1024;
/// The longest release notes taken, in bytes.
pub const MAX_NOTES_BYTES: usize = 16 * 1024;

/// What an operator says of a new release; the file comes apart, as a stream.
#[derive(Clone, Copy, Debug)]
pub struct NewRelease<'a> {
    /// The device model it is for.
    pub model: &'a str,
    /// Its semantic version.
    pub version: &'a str,
    pub notes: &'a str,
}

/// Why a release was not made.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The model, version, notes or file is not acceptable; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The file is larger than [`MAX_FIRMWARE_BYTES`].
    #[error("the file is larger than {MAX_FIRMWARE_BYTES} bytes")]
    TooLarge,
    /// The model already has a release of this version.
    #[error("{0}")]
    Conflict(String),
    /// Reading the file, writing it or storing the release failed.
    #[error("{0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}
