//! Non-deterministic CQL functions in writes (`now()`, `uuid()`, `currentTimestamp()`,
//! `currentDate()`, `currentTime()`, `currentTimeUUID()` and their snake_case aliases),
//! evaluated once by the proxy so origin and target store the same value.
//!
//! ```text
//!  QUERY  "… VALUES (1, now())"  ──► "… VALUES (1, 8e2c…-11ee-…)"       (a literal per call)
//!  PREPARE "… VALUES (?, now())" ──► "… VALUES (?, ?)" + FunctionPlan [(1, Now)]
//!     PREPARED from the clusters ──► strip variable 1, so the driver binds only its own marker
//!  EXECUTE values [k]            ──► [k, <timeuuid generated now>]     (per execution)
//!  BATCH: text children as QUERY, prepared children as EXECUTE with their statement's plan
//! ```
//!
//! A literal in PREPARE text would freeze one value for every execution, hence markers there.
//! A call that is an argument of another function (`toTimestamp(now())`) or an operand of
//! arithmetic gets a type hint (`(timeuuid)…`): a bare literal or marker there would leave
//! Cassandra unable to choose between overloads (`toTimestamp(date)` / `(timeuuid)`).
//!
//! Markers are `?` when the statement's own markers are positional, and `:ferry_fn_<n>` when it
//! uses named markers or none, so that named values can name them. The `ferry_fn_` prefix is
//! reserved.

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use ferry_cql::protocol::{Opcode, ProtocolVersion};
use ferry_cql::request::params::query_flags::{VALUES, WITH_NAMES_FOR_VALUES};
use ferry_cql::response::result::{kind, metadata_flags};
use ferry_cql::statement::{
    NonDeterministicCall, NonDeterministicFn, StatementInfo, Token, TokenKind, Tokenizer, classify,
    keywords,
};
use ferry_cql::types::{ColumnType, CqlValue, encode_value, read_column_type};
use ferry_cql::wire::{self, DecodeError, EncodeError};

use super::RewriteError;
use super::layout::{BatchLayout, ExecuteLayout, Reader, value_items};

/// The prefix of the named markers the proxy injects.
pub const MARKER_PREFIX: &str = "ferry_fn_";

/// Where generated values come from: real time and randomness in production, fixed values in
/// tests.
pub trait ValueSource {
    /// The current time in µs since the Unix epoch.
    fn now_micros(&mut self) -> i64;
    /// 64 random bits (timeuuid clock sequence and node, uuid v4 bits).
    fn random_u64(&mut self) -> u64;
}

/// The system clock and the thread-local random generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemValueSource;

impl ValueSource for SystemValueSource {
    fn now_micros(&mut self) -> i64 {
        // A clock before 1970 is a broken host; 0 still gives both clusters the same value.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    fn random_u64(&mut self) -> u64 {
        rand::random()
    }
}

/// 100-ns intervals between the Gregorian reform (1582-10-15, the v1 uuid epoch) and 1970.
const GREGORIAN_TO_UNIX_TICKS: i64 = 0x01B2_1DD2_1381_4000;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// `date` counts days with 2^31 as the Unix epoch.
const DATE_EPOCH: i64 = 1 << 31;

/// A version 1 uuid for `unix_micros`, with a random clock sequence and a random node (its
/// multicast bit set, as RFC 4122 asks of nodes that are not a MAC address).
fn timeuuid(unix_micros: i64, random: u64) -> [u8; 16] {
    let ticks = unix_micros
        .saturating_mul(10)
        .saturating_add(GREGORIAN_TO_UNIX_TICKS) as u64;
    let time_low = (ticks & 0xffff_ffff) as u32;
    let time_mid = ((ticks >> 32) & 0xffff) as u16;
    let time_hi = (((ticks >> 48) & 0x0fff) as u16) | 0x1000;
    let clock_and_node =
        (random & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000 | 0x0100_0000_0000;
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&time_low.to_be_bytes());
    out[4..6].copy_from_slice(&time_mid.to_be_bytes());
    out[6..8].copy_from_slice(&time_hi.to_be_bytes());
    out[8..].copy_from_slice(&clock_and_node.to_be_bytes());
    out
}

/// A version 4 (random) uuid.
fn random_uuid(source: &mut impl ValueSource) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&source.random_u64().to_be_bytes());
    out[8..].copy_from_slice(&source.random_u64().to_be_bytes());
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

/// The value `function` has at `now_micros`, with its type. `None` for a function this proxy
/// does not know how to evaluate (the enum is open): such a call is left for the clusters.
fn generate(
    function: NonDeterministicFn,
    now_micros: i64,
    source: &mut impl ValueSource,
) -> Option<(CqlValue, ColumnType)> {
    Some(match function {
        NonDeterministicFn::Now | NonDeterministicFn::CurrentTimeUuid => (
            CqlValue::Timeuuid(timeuuid(now_micros, source.random_u64())),
            ColumnType::Timeuuid,
        ),
        NonDeterministicFn::Uuid => (CqlValue::Uuid(random_uuid(source)), ColumnType::Uuid),
        NonDeterministicFn::CurrentTimestamp => (
            CqlValue::Timestamp(now_micros.div_euclid(1000)),
            ColumnType::Timestamp,
        ),
        NonDeterministicFn::CurrentDate => {
            let days = now_micros.div_euclid(MICROS_PER_DAY) + DATE_EPOCH;
            (
                CqlValue::Date(u32::try_from(days).unwrap_or(u32::MAX)),
                ColumnType::Date,
            )
        }
        NonDeterministicFn::CurrentTime => (
            CqlValue::Time(now_micros.rem_euclid(MICROS_PER_DAY) * 1000),
            ColumnType::Time,
        ),
        _ => return None,
    })
}

/// Whether `function` is one [`generate`] evaluates.
fn known(function: NonDeterministicFn) -> bool {
    matches!(
        function,
        NonDeterministicFn::Now
            | NonDeterministicFn::CurrentTimeUuid
            | NonDeterministicFn::Uuid
            | NonDeterministicFn::CurrentTimestamp
            | NonDeterministicFn::CurrentDate
            | NonDeterministicFn::CurrentTime
    )
}

