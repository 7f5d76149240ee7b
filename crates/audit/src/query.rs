//! What a reader of the journal may ask: entries of one device, one actor or one action, in a time
//! range, oldest or newest first, a page at a time. The cursor is the last entry's number.

use model::Timestamp;

/// The most entries one page holds.
pub const MAX_PAGE: u32 = 1_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub device: Option<String>,
    /// An actor's kind and id.
    pub actor: Option<(String, String)>,
    pub action: Option<String>,
    /// Entries at or after this time.
    pub from: Option<Timestamp>,
    /// Entries before this time.
    pub to: Option<Timestamp>,
    /// Entries numbered past this one, in the query's order (the previous page's last entry).
    pub after: Option<i64>,
    pub newest_first: bool,
    pub limit: u32,
}

impl Query {
    /// The page size asked for, within 1..=[`MAX_PAGE`].
    pub fn page_size(&self) -> u32 {
        self.limit.clamp(1, MAX_PAGE)
    }
}
