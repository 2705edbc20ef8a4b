//! One connection from the proxy to one cluster node, multiplexing many requests.
//!
//! Each client session owns one backend connection per cluster, opened with the client's own
//! protocol version and STARTUP options, so session state (keyspace, credentials, compression)
//! is the client's and bodies can be forwarded without re-encoding. With
//! `share_backend_connections`, sessions whose handshakes are identical also share a pair opened
//! the same way (`pool`): such a connection answers many clients, so its reader collects each
//! batch's answers per client outbox ([`Staged`]).
//!
//! ```text
//!  send(envelope, completion) ─► slot table: stream id ─► outbox ─► socket (written by the
//!                                   ▲  (one per id)          session at the end of its batch,
//!                                   │                         else by the writer task)
//!                                   └──── reader task: response(stream) ◄──┘
//!                                          ─► completion ─► client's outbox (written by this
//!                                             task at the end of its read batch)
//!                                          between batches: timeouts, heartbeats
//! ```
//!
//! Completions run synchronously on the reader task and queue the client's answers without
//! waiting ([`Outbox::push_now`]); the reader waits for room in the client's outbox between read
//! batches instead. One task per connection besides the writer, and no await per answer: less
//! memory per idle connection and less work per request. The reader parses a whole read batch
//! first, then releases its stream ids under one lock of the slot table and queues the client's
//! answers under one lock of the client's outbox ([`Staged`]): two locks per batch instead of
//! two per answer.
//!
//! The slot table lives under the outbox's lock (`Outbox<Slots>`): sending takes that lock once
//! for the stream id and the envelope, without a future when the outbox has room
//! ([`Backend::enqueue`]); only a full outbox makes the sender wait.
//!
//! A stream id whose request timed out stays reserved ("orphaned") until its late answer
//! arrives, so that answer can never be taken for another request's.
//!
//! Every completion passes through [`Shared::finish`], which counts the request, times it and
//! feeds the cluster's health before handing the answer on; answers read in a batch go through
//! [`Shared::finish_in`], which counts them in the reader's [`BatchMeter`] and adds the batch's
//! counts to the shared metrics once, before the reader waits again.
//!
//! When the connection dies (closed by the node, a read or write error, too many orphans),
//! every request waiting on it is failed at once and [`Backend::closed`] resolves, so the
//! session can end the client's connection and the driver reconnects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_cql::envelope::Envelope;
use ferry_cql::protocol::{Direction, Opcode, ProtocolVersion};
use ferry_cql::{Compression, wire};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::completion::{Completion, EventRoute, Staged};
use crate::error::BackendError;
use crate::frame::{
    Extra, FrameReader, Framing, Holding, Inbound, OutSender, Outbox, Outgoing, Pushed, run_writer,
};
use crate::health::Health;
use crate::metrics::{BatchMeter, ClusterMetrics, Metrics};
use crate::proxy::{Contact, connect_node};
use crate::settings::ClusterId;
use crate::signal::{Signal, SignalWait};
use crate::tls::ClusterTls;

/// Largest response body accepted from a cluster (Cassandra's own default frame limit).
const MAX_RESPONSE_BODY: usize = 256 * 1024 * 1024;
/// Stream ids available on a v3+ connection.
pub(crate) const MAX_STREAMS: usize = 32_768;

/// What a backend connection needs to know at connect time.
#[derive(Debug, Clone)]
pub(crate) struct BackendOptions {
    pub cluster: ClusterId,
    pub addr: SocketAddr,
    /// The host `addr` was resolved from: the name TLS checks.
    pub host: Arc<str>,
    /// The cluster's TLS, when it has it.
    pub tls: Option<Arc<ClusterTls>>,
    pub version: ProtocolVersion,
    pub compression: Option<Compression>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub heartbeat_interval: Duration,
    /// Shared by sessions (see `pool`): no client outbox of its own, and its batches are
    /// written by its writer task, where batches of several sessions meet.
    pub shared: bool,
    /// Where requests are counted and timed.
    pub metrics: Arc<Metrics>,
    /// Where failures count against the cluster's readiness.
    pub health: Arc<Health>,
}

