//! The CQL native protocol, versions 3, 4 and 5, as a pure library (no async runtime).
//!
//! # Layout
//! - [`wire`]: the spec's primitive notations (`[int]`, `[string]`, `[value]`, `[vint]` …) as
//!   small `read_*`/`write_*` pairs.
//! - [`protocol`]: versions, direction, header flags, opcodes and consistency levels.
//! - [`statement`]: the CQL tokenizer and the statement classifier the proxy routes with.

pub mod protocol;
pub mod statement;
pub mod wire;

pub use protocol::{Consistency, Direction, Opcode, ProtocolVersion};
