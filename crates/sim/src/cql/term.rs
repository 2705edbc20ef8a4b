//! Terms → typed values: CQL literals converted the way Cassandra's `AbstractType.fromString`
//! accepts them, bound values decoded against the receiver's type, and the native functions a
//! write may call (`now()`, `toTimestamp(…)`, `xAsBlob(…)` …).
//!
//! "Not set" is a result of its own ([`Bound::Unset`]): it means "leave the column alone",
//! which is neither null nor a value.

use std::fmt;
use std::net::IpAddr;

use ferry_cql::request::{Value, Values};
use ferry_cql::types::{
    ColumnType, CqlDecimal, CqlDuration, CqlValue, CqlVarint, decode_value, encode_value,
    encoded_len,
};

use super::ast::{ArithOp, Literal, Term};

/// The result of converting a term.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Null,
    /// An unset bound value (protocol v4+): leave the column as it is.
    Unset,
    Value(CqlValue),
}

impl Bound {
    /// The value, with null and unset both `None`.
    pub fn into_option(self) -> Option<CqlValue> {
        match self {
            Self::Value(v) => Some(v),
            Self::Null | Self::Unset => None,
        }
    }
}

/// Why a term cannot become a value of its receiver. Every message is the one Cassandra
/// sends with an INVALID (0x2200) error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    #[error("{0}")]
    Invalid(String),
    /// A marker has no bound value: fewer values than markers, or no value of that name.
    #[error("Invalid amount of bind variables: no value for bind marker {index} ({given} bound)")]
    Unbound { index: usize, given: usize },
}

fn invalid(msg: impl Into<String>) -> ValueError {
    ValueError::Invalid(msg.into())
}

/// Where `now()` and `uuid()` get their identifiers; injectable so tests are deterministic.
pub trait IdSource {
    /// A version-1 UUID for the instant `unix_micros`, unique per call.
    fn timeuuid(&mut self, unix_micros: i64) -> [u8; 16];
    /// A random version-4 UUID.
    fn random_uuid(&mut self) -> [u8; 16];
}

/// The context a conversion needs: bound values, the statement's clock, and identifiers.
pub struct TermContext<'a> {
    /// The request's values (positional or named).
    pub values: &'a Values,
    /// The statement's "now" in µs since the Unix epoch (for `now()`, `currentTimestamp()`,
    /// `'now'` timestamp strings): one instant per statement, as in Cassandra.
    pub now_micros: i64,
    pub ids: &'a mut dyn IdSource,
}

impl fmt::Debug for TermContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TermContext")
            .field("values", &self.values.len())
            .field("now_micros", &self.now_micros)
            .finish_non_exhaustive()
    }
}

/// 100 ns intervals between the UUID epoch (1582-10-15) and the Unix epoch.
const UUID_EPOCH_OFFSET: i64 = 0x01B2_1DD2_1381_4000;

/// A version-1 UUID from 100 ns ticks since the Unix epoch and the 8 low bytes as given
/// (Cassandra's min/max timeuuids use fixed low bytes).
pub fn timeuuid_from_ticks(unix_ticks: i64, clock_seq_and_node: u64) -> [u8; 16] {
    let t = unix_ticks.wrapping_add(UUID_EPOCH_OFFSET) as u64;
    let mut u = [0u8; 16];
    u[0..4].copy_from_slice(&((t & 0xffff_ffff) as u32).to_be_bytes());
    u[4..6].copy_from_slice(&(((t >> 32) & 0xffff) as u16).to_be_bytes());
    u[6..8].copy_from_slice(&((((t >> 48) & 0x0fff) as u16) | 0x1000).to_be_bytes());
    u[8..16].copy_from_slice(&clock_seq_and_node.to_be_bytes());
    u
}

/// The Unix time in ms of a version-1 UUID (Cassandra's `toTimestamp(timeuuid)`).
pub fn timeuuid_millis(u: &[u8; 16]) -> i64 {
    let low = u64::from(u32::from_be_bytes([u[0], u[1], u[2], u[3]]));
    let mid = u64::from(u16::from_be_bytes([u[4], u[5]]));
    let high = u64::from(u16::from_be_bytes([u[6], u[7]]) & 0x0fff);
    let ticks = (high << 48 | mid << 32 | low) as i64;
    (ticks - UUID_EPOCH_OFFSET).div_euclid(10_000)
}

/// Cassandra's `minTimeuuid(ms)`: the smallest timeuuid of that millisecond.
pub fn min_timeuuid(millis: i64) -> [u8; 16] {
    timeuuid_from_ticks(millis.saturating_mul(10_000), 0x8080_8080_8080_8080)
}

/// Cassandra's `maxTimeuuid(ms)`: the largest timeuuid of that millisecond.
pub fn max_timeuuid(millis: i64) -> [u8; 16] {
    timeuuid_from_ticks(
        millis.saturating_add(1).saturating_mul(10_000) - 1,
        0x7f7f_7f7f_7f7f_7f7f,
    )
}

/// A deterministic [`IdSource`]: splitmix64 from a seed, a random node per generator, and
/// timeuuids that strictly increase even within one microsecond (the 100 ns digit counts).
#[derive(Debug, Clone)]
pub struct IdGenerator {
    state: u64,
    clock_seq_and_node: u64,
    last_ticks: i64,
}