/// For each call (in text order), whether its replacement needs a type hint: it is an argument
/// of a function call, or an operand of arithmetic.
fn type_hints(cql: &str, calls: &[NonDeterministicCall<'_>]) -> Vec<bool> {
    let tokens: Vec<Token> = Tokenizer::new(cql).collect();
    // For each token, whether the innermost open bracket is a function call's `(`.
    let mut in_args = Vec::with_capacity(tokens.len());
    let mut stack: Vec<bool> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        in_args.push(stack.last().copied().unwrap_or(false));
        match t.kind {
            TokenKind::LParen => {
                let call = i
                    .checked_sub(1)
                    .and_then(|p| tokens.get(p))
                    .is_some_and(|p| {
                        match p.kind {
                            // `VALUES (` is not a call; `values` is not a reserved word.
                            TokenKind::Ident => {
                                let word = p.text(cql);
                                !keywords::is_reserved(word) && !word.eq_ignore_ascii_case("values")
                            }
                            TokenKind::QuotedIdent => true,
                            _ => false,
                        }
                    });
                stack.push(call);
            }
            TokenKind::LBracket | TokenKind::LBrace => stack.push(false),
            TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace => {
                stack.pop();
            }
            _ => {}
        }
    }
    let arithmetic = |t: Option<&Token>| {
        t.is_some_and(|t| {
            matches!(
                t.kind,
                TokenKind::Plus
                    | TokenKind::Minus
                    | TokenKind::Star
                    | TokenKind::Slash
                    | TokenKind::Percent
            )
        })
    };
    calls
        .iter()
        .map(|call| {
            let first = tokens.partition_point(|t| (t.start as usize) < call.span().start);
            let after = tokens.partition_point(|t| (t.start as usize) < call.span().end);
            let nested = in_args.get(first).copied().unwrap_or(false);
            let before = first.checked_sub(1).and_then(|p| tokens.get(p));
            nested || arithmetic(before) || arithmetic(tokens.get(after))
        })
        .collect()
}

