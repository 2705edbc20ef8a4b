//! `<query_parameters>` of QUERY and EXECUTE (spec v4 §4.1.4, v5 §4.1.4), and the bound values
//! that QUERY, EXECUTE and BATCH children carry.
//!
//! Values stay zero-copy slices of the request body: a proxy forwards them, it never needs to
//! own them.

use bytes::{BufMut, Bytes};

use crate::protocol::{Consistency, ProtocolVersion, read_consistency, write_consistency};
use crate::wire::{self, DecodeError, EncodeError, RawValue};

/// Query flag bits. v3/v4 send them as a `[byte]`, v5 as an `[int]`.
pub mod query_flags {
    pub const VALUES: u32 = 0x01;
    pub const SKIP_METADATA: u32 = 0x02;
    pub const PAGE_SIZE: u32 = 0x04;
    pub const WITH_PAGING_STATE: u32 = 0x08;
    pub const WITH_SERIAL_CONSISTENCY: u32 = 0x10;
    pub const WITH_DEFAULT_TIMESTAMP: u32 = 0x20;
    pub const WITH_NAMES_FOR_VALUES: u32 = 0x40;
    /// v5 only.
    pub const WITH_KEYSPACE: u32 = 0x80;
    /// v5 only.
    pub const WITH_NOW_IN_SECONDS: u32 = 0x100;
}

/// One bound value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Null,
    /// "Not set" (v4+): leaves the column unchanged.
    Unset,
    Set(Bytes),
}

impl Value {
    pub(crate) fn from_raw(raw: RawValue<'_>, body: &Bytes) -> Self {
        match raw {
            RawValue::Null => Self::Null,
            RawValue::Unset => Self::Unset,
            RawValue::Bytes(b) => Self::Set(share(body, b)),
        }
    }

    pub fn as_raw(&self) -> RawValue<'_> {
        match self {
            Self::Null => RawValue::Null,
            Self::Unset => RawValue::Unset,
            Self::Set(b) => RawValue::Bytes(b),
        }
    }
}

/// A zero-copy `Bytes` for a slice borrowed from `body`.
pub(crate) fn share(body: &Bytes, slice: &[u8]) -> Bytes {
    if slice.is_empty() {
        Bytes::new()
    } else {
        body.slice_ref(slice)
    }
}

