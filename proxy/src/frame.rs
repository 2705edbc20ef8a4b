//! Buffered socket I/O in whole envelopes, for both sides of the proxy: [`FrameReader`] turns
//! bytes into envelopes (bare, or inside v5 segments); an [`Outbox`] is a socket's output buffer,
//! which producers encode into and which goes out in one write — coalescing many envelopes per
//! syscall is what keeps the proxy's CPU per request below a plain relay's.
//!
//! # Layout
//! - [`Stream`], [`ReadIo`], [`WriteIo`]: the socket (plain or TLS) and its halves.
//! - [`FrameReader`]: envelopes and malformed input; [`FrameReader::buffered`] says where a read
//!   batch ends.
//! - [`Outbox`], [`OutSender`], [`Holding`]: the output buffer, its senders, and a batch's hold
//!   on it; [`run_writer`], the one writer task per socket, writes what a producer could not.
//!
//! A request crosses no channel: the session task parses a read's worth of requests, encodes
//! each into the backend's outbox, and at the end of the batch writes them to the cluster itself;
//! the backend's reader task does the same with the answers for the client. The writer task
//! runs only when a socket is full (or is TLS), and producers wait while an outbox holds more
//! than its high-water mark, so back-pressure reaches the socket being read.
//!
//! Bodies are never decompressed here: a v3/v4 body compressed by the client is forwarded as is
//! to clusters that negotiated the same algorithm (the proxy relays the client's STARTUP), and
//! only opened when routing needs to look inside ([`crate::route`]).
//!
//! Framing changes once per connection, right after the answer to STARTUP (v5 segments). The
//! owner switches the reader itself and queues [`Outgoing::Switch`] in the outbox.
//!
//! A connection is a [`Stream`]: plain TCP or TLS. [`Stream::split`] gives the reader and the
//! writer their halves; plain TCP keeps sharing one socket through its `&self` readiness API
//! (no lock on the hot path), TLS goes through `tokio::io::split` because both directions drive
//! one rustls state machine.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes, BytesMut};
use ferry_cql::envelope::{Envelope, EnvelopeHeader, HEADER_LEN, HeaderError};
use ferry_cql::protocol::{Direction, ProtocolVersion, RESPONSE_BIT};
use ferry_cql::segment::{EnvelopeReassembler, SegmentCodec, SegmentError, SegmentWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsStream;

/// Read buffer taken when the socket is readable; grows to the largest envelope seen. An idle
/// connection holds none (see [`FrameReader::next`]).
const READ_BUFFER: usize = 16 * 1024;

/// A connection's byte stream, after any TLS handshake.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    /// Boxed: rustls's state is large, and plain connections should not carry its size.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The reader's and the writer's halves.
    pub(crate) fn split(self) -> (ReadIo, WriteIo) {
        match self {
            Self::Plain(socket) => {
                let socket = Arc::new(socket);
                (ReadIo::Plain(socket.clone()), WriteIo::Plain(socket))
            }
            Self::Tls(tls) => {
                let (r, w) = tokio::io::split(*tls);
                (ReadIo::Tls(r), WriteIo::Tls(w))
            }
        }
    }

    /// This end's address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Plain(socket) => socket.local_addr(),
            Self::Tls(tls) => tls.get_ref().0.local_addr(),
        }
    }
}

/// The read side of a [`Stream`].
#[derive(Debug)]
pub(crate) enum ReadIo {
    Plain(Arc<TcpStream>),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

impl ReadIo {
    /// Waits until a plain socket is readable, so the caller takes a read buffer only then;
    /// TLS reads wait inside [`ReadIo::read_buf`].
    async fn ready(&self) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.readable().await,
            Self::Tls(_) => Ok(()),
        }
    }

    /// Reads what is available into `buf`; `Ok(0)` at end of stream. A plain socket may answer
    /// `WouldBlock` after a spurious readiness wake-up (the caller waits and reads again).
    async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => read_draining(socket, buf),
            Self::Tls(tls) => tls.read_buf(buf).await,
        }
    }
}

/// Empty read buffers of readers waiting for input, at most this many per thread: the next
/// reader to wake on the thread takes one, still in cache, instead of allocating.
const SPARE_READ_BUFFERS: usize = 8;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A whole empty read buffer: a spare one of this thread's, or a new one.
fn read_buffer() -> BytesMut {
    SPARE
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| BytesMut::with_capacity(READ_BUFFER))
}

/// Keeps `buf` (empty) for the next reader on this thread, when it can hold a whole read
/// again without allocating (no envelope body still shares it), has not grown for a large
/// envelope, and the spares are not full.
fn spare_read_buffer(mut buf: BytesMut) {
    if buf.capacity() == 0 || !buf.try_reclaim(READ_BUFFER) || buf.capacity() > 2 * READ_BUFFER {
        return;
    }
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARE_READ_BUFFERS {
            spare.push(buf);
        }
    });
}