/// A live connection to one node of one cluster. Dropping it closes the connection.
#[derive(Debug)]
pub(crate) struct Backend {
    opts: BackendOptions,
    tx: OutSender<Slots>,
    shared: Arc<Shared>,
    tasks: [JoinHandle<()>; 2],
}

#[derive(Debug)]
struct Shared {
    cluster: ClusterId,
    addr: SocketAddr,
    timeout: Duration,
    /// The socket's outbox, whose lock also guards the stream-id table: a request takes its
    /// id and is queued under one lock.
    outbox: Arc<Outbox<Slots>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// To read the code of a compressed ERROR answer, for its metric label.
    compression: Option<Compression>,
    /// Answers taken out of the slot table and not yet handed to their completion: still in
    /// flight for a draining session, which must not close the client's socket under them.
    delivering: AtomicUsize,
    /// Flips to true once, when the connection is gone.
    closed: watch::Sender<bool>,
    /// Raised with `closed`: what the session polls on every wake-up.
    lost: Signal,
}

#[derive(Debug)]
pub(crate) struct Slots {
    /// One per stream id ever used on this connection: grown on demand up to `limit`, so an
    /// idle connection costs a few bytes instead of `limit` slots (2048 × ~100 bytes).
    entries: Vec<Slot>,
    /// Free stream ids below `entries.len()`, used from the back.
    free: Vec<i16>,
    /// Stream ids this connection may use (`max_in_flight`, at most [`MAX_STREAMS`]).
    limit: usize,
    orphaned: usize,
    /// Set once the connection is gone: new requests fail at once with this.
    closed: Option<BackendError>,
    last_activity: Instant,
}

#[derive(Debug)]
enum Slot {
    Free,
    Busy {
        completion: Completion,
        sent: Instant,
    },
    /// Timed out; reserved until the late answer arrives.
    Orphaned,
}

impl Slots {
    fn new(limit: usize) -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            limit: limit.clamp(1, MAX_STREAMS),
            orphaned: 0,
            closed: None,
            last_activity: Instant::now(),
        }
    }

    fn in_flight(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// A free stream id (its slot is `Free`, for the caller to fill): a freed one, else a new
    /// one while under the limit.
    fn next_id(&mut self) -> Option<i16> {
        if let Some(stream) = self.free.pop() {
            return Some(stream);
        }
        if self.entries.len() >= self.limit {
            return None;
        }
        self.entries.push(Slot::Free);
        // `limit` ≤ MAX_STREAMS = 32768, so every index fits a non-negative i16.
        Some((self.entries.len() - 1) as i16)
    }

    fn release(
        &mut self,
        stream: i16,
        meter: &ClusterMetrics,
        batch: &mut BatchMeter,
    ) -> Option<(Completion, Instant)> {
        let slot = self.entries.get_mut(usize::try_from(stream).ok()?)?;
        match std::mem::replace(slot, Slot::Free) {
            Slot::Busy { completion, sent } => {
                self.free.push(stream);
                meter.released_in(batch);
                Some((completion, sent))
            }
            Slot::Orphaned => {
                self.orphaned -= 1;
                self.free.push(stream);
                meter.orphan_released(1);
                None
            }
            Slot::Free => None,
        }
    }

    /// Marks the table closed with `error` and empties every slot; returns the requests that
    /// were waiting. `None` if it was closed already.
    fn shut(&mut self, error: BackendError, meter: &ClusterMetrics) -> Option<Vec<Completion>> {
        if self.closed.is_some() {
            return None;
        }
        self.closed = Some(error);
        let mut busy = Vec::new();
        let mut orphaned = 0;
        for slot in &mut self.entries {
            match std::mem::replace(slot, Slot::Free) {
                Slot::Busy { completion, .. } => busy.push(completion),
                Slot::Orphaned => orphaned += 1,
                Slot::Free => {}
            }
        }
        self.orphaned = 0;
        // Nothing is sent any more: every id is free, and what is left in flight is what the
        // caller fails.
        self.free = (0..self.entries.len() as i16).rev().collect();
        meter.released_many(busy.len(), orphaned);
        meter.disconnected();
        Some(busy)
    }
}

