//! Buffered socket I/O in whole envelopes: [`FrameReader`] turns bytes into envelopes (plain,
//! v3/v4-compressed, or inside v5 segments) and reports malformed input with what is needed to
//! answer it; [`run_writer`] is the one writer task per connection, which batches queued
//! responses into few socket writes.
//!
//! Reader and writer share one `Arc<TcpStream>` through its `&self` readiness API rather than
//! splitting it, so the session can still reach the socket to reset it (linger 0) while the
//! writer is blocked on a client that stopped reading. A TLS connection ([`ReadIo::Tls`],
//! [`WriteIo::Tls`]) keeps that property: its TLS stream runs over the same shared socket.
//!
//! Framing changes happen at one point of the stream: right after the answer to STARTUP. The
//! session switches the reader itself (the client sends nothing in the new framing before that
//! answer arrives) and queues [`Outgoing::Switch`] behind the answer for the writer.

use std::collections::VecDeque;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use ferry_cql::compression::Compression;
use ferry_cql::envelope::{Envelope, EnvelopeHeader, HEADER_LEN, HeaderError};
use ferry_cql::protocol::{Direction, ProtocolVersion, RESPONSE_BIT, flags};
use ferry_cql::segment::{EnvelopeReassembler, SegmentCodec, SegmentError, SegmentWriter};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::tls::SharedTcp;

/// The read side of a connection.
#[derive(Debug)]
pub(crate) enum ReadIo {
    Plain(Arc<TcpStream>),
    Tls(ReadHalf<TlsStream<SharedTcp>>),
}

/// The write side of a connection.
#[derive(Debug)]
pub(crate) enum WriteIo {
    Plain(Arc<TcpStream>),
    Tls(WriteHalf<TlsStream<SharedTcp>>),
}

/// The two halves of a connection, plain or TLS.
pub(crate) fn split(
    plain: &Arc<TcpStream>,
    tls: Option<TlsStream<SharedTcp>>,
) -> (ReadIo, WriteIo) {
    match tls {
        Some(tls) => {
            let (r, w) = tokio::io::split(tls);
            (ReadIo::Tls(r), WriteIo::Tls(w))
        }
        None => (ReadIo::Plain(plain.clone()), WriteIo::Plain(plain.clone())),
    }
}

/// Initial read buffer; grows to the largest envelope seen.
const READ_BUFFER: usize = 16 * 1024;
/// The writer stops batching once this much is encoded, so one huge batch cannot delay the
/// first response in it for long.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// How envelopes travel in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Bare envelopes, bodies compressed with the algorithm if set (v3/v4 after STARTUP).
    Envelopes(Option<Compression>),
    /// v5 segments, LZ4-compressed if `lz4`.
    Segments { lz4: bool },
}

/// Which header layout an error reply needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyVersion {
    Known(ProtocolVersion),
    /// v1/v2: an 8-byte header with a one-byte stream, so old clients can read the refusal.
    Legacy(u8),
}

/// One unit of input for the session.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A whole request envelope, decompressed.
    Envelope(Envelope),
    /// Input that gets a PROTOCOL_ERROR; `fatal` when the byte stream cannot be resynchronised
    /// and the connection must close after the answer.
    Malformed {
        stream: i16,
        reply: Option<ReplyVersion>,
        message: String,
        fatal: bool,
    },
}

