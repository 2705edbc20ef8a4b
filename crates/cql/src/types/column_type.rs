//! Column types: the `[option]` of result metadata (spec 4.2.5.2 of v4, 6 of v5), their CQL
//! spelling, and Cassandra's marshal class names for the types that travel as `Custom`.
//!
//! Version gating follows Cassandra's `DataType`: a type newer than the connection's protocol
//! travels as `Custom` with its marshal class name (`date`, `time`, `smallint`, `tinyint` below
//! v4; `duration` below v5), and `vector` always does. Reading maps those class names back, so
//! `read_column_type` then `write_column_type` on the same version reproduces the bytes.

use std::fmt::Write as _;

use bytes::BufMut;

use super::MAX_TYPE_DEPTH;
use crate::protocol::ProtocolVersion;
use crate::wire::{self, DecodeError, EncodeError};

/// `[option]` ids of column types.
pub mod type_id {
    pub const CUSTOM: u16 = 0x0000;
    pub const ASCII: u16 = 0x0001;
    pub const BIGINT: u16 = 0x0002;
    pub const BLOB: u16 = 0x0003;
    pub const BOOLEAN: u16 = 0x0004;
    pub const COUNTER: u16 = 0x0005;
    pub const DECIMAL: u16 = 0x0006;
    pub const DOUBLE: u16 = 0x0007;
    pub const FLOAT: u16 = 0x0008;
    pub const INT: u16 = 0x0009;
    /// Protocol v1's `text`; later versions send `VARCHAR`, but servers still understand it.
    pub const TEXT: u16 = 0x000A;
    pub const TIMESTAMP: u16 = 0x000B;
    pub const UUID: u16 = 0x000C;
    pub const VARCHAR: u16 = 0x000D;
    pub const VARINT: u16 = 0x000E;
    pub const TIMEUUID: u16 = 0x000F;
    pub const INET: u16 = 0x0010;
    pub const DATE: u16 = 0x0011;
    pub const TIME: u16 = 0x0012;
    pub const SMALLINT: u16 = 0x0013;
    pub const TINYINT: u16 = 0x0014;
    pub const DURATION: u16 = 0x0015;
    pub const LIST: u16 = 0x0020;
    pub const MAP: u16 = 0x0021;
    pub const SET: u16 = 0x0022;
    pub const UDT: u16 = 0x0030;
    pub const TUPLE: u16 = 0x0031;
}

/// The package of Cassandra's marshal types; short names in class strings imply it.
pub const MARSHAL_PACKAGE: &str = "org.apache.cassandra.db.marshal.";

/// A CQL column type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// A server-side type this crate does not model, by its Java class name.
    Custom(String),
    Ascii,
    Bigint,
    Blob,
    Boolean,
    Counter,
    Decimal,
    Double,
    Float,
    Int,
    Timestamp,
    Uuid,
    /// `text` (`varchar` is its alias).
    Varchar,
    Varint,
    Timeuuid,
    Inet,
    Date,
    Time,
    Smallint,
    Tinyint,
    Duration,
    List(Box<ColumnType>),
    Map(Box<ColumnType>, Box<ColumnType>),
    Set(Box<ColumnType>),
    Udt {
        keyspace: String,
        name: String,
        fields: Vec<(String, ColumnType)>,
    },
    Tuple(Vec<ColumnType>),
    /// Cassandra 5's `vector<element, dimension>`; travels as a `Custom` class name.
    Vector {
        element: Box<ColumnType>,
        dimension: u32,
    },
}

/// Simple types with their marshal class (short name) and CQL spelling, in one table so the
/// three mappings cannot drift apart.
const SIMPLE: &[(ColumnType, &str, &str)] = &[
    (ColumnType::Ascii, "AsciiType", "ascii"),
    (ColumnType::Bigint, "LongType", "bigint"),
    (ColumnType::Blob, "BytesType", "blob"),
    (ColumnType::Boolean, "BooleanType", "boolean"),
    (ColumnType::Counter, "CounterColumnType", "counter"),
    (ColumnType::Decimal, "DecimalType", "decimal"),
    (ColumnType::Double, "DoubleType", "double"),
    (ColumnType::Float, "FloatType", "float"),
    (ColumnType::Int, "Int32Type", "int"),
    (ColumnType::Timestamp, "TimestampType", "timestamp"),
    (ColumnType::Uuid, "UUIDType", "uuid"),
    (ColumnType::Varchar, "UTF8Type", "text"),
    (ColumnType::Varint, "IntegerType", "varint"),
    (ColumnType::Timeuuid, "TimeUUIDType", "timeuuid"),
    (ColumnType::Inet, "InetAddressType", "inet"),
    (ColumnType::Date, "SimpleDateType", "date"),
    (ColumnType::Time, "TimeType", "time"),
    (ColumnType::Smallint, "ShortType", "smallint"),
    (ColumnType::Tinyint, "ByteType", "tinyint"),
    (ColumnType::Duration, "DurationType", "duration"),
];

