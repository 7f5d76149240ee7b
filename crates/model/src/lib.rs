//! Warden's shared vocabulary: typed identifiers, validated values and the clock.
//!
//! Everything here is parsed once at the edge of the system (HTTP, MQTT, files, the command line)
//! and trusted afterwards, so the inside never checks the same thing twice. Nothing in this crate
//! does IO.

pub mod authorization;
mod clock;
mod device_id;
mod email;
mod failed_attempts;
mod password_hash;
mod role;
mod user_id;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use device_id::{DeviceId, DeviceIdError};
pub use email::{Email, EmailError};
pub use failed_attempts::FailedAttempts;
pub use password_hash::{HashScheme, PasswordHash, PasswordHashError};
pub use role::{Role, RoleError};
pub use user_id::{UserId, UserIdError};