/// Bound values, positional or by marker name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Values {
    #[default]
    None,
    Positional(Vec<Value>),
    Named(Vec<(String, Value)>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Positional(v) => v.len(),
            Self::Named(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `[short] n` then n values, each preceded by a `[string]` name when `named`.
    pub(crate) fn decode(
        buf: &mut &[u8],
        body: &Bytes,
        named: bool,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let n = wire::read_short(buf, "value count")?;
        // Every value takes at least its 4-byte length: bound the allocation by what is there.
        let cap = usize::from(n).min(buf.len() / 4);
        if named {
            let mut out = Vec::with_capacity(cap);
            for _ in 0..n {
                let name = wire::read_string(buf, "value name")?.to_owned();
                out.push((name, read_bound_value(buf, body, version)?));
            }
            Ok(Self::Named(out))
        } else {
            let mut out = Vec::with_capacity(cap);
            for _ in 0..n {
                out.push(read_bound_value(buf, body, version)?);
            }
            Ok(Self::Positional(out))
        }
    }

    pub(crate) fn encode(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        let count = u16::try_from(self.len()).map_err(|_| EncodeError::TooLong {
            what: "value count",
            len: self.len(),
            max: u16::MAX as usize,
        })?;
        buf.put_u16(count);
        match self {
            Self::None => {}
            Self::Positional(vs) => {
                for v in vs {
                    wire::write_value(buf, v.as_raw(), "value")?;
                }
            }
            Self::Named(vs) => {
                for (name, v) in vs {
                    wire::write_string(buf, name, "value name")?;
                    wire::write_value(buf, v.as_raw(), "value")?;
                }
            }
        }
        Ok(())
    }
}

fn read_bound_value(
    buf: &mut &[u8],
    body: &Bytes,
    version: ProtocolVersion,
) -> Result<Value, DecodeError> {
    let raw = wire::read_value(buf, "value")?;
    if raw == RawValue::Unset && !version.supports_unset() {
        return Err(DecodeError::Malformed {
            what: "value",
            reason: format!("'not set' (-2) does not exist in protocol {version}"),
        });
    }
    Ok(Value::from_raw(raw, body))
}

/// Reads the flags field: `[byte]` before v5, `[int]` from v5 on.
pub(crate) fn read_flags(buf: &mut &[u8], version: ProtocolVersion) -> Result<u32, DecodeError> {
    if version >= ProtocolVersion::V5 {
        Ok(wire::read_int(buf, "flags")? as u32)
    } else {
        Ok(wire::read_byte(buf, "flags")?.into())
    }
}

pub(crate) fn write_flags(
    buf: &mut impl BufMut,
    flags: u32,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    if version >= ProtocolVersion::V5 {
        buf.put_u32(flags);
    } else {
        let byte = u8::try_from(flags).map_err(|_| EncodeError::Invalid {
            what: "flags",
            reason: format!("flags 0x{flags:x} need protocol v5"),
        })?;
        buf.put_u8(byte);
    }
    Ok(())
}

/// The optional fields that end both `<query_parameters>` and a BATCH, in wire order:
/// `[<serial_consistency>][<timestamp>][<keyspace> (v5)][<now_in_seconds> (v5)]`.
#[derive(Debug, Default)]
pub(crate) struct Tail<'a> {
    pub(crate) serial_consistency: Option<Consistency>,
    pub(crate) default_timestamp: Option<i64>,
    pub(crate) keyspace: Option<std::borrow::Cow<'a, str>>,
    pub(crate) now_in_seconds: Option<i32>,
}

impl<'a> Tail<'a> {
    pub(crate) fn new(
        serial_consistency: Option<Consistency>,
        default_timestamp: Option<i64>,
        keyspace: Option<&'a str>,
        now_in_seconds: Option<i32>,
    ) -> Self {
        let keyspace = keyspace.map(Into::into);
        Self {
            serial_consistency,
            default_timestamp,
            keyspace,
            now_in_seconds,
        }
    }

    pub(crate) fn decode(buf: &mut &'a [u8], flags: u32) -> Result<Self, DecodeError> {
        use query_flags::*;
        let on = |bit: u32| flags & bit != 0;
        Ok(Self {
            serial_consistency: on(WITH_SERIAL_CONSISTENCY)
                .then(|| read_consistency(buf))
                .transpose()?,
            default_timestamp: on(WITH_DEFAULT_TIMESTAMP)
                .then(|| wire::read_long(buf, "default timestamp"))
                .transpose()?,
            keyspace: on(WITH_KEYSPACE)
                .then(|| wire::read_string(buf, "keyspace").map(Into::into))
                .transpose()?,
            now_in_seconds: on(WITH_NOW_IN_SECONDS)
                .then(|| wire::read_int(buf, "now in seconds"))
                .transpose()?,
        })
    }

    pub(crate) fn flags(&self) -> u32 {
        use query_flags::*;
        let set = |on: bool, bit: u32| if on { bit } else { 0 };
        set(self.serial_consistency.is_some(), WITH_SERIAL_CONSISTENCY)
            | set(self.default_timestamp.is_some(), WITH_DEFAULT_TIMESTAMP)
            | set(self.keyspace.is_some(), WITH_KEYSPACE)
            | set(self.now_in_seconds.is_some(), WITH_NOW_IN_SECONDS)
    }

    pub(crate) fn encode(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        if let Some(c) = self.serial_consistency {
            write_consistency(buf, c);
        }
        if let Some(ts) = self.default_timestamp {
            wire::write_long(buf, ts);
        }
        if let Some(ks) = &self.keyspace {
            wire::write_string(buf, ks, "keyspace")?;
        }
        if let Some(now) = self.now_in_seconds {
            wire::write_int(buf, now);
        }
        Ok(())
    }