impl IdGenerator {
    pub fn new(seed: u64) -> Self {
        let mut g = Self {
            state: seed,
            clock_seq_and_node: 0,
            last_ticks: i64::MIN,
        };
        // Variant bits 10, and the multicast bit set as RFC 4122 asks of random node ids.
        g.clock_seq_and_node = (g.next_u64() & 0x3fff_feff_ffff_ffff) | 0x8000_0100_0000_0000;
        g
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl IdSource for IdGenerator {
    fn timeuuid(&mut self, unix_micros: i64) -> [u8; 16] {
        let ticks = unix_micros
            .saturating_mul(10)
            .max(self.last_ticks.saturating_add(1));
        self.last_ticks = ticks;
        timeuuid_from_ticks(ticks, self.clock_seq_and_node)
    }

    fn random_uuid(&mut self) -> [u8; 16] {
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        u[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        u
    }
}

/// Converts `term` into a value of `ty` for the receiver named `column` (the name only
/// appears in error messages and, for `?` markers with named values, selects the value).
pub fn term_to_value(
    term: &Term,
    column: &str,
    ty: &ColumnType,
    ctx: &mut TermContext<'_>,
) -> Result<Bound, ValueError> {
    match term {
        Term::Literal(Literal::Null) => Ok(Bound::Null),
        Term::Literal(lit) => literal(lit, column, ty, ctx).map(Bound::Value),
        Term::Marker { index, name } => {
            let value = bound_value(ctx.values, *index, name.as_deref().unwrap_or(column))?;
            match value {
                Value::Null => Ok(Bound::Null),
                Value::Unset => Ok(Bound::Unset),
                Value::Set(bytes) => decode_bound(ty, bytes).map(Bound::Value),
            }
        }
        Term::List(items) => match ty {
            ColumnType::List(e) => {
                elements(items, column, e, ctx).map(|v| Bound::Value(CqlValue::List(v)))
            }
            ColumnType::Vector { element, dimension } => {
                if items.len() != *dimension as usize {
                    return Err(invalid(format!(
                        "Invalid vector literal for {column} of type {}; expected {dimension} elements, but given {}",
                        ty.cql_name(),
                        items.len()
                    )));
                }
                elements(items, column, element, ctx).map(|v| Bound::Value(CqlValue::Vector(v)))
            }
            _ => Err(literal_mismatch("list", column, ty)),
        },
        Term::Set(items) => match ty {
            ColumnType::Set(e) => {
                elements(items, column, e, ctx).map(|v| Bound::Value(CqlValue::Set(v)))
            }
            _ => Err(literal_mismatch("set", column, ty)),
        },
        Term::Map(entries) => match ty {
            ColumnType::Map(kt, vt) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    out.push((element(k, column, kt, ctx)?, element(v, column, vt, ctx)?));
                }
                Ok(Bound::Value(CqlValue::Map(out)))
            }
            _ => Err(literal_mismatch("map", column, ty)),
        },
        Term::EmptyBraces => match ty {
            ColumnType::Set(_) => Ok(Bound::Value(CqlValue::Set(Vec::new()))),
            ColumnType::Map(..) => Ok(Bound::Value(CqlValue::Map(Vec::new()))),
            _ => Err(literal_mismatch("map", column, ty)),
        },
        Term::Tuple(items) => match ty {
            ColumnType::Tuple(types) => {
                if items.len() > types.len() {
                    return Err(invalid(format!(
                        "Invalid tuple literal for {column}: too many elements. Type {} expects {} but got {}",
                        ty.cql_name(),
                        types.len(),
                        items.len()
                    )));
                }
                let mut out = Vec::with_capacity(types.len());
                for (i, t) in types.iter().enumerate() {
                    out.push(match items.get(i) {
                        None => None,
                        Some(item) => field(item, column, t, ctx)?,
                    });
                }
                Ok(Bound::Value(CqlValue::Tuple(out)))
            }
            _ => Err(literal_mismatch("tuple", column, ty)),
        },
        Term::Udt(given) => match ty {
            ColumnType::Udt {
                keyspace,
                name,
                fields,
            } => {
                if let Some((unknown, _)) = given
                    .iter()
                    .find(|(g, _)| !fields.iter().any(|(f, _)| f == g))
                {
                    return Err(invalid(format!(
                        "Unknown field '{unknown}' in value of user defined type {name}"
                    )));
                }
                let mut out = Vec::with_capacity(fields.len());
                for (f, t) in fields {
                    let v = match given.iter().find(|(g, _)| g == f) {
                        None => None,
                        Some((_, term)) => field(term, column, t, ctx)?,
                    };
                    out.push((f.clone(), v));
                }
                Ok(Bound::Value(CqlValue::Udt {
                    keyspace: keyspace.clone(),
                    name: name.clone(),
                    fields: out,
                }))
            }
            _ => Err(literal_mismatch("user type", column, ty)),
        },
        Term::FunctionCall { name, args } => {
            let fname = name.name.to_ascii_lowercase();
            let v = call(&fname, args, column, ctx)?;
            coerce_result(v, &fname, column, ty)
        }
        Term::Cast { ty: hint, term } => {
            let (hint, _) = hint.resolve(|_| None).map_err(invalid)?;
            let v = term_to_value(term, column, &hint, ctx)?;
            if hint == *ty || matches!(v, Bound::Null | Bound::Unset) {
                return Ok(v);
            }
            Err(invalid(format!(
                "Cannot assign value of type {} to \"{column}\" of type {}",
                hint.cql_name(),
                ty.cql_name()
            )))
        }
        Term::Negate(inner) => {
            let v = term_to_value(inner, column, ty, ctx)?;
            match v {
                Bound::Value(v) => negate(v, ty).map(Bound::Value),
                other => Ok(other),
            }
        }
        Term::Arithmetic { op, left, right } => {
            let l = term_to_value(left, column, ty, ctx)?;
            let r = term_to_value(right, column, ty, ctx)?;
            match (l, r) {
                (Bound::Value(l), Bound::Value(r)) => arithmetic(*op, l, r, ty).map(Bound::Value),
                _ => Err(invalid(format!(
                    "Invalid null value for arithmetic operation on \"{column}\""
                ))),
            }
        }
    }
}

fn literal_mismatch(what: &str, column: &str, ty: &ColumnType) -> ValueError {
    invalid(format!(
        "Invalid {what} literal for {column} of type {}",
        ty.cql_name()
    ))
}

/// The bound value of marker `index`; with named values, the one called `name`.
fn bound_value<'v>(values: &'v Values, index: usize, name: &str) -> Result<&'v Value, ValueError> {
    let unbound = ValueError::Unbound {
        index,
        given: values.len(),
    };
    match values {
        Values::None => Err(unbound),
        Values::Positional(v) => v.get(index).ok_or(unbound),
        Values::Named(v) => v
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| v.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(|(_, val)| val)
            .ok_or(unbound),
    }
}

/// Decodes a bound value, with Cassandra's wording for a fixed-size value of the wrong size.
fn decode_bound(ty: &ColumnType, bytes: &[u8]) -> Result<CqlValue, ValueError> {
    let n = bytes.len();
    let wrong_size = |expected: usize| n != 0 && n != expected;
    let msg = match ty {
        ColumnType::Int if wrong_size(4) => Some(format!("Expected 4 or 0 byte int ({n})")),
        ColumnType::Bigint | ColumnType::Counter if wrong_size(8) => {
            Some(format!("Expected 8 or 0 byte long ({n})"))
        }
        ColumnType::Smallint if n != 2 => Some(format!("Expected 2 bytes for a smallint ({n})")),
        ColumnType::Tinyint if n != 1 => Some(format!("Expected 1 byte for a tinyint ({n})")),
        ColumnType::Float if wrong_size(4) => {
            Some(format!("Expected 4 or 0 byte value for a float ({n})"))
        }
        ColumnType::Double if wrong_size(8) => {
            Some(format!("Expected 8 or 0 byte value for a double ({n})"))
        }
        ColumnType::Boolean if n > 1 => Some(format!("Expected 1 or 0 byte value ({n})")),
        ColumnType::Uuid | ColumnType::Timeuuid if wrong_size(16) => {
            Some(format!("UUID should be 16 or 0 bytes ({n})"))
        }
        ColumnType::Timestamp if wrong_size(8) => {
            Some(format!("Expected 8 or 0 byte long for date ({n})"))
        }
        ColumnType::Date if n != 4 => Some(format!("Expected 4 byte long for date ({n})")),
        ColumnType::Time if n != 8 => Some(format!("Expected 8 byte long for time ({n})")),
        _ => None,
    };
    if let Some(msg) = msg {
        return Err(invalid(msg));
    }
    let v = decode_value(ty, bytes).map_err(|e| invalid(e.to_string()))?;
    if let (ColumnType::Timeuuid, CqlValue::Timeuuid(u)) = (ty, &v)
        && u[6] >> 4 != 1
    {
        return Err(invalid("Invalid version for TimeUUID type."));
    }
    Ok(v)
}

