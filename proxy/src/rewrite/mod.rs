//! Rewrites of request and response bodies that keep dual writes identical on origin and target.
//!
//! The hot path forwards bodies untouched; these functions run only when a write must change.
//! They take an uncompressed body as `Bytes` (the caller owns headers and compression), splice
//! the bytes that change and copy the rest verbatim: nothing that does not change is re-encoded.
//! Every function answers a malformed body with a [`RewriteError`], never a panic.
//!
//! ```text
//!  QUERY / EXECUTE / BATCH without a client timestamp ──► timestamp::inject_default_timestamp
//!  EXECUTE / BATCH to target ──► prepared_id::replace_execute_id / replace_batch_ids
//!  the secondary's copy of a write ──► consistency::set_consistency (secondary_consistency)
//!  write with now(), uuid() … ─┬─ QUERY: functions::rewrite_query_body (literals)
//!                              ├─ PREPARE: functions::rewrite_prepare_body (markers + plan)
//!                              │    └─ PREPARED answer: functions::strip_injected_variables
//!                              ├─ EXECUTE: functions::insert_generated_values
//!                              └─ BATCH: functions::rewrite_batch
//! ```
//!
//! # Layout
//! - [`timestamp`]: sets the protocol's default timestamp on QUERY, EXECUTE and BATCH that
//!   carry none, so both clusters store the same writetime.
//! - [`prepared_id`]: peeks at and splices the prepared ids of EXECUTE and BATCH (origin's id
//!   to target's, v5 result metadata ids too).
//! - [`consistency`]: overwrites the consistency level of the secondary's copy of a write.
//! - [`functions`]: evaluates `now()`, `uuid()`, `currentTimestamp()` and friends once in the
//!   proxy: literals in QUERY text, injected bind markers for PREPARE with the values supplied
//!   on each EXECUTE, and both for BATCH children.
//! - `layout` (private): where each field of a QUERY, EXECUTE or BATCH body starts, found in
//!   one pass without decoding values.
//! - `sim_check` (tests): rewritten bodies sent byte for byte to two ferry-sim clusters.

pub mod consistency;
pub mod functions;
mod layout;
pub mod prepared_id;
#[cfg(test)]
mod sim_check;
pub mod timestamp;

use ferry_cql::protocol::{Opcode, ProtocolVersion};
use ferry_cql::wire::{DecodeError, EncodeError};

pub use consistency::set_consistency;
pub use functions::{
    FunctionPlan, SystemValueSource, ValueSource, insert_generated_values, replace_in_text,
    replace_with_markers, rewrite_batch, rewrite_prepare_body, rewrite_query_body, statement_text,
    strip_injected_variables,
};
pub use prepared_id::{
    BatchIdError, batch_prepared_ids, execute_id, replace_batch_ids, replace_execute_id,
};
pub use timestamp::{inject_default_timestamp, inject_default_timestamp_both};

/// A body could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The body does not follow the spec for its opcode.
    #[error("malformed {opcode:?} body in protocol {version}: {source}")]
    Malformed {
        opcode: Opcode,
        version: ProtocolVersion,
        source: DecodeError,
    },
    /// The rewritten body would not fit a length prefix (a value count past 65535 …).
    #[error("rewritten {opcode:?} body cannot be encoded: {source}")]
    Encode { opcode: Opcode, source: EncodeError },
    /// The opcode has no field this rewrite changes.
    #[error("{opcode:?} cannot be rewritten here (expected one of {expected})")]
    WrongOpcode {
        opcode: Opcode,
        expected: &'static str,
    },
    /// A RESULT that is not the Prepared kind (4) where one was expected.
    #[error("RESULT of kind {kind} where a Prepared result (kind 4) was expected")]
    NotPrepared { kind: i32 },
    /// A result metadata id was given for a version that has none (before v5).
    #[error("a result metadata id exists from protocol v5 on, not in {version}")]
    ResultMetadataIdBeforeV5 { version: ProtocolVersion },
    /// A plan names a bind variable the body does not have room for.
    #[error(
        "injected bind variable {index} is beyond the statement's {available} variables \
         ({client} from the client, {injected} injected)"
    )]
    VariableOutOfRange {
        index: u32,
        available: usize,
        client: usize,
        injected: usize,
    },
    /// Named values where the injected markers are positional (`?`): their names are the
    /// receivers' column names, which only the server knows.
    #[error(
        "{count} named values for a statement whose {injected} injected markers are positional"
    )]
    NamedValuesForPositionalMarkers { count: usize, injected: usize },
}

impl RewriteError {
    fn malformed(opcode: Opcode, version: ProtocolVersion) -> impl FnOnce(DecodeError) -> Self {
        move |source| Self::Malformed {
            opcode,
            version,
            source,
        }
    }

    fn encode(opcode: Opcode) -> impl FnOnce(EncodeError) -> Self {
        move |source| Self::Encode { opcode, source }
    }
}
