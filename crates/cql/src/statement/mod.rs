//! CQL statement text: a tokenizer and the classifier the proxy routes with.
//!
//! # Layout
//! - [`token`]: a zero-allocation tokenizer following Cassandra's `Lexer.g` ([`Tokenizer`],
//!   [`Token`], [`TokenKind`]) plus the literal/identifier unescaping helpers a parser needs.
//! - [`keywords`]: reserved keywords and identifier quoting.
//! - [`classify`](mod@classify): [`classify()`] reads a QUERY/PREPARE/BATCH text once and reports what the
//!   proxy needs to route it and to keep dual writes identical: the [`StatementKind`], keyspace
//!   and table, LWT, `USING TIMESTAMP`/`TTL`, bind markers, non-deterministic function calls
//!   and the children of a text batch.

pub mod classify;
pub mod keywords;
pub mod token;

pub use classify::{
    BatchChild, BatchInfo, BatchType, BindMarkers, Ident, NonDeterministicCall, NonDeterministicFn,
    ParseProblem, StatementInfo, StatementKind, TimestampCoverage, UsingValue, classify,
};
pub use token::{Token, TokenKind, Tokenizer, normalize_ident};
