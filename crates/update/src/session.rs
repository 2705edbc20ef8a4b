//! One connection's life: the handshake, then messages both ways until it ends.
//!
//! ```text
//!  handshake   send Hello ─► read Hello ─► check version / role / listener lane (per peer)
//!                 ├─ not acceptable: send Refuse{reason}, close   (Event::Refused)
//!                 └─ send Accept ─► read Accept (or the peer's Refuse{reason})
//!  established take the peer's lane lease; everything unacknowledged is unsent again
//!     loop ─┬─ write queued messages while fewer than max_in_flight await answers
//!           ├─ read: Ack/Nack ─► Outbox::answered  (Nack ─► Event::Nacked)
//!           │        Data ─► Dedupe::arrive ─┬─ duplicate: answer again, no delivery
//!           │                                └─ new: Event::Message ─► wait for the
//!           │                                   application's answer ─► Ack/Nack
//!           ├─ heartbeat when idle; close after idle_timeout without a frame
//!           └─ close: shutdown, replaced by the same peer's new connection, error
//! ```
//!
//! Messages from one sender are handled one after another in id order, which is what lets the
//! duplicate filter keep one number per sender.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::channel::{Answer, Counters, Delivery, Event, Lane, Peer, Shared};
use crate::connection::{Connection, ReadError};
use crate::frame::{Frame, FrameError, Hello};
use crate::message::{Refusal, Role};
use crate::queue::Verdict;

/// A listener's admitted peer: its lane, held until released.
pub(crate) struct Claimed {
    pub(crate) generation: u64,
    /// Ends this session when the same peer connects again.
    pub(crate) cancel: Arc<Notify>,
    pub(crate) lane: Arc<Lane>,
}

/// The listener's admission of peers to lanes.
pub(crate) trait Gate: Send + Sync {
    /// Takes `peer`'s lane (ending the session of the same peer name that holds it), or
    /// says why not.
    fn claim(&self, shared: &Shared, peer: &Peer) -> Result<Claimed, String>;
    /// Frees the lane if the claim `generation` still holds it.
    fn release(&self, shared: &Shared, generation: u64);
}

/// How a connection ended, for the dialer's backoff.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The channel is closing.
    Shutdown,
    /// It was established, then ended; the reason went out as `Event::Disconnected`.
    Closed,
    /// One end refused the other at the handshake.
    Refused,
    /// No handshake: a socket or TLS error, a timeout, a peer that does not speak the protocol.
    Failed(String),
}

enum Handshake {
    Refused { reason: String, by_peer: bool },
    Failed(String),
    Shutdown,
}

/// Why an established connection ends.
enum End {
    Shutdown,
    Replaced,
    /// The peer closed between frames: it stopped (a finished job, a restart).
    PeerClosed,
    Lost(String),
}

/// The protocol version two ends will use, or why they cannot talk.
pub(crate) fn negotiate(
    ours: &std::ops::RangeInclusive<u16>,
    theirs: &Hello,
) -> Result<u16, String> {
    let version = (*ours.end()).min(theirs.protocol_version);
    if theirs.min_protocol_version <= theirs.protocol_version
        && version >= (*ours.start()).max(theirs.min_protocol_version)
    {
        Ok(version)
    } else {
        Err(format!(
            "no common Update protocol version: {} {} speaks {}..={}, this end speaks {}..={}; \
             run proxy and migrator builds whose versions overlap",
            theirs.role,
            theirs.name,
            theirs.min_protocol_version,
            theirs.protocol_version,
            ours.start(),
            ours.end()
        ))
    }
}