impl Backend {
    /// Connects and sends the client's STARTUP; returns the connection and the cluster's answer
    /// to STARTUP (READY, AUTHENTICATE or an ERROR). v5 connections switch to segments after it.
    pub(crate) async fn connect(
        opts: BackendOptions,
        startup_body: Bytes,
        events: EventRoute,
        answers: Option<Arc<Outbox>>,
    ) -> Result<(Self, Envelope), BackendError> {
        let (metrics, health, cluster) = (opts.metrics.clone(), opts.health.clone(), opts.cluster);
        let connected = Self::open(opts, startup_body, events, answers).await;
        match &connected {
            Ok(_) => {
                health.answered(cluster);
                metrics.cluster(cluster).connected();
            }
            Err(e) => {
                health.failed(e);
                metrics.cluster(cluster).connect_failed();
            }
        }
        connected
    }

    async fn open(
        opts: BackendOptions,
        startup_body: Bytes,
        events: EventRoute,
        answers: Option<Arc<Outbox>>,
    ) -> Result<(Self, Envelope), BackendError> {
        let connect_error = |reason: String| BackendError::Connect {
            cluster: opts.cluster,
            addr: opts.addr,
            reason: reason.into(),
        };
        let contact = Contact {
            addr: opts.addr,
            host: opts.host.clone(),
        };
        let connecting = connect_node(&contact, opts.tls.as_deref(), connect_socket(opts.addr));
        let stream = tokio::time::timeout(opts.connect_timeout, connecting)
            .await
            .map_err(|_| connect_error(format!("no connection within {:?}", opts.connect_timeout)))?
            .map_err(|e| connect_error(e.to_string()))?;
        let (read, mut io) = stream.split();
        let mut reader = FrameReader::new(read, Direction::Response, MAX_RESPONSE_BODY);

        // The handshake's first exchange happens before the tasks exist: the framing may change
        // right after it.
        let startup = Envelope::new(
            opts.version,
            Direction::Request,
            0,
            0,
            Opcode::Startup,
            startup_body,
        );
        let mut out = BytesMut::with_capacity(startup.encoded_len());
        startup.write_to(&mut out);
        let answer = tokio::time::timeout(opts.connect_timeout, async {
            io.write_all(&out).await?;
            reader.next().await
        })
        .await
        .map_err(|_| {
            connect_error(format!(
                "no answer to STARTUP within {:?}",
                opts.connect_timeout
            ))
        })?
        .map_err(|e| connect_error(e.to_string()))?;
        let answer = match answer {
            Some(Inbound::Envelope(env)) => env,
            Some(Inbound::Malformed { message, .. }) => {
                return Err(connect_error(format!("bad answer to STARTUP: {message}")));
            }
            None => return Err(connect_error("closed during STARTUP".to_owned())),
        };

        let tx = Outbox::open_with(&io, !opts.shared, Slots::new(opts.max_in_flight));
        if opts.version.uses_segments() && answer.header.opcode != Opcode::Error {
            let framing = Framing::Segments {
                lz4: opts.compression == Some(Compression::Lz4),
            };
            reader.set_framing(framing);
            // Nothing is queued yet, so the switch applies to everything sent.
            let _ = tx.send(Outgoing::Switch(framing)).await;
        }
        let shared = Arc::new(Shared {
            cluster: opts.cluster,
            addr: opts.addr,
            timeout: opts.request_timeout,
            outbox: tx.outbox().clone(),
            metrics: opts.metrics.clone(),
            health: opts.health.clone(),
            compression: opts.compression,
            delivering: AtomicUsize::new(0),
            closed: watch::Sender::new(false),
            lost: Signal::default(),
        });
        let writer = {
            let shared = shared.clone();
            let outbox = tx.outbox().clone();
            tokio::spawn(async move {
                if let Err(e) = run_writer(io, outbox).await {
                    shared.close(format!("write failed: {e}"));
                }
            })
        };
        let reader_task = {
            let shared = shared.clone();
            let tx = tx.clone();
            let loop_opts = LoopOptions {
                version: opts.version,
                compression: opts.compression,
                heartbeat: opts.heartbeat_interval,
            };
            tokio::spawn(async move {
                let reason =
                    read_loop(&shared, reader, events, answers.as_deref(), tx, loop_opts).await;
                shared.close(reason);
            })
        };
        Ok((
            Self {
                opts,
                tx,
                shared,
                tasks: [writer, reader_task],
            },
            answer,
        ))
    }