/// A collection element: never null or unset.
fn element(
    term: &Term,
    column: &str,
    ty: &ColumnType,
    ctx: &mut TermContext<'_>,
) -> Result<CqlValue, ValueError> {
    match term_to_value(term, column, ty, ctx)? {
        Bound::Value(v) => Ok(v),
        Bound::Null => Err(invalid("null is not supported inside collections")),
        Bound::Unset => Err(invalid("unset value is not supported inside collections")),
    }
}

fn elements(
    items: &[Term],
    column: &str,
    ty: &ColumnType,
    ctx: &mut TermContext<'_>,
) -> Result<Vec<CqlValue>, ValueError> {
    items.iter().map(|t| element(t, column, ty, ctx)).collect()
}

/// A tuple or UDT field: null allowed, unset refused.
fn field(
    term: &Term,
    column: &str,
    ty: &ColumnType,
    ctx: &mut TermContext<'_>,
) -> Result<Option<CqlValue>, ValueError> {
    match term_to_value(term, column, ty, ctx)? {
        Bound::Value(v) => Ok(Some(v)),
        Bound::Null => Ok(None),
        Bound::Unset => Err(invalid(format!(
            "Invalid unset value for tuple or user type field of {column}"
        ))),
    }
}

// -------------------------------------------------------------------------------------------
// Literals

fn literal(
    lit: &Literal,
    column: &str,
    ty: &ColumnType,
    ctx: &TermContext<'_>,
) -> Result<CqlValue, ValueError> {
    use ColumnType as T;
    let (kind, text): (&str, &str) = match lit {
        Literal::String(s) => ("STRING", s),
        Literal::Integer(s) => ("INTEGER", s),
        Literal::Float(s) => ("FLOAT", s),
        Literal::Bool(true) => ("BOOLEAN", "true"),
        Literal::Bool(false) => ("BOOLEAN", "false"),
        Literal::Null => ("NULL", "null"),
        Literal::Hex(h) => ("HEX", h),
        Literal::Uuid(u) => ("UUID", u),
        Literal::Duration(d) => ("DURATION", d),
    };
    let mismatch = || {
        let shown = if kind == "HEX" {
            format!("0x{text}")
        } else {
            text.to_owned()
        };
        invalid(format!(
            "Invalid {kind} constant ({shown}) for \"{column}\" of type {}",
            ty.cql_name()
        ))
    };
    let make = |what: &str| invalid(format!("Unable to make {what} from '{text}'"));
    Ok(match (lit, ty) {
        (Literal::String(s), T::Varchar) => CqlValue::Text(s.clone()),
        (Literal::String(s), T::Ascii) => {
            if !s.is_ascii() {
                return Err(invalid(format!(
                    "Invalid ASCII character in string literal: '{s}'"
                )));
            }
            CqlValue::Ascii(s.clone())
        }
        (Literal::String(s), T::Inet) => {
            CqlValue::Inet(s.parse::<IpAddr>().map_err(|_| make("inet address"))?)
        }
        (Literal::String(s), T::Timestamp) => {
            CqlValue::Timestamp(parse_timestamp(s, ctx.now_micros.div_euclid(1000))?)
        }
        (Literal::String(s), T::Date) => CqlValue::Date(parse_date(s)?),
        (Literal::String(s), T::Time) => CqlValue::Time(parse_time(s)?),
        (Literal::Integer(s), T::Int) => CqlValue::Int(s.parse().map_err(|_| make("int"))?),
        (Literal::Integer(s), T::Bigint) => CqlValue::Bigint(s.parse().map_err(|_| make("long"))?),
        (Literal::Integer(s), T::Counter) => {
            CqlValue::Counter(s.parse().map_err(|_| make("long"))?)
        }
        (Literal::Integer(s), T::Smallint) => {
            CqlValue::Smallint(s.parse().map_err(|_| make("short"))?)
        }
        (Literal::Integer(s), T::Tinyint) => {
            CqlValue::Tinyint(s.parse().map_err(|_| make("byte"))?)
        }
        (Literal::Integer(s), T::Varint) => {
            CqlValue::Varint(parse_varint(s).ok_or_else(|| make("int"))?)
        }
        (Literal::Integer(s) | Literal::Float(s), T::Decimal) => {
            CqlValue::Decimal(parse_decimal(s).ok_or_else(|| make("BigDecimal"))?)
        }
        (Literal::Integer(s) | Literal::Float(s), T::Double) => {
            CqlValue::Double(parse_float(s).ok_or_else(|| make("double"))?)
        }
        (Literal::Integer(s) | Literal::Float(s), T::Float) => {
            CqlValue::Float(parse_float(s).ok_or_else(|| make("float"))? as f32)
        }
        (Literal::Integer(s), T::Timestamp) => CqlValue::Timestamp(
            s.parse()
                .map_err(|_| invalid(format!("Unable to parse a date/time from '{s}'")))?,
        ),
        (Literal::Integer(s), T::Date) => CqlValue::Date(parse_date(s)?),
        (Literal::Integer(s), T::Time) => CqlValue::Time(parse_time(s)?),
        (Literal::Integer(s) | Literal::Duration(s), T::Duration) => CqlValue::Duration(
            parse_duration(s)
                .ok_or_else(|| invalid(format!("Unable to convert '{s}' to a duration")))?,
        ),
        (Literal::Bool(b), T::Boolean) => CqlValue::Boolean(*b),
        (Literal::Hex(h), T::Blob) => CqlValue::Blob(parse_hex(h)?),
        (Literal::Hex(h), T::Custom(_)) => CqlValue::Custom(parse_hex(h)?),
        (Literal::Uuid(u), T::Uuid) => CqlValue::Uuid(parse_uuid(u).ok_or_else(|| make("UUID"))?),
        (Literal::Uuid(u), T::Timeuuid) => {
            let bytes = parse_uuid(u).ok_or_else(|| make("UUID"))?;
            if bytes[6] >> 4 != 1 {
                return Err(invalid("Invalid version for TimeUUID type."));
            }
            CqlValue::Timeuuid(bytes)
        }
        _ => return Err(mismatch()),
    })
}

fn parse_float(s: &str) -> Option<f64> {
    // Java's Double.parseDouble spellings: `NaN`, `Infinity`, any case per Lexer.g.
    match s.to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Some(f64::NAN),
        "infinity" => Some(f64::INFINITY),
        "-infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Decimal digits → minimal two's-complement bytes, any size.
fn parse_varint(s: &str) -> Option<CqlVarint> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Big-endian magnitude with a spare leading zero byte for the sign.
    let mut mag: Vec<u8> = vec![0];
    for d in digits.bytes() {
        let mut carry = u32::from(d - b'0');
        for b in mag.iter_mut().rev() {
            let v = u32::from(*b) * 10 + carry;
            *b = (v & 0xff) as u8;
            carry = v >> 8;
        }
        if carry > 0 {
            mag.insert(0, carry as u8);
        }
        if mag[0] != 0 {
            mag.insert(0, 0);
        }
    }
    if neg {
        for b in &mut mag {
            *b = !*b;
        }
        for b in mag.iter_mut().rev() {
            let (v, overflow) = b.overflowing_add(1);
            *b = v;
            if !overflow {
                break;
            }
        }
    }
    Some(CqlVarint::from_signed_bytes_be(&mag))
}