/// Replaces each call in `cql` by `replacement(k, call, hinted)`, copying the text between
/// calls byte for byte. A call whose span does not fit `cql` (calls from another text) or
/// whose replacement is `None` is left as written.
fn splice_calls(
    cql: &str,
    calls: &[NonDeterministicCall<'_>],
    mut replacement: impl FnMut(&NonDeterministicCall<'_>, bool) -> Option<String>,
) -> String {
    let hints = type_hints(cql, calls);
    let mut out = String::with_capacity(cql.len() + 40 * calls.len());
    let mut copied = 0;
    for (call, hinted) in calls.iter().zip(hints) {
        let span = call.span();
        let Some(between) = cql.get(copied..span.start) else {
            continue;
        };
        if cql.get(span.clone()).is_none() {
            continue;
        }
        let Some(new) = replacement(call, hinted) else {
            continue;
        };
        out.push_str(between);
        out.push_str(&new);
        copied = span.end;
    }
    out.push_str(cql.get(copied..).unwrap_or(""));
    out
}

fn hinted(function: NonDeterministicFn, hinted: bool, term: &str) -> String {
    if hinted {
        format!("({}){term}", function.cql_type())
    } else {
        term.to_owned()
    }
}

/// `cql` with each of `calls` (from `classify` of `cql`) replaced by a literal of the
/// function's value now: a timeuuid (v1, random clock sequence and node), a uuid (v4), a
/// timestamp in integer milliseconds, a `'YYYY-MM-DD'` date, a `'HH:MM:SS.nnnnnnnnn'` time. The
/// rest of the text is kept byte for byte.
pub fn replace_in_text(
    cql: &str,
    calls: &[NonDeterministicCall<'_>],
    source: &mut impl ValueSource,
) -> String {
    let now = source.now_micros();
    replace_in_text_at(cql, calls, now, source)
}

/// [`replace_in_text`] with "now" already taken, so a whole BATCH shares one instant.
fn replace_in_text_at(
    cql: &str,
    calls: &[NonDeterministicCall<'_>],
    now: i64,
    source: &mut impl ValueSource,
) -> String {
    splice_calls(cql, calls, |call, hint| {
        let (value, _) = generate(call.function, now, source)?;
        Some(hinted(call.function, hint, &value.to_cql_literal()))
    })
}

/// The statement text at the front of a QUERY or PREPARE body, for `classify`.
pub fn statement_text(
    version: ProtocolVersion,
    opcode: Opcode,
    body: &[u8],
) -> Result<&str, RewriteError> {
    wire::read_long_string(&mut &body[..], "query string")
        .map_err(RewriteError::malformed(opcode, version))
}

/// A QUERY or PREPARE body with its statement text replaced; the rest is copied as it is.
fn replace_text(
    version: ProtocolVersion,
    opcode: Opcode,
    body: &Bytes,
    text: &str,
) -> Result<Bytes, RewriteError> {
    let mut r = Reader::new(body);
    r.long_string("query string")
        .map_err(RewriteError::malformed(opcode, version))?;
    let rest = &body[r.pos()..];
    let mut out = BytesMut::with_capacity(4 + text.len() + rest.len());
    wire::write_long_string(&mut out, text, "query string")
        .map_err(RewriteError::encode(opcode))?;
    out.put_slice(rest);
    Ok(out.freeze())
}

/// A QUERY body whose text has each of `calls` replaced by a literal ([`replace_in_text`]).
/// `calls` come from `classify` of [`statement_text`] of this body.
pub fn rewrite_query_body(
    version: ProtocolVersion,
    body: &Bytes,
    calls: &[NonDeterministicCall<'_>],
    source: &mut impl ValueSource,
) -> Result<Bytes, RewriteError> {
    let text = statement_text(version, Opcode::Query, body)?;
    let new = replace_in_text(text, calls, source);
    replace_text(version, Opcode::Query, body, &new)
}

/// The bind variables a rewritten PREPARE gained, which each EXECUTE must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionPlan {
    /// (bind variable index in the rewritten statement, function), ascending by index.
    pub injected: Vec<(u32, NonDeterministicFn)>,
    /// The markers are `:ferry_fn_<n>` (n = position in `injected`) rather than `?`.
    pub named: bool,
}

impl FunctionPlan {
    pub fn is_empty(&self) -> bool {
        self.injected.is_empty()
    }

    /// The name of the `n`th injected marker when [`FunctionPlan::named`].
    pub fn marker_name(n: usize) -> String {
        format!("{MARKER_PREFIX}{n}")
    }
}

impl AsRef<FunctionPlan> for FunctionPlan {
    fn as_ref(&self) -> &FunctionPlan {
        self
    }
}

/// `cql` with each non-deterministic call of `info` (its [`classify()`]) replaced by a bind
/// marker, and the plan saying where the markers are.
pub fn replace_with_markers(cql: &str, info: &StatementInfo<'_>) -> (String, FunctionPlan) {
    let named = !info.markers.named.is_empty() || info.markers.positional == 0;
    let mut plan = FunctionPlan {
        injected: Vec::new(),
        named,
    };
    let text = splice_calls(cql, &info.nondeterministic, |call, hint| {
        if !known(call.function) {
            return None;
        }
        let n = plan.injected.len();
        let marker = if named {
            format!(":{}", FunctionPlan::marker_name(n))
        } else {
            "?".to_owned()
        };
        // Each earlier injected marker shifts this one by one.
        let index = call.marker_index.saturating_add(n as u32);
        plan.injected.push((index, call.function));
        Some(hinted(call.function, hint, &marker))
    });
    (text, plan)
}

/// A PREPARE body whose text has its non-deterministic calls replaced by bind markers
/// ([`replace_with_markers`]); `info` is [`classify()`] of [`statement_text`] of this body. The v5
/// flags and keyspace are copied as they are.
pub fn rewrite_prepare_body(
    version: ProtocolVersion,
    body: &Bytes,
    info: &StatementInfo<'_>,
) -> Result<(Bytes, FunctionPlan), RewriteError> {
    let text = statement_text(version, Opcode::Prepare, body)?;
    let (new, plan) = replace_with_markers(text, info);
    Ok((replace_text(version, Opcode::Prepare, body, &new)?, plan))
}

/// The sorted, distinct variable indexes of a plan.
fn injected_indexes(plan: &FunctionPlan) -> Vec<u32> {
    let mut idx: Vec<u32> = plan.injected.iter().map(|(i, _)| *i).collect();
    idx.sort_unstable();
    idx.dedup();
    idx
}

/// A RESULT Prepared body without the variables `plan` injected: the column count, the
/// partition key indexes and the column specs are fixed so the client driver binds only its
/// own markers. The result metadata (and its v5 id) is copied as it is.
///
/// When an injected variable is part of the partition key, the pk indexes are dropped
/// altogether: a driver computing a token from a partial key would route wrongly, without them
/// it just routes without token awareness.
pub fn strip_injected_variables(
    version: ProtocolVersion,
    prepared_result_body: &Bytes,
    plan: &FunctionPlan,
) -> Result<Bytes, RewriteError> {
    let body = prepared_result_body;
    if plan.is_empty() {
        return Ok(body.clone());
    }
    let malformed = RewriteError::malformed(Opcode::Result, version);
    let mut r = Reader::new(body);
    let result_kind = wire::read_int(r.rest(), "result kind").map_err(malformed)?;
    if result_kind != kind::PREPARED {
        return Err(RewriteError::NotPrepared { kind: result_kind });
    }
    let m = PreparedLayout::read(r, version)
        .map_err(RewriteError::malformed(Opcode::Result, version))?;
    let injected = injected_indexes(plan);
    if let Some(&index) = injected.iter().find(|&&i| i as usize >= m.columns.len()) {
        return Err(RewriteError::VariableOutOfRange {
            index,
            available: m.columns.len(),
            client: m.columns.len().saturating_sub(injected.len()),
            injected: injected.len(),
        });
    }
    let is_injected = |i: usize| injected.binary_search(&(i as u32)).is_ok();
    let kept = m.columns.len() - injected.len();
    let mut out = BytesMut::with_capacity(body.len());
    out.put_slice(&body[..m.count_at]);
    // `kept` is below the count that was read as an `[int]`.
    out.put_i32(kept as i32);
    if let Some(pk) = &m.pk_indexes {
        let pk = &body[pk.clone()];
        let indexes = pk
            .chunks_exact(2)
            .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])));
        if indexes.clone().any(is_injected) {
            out.put_i32(0);
        } else {
            out.put_i32(i32::try_from(pk.len() / 2).unwrap_or(i32::MAX));
            for i in indexes {
                let shift = injected.partition_point(|&j| (j as usize) < i);
                out.put_u16((i - shift) as u16);
            }
        }
    }
    out.put_slice(&body[m.global_spec.clone()]);
    for (i, column) in m.columns.iter().enumerate() {
        if !is_injected(i) {
            out.put_slice(&body[column.clone()]);
        }
    }
    out.put_slice(&body[m.result_metadata_at..]);
    Ok(out.freeze())
}

/// Offsets in a RESULT Prepared body:
/// `<kind><id>[<result_metadata_id>]<flags><columns_count>[<pk_count><pk_index_1>…]`
/// `[<global_table_spec>]<col_spec_1>…<col_spec_n><result_metadata>`.
#[derive(Debug)]
struct PreparedLayout {
    /// Where `<columns_count>` starts.
    count_at: usize,
    /// The pk index shorts (v4+), without their count.
    pk_indexes: Option<Range<usize>>,
    /// The global table spec's bytes (empty when there is none).
    global_spec: Range<usize>,
    columns: Vec<Range<usize>>,
    result_metadata_at: usize,
}