pub(crate) async fn run<S>(
    shared: &Shared,
    stream: S,
    addr: SocketAddr,
    gate: Option<(&dyn Gate, OwnedSemaphorePermit)>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut conn = Connection::new(stream, shared.config.max_frame);
    let (gate, permit) = match gate {
        Some((gate, permit)) => (Some(gate), Some(permit)),
        None => (None, None),
    };
    let handshake = tokio::select! {
        r = tokio::time::timeout(shared.config.handshake_timeout, handshake(shared, &mut conn, addr, gate)) => {
            r.unwrap_or_else(|_| Err(Handshake::Failed(format!(
                "no Update handshake from {addr} within {:?}",
                shared.config.handshake_timeout
            ))))
        }
        () = shared.closing() => Err(Handshake::Shutdown),
    };
    drop(permit);
    let (peer, claim) = match handshake {
        Ok(established) => established,
        Err(Handshake::Shutdown) => {
            conn.close().await;
            return Ended::Shutdown;
        }
        Err(Handshake::Failed(reason)) => {
            tracing::debug!(%addr, %reason, "Update channel handshake failed");
            conn.close().await;
            return Ended::Failed(reason);
        }
        Err(Handshake::Refused { reason, by_peer }) => {
            Counters::add(&shared.counters.refusals, 1);
            let by = if by_peer { "the peer" } else { "this end" };
            tracing::error!(%addr, %reason, "Update channel refused by {by}: {reason}");
            conn.close().await;
            shared.emit(Event::Refused { reason, by_peer }).await;
            return Ended::Refused;
        }
    };
    let (generation, cancel, lane) = match claim {
        Some(c) => (Some(c.generation), Some(c.cancel), c.lane),
        None => (None, None, shared.dial_lane()),
    };

    let end = tokio::select! {
        lease = lane.lease.lock() => {
            let mut session = Session::new(shared, &lane, conn, peer.clone(), cancel);
            let end = session.established().await;
            session.conn.close().await;
            drop(lease);
            end
        }
        () = shared.closing() => End::Shutdown,
    };
    if let (Some(gate), Some(generation)) = (gate, generation) {
        gate.release(shared, generation);
    }
    match end {
        End::Shutdown => Ended::Shutdown,
        End::Replaced => {
            tracing::info!(%peer, "Update channel: {peer} reconnected; old connection closed");
            shared
                .emit(Event::Disconnected {
                    peer,
                    reason: "replaced by a new connection of the same peer".to_owned(),
                })
                .await;
            Ended::Closed
        }
        End::PeerClosed => {
            let reason = "the peer closed the connection".to_owned();
            tracing::info!(%peer, "Update channel: {peer} closed the connection");
            shared.emit(Event::Disconnected { peer, reason }).await;
            Ended::Closed
        }
        End::Lost(reason) => {
            tracing::warn!(%peer, %reason, "Update channel to {peer} lost: {reason}");
            shared.emit(Event::Disconnected { peer, reason }).await;
            Ended::Closed
        }
    }
}

type Claim = Option<Claimed>;

async fn handshake<S>(
    shared: &Shared,
    conn: &mut Connection<S>,
    addr: SocketAddr,
    gate: Option<&dyn Gate>,
) -> Result<(Peer, Claim), Handshake>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    let io = |e: std::io::Error| Handshake::Failed(format!("Update handshake with {addr}: {e}"));
    let hello = Frame::Hello(Hello {
        protocol_version: *config.versions.end(),
        min_protocol_version: *config.versions.start(),
        role: config.role,
        name: config.name.clone(),
        instance: shared.instance,
        purpose: config.purpose,
    });
    conn.send(&hello).await.map_err(io)?;
    let theirs = match read(conn, addr).await? {
        Frame::Hello(hello) => hello,
        Frame::Refuse { reason } => {
            return Err(Handshake::Refused {
                reason,
                by_peer: true,
            });
        }
        other => {
            return Err(Handshake::Failed(format!(
                "{addr} sent {} instead of hello: not an Update channel peer",
                kind(&other)
            )));
        }
    };
    let verdict = negotiate(&config.versions, &theirs).and_then(|version| {
        if theirs.role != config.role.peer() {
            return Err(format!(
                "{} {} at {addr} is a {} too; an Update channel joins a proxy and a migrator",
                theirs.role, theirs.name, theirs.role
            ));
        }
        let peer = Peer {
            name: theirs.name.clone(),
            role: theirs.role,
            // The migrator end's says what the connection is for.
            purpose: if config.role == Role::Migrator {
                config.purpose
            } else {
                theirs.purpose
            },
            instance: theirs.instance,
            protocol_version: version,
            addr,
        };
        let claim = gate.map(|g| g.claim(shared, &peer)).transpose()?;
        Ok((peer, claim))
    });
    let (peer, claim) = match verdict {
        Ok(ok) => ok,
        Err(reason) => {
            let _ = conn
                .send(&Frame::Refuse {
                    reason: reason.clone(),
                })
                .await;
            return Err(Handshake::Refused {
                reason,
                by_peer: false,
            });
        }
    };
    let release = |e: Handshake| {
        if let (Some(g), Some(c)) = (gate, &claim) {
            g.release(shared, c.generation);
        }
        e
    };
    conn.send(&Frame::Accept)
        .await
        .map_err(|e| release(io(e)))?;
    match read(conn, addr).await.map_err(release)? {
        Frame::Accept => Ok((peer, claim)),
        Frame::Refuse { reason } => Err(release(Handshake::Refused {
            reason,
            by_peer: true,
        })),
        other => Err(release(Handshake::Failed(format!(
            "{addr} sent {} instead of accept or refuse",
            kind(&other)
        )))),
    }
}