/// Reads envelopes off one connection.
#[derive(Debug)]
pub(crate) struct FrameReader {
    io: ReadIo,
    buf: BytesMut,
    framing: Framing,
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
    pub(crate) fn new(io: ReadIo, max_body_len: usize) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_BUFFER),
            framing: Framing::Envelopes(None),
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

    /// The next envelope or error; `Ok(None)` at end of stream. Cancel-safe: all state changes
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
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(READ_BUFFER);
            }
            let read = match &mut self.io {
                ReadIo::Plain(io) => {
                    io.readable().await?;
                    io.try_read_buf(&mut self.buf)
                }
                ReadIo::Tls(io) => io.read_buf(&mut self.buf).await,
            };
            match read {
                // A peer that hangs up mid-envelope gets no answer: nobody would read it.
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
            Framing::Envelopes(compression) => self.decode_envelope(compression),
            Framing::Segments { lz4 } => {
                self.decode_segments(SegmentCodec::new(lz4));
                None
            }
        }
    }

    fn decode_envelope(&mut self, compression: Option<Compression>) -> Option<Inbound> {
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
                return Some(self.refuse_version(version, stream));
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
        Some(check_envelope(
            Envelope { header, body },
            compression,
            self.max_body_len,
        ))
    }

    /// Turns a header that cannot be accepted into an answer, skipping its body when the
    /// length field can be trusted.
    fn refuse_header(&mut self, e: HeaderError) -> Inbound {
        let length = self
            .buf
            .get(5..9)
            .map_or(0, |l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
        match e {
            HeaderError::UnsupportedVersion {
                version, stream, ..
            } => {
                self.done = true;
                let reply = match version {
                    1 | 2 => ReplyVersion::Legacy(version),
                    // Cassandra answers any other version in the connection's version, which
                    // before STARTUP is its preferred one (v5); the session overrides it once a
                    // version is established.
                    _ => ReplyVersion::Known(ProtocolVersion::HIGHEST),
                };
                let stream = match version {
                    1 | 2 => i16::from(self.buf[2]),
                    _ => stream,
                };
                Inbound::Malformed {
                    stream,
                    reply: Some(reply),
                    message: invalid_version_message(version),
                    fatal: true,
                }
            }
            HeaderError::UnknownOpcode {
                opcode,
                stream,
                version,
            } => {
                self.discard = HEADER_LEN + length;
                Inbound::Malformed {
                    stream,
                    reply: Some(ReplyVersion::Known(version)),
                    message: format!("Unknown opcode {opcode}"),
                    fatal: false,
                }
            }
            HeaderError::BodyTooLong {
                length,
                max,
                stream,
                version,
            } => {
                self.discard = HEADER_LEN + length as usize;
                Inbound::Malformed {
                    stream,
                    reply: Some(ReplyVersion::Known(version)),
                    message: format!(
                        "Request is too big: length {} exceeds maximum allowed length {max}.",
                        length + HEADER_LEN as u64
                    ),
                    fatal: false,
                }
            }
            other => {
                self.done = true;
                Inbound::Malformed {
                    stream: 0,
                    reply: None,
                    message: other.to_string(),
                    fatal: true,
                }
            }
        }
    }

    /// A version this server does not speak: answered, then the connection closes.
    fn refuse_version(&mut self, version: u8, stream: i16) -> Inbound {
        self.done = true;
        let reply = match version {
            1 | 2 => ReplyVersion::Legacy(version),
            // Cassandra answers any other version in the connection's version, which before
            // STARTUP is its preferred one (v5); the session overrides it once a version is
            // established.
            _ => ReplyVersion::Known(ProtocolVersion::HIGHEST),
        };
        Inbound::Malformed {
            stream,
            reply: Some(reply),
            message: invalid_version_message(version),
            fatal: true,
        }
    }

    fn decode_segments(&mut self, codec: SegmentCodec) {
        loop {
            let segment = match codec.decode(&mut self.buf) {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e @ SegmentError::HeaderCrc { .. }) => {
                    // The length field cannot be trusted: nothing after this can be framed.
                    self.done = true;
                    self.pending.push_back(Inbound::Malformed {
                        stream: 0,
                        reply: None,
                        message: e.to_string(),
                        fatal: true,
                    });
                    return;
                }
                Err(e) => {
                    // The segment was consumed; the next one starts cleanly.
                    self.pending.push_back(Inbound::Malformed {
                        stream: 0,
                        reply: None,
                        message: e.to_string(),
                        fatal: false,
                    });
                    continue;
                }
            };
            let mut out = Vec::new();
            let result = self.reassembler.push(segment, &mut out);
            for env in out {
                self.pending
                    .push_back(check_envelope(env, None, self.max_body_len));
            }
            if let Err(e) = result {
                if self.reassembler.in_progress() {
                    // Drop the half-built envelope so the next segment starts afresh.
                    self.reassembler = EnvelopeReassembler::new(self.max_body_len);
                }
                let (stream, message) = match &e {
                    SegmentError::Envelope(HeaderError::UnknownOpcode {
                        opcode, stream, ..
                    }) => (*stream, format!("Unknown opcode {opcode}")),
                    SegmentError::Envelope(HeaderError::BodyTooLong {
                        length,
                        max,
                        stream,
                        ..
                    }) => (
                        *stream,
                        format!(
                            "Request is too big: length {} exceeds maximum allowed length {max}.",
                            length + HEADER_LEN as u64
                        ),
                    ),
                    other => (0, other.to_string()),
                };
                self.pending.push_back(Inbound::Malformed {
                    stream,
                    reply: None,
                    message,
                    fatal: false,
                });
            }
        }
    }
}

