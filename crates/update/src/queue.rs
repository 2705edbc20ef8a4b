//! Delivery bookkeeping, without I/O: the sender's [`Outbox`] (queued and unacknowledged
//! messages, ids, coalescing) and the receiver's [`Dedupe`] (which ids were already delivered).
//!
//! ```text
//!  send ─► Outbox::push ─► [ sent, awaiting ack │ not yet sent ──────────► ]
//!                            ▲ Ack/Nack removes    ▲ a newer progress for the same table
//!                            │                     │ replaces the older one; a full queue
//!            reconnect: everything here is         │ drops its oldest progress, else
//!            "not yet sent" again, in id order     │ refuses the new message
//! ```
//!
//! Ids grow by one per queued message from 1 per sender instance, one counter shared by the
//! instance's queues (a listener keeps one per migrate peer), so an id names one message of
//! the instance and a queue's ids increase, with gaps where another queue took one. A connection writes them in
//! increasing order and the receiver handles them in that order, so the receiver needs one
//! number per sender (the highest id delivered) to tell a redelivery from a new message.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::frame;
use crate::message::{Message, Refusal};

/// Why [`crate::Channel::send`] did not queue a message. The caller still owns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error(
        "{kind} not queued: the Update queue holds {queued} of at most {max} messages and none \
         is a progress message that could make room"
    )]
    QueueFull {
        kind: &'static str,
        queued: usize,
        max: usize,
    },
    #[error(
        "{kind} encodes to a frame of {len} bytes, above the limit of {max} bytes; send it in parts"
    )]
    TooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} is sent by a {sender}, and this end of the Update channel is a {role}")]
    WrongRole {
        kind: &'static str,
        sender: crate::Role,
        role: crate::Role,
    },
    #[error("{kind} cannot be encoded: {reason}")]
    Encode { kind: &'static str, reason: String },
    #[error("{kind} not queued: the Update channel is closed")]
    Closed { kind: &'static str },
    #[error("{kind} not queued: no {purpose} peer named {name} has a queue on this listener")]
    NoPeer {
        kind: &'static str,
        purpose: crate::Purpose,
        name: String,
    },
}

/// One queued message.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) message: Message,
    /// Encoded once at `push`, so a message too large for a frame is refused to the caller and
    /// redelivery does not encode again.
    pub(crate) frame: Bytes,
}

/// What the queue did to older messages to take a new one (for counters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pushed {
    pub(crate) id: u64,
    /// An older unsent progress message of the same table was removed.
    pub(crate) coalesced: bool,
    /// The oldest unsent progress message (of another table) was removed to make room.
    pub(crate) dropped: bool,
}

/// The sender's queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// In id order. `entries[..sent]` were written on the current connection and await an
    /// answer; the rest wait to be written.
    entries: VecDeque<Entry>,
    sent: usize,
    /// The last id taken, shared by the sender instance's queues.
    ids: Arc<AtomicU64>,
    max_queued: usize,
    max_frame: usize,
}

impl Outbox {
    pub(crate) fn new(max_queued: usize, max_frame: usize, ids: Arc<AtomicU64>) -> Self {
        Self {
            entries: VecDeque::new(),
            sent: 0,
            ids,
            max_queued: max_queued.max(1),
            max_frame,
        }
    }