/// `[-]digits[.digits][e[+-]digits]` → unscaled digits and scale, as Java's
/// `new BigDecimal(String)`.
fn parse_decimal(s: &str) -> Option<CqlDecimal> {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int_part, frac) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let unscaled = parse_varint(&format!("{int_part}{frac}"))?;
    let scale = i32::try_from(frac.len() as i64 - exp).ok()?;
    Some(CqlDecimal { scale, unscaled })
}

fn parse_hex(h: &str) -> Result<Vec<u8>, ValueError> {
    if !h.len().is_multiple_of(2) {
        return Err(invalid(format!(
            "An hex string representing bytes must have an even length (0x{h})"
        )));
    }
    (0..h.len())
        .step_by(2)
        .map(|i| {
            h.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| invalid(format!("cannot parse '0x{h}' as hex bytes")))
        })
        .collect()
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `[-]YYYY-MM-DD` → days since the Unix epoch.
fn parse_ymd(s: &str) -> Option<i64> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut parts = rest.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(y) || !all_digits(m) || !all_digits(d) || m.len() > 2 || d.len() > 2 {
        return None;
    }
    let y: i64 = y.parse().ok()?;
    let y = if neg { -y } else { y };
    let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `HH:MM[:SS[.fffffffff]]` → nanoseconds of the day.
fn parse_hms(s: &str, seconds_required: bool) -> Option<i64> {
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    let parts: Vec<&str> = main.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 || (seconds_required && parts.len() != 3) {
        return None;
    }
    if parts
        .iter()
        .any(|p| p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let h: i64 = parts[0].parse().ok()?;
    let m: i64 = parts[1].parse().ok()?;
    let sec: i64 = parts.get(2).map_or(Some(0), |p| p.parse().ok())?;
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let nanos = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<i64>().ok()? * 10i64.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
    };
    Some(((h * 60 + m) * 60 + sec) * 1_000_000_000 + nanos)
}

/// A zone suffix: `Z`, `+HH`, `+HHMM`, `+HH:MM` → offset in seconds; `None` when malformed.
fn parse_zone(z: &str) -> Option<i64> {
    if z.eq_ignore_ascii_case("z") || z.eq_ignore_ascii_case("utc") || z.eq_ignore_ascii_case("gmt")
    {
        return Some(0);
    }
    let sign = match z.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = z[1..].chars().filter(|&c| c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (
            digits[..2].parse::<i64>().ok()?,
            digits[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    if h > 18 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// A timestamp string as Cassandra's `TimestampSerializer` reads it: integer milliseconds,
/// `'now'`, or `yyyy-mm-dd[( |T)hh:mm[:ss[.fff]]][zone]`. Without a zone the time is UTC
/// (Cassandra uses the server's zone; the sim's is UTC).
fn parse_timestamp(s: &str, now_millis: i64) -> Result<i64, ValueError> {
    let err = || invalid(format!("Unable to parse a date/time from '{s}'"));
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_millis);
    }
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    // Split off the date: it ends at the first ' ' or 'T' after position 4 (years may be signed).
    let split = t
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == ' ' || c == 'T')
        .map(|(i, _)| i);
    let (date, rest) = match split {
        Some(i) => (&t[..i], t[i + 1..].trim_start()),
        None => {
            // A date alone may still carry a zone: `2026-11-21+0000`.
            let zone_at = t
                .char_indices()
                .skip(8)
                .find(|&(_, c)| c == '+' || c == 'Z' || c == 'z');
            match zone_at {
                Some((i, _)) => (&t[..i], &t[i..]),
                None => (t, ""),
            }
        }
    };
    let days = parse_ymd(date).ok_or_else(err)?;
    // The time runs to the zone: `Z`, `+`, or a `-` after the time digits.
    let zone_start = rest
        .char_indices()
        .find(|&(_, c)| matches!(c, '+' | '-' | 'Z' | 'z' | ' ' | 'U' | 'G'))
        .map_or(rest.len(), |(i, _)| i);
    let (time, zone) = (&rest[..zone_start], rest[zone_start..].trim());
    let nanos = if time.is_empty() {
        0
    } else {
        parse_hms(time, false).ok_or_else(err)?
    };
    let offset = if zone.is_empty() {
        0
    } else {
        parse_zone(zone).ok_or_else(err)?
    };
    let secs = days * 86_400 + nanos / 1_000_000_000 - offset;
    secs.checked_mul(1000)
        .and_then(|ms| ms.checked_add((nanos % 1_000_000_000) / 1_000_000))
        .ok_or_else(err)
}

/// `date`: `'YYYY-MM-DD'`, or an integer (the raw unsigned day count, 2^31 = epoch).
fn parse_date(s: &str) -> Result<u32, ValueError> {
    if !s.is_empty()
        && s.trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|d| u32::try_from(d).ok())
            .ok_or_else(|| {
                invalid(format!(
                    "Unable to make unsigned int (for date) from: '{s}'"
                ))
            });
    }
    let days = parse_ymd(s)
        .ok_or_else(|| invalid(format!("Unable to coerce '{s}' to a formatted date (long)")))?;
    u32::try_from(days + (1i64 << 31))
        .map_err(|_| invalid(format!("Input date {s} is out of the supported range")))
}

/// `time`: `'HH:MM:SS[.fffffffff]'`, or an integer (nanoseconds of the day).
fn parse_time(s: &str) -> Result<i64, ValueError> {
    const NANOS_PER_DAY: i64 = 86_400_000_000_000;
    if !s.is_empty()
        && s.trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return s
            .parse::<i64>()
            .ok()
            .filter(|n| (0..NANOS_PER_DAY).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "Input long out of bounds: {s}; time must be between 0 and 86399999999999"
                ))
            });
    }
    parse_hms(s.trim(), true)
        .ok_or_else(|| invalid(format!("Unable to coerce '{s}' to a formatted time (long)")))
}

/// A duration literal: `1y2mo3w4d5h6m7s8ms9us10ns` (any case, `µs` too) or ISO 8601
/// (`P1Y2M3DT4H5M6S`, `P2W`, `P0001-02-03T04:05:06`), with an optional leading `-`.
pub(crate) fn parse_duration(s: &str) -> Option<CqlDuration> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (months, days, nanos) = if let Some(iso) = body.strip_prefix('P') {
        parse_iso_duration(iso)?
    } else {
        parse_unit_duration(body)?
    };
    let months = i32::try_from(months).ok()?;
    let days = i32::try_from(days).ok()?;
    let nanos = i64::try_from(nanos).ok()?;
    Some(if neg {
        CqlDuration {
            months: -months,
            days: -days,
            nanos: -nanos,
        }
    } else {
        CqlDuration {
            months,
            days,
            nanos,
        }
    })
}

const NS_PER_S: i128 = 1_000_000_000;