impl PreparedLayout {
    /// Reads from just after `<kind>`.
    fn read(mut r: Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        r.short_bytes("prepared id")?;
        if version >= ProtocolVersion::V5 {
            r.short_bytes("result metadata id")?;
        }
        let flags = wire::read_int(r.rest(), "prepared metadata flags")? as u32;
        let count_at = r.pos();
        let count = non_negative(wire::read_int(r.rest(), "columns count")?, "columns count")?;
        let pk_indexes = if version >= ProtocolVersion::V4 {
            let n = non_negative(wire::read_int(r.rest(), "pk count")?, "pk count")?;
            let start = r.pos();
            let len = n.checked_mul(2).ok_or(DecodeError::InvalidValue {
                what: "pk count",
                value: n as i64,
            })?;
            wire::read_raw(r.rest(), len, "pk indexes")?;
            Some(start..r.pos())
        } else {
            None
        };
        let global = flags & metadata_flags::GLOBAL_TABLES_SPEC != 0;
        let global_start = r.pos();
        if global {
            wire::read_string(r.rest(), "keyspace name")?;
            wire::read_string(r.rest(), "table name")?;
        }
        let global_spec = global_start..r.pos();
        // A spec takes at least 4 bytes (name and type): bound the allocation by the input.
        let mut columns = Vec::with_capacity(count.min(r.rest().len() / 4));
        for _ in 0..count {
            let start = r.pos();
            if !global {
                wire::read_string(r.rest(), "keyspace name")?;
                wire::read_string(r.rest(), "table name")?;
            }
            wire::read_string(r.rest(), "column name")?;
            read_column_type(r.rest(), version)?;
            columns.push(start..r.pos());
        }
        Ok(Self {
            count_at,
            pk_indexes,
            global_spec,
            columns,
            result_metadata_at: r.pos(),
        })
    }
}

fn non_negative(n: i32, what: &'static str) -> Result<usize, DecodeError> {
    usize::try_from(n).map_err(|_| DecodeError::NegativeLength {
        what,
        len: n.into(),
    })
}

/// The encoded values of a plan's functions at `now`, in plan order (unknown functions are
/// never in a plan built here; one that is gets a null).
fn generated_values(plan: &FunctionPlan, now: i64, source: &mut impl ValueSource) -> Vec<Vec<u8>> {
    plan.injected
        .iter()
        .map(|&(_, f)| {
            let mut out = Vec::with_capacity(16);
            if let Some((value, ty)) = generate(f, now, source) {
                // These fixed-size values always match their own type.
                let _ = encode_value(&ty, &value, &mut out);
            }
            out
        })
        .collect()
}

/// A positional values section (`[short]` count then values) with `generated` placed at the
/// plan's indexes among the client's `items` (byte ranges of `body`).
fn merge_positional(
    body: &[u8],
    items: &[Range<usize>],
    plan: &FunctionPlan,
    generated: &[Vec<u8>],
    opcode: Opcode,
) -> Result<BytesMut, RewriteError> {
    let mut order: Vec<(u32, &[u8])> = plan
        .injected
        .iter()
        .zip(generated)
        .map(|((i, _), v)| (*i, v.as_slice()))
        .collect();
    order.sort_by_key(|(i, _)| *i);
    let total = items.len() + order.len();
    let count = u16::try_from(total).map_err(|_| RewriteError::Encode {
        opcode,
        source: EncodeError::TooLong {
            what: "value count",
            len: total,
            max: u16::MAX as usize,
        },
    })?;
    if let Some(&(index, _)) = order.iter().find(|(i, _)| *i as usize >= total) {
        return Err(RewriteError::VariableOutOfRange {
            index,
            available: total,
            client: items.len(),
            injected: order.len(),
        });
    }
    let mut out = BytesMut::with_capacity(
        2 + items.iter().map(|r| r.len()).sum::<usize>() + 20 * order.len(),
    );
    out.put_u16(count);
    let mut client = items.iter();
    let mut injected = order.iter().peekable();
    for position in 0..total {
        match injected.peek() {
            Some((i, v)) if *i as usize == position => {
                write_value(&mut out, v);
                injected.next();
            }
            _ => match client.next() {
                Some(item) => out.put_slice(&body[item.clone()]),
                // Two injected variables at one index leave a gap at the end.
                None => {
                    if let Some((_, v)) = injected.next() {
                        write_value(&mut out, v);
                    }
                }
            },
        }
    }
    Ok(out)
}

fn write_value(out: &mut BytesMut, v: &[u8]) {
    // Generated values are at most 16 bytes.
    out.put_i32(v.len() as i32);
    out.put_slice(v);
}

/// An EXECUTE body with the values of the statement's injected variables (`plan`, from
/// [`rewrite_prepare_body`]) generated now and added to the client's: at their indexes among
/// positional values, by their `:ferry_fn_<n>` names among named values.
pub fn insert_generated_values(
    version: ProtocolVersion,
    execute_body: &Bytes,
    plan: &FunctionPlan,
    source: &mut impl ValueSource,
) -> Result<Bytes, RewriteError> {
    let body = execute_body;
    if plan.is_empty() {
        return Ok(body.clone());
    }
    let malformed = RewriteError::malformed(Opcode::Execute, version);
    let layout = ExecuteLayout::read(body, version).map_err(malformed)?;
    let flags = layout.params.flags;
    let named = flags.has(WITH_NAMES_FOR_VALUES);
    let (items, rest) = match &layout.params.values {
        Some(values) => (
            value_items(body, values.clone(), named)
                .map_err(RewriteError::malformed(Opcode::Execute, version))?,
            values.end,
        ),
        None => (Vec::new(), flags.range().end),
    };
    let now = source.now_micros();
    let generated = generated_values(plan, now, source);
    let section = if named && layout.params.values.is_some() {
        if !plan.named {
            return Err(RewriteError::NamedValuesForPositionalMarkers {
                count: items.len(),
                injected: plan.injected.len(),
            });
        }
        let total = items.len() + generated.len();
        let count = u16::try_from(total).map_err(|_| RewriteError::Encode {
            opcode: Opcode::Execute,
            source: EncodeError::TooLong {
                what: "value count",
                len: total,
                max: u16::MAX as usize,
            },
        })?;
        let mut out = BytesMut::new();
        out.put_u16(count);
        for item in &items {
            out.put_slice(&body[item.clone()]);
        }
        for (n, v) in generated.iter().enumerate() {
            wire::write_string(&mut out, &FunctionPlan::marker_name(n), "value name")
                .map_err(RewriteError::encode(Opcode::Execute))?;
            write_value(&mut out, v);
        }
        out
    } else {
        merge_positional(body, &items, plan, &generated, Opcode::Execute)?
    };
    let (new_flags, flags_len) = flags.encode_with(VALUES);
    let mut out = BytesMut::with_capacity(body.len() + section.len());
    out.put_slice(&body[..flags.at]);
    out.put_slice(&new_flags[..flags_len]);
    out.put_slice(&section);
    out.put_slice(&body[rest..]);
    Ok(out.freeze())
}

