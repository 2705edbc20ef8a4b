//! CQL text → statement AST, and terms → typed values.
//!
//! # Layout
//! - [`ast`]: the statement tree ([`Statement`] and everything under it). Names are
//!   case-folded, terms kept as written.
//! - `parser`: [`parse`] / [`parse_with_markers`] (and [`parse_term`] for one value), a recursive-descent parser over
//!   `ferry_cql`'s tokenizer following Cassandra's `Parser.g`, with errors worded like
//!   ANTLR's (`line 1:14 no viable alternative at input 'FORM'`).
//! - [`term`]: [`term_to_value`] — literals, collections, bound values and native functions
//!   (`now()`, `toTimestamp()`, `xAsBlob()` …) → [`CqlValue`](ferry_cql::types::CqlValue)
//!   for a receiver type, with Cassandra's error messages; [`IdGenerator`] for timeuuids.
//! - `type_name`: [`TypeName`] display and resolution to
//!   [`ColumnType`](ferry_cql::types::ColumnType) with Cassandra's freezing rules.

pub mod ast;
mod parser;
pub mod term;
mod type_name;

pub use ast::*;
pub use parser::{
    BindMarker, MAX_DEPTH, ParseError, Parsed, parse, parse_term, parse_with_markers,
};
pub use term::{Bound, IdGenerator, IdSource, TermContext, ValueError, term_to_value};