/// One read into the spare capacity of `buf`. A read shorter than that space drained the
/// socket, so its readiness is cleared now, as tokio's own `poll_read` does (mio's epoll is
/// edge-triggered): the next wait goes straight to epoll instead of first trying a read that
/// can only fail with EAGAIN — one syscall saved per batch of envelopes.
fn read_draining(socket: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let space = buf.capacity() - buf.len();
    let mut got = 0;
    let read = socket.try_io(Interest::READABLE, || match socket.try_read_buf(buf) {
        Ok(n) if n > 0 && n < space => {
            got = n;
            // Data was read: returning WouldBlock only clears the readiness (tokio keeps any
            // readiness that arrived since this call began).
            Err(io::ErrorKind::WouldBlock.into())
        }
        other => other,
    });
    match read {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// The write side of a [`Stream`].
#[derive(Debug)]
pub(crate) enum WriteIo {
    Plain(Arc<TcpStream>),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl WriteIo {
    /// Writes all of `buf` (and, for TLS, flushes the records it became).
    pub(crate) async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(socket) => write_all(socket, buf).await,
            Self::Tls(tls) => {
                tls.write_all(buf).await?;
                tls.flush().await
            }
        }
    }

    /// Ends the stream cleanly: TLS sends close_notify, so the peer can tell an end from a
    /// truncation. A plain socket closes when both halves are dropped.
    async fn finish(&mut self) {
        if let Self::Tls(tls) = self {
            let _ = tls.shutdown().await;
        }
    }
}

/// How envelopes travel on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Bare envelopes (v3/v4, and every version before STARTUP is answered).
    Envelopes,
    /// v5 segments, LZ4-compressed if `lz4`.
    Segments { lz4: bool },
}

/// One unit of input.
#[derive(Debug)]
pub(crate) enum Inbound {
    Envelope(Envelope),
    /// Input that gets a PROTOCOL_ERROR; `fatal` when the byte stream cannot be resynchronised
    /// and the connection must close after the answer.
    Malformed {
        stream: i16,
        /// The version to answer in; `None` when the header could not be read.
        version: Option<ProtocolVersion>,
        /// A v1/v2 header (8 bytes, one-byte stream), answered in its own layout.
        legacy: Option<u8>,
        message: String,
        fatal: bool,
    },
}

/// Reads envelopes off one socket.
#[derive(Debug)]
pub(crate) struct FrameReader {
    io: ReadIo,
    buf: BytesMut,
    framing: Framing,
    /// Requests from clients, responses from clusters: the other direction is a peer's bug.
    direction: Direction,
    max_body_len: usize,
    /// Bytes of a refused envelope (too long, unknown opcode) still to skip.
    discard: usize,
    /// Segment mode: envelopes and errors already decoded from received segments.
    pending: VecDeque<Inbound>,
    reassembler: EnvelopeReassembler,
    /// Set after a fatal error: nothing more is read.
    done: bool,
}

impl FrameReader {
    pub(crate) fn new(io: ReadIo, direction: Direction, max_body_len: usize) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            framing: Framing::Envelopes,
            direction,
            max_body_len,
            discard: 0,
            pending: VecDeque::new(),
            reassembler: EnvelopeReassembler::new(max_body_len),
            done: false,
        }
    }

    pub(crate) fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
    }

    /// The next envelope or error; `Ok(None)` at end of stream. Cancel-safe: state changes
    /// happen between reads, so it can sit in a `select!`.
    pub(crate) async fn next(&mut self) -> io::Result<Option<Inbound>> {
        loop {
            if let Some(item) = self.buffered() {
                return Ok(Some(item));
            }
            if self.done {
                return Ok(None);
            }
            if self.buf.is_empty() {
                // Nothing partial is kept: the buffer goes back while waiting, so an idle
                // connection costs none.
                spare_read_buffer(std::mem::take(&mut self.buf));
            }
            self.io.ready().await?;
            if self.buf.is_empty() {
                self.buf = read_buffer();
            } else if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(READ_BUFFER);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => {
                    self.done = true;
                    return Ok(None);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next envelope or error already in the buffer, without touching the socket; `None`
    /// when the next one needs a read (the end of a read batch).
    pub(crate) fn buffered(&mut self) -> Option<Inbound> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            if let Some(item) = self.decode() {
                return Some(item);
            }
            if self.pending.is_empty() {
                return None;
            }
        }
    }

    /// Decodes what the buffer holds; `None` when more bytes are needed.
    fn decode(&mut self) -> Option<Inbound> {
        if self.discard > 0 {
            let n = self.discard.min(self.buf.len());
            self.buf.advance(n);
            self.discard -= n;
            if self.discard > 0 {
                return None;
            }
        }
        match self.framing {
            Framing::Envelopes => self.decode_envelope(),
            Framing::Segments { lz4 } => {
                self.decode_segments(SegmentCodec::new(lz4));
                None
            }
        }
    }

    fn decode_envelope(&mut self) -> Option<Inbound> {
        // The version is judged from the first byte, as Cassandra does: a v1/v2 header is only
        // 8 bytes long, so waiting for 9 could wait forever.
        if let Some(&first) = self.buf.first() {
            let version = first & !RESPONSE_BIT;
            if ProtocolVersion::try_from(version).is_err() {
                let stream_end = if matches!(version, 1 | 2) { 3 } else { 4 };
                if self.buf.len() < stream_end {
                    return None;
                }
                let stream = match version {
                    1 | 2 => i16::from(self.buf[2]),
                    _ => i16::from_be_bytes([self.buf[2], self.buf[3]]),
                };
                self.done = true;
                return Some(Inbound::Malformed {
                    stream,
                    version: None,
                    legacy: matches!(version, 1 | 2).then_some(version),
                    message: invalid_version_message(version),
                    fatal: true,
                });
            }
        }
        let header = match EnvelopeHeader::decode(&self.buf, self.max_body_len) {
            Ok(Some(h)) => h,
            Ok(None) => return None,
            Err(e) => return Some(self.refuse_header(e)),
        };
        let total = HEADER_LEN + header.length as usize;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return None;
        }
        self.buf.advance(HEADER_LEN);
        let body = take_body(&mut self.buf, total - HEADER_LEN);
        Some(self.check(Envelope { header, body }))
    }

    /// Turns a header that cannot be accepted into an answer, skipping its body when the
    /// length field can be trusted.
    fn refuse_header(&mut self, e: HeaderError) -> Inbound {
        let length = self
            .buf
            .get(5..9)
            .map_or(0, |l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
        let (stream, version, message) = match e {
            HeaderError::UnknownOpcode {
                opcode,
                stream,
                version,
            } => (stream, version, format!("Unknown opcode {opcode}")),
            HeaderError::BodyTooLong {
                length,
                max,
                stream,
                version,
            } => (
                stream,
                version,
                format!(
                    "Request is too big: length {} exceeds maximum allowed length {max}.",
                    length + HEADER_LEN as u64
                ),
            ),
            other => {
                self.done = true;
                return Inbound::Malformed {
                    stream: 0,
                    version: None,
                    legacy: None,
                    message: other.to_string(),
                    fatal: true,
                };
            }
        };
        self.discard = HEADER_LEN + length;
        Inbound::Malformed {
            stream,
            version: Some(version),
            legacy: None,
            message,
            fatal: false,
        }
    }

    fn decode_segments(&mut self, codec: SegmentCodec) {
        loop {
            let segment = match codec.decode(&mut self.buf) {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e) => {
                    // A bad header CRC means the length cannot be trusted: nothing after it can
                    // be framed. A bad payload was consumed and the next segment starts cleanly.
                    let fatal = matches!(e, SegmentError::HeaderCrc { .. });
                    self.done |= fatal;
                    self.pending.push_back(Inbound::Malformed {
                        stream: 0,
                        version: Some(ProtocolVersion::V5),
                        legacy: None,
                        message: e.to_string(),
                        fatal,
                    });
                    if fatal {
                        return;
                    }
                    continue;
                }
            };
            let mut out = Vec::new();
            let result = self.reassembler.push(segment, &mut out);
            for env in out {
                let checked = self.check(env);
                self.pending.push_back(checked);
            }
            if let Err(e) = result {
                if self.reassembler.in_progress() {
                    self.reassembler = EnvelopeReassembler::new(self.max_body_len);
                }
                let stream = match &e {
                    SegmentError::Envelope(
                        HeaderError::UnknownOpcode { stream, .. }
                        | HeaderError::BodyTooLong { stream, .. },
                    ) => *stream,
                    _ => 0,
                };
                self.pending.push_back(Inbound::Malformed {
                    stream,
                    version: Some(ProtocolVersion::V5),
                    legacy: None,
                    message: e.to_string(),
                    fatal: false,
                });
            }
        }
    }

    fn check(&self, env: Envelope) -> Inbound {
        if env.header.direction == self.direction {
            return Inbound::Envelope(env);
        }
        Inbound::Malformed {
            stream: env.header.stream,
            version: Some(env.header.version),
            legacy: None,
            message: format!(
                "Wrong protocol direction (expected {:?}, got {:?})",
                self.direction, env.header.direction
            ),
            fatal: false,
        }
    }
}

