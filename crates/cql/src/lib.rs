//! The CQL native protocol, versions 3, 4 and 5, as a pure library (no async runtime).
//!
//! # Layout
//! - [`wire`]: the spec's primitive notations (`[int]`, `[string]`, `[value]`, `[vint]` …) as
//!   small `read_*`/`write_*` pairs.
//! - [`protocol`]: versions, direction, header flags, opcodes and consistency levels.
//! - [`envelope`]: the 9-byte header, the zero-copy [`Envelope`] (body kept as `Bytes`, stream id
//!   rewritable), the buffer decoder with a body-length cap, and body extensions (tracing id,
//!   warnings, custom payload).
//! - [`compression`]: v3/v4 body compression (LZ4, Snappy) with decompression-bomb checks.
//! - [`segment`]: v5 segments (CRC24 header, CRC32 payload, optional LZ4), packing envelopes into
//!   segments and reassembling split envelopes.
//! - [`types`]: column types (`[option]`), typed values ([`types::CqlValue`]) and CQL literals.
//! - [`request`]: request bodies, one module per opcode (STARTUP, QUERY, EXECUTE, BATCH …).
//! - [`response`]: response bodies, one module per opcode (ERROR, RESULT, SUPPORTED, EVENT …).
//! - [`statement`]: the CQL tokenizer and the statement classifier the proxy routes with.
//! - [`message`]: whole typed [`message::Request`]s and [`message::Response`]s from and to
//!   envelopes.

pub mod compression;
pub mod envelope;
pub mod message;
pub mod protocol;
pub mod request;
pub mod response;
pub mod segment;
pub mod statement;
pub mod types;
pub mod wire;

pub use compression::Compression;
pub use envelope::{Envelope, EnvelopeDecoder, EnvelopeHeader};
pub use protocol::{Consistency, Direction, Opcode, ProtocolVersion};
