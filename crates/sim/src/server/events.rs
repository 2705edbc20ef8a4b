//! The cluster-wide event bus: the executor publishes SCHEMA_CHANGE, nodes publish
//! STATUS_CHANGE/TOPOLOGY_CHANGE, and every connection that REGISTERed for an event's type
//! (on any node) pushes it to its client on stream -1.

use ferry_cql::response::Event;
use tokio::sync::broadcast;

/// How many events a slow connection may fall behind before it misses some. Events are rare
/// (DDL, node stop/start), so 1024 is generous; a lagging receiver logs and carries on.
pub const EVENT_BACKLOG: usize = 1024;

/// Publishes events to every registered connection of the cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSender {
    /// Each REGISTERed connection holds a receiver; the sender never blocks.
    tx: broadcast::Sender<Event>,
}

impl EventSender {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_BACKLOG);
        Self { tx }
    }

    /// Sends `event` to every connection registered for its type; no-op when none is.
    pub fn publish(&self, event: Event) {
        // An error only means nobody is subscribed.
        let _ = self.tx.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