/// Cassandra's wording for a version it does not speak (`ProtocolVersion.invalidVersionMessage`);
/// drivers look for "unsupported protocol version" in it to downgrade.
pub(crate) fn invalid_version_message(version: u8) -> String {
    format!(
        "Invalid or unsupported protocol version ({version}); supported versions are (3/v3, 4/v4, 5/v5)"
    )
}

/// Bodies up to this long are copied out of the read buffer rather than split off it.
const COPIED_BODY_MAX: usize = 1024;

/// The first `len` bytes of `buf`, taken out of it. A small body is copied into an allocation
/// of its own: splitting it off would share the read buffer, and every split and every drop of
/// a shared buffer's handle is an atomic read-modify-write (50-100 cycles under load), more
/// than copying a few hundred bytes; an unshared buffer is also reused in place.
fn take_body(buf: &mut BytesMut, len: usize) -> Bytes {
    if len > COPIED_BODY_MAX {
        return buf.split_to(len).freeze();
    }
    let body = Bytes::from(buf[..len].to_vec());
    buf.advance(len);
    body
}

/// Something for a writer task to send.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Envelope(Envelope),
    /// Pre-encoded bytes sent as they are (v1/v2 refusals).
    Raw(Bytes),
    /// Use this framing for everything after the previous item.
    Switch(Framing),
}

impl Outgoing {
    /// Bytes it adds to the output (before segment framing).
    fn encoded_len(&self) -> usize {
        match self {
            Self::Envelope(env) => env.encoded_len(),
            Self::Raw(bytes) => bytes.len(),
            Self::Switch(_) => 0,
        }
    }
}

/// How much may wait in an [`Outbox`] before producers wait for the writer: the back-pressure
/// bound (plus the one envelope that crosses it, and the chunk being written).
const OUTBOX_HIGH_WATER: usize = 512 * 1024;
/// Bounds of what an empty outbox reserves for its next batch (see `OutState::batch_hint`).
const MIN_BATCH_RESERVE: usize = 1024;
const MAX_BATCH_RESERVE: usize = 64 * 1024;