    pub(crate) fn into_owned(
        self,
    ) -> (
        Option<Consistency>,
        Option<i64>,
        Option<String>,
        Option<i32>,
    ) {
        (
            self.serial_consistency,
            self.default_timestamp,
            self.keyspace.map(std::borrow::Cow::into_owned),
            self.now_in_seconds,
        )
    }
}

/// The parameters after the query string (QUERY) or prepared id (EXECUTE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParameters {
    pub consistency: Consistency,
    pub values: Values,
    /// Ask the server to leave result metadata out (the client has it from PREPARE).
    pub skip_metadata: bool,
    pub page_size: Option<i32>,
    pub paging_state: Option<Bytes>,
    pub serial_consistency: Option<Consistency>,
    /// The client's write timestamp in µs; the proxy sets it so both clusters agree.
    pub default_timestamp: Option<i64>,
    /// v5: run the statement in this keyspace instead of the connection's.
    pub keyspace: Option<String>,
    /// v5: the "now" used for TTL expiry and `now()`, for tests and replays.
    pub now_in_seconds: Option<i32>,
}

impl Default for QueryParameters {
    fn default() -> Self {
        Self {
            consistency: Consistency::One,
            values: Values::None,
            skip_metadata: false,
            page_size: None,
            paging_state: None,
            serial_consistency: None,
            default_timestamp: None,
            keyspace: None,
            now_in_seconds: None,
        }
    }
}

impl QueryParameters {
    pub fn decode(
        buf: &mut &[u8],
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        use query_flags::*;
        let consistency = read_consistency(buf)?;
        let flags = read_flags(buf, version)?;
        if version < ProtocolVersion::V5 && flags & (WITH_KEYSPACE | WITH_NOW_IN_SECONDS) != 0 {
            return Err(DecodeError::InvalidValue {
                what: "query flags",
                value: flags.into(),
            });
        }
        let values = if flags & VALUES != 0 {
            Values::decode(buf, body, flags & WITH_NAMES_FOR_VALUES != 0, version)?
        } else {
            Values::None
        };
        let page_size = if flags & PAGE_SIZE != 0 {
            Some(wire::read_int(buf, "page size")?)
        } else {
            None
        };
        let paging_state = if flags & WITH_PAGING_STATE != 0 {
            wire::read_bytes(buf, "paging state")?.map(|s| share(body, s))
        } else {
            None
        };
        let (serial_consistency, default_timestamp, keyspace, now_in_seconds) =
            Tail::decode(buf, flags)?.into_owned();
        Ok(Self {
            consistency,
            values,
            skip_metadata: flags & SKIP_METADATA != 0,
            page_size,
            paging_state,
            serial_consistency,
            default_timestamp,
            keyspace,
            now_in_seconds,
        })
    }

    /// The flags these parameters need.
    pub fn flags(&self) -> u32 {
        use query_flags::*;
        let mut f = 0;
        match self.values {
            Values::None => {}
            Values::Positional(_) => f |= VALUES,
            Values::Named(_) => f |= VALUES | WITH_NAMES_FOR_VALUES,
        }
        let set = |on: bool, bit: u32| if on { bit } else { 0 };
        f | set(self.skip_metadata, SKIP_METADATA)
            | set(self.page_size.is_some(), PAGE_SIZE)
            | set(self.paging_state.is_some(), WITH_PAGING_STATE)
            | self.tail().flags()
    }

    fn tail(&self) -> Tail<'_> {
        let ks = self.keyspace.as_deref();
        Tail::new(
            self.serial_consistency,
            self.default_timestamp,
            ks,
            self.now_in_seconds,
        )
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_consistency(buf, self.consistency);
        write_flags(buf, self.flags(), version)?;
        if !matches!(self.values, Values::None) {
            self.values.encode(buf)?;
        }
        if let Some(n) = self.page_size {
            wire::write_int(buf, n);
        }
        if let Some(state) = &self.paging_state {
            wire::write_bytes(buf, Some(state), "paging state")?;
        }
        self.tail().encode(buf)
    }
}
