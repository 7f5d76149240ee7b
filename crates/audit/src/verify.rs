//! Walking the journal: every checkpoint's signature, every entry's hash and link, and the place
//! of each against the checkpoints and the head. The first problem found is reported, named as
//! what must have happened to the stored rows (changed, removed, inserted).

use std::collections::{HashMap, VecDeque};
use std::fmt;

use crate::{Checkpoint, Digest, Entry, Head};

/// The first thing that is not as the journal wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A checkpoint whose signature does not verify with its key.
    CheckpointForged { number: i64 },
    /// A checkpoint signed by a key the journal does not have.
    UnknownKey { number: i64, key_id: String },
    /// Checkpoints must cover the entries end to end, in order.
    CheckpointGap { number: i64 },
    /// Retention removes the oldest segments first; a removed segment after a kept one is not its
    /// work.
    PrunedOutOfOrder { number: i64 },
    /// The entry does not match its own hash: what it says was changed (or it was forged).
    Changed { seq: i64 },
    /// The entry does not follow the one before it, but the next one follows the entry before
    /// it: it was inserted.
    Inserted { seq: i64 },
    /// Entries are missing before this one.
    Removed { from: i64, to: i64 },
    /// The entry before this one is consistent in itself but is not the one this entry follows:
    /// it was changed and its hash recomputed (or replaced).
    Rewritten { seq: i64 },
    /// The chain links up, but the numbers skip: entries were renumbered.
    Renumbered { seq: i64 },
    /// The chain up to a checkpoint does not end in the hash the checkpoint signed: entries of
    /// its segment were rewritten together with everything after them.
    CheckpointMismatch { number: i64, seq: i64 },
    /// The last entries are gone: a checkpoint or the head names entries up to `to`.
    TailRemoved { from: i64, to: i64 },
    /// Entries past the journal's head, which no append wrote.
    PastHead { seq: i64 },
    /// The head names the last entry with another hash.
    HeadMismatch { seq: i64 },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::CheckpointForged { number } => write!(
                f,
                "checkpoint {number} was altered: its signature does not verify"
            ),
            Finding::UnknownKey { number, key_id } => write!(
                f,
                "checkpoint {number} is signed by key {key_id}, which is not an audit key of this journal"
            ),
            Finding::CheckpointGap { number } => write!(
                f,
                "checkpoint {number} does not start where the one before it ended"
            ),
            Finding::PrunedOutOfOrder { number } => write!(
                f,
                "segment {number} is marked removed by retention after a segment that was kept"
            ),
            Finding::Changed { seq } => write!(
                f,
                "entry {seq} was changed: what it says does not match its hash"
            ),
            Finding::Inserted { seq } => write!(
                f,
                "entry {seq} was inserted: the entry after it follows the entry before it"
            ),
            Finding::Removed { from, to } if from == to => {
                write!(f, "entry {from} was removed")
            }
            Finding::Removed { from, to } => write!(f, "entries {from} to {to} were removed"),
            Finding::Rewritten { seq } => write!(
                f,
                "entry {seq} was changed and its hash recomputed: the entry after it does not follow it"
            ),
            Finding::Renumbered { seq } => write!(
                f,
                "entry {seq} is numbered out of sequence: entries were renumbered"
            ),
            Finding::CheckpointMismatch { number, seq } => write!(
                f,
                "the chain up to entry {seq} does not match signed checkpoint {number}: entries up to it were rewritten"
            ),
            Finding::TailRemoved { from, to } if from == to => {
                write!(f, "entry {from}, the last one, was removed")
            }
            Finding::TailRemoved { from, to } => {
                write!(f, "entries {from} to {to}, the last ones, were removed")
            }
            Finding::PastHead { seq } => {
                write!(f, "entry {seq} was inserted past the journal's head")
            }
            Finding::HeadMismatch { seq } => write!(
                f,
                "entry {seq}, the last one, is not the one the journal's head names: it was replaced"
            ),
        }
    }
}

/// What a walk that found nothing wrong covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub checkpoints: usize,
    /// Segments retention removed (their checkpoints remain).
    pub pruned_segments: usize,
    /// The first entry the walk checked (after the removed segments).
    pub first_seq: i64,
    pub last_seq: i64,
    /// Entries after the last checkpoint, protected by the chain and the head only until the
    /// next checkpoint signs them.
    pub unsigned_entries: i64,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    seq: i64,
    hash: Digest,
    prev_hash: Digest,
}

/// Checks entries handed to it in order of their numbers, from [`Verifier::first_seq`] on.
#[derive(Debug)]
pub struct Verifier {
    anchor: Head,
    pending: VecDeque<Checkpoint>,
    checkpoints: usize,
    pruned: usize,
    last_signed: i64,
    previous: Option<Seen>,
    entries: u64,
}