/// A socket's output: producers encode into one buffer under a lock, and the socket's writer
/// task is woken only when the buffer goes from empty to non-empty — no channel operation per
/// envelope. A producer working through a batch of input [`Outbox::hold`]s the outbox, so the
/// writer is not woken for each envelope; at the end of the batch it writes what the batch
/// queued itself (plain TCP, when the writer is not mid-write), so under load an envelope costs
/// no task switch at all. Producers wait while more than [`OUTBOX_HIGH_WATER`] bytes wait.
///
/// `X` is what the same lock also guards for the socket's owner: a backend connection's
/// stream-id table, so that sending a request takes one lock, not two.
#[derive(Debug)]
pub(crate) struct Outbox<X = ()> {
    state: Mutex<OutState<X>>,
    /// Wakes the writer task: something to write, or the last sender is gone.
    wake: Notify,
    /// Wakes producers waiting for room.
    room: Notify,
    /// The socket, for writing inline from a producer; `None` for TLS (one rustls state
    /// machine, driven by the writer task alone) and for a shared socket.
    direct: Option<Arc<TcpStream>>,
    /// Live [`OutSender`]s: the writer ends once none is left and everything is written.
    /// Outside the lock: every request's reply holds a sender.
    senders: AtomicUsize,
}

#[derive(Debug)]
struct OutState<X> {
    /// Encoded bytes waiting for the socket (v5: whole segments).
    buf: BytesMut,
    framing: Framing,
    /// v5: envelopes waiting to fill a segment; flushed into `buf` before each write.
    segments: SegmentWriter,
    /// Bytes accepted and not yet handed to a write.
    queued: usize,
    /// The writer task is writing bytes it took out of `buf`.
    writing: bool,
    /// Producers in the middle of a batch, who write (or wake the writer) at its end.
    holds: usize,
    /// The socket failed: nothing more is accepted.
    failed: bool,
    /// Bytes recent batches written from an emptied buffer held (a decaying maximum, capped):
    /// twice this is what the next one reserves at once.
    batch_hint: usize,
    /// The owner's state under the same lock (see [`Outbox`]).
    extra: X,
}

/// The socket behind an [`Outbox`] failed, or its writer is gone.
#[derive(Debug)]
pub(crate) struct OutboxClosed;

impl Outbox {
    /// An outbox for `io` and the one sender that keeps its writer running.
    pub(crate) fn open(io: &WriteIo) -> OutSender {
        Self::open_with(io, true, ())
    }
}

/// What [`Outbox::try_push_with`] did.
#[derive(Debug)]
pub(crate) enum Pushed<E> {
    /// Encoded under the stream id `take` gave.
    Queued,
    /// The owner's state refused it (`take`'s error): nothing queued.
    Refused(E),
    /// The socket failed or its writer is gone; `take` ran.
    Closed,
    /// `take` ran and gave this stream id, but the outbox is above its high-water mark:
    /// nothing queued.
    Full(i16),
}

