//! CQL text → statement AST, and terms → typed values.
//!
//! # Layout
//! - [`ast`]: the statement tree ([`Statement`] and everything under it). Names are
//!   case-folded, terms kept as written.
//! - `parser`: [`parse`] / [`parse_with_markers`], a recursive-descent parser over
//!   `ferry_cql`'s tokenizer following Cassandra's `Parser.g`, with errors worded like
//!   ANTLR's (`line 1:14 no viable alternative at input 'FORM'`).
//! - `type_name`: [`TypeName`](ast::TypeName) display and resolution to
//!   [`ColumnType`](ferry_cql::types::ColumnType) with Cassandra's freezing rules.

pub mod ast;
mod parser;
mod type_name;

pub use ast::*;
pub use parser::{BindMarker, MAX_DEPTH, ParseError, Parsed, parse, parse_with_markers};
