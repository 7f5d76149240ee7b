//! The device registry's rules, without IO: the names a device carries (its model), the secrets
//! it is made with (an MQTT password and a claim code, kept only as keyed hashes), technician
//! grants, the desired/reported state and its delta, settings schemas, and commands.
//!
//! Who may do what to a device is not decided here but in `policy`; the store's operations that
//! change a device take a `policy::Permit`, so nothing reaches them without the check.

pub mod claim;
pub mod command;
pub mod credentials;
pub mod factory;
pub mod grant;
pub mod model_name;
pub mod state;

pub use claim::{ClaimCode, ClaimCodeError};
pub use command::{CommandName, CommandNameError, CommandStatus};
pub use credentials::{DeviceHashers, DevicePassword};
pub use factory::{Factory, FactoryDevice, NewDevice, generate_device_id};
pub use grant::{GrantError, GrantRequest};
pub use model_name::{MAX_TAGS, ModelName, ModelNameError, Tag, TagError, parse_tags};
pub use state::{SettingsSchema, SettingsSchemaError, check_settings_shape, delta};