impl<X> Outbox<X> {
    /// [`Outbox::open`] for a socket whose owner keeps `extra` under the outbox's lock;
    /// `inline_writes` false for a socket several sessions write to: the last holder of a batch
    /// wakes the writer task instead of writing, so batches of sessions that run in the same
    /// scheduler pass leave in one write.
    pub(crate) fn open_with(io: &WriteIo, inline_writes: bool, extra: X) -> OutSender<X> {
        let direct = match io {
            WriteIo::Plain(socket) if inline_writes => Some(socket.clone()),
            WriteIo::Plain(_) | WriteIo::Tls(_) => None,
        };
        OutSender(Arc::new(Self {
            state: Mutex::new(OutState {
                buf: BytesMut::new(),
                framing: Framing::Envelopes,
                segments: SegmentWriter::new(SegmentCodec::new(false)),
                queued: 0,
                writing: false,
                holds: 0,
                failed: false,
                batch_hint: MIN_BATCH_RESERVE,
                extra,
            }),
            senders: AtomicUsize::new(1),
            wake: Notify::new(),
            room: Notify::new(),
            direct,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, OutState<X>> {
        // Every update leaves the state consistent between statements; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encodes `item` into the buffer, waiting while it is above the high-water mark.
    async fn push(&self, mut item: Outgoing) -> Result<(), OutboxClosed> {
        // The fast path takes the lock once and registers no waiter: the outbox is rarely full.
        // `room` checks again after registering its waiter, so room made in between is not
        // missed; another producer may take it first, hence the loop.
        loop {
            item = match self.try_push(item) {
                Ok(pushed) => return pushed,
                Err(item) => item,
            };
            self.room().await;
        }
    }

    /// Encodes `item` unless the outbox is above its high-water mark (then hands it back, having
    /// made sure the writer runs).
    fn try_push(&self, item: Outgoing) -> Result<Result<(), OutboxClosed>, Outgoing> {
        let mut s = self.lock();
        if s.failed {
            return Ok(Err(OutboxClosed));
        }
        if s.queued >= OUTBOX_HIGH_WATER {
            // Full: the writer must run whatever batch holds it back.
            if !s.writing {
                self.wake.notify_one();
            }
            return Err(item);
        }
        self.encode_item_locked(&mut s, item);
        Ok(Ok(()))
    }

    /// The owner's state, under the outbox's lock.
    pub(crate) fn extra(&self) -> Extra<'_, X> {
        Extra(self.lock())
    }

    /// Queues an envelope the caller keeps under the stream id `take` gives (from the owner's
    /// state, under the same lock): encoded from the reference, so neither the envelope nor
    /// its body is copied or counted. When the outbox is above its high-water mark the id is
    /// taken and nothing is queued ([`Pushed::Full`]).
    pub(crate) fn try_push_with<E>(
        &self,
        env: &Envelope,
        take: impl FnOnce(&mut X) -> Result<i16, E>,
    ) -> Pushed<E> {
        let mut s = self.lock();
        let stream = match take(&mut s.extra) {
            Ok(stream) => stream,
            Err(e) => return Pushed::Refused(e),
        };
        if s.failed {
            return Pushed::Closed;
        }
        if s.queued >= OUTBOX_HIGH_WATER {
            if !s.writing {
                self.wake.notify_one();
            }
            return Pushed::Full(stream);
        }
        let mut header = env.header;
        header.stream = stream;
        self.encode_locked(&mut s, env.encoded_len(), |framing, segments, buf| {
            encode_envelope(&header.encode(), &env.body, framing, segments, buf)
        });
        Pushed::Queued
    }

    /// Encodes `item` at once, above the high-water mark too. For producers that cannot wait
    /// per item (answers completed on a backend's reader task): they wait for [`Outbox::room`]
    /// between read batches instead, so the excess is bounded by one batch.
    pub(crate) fn push_now(&self, item: Outgoing) -> Result<(), OutboxClosed> {
        let mut s = self.lock();
        if s.failed {
            return Err(OutboxClosed);
        }
        self.encode_item_locked(&mut s, item);
        Ok(())
    }

    /// [`Outbox::push_now`] for many envelopes, under one lock.
    /// Takes them out of `envelopes` (which keeps its capacity).
    pub(crate) fn push_now_all(&self, envelopes: &mut Vec<Envelope>) -> Result<(), OutboxClosed> {
        let mut s = self.lock();
        if s.failed {
            return Err(OutboxClosed);
        }
        for env in envelopes.drain(..) {
            self.encode_item_locked(&mut s, Outgoing::Envelope(env));
        }
        Ok(())
    }

    fn encode_item_locked(&self, s: &mut OutState<X>, item: Outgoing) {
        self.encode_locked(s, item.encoded_len(), |framing, segments, buf| {
            encode(item, framing, segments, buf)
        });
    }

    /// Runs `write` (which adds `len` bytes before segment framing) on the buffer, and wakes
    /// the writer when it is due.
    fn encode_locked(
        &self,
        s: &mut OutState<X>,
        len: usize,
        write: impl FnOnce(&mut Framing, &mut SegmentWriter, &mut BytesMut) -> Result<(), SegmentError>,
    ) {
        let was_empty = s.queued == 0;
        let OutState {
            buf,
            framing,
            segments,
            queued,
            batch_hint,
            ..
        } = s;
        if buf.capacity() == 0 {
            // One allocation for the whole batch instead of a doubling series of reallocations
            // (each copying what the batch holds so far): twice the last batch, because
            // batches vary and a batch one byte larger than the last would copy it all.
            buf.reserve(len.max(*batch_hint * 2));
        }
        let before = buf.len();
        if let Err(e) = write(framing, segments, buf) {
            tracing::warn!(error = %e, "dropping an envelope that cannot be framed");
        }
        // Segments hold envelopes back until the next flush: count them too.
        *queued += (buf.len() - before).max(len);
        if was_empty && !s.writing && s.holds == 0 {
            self.wake.notify_one();
        }
    }

    /// Waits while the outbox holds more than its high-water mark (returns at once when it is
    /// below it, or failed).
    pub(crate) async fn room(&self) {
        // Almost always below the mark: one lock, no waiter registered and dropped.
        {
            let s = self.lock();
            if s.failed || s.queued < OUTBOX_HIGH_WATER {
                return;
            }
        }
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let s = self.lock();
                if s.failed || s.queued < OUTBOX_HIGH_WATER {
                    return;
                }
                if !s.writing {
                    self.wake.notify_one();
                }
            }
            room.await;
        }
    }

    /// Starts a batch: the writer is not woken for what is pushed until [`Outbox::release`].
    pub(crate) fn hold(&self) {
        self.lock().holds += 1;
    }

    /// Ends a batch: the last holder writes what is queued — on a plain socket right here, as
    /// far as the socket takes it without waiting; the rest (and TLS) goes to the writer task.
    pub(crate) fn release(&self) {
        let (mut out, was_full) = {
            let mut s = self.lock();
            s.holds -= 1;
            if s.holds > 0 || s.writing || s.queued == 0 || s.failed {
                return;
            }
            if self.direct.is_none() {
                drop(s);
                self.wake.notify_one();
                return;
            }
            let OutState {
                buf,
                segments,
                framing,
                batch_hint,
                ..
            } = &mut *s;
            if let Framing::Segments { .. } = framing
                && let Err(e) = segments.flush(buf)
            {
                tracing::warn!(error = %e, "dropping envelopes that cannot be framed");
            }
            // A decaying maximum: batches alternate in size (a client's outbox fed by two
            // readers, say), and sized by the last one alone, every larger batch reallocated.
            *batch_hint = buf
                .len()
                .max(*batch_hint - *batch_hint / 8)
                .clamp(MIN_BATCH_RESERVE, MAX_BATCH_RESERVE);
            // Written outside the lock, as the writer task does: the lock also guards a
            // backend's stream ids, which its reader must not wait a syscall for.
            let was_full = s.queued >= OUTBOX_HIGH_WATER;
            s.queued = 0;
            s.writing = true;
            (std::mem::take(&mut s.buf), was_full)
        };
        if let Some(socket) = &self.direct {
            while !out.is_empty() {
                match socket.try_write(&out) {
                    Ok(n) => out.advance(n),
                    // Full socket, or an error the writer task will meet and report.
                    Err(_) => break,
                }
            }
        }
        let mut s = self.lock();
        s.writing = false;
        if s.failed {
            s.buf = BytesMut::new();
            s.queued = 0;
        } else if !out.is_empty() {
            // What the socket did not take goes before what was queued meanwhile.
            s.queued += out.len();
            out.extend_from_slice(&s.buf);
            s.buf = out;
        }
        let idle = s.queued == 0;
        drop(s);
        if was_full {
            // Producers wait for room only above the mark.
            self.room.notify_waiters();
        }
        if !idle || self.senders.load(Ordering::Acquire) == 0 {
            // Producers do not wake the writer while a write is under way.
            self.wake.notify_one();
        }
    }
}

/// A handle that queues for an [`Outbox`]'s socket; the writer ends once every sender is gone
/// and what they queued is written (as with a channel's senders).
#[derive(Debug)]
pub(crate) struct OutSender<X = ()>(Arc<Outbox<X>>);

impl<X> OutSender<X> {
    /// Queues `item`; waits while the outbox is above its high-water mark.
    pub(crate) async fn send(&self, item: Outgoing) -> Result<(), OutboxClosed> {
        self.0.push(item).await
    }

    /// Queues `item` at once, above the high-water mark too (see [`Outbox::push_now`]).
    pub(crate) fn send_now(&self, item: Outgoing) -> Result<(), OutboxClosed> {
        self.0.push_now(item)
    }

    /// The outbox, for batching ([`Outbox::hold`]) without keeping the writer alive.
    pub(crate) fn outbox(&self) -> &Arc<Outbox<X>> {
        &self.0
    }
}

impl<X> Clone for OutSender<X> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Self(self.0.clone())
    }
}

