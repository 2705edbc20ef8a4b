//! The Update channel: the small, versioned link between `ferry proxy` and `ferry migrate`.
//! The migrator reports its job (tables, phases, progress, validation); the proxy asks for
//! work (reorder, re-migrate a table, repair partitions).
//!
//! ```text
//!  migrator ── Channel::dial(proxy:14100) ──────────────► proxy ── Channel::listen(:14100)
//!     send(JobStarted, TableProgress, …) ─► queue ─► frames ─► Events: Message(Delivery)
//!     Events: Message(Delivery) ◄─ frames ◄─ queue ◄─ send(Remigrate, RepairPartitions, …)
//!             every message answered: Ack / Nack{reason, refusal: never | not_now}
//! ```
//!
//! # Layout
//! - [`message`]: [`Message`] and its parts ([`TableName`], [`PartitionKey`], [`Role`]),
//!   [`Purpose`] (a migrator's: migrate or validate), and [`Refusal`], what a `Nack` tells
//!   the sender to do.
//! - `frame`: bytes ⇄ frames — a u32 length, then one JSON object; the frozen hello.
//! - `connection`: whole frames over TCP or TLS, buffered both ways.
//! - `queue`: the sender's bounded queue (ids, coalescing, redelivery) and the receiver's
//!   duplicate filter.
//! - `session`: one connection — handshake, then messages, answers and heartbeats.
//! - [`channel`]: the handle ([`Channel`], [`Events`], [`Delivery`], [`Status`] with a
//!   [`LaneStatus`] per peer), its [`ChannelConfig`], the dialing and listening loops, the
//!   listener's lanes (admission, bound, reaper), reconnect backoff.
//! - [`tls`]: optional TLS, mutual if the listener names a client CA.
//!
//! # Decisions
//! - **Direction.** The migrator dials, the proxy listens on the Update port (14100). The proxy
//!   is the long-lived service with a known address; a migrator is a job that comes and goes,
//!   and keeps one channel per configured proxy. Either may start first: the dialer retries
//!   with exponential backoff (100 ms doubling to 10 s, jittered), and each side works without
//!   the other meanwhile. The library does not care which role dials.
//! - **A lane per migrate peer.** A migrator's `Hello` names its [`Purpose`] (`migrate`, the
//!   default and what an older build is, or `validate`) and its name. A listener keeps a lane
//!   (queue, connection) per `migrate` name, so the workers of one job (each its own name)
//!   report to one proxy side by side; at most [`ChannelConfig::max_peers`] (16), one more
//!   is refused at the handshake with the reason, which it logs. The same name reconnecting
//!   replaces its old connection and finds its lane, unanswered messages first; a lane whose
//!   peer stays away [`ChannelConfig::peer_linger`] (60 s) is dropped and its messages handed
//!   back as refused "not now", so work queued for a worker that ended goes to another.
//!   `validate` has one lane: another name is refused until the first is gone (at most
//!   `idle_timeout` after it vanished), and it displaces no `migrate` peer.
//!   [`Channel::send_to`] queues for one peer by name (the proxy routes a table's requests to
//!   the worker that reported it); [`Channel::send`] for the least loaded connected one, or,
//!   with none yet, for the first to connect.
//! - **Encoding: JSON** (serde). The volume is tiny (state changes, progress a few times a
//!   second, repair batches), so readability wins: frames can be read in a packet capture or a
//!   log, and `serde_json` is already in the workspace. Versioning is explicit: both ends send
//!   `Hello` with the newest and oldest version they speak and use the newest common one;
//!   without one, both refuse with the same clear reason and close. Unknown fields are ignored
//!   (additions within a version); an unknown message type is refused with a `Nack`, not a
//!   dropped connection.
//! - **Delivery.** Ids grow from 1 per sender instance (a random id per process start, sent
//!   in `Hello`), one counter for all its lanes. Every message is answered; the unanswered ones are sent
//!   again, in order, on the next connection; the receiver delivers an id at most once (the
//!   highest id delivered per sender, since ids arrive in order) and answers a redelivery
//!   again without delivering it. Across a *receiver* restart the filter is gone, so a message
//!   whose answer was lost can arrive twice: every message is safe to apply twice (state
//!   changes are idempotent, progress carries totals, a repeated repair or re-migration only
//!   costs time). A receiver restart loses what the receiver knew, too: a migrator that meets
//!   a new proxy instance replays its reports ([`Message::Replayed`]); the channel itself
//!   resends only what was not answered.
//! - **Bounded queue** (10,000 by default): a newer `TableProgress` replaces the unsent older
//!   one of the same table; when the queue is full, the oldest unsent progress message is
//!   dropped to make room; when only other messages fill it, [`Channel::send`] refuses the new
//!   one with [`SendError::QueueFull`] — phase changes, repair and re-migrate requests are never
//!   dropped silently, the caller keeps what it could not hand over (the proxy's repair log
//!   keeps failures until a send succeeds).
//! - **Partition keys** travel as CQL literals, one per partition-key column (see
//!   [`PartitionKey`]).
//! - **Frames** are at most 1 MiB by default, checked from the length before buffering; a
//!   message that would not fit is refused at `send` ([`SendError::TooLarge`]), so large repair
//!   batches are split by the sender ([`Message::repair_batches`]).

pub mod channel;
mod connection;
mod frame;
pub mod message;
mod queue;
mod session;
pub mod tls;

pub use channel::{
    Channel, ChannelConfig, Delivery, Event, Events, LaneStatus, Peer, StartError, Status,
};
pub use frame::FrameError;
pub use message::{Message, PartitionKey, Purpose, Refusal, Role, TableName};
pub use queue::SendError;
pub use tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles, TlsError};

/// The newest Update protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest one it still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