impl Verifier {
    /// Checks the checkpoints (ordered by number) against `keys` (key id → public key) and sets
    /// up the walk after the segments retention removed.
    pub fn new(
        keys: &HashMap<String, Vec<u8>>,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<Self, Finding> {
        let mut anchor = Head::EMPTY;
        let mut pending = VecDeque::new();
        let mut pruned = 0;
        let mut expected_first = 1;
        let count = checkpoints.len();
        for checkpoint in checkpoints {
            let number = checkpoint.number;
            let key = keys
                .get(&checkpoint.key_id)
                .ok_or_else(|| Finding::UnknownKey {
                    number,
                    key_id: checkpoint.key_id.clone(),
                })?;
            if !checkpoint.is_signed_by(key) {
                return Err(Finding::CheckpointForged { number });
            }
            if checkpoint.first_seq != expected_first || checkpoint.last_seq < checkpoint.first_seq
            {
                return Err(Finding::CheckpointGap { number });
            }
            expected_first = checkpoint.last_seq + 1;
            if checkpoint.pruned_at.is_some() {
                if !pending.is_empty() {
                    return Err(Finding::PrunedOutOfOrder { number });
                }
                pruned += 1;
                anchor = Head {
                    seq: checkpoint.last_seq,
                    hash: checkpoint.last_hash,
                };
            } else {
                pending.push_back(checkpoint);
            }
        }
        Ok(Self {
            anchor,
            pending,
            checkpoints: count,
            pruned,
            last_signed: expected_first - 1,
            previous: None,
            entries: 0,
        })
    }

    /// The number of the first entry to hand in: entries up to the removed segments' end are gone
    /// by design.
    pub fn first_seq(&self) -> i64 {
        self.anchor.seq + 1
    }

    /// Checks the next entry.
    pub fn push(&mut self, entry: &Entry) -> Result<(), Finding> {
        let (expected_prev, expected_seq) = match self.previous {
            Some(previous) => (previous.hash, previous.seq + 1),
            None => (self.anchor.hash, self.anchor.seq + 1),
        };
        if !entry.is_intact() {
            return Err(Finding::Changed { seq: entry.seq });
        }
        if entry.prev_hash != expected_prev {
            return Err(match self.previous {
                Some(previous) if entry.prev_hash == previous.prev_hash => {
                    Finding::Inserted { seq: previous.seq }
                }
                _ if entry.seq > expected_seq => Finding::Removed {
                    from: expected_seq,
                    to: entry.seq - 1,
                },
                _ => Finding::Rewritten {
                    seq: expected_seq - 1,
                },
            });
        }
        if entry.seq != expected_seq {
            return Err(Finding::Renumbered { seq: entry.seq });
        }
        if let Some(checkpoint) = self.pending.front()
            && checkpoint.last_seq == entry.seq
        {
            if checkpoint.last_hash != entry.hash {
                return Err(Finding::CheckpointMismatch {
                    number: checkpoint.number,
                    seq: entry.seq,
                });
            }
            self.pending.pop_front();
        }
        self.previous = Some(Seen {
            seq: entry.seq,
            hash: entry.hash,
            prev_hash: entry.prev_hash,
        });
        self.entries += 1;
        Ok(())
    }

    /// Ends the walk against the journal's head: entries a checkpoint or the head names must all
    /// have been seen, and none beyond the head.
    pub fn finish(self, head: Head) -> Result<Summary, Finding> {
        let (last_seq, last_hash) = match self.previous {
            Some(previous) => (previous.seq, previous.hash),
            None => (self.anchor.seq, self.anchor.hash),
        };
        if let Some(checkpoint) = self.pending.front() {
            return Err(Finding::TailRemoved {
                from: last_seq + 1,
                to: checkpoint.last_seq,
            });
        }
        if head.seq > last_seq {
            return Err(Finding::TailRemoved {
                from: last_seq + 1,
                to: head.seq,
            });
        }
        if head.seq < last_seq {
            return Err(Finding::PastHead { seq: head.seq + 1 });
        }
        if head.hash != last_hash {
            return Err(Finding::HeadMismatch { seq: last_seq });
        }
        Ok(Summary {
            entries: self.entries,
            checkpoints: self.checkpoints,
            pruned_segments: self.pruned,
            first_seq: self.anchor.seq + 1,
            last_seq,
            unsigned_entries: last_seq - self.last_signed,
        })
    }
}

#[cfg(test)]
mod tests {
    use model::Timestamp;

    use super::*;
    use crate::{Action, Actor, CheckpointKey, Record, Target, link};

    fn records(count: usize) -> Vec<Record> {
        (0..count)
            .map(|index| {
                Record::new(
                    Timestamp::from_unix_millis(index as i64),
                    Actor::Anonymous,
                    Action::AccountLogin,
                    Target::new("account", format!("user{index}@example.com")),
                )
            })
            .collect()
    }

    struct Journal {
        entries: Vec<Entry>,
        head: Head,
        checkpoints: Vec<Checkpoint>,
        keys: HashMap<String, Vec<u8>>,
    }

    /// Ten entries, with checkpoints after 4 and 8.
    fn journal() -> Journal {
        let key = CheckpointKey::generate().unwrap().0;
        let (entries, head) = link(Head::EMPTY, records(10));
        let checkpoints = vec![
            key.checkpoint(1, 1, 4, entries[3].hash, Timestamp::from_unix_millis(4)),
            key.checkpoint(2, 5, 8, entries[7].hash, Timestamp::from_unix_millis(8)),
        ];
        let keys = HashMap::from([(key.id().to_owned(), key.public_key().to_vec())]);
        Journal {
            entries,
            head,
            checkpoints,
            keys,
        }
    }

