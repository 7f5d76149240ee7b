//! The audit trail: a tamper-evident record of who did what.
//!
//! A [`Record`] says who ([`Actor`]) did what ([`Action`]) to what ([`Target`]), how it ended
//! ([`Outcome`]), from where and in which request. The store keeps records as numbered [`Entry`]s,
//! each carrying the hash of the one before ([`link`]), and never updates one in place. At an
//! interval the head is signed into a [`Checkpoint`] with the audit key ([`CheckpointKey`]);
//! checkpoints close segments, which retention removes whole. [`Verifier`] walks what is stored
//! and names the first entry that was changed, removed or inserted. [`Journal`] is the writer:
//! group commits into an [`AuditLog`] (the store). No SQL here (docs/audit.md).

mod checkpoint;
mod entry;
mod journal;
mod query;
mod verify;

pub use checkpoint::{BadKey, Checkpoint, CheckpointKey, key_id};
pub use entry::{Action, Actor, Digest, Entry, Head, Outcome, Record, Target, link};
pub use journal::{AuditLog, AuditLogError, Journal, NotRecorded};
pub use query::{MAX_PAGE, Query};
pub use verify::{Finding, Summary, Verifier};