fn parse_unit_duration(s: &str) -> Option<(i128, i128, i128)> {
    let (mut months, mut days, mut nanos) = (0i128, 0i128, 0i128);
    let lower = s.to_lowercase();
    let b = lower.as_str();
    let mut i = 0;
    if b.is_empty() {
        return None;
    }
    while i < b.len() {
        let start = i;
        while b.as_bytes().get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let n: i128 = b.get(start..i)?.parse().ok()?;
        let rest = b.get(i..)?;
        let (unit, len) = [
            ("mo", 2),
            ("ms", 2),
            ("us", 2),
            ("µs", "µs".len()),
            ("ns", 2),
            ("y", 1),
            ("w", 1),
            ("d", 1),
            ("h", 1),
            ("m", 1),
            ("s", 1),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        i += len;
        match unit {
            "y" => months += n * 12,
            "mo" => months += n,
            "w" => days += n * 7,
            "d" => days += n,
            "h" => nanos += n * 3600 * NS_PER_S,
            "m" => nanos += n * 60 * NS_PER_S,
            "s" => nanos += n * NS_PER_S,
            "ms" => nanos += n * 1_000_000,
            "us" | "µs" => nanos += n * 1_000,
            _ => nanos += n,
        }
    }
    Some((months, days, nanos))
}

fn parse_iso_duration(s: &str) -> Option<(i128, i128, i128)> {
    let num = |t: &str| t.parse::<i128>().ok();
    // Alternative format: YYYY-MM-DDThh:mm:ss.
    if s.len() == 19 && s.as_bytes().get(4) == Some(&b'-') {
        let (y, mo, d) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
        let (h, mi, se) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
        return Some((y * 12 + mo, d, ((h * 60 + mi) * 60 + se) * NS_PER_S));
    }
    if let Some(w) = s.strip_suffix('W') {
        return Some((0, num(w)? * 7, 0));
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let (mut months, mut days, mut nanos) = (0i128, 0i128, 0i128);
    let mut any = false;
    let mut rest = date;
    while !rest.is_empty() {
        let i = rest.find(|c: char| !c.is_ascii_digit())?;
        let n = num(&rest[..i])?;
        match rest.as_bytes()[i] {
            b'Y' => months += n * 12,
            b'M' => months += n,
            b'D' => days += n,
            _ => return None,
        }
        any = true;
        rest = &rest[i + 1..];
    }
    if let Some(mut rest) = time {
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let i = rest.find(|c: char| !c.is_ascii_digit())?;
            let n = num(&rest[..i])?;
            match rest.as_bytes()[i] {
                b'H' => nanos += n * 3600 * NS_PER_S,
                b'M' => nanos += n * 60 * NS_PER_S,
                b'S' => nanos += n * NS_PER_S,
                _ => return None,
            }
            any = true;
            rest = &rest[i + 1..];
        }
    }
    any.then_some((months, days, nanos))
}

// -------------------------------------------------------------------------------------------
// Functions and arithmetic

/// Converts `term` to the first of `types` it fits (overload resolution for function
/// arguments, in Cassandra's order of preference).
fn first_fit(
    term: &Term,
    column: &str,
    types: &[ColumnType],
    ctx: &mut TermContext<'_>,
) -> Result<CqlValue, ValueError> {
    let mut last = None;
    for ty in types {
        match term_to_value(term, column, ty, ctx) {
            Ok(Bound::Value(v)) => return Ok(v),
            Ok(_) => {
                return Err(invalid(format!(
                    "Invalid null value for argument of a function for \"{column}\""
                )));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| invalid("no argument type")))
}

fn arg<'t>(args: &'t [Term], name: &str, n: usize) -> Result<&'t Term, ValueError> {
    if args.len() != n {
        return Err(invalid(format!(
            "Invalid number of arguments in call to function system.{name}: {n} required but {} provided",
            args.len()
        )));
    }
    args.first()
        .ok_or_else(|| invalid(format!("function system.{name} takes no arguments")))
}

fn no_args(args: &[Term], name: &str) -> Result<(), ValueError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(invalid(format!(
            "Invalid number of arguments in call to function system.{name}: 0 required but {} provided",
            args.len()
        )))
    }
}

/// The native type a conversion function names (`intAsBlob`, `blobAsText` …); counters have
/// no conversion functions.
fn native_named(name: &str) -> Option<ColumnType> {
    super::parser::native_type(name).filter(|t| *t != ColumnType::Counter)
}

/// Evaluates a native function (name lower-cased; Cassandra 5's snake_case aliases too).
fn call(
    fname: &str,
    args: &[Term],
    column: &str,
    ctx: &mut TermContext<'_>,
) -> Result<CqlValue, ValueError> {
    use ColumnType as T;
    let key: String = fname.chars().filter(|&c| c != '_').collect();
    let now_ms = ctx.now_micros.div_euclid(1000);
    Ok(match key.as_str() {
        "now" | "currenttimeuuid" => {
            no_args(args, fname)?;
            CqlValue::Timeuuid(ctx.ids.timeuuid(ctx.now_micros))
        }
        "uuid" => {
            no_args(args, fname)?;
            CqlValue::Uuid(ctx.ids.random_uuid())
        }
        "currenttimestamp" => {
            no_args(args, fname)?;
            CqlValue::Timestamp(now_ms)
        }
        "currentdate" => {
            no_args(args, fname)?;
            CqlValue::Date((now_ms.div_euclid(86_400_000) + (1i64 << 31)) as u32)
        }
        "currenttime" => {
            no_args(args, fname)?;
            CqlValue::Time(ctx.now_micros.rem_euclid(86_400_000_000) * 1000)
        }
        "totimestamp" => {
            let a = arg(args, fname, 1)?;
            match first_fit(a, column, &[T::Timeuuid, T::Date, T::Timestamp], ctx)? {
                CqlValue::Timeuuid(u) => CqlValue::Timestamp(timeuuid_millis(&u)),
                CqlValue::Date(d) => {
                    CqlValue::Timestamp((i64::from(d) - (1i64 << 31)) * 86_400_000)
                }
                other => other,
            }
        }
        "todate" => {
            let a = arg(args, fname, 1)?;
            let ms = match first_fit(a, column, &[T::Timeuuid, T::Timestamp, T::Date], ctx)? {
                CqlValue::Timeuuid(u) => timeuuid_millis(&u),
                CqlValue::Timestamp(ms) => ms,
                other => return Ok(other),
            };
            CqlValue::Date((ms.div_euclid(86_400_000) + (1i64 << 31)) as u32)
        }
        "tounixtimestamp" => {
            let a = arg(args, fname, 1)?;
            CqlValue::Bigint(
                match first_fit(a, column, &[T::Timeuuid, T::Timestamp, T::Date], ctx)? {
                    CqlValue::Timeuuid(u) => timeuuid_millis(&u),
                    CqlValue::Timestamp(ms) => ms,
                    CqlValue::Date(d) => (i64::from(d) - (1i64 << 31)) * 86_400_000,
                    _ => 0,
                },
            )
        }
        "mintimeuuid" | "maxtimeuuid" => {
            let a = arg(args, fname, 1)?;
            let CqlValue::Timestamp(ms) = first_fit(a, column, &[T::Timestamp], ctx)? else {
                return Err(invalid(format!("Invalid argument for {fname}")));
            };
            CqlValue::Timeuuid(if key == "mintimeuuid" {
                min_timeuuid(ms)
            } else {
                max_timeuuid(ms)
            })
        }
        _ => {
            if let Some(ty) = key.strip_suffix("asblob").and_then(native_named) {
                let a = arg(args, fname, 1)?;
                let v = first_fit(a, column, std::slice::from_ref(&ty), ctx)?;
                let mut out = Vec::new();
                encode_value(&ty, &v, &mut out).map_err(|e| invalid(e.to_string()))?;
                return Ok(CqlValue::Blob(out));
            }
            if let Some(ty) = key.strip_prefix("blobas").and_then(native_named) {
                let a = arg(args, fname, 1)?;
                let CqlValue::Blob(b) = first_fit(a, column, &[T::Blob], ctx)? else {
                    return Err(invalid(format!("Invalid argument for {fname}")));
                };
                return decode_value(&ty, &b).map_err(|e| invalid(e.to_string()));
            }
            return Err(invalid(format!("Unknown function '{fname}'")));
        }
    })
}