    fn walk(journal: &Journal) -> Result<Summary, Finding> {
        let mut verifier = Verifier::new(&journal.keys, journal.checkpoints.clone())?;
        for entry in &journal.entries {
            if entry.seq >= verifier.first_seq() {
                verifier.push(entry)?;
            }
        }
        verifier.finish(journal.head)
    }

    #[test]
    fn an_untouched_journal_verifies() {
        let summary = walk(&journal()).unwrap();
        assert_eq!(summary.entries, 10);
        assert_eq!(summary.checkpoints, 2);
        assert_eq!(summary.unsigned_entries, 2);
        assert_eq!((summary.first_seq, summary.last_seq), (1, 10));
    }

    #[test]
    fn a_changed_entry_is_named() {
        let mut journal = journal();
        journal.entries[4].record.action = "account.signup".into();
        assert_eq!(walk(&journal), Err(Finding::Changed { seq: 5 }));
    }

    #[test]
    fn a_changed_entry_with_its_hash_recomputed_is_named() {
        let mut journal = journal();
        let entry = &mut journal.entries[4];
        entry.record.outcome = crate::Outcome::Failure;
        entry.hash = entry.record.hash_after(entry.prev_hash);
        assert_eq!(walk(&journal), Err(Finding::Rewritten { seq: 5 }));
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_the_checkpoint() {
        let mut journal = journal();
        let mut records: Vec<Record> = journal.entries.iter().map(|e| e.record.clone()).collect();
        records[5].outcome = crate::Outcome::Denied;
        let (entries, head) = link(Head::EMPTY, records);
        journal.entries = entries;
        journal.head = head;
        assert_eq!(
            walk(&journal),
            Err(Finding::CheckpointMismatch { number: 2, seq: 8 })
        );
    }

    #[test]
    fn a_removed_entry_is_named() {
        let mut journal = journal();
        journal.entries.remove(4);
        assert_eq!(walk(&journal), Err(Finding::Removed { from: 5, to: 5 }));
    }

    #[test]
    fn an_inserted_entry_is_named_also_when_the_rest_is_renumbered() {
        let mut journal = journal();
        let forged = Record::new(
            Timestamp::from_unix_millis(4),
            Actor::Anonymous,
            Action::AccountSignup,
            Target::new("account", "forged@example.com"),
        );
        let prev_hash = journal.entries[3].hash;
        let inserted = Entry {
            seq: 5,
            hash: forged.hash_after(prev_hash),
            record: forged,
            prev_hash,
        };
        for entry in &mut journal.entries[4..] {
            entry.seq += 1;
        }
        journal.entries.insert(4, inserted);
        assert_eq!(walk(&journal), Err(Finding::Inserted { seq: 5 }));
    }

    #[test]
    fn removed_last_entries_are_named_by_the_head_or_a_checkpoint() {
        let mut journal = journal();
        journal.entries.truncate(9);
        assert_eq!(
            walk(&journal),
            Err(Finding::TailRemoved { from: 10, to: 10 })
        );

        let mut journal = self::journal();
        journal.entries.truncate(6);
        journal.head = Head {
            seq: 6,
            hash: journal.entries[5].hash,
        };
        assert_eq!(walk(&journal), Err(Finding::TailRemoved { from: 7, to: 8 }));
    }

    #[test]
    fn an_entry_past_the_head_is_named() {
        let mut journal = journal();
        let (extra, _) = link(journal.head, records(1));
        journal.entries.extend(extra);
        assert_eq!(walk(&journal), Err(Finding::PastHead { seq: 11 }));
    }

    #[test]
    fn a_forged_or_foreign_checkpoint_is_named() {
        let mut journal = journal();
        journal.checkpoints[1].last_seq = 9;
        assert_eq!(walk(&journal), Err(Finding::CheckpointForged { number: 2 }));

        let mut journal = self::journal();
        let stranger = CheckpointKey::generate().unwrap().0;
        journal.checkpoints[1] = stranger.checkpoint(
            2,
            5,
            8,
            journal.entries[7].hash,
            Timestamp::from_unix_millis(8),
        );
        assert!(matches!(
            walk(&journal),
            Err(Finding::UnknownKey { number: 2, .. })
        ));
    }

    #[test]
    fn removed_segments_are_skipped_and_the_rest_verifies_from_their_checkpoint() {
        let mut journal = journal();
        journal.checkpoints[0].pruned_at = Some(Timestamp::from_unix_millis(100));
        journal.entries.drain(..4);
        let summary = walk(&journal).unwrap();
        assert_eq!(
            (summary.first_seq, summary.entries, summary.pruned_segments),
            (5, 6, 1)
        );

        // A kept segment before a removed one is not retention's work.
        let mut journal = self::journal();
        journal.checkpoints[1].pruned_at = Some(Timestamp::from_unix_millis(100));
        assert_eq!(walk(&journal), Err(Finding::PrunedOutOfOrder { number: 2 }));
    }
}
