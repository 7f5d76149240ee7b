//! Device events: every message a device sends (its events, state reports, command answers) and
//! its presence changes, as stored records.
//!
//! [`Event`] is the record, built from a received message ([`Event::received`]) with the message
//! id that makes a resend land once. [`Recorder`] is durable ingestion: a bounded queue and group
//! commits into an [`EventLog`] (the store), with an answer only after the commit, so the broker
//! acknowledges nothing that is not stored. [`EventQuery`] is what a reader may ask. No SQL here:
//! the store implements [`EventLog`] and runs the queries.

mod event;
mod query;
mod recorder;

pub use event::{Body, Event, MAX_MESSAGE_ID_BYTES, MessageProperties};
pub use query::{
    Cursor, EventQuery, FieldFilter, MAX_FIELD_FILTERS, MAX_PAGE, Order, QueryError, TopicSelector,
};
pub use recorder::{EventLog, EventLogError, NotStored, Recorder, RecorderOptions, RecorderStats};
