//! The CQL native protocol, versions 3, 4 and 5, as a pure library (no async runtime).
//!
//! # Layout
//! - [`wire`]: the spec's primitive notations (`[int]`, `[string]`, `[value]`, `[vint]` …) as
//!   small `read_*`/`write_*` pairs.
//! - [`protocol`]: versions, direction, header flags, opcodes and consistency levels.
//! - [`request`]: request bodies, one module per opcode (STARTUP, OPTIONS, REGISTER, AUTH_RESPONSE …).
//! - [`response`]: response bodies, one module per opcode (ERROR, READY, SUPPORTED, EVENT …).

pub mod protocol;
pub mod request;
pub mod response;
pub mod wire;

pub use protocol::{Consistency, Direction, Opcode, ProtocolVersion};