/// Checks a function's result against the receiver; a timeuuid fits a uuid column.
fn coerce_result(
    v: CqlValue,
    fname: &str,
    column: &str,
    ty: &ColumnType,
) -> Result<Bound, ValueError> {
    let v = match (v, ty) {
        (CqlValue::Timeuuid(u), ColumnType::Uuid) => CqlValue::Uuid(u),
        (CqlValue::Bigint(n), ColumnType::Counter) => CqlValue::Counter(n),
        (v, _) => v,
    };
    if encoded_len(ty, &v).is_ok() {
        return Ok(Bound::Value(v));
    }
    Err(invalid(format!(
        "Type error: cannot assign result of function system.{fname} (type {}) to {column} (type {})",
        v.kind(),
        ty.cql_name()
    )))
}

fn negate(v: CqlValue, ty: &ColumnType) -> Result<CqlValue, ValueError> {
    let overflow = || invalid(format!("the negation overflows type {}", ty.cql_name()));
    Ok(match v {
        CqlValue::Int(n) => CqlValue::Int(n.checked_neg().ok_or_else(overflow)?),
        CqlValue::Bigint(n) => CqlValue::Bigint(n.checked_neg().ok_or_else(overflow)?),
        CqlValue::Counter(n) => CqlValue::Counter(n.checked_neg().ok_or_else(overflow)?),
        CqlValue::Smallint(n) => CqlValue::Smallint(n.checked_neg().ok_or_else(overflow)?),
        CqlValue::Tinyint(n) => CqlValue::Tinyint(n.checked_neg().ok_or_else(overflow)?),
        CqlValue::Float(x) => CqlValue::Float(-x),
        CqlValue::Double(x) => CqlValue::Double(-x),
        CqlValue::Varint(n) => CqlValue::Varint(
            n.to_i128()
                .and_then(i128::checked_neg)
                .map(CqlVarint::from)
                .ok_or_else(overflow)?,
        ),
        CqlValue::Duration(d) => CqlValue::Duration(CqlDuration {
            months: d.months.checked_neg().ok_or_else(overflow)?,
            days: d.days.checked_neg().ok_or_else(overflow)?,
            nanos: d.nanos.checked_neg().ok_or_else(overflow)?,
        }),
        other => {
            return Err(invalid(format!(
                "Negation is not supported for type {}",
                other.kind()
            )));
        }
    })
}

fn int_op(op: ArithOp, a: i64, b: i64) -> Option<i64> {
    match op {
        ArithOp::Add => a.checked_add(b),
        ArithOp::Sub => a.checked_sub(b),
        ArithOp::Mul => a.checked_mul(b),
        ArithOp::Div => a.checked_div(b),
        ArithOp::Rem => a.checked_rem(b),
    }
}

fn float_op(op: ArithOp, a: f64, b: f64) -> f64 {
    match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div => a / b,
        ArithOp::Rem => a % b,
    }
}