    /// Where requests wait for the socket: held by a session through a batch of requests.
    pub(crate) fn outbox(&self) -> &Outbox<Slots> {
        self.tx.outbox()
    }

    /// What the connection was opened with.
    pub(crate) fn options(&self) -> &BackendOptions {
        &self.opts
    }

    /// False once the connection is gone.
    pub(crate) fn is_open(&self) -> bool {
        !*self.shared.closed.borrow()
    }

    /// Answers taken off the connection and not yet queued for their clients (see
    /// [`Backend::in_flight`]).
    pub(crate) fn delivering(&self) -> usize {
        self.shared.delivering.load(Ordering::Acquire)
    }

    /// Requests sent and not yet answered (timed-out ones count until their late answer).
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.lock().in_flight() + self.shared.delivering.load(Ordering::Acquire)
    }

    /// Closes a connection nothing is sent on any more (a shared one whose partner died, see
    /// `pool`): unlike a loss, not a failure of its cluster. What is still in flight on it
    /// fails as on a loss.
    pub(crate) fn retire(&self) {
        let e = BackendError::ConnectionLost {
            cluster: self.opts.cluster,
            addr: self.opts.addr,
            reason: "its shared partner connection was lost".into(),
        };
        let pending = self.shared.lock().shut(e.clone(), self.shared.meter());
        if let Some(pending) = pending {
            self.shared
                .delivering
                .fetch_add(pending.len(), Ordering::AcqRel);
            for completion in pending {
                self.shared
                    .finish(completion, Err(e.clone()), Duration::ZERO);
                self.shared.delivering.fetch_sub(1, Ordering::AcqRel);
            }
            self.shared.closed.send_replace(true);
            self.shared.lost.raise();
        }
        // The socket closes with its tasks.
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Resolves once the connection is gone or this handle dropped; does not borrow it.
    pub(crate) fn gone(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shared.closed.subscribe();
        async move {
            // An error: the sender went with the connection's last task.
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }

    /// Resolves once the connection is gone (at once if it already is); cheap to poll again
    /// and again from one task.
    pub(crate) fn closed(&self) -> SignalWait<'_> {
        self.shared.lost.wait()
    }

    /// Sends a request; its answer (or failure) goes to `completion`, exactly once. Waits only
    /// while the connection's outbox is above its high-water mark.
    pub(crate) async fn send(&self, envelope: Envelope, completion: Completion) {
        if let Some(full) = self.enqueue(&envelope, completion, Instant::now()) {
            self.send_full(full).await;
        }
    }

    /// The rest of [`Backend::send`] after [`Backend::enqueue`] found the outbox full: waits
    /// for room.
    pub(crate) async fn send_full(&self, full: Full) {
        if self.tx.send(full.0).await.is_err() {
            // The writer is gone; close() completes every slot, this one included.
            self.shared.close("writer stopped".to_owned());
        }
    }

    /// [`Backend::send`] without a future when the outbox has room (the usual case: the hot
    /// path builds no nested futures); `Some` when the caller must finish with
    /// [`Backend::send_full`]. `sent` times the request: a batch of requests read together
    /// shares one clock reading. The envelope is encoded from the reference (a dual write
    /// keeps its halves for a re-prepare) and copied only when the outbox is full.
    pub(crate) fn enqueue(
        &self,
        envelope: &Envelope,
        completion: Completion,
        sent: Instant,
    ) -> Option<Full> {
        let meter = self.shared.meter();
        let (cluster, addr) = (self.opts.cluster, self.opts.addr);
        let take = |slots: &mut Slots| {
            if let Some(e) = &slots.closed {
                Err((e.clone(), completion))
            } else if let Some(stream) = slots.next_id() {
                slots.entries[stream as usize] = Slot::Busy { completion, sent };
                slots.last_activity = slots.last_activity.max(sent);
                meter.sent();
                Ok(stream)
            } else {
                let e = BackendError::StreamsExhausted {
                    cluster,
                    addr,
                    limit: slots.limit,
                };
                Err((e, completion))
            }
        };
        match self.tx.outbox().try_push_with(envelope, take) {
            Pushed::Queued => None,
            Pushed::Refused((e, completion)) => {
                self.shared.finish(completion, Err(e), Duration::ZERO);
                None
            }
            Pushed::Closed => {
                // The writer is gone; close() completes every slot, this one included.
                self.shared.close("writer stopped".to_owned());
                None
            }
            Pushed::Full(stream) => {
                let mut envelope = envelope.clone();
                envelope.set_stream(stream);
                Some(Full(Outgoing::Envelope(envelope)))
            }
        }
    }

    /// Sends a request and waits for its answer.
    pub(crate) async fn request(&self, envelope: Envelope) -> Result<Envelope, BackendError> {
        let (tx, rx) = oneshot::channel();
        self.send(envelope, Completion::Reply(tx)).await;
        rx.await.unwrap_or_else(|_| {
            Err(BackendError::ConnectionLost {
                cluster: self.opts.cluster,
                addr: self.opts.addr,
                reason: "the connection closed".into(),
            })
        })
    }
}