impl<X> Drop for OutSender<X> {
    fn drop(&mut self) {
        // AcqRel: the writer that sees zero also sees everything the last sender queued.
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.wake.notify_one();
        }
    }
}

/// The owner's state of an [`Outbox`], borrowed under its lock.
pub(crate) struct Extra<'a, X>(MutexGuard<'a, OutState<X>>);

impl<X> std::ops::Deref for Extra<'_, X> {
    type Target = X;

    fn deref(&self) -> &X {
        &self.0.extra
    }
}

impl<X> std::ops::DerefMut for Extra<'_, X> {
    fn deref_mut(&mut self) -> &mut X {
        &mut self.0.extra
    }
}

/// An outbox whatever its owner keeps with it: what a batch holds.
pub(crate) trait Batched: Sync {
    fn hold(&self);
    fn release(&self);
}

impl<X: Send> Batched for Outbox<X> {
    fn hold(&self) {
        Outbox::hold(self);
    }

    fn release(&self) {
        Outbox::release(self);
    }
}

/// Holds outboxes for a batch of input and releases them when dropped — also when the batch's
/// future is, so a cancelled batch cannot leave a writer asleep.
pub(crate) struct Holding<'a, const N: usize>([&'a dyn Batched; N]);

impl<'a, const N: usize> Holding<'a, N> {
    pub(crate) fn hold(outboxes: [&'a dyn Batched; N]) -> Self {
        for o in outboxes {
            o.hold();
        }
        Self(outboxes)
    }
}

impl<const N: usize> Drop for Holding<'_, N> {
    fn drop(&mut self) {
        for o in self.0 {
            o.release();
        }
    }
}

/// Writes what the outbox queues until its last sender is gone and everything is written, or
/// the socket fails (returned).
pub(crate) async fn run_writer<X>(mut io: WriteIo, outbox: Arc<Outbox<X>>) -> io::Result<()> {
    let mut out = BytesMut::new();
    loop {
        let take = {
            let mut s = outbox.lock();
            if s.writing {
                // A producer's inline write is under way; it wakes this task when done.
                false
            } else if s.queued == 0 {
                if outbox.senders.load(Ordering::Acquire) == 0 {
                    break;
                }
                false
            } else {
                let OutState {
                    buf,
                    segments,
                    framing,
                    ..
                } = &mut *s;
                if let Framing::Segments { .. } = framing
                    && let Err(e) = segments.flush(buf)
                {
                    tracing::warn!(error = %e, "dropping envelopes that cannot be framed");
                }
                std::mem::swap(buf, &mut out);
                s.queued = 0;
                s.writing = true;
                true
            }
        };
        if !take {
            outbox.wake.notified().await;
            continue;
        }
        let written = io.write_all(&out).await;
        out.clear();
        let idle = {
            let mut s = outbox.lock();
            s.writing = false;
            s.failed |= written.is_err();
            if s.failed {
                s.buf = BytesMut::new();
                s.queued = 0;
            }
            s.queued == 0
        };
        outbox.room.notify_waiters();
        written?;
        if idle {
            // About to wait: an idle connection keeps no write buffer.
            out = BytesMut::new();
        }
    }
    io.finish().await;
    Ok(())
}