/// A BATCH body with its children's non-deterministic calls evaluated once: literals in
/// query-string children, generated values for prepared children whose statement has a plan
/// (`plan_for(prepared id)`, the id as the body carries it). One "now" serves the whole batch.
/// `Ok(None)` when no child needed a change.
pub fn rewrite_batch<P: AsRef<FunctionPlan>>(
    version: ProtocolVersion,
    body: &Bytes,
    mut plan_for: impl FnMut(&[u8]) -> Option<P>,
    source: &mut impl ValueSource,
) -> Result<Option<Bytes>, RewriteError> {
    let malformed = RewriteError::malformed(Opcode::Batch, version);
    let layout = BatchLayout::read(body, version).map_err(malformed)?;
    let now = source.now_micros();
    let mut out = BytesMut::new();
    let mut copied = 0;
    for child in &layout.children {
        if child.prepared {
            let Some(plan) = plan_for(&body[child.statement.clone()]) else {
                continue;
            };
            let plan = plan.as_ref();
            if plan.is_empty() {
                continue;
            }
            let items = value_items(body, child.values.clone(), false)
                .map_err(RewriteError::malformed(Opcode::Batch, version))?;
            let generated = generated_values(plan, now, source);
            let section = merge_positional(body, &items, plan, &generated, Opcode::Batch)?;
            out.put_slice(&body[copied..child.values.start]);
            out.put_slice(&section);
            copied = child.values.end;
        } else {
            // The layout checked the text is UTF-8.
            let Ok(text) = std::str::from_utf8(&body[child.statement.clone()]) else {
                continue;
            };
            let info = classify(text);
            if !info.nondeterministic.iter().any(|c| known(c.function)) {
                continue;
            }
            let new = replace_in_text_at(text, &info.nondeterministic, now, source);
            // The `[int]` length sits right before the text.
            out.put_slice(&body[copied..child.statement.start - 4]);
            wire::write_long_string(&mut out, &new, "query string")
                .map_err(RewriteError::encode(Opcode::Batch))?;
            copied = child.statement.end;
        }
    }
    if copied == 0 {
        return Ok(None);
    }
    out.put_slice(&body[copied..]);
    Ok(Some(out.freeze()))
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use ferry_cql::message::{Request, Response};
    use ferry_cql::protocol::Consistency;
    use ferry_cql::request::{
        Batch, BatchChild, BatchStatement, BatchType, Execute, Prepare, Query, QueryParameters,
        Value, Values,
    };
    use ferry_cql::response::ResultBody;
    use ferry_cql::response::result::{ColumnSpec, Prepared, PreparedMetadata, RowsMetadata};
    use ferry_cql::types::decode_value;
    use proptest::prelude::*;

    use super::*;

    /// 2023-11-14T22:13:20.123456Z.
    pub(crate) const NOW: i64 = 1_700_000_000_123_456;

    /// A fixed clock and a counter for randomness: every run generates the same values.
    #[derive(Debug)]
    pub(crate) struct Fixed {
        pub(crate) now: i64,
        pub(crate) counter: u64,
    }

    impl Fixed {
        pub(crate) fn new() -> Self {
            Self {
                now: NOW,
                counter: 0,
            }
        }
    }

    impl ValueSource for Fixed {
        fn now_micros(&mut self) -> i64 {
            self.now
        }
        fn random_u64(&mut self) -> u64 {
            self.counter += 1;
            self.counter.wrapping_mul(0x0101_0101_0101_0101)
        }
    }

    #[test]
    fn timeuuid_is_version_1_with_the_time_and_uuid_is_version_4() {
        let u = timeuuid(NOW, 0);
        // Checked with Python: uuid.UUID(fields=…).time gives 2023-11-14 22:13:20.123456.
        assert_eq!(
            CqlValue::Timeuuid(timeuuid(NOW, 0x0101_0101_0101_0101)).to_cql_literal(),
            "04c29680-833b-11ee-8101-010101010101"
        );
        assert_eq!(u[6] >> 4, 1, "version");
        assert_eq!(u[8] >> 6, 0b10, "variant");
        assert_eq!(u[10] & 1, 1, "multicast bit of a random node");
        let ticks = (u64::from(u[6] & 0x0f) << 56)
            | (u64::from(u[7]) << 48)
            | (u64::from(u16::from_be_bytes([u[4], u[5]])) << 32)
            | u64::from(u32::from_be_bytes([u[0], u[1], u[2], u[3]]));
        assert_eq!((ticks as i64 - GREGORIAN_TO_UNIX_TICKS) / 10, NOW);
        // Same instant, other randomness: another value.
        assert_ne!(timeuuid(NOW, 1), u);
        let v4 = random_uuid(&mut Fixed::new());
        assert_eq!((v4[6] >> 4, v4[8] >> 6), (4, 0b10));
    }

    #[test]
    fn each_function_becomes_a_literal_of_its_type() {
        let q = "UPDATE t SET a = now(), b = uuid(), c = currentTimestamp(), d = current_date(), \
                 e = currentTime(), f = system.currentTimeUUID() WHERE k = 'now()'";
        let info = classify(q);
        let out = replace_in_text(q, &info.nondeterministic, &mut Fixed::new());
        assert_eq!(
            out,
            "UPDATE t SET a = 04c29680-833b-11ee-8101-010101010101, \
             b = 02020202-0202-4202-8303-030303030303, c = 1700000000123, d = '2023-11-14', \
             e = '22:13:20.123456000', f = 04c29680-833b-11ee-8404-050404040404 WHERE k = 'now()'"
        );
        // The literals are what the codec reads as those values.
        assert!(classify(&out).nondeterministic.is_empty());
    }

    #[test]
    fn nested_calls_and_arithmetic_get_type_hints() {
        let q = "INSERT INTO t (k, a, b, c, d) VALUES (uuid(), toTimestamp(now()), \
                 [now()], currentTimestamp() - 1h, ks.f(1, currentDate()))";
        let info = classify(q);
        let out = replace_in_text(q, &info.nondeterministic, &mut Fixed::new());
        assert_eq!(
            out,
            "INSERT INTO t (k, a, b, c, d) VALUES (01010101-0101-4101-8202-020202020202, \
             toTimestamp((timeuuid)04c29680-833b-11ee-8303-030303030303), \
             [04c29680-833b-11ee-8404-050404040404], (timestamp)1700000000123 - 1h, \
             ks.f(1, (date)'2023-11-14'))"
        );
    }

    #[test]
    fn one_instant_per_statement() {
        let q = "INSERT INTO t (a, b) VALUES (currentTimestamp(), currentTimestamp())";
        let info = classify(q);
        let out = replace_in_text(q, &info.nondeterministic, &mut Fixed::new());
        assert_eq!(
            out,
            "INSERT INTO t (a, b) VALUES (1700000000123, 1700000000123)"
        );
    }

    #[test]
    fn calls_from_another_text_are_left_alone() {
        let other = classify("INSERT INTO some_longer_table (k, v) VALUES (1, now())");
        assert_eq!(
            replace_in_text("SELECT 1", &other.nondeterministic, &mut Fixed::new()),
            "SELECT 1"
        );
    }

    fn body(req: &Request, version: ProtocolVersion) -> Bytes {
        let mut out = BytesMut::new();
        req.encode_body(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn query_body_gets_the_new_text_and_keeps_its_parameters() {
        let params = QueryParameters {
            consistency: Consistency::Quorum,
            values: Values::Positional(vec![Value::Set(Bytes::from_static(&[0, 0, 0, 1]))]),
            default_timestamp: Some(7),
            ..QueryParameters::default()
        };
        let q = Query::new("INSERT INTO t (k, v) VALUES (?, now())", params.clone());
        let b = body(&Request::Query(q), ProtocolVersion::V4);
        let text = statement_text(ProtocolVersion::V4, Opcode::Query, &b).unwrap();
        let info = classify(text);
        let out = rewrite_query_body(
            ProtocolVersion::V4,
            &b,
            &info.nondeterministic,
            &mut Fixed::new(),
        )
        .unwrap();
        let Request::Query(back) =
            Request::decode_body(Opcode::Query, &out, ProtocolVersion::V4).unwrap()
        else {
            unreachable!("a QUERY body")
        };
        assert_eq!(
            back.query,
            "INSERT INTO t (k, v) VALUES (?, 04c29680-833b-11ee-8101-010101010101)"
        );
        assert_eq!(back.params, params);
    }

    #[test]
    fn prepare_markers_follow_the_statement_style() {
        let q = "INSERT INTO t (k, a, b) VALUES (?, now(), ?) USING TTL ?";
        let (text, plan) = replace_with_markers(q, &classify(q));
        assert_eq!(text, "INSERT INTO t (k, a, b) VALUES (?, ?, ?) USING TTL ?");
        assert_eq!(
            plan,
            FunctionPlan {
                injected: vec![(1, NonDeterministicFn::Now)],
                named: false
            }
        );

        let q = "UPDATE t SET a = uuid(), b = :b, c = toDate(now()) WHERE k = :k";
        let (text, plan) = replace_with_markers(q, &classify(q));
        assert_eq!(
            text,
            "UPDATE t SET a = :ferry_fn_0, b = :b, c = toDate((timeuuid):ferry_fn_1) WHERE k = :k"
        );
        assert_eq!(
            plan.injected,
            vec![(0, NonDeterministicFn::Uuid), (2, NonDeterministicFn::Now)]
        );
        assert!(plan.named);

        // No markers of its own: named, so named values can reach them.
        let q = "INSERT INTO t (k, v) VALUES (1, currentDate())";
        let (text, plan) = replace_with_markers(q, &classify(q));
        assert_eq!(text, "INSERT INTO t (k, v) VALUES (1, :ferry_fn_0)");
        assert_eq!(plan.injected, vec![(0, NonDeterministicFn::CurrentDate)]);
    }

    #[test]
    fn prepare_body_keeps_the_v5_keyspace() {
        let p = Prepare {
            query: "INSERT INTO t (k, v) VALUES (?, now())".into(),
            keyspace: Some("ks".into()),
        };
        let v = ProtocolVersion::V5;
        let b = body(&Request::Prepare(p), v);
        let info = classify(statement_text(v, Opcode::Prepare, &b).unwrap());
        let (out, plan) = rewrite_prepare_body(v, &b, &info).unwrap();
        assert_eq!(plan.injected, vec![(1, NonDeterministicFn::Now)]);
        assert_eq!(
            Request::decode_body(Opcode::Prepare, &out, v).unwrap(),
            Request::Prepare(Prepare {
                query: "INSERT INTO t (k, v) VALUES (?, ?)".into(),
                keyspace: Some("ks".into()),
            })
        );
    }

    fn col(table: &str, name: &str, ty: ColumnType) -> ColumnSpec {
        ColumnSpec::new("ks", table, name, ty)
    }

    fn prepared(version: ProtocolVersion, columns: Vec<ColumnSpec>, pk: Vec<u16>) -> Prepared {
        Prepared {
            id: Bytes::from_static(&[1; 16]),
            result_metadata_id: (version >= ProtocolVersion::V5)
                .then(|| Bytes::from_static(&[2; 16])),
            metadata: PreparedMetadata::new(columns, pk),
            result_metadata: RowsMetadata::new(vec![col("t", "r", ColumnType::Int)]),
        }
    }

    fn result_body(p: &Prepared, version: ProtocolVersion) -> Bytes {
        let mut out = BytesMut::new();
        Response::Result(ResultBody::Prepared(p.clone()))
            .encode_body(&mut out, version)
            .unwrap();
        out.freeze()
    }

    fn decode_prepared(b: &Bytes, version: ProtocolVersion) -> Prepared {
        match Response::decode_body(Opcode::Result, b, version).unwrap() {
            Response::Result(ResultBody::Prepared(p)) => p,
            other => panic!("expected Prepared, got {other:?}"),
        }
    }

    #[test]
    fn injected_variables_are_stripped_from_prepared_metadata() {
        let plan = FunctionPlan {
            injected: vec![(1, NonDeterministicFn::Now), (3, NonDeterministicFn::Uuid)],
            named: false,
        };
        let (k, c, a, b, d) = (
            col("t", "k", ColumnType::Int),
            col("t", "c", ColumnType::Int),
            col("t", "a", ColumnType::Timeuuid),
            col("t", "b", ColumnType::Uuid),
            col("u", "d", ColumnType::Varchar),
        );
        for version in ProtocolVersion::ALL {
            // One table (global spec), pk [k, c] at 0 and 2 → 0 and 1.
            let p = prepared(
                version,
                vec![k.clone(), a.clone(), c.clone(), b.clone()],
                vec![0, 2],
            );
            let out = strip_injected_variables(version, &result_body(&p, version), &plan).unwrap();
            let mut expected = p.clone();
            expected.metadata = PreparedMetadata::new(
                vec![k.clone(), c.clone()],
                if version >= ProtocolVersion::V4 {
                    vec![0, 1]
                } else {
                    vec![]
                },
            );
            assert_eq!(decode_prepared(&out, version), expected, "{version}");

            // Columns of two tables (no global spec), pk at an injected variable → none.
            let p = prepared(
                version,
                vec![k.clone(), b.clone(), d.clone(), a.clone()],
                vec![1],
            );
            assert!(!p.metadata.global_table_spec);
            let out = strip_injected_variables(version, &result_body(&p, version), &plan).unwrap();
            let back = decode_prepared(&out, version);
            assert_eq!(back.metadata.columns, vec![k.clone(), d.clone()]);
            assert!(back.metadata.pk_indexes.is_empty());
            assert_eq!(back.result_metadata, p.result_metadata);
        }
    }

    #[test]
    fn stripping_checks_kind_and_range() {
        let v = ProtocolVersion::V4;
        let plan = FunctionPlan {
            injected: vec![(2, NonDeterministicFn::Now)],
            named: false,
        };
        let p = prepared(v, vec![col("t", "k", ColumnType::Int)], vec![0]);
        assert!(matches!(
            strip_injected_variables(v, &result_body(&p, v), &plan),
            Err(RewriteError::VariableOutOfRange {
                index: 2,
                available: 1,
                ..
            })
        ));
        let void = Bytes::from_static(&[0, 0, 0, 1]);
        assert_eq!(
            strip_injected_variables(v, &void, &plan),
            Err(RewriteError::NotPrepared { kind: 1 })
        );
        // Nothing injected: the body as it came.
        assert_eq!(
            strip_injected_variables(v, &void, &FunctionPlan::default()).unwrap(),
            void
        );
    }

    fn execute_body(version: ProtocolVersion, values: Values) -> Bytes {
        let e = Execute {
            id: Bytes::from_static(&[1; 16]),
            result_metadata_id: (version >= ProtocolVersion::V5)
                .then(|| Bytes::from_static(&[2; 16])),
            params: QueryParameters {
                values,
                page_size: Some(10),
                serial_consistency: Some(Consistency::LocalSerial),
                ..QueryParameters::default()
            },
        };
        body(&Request::Execute(e), version)
    }

    fn decode_execute(b: &Bytes, version: ProtocolVersion) -> Execute {
        match Request::decode_body(Opcode::Execute, b, version).unwrap() {
            Request::Execute(e) => e,
            other => panic!("expected EXECUTE, got {other:?}"),
        }
    }

    fn set(b: &'static [u8]) -> Value {
        Value::Set(Bytes::from_static(b))
    }

    #[test]
    fn generated_values_go_to_their_indexes() {
        let plan = FunctionPlan {
            injected: vec![
                (0, NonDeterministicFn::CurrentTimestamp),
                (2, NonDeterministicFn::CurrentDate),
            ],
            named: false,
        };
        for version in ProtocolVersion::ALL {
            let b = execute_body(version, Values::Positional(vec![set(b"k"), set(b"v")]));
            let out = insert_generated_values(version, &b, &plan, &mut Fixed::new()).unwrap();
            let e = decode_execute(&out, version);
            let Values::Positional(values) = &e.params.values else {
                panic!("positional values expected, got {:?}", e.params.values)
            };
            let ts = 1_700_000_000_123i64.to_be_bytes();
            let date = (19_675u32 + (1 << 31)).to_be_bytes();
            assert_eq!(
                values,
                &vec![
                    Value::Set(Bytes::copy_from_slice(&ts)),
                    set(b"k"),
                    Value::Set(Bytes::copy_from_slice(&date)),
                    set(b"v")
                ]
            );
            assert_eq!(
                decode_value(&ColumnType::Date, &date).unwrap(),
                CqlValue::Date(19_675 + (1 << 31))
            );
            // Everything after the values is untouched.
            assert_eq!(e.params.page_size, Some(10));
            assert_eq!(e.params.serial_consistency, Some(Consistency::LocalSerial));

            // A client without values of its own.
            let b = execute_body(version, Values::None);
            let only = FunctionPlan {
                injected: vec![(0, NonDeterministicFn::Uuid)],
                named: true,
            };
            let out = insert_generated_values(version, &b, &only, &mut Fixed::new()).unwrap();
            assert_eq!(decode_execute(&out, version).params.values.len(), 1);
        }
    }

    #[test]
    fn named_values_get_named_generated_values() {
        let plan = FunctionPlan {
            injected: vec![(1, NonDeterministicFn::Now)],
            named: true,
        };
        let v = ProtocolVersion::V4;
        let b = execute_body(v, Values::Named(vec![("k".into(), set(b"k"))]));
        let out = insert_generated_values(v, &b, &plan, &mut Fixed::new()).unwrap();
        let Values::Named(values) = decode_execute(&out, v).params.values else {
            panic!("named values expected")
        };
        assert_eq!(values[0], ("k".to_owned(), set(b"k")));
        assert_eq!(values[1].0, "ferry_fn_0");
        let positional = FunctionPlan {
            named: false,
            ..plan
        };
        assert_eq!(
            insert_generated_values(v, &b, &positional, &mut Fixed::new()),
            Err(RewriteError::NamedValuesForPositionalMarkers {
                count: 1,
                injected: 1
            })
        );
    }

    #[test]
    fn an_index_past_the_values_is_an_error() {
        let plan = FunctionPlan {
            injected: vec![(5, NonDeterministicFn::Now)],
            named: false,
        };
        let v = ProtocolVersion::V4;
        let b = execute_body(v, Values::Positional(vec![set(b"k")]));
        assert!(matches!(
            insert_generated_values(v, &b, &plan, &mut Fixed::new()),
            Err(RewriteError::VariableOutOfRange {
                index: 5,
                available: 2,
                client: 1,
                injected: 1
            })
        ));
    }

    #[test]
    fn batch_children_are_rewritten_each_their_way() {
        let plan = FunctionPlan {
            injected: vec![(1, NonDeterministicFn::Now)],
            named: false,
        };
        for version in ProtocolVersion::ALL {
            let batch = Batch {
                batch_type: BatchType::Logged,
                children: vec![
                    BatchChild {
                        statement: BatchStatement::Query(
                            "INSERT INTO t (k, v) VALUES (1, currentTimestamp())".into(),
                        ),
                        values: Values::None,
                    },
                    BatchChild {
                        statement: BatchStatement::Prepared(Bytes::from_static(b"with-plan")),
                        values: Values::Positional(vec![set(b"k")]),
                    },
                    BatchChild {
                        statement: BatchStatement::Prepared(Bytes::from_static(b"no-plan")),
                        values: Values::Positional(vec![set(b"x")]),
                    },
                    BatchChild {
                        statement: BatchStatement::Query("DELETE FROM t WHERE k = 2".into()),
                        values: Values::None,
                    },
                ],
                consistency: Consistency::One,
                serial_consistency: None,
                default_timestamp: Some(5),
                keyspace: None,
                now_in_seconds: None,
            };
            let b = body(&Request::Batch(batch.clone()), version);
            let out = rewrite_batch(
                version,
                &b,
                |id| (id == b"with-plan").then_some(&plan),
                &mut Fixed::new(),
            )
            .unwrap()
            .unwrap();
            let mut expected = batch.clone();
            expected.children[0].statement =
                BatchStatement::Query("INSERT INTO t (k, v) VALUES (1, 1700000000123)".into());
            let mut now = Vec::new();
            encode_value(
                &ColumnType::Timeuuid,
                &CqlValue::Timeuuid(timeuuid(NOW, 0x0101_0101_0101_0101)),
                &mut now,
            )
            .unwrap();
            expected.children[1].values =
                Values::Positional(vec![set(b"k"), Value::Set(Bytes::from(now))]);
            assert_eq!(
                Request::decode_body(Opcode::Batch, &out, version).unwrap(),
                Request::Batch(expected),
                "{version}"
            );

            // Nothing to evaluate: no new body.
            let mut plain = batch.clone();
            plain.children.remove(0);
            let b = body(&Request::Batch(plain), version);
            assert_eq!(
                rewrite_batch(version, &b, |_| None::<&FunctionPlan>, &mut Fixed::new()),
                Ok(None)
            );
        }
    }

    fn versions() -> impl Strategy<Value = ProtocolVersion> {
        prop_oneof![
            Just(ProtocolVersion::V3),
            Just(ProtocolVersion::V4),
            Just(ProtocolVersion::V5)
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(
            version in versions(),
            data in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let body = Bytes::from(data);
            let plan = FunctionPlan {
                injected: vec![(0, NonDeterministicFn::Now), (2, NonDeterministicFn::Uuid)],
                named: false,
            };
            let mut src = Fixed::new();
            let _ = strip_injected_variables(version, &body, &plan);
            let _ = insert_generated_values(version, &body, &plan, &mut src);
            let _ = rewrite_batch(version, &body, |_| Some(&plan), &mut src);
            if let Ok(text) = statement_text(version, Opcode::Query, &body) {
                let info = classify(text);
                let _ = rewrite_query_body(version, &body, &info.nondeterministic, &mut src);
                let _ = rewrite_prepare_body(version, &body, &info);
            }
        }

        #[test]
        fn text_outside_the_calls_is_kept(
            prefix in "[a-z ,()=?']{0,20}",
            suffix in "[a-z ,()=?']{0,20}",
            call in prop_oneof![Just("now()"), Just("uuid()"), Just("currentDate()")],
        ) {
            let q = format!("INSERT INTO t (k) VALUES ({prefix} {call} {suffix})");
            let info = classify(&q);
            let out = replace_in_text(&q, &info.nondeterministic, &mut Fixed::new());
            let (text, _) = replace_with_markers(&q, &info);
            for c in &info.nondeterministic {
                prop_assert!(!out.contains(c.text) || q[c.span().end..].contains(c.text));
            }
            if let Some(c) = info.nondeterministic.first() {
                prop_assert!(out.starts_with(&q[..c.span().start]));
                prop_assert!(text.starts_with(&q[..c.span().start]));
            } else {
                prop_assert_eq!(&out, &q);
            }
        }
    }
}