/// A request whose stream id is taken and which waits for room in a full outbox.
#[derive(Debug)]
#[must_use = "the request is sent only by `Backend::send_full`"]
pub(crate) struct Full(Outgoing);

impl Drop for Backend {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // The session is over: whoever still waits is gone with it, so the requests are
        // dropped unanswered; only the gauges need settling.
        let e = BackendError::ConnectionLost {
            cluster: self.opts.cluster,
            addr: self.opts.addr,
            reason: "the client's session ended".into(),
        };
        let meter = self.shared.meter();
        let abandoned = self.shared.lock().shut(e, meter);
        drop(abandoned);
    }
}

impl Shared {
    fn lock(&self) -> Extra<'_, Slots> {
        self.outbox.extra()
    }

    fn meter(&self) -> &ClusterMetrics {
        self.metrics.cluster(self.cluster)
    }

    /// [`Shared::finish`] for an answer read in a batch: counted and timed in `batch`, the
    /// client's answer collected in `staged`.
    fn finish_in(
        &self,
        batch: &mut BatchMeter,
        staged: &mut Staged,
        completion: Completion,
        env: Envelope,
        elapsed: Duration,
    ) {
        self.health.answered(self.cluster);
        let result = Ok(env);
        if let Some(class) = completion.class() {
            self.meter()
                .completed_in(batch, class, &result, elapsed, self.compression);
        }
        completion.complete_in(result, elapsed, Some(staged));
    }

    /// Counts, times and judges one request's outcome, then hands it to its completion.
    fn finish(
        &self,
        completion: Completion,
        result: Result<Envelope, BackendError>,
        elapsed: Duration,
    ) {
        match &result {
            Ok(_) => self.health.answered(self.cluster),
            Err(e) => self.health.failed(e),
        }
        if let Some(class) = completion.class() {
            self.meter()
                .completed(class, &result, elapsed, self.compression);
        }
        completion.complete(result, elapsed);
    }

    /// Marks the connection closed and fails every request still waiting on it.
    fn close(&self, reason: String) {
        let closed = BackendError::ConnectionLost {
            cluster: self.cluster,
            addr: self.addr,
            reason: reason.clone().into(),
        };
        let pending = {
            let Some(pending) = self.lock().shut(closed.clone(), self.meter()) else {
                return;
            };
            // The loss itself is a failure of the cluster, even with nothing in flight.
            self.health.failed(&closed);
            self.delivering.fetch_add(pending.len(), Ordering::AcqRel);
            pending
        };
        tracing::debug!(cluster = %self.cluster, addr = %self.addr, %reason, "backend connection closed");
        let e = BackendError::ConnectionLost {
            cluster: self.cluster,
            addr: self.addr,
            reason: reason.into(),
        };
        for completion in pending {
            self.finish(completion, Err(e.clone()), Duration::ZERO);
            self.delivering.fetch_sub(1, Ordering::AcqRel);
        }
        self.closed.send_replace(true);
        self.lost.raise();
    }
}