/// Writes `buf` through the socket's `&self` readiness API (the reader shares the socket).
async fn write_all(io: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        io.writable().await?;
        match io.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn encode(
    item: Outgoing,
    framing: &mut Framing,
    segments: &mut SegmentWriter,
    out: &mut BytesMut,
) -> Result<(), SegmentError> {
    match item {
        Outgoing::Raw(bytes) => out.extend_from_slice(&bytes),
        Outgoing::Switch(f) => {
            if let Framing::Segments { .. } = framing {
                segments.flush(out)?;
            }
            if let Framing::Segments { lz4 } = f {
                *segments = SegmentWriter::new(SegmentCodec::new(lz4));
            }
            *framing = f;
        }
        Outgoing::Envelope(env) => {
            encode_envelope(&env.header_bytes(), &env.body, framing, segments, out)?;
        }
    }
    Ok(())
}

/// An envelope given as its encoded header and its body, in the current framing.
fn encode_envelope(
    header: &[u8; HEADER_LEN],
    body: &[u8],
    framing: &Framing,
    segments: &mut SegmentWriter,
    out: &mut BytesMut,
) -> Result<(), SegmentError> {
    match *framing {
        Framing::Envelopes => {
            // One reserve for header and body, then two plain copies (`BufMut::put_slice`
            // walks its chunk loop per call).
            out.reserve(HEADER_LEN + body.len());
            out.extend_from_slice(header);
            out.extend_from_slice(body);
            Ok(())
        }
        Framing::Segments { .. } => segments.push_parts(header, body, out),
    }
}

/// An ERROR body (`[int] code [string] message`) behind a v1/v2 header (8 bytes, one-byte
/// stream), for clients too old to read a v3+ header.
pub(crate) fn legacy_error(version: u8, stream: i16, code: i32, message: &str) -> Bytes {
    let msg = message.as_bytes();
    let msg_len = msg.len().min(u16::MAX as usize);
    let body_len = 4 + 2 + msg_len;
    let mut out = BytesMut::with_capacity(8 + body_len);
    out.extend_from_slice(&[version | RESPONSE_BIT, 0, stream as u8, 0x00]);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(msg_len as u16).to_be_bytes());
    out.extend_from_slice(&msg[..msg_len]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_cql::protocol::Opcode;
    use tokio::net::TcpListener;

    /// A connected loopback pair: the proxy's end as a [`Stream`], and the peer.
    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (
            Stream::Plain(ours.expect("connect")),
            theirs.expect("accept").0,
        )
    }

    fn envelope(stream: i16, body_len: usize) -> Envelope {
        Envelope::new(
            ProtocolVersion::V4,
            Direction::Response,
            0,
            stream,
            Opcode::Result,
            Bytes::from(vec![7u8; body_len]),
        )
    }

    /// Reads `n` envelopes off the peer's socket.
    async fn read_envelopes(peer: TcpStream, n: usize) -> Vec<Envelope> {
        read_envelopes_from(Stream::Plain(peer), n).await
    }

    async fn read_envelopes_from(stream: Stream, n: usize) -> Vec<Envelope> {
        let io = stream.split().0;
        let mut reader = FrameReader::new(io, Direction::Response, 1 << 20);
        let mut got = Vec::new();
        while got.len() < n {
            match reader.next().await.expect("read") {
                Some(Inbound::Envelope(env)) => got.push(env),
                other => panic!("expected an envelope, got {other:?}"),
            }
        }
        got
    }

    #[test]
    fn a_spare_read_buffer_is_reused_only_when_nothing_shares_it() {
        SPARE.with_borrow_mut(Vec::clear);
        // A body split off the buffer shares its storage: the buffer is not kept.
        let mut buf = read_buffer();
        buf.extend_from_slice(&[1u8; 5000]);
        let body = buf.split_to(5000).freeze();
        spare_read_buffer(buf);
        assert!(
            SPARE.with_borrow(Vec::is_empty),
            "shared with a body: not kept"
        );
        // A buffer whose envelopes were copied out is kept, and comes back whole.
        let mut buf = read_buffer();
        buf.extend_from_slice(&[2u8; 100]);
        buf.advance(100);
        spare_read_buffer(buf);
        assert_eq!(SPARE.with_borrow(Vec::len), 1);
        let mut again = read_buffer();
        assert!(SPARE.with_borrow(Vec::is_empty));
        assert!(again.is_empty() && again.capacity() >= READ_BUFFER);
        again.extend_from_slice(&[3u8; 5000]);
        assert!(body.iter().all(|&b| b == 1), "the split body is untouched");
        // One grown for a large envelope is not kept, nor more than the bound.
        spare_read_buffer(BytesMut::with_capacity(10 * READ_BUFFER));
        assert!(SPARE.with_borrow(Vec::is_empty));
        for _ in 0..SPARE_READ_BUFFERS + 3 {
            spare_read_buffer(BytesMut::with_capacity(READ_BUFFER));
        }
        assert_eq!(SPARE.with_borrow(Vec::len), SPARE_READ_BUFFERS);
    }

    #[tokio::test]
    async fn copied_and_split_bodies_come_out_whole_and_in_order() {
        use tokio::io::AsyncWriteExt as _;
        let (ours, mut peer) = pair().await;
        // Each side of the copy bound, an empty body, and a body much larger than it.
        let lens = [
            10,
            COPIED_BODY_MAX,
            COPIED_BODY_MAX + 1,
            0,
            500,
            5 * COPIED_BODY_MAX,
            3,
        ];
        let mut wire = Vec::new();
        for (i, len) in lens.iter().enumerate() {
            let body: Vec<u8> = (0..*len).map(|b| (b % 251) as u8 ^ i as u8).collect();
            let env = Envelope::new(
                ProtocolVersion::V4,
                Direction::Response,
                0,
                i as i16,
                Opcode::Result,
                Bytes::from(body),
            );
            env.write_to(&mut wire);
        }
        // One write: the reader finds them all in one buffer.
        peer.write_all(&wire).await.expect("write");
        let got = read_envelopes_from(ours, lens.len()).await;
        for (i, (env, len)) in got.iter().zip(lens).enumerate() {
            let want: Vec<u8> = (0..len).map(|b| (b % 251) as u8 ^ i as u8).collect();
            assert_eq!(env.stream(), i as i16);
            assert_eq!(
                &env.body[..],
                &want[..],
                "envelope {i}, body of {len} bytes"
            );
        }
    }

    #[tokio::test]
    async fn a_held_outbox_is_written_by_its_holder_at_release_in_order() {
        let (ours, peer) = pair().await;
        let (_read, write) = ours.split();
        let tx = Outbox::open(&write);
        let writer = tokio::spawn(run_writer(write, tx.outbox().clone()));
        let outbox = tx.outbox().clone();
        {
            let _batch = Holding::hold([&*outbox]);
            for stream in 0..3 {
                tx.send(Outgoing::Envelope(envelope(stream, 10)))
                    .await
                    .expect("send");
            }
            let s = outbox.lock();
            assert!(s.queued > 0 && !s.writing, "held: queued, not written");
        }
        assert_eq!(
            outbox.lock().queued,
            0,
            "the release wrote the batch itself"
        );
        let got = read_envelopes(peer, 3).await;
        let streams: Vec<_> = got.iter().map(|e| e.stream()).collect();
        assert_eq!(streams, [0, 1, 2]);
        drop(tx);
        writer.await.expect("writer task").expect("writer");
    }

    /// Two threads' batches on one socket, with the inline writes at release outside the lock
    /// and the writer task taking over whenever the socket is full: every envelope arrives
    /// whole, and each producer's in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_leave_whole_and_in_order_when_the_socket_fills() {
        const PER_PRODUCER: i16 = 3000;
        let (ours, peer) = pair().await;
        let (_read, write) = ours.split();
        let tx = Outbox::open(&write);
        let writer = tokio::spawn(run_writer(write, tx.outbox().clone()));
        let producers: Vec<_> = (0..2i16)
            .map(|p| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut next = 0;
                    while next < PER_PRODUCER {
                        let outbox = tx.outbox().clone();
                        let _batch = Holding::hold([&*outbox]);
                        for _ in 0..7.min(PER_PRODUCER - next) {
                            // Now and then a body larger than the kernel's buffers.
                            let len = if next % 97 == 0 { 300_000 } else { 40 };
                            let env = envelope(p * PER_PRODUCER + next, len);
                            tx.send(Outgoing::Envelope(env)).await.expect("send");
                            next += 1;
                        }
                    }
                })
            })
            .collect();
        // The peer starts late, so the kernel's buffers fill and inline writes come up short.
        let got = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            read_envelopes(peer, 2 * PER_PRODUCER as usize).await
        });
        for p in producers {
            p.await.expect("producer");
        }
        let got = got.await.expect("reader");
        let mut expect = [0, PER_PRODUCER];
        for env in &got {
            let p = usize::from(env.stream() >= PER_PRODUCER);
            assert_eq!(env.stream(), expect[p], "producer {p}'s envelopes in order");
            expect[p] += 1;
            assert!(env.body.iter().all(|&b| b == 7), "a whole body");
        }
        assert_eq!(expect, [PER_PRODUCER, 2 * PER_PRODUCER]);
        drop(tx);
        writer.await.expect("writer task").expect("writer");
    }

    #[tokio::test]
    async fn a_batch_pushed_at_once_goes_out_whole_and_in_order() {
        let (ours, peer) = pair().await;
        let (_read, write) = ours.split();
        let tx = Outbox::open(&write);
        let writer = tokio::spawn(run_writer(write, tx.outbox().clone()));
        let mut batch: Vec<_> = (0..3).map(|stream| envelope(stream, 10)).collect();
        tx.outbox().push_now_all(&mut batch).expect("open outbox");
        assert!(batch.is_empty(), "the envelopes were taken out");
        assert!(batch.capacity() >= 3, "the vector keeps its capacity");
        let got = read_envelopes(peer, 3).await;
        let streams: Vec<_> = got.iter().map(|e| e.stream()).collect();
        assert_eq!(streams, [0, 1, 2]);
        drop(tx);
        writer.await.expect("writer task").expect("writer");
    }

    #[tokio::test]
    async fn producers_wait_above_the_high_water_mark_until_the_peer_reads() {
        let (ours, peer) = pair().await;
        let (_read, write) = ours.split();
        let tx = Outbox::open(&write);
        let writer = tokio::spawn(run_writer(write, tx.outbox().clone()));
        const BODY: usize = 64 * 1024;
        // The peer reads nothing: the kernel's buffers fill, then the outbox.
        let mut sent = 0;
        let waiting = loop {
            assert!(sent < 2000, "no back-pressure after {sent} envelopes");
            let mut push = Box::pin(tx.send(Outgoing::Envelope(envelope(0, BODY))));
            let done = tokio::select! {
                biased;
                r = &mut push => Some(r),
                () = std::future::ready(()) => None,
            };
            match done {
                Some(r) => {
                    r.expect("send");
                    sent += 1;
                    // Let the writer run, so the kernel buffers fill first.
                    tokio::task::yield_now().await;
                }
                None => break push,
            }
        };
        let queued = tx.outbox().lock().queued;
        assert!(
            (OUTBOX_HIGH_WATER..OUTBOX_HIGH_WATER + BODY + HEADER_LEN + 1).contains(&queued),
            "{queued} bytes queued when a producer waits"
        );
        let reading = tokio::spawn(read_envelopes(peer, sent + 1));
        waiting
            .await
            .expect("the waiting send completes once the peer reads");
        assert_eq!(reading.await.expect("reader").len(), sent + 1);
        drop(tx);
        writer.await.expect("writer task").expect("writer");
    }
}