/// Checks direction and decompresses one complete envelope.
fn check_envelope(env: Envelope, compression: Option<Compression>, max: usize) -> Inbound {
    let stream = env.header.stream;
    let reply = Some(ReplyVersion::Known(env.header.version));
    if env.header.direction != Direction::Request {
        return Inbound::Malformed {
            stream,
            reply,
            message: "Wrong protocol direction (expected REQUEST, got RESPONSE)".to_owned(),
            fatal: false,
        };
    }
    if !env.header.has_flag(flags::COMPRESSION) {
        return Inbound::Envelope(env);
    }
    let Some(algorithm) = compression else {
        return Inbound::Malformed {
            stream,
            reply,
            message: "Received a compressed envelope but no compression was negotiated".to_owned(),
            fatal: false,
        };
    };
    match env.decompressed(algorithm, max) {
        Ok(env) => Inbound::Envelope(env),
        Err(e) => Inbound::Malformed {
            stream,
            reply,
            message: format!("Cannot decompress the request body: {e}"),
            fatal: false,
        },
    }
}

/// Cassandra's wording for a version it does not speak (`ProtocolVersion.invalidVersionMessage`);
/// drivers look for "unsupported protocol version" in it to downgrade.
pub(crate) fn invalid_version_message(version: u8) -> String {
    format!(
        "Invalid or unsupported protocol version ({version}); supported versions are (3/v3, 4/v4, 5/v5)"
    )
}

/// Something for the writer task to send.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Envelope(Envelope),
    /// Pre-encoded bytes sent as they are (v1/v2 refusals).
    Raw(Bytes),
    /// Use this framing for everything after the previous item.
    Switch(Framing),
}

/// Sends queued items until the queue closes, batching whatever is already queued into one
/// write.
pub(crate) async fn run_writer(
    mut io: WriteIo,
    mut rx: mpsc::Receiver<Outgoing>,
) -> io::Result<()> {
    let mut framing = Framing::Envelopes(None);
    let mut segments = SegmentWriter::new(SegmentCodec::new(false));
    let mut out = BytesMut::with_capacity(READ_BUFFER);
    while let Some(first) = rx.recv().await {
        let mut item = Some(first);
        while let Some(next) = item.take() {
            if let Err(e) = encode(next, &mut framing, &mut segments, &mut out) {
                tracing::warn!(error = %e, "dropping a response that cannot be framed");
            }
            if out.len() < WRITE_BATCH_BYTES {
                item = rx.try_recv().ok();
            }
        }
        if let Framing::Segments { .. } = framing
            && let Err(e) = segments.flush(&mut out)
        {
            tracing::warn!(error = %e, "dropping responses that cannot be framed");
        }
        match &mut io {
            WriteIo::Plain(io) => write_all(io, &out).await?,
            WriteIo::Tls(io) => {
                io.write_all(&out).await?;
                io.flush().await?;
            }
        }
        out.clear();
    }
    if let WriteIo::Tls(io) = &mut io {
        // close_notify, so the client can tell an end from a truncation.
        let _ = io.shutdown().await;
    }
    Ok(())
}

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
) -> Result<(), String> {
    match item {
        Outgoing::Raw(bytes) => out.extend_from_slice(&bytes),
        Outgoing::Switch(f) => {
            if let Framing::Segments { .. } = framing {
                segments.flush(out).map_err(|e| e.to_string())?;
            }
            if let Framing::Segments { lz4 } = f {
                *segments = SegmentWriter::new(SegmentCodec::new(lz4));
            }
            *framing = f;
        }
        Outgoing::Envelope(env) => match *framing {
            Framing::Envelopes(None) => env.write_to(out),
            Framing::Envelopes(Some(c)) => {
                env.compressed(c).map_err(|e| e.to_string())?.write_to(out)
            }
            Framing::Segments { .. } => segments.push(&env, out).map_err(|e| e.to_string())?,
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