/// The connection's one task besides the writer: reads answers and events, and between read
/// batches fails requests that outlived the timeout and sends heartbeats. Returns why the
/// connection ended.
async fn read_loop(
    shared: &Shared,
    mut reader: FrameReader,
    events: EventRoute,
    answers: Option<&Outbox>,
    tx: OutSender<Slots>,
    opts: LoopOptions,
) -> String {
    let LoopOptions {
        version,
        compression,
        heartbeat,
    } = opts;
    let tick = (shared.timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    // Every `tick` while requests are in flight; with none, only for the next heartbeat, and
    // at least every `timeout`: a request sent meanwhile is then still younger than the
    // timeout, and ticks resume, so it expires at most a tick late, as with steady ticks.
    // An idle connection wakes the proxy a few times a minute instead of every tick.
    let sweep_at = tokio::time::sleep(tick);
    tokio::pin!(sweep_at);
    // Answers found in one read are queued for their clients together and written at the end
    // of the batch, from this task (see `Outbox` and `Staged`); events are held with them.
    let mut batch = None;
    // One clock reading per read batch: its answers arrived together.
    let mut now = Instant::now();
    let mut meter = shared.meter().batch_meter();
    // The answers of one read batch, released from the slot table under one lock; kept from
    // batch to batch while busy, given back on a sweep tick without a batch since the last.
    let mut held = BatchVecs::default();
    let mut busy = false;
    loop {
        let item = match reader.buffered() {
            Some(item) => Ok(Some(item)),
            None => {
                busy |= !held.answers.is_empty();
                deliver(shared, &mut held, now, &mut meter);
                batch = None;
                // Answers are queued for their clients without waiting (see
                // `Outbox::push_now`): a client that does not read stops this reader here,
                // between batches.
                held.staged.room().await;
                if let Some(answers) = answers {
                    answers.room().await;
                }
                // The tick first, without drawing a random number per wake-up: a connection
                // that always has input still sweeps.
                let item = tokio::select! {
                    biased;
                    () = &mut sweep_at => {
                        let was_busy = std::mem::take(&mut busy);
                        if !was_busy {
                            // Idle since the last tick: no memory kept for batches.
                            held = BatchVecs::default();
                            meter.idle();
                        }
                        // Not `now`, the batch's clock reading, which this does not move.
                        let woke = tokio::time::Instant::now();
                        let next = match sweep(shared, &tx, version, heartbeat) {
                            Err(reason) => return reason,
                            Ok(Some(heartbeat_due)) if !was_busy => {
                                heartbeat_due.clamp(woke + tick, woke + shared.timeout.max(tick))
                            }
                            Ok(_) => woke + tick,
                        };
                        sweep_at.as_mut().reset(next);
                        continue;
                    }
                    item = reader.next() => item,
                };
                now = Instant::now();
                item
            }
        };
        if batch.is_none()
            && let Some(answers) = answers
        {
            batch = Some(Holding::hold([answers]));
        }
        let env = match item {
            Ok(Some(Inbound::Envelope(env))) => env,
            Ok(Some(Inbound::Malformed { message, fatal, .. })) => {
                tracing::warn!(cluster = %shared.cluster, addr = %shared.addr, %message, "malformed response");
                if fatal {
                    deliver(shared, &mut held, now, &mut meter);
                    return format!("malformed response: {message}");
                }
                continue;
            }
            Ok(None) => {
                deliver(shared, &mut held, now, &mut meter);
                return "closed by the cluster".to_owned();
            }
            Err(e) => {
                deliver(shared, &mut held, now, &mut meter);
                return format!("read failed: {e}");
            }
        };
        if env.stream() < 0 {
            // In order with the answers read before it.
            deliver(shared, &mut held, now, &mut meter);
            events.deliver(env, compression);
            continue;
        }
        held.answers.push((env, None));
    }
}

/// An answer read in the current batch, and once its stream id is released, who waits for it
/// and since when.
type Answer = (Envelope, Option<(Completion, Instant)>);

/// The reader's vectors for one read batch: its answers, and those for each client's outbox.
#[derive(Debug, Default)]
struct BatchVecs {
    answers: Vec<Answer>,
    staged: Staged,
}

/// Releases the stream ids of `answers` (one lock for all of them) and hands each to its
/// completion; empties `answers`.
fn deliver(shared: &Shared, held: &mut BatchVecs, now: Instant, meter: &mut BatchMeter) {
    let BatchVecs { answers, staged } = held;
    if answers.is_empty() {
        return;
    }
    meter.batch(answers.len());
    let released = {
        let mut slots = shared.lock();
        slots.last_activity = now;
        let mut released = 0;
        for (env, done) in answers.iter_mut() {
            *done = slots.release(env.stream(), shared.meter(), meter);
            released += usize::from(done.is_some());
        }
        shared.delivering.fetch_add(released, Ordering::AcqRel);
        released
    };
    for (env, done) in answers.drain(..) {
        if let Some((completion, sent)) = done {
            let elapsed = now.saturating_duration_since(sent);
            shared.finish_in(meter, staged, completion, env, elapsed);
        }
    }
    // Counted before the answers leave: a client that reads `/metrics` after its answer sees
    // the request in it.
    meter.flush();
    staged.flush();
    // Every answer is queued for its client: a draining session may close now.
    shared.delivering.fetch_sub(released, Ordering::AcqRel);
}

/// What the reader task needs besides its sockets.
#[derive(Debug, Clone, Copy)]
struct LoopOptions {
    version: ProtocolVersion,
    compression: Option<Compression>,
    heartbeat: Duration,
}

/// Fails requests that outlived the timeout and keeps an idle connection alive with OPTIONS;
/// `Err(reason)` when the connection must end. With nothing in flight after it, when the next
/// heartbeat is due: until then only a new request gives the sweep work.
fn sweep(
    shared: &Shared,
    tx: &OutSender<Slots>,
    version: ProtocolVersion,
    heartbeat: Duration,
) -> Result<Option<tokio::time::Instant>, String> {
    let now = Instant::now();
    let (expired, idle, too_many_orphans, heartbeat_due) = {
        let mut slots = shared.lock();
        if slots.closed.is_some() {
            return Err("closed".to_owned());
        }
        let mut expired = Vec::new();
        if slots.in_flight() > slots.orphaned {
            for slot in slots.entries.iter_mut() {
                if let Slot::Busy { sent, .. } = slot
                    && now.duration_since(*sent) >= shared.timeout
                    && let Slot::Busy { completion, .. } = std::mem::replace(slot, Slot::Orphaned)
                {
                    expired.push(completion);
                }
            }
            slots.orphaned += expired.len();
            for _ in &expired {
                shared.meter().orphaned();
            }
        }
        let idle = slots.in_flight() == 0 && now.duration_since(slots.last_activity) >= heartbeat;
        if idle {
            slots.last_activity = now;
        }
        // Only with nothing in flight (the heartbeat just queued counts): else ticks go on.
        let heartbeat_due = (slots.in_flight() == 0 && !idle)
            .then(|| tokio::time::Instant::from_std(slots.last_activity + heartbeat));
        (
            expired,
            idle,
            slots.orphaned * 2 > slots.limit,
            heartbeat_due,
        )
    };
    for completion in expired {
        let e = BackendError::Timeout {
            cluster: shared.cluster,
            addr: shared.addr,
            timeout: shared.timeout,
        };
        shared.finish(completion, Err(e), shared.timeout);
    }
    if too_many_orphans {
        return Err("more than half of the stream ids timed out".to_owned());
    }
    if idle {
        heartbeat_once(shared, tx, version);
    }
    Ok(heartbeat_due)
}

/// Sends OPTIONS on an idle connection; its answer is dropped.
fn heartbeat_once(shared: &Shared, tx: &OutSender<Slots>, version: ProtocolVersion) {
    let stream = {
        let mut slots = shared.lock();
        let Some(stream) = slots.next_id() else {
            return;
        };
        slots.entries[stream as usize] = Slot::Busy {
            completion: Completion::Discard,
            sent: Instant::now(),
        };
        shared.meter().sent();
        stream
    };
    let env = Envelope::new(
        version,
        Direction::Request,
        0,
        stream,
        Opcode::Options,
        Bytes::new(),
    );
    let _ = tx.send_now(Outgoing::Envelope(env));
}

/// A connected socket with TCP keepalive on, so a silently dead peer (a cut cable, a dropped
/// NAT entry) is noticed even when heartbeats are off.
async fn connect_socket(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_keepalive(true)?;
    socket.set_nodelay(true)?;
    socket.connect(addr).await
}

/// Reads the `[string]` event type at the start of an EVENT body.
pub(crate) fn event_type(body: &[u8]) -> Option<&str> {
    let mut buf = body;
    wire::read_string(&mut buf, "event type").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// A node that answers STARTUP with READY and each OPTIONS with SUPPORTED, counting the
    /// OPTIONS (the proxy's heartbeats).
    async fn counting_node() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let options = Arc::new(AtomicUsize::new(0));
        let counted = options.clone();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut header = [0u8; ferry_cql::envelope::HEADER_LEN];
            while socket.read_exact(&mut header).await.is_ok() {
                let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
                let mut body = vec![0u8; len as usize];
                socket.read_exact(&mut body).await.expect("body");
                let answer = match Opcode::try_from(header[4]) {
                    Ok(Opcode::Startup) => Opcode::Ready,
                    Ok(Opcode::Options) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                        Opcode::Supported
                    }
                    other => panic!("unexpected request {other:?}"),
                };
                // READY has an empty body; an empty string multimap is two zero bytes.
                let body: &[u8] = if answer == Opcode::Ready {
                    &[]
                } else {
                    &[0, 0]
                };
                let stream = i16::from_be_bytes([header[2], header[3]]);
                let mut out = Vec::new();
                Envelope::new(
                    ProtocolVersion::V4,
                    Direction::Response,
                    0,
                    stream,
                    answer,
                    Bytes::copy_from_slice(body),
                )
                .write_to(&mut out);
                socket.write_all(&out).await.expect("answer");
            }
        });
        (addr, options)
    }

    /// An idle connection sleeps until its heartbeat is due instead of sweeping every tick,
    /// and still sends each heartbeat on time.
    #[tokio::test]
    async fn an_idle_connection_sends_its_heartbeats_on_time() {
        let (addr, options) = counting_node().await;
        let opts = BackendOptions {
            cluster: ClusterId::Origin,
            addr,
            host: Arc::from("127.0.0.1"),
            tls: None,
            version: ProtocolVersion::V4,
            compression: None,
            connect_timeout: Duration::from_secs(5),
            // A 100 ms tick, so heartbeats are not held back by it.
            request_timeout: Duration::from_millis(400),
            max_in_flight: 16,
            heartbeat_interval: Duration::from_millis(300),
            shared: false,
            metrics: Arc::new(Metrics::new().expect("metrics")),
            health: Arc::new(Health::new(3)),
        };
        let (backend, ready) = Backend::connect(opts, Bytes::new(), EventRoute::Drop, None)
            .await
            .expect("connect");
        assert_eq!(ready.header.opcode, Opcode::Ready);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let heartbeats = options.load(Ordering::Relaxed);
        // One per 300 ms of idleness, each a tick late at most: 5 or 6 in 2 s.
        assert!(
            (4..=8).contains(&heartbeats),
            "{heartbeats} heartbeats in 2 s"
        );
        drop(backend);
    }

    #[test]
    fn stream_ids_grow_on_demand_up_to_the_limit_and_are_reused() {
        let mut slots = Slots::new(3);
        assert!(
            slots.entries.is_empty(),
            "an idle connection holds no slots"
        );
        let ids: Vec<_> = (0..3).filter_map(|_| slots.next_id()).collect();
        assert_eq!(ids, [0, 1, 2]);
        assert_eq!(slots.next_id(), None, "the limit is 3");
        assert_eq!(slots.in_flight(), 3);
        slots.free.push(1);
        assert_eq!(slots.in_flight(), 2);
        assert_eq!(
            slots.next_id(),
            Some(1),
            "a freed id is used before the table grows"
        );
        assert_eq!(slots.entries.len(), 3);
    }
}