fn arithmetic(
    op: ArithOp,
    l: CqlValue,
    r: CqlValue,
    ty: &ColumnType,
) -> Result<CqlValue, ValueError> {
    let fail = || {
        invalid(format!(
            "the operation '{}' overflows, divides by zero or is not supported for type {}",
            op.symbol(),
            ty.cql_name()
        ))
    };
    let i = |a: i64, b: i64| int_op(op, a, b).ok_or_else(fail);
    Ok(match (l, r) {
        (CqlValue::Int(a), CqlValue::Int(b)) => {
            CqlValue::Int(i32::try_from(i(a.into(), b.into())?).map_err(|_| fail())?)
        }
        (CqlValue::Smallint(a), CqlValue::Smallint(b)) => {
            CqlValue::Smallint(i16::try_from(i(a.into(), b.into())?).map_err(|_| fail())?)
        }
        (CqlValue::Tinyint(a), CqlValue::Tinyint(b)) => {
            CqlValue::Tinyint(i8::try_from(i(a.into(), b.into())?).map_err(|_| fail())?)
        }
        (CqlValue::Bigint(a), CqlValue::Bigint(b)) => CqlValue::Bigint(i(a, b)?),
        (CqlValue::Counter(a), CqlValue::Counter(b)) => CqlValue::Counter(i(a, b)?),
        (CqlValue::Timestamp(a), CqlValue::Timestamp(b)) => CqlValue::Timestamp(i(a, b)?),
        (CqlValue::Float(a), CqlValue::Float(b)) => {
            CqlValue::Float(float_op(op, a.into(), b.into()) as f32)
        }
        (CqlValue::Double(a), CqlValue::Double(b)) => CqlValue::Double(float_op(op, a, b)),
        _ => return Err(fail()),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cql::{InsertValues, Statement, parse};

    /// The first VALUES term of `INSERT INTO t (c) VALUES (<text>)`.
    fn term(text: &str) -> Term {
        match parse(&format!("INSERT INTO t (c) VALUES ({text})")) {
            Ok(Statement::Insert(i)) => match i.values {
                InsertValues::Columns { mut values, .. } => values.remove(0),
                other => panic!("{other:?}"),
            },
            other => panic!("{text}: {other:?}"),
        }
    }

    const NOW_MICROS: i64 = 1_700_000_000_123_456;

    fn convert_with(text: &str, ty: &ColumnType, values: &Values) -> Result<Bound, ValueError> {
        let mut ids = IdGenerator::new(7);
        let mut ctx = TermContext {
            values,
            now_micros: NOW_MICROS,
            ids: &mut ids,
        };
        term_to_value(&term(text), "c", ty, &mut ctx)
    }

    fn val(text: &str, ty: &ColumnType) -> CqlValue {
        match convert_with(text, ty, &Values::None) {
            Ok(Bound::Value(v)) => v,
            other => panic!("{text} as {ty:?}: {other:?}"),
        }
    }

    fn err(text: &str, ty: &ColumnType) -> String {
        match convert_with(text, ty, &Values::None) {
            Err(e) => e.to_string(),
            other => panic!("{text} as {ty:?}: expected an error, got {other:?}"),
        }
    }

    use ColumnType as T;
    use CqlValue as V;

    #[test]
    fn integers_with_range_checks() {
        assert_eq!(val("42", &T::Int), V::Int(42));
        assert_eq!(val("-42", &T::Int), V::Int(-42));
        assert_eq!(
            err("3000000000", &T::Int),
            "Unable to make int from '3000000000'"
        );
        assert_eq!(val("3000000000", &T::Bigint), V::Bigint(3_000_000_000));
        assert_eq!(val("5", &T::Counter), V::Counter(5));
        assert_eq!(val("-32768", &T::Smallint), V::Smallint(-32768));
        assert_eq!(
            err("32768", &T::Smallint),
            "Unable to make short from '32768'"
        );
        assert_eq!(val("127", &T::Tinyint), V::Tinyint(127));
        assert_eq!(err("128", &T::Tinyint), "Unable to make byte from '128'");
        assert_eq!(
            err("'x'", &T::Int),
            "Invalid STRING constant (x) for \"c\" of type int"
        );
        assert_eq!(
            err("1.5", &T::Int),
            "Invalid FLOAT constant (1.5) for \"c\" of type int"
        );
    }

    #[test]
    fn varints_and_decimals_of_any_size() {
        let big = "123456789012345678901234567890123456789012345678901234567890";
        let V::Varint(v) = val(big, &T::Varint) else {
            panic!()
        };
        assert_eq!(v.to_string(), big);
        let V::Varint(v) = val(&format!("-{big}"), &T::Varint) else {
            panic!()
        };
        assert_eq!(v.to_string(), format!("-{big}"));
        assert_eq!(val("0", &T::Varint), V::Varint(0i64.into()));
        assert_eq!(val("-128", &T::Varint), V::Varint((-128i64).into()));
        assert_eq!(val("255", &T::Varint), V::Varint(255i64.into()));
        assert_eq!(
            val("123.45", &T::Decimal),
            V::Decimal(CqlDecimal {
                scale: 2,
                unscaled: 12345i64.into()
            })
        );
        assert_eq!(
            val("-1.5e3", &T::Decimal),
            V::Decimal(CqlDecimal {
                scale: -2,
                unscaled: (-15i64).into()
            })
        );
        assert_eq!(
            val("7", &T::Decimal),
            V::Decimal(CqlDecimal {
                scale: 0,
                unscaled: 7i64.into()
            })
        );
        assert!(err("NaN", &T::Decimal).contains("BigDecimal"));
    }

    #[test]
    fn floats() {
        assert_eq!(val("1.5", &T::Double), V::Double(1.5));
        assert_eq!(val("2", &T::Float), V::Float(2.0));
        assert_eq!(val("-Infinity", &T::Double), V::Double(f64::NEG_INFINITY));
        assert!(matches!(val("NaN", &T::Float), V::Float(x) if x.is_nan()));
    }

    #[test]
    fn strings_blobs_booleans_inets_uuids() {
        assert_eq!(val("'héllo'", &T::Varchar), V::Text("héllo".into()));
        assert_eq!(val("$$a'b$$", &T::Varchar), V::Text("a'b".into()));
        assert_eq!(val("'abc'", &T::Ascii), V::Ascii("abc".into()));
        assert!(err("'é'", &T::Ascii).starts_with("Invalid ASCII character"));
        assert_eq!(val("0xCAFE", &T::Blob), V::Blob(vec![0xca, 0xfe]));
        assert_eq!(val("0x", &T::Blob), V::Blob(vec![]));
        assert!(err("0xABC", &T::Blob).contains("even length"));
        assert_eq!(
            err("0x01", &T::Varchar),
            "Invalid HEX constant (0x01) for \"c\" of type text"
        );
        assert_eq!(val("true", &T::Boolean), V::Boolean(true));
        assert_eq!(val("FALSE", &T::Boolean), V::Boolean(false));
        assert_eq!(
            val("'127.0.0.1'", &T::Inet),
            V::Inet("127.0.0.1".parse().unwrap())
        );
        assert_eq!(val("'::1'", &T::Inet), V::Inet("::1".parse().unwrap()));
        assert!(err("'nope'", &T::Inet).contains("inet address"));
        let u = "5b6962dd-3f90-4c93-8f61-eabfb4a03ef1";
        assert!(matches!(val(u, &T::Uuid), V::Uuid(b) if b[0] == 0x5b && b[15] == 0xf1));
        assert_eq!(err(u, &T::Timeuuid), "Invalid version for TimeUUID type.");
        let tu = "50554d6e-29bb-11e5-b345-feff819cdc9f";
        assert!(matches!(val(tu, &T::Timeuuid), V::Timeuuid(_)));
    }

    #[test]
    fn timestamps_in_every_format() {
        let day = 1_795_219_200_000i64; // 2026-11-21T00:00:00Z
        let ten = day + 10 * 3_600_000;
        for (text, want) in [
            ("'2026-11-21'", day),
            ("'2026-11-21 10:00'", ten),
            ("'2026-11-21 10:00:00'", ten),
            ("'2026-11-21 10:00:00+0000'", ten),
            ("'2026-11-21T10:00:00Z'", ten),
            ("'2026-11-21T10:00:00.123Z'", ten + 123),
            ("'2026-11-21 10:00:00.5'", ten + 500),
            ("'2026-11-21 12:00:00+0200'", ten),
            ("'2026-11-21 12:00:00+02:00'", ten),
            ("'2026-11-21 05:00:00-0500'", ten),
            ("'2026-11-21+0000'", day),
            ("'1795219200000'", day),
            ("1795219200000", day),
            ("'now'", NOW_MICROS / 1000),
        ] {
            assert_eq!(val(text, &T::Timestamp), V::Timestamp(want), "{text}");
        }
        assert_eq!(
            val("'1969-12-31 23:59:59'", &T::Timestamp),
            V::Timestamp(-1000)
        );
        for bad in [
            "'2026-13-01'",
            "'2026-02-30'",
            "'yesterday'",
            "'2026-11-21 25:00'",
        ] {
            assert!(
                err(bad, &T::Timestamp).starts_with("Unable to parse a date/time"),
                "{bad}"
            );
        }
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(val("'1970-01-01'", &T::Date), V::Date(1 << 31));
        assert_eq!(val("'2026-11-21'", &T::Date), V::Date((1 << 31) + 20778));
        assert_eq!(val("'1969-12-31'", &T::Date), V::Date((1 << 31) - 1));
        assert_eq!(val("5", &T::Date), V::Date(5));
        assert!(err("'2026-02-29'", &T::Date).contains("formatted date"));
        assert_eq!(val("'10:30:00'", &T::Time), V::Time(37_800_000_000_000));
        assert_eq!(
            val("'10:30:00.000000001'", &T::Time),
            V::Time(37_800_000_000_001)
        );
        assert_eq!(val("'00:00:01.5'", &T::Time), V::Time(1_500_000_000));
        assert_eq!(val("1000", &T::Time), V::Time(1000));
        assert!(err("86400000000000", &T::Time).contains("out of bounds"));
        assert!(err("'24:00:00'", &T::Time).contains("formatted time"));
    }

    #[test]
    fn durations() {
        let d = |months, days, nanos| {
            V::Duration(CqlDuration {
                months,
                days,
                nanos,
            })
        };
        assert_eq!(val("1h30m", &T::Duration), d(0, 0, 5_400_000_000_000));
        assert_eq!(val("1y2mo3w4d", &T::Duration), d(14, 25, 0));
        assert_eq!(val("-3d", &T::Duration), d(0, -3, 0));
        assert_eq!(val("5ms6us7ns", &T::Duration), d(0, 0, 5_006_007));
        assert_eq!(
            val("P1Y2M3DT4H5M6S", &T::Duration),
            d(14, 3, 14_706_000_000_000)
        );
        assert_eq!(val("P2W", &T::Duration), d(0, 14, 0));
        assert_eq!(
            val("P0001-02-03T04:05:06", &T::Duration),
            d(14, 3, 14_706_000_000_000)
        );
        assert!(err("5", &T::Duration).contains("to a duration"));
    }

    #[test]
    fn collections_tuples_udts_vectors() {
        let list = T::List(Box::new(T::Int));
        assert_eq!(val("[1, 2]", &list), V::List(vec![V::Int(1), V::Int(2)]));
        assert_eq!(
            err("[1, null]", &list),
            "null is not supported inside collections"
        );
        assert_eq!(
            err("{1}", &list),
            "Invalid set literal for c of type list<int>"
        );
        let set = T::Set(Box::new(T::Varchar));
        assert_eq!(val("{'a'}", &set), V::Set(vec![V::Text("a".into())]));
        assert_eq!(val("{}", &set), V::Set(vec![]));
        let map = T::Map(Box::new(T::Varchar), Box::new(T::List(Box::new(T::Int))));
        assert_eq!(
            val("{'k': [1]}", &map),
            V::Map(vec![(V::Text("k".into()), V::List(vec![V::Int(1)]))])
        );
        assert_eq!(val("{}", &map), V::Map(vec![]));
        let tuple = T::Tuple(vec![T::Int, T::Varchar, T::Boolean]);
        assert_eq!(
            val("(1, null)", &tuple),
            V::Tuple(vec![Some(V::Int(1)), None, None])
        );
        assert!(err("(1, 'a', true, 2)", &tuple).contains("too many elements"));
        let udt = T::Udt {
            keyspace: "ks".into(),
            name: "addr".into(),
            fields: vec![("street".into(), T::Varchar), ("zip".into(), T::Int)],
        };
        assert_eq!(
            val("{zip: 1}", &udt),
            V::Udt {
                keyspace: "ks".into(),
                name: "addr".into(),
                fields: vec![("street".into(), None), ("zip".into(), Some(V::Int(1)))]
            }
        );
        assert_eq!(
            err("{city: 'x'}", &udt),
            "Unknown field 'city' in value of user defined type addr"
        );
        let vector = T::Vector {
            element: Box::new(T::Float),
            dimension: 2,
        };
        assert_eq!(
            val("[1.0, 2]", &vector),
            V::Vector(vec![V::Float(1.0), V::Float(2.0)])
        );
        assert!(err("[1.0]", &vector).contains("expected 2 elements, but given 1"));
    }

    #[test]
    fn bound_values_null_and_unset() {
        let values = Values::Positional(vec![
            Value::Set(Bytes::from_static(&[0, 0, 0, 7])),
            Value::Null,
            Value::Unset,
            Value::Set(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 7])),
        ]);
        let mut ids = IdGenerator::new(1);
        let mut ctx = TermContext {
            values: &values,
            now_micros: 0,
            ids: &mut ids,
        };
        let m = |index| Term::Marker { index, name: None };
        assert_eq!(
            term_to_value(&m(0), "c", &T::Int, &mut ctx),
            Ok(Bound::Value(V::Int(7)))
        );
        assert_eq!(
            term_to_value(&m(1), "c", &T::Int, &mut ctx),
            Ok(Bound::Null)
        );
        assert_eq!(
            term_to_value(&m(2), "c", &T::Int, &mut ctx),
            Ok(Bound::Unset)
        );
        assert_eq!(
            term_to_value(&m(3), "c", &T::Int, &mut ctx),
            Err(ValueError::Invalid("Expected 4 or 0 byte int (8)".into()))
        );
        assert!(matches!(
            term_to_value(&m(4), "c", &T::Int, &mut ctx),
            Err(ValueError::Unbound { index: 4, given: 4 })
        ));
        assert_eq!(
            term_to_value(&Term::Literal(Literal::Null), "c", &T::Int, &mut ctx),
            Ok(Bound::Null)
        );
        let named = Values::Named(vec![
            ("v".into(), Value::Set(Bytes::from_static(&[1]))),
            ("c".into(), Value::Set(Bytes::from_static(&[0]))),
        ]);
        ctx.values = &named;
        let named_marker = Term::Marker {
            index: 0,
            name: Some("v".into()),
        };
        assert_eq!(
            term_to_value(&named_marker, "x", &T::Boolean, &mut ctx),
            Ok(Bound::Value(V::Boolean(true)))
        );
        // A `?` with named values takes the receiver's name.
        assert_eq!(
            term_to_value(&m(0), "c", &T::Boolean, &mut ctx),
            Ok(Bound::Value(V::Boolean(false)))
        );
    }

    #[test]
    fn functions_and_casts() {
        let V::Timeuuid(u) = val("now()", &T::Timeuuid) else {
            panic!()
        };
        assert_eq!(timeuuid_millis(&u), NOW_MICROS / 1000);
        assert!(matches!(val("now()", &T::Uuid), V::Uuid(_)));
        assert!(matches!(val("uuid()", &T::Uuid), V::Uuid(b) if b[6] >> 4 == 4));
        assert_eq!(
            val("currentTimestamp()", &T::Timestamp),
            V::Timestamp(NOW_MICROS / 1000)
        );
        assert_eq!(
            val("toTimestamp(now())", &T::Timestamp),
            V::Timestamp(NOW_MICROS / 1000)
        );
        assert_eq!(
            val("to_unix_timestamp(now())", &T::Bigint),
            V::Bigint(NOW_MICROS / 1000)
        );
        let V::Timeuuid(min) = val("minTimeuuid('2026-11-21')", &T::Timeuuid) else {
            panic!()
        };
        assert_eq!(timeuuid_millis(&min), 1_795_219_200_000);
        let V::Timeuuid(max) = val("maxTimeuuid(1795219200000)", &T::Timeuuid) else {
            panic!()
        };
        assert_eq!(timeuuid_millis(&max), 1_795_219_200_000);
        assert!(min < max);
        assert_eq!(val("textAsBlob('ab')", &T::Blob), V::Blob(b"ab".to_vec()));
        assert_eq!(val("blobAsText(0x6162)", &T::Varchar), V::Text("ab".into()));
        assert_eq!(val("intAsBlob(1)", &T::Blob), V::Blob(vec![0, 0, 0, 1]));
        assert!(err("now()", &T::Int).starts_with("Type error"));
        assert!(err("nosuch()", &T::Int).contains("Unknown function"));
        assert_eq!(val("(int) 3", &T::Int), V::Int(3));
        assert!(err("(bigint) 3", &T::Int).contains("Cannot assign"));
        assert_eq!(val("1 + 2 * 3", &T::Int), V::Int(7));
        assert!(err("2147483647 + 1", &T::Int).contains("overflows"));
        assert_eq!(val("- 5", &T::Bigint), V::Bigint(-5));
    }

    #[test]
    fn id_generator_is_monotonic_and_versioned() {
        let mut g = IdGenerator::new(3);
        let a = g.timeuuid(1_000);
        let b = g.timeuuid(1_000);
        assert_ne!(a, b);
        assert_eq!(a[6] >> 4, 1);
        assert_eq!(a[8] & 0xc0, 0x80);
        assert_eq!(timeuuid_millis(&a), 1);
        let r = g.random_uuid();
        assert_eq!((r[6] >> 4, r[8] & 0xc0), (4, 0x80));
    }
}