    /// Messages not yet acknowledged (sent or not).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The id of the oldest message not yet answered: every id below it was answered (or, for
    /// progress, replaced or dropped).
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.entries.front().map(|e| e.id)
    }

    /// Messages written on the current connection and not yet answered.
    pub(crate) fn in_flight(&self) -> usize {
        self.sent
    }

    pub(crate) fn push(&mut self, message: Message) -> Result<Pushed, SendError> {
        // Taken at the end, if queued. The channel pushes under one lock for all its lanes,
        // so no other push takes this id meanwhile.
        let id = self.ids.load(Ordering::Relaxed) + 1;
        let kind = message.kind();
        let frame = frame::encode_data(id, &message, self.max_frame).map_err(|e| match e {
            frame::FrameError::TooLarge { len, max } => SendError::TooLarge { kind, len, max },
            // Serializing our own message types cannot fail (no maps with non-string keys, no
            // custom serializers); reported rather than unwrapped all the same.
            other => SendError::Encode {
                kind,
                reason: other.to_string(),
            },
        })?;
        let mut pushed = Pushed {
            id,
            ..Pushed::default()
        };
        if let Some(table) = message.progress_of() {
            let sent = self.sent;
            if let Some(i) = self
                .entries
                .iter()
                .skip(sent)
                .position(|e| e.message.progress_of() == Some(table))
            {
                self.entries.remove(sent + i);
                pushed.coalesced = true;
            }
        }
        if self.entries.len() >= self.max_queued {
            let sent = self.sent;
            match self
                .entries
                .iter()
                .skip(sent)
                .position(|e| e.message.progress_of().is_some())
            {
                Some(i) => {
                    self.entries.remove(sent + i);
                    pushed.dropped = true;
                }
                None => {
                    return Err(SendError::QueueFull {
                        kind,
                        queued: self.entries.len(),
                        max: self.max_queued,
                    });
                }
            }
        }
        self.entries.push_back(Entry { id, message, frame });
        self.ids.store(id, Ordering::Relaxed);
        Ok(pushed)
    }

    /// The next message to write when fewer than `window` are in flight; marks it sent.
    pub(crate) fn next_to_send(&mut self, window: usize) -> Option<(u64, Bytes)> {
        if self.sent >= window {
            return None;
        }
        let entry = self.entries.get(self.sent)?;
        self.sent += 1;
        Some((entry.id, entry.frame.clone()))
    }

    /// Removes a message the peer answered. `None` for an id not (or no longer) queued: an
    /// answer to a redelivered duplicate, or a peer answering what it was never sent.
    pub(crate) fn answered(&mut self, id: u64) -> Option<Entry> {
        let i = self
            .entries
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .filter(|&i| i < self.sent)?;
        self.sent -= 1;
        self.entries.remove(i)
    }

    /// A connection ended: whatever it did not get answered is written again on the next one.
    pub(crate) fn disconnected(&mut self) {
        self.sent = 0;
    }

    /// Empties the queue, for a peer that will not come back: the caller hands the messages
    /// back to the application. Only between connections (nothing in flight).
    pub(crate) fn drain(&mut self) -> Vec<Entry> {
        self.sent = 0;
        self.entries.drain(..).collect()
    }
}

/// How many senders' filters the receiver keeps. A sender is one process start of a peer; a
/// listener hears from up to 16 migrate peers (its default bound) and a validate run, so
/// this outlives a few restarts of each. A filter pushed out only costs a duplicate delivery
/// of a message whose answer was lost, which every message tolerates.
const MAX_SENDERS: usize = 64;
/// Refusals remembered per sender, to answer a redelivered refused message with its `Nack`
/// again rather than an `Ack`.
const MAX_NACKS: usize = 64;

#[derive(Debug)]
struct Seen {
    instance: u64,
    /// The highest id delivered.
    high: u64,
    nacks: VecDeque<(u64, String, Refusal)>,
}

/// What the receiver does with an incoming id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not seen: deliver it.
    New,
    /// Already delivered: answer again, with the refusal if it was refused.
    Duplicate { nack: Option<(String, Refusal)> },
}

/// The receiver's duplicate filter: the highest delivered id per sender instance.
#[derive(Debug, Default)]
pub(crate) struct Dedupe {
    /// Most recently used last.
    senders: VecDeque<Seen>,
}

impl Dedupe {
    fn seen(&mut self, instance: u64) -> &mut Seen {
        match self.senders.iter().position(|s| s.instance == instance) {
            Some(i) => {
                if let Some(s) = self.senders.remove(i) {
                    self.senders.push_back(s);
                }
            }
            None => {
                if self.senders.len() == MAX_SENDERS {
                    self.senders.pop_front();
                }
                self.senders.push_back(Seen {
                    instance,
                    high: 0,
                    nacks: VecDeque::new(),
                });
            }
        }
        let last = self.senders.len() - 1;
        &mut self.senders[last]
    }

