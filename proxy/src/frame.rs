//! Buffered socket I/O in whole envelopes, for both sides of the proxy: [`FrameReader`] turns
//! bytes into envelopes (bare, or inside v5 segments) and [`run_writer`] is the one writer task
//! per socket, which packs everything already queued into one write — coalescing many envelopes
//! per syscall is what keeps the proxy's CPU per request below a plain relay's.
//!
//! Bodies are never decompressed here: a v3/v4 body compressed by the client is forwarded as is
//! to clusters that negotiated the same algorithm (the proxy relays the client's STARTUP), and
//! only opened when routing needs to look inside ([`crate::route`]).
//!
//! Framing changes once per connection, right after the answer to STARTUP (v5 segments). The
//! owner switches the reader itself and queues [`Outgoing::Switch`] for the writer.
//!
//! A connection is a [`Stream`]: plain TCP or TLS. [`Stream::split`] gives the reader and the
//! writer their halves; plain TCP keeps sharing one socket through its `&self` readiness API
//! (no lock on the hot path), TLS goes through `tokio::io::split` because both directions drive
//! one rustls state machine.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use ferry_cql::envelope::{Envelope, EnvelopeHeader, HEADER_LEN, HeaderError};
use ferry_cql::protocol::{Direction, ProtocolVersion, RESPONSE_BIT};
use ferry_cql::segment::{EnvelopeReassembler, SegmentCodec, SegmentError, SegmentWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsStream;

/// Read buffer taken when the socket is readable; grows to the largest envelope seen. An idle
/// connection holds none (see [`FrameReader::next`]).
const READ_BUFFER: usize = 16 * 1024;
/// The writer's buffer at the start of a batch; it grows to the batch and is freed when the
/// queue is empty, so an idle connection holds none.
const WRITE_BUFFER: usize = 4 * 1024;
/// The writer stops batching once this much is encoded, so one huge batch cannot delay the
/// first envelope in it for long.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

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
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            if self.done {
                return Ok(None);
            }
            if let Some(item) = self.decode() {
                return Ok(Some(item));
            }
            if !self.pending.is_empty() {
                continue;
            }
            if self.buf.is_empty() {
                // Nothing partial is kept: give the memory back while waiting, so an idle
                // connection costs no buffer (one allocation per read batch when busy).
                self.buf = BytesMut::new();
            }
            self.io.ready().await?;
            if self.buf.capacity() - self.buf.len() < 1024 {
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
        let mut whole = self.buf.split_to(total);
        let body = whole.split_off(HEADER_LEN).freeze();
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

/// Something for a writer task to send.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Envelope(Envelope),
    /// Pre-encoded bytes sent as they are (v1/v2 refusals).
    Raw(Bytes),
    /// Use this framing for everything after the previous item.
    Switch(Framing),
}

/// Sends queued items until the queue closes, batching whatever is already queued into one
/// write. Returns the socket error that stopped it, if any.
pub(crate) async fn run_writer(
    mut io: WriteIo,
    mut rx: mpsc::Receiver<Outgoing>,
) -> io::Result<()> {
    let mut framing = Framing::Envelopes;
    let mut segments = SegmentWriter::new(SegmentCodec::new(false));
    let mut out = BytesMut::new();
    while let Some(first) = rx.recv().await {
        out.reserve(WRITE_BUFFER);
        let mut item = Some(first);
        while let Some(next) = item.take() {
            if let Err(e) = encode(next, &mut framing, &mut segments, &mut out) {
                tracing::warn!(error = %e, "dropping an envelope that cannot be framed");
            }
            if out.len() < WRITE_BATCH_BYTES {
                item = rx.try_recv().ok();
            }
        }
        if let Framing::Segments { .. } = framing
            && let Err(e) = segments.flush(&mut out)
        {
            tracing::warn!(error = %e, "dropping envelopes that cannot be framed");
        }
        io.write_all(&out).await?;
        out.clear();
        if rx.is_empty() {
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
        Outgoing::Envelope(env) => match *framing {
            Framing::Envelopes => env.write_to(out),
            Framing::Segments { .. } => segments.push(&env, out)?,
        },
    }
    Ok(())
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