impl ColumnType {
    fn simple_entry(&self) -> Option<&'static (ColumnType, &'static str, &'static str)> {
        SIMPLE.iter().find(|(t, _, _)| t == self)
    }

    /// The CQL spelling: `int`, `map<text, list<int>>`, `vector<float, 3>`, `ks.udt`,
    /// `'com.example.Type'` for custom types. Collections are not marked `frozen`.
    pub fn cql_name(&self) -> String {
        let mut s = String::new();
        self.write_cql_name(&mut s);
        s
    }

    fn write_cql_name(&self, s: &mut String) {
        if let Some((_, _, cql)) = self.simple_entry() {
            s.push_str(cql);
            return;
        }
        match self {
            Self::Custom(class) => {
                s.push('\'');
                s.push_str(&class.replace('\'', "''"));
                s.push('\'');
            }
            Self::List(e) | Self::Set(e) => {
                s.push_str(if matches!(self, Self::List(_)) {
                    "list<"
                } else {
                    "set<"
                });
                e.write_cql_name(s);
                s.push('>');
            }
            Self::Map(k, v) => {
                s.push_str("map<");
                k.write_cql_name(s);
                s.push_str(", ");
                v.write_cql_name(s);
                s.push('>');
            }
            Self::Tuple(ts) => {
                s.push_str("tuple<");
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    t.write_cql_name(s);
                }
                s.push('>');
            }
            Self::Udt { keyspace, name, .. } => {
                s.push_str(&super::literal::quote_identifier(keyspace));
                s.push('.');
                s.push_str(&super::literal::quote_identifier(name));
            }
            Self::Vector { element, dimension } => {
                s.push_str("vector<");
                element.write_cql_name(s);
                let _ = write!(s, ", {dimension}>");
            }
            _ => unreachable!("simple types are in SIMPLE"),
        }
    }

    /// The marshal class name Cassandra gives this type as a frozen value, exactly as its
    /// `AbstractType.toString()` spells it: `org.apache.cassandra.db.marshal.Int32Type`,
    /// collections, UDTs and tuples wrapped in `FrozenType(…)`, vectors as
    /// `VectorType(<element> , <dimension>)` (Cassandra puts a space on both sides of that comma).
    pub fn marshal_class_name(&self) -> String {
        let mut s = String::new();
        self.write_marshal(&mut s, false);
        s
    }

    /// `ignore_freezing` mirrors Cassandra's `toString(ignoreFreezing)`: only the outermost
    /// frozen type is wrapped in `FrozenType`; everything inside it is frozen implicitly.
    fn write_marshal(&self, s: &mut String, ignore_freezing: bool) {
        if let Some((_, class, _)) = self.simple_entry() {
            s.push_str(MARSHAL_PACKAGE);
            s.push_str(class);
            return;
        }
        if let Self::Custom(class) = self {
            s.push_str(class);
            return;
        }
        if let Self::Vector { element, dimension } = self {
            s.push_str(MARSHAL_PACKAGE);
            s.push_str("VectorType(");
            element.write_marshal(s, ignore_freezing);
            let _ = write!(s, " , {dimension})");
            return;
        }
        if !ignore_freezing {
            s.push_str(MARSHAL_PACKAGE);
            s.push_str("FrozenType(");
        }
        s.push_str(MARSHAL_PACKAGE);
        match self {
            Self::List(e) | Self::Set(e) => {
                s.push_str(if matches!(self, Self::List(_)) {
                    "ListType("
                } else {
                    "SetType("
                });
                e.write_marshal(s, true);
            }
            Self::Map(k, v) => {
                s.push_str("MapType(");
                k.write_marshal(s, true);
                s.push(',');
                v.write_marshal(s, true);
            }
            Self::Tuple(ts) => {
                s.push_str("TupleType(");
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    t.write_marshal(s, true);
                }
            }
            Self::Udt {
                keyspace,
                name,
                fields,
            } => {
                s.push_str("UserType(");
                s.push_str(keyspace);
                s.push(',');
                push_hex(s, name.as_bytes());
                for (field, t) in fields {
                    s.push(',');
                    push_hex(s, field.as_bytes());
                    s.push(':');
                    t.write_marshal(s, true);
                }
            }
            _ => unreachable!("handled above"),
        }
        s.push(')');
        if !ignore_freezing {
            s.push(')');
        }
    }

    /// The size of every value of this type inside a vector, when fixed. Mirrors Cassandra's
    /// `valueLengthIfFixed`: `smallint`, `tinyint`, `date`, `time` and `counter` are *not* fixed
    /// there, so their vector elements carry a length.
    pub fn fixed_value_len(&self) -> Option<usize> {
        match self {
            Self::Boolean => Some(1),
            Self::Int | Self::Float => Some(4),
            Self::Bigint | Self::Double | Self::Timestamp => Some(8),
            Self::Uuid | Self::Timeuuid => Some(16),
            // A zero-size "fixed" value (a hand-built 0-dimension vector) would make the
            // element stride zero; treat it as variable instead.
            Self::Vector { element, dimension } => element
                .fixed_value_len()
                .and_then(|n| n.checked_mul(*dimension as usize))
                .filter(|n| *n > 0),
            _ => None,
        }
    }

    /// Nesting depth: 1 for a simple type.
    pub fn depth(&self) -> usize {
        1 + match self {
            Self::List(e) | Self::Set(e) => e.depth(),
            Self::Vector { element, .. } => element.depth(),
            Self::Map(k, v) => k.depth().max(v.depth()),
            Self::Tuple(ts) => ts.iter().map(Self::depth).max().unwrap_or(0),
            Self::Udt { fields, .. } => fields.iter().map(|(_, t)| t.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

fn too_deep(what: &'static str, depth: usize) -> DecodeError {
    DecodeError::Malformed {
        what,
        reason: format!("type nesting depth {depth} exceeds the maximum {MAX_TYPE_DEPTH}"),
    }
}

/// Reads one column type `[option]`.
pub fn read_column_type(
    buf: &mut &[u8],
    version: ProtocolVersion,
) -> Result<ColumnType, DecodeError> {
    read_at(buf, version, 1)
}

fn read_at(
    buf: &mut &[u8],
    version: ProtocolVersion,
    depth: usize,
) -> Result<ColumnType, DecodeError> {
    const WHAT: &str = "column type";
    if depth > MAX_TYPE_DEPTH {
        return Err(too_deep(WHAT, depth));
    }
    let id = wire::read_short(buf, WHAT)?;
    let next = |buf: &mut &[u8]| read_at(buf, version, depth + 1).map(Box::new);
    Ok(match id {
        type_id::CUSTOM => {
            let class = wire::read_string(buf, "custom type class")?;
            from_custom_class(class, version, depth)?
        }
        type_id::ASCII => ColumnType::Ascii,
        type_id::BIGINT => ColumnType::Bigint,
        type_id::BLOB => ColumnType::Blob,
        type_id::BOOLEAN => ColumnType::Boolean,
        type_id::COUNTER => ColumnType::Counter,
        type_id::DECIMAL => ColumnType::Decimal,
        type_id::DOUBLE => ColumnType::Double,
        type_id::FLOAT => ColumnType::Float,
        type_id::INT => ColumnType::Int,
        type_id::TEXT | type_id::VARCHAR => ColumnType::Varchar,
        type_id::TIMESTAMP => ColumnType::Timestamp,
        type_id::UUID => ColumnType::Uuid,
        type_id::VARINT => ColumnType::Varint,
        type_id::TIMEUUID => ColumnType::Timeuuid,
        type_id::INET => ColumnType::Inet,
        // Accepted on any version: a peer that sends them evidently understands them.
        type_id::DATE => ColumnType::Date,
        type_id::TIME => ColumnType::Time,
        type_id::SMALLINT => ColumnType::Smallint,
        type_id::TINYINT => ColumnType::Tinyint,
        type_id::DURATION => ColumnType::Duration,
        type_id::LIST => ColumnType::List(next(buf)?),
        type_id::SET => ColumnType::Set(next(buf)?),
        type_id::MAP => {
            let k = next(buf)?;
            ColumnType::Map(k, next(buf)?)
        }
        type_id::UDT => {
            let keyspace = wire::read_string(buf, "udt keyspace")?.to_owned();
            let name = wire::read_string(buf, "udt name")?.to_owned();
            let n = wire::read_short(buf, "udt field count")?;
            // A field takes at least 4 bytes (empty name + type id): cap by what is there.
            let mut fields = Vec::with_capacity(usize::from(n).min(buf.len() / 4));
            for _ in 0..n {
                let field = wire::read_string(buf, "udt field name")?.to_owned();
                fields.push((field, *next(buf)?));
            }
            ColumnType::Udt {
                keyspace,
                name,
                fields,
            }
        }
        type_id::TUPLE => {
            let n = wire::read_short(buf, "tuple arity")?;
            let mut ts = Vec::with_capacity(usize::from(n).min(buf.len() / 2));
            for _ in 0..n {
                ts.push(*next(buf)?);
            }
            ColumnType::Tuple(ts)
        }
        other => {
            return Err(DecodeError::InvalidValue {
                what: "column type id",
                value: other.into(),
            });
        }
    })
}

/// The simple type a top-level class name stands for on this version, if Cassandra would
/// have sent it as `Custom` there.
fn gated_simple(class: &str, version: ProtocolVersion) -> Option<ColumnType> {
    let short = class.strip_prefix(MARSHAL_PACKAGE)?;
    let (t, _, _) = SIMPLE.iter().find(|(_, c, _)| *c == short)?;
    (t.min_version() > version).then(|| t.clone())
}

fn from_custom_class(
    class: &str,
    version: ProtocolVersion,
    depth: usize,
) -> Result<ColumnType, DecodeError> {
    if let Some(t) = gated_simple(class, version) {
        return Ok(t);
    }
    let trimmed = class.trim_start();
    let short = trimmed.strip_prefix(MARSHAL_PACKAGE).unwrap_or(trimmed);
    if short.starts_with("VectorType") {
        let mut p = ClassParser { s: class, pos: 0 };
        let t = p.parse(depth)?;
        p.skip_ws();
        if p.pos != class.len() {
            return Err(p.error(format!(
                "{} unparsed characters after the type",
                class.len() - p.pos
            )));
        }
        return Ok(t);
    }
    Ok(ColumnType::Custom(class.to_owned()))
}

impl ColumnType {
    /// The first protocol version with a native id for this type; older ones get `Custom`.
    fn min_version(&self) -> ProtocolVersion {
        match self {
            Self::Date | Self::Time | Self::Smallint | Self::Tinyint => ProtocolVersion::V4,
            Self::Duration => ProtocolVersion::V5,
            _ => ProtocolVersion::V3,
        }
    }
}

/// Writes one column type `[option]` as a server of this protocol version would.
pub fn write_column_type(
    buf: &mut impl BufMut,
    ty: &ColumnType,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    write_at(buf, ty, version, 1)
}

fn write_at(
    buf: &mut impl BufMut,
    ty: &ColumnType,
    version: ProtocolVersion,
    depth: usize,
) -> Result<(), EncodeError> {
    if depth > MAX_TYPE_DEPTH {
        return Err(EncodeError::Invalid {
            what: "column type",
            reason: format!("type nesting depth {depth} exceeds the maximum {MAX_TYPE_DEPTH}"),
        });
    }
    let custom = |buf: &mut _, class: &str| {
        wire::write_short(buf, type_id::CUSTOM);
        wire::write_string(buf, class, "custom type class")
    };
    if ty.min_version() > version {
        return custom(buf, &ty.marshal_class_name());
    }
    let id = match ty {
        ColumnType::Custom(class) => return custom(buf, class),
        ColumnType::Vector { .. } => {
            if ty.depth() > MAX_TYPE_DEPTH + 1 - depth {
                return Err(EncodeError::Invalid {
                    what: "column type",
                    reason: format!("vector nesting depth {} too deep", ty.depth()),
                });
            }
            return custom(buf, &ty.marshal_class_name());
        }
        ColumnType::Ascii => type_id::ASCII,
        ColumnType::Bigint => type_id::BIGINT,
        ColumnType::Blob => type_id::BLOB,
        ColumnType::Boolean => type_id::BOOLEAN,
        ColumnType::Counter => type_id::COUNTER,
        ColumnType::Decimal => type_id::DECIMAL,
        ColumnType::Double => type_id::DOUBLE,
        ColumnType::Float => type_id::FLOAT,
        ColumnType::Int => type_id::INT,
        ColumnType::Timestamp => type_id::TIMESTAMP,
        ColumnType::Uuid => type_id::UUID,
        ColumnType::Varchar => type_id::VARCHAR,
        ColumnType::Varint => type_id::VARINT,
        ColumnType::Timeuuid => type_id::TIMEUUID,
        ColumnType::Inet => type_id::INET,
        ColumnType::Date => type_id::DATE,
        ColumnType::Time => type_id::TIME,
        ColumnType::Smallint => type_id::SMALLINT,
        ColumnType::Tinyint => type_id::TINYINT,
        ColumnType::Duration => type_id::DURATION,
        ColumnType::List(_) => type_id::LIST,
        ColumnType::Map(..) => type_id::MAP,
        ColumnType::Set(_) => type_id::SET,
        ColumnType::Udt { .. } => type_id::UDT,
        ColumnType::Tuple(_) => type_id::TUPLE,
    };
    wire::write_short(buf, id);
    match ty {
        ColumnType::List(e) | ColumnType::Set(e) => write_at(buf, e, version, depth + 1)?,
        ColumnType::Map(k, v) => {
            write_at(buf, k, version, depth + 1)?;
            write_at(buf, v, version, depth + 1)?;
        }
        ColumnType::Udt {
            keyspace,
            name,
            fields,
        } => {
            wire::write_string(buf, keyspace, "udt keyspace")?;
            wire::write_string(buf, name, "udt name")?;
            wire::write_short(buf, count_u16(fields.len(), "udt field count")?);
            for (field, t) in fields {
                wire::write_string(buf, field, "udt field name")?;
                write_at(buf, t, version, depth + 1)?;
            }
        }
        ColumnType::Tuple(ts) => {
            wire::write_short(buf, count_u16(ts.len(), "tuple arity")?);
            for t in ts {
                write_at(buf, t, version, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn count_u16(n: usize, what: &'static str) -> Result<u16, EncodeError> {
    u16::try_from(n).map_err(|_| EncodeError::TooLong {
        what,
        len: n,
        max: u16::MAX.into(),
    })
}

/// A recursive-descent reader of Cassandra's `TypeParser` syntax, enough for what may sit
/// inside a `VectorType(…)`: simple types, `FrozenType`/`ReversedType` wrappers (dropped),
/// collections, tuples, `UserType(ks,hexname,hexfield:type,…)` and nested vectors. Blanks are
/// skipped anywhere, short names imply [`MARSHAL_PACKAGE`], and an unknown class (with any
/// parameters) becomes `Custom` holding its exact text.
struct ClassParser<'a> {
    s: &'a str,
    pos: usize,
}

const CLASS_WHAT: &str = "custom type class";

impl<'a> ClassParser<'a> {
    fn error(&self, reason: String) -> DecodeError {
        DecodeError::Malformed {
            what: CLASS_WHAT,
            reason: format!("{reason} at offset {}", self.pos),
        }
    }

    fn skip_ws(&mut self) {
        while self
            .s
            .as_bytes()
            .get(self.pos)
            .is_some_and(u8::is_ascii_whitespace)
        {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), DecodeError> {
        match self.peek() {
            Some(got) if got == c => {
                self.pos += 1;
                Ok(())
            }
            Some(got) => {
                Err(self.error(format!("expected '{}', found '{}'", c as char, got as char)))
            }
            None => Err(self.error(format!("expected '{}', found the end", c as char))),
        }
    }

    /// A class name, keyspace or hex string: Java identifier characters, dots and dashes.
    fn word(&mut self) -> Result<&'a str, DecodeError> {
        self.skip_ws();
        let start = self.pos;
        while self.s.as_bytes().get(self.pos).is_some_and(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'$' | b'-' | b'+')
        }) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a name".to_owned()));
        }
        Ok(&self.s[start..self.pos])
    }

    fn hex_string(&mut self) -> Result<String, DecodeError> {
        let hex = self.word()?;
        if hex.len() % 2 != 0 {
            return Err(self.error(format!("odd-length hex name '{hex}'")));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| self.error(format!("invalid hex name '{hex}'")))?;
        String::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { what: CLASS_WHAT })
    }

    fn parse(&mut self, depth: usize) -> Result<ColumnType, DecodeError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(too_deep(CLASS_WHAT, depth));
        }
        let start = {
            self.skip_ws();
            self.pos
        };
        let name = self.word()?;
        let short = name.strip_prefix(MARSHAL_PACKAGE).unwrap_or(name);
        if let Some((t, _, _)) = SIMPLE.iter().find(|(_, c, _)| *c == short) {
            return Ok(t.clone());
        }
        let t = match short {
            "FrozenType" | "ReversedType" => {
                self.expect(b'(')?;
                let inner = self.parse(depth + 1)?;
                self.expect(b')')?;
                return Ok(inner);
            }
            "ListType" | "SetType" => {
                self.expect(b'(')?;
                let e = Box::new(self.parse(depth + 1)?);
                if short == "ListType" {
                    ColumnType::List(e)
                } else {
                    ColumnType::Set(e)
                }
            }
            "MapType" => {
                self.expect(b'(')?;
                let k = Box::new(self.parse(depth + 1)?);
                self.expect(b',')?;
                ColumnType::Map(k, Box::new(self.parse(depth + 1)?))
            }
            "TupleType" => {
                self.expect(b'(')?;
                let mut ts = vec![self.parse(depth + 1)?];
                while self.peek() == Some(b',') {
                    self.pos += 1;
                    ts.push(self.parse(depth + 1)?);
                }
                ColumnType::Tuple(ts)
            }
            "UserType" => {
                self.expect(b'(')?;
                let keyspace = self.word()?.to_owned();
                self.expect(b',')?;
                let name = self.hex_string()?;
                let mut fields = Vec::new();
                while self.peek() == Some(b',') {
                    self.pos += 1;
                    let field = self.hex_string()?;
                    self.expect(b':')?;
                    fields.push((field, self.parse(depth + 1)?));
                }
                ColumnType::Udt {
                    keyspace,
                    name,
                    fields,
                }
            }
            "VectorType" => {
                self.expect(b'(')?;
                let element = Box::new(self.parse(depth + 1)?);
                self.expect(b',')?;
                let dim = self.word()?;
                let dimension = dim.parse::<i32>().ok().filter(|d| *d > 0).ok_or_else(|| {
                    self.error(format!("vector dimension '{dim}' is not a positive int"))
                })?;
                ColumnType::Vector {
                    element,
                    dimension: dimension as u32,
                }
            }
            _ => {
                // Unknown class: keep its exact text, parameters included, blanks after excluded.
                let mut end = self.pos;
                if self.peek() == Some(b'(') {
                    self.skip_balanced()?;
                    end = self.pos;
                }
                return Ok(ColumnType::Custom(self.s[start..end].to_owned()));
            }
        };
        self.expect(b')')?;
        Ok(t)
    }

    fn skip_balanced(&mut self) -> Result<(), DecodeError> {
        let mut open = 0usize;
        while let Some(&b) = self.s.as_bytes().get(self.pos) {
            self.pos += 1;
            match b {
                b'(' => open += 1,
                b')' => {
                    open -= 1;
                    if open == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(self.error("unbalanced parentheses".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(t: &ColumnType, v: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        write_column_type(&mut out, t, v).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&read_column_type(&mut s, v).unwrap(), t, "{v}");
        assert!(s.is_empty());
        let mut again = Vec::new();
        write_column_type(&mut again, t, v).unwrap();
        assert_eq!(again, out);
        out
    }

    fn list(t: ColumnType) -> ColumnType {
        ColumnType::List(Box::new(t))
    }

    #[test]
    fn every_simple_type_roundtrips_on_every_version() {
        for (t, _, _) in SIMPLE {
            for v in ProtocolVersion::ALL {
                roundtrip(t, v);
            }
        }
        assert_eq!(
            roundtrip(&ColumnType::Int, ProtocolVersion::V4),
            [0x00, 0x09]
        );
        assert_eq!(
            roundtrip(&ColumnType::Varchar, ProtocolVersion::V4),
            [0x00, 0x0d]
        );
    }

    #[test]
    fn newer_types_travel_as_custom_on_older_versions() {
        let v4 = roundtrip(&ColumnType::Duration, ProtocolVersion::V4);
        let mut expected = vec![0x00, 0x00];
        let class = "org.apache.cassandra.db.marshal.DurationType";
        expected.extend_from_slice(&(class.len() as u16).to_be_bytes());
        expected.extend_from_slice(class.as_bytes());
        assert_eq!(v4, expected);
        assert_eq!(
            roundtrip(&ColumnType::Duration, ProtocolVersion::V5),
            [0x00, 0x15]
        );
        assert_eq!(
            &roundtrip(&ColumnType::Date, ProtocolVersion::V3)[..2],
            [0x00, 0x00]
        );
        assert_eq!(
            roundtrip(&ColumnType::Date, ProtocolVersion::V4),
            [0x00, 0x11]
        );
        // The same class name on a version that has the native id stays Custom.
        let t = ColumnType::Custom(class.to_owned());
        assert_eq!(roundtrip(&t, ProtocolVersion::V5), expected);
    }

    #[test]
    fn legacy_text_id_reads_as_varchar() {
        let mut b: &[u8] = &[0x00, 0x0a];
        assert_eq!(
            read_column_type(&mut b, ProtocolVersion::V4).unwrap(),
            ColumnType::Varchar
        );
    }

    #[test]
    fn v5_udt_option_hand_checked() {
        // frozen<ks.addr> with fields (street text, zip int), as a v5 RESULT metadata carries it.
        #[rustfmt::skip]
        let bytes: &[u8] = &[
            0x00, 0x30,
            0x00, 0x02, b'k', b's',
            0x00, 0x04, b'a', b'd', b'd', b'r',
            0x00, 0x02,
            0x00, 0x06, b's', b't', b'r', b'e', b'e', b't', 0x00, 0x0d,
            0x00, 0x03, b'z', b'i', b'p', 0x00, 0x09,
        ];
        let t = ColumnType::Udt {
            keyspace: "ks".into(),
            name: "addr".into(),
            fields: vec![
                ("street".into(), ColumnType::Varchar),
                ("zip".into(), ColumnType::Int),
            ],
        };
        let mut s = bytes;
        assert_eq!(read_column_type(&mut s, ProtocolVersion::V5).unwrap(), t);
        assert_eq!(roundtrip(&t, ProtocolVersion::V5), bytes);
        assert_eq!(t.cql_name(), "ks.addr");
    }

    #[test]
    fn collections_and_tuples() {
        let m = ColumnType::Map(
            Box::new(ColumnType::Varchar),
            Box::new(list(ColumnType::Int)),
        );
        assert_eq!(
            roundtrip(&m, ProtocolVersion::V4),
            [0x00, 0x21, 0x00, 0x0d, 0x00, 0x20, 0x00, 0x09]
        );
        assert_eq!(m.cql_name(), "map<text, list<int>>");
        let t = ColumnType::Tuple(vec![
            ColumnType::Int,
            ColumnType::Set(Box::new(ColumnType::Uuid)),
        ]);
        roundtrip(&t, ProtocolVersion::V3);
        assert_eq!(t.cql_name(), "tuple<int, set<uuid>>");
    }

    #[test]
    fn vector_class_name_is_cassandras() {
        let t = ColumnType::Vector {
            element: Box::new(ColumnType::Float),
            dimension: 3,
        };
        let class = "org.apache.cassandra.db.marshal.VectorType(org.apache.cassandra.db.marshal.FloatType , 3)";
        assert_eq!(t.marshal_class_name(), class);
        assert_eq!(t.cql_name(), "vector<float, 3>");
        let bytes = roundtrip(&t, ProtocolVersion::V5);
        assert_eq!(&bytes[..4], [0x00, 0x00, 0x00, class.len() as u8]);
        assert_eq!(&bytes[4..], class.as_bytes());
        // Drivers and docs also spell it with ", " or short names: same type.
        for spelled in [
            "org.apache.cassandra.db.marshal.VectorType(org.apache.cassandra.db.marshal.FloatType, 3)",
            "VectorType(FloatType,3)",
        ] {
            let mut b = Vec::new();
            wire::write_short(&mut b, 0);
            wire::write_string(&mut b, spelled, "x").unwrap();
            assert_eq!(
                read_column_type(&mut b.as_slice(), ProtocolVersion::V4).unwrap(),
                t
            );
        }
    }

    #[test]
    fn vector_of_parameterized_elements() {
        let udt = ColumnType::Udt {
            keyspace: "ks".into(),
            name: "p".into(),
            fields: vec![("x".into(), list(ColumnType::Int))],
        };
        let t = ColumnType::Vector {
            element: Box::new(ColumnType::Vector {
                element: Box::new(ColumnType::Tuple(vec![udt, ColumnType::Varchar])),
                dimension: 2,
            }),
            dimension: 4,
        };
        let m = "org.apache.cassandra.db.marshal.";
        let expected = format!(
            "{m}VectorType({m}VectorType({m}FrozenType({m}TupleType({m}UserType(ks,70,78:{m}ListType({m}Int32Type)),{m}UTF8Type)) , 2) , 4)"
        );
        assert_eq!(t.marshal_class_name(), expected);
        roundtrip(&t, ProtocolVersion::V5);
        let unknown = ColumnType::Vector {
            element: Box::new(ColumnType::Custom("com.example.Thing(a,b)".into())),
            dimension: 1,
        };
        roundtrip(&unknown, ProtocolVersion::V4);
    }

    #[test]
    fn bad_vector_classes_are_errors() {
        for bad in [
            "VectorType(FloatType , 0)",
            "VectorType(FloatType , -1)",
            "VectorType(FloatType , x)",
            "VectorType(FloatType",
            "VectorType(FloatType , 3) trailing",
            "VectorType(UserType(ks,zz,61:Int32Type) , 1)",
        ] {
            let mut b = Vec::new();
            wire::write_short(&mut b, 0);
            wire::write_string(&mut b, bad, "x").unwrap();
            assert!(
                read_column_type(&mut b.as_slice(), ProtocolVersion::V5).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let mut bytes = [0x00u8, 0x20].repeat(10_000);
        bytes.extend_from_slice(&[0x00, 0x09]);
        let err = read_column_type(&mut bytes.as_slice(), ProtocolVersion::V4).unwrap_err();
        assert!(err.to_string().contains("exceeds the maximum 64"), "{err}");
        let mut ok = [0x00u8, 0x20].repeat(MAX_TYPE_DEPTH - 1);
        ok.extend_from_slice(&[0x00, 0x09]);
        assert_eq!(
            read_column_type(&mut ok.as_slice(), ProtocolVersion::V4)
                .unwrap()
                .depth(),
            MAX_TYPE_DEPTH
        );
        let class = format!(
            "VectorType({}FloatType{} , 1)",
            "ListType(".repeat(5_000),
            ")".repeat(5_000)
        );
        let mut b = Vec::new();
        wire::write_short(&mut b, 0);
        wire::write_string(&mut b, &class, "x").unwrap();
        assert!(read_column_type(&mut b.as_slice(), ProtocolVersion::V5).is_err());
    }

    proptest! {
        #[test]
        fn random_types_roundtrip(t in super::super::strategies::column_type()) {
            for v in ProtocolVersion::ALL {
                roundtrip(&t, v);
            }
        }

        #[test]
        fn read_column_type_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            for v in ProtocolVersion::ALL {
                let _ = read_column_type(&mut data.as_slice(), v);
            }
        }

        #[test]
        fn read_column_type_never_panics_on_nested_prefixes(
            prefix in proptest::collection::vec(prop_oneof![
                Just(vec![0x00u8, 0x20]), Just(vec![0x00, 0x21, 0x00, 0x09]), Just(vec![0x00, 0x31, 0x00, 0x02]),
            ], 0..200),
            tail in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut data: Vec<u8> = prefix.concat();
            data.extend(tail);
            let _ = read_column_type(&mut data.as_slice(), ProtocolVersion::V5);
        }

        #[test]
        fn class_parser_never_panics(s in "[A-Za-z(),: 0-9.]{0,80}") {
            let mut b = Vec::new();
            wire::write_short(&mut b, 0);
            wire::write_string(&mut b, &format!("VectorType({s}"), "x").unwrap();
            let _ = read_column_type(&mut b.as_slice(), ProtocolVersion::V5);
        }
    }
}