    /// Records `id` as delivered when it is new.
    pub(crate) fn arrive(&mut self, instance: u64, id: u64) -> Verdict {
        let seen = self.seen(instance);
        if id <= seen.high {
            let nack = seen
                .nacks
                .iter()
                .find(|(n, ..)| *n == id)
                .map(|(_, r, k)| (r.clone(), *k));
            return Verdict::Duplicate { nack };
        }
        seen.high = id;
        Verdict::New
    }

    /// Remembers that the receiver refused `id`.
    pub(crate) fn refused(&mut self, instance: u64, id: u64, reason: &str, refusal: Refusal) {
        let seen = self.seen(instance);
        if seen.nacks.len() == MAX_NACKS {
            seen.nacks.pop_front();
        }
        seen.nacks.push_back((id, reason.to_owned(), refusal));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{PartitionKey, TableName};

    fn progress(t: &str, rows: u64) -> Message {
        Message::TableProgress {
            table: TableName::new("ks", t),
            ranges_done: 0,
            ranges_total: 1,
            rows,
        }
    }

    fn repair(t: &str) -> Message {
        Message::RepairPartitions {
            table: TableName::new("ks", t),
            partitions: vec![PartitionKey::new(["1"])],
        }
    }

    fn outbox(max_queued: usize) -> Outbox {
        Outbox::new(max_queued, 1 << 20, Arc::default())
    }

    fn ids(o: &Outbox) -> Vec<u64> {
        o.entries.iter().map(|e| e.id).collect()
    }

    #[test]
    fn ids_grow_and_answers_remove() {
        let mut o = outbox(10);
        for t in ["a", "b", "c"] {
            o.push(repair(t)).unwrap();
        }
        assert_eq!(ids(&o), [1, 2, 3]);
        assert_eq!(o.next_to_send(2).unwrap().0, 1);
        assert_eq!(o.next_to_send(2).unwrap().0, 2);
        assert_eq!(o.next_to_send(2), None, "window of 2");
        // An answer to something not sent on this connection is ignored.
        assert!(o.answered(3).is_none());
        assert_eq!(o.answered(2).unwrap().id, 2);
        assert_eq!(o.in_flight(), 1);
        assert_eq!(o.next_to_send(2).unwrap().0, 3);
        o.disconnected();
        assert_eq!(o.in_flight(), 0);
        let again: Vec<u64> = std::iter::from_fn(|| o.next_to_send(10).map(|s| s.0)).collect();
        assert_eq!(again, [1, 3], "redelivered in order after a reconnect");
        assert_eq!(o.oldest(), Some(1));
        assert!(o.answered(1).is_some());
        assert!(o.answered(1).is_none(), "answered once");
        assert_eq!(o.len(), 1);
        assert_eq!(o.oldest(), Some(3), "everything below 3 is answered");
        assert!(o.answered(3).is_some());
        assert_eq!(o.oldest(), None);
    }

    #[test]
    fn newer_progress_replaces_unsent_progress_of_the_same_table() {
        let mut o = outbox(10);
        o.push(progress("a", 1)).unwrap();
        o.push(repair("a")).unwrap();
        o.push(progress("b", 1)).unwrap();
        let p = o.push(progress("a", 2)).unwrap();
        assert!(p.coalesced && !p.dropped);
        assert_eq!(ids(&o), [2, 3, 4]);
        assert_eq!(o.entries[2].message, progress("a", 2));
        // Once written, it may have arrived: a newer one is queued after it instead.
        while o.next_to_send(10).is_some() {}
        let p = o.push(progress("a", 3)).unwrap();
        assert!(!p.coalesced);
        assert_eq!(ids(&o), [2, 3, 4, 5]);
    }

    #[test]
    fn a_full_queue_drops_oldest_progress_but_never_requests() {
        let mut o = outbox(3);
        o.push(progress("a", 1)).unwrap();
        o.push(repair("x")).unwrap();
        o.push(progress("b", 1)).unwrap();
        let p = o.push(repair("y")).unwrap();
        assert!(p.dropped);
        assert_eq!(ids(&o), [2, 3, 4], "progress of a dropped");
        let p = o.push(progress("c", 1)).unwrap();
        assert!(p.dropped);
        assert_eq!(ids(&o), [2, 4, 5], "progress of b dropped for c's");
        assert!(o.push(repair("z")).unwrap().dropped);
        assert_eq!(ids(&o), [2, 4, 6], "progress of c dropped for a request");
        assert_eq!(
            o.push(repair("w")).unwrap_err(),
            SendError::QueueFull {
                kind: "repair_partitions",
                queued: 3,
                max: 3
            },
            "only requests are left"
        );
    }

    #[test]
    fn requests_are_refused_when_only_requests_fill_the_queue() {
        let mut o = outbox(2);
        o.push(repair("x")).unwrap();
        o.push(repair("y")).unwrap();
        let e = o.push(repair("z")).unwrap_err();
        assert!(e.to_string().contains("holds 2 of at most 2"), "{e}");
        let e = o.push(progress("a", 1)).unwrap_err();
        assert!(matches!(e, SendError::QueueFull { .. }));
        assert_eq!(ids(&o), [1, 2]);
        // The refused pushes used no id: the next one continues the sequence.
        assert_eq!(o.next_to_send(10).unwrap().0, 1);
        assert!(o.answered(1).is_some());
        assert_eq!(o.push(repair("z")).unwrap().id, 3);
    }

    #[test]
    fn in_flight_progress_is_never_dropped() {
        let mut o = outbox(2);
        o.push(progress("a", 1)).unwrap();
        o.push(repair("x")).unwrap();
        while o.next_to_send(10).is_some() {}
        assert!(matches!(
            o.push(repair("y")),
            Err(SendError::QueueFull { .. })
        ));
    }

    #[test]
    fn oversized_messages_are_refused_at_push() {
        let mut o = Outbox::new(10, 200, Arc::default());
        let big = Message::RepairPartitions {
            table: TableName::new("ks", "t"),
            partitions: (0..100)
                .map(|i| PartitionKey::new([i.to_string()]))
                .collect(),
        };
        let e = o.push(big).unwrap_err();
        assert!(
            matches!(e, SendError::TooLarge { kind: "repair_partitions", len, max: 200 } if len > 200),
            "{e:?}"
        );
        assert_eq!(o.push(repair("a")).unwrap().id, 1);
    }

    #[test]
    fn dedupe_keeps_a_high_water_mark_per_sender() {
        let mut d = Dedupe::default();
        assert_eq!(d.arrive(7, 1), Verdict::New);
        assert_eq!(d.arrive(7, 2), Verdict::New);
        d.refused(7, 2, "unknown table", Refusal::Never);
        assert_eq!(d.arrive(7, 1), Verdict::Duplicate { nack: None });
        assert_eq!(
            d.arrive(7, 2),
            Verdict::Duplicate {
                nack: Some(("unknown table".into(), Refusal::Never))
            }
        );
        // Gaps (coalesced or dropped progress) are fine.
        assert_eq!(d.arrive(7, 5), Verdict::New);
        // A restarted sender counts from 1 again under a new instance.
        assert_eq!(d.arrive(8, 1), Verdict::New);
        for i in 0..MAX_SENDERS as u64 {
            d.arrive(100 + i, 1);
        }
        assert_eq!(d.senders.len(), MAX_SENDERS, "bounded");
        assert_eq!(
            d.arrive(7, 5),
            Verdict::New,
            "forgotten after many restarts"
        );
    }

    #[test]
    fn remembered_refusals_are_bounded() {
        let mut d = Dedupe::default();
        for id in 1..=(MAX_NACKS as u64 + 10) {
            d.arrive(1, id);
            d.refused(1, id, "no", Refusal::NotNow);
        }
        assert_eq!(d.senders[0].nacks.len(), MAX_NACKS);
        assert_eq!(d.arrive(1, 1), Verdict::Duplicate { nack: None });
        assert_eq!(
            d.arrive(1, MAX_NACKS as u64 + 10),
            Verdict::Duplicate {
                nack: Some(("no".into(), Refusal::NotNow))
            }
        );
    }
}