async fn read<S>(conn: &mut Connection<S>, addr: SocketAddr) -> Result<Frame, Handshake>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match conn.read_frame().await {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(Handshake::Failed(format!(
            "{addr} closed the connection during the Update handshake"
        ))),
        Err(e) => Err(Handshake::Failed(format!(
            "Update handshake with {addr}: {e}"
        ))),
    }
}

fn kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello(_) => "hello",
        Frame::Accept => "accept",
        Frame::Refuse { .. } => "refuse",
        Frame::Data { .. } => "data",
        Frame::Ack { .. } => "ack",
        Frame::Nack { .. } => "nack",
        Frame::Heartbeat => "heartbeat",
    }
}

struct Session<'a, S> {
    shared: &'a Shared,
    /// The peer's purpose's queue.
    lane: &'a Lane,
    conn: Connection<S>,
    peer: Peer,
    cancel: Option<Arc<Notify>>,
    ticks: Interval,
    last_read: Instant,
    last_write: Instant,
}

impl<'a, S> Session<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn new(
        shared: &'a Shared,
        lane: &'a Lane,
        conn: Connection<S>,
        peer: Peer,
        cancel: Option<Arc<Notify>>,
    ) -> Self {
        // Checked at a quarter of the heartbeat: a heartbeat goes out at most 25% late.
        let period = (shared.config.heartbeat / 4).max(Duration::from_millis(5));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            shared,
            lane,
            conn,
            peer,
            cancel,
            ticks,
            last_read: Instant::now(),
            last_write: Instant::now(),
        }
    }

    async fn established(&mut self) -> End {
        let (shared, lane) = (self.shared, self.lane);
        lane.outbox().disconnected();
        lane.set_peer(Some(self.peer.clone()));
        Counters::add(&shared.counters.connects, 1);
        tracing::info!(peer = %self.peer, version = self.peer.protocol_version, "Update channel connected to {}", self.peer);
        let end = match self
            .wait(shared.emit(Event::Connected(self.peer.clone())))
            .await
        {
            Ok(()) => self.exchange().await,
            Err(end) => end,
        };
        lane.set_peer(None);
        lane.outbox().disconnected();
        end
    }

    async fn cancelled(cancel: Option<&Notify>) {
        match cancel {
            Some(c) => c.notified().await,
            None => std::future::pending().await,
        }
    }

    /// Sends a heartbeat when nothing was written for a while; ends the connection when
    /// nothing was read for `idle_timeout` (unless `reading` is off: then we are the slow
    /// side, waiting for our application, and the peer's silence means nothing).
    async fn keepalive(&mut self, reading: bool) -> Result<(), End> {
        let config = &self.shared.config;
        if reading && self.last_read.elapsed() >= config.idle_timeout {
            return Err(End::Lost(format!(
                "nothing received for {:?} (idle_timeout)",
                config.idle_timeout
            )));
        }
        if self.last_write.elapsed() >= config.heartbeat {
            self.write(&Frame::Heartbeat).await?;
        }
        Ok(())
    }

    async fn write(&mut self, frame: &Frame) -> Result<(), End> {
        self.conn
            .send(frame)
            .await
            .map_err(|e| End::Lost(format!("write failed: {e}")))?;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Runs `fut` while keeping heartbeats going and watching for the end.
    async fn wait<F: Future>(&mut self, fut: F) -> Result<F::Output, End> {
        let mut fut = std::pin::pin!(fut);
        loop {
            let shared = self.shared;
            let cancel = self.cancel.clone();
            tokio::select! {
                out = &mut fut => return Ok(out),
                _ = self.ticks.tick() => self.keepalive(false).await?,
                () = shared.closing() => return Err(End::Shutdown),
                () = Self::cancelled(cancel.as_deref()) => return Err(End::Replaced),
            }
        }
    }

    async fn exchange(&mut self) -> End {
        loop {
            if let Err(end) = self.write_queued().await {
                return end;
            }
            let (shared, lane) = (self.shared, self.lane);
            let cancel = self.cancel.clone();
            let step = tokio::select! {
                r = self.conn.read_frame() => match r {
                    Ok(Some(frame)) => {
                        self.last_read = Instant::now();
                        self.handle(frame).await
                    }
                    Ok(None) => Err(End::PeerClosed),
                    Err(ReadError::Frame(FrameError::BadMessage { id, reason, .. })) => {
                        self.last_read = Instant::now();
                        self.undecodable(id, reason).await
                    }
                    Err(e) => Err(End::Lost(e.to_string())),
                },
                () = lane.queued.notified() => Ok(()),
                _ = self.ticks.tick() => self.keepalive(true).await,
                () = shared.closing() => Err(End::Shutdown),
                () = Self::cancelled(cancel.as_deref()) => Err(End::Replaced),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn write_queued(&mut self) -> Result<(), End> {
        let window = self.shared.config.max_in_flight;
        let mut wrote = 0u64;
        {
            let mut outbox = self.lane.outbox();
            while let Some((_, frame)) = outbox.next_to_send(window) {
                self.conn.buffer(&frame);
                wrote += 1;
            }
        }
        if wrote > 0 {
            self.conn
                .flush()
                .await
                .map_err(|e| End::Lost(format!("write failed: {e}")))?;
            self.last_write = Instant::now();
            Counters::add(&self.shared.counters.written, wrote);
        }
        Ok(())
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), End> {
        let shared = self.shared;
        match frame {
            Frame::Heartbeat => Ok(()),
            Frame::Ack { id } => {
                if self.lane.outbox().answered(id).is_some() {
                    Counters::add(&shared.counters.acked, 1);
                    self.maybe_emptied();
                }
                Ok(())
            }
            Frame::Nack {
                id,
                reason,
                refusal,
            } => {
                let entry = {
                    let mut outbox = self.lane.outbox();
                    let entry = outbox.answered(id);
                    // Counted under the outbox's lock: `Status` reads both together, so a
                    // message `oldest_queued` has passed is in `nacked_total` if refused.
                    if entry.is_some() {
                        Counters::add(&shared.counters.nacked, 1);
                    }
                    entry
                };
                if let Some(entry) = entry {
                    self.maybe_emptied();
                    tracing::warn!(
                        peer = %self.peer, id, kind = entry.message.kind(), %reason, %refusal,
                        "Update channel: {} refused {} {id} ({refusal}): {reason}", self.peer, entry.message.kind()
                    );
                    let mut emit = std::pin::pin!(shared.emit(Event::Nacked {
                        id,
                        message: entry.message,
                        reason,
                        refusal,
                        peer: self.peer.name.clone(),
                    }));
                    if let Err(end) = self.wait(emit.as_mut()).await {
                        // Counted, so handed over even as this connection ends (only a
                        // closing channel stops it): the application may keep the message.
                        emit.await;
                        return Err(end);
                    }
                }
                Ok(())
            }
            Frame::Data { id, message } => {
                let verdict = shared.dedupe().arrive(self.peer.instance, id);
                match verdict {
                    Verdict::Duplicate { nack } => {
                        Counters::add(&shared.counters.duplicates, 1);
                        return self.answer(id, nack).await;
                    }
                    Verdict::New => {}
                }
                Counters::add(&shared.counters.received, 1);
                if message.sender() != self.peer.role {
                    let reason = format!(
                        "{} is sent by a {}, not by a {}",
                        message.kind(),
                        message.sender(),
                        self.peer.role
                    );
                    return self.refuse(id, reason, Refusal::Never).await;
                }
                let (delivery, reply) = Delivery::new(self.peer.clone(), id, message);
                self.wait(shared.emit(Event::Message(delivery))).await?;
                // A Delivery dropped unanswered acknowledges (see its Drop); a closed reply
                // only happens when the events receiver is gone with it.
                let answer = self.wait(reply).await?.unwrap_or(None);
                // Our application was the slow side; the peer was not silent.
                self.last_read = Instant::now();
                match answer {
                    None => self.answer(id, None).await,
                    Some((reason, refusal)) => self.refuse(id, reason, refusal).await,
                }
            }
            Frame::Refuse { reason } => Err(End::Lost(format!("the peer refused: {reason}"))),
            Frame::Hello(_) | Frame::Accept => Err(End::Lost(format!(
                "protocol error: {} after the handshake",
                kind(&frame)
            ))),
        }
    }

    /// A data frame whose message this build cannot read: refused, never redelivered.
    async fn undecodable(&mut self, id: u64, reason: String) -> Result<(), End> {
        let verdict = self.shared.dedupe().arrive(self.peer.instance, id);
        match verdict {
            Verdict::Duplicate { nack } => self.answer(id, nack).await,
            Verdict::New => {
                self.refuse(
                    id,
                    format!("cannot decode the message: {reason}"),
                    Refusal::Never,
                )
                .await
            }
        }
    }

    async fn refuse(&mut self, id: u64, reason: String, refusal: Refusal) -> Result<(), End> {
        tracing::warn!(peer = %self.peer, id, %reason, %refusal, "Update channel: refusing message {id} ({refusal}): {reason}");
        self.shared
            .dedupe()
            .refused(self.peer.instance, id, &reason, refusal);
        self.answer(id, Some((reason, refusal))).await
    }

    async fn answer(&mut self, id: u64, nack: Answer) -> Result<(), End> {
        let frame = match nack {
            None => Frame::Ack { id },
            Some((reason, refusal)) => Frame::Nack {
                id,
                reason,
                refusal,
            },
        };
        self.write(&frame).await
    }

    fn maybe_emptied(&self) {
        if self.lane.outbox().len() == 0 {
            self.shared.emptied.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Role;

    fn hello(min: u16, max: u16) -> Hello {
        Hello {
            protocol_version: max,
            min_protocol_version: min,
            role: Role::Migrator,
            name: "m".into(),
            instance: 1,
            purpose: Default::default(),
        }
    }

    #[test]
    fn versions_negotiate_to_the_newest_common_one() {
        assert_eq!(negotiate(&(1..=1), &hello(1, 1)), Ok(1));
        assert_eq!(negotiate(&(1..=3), &hello(2, 5)), Ok(3));
        assert_eq!(negotiate(&(2..=4), &hello(1, 2)), Ok(2));
        let e = negotiate(&(1..=1), &hello(2, 3)).unwrap_err();
        assert_eq!(
            e,
            "no common Update protocol version: migrator m speaks 2..=3, this end speaks 1..=1; \
             run proxy and migrator builds whose versions overlap"
        );
        assert!(negotiate(&(3..=4), &hello(1, 2)).is_err());
        assert!(negotiate(&(1..=4), &hello(3, 2)).is_err(), "an empty range");
    }
}
