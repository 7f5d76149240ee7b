//! Warden's one authorization model, as pure decisions: may this subject do this action on this
//! device, given ownership, technician grants, roles, the token's scopes and the time.
//!
//! The HTTP API, the gateway and the MQTT broker all ask here; none re-implements a rule. A
//! decision is either a [`Permit`] (a capability naming the device, the action and why it was
//! allowed, which only [`authorize`] can make) or a [`Denial`] that says whether the subject may
//! even know the device exists. Nothing here does IO: callers load the [`DeviceRelation`] and pass
//! it in.

mod action;
mod decide;
pub mod topic;

pub use action::{Action, ActionSet, UnknownAction};
pub use decide::{
    Basis, Denial, DeviceRelation, GrantTerms, Permission, Permit, Subject, authorize, decide, may,
    permissions,
};
