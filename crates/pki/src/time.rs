//! Conversions between Warden's clock and the `time` values certificates are written with.

use model::Timestamp;
use time::OffsetDateTime;

use crate::PkiError;

pub(crate) fn to_offset(at: Timestamp) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(at.unix_millis().div_euclid(1000))
        .map_err(|_| PkiError::Time)
}
