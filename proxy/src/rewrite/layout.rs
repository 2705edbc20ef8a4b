//! Where each field of a QUERY, EXECUTE or BATCH body starts: one pass over the body that checks
//! every length and records byte offsets, without decoding or copying a value. The rewrites
//! splice at these offsets.
//!
//! Every walk runs to the end of the body and fails on trailing bytes, so a rewrite never
//! "fixes" a body the server would have refused.

use std::ops::Range;

use ferry_cql::protocol::{ProtocolVersion, read_consistency};
use ferry_cql::request::params::query_flags::{
    PAGE_SIZE, VALUES, WITH_DEFAULT_TIMESTAMP, WITH_KEYSPACE, WITH_NAMES_FOR_VALUES,
    WITH_NOW_IN_SECONDS, WITH_PAGING_STATE, WITH_SERIAL_CONSISTENCY,
};
use ferry_cql::wire::{self, DecodeError};

/// A cursor that knows its offset in the body.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reader<'a> {
    len: usize,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(body: &'a [u8]) -> Self {
        Self {
            len: body.len(),
            rest: body,
        }
    }

    pub(super) fn pos(&self) -> usize {
        self.len - self.rest.len()
    }

    pub(super) fn rest(&mut self) -> &mut &'a [u8] {
        &mut self.rest
    }

    /// The range of the next `[long string]`'s content, checked as UTF-8.
    pub(super) fn long_string(&mut self, what: &'static str) -> Result<Range<usize>, DecodeError> {
        let s = wire::read_long_string(&mut self.rest, what)?;
        let end = self.pos();
        Ok(end - s.len()..end)
    }

    /// The range of the next `[short bytes]`' content.
    pub(super) fn short_bytes(&mut self, what: &'static str) -> Result<Range<usize>, DecodeError> {
        let b = wire::read_short_bytes(&mut self.rest, what)?;
        let end = self.pos();
        Ok(end - b.len()..end)
    }

    pub(super) fn end(&self, what: &'static str) -> Result<(), DecodeError> {
        wire::expect_end(self.rest, what)
    }
}

/// The flags field of `<query_parameters>` or of a BATCH: `[byte]` before v5, `[int]` from v5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Flags {
    pub(super) at: usize,
    pub(super) value: u32,
    pub(super) version: ProtocolVersion,
}

impl Flags {
    fn read(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let at = r.pos();
        let value = if version >= ProtocolVersion::V5 {
            wire::read_int(r.rest(), "flags")? as u32
        } else {
            wire::read_byte(r.rest(), "flags")?.into()
        };
        // Keyspace and now_in_seconds exist only in v5 (ferry-cql's decoder refuses them too).
        if version < ProtocolVersion::V5 && value & (WITH_KEYSPACE | WITH_NOW_IN_SECONDS) != 0 {
            return Err(DecodeError::InvalidValue {
                what: "query flags",
                value: value.into(),
            });
        }
        Ok(Self { at, value, version })
    }

    pub(super) fn has(self, bit: u32) -> bool {
        self.value & bit != 0
    }

    pub(super) fn len(self) -> usize {
        if self.version >= ProtocolVersion::V5 {
            4
        } else {
            1
        }
    }

    pub(super) fn range(self) -> Range<usize> {
        self.at..self.at + self.len()
    }

    /// The field's bytes with `bits` added. Every bit set here fits the v3/v4 byte.
    pub(super) fn encode_with(self, bits: u32) -> ([u8; 4], usize) {
        let value = self.value | bits;
        if self.version >= ProtocolVersion::V5 {
            (value.to_be_bytes(), 4)
        } else {
            // `read` took one byte, and the bits callers add are below 0x80.
            ([value as u8, 0, 0, 0], 1)
        }
    }
}

/// `[<serial_consistency>][<timestamp>][<keyspace>][<now_in_seconds>]`, the end of both
/// `<query_parameters>` and a BATCH. Returns where `<timestamp>` is, or would be inserted.
fn tail(r: &mut Reader<'_>, flags: Flags) -> Result<usize, DecodeError> {
    if flags.has(WITH_SERIAL_CONSISTENCY) {
        read_consistency(r.rest())?;
    }
    let timestamp_at = r.pos();
    if flags.has(WITH_DEFAULT_TIMESTAMP) {
        wire::read_long(r.rest(), "default timestamp")?;
    }
    if flags.has(WITH_KEYSPACE) {
        wire::read_string(r.rest(), "keyspace")?;
    }
    if flags.has(WITH_NOW_IN_SECONDS) {
        wire::read_int(r.rest(), "now in seconds")?;
    }
    Ok(timestamp_at)
}

/// Walks `[short] n` then n (`[string]` name when `named`) `[value]`s, calling `each` with the
/// byte range of every item (name included).
pub(super) fn walk_values(
    r: &mut Reader<'_>,
    named: bool,
    mut each: impl FnMut(Range<usize>),
) -> Result<u16, DecodeError> {
    let n = wire::read_short(r.rest(), "value count")?;
    for _ in 0..n {
        let start = r.pos();
        if named {
            wire::read_string(r.rest(), "value name")?;
        }
        wire::read_value(r.rest(), "value")?;
        each(start..r.pos());
    }
    Ok(n)
}

/// The byte ranges of the items of a values section that starts at `range.start`.
pub(super) fn value_items(
    body: &[u8],
    range: Range<usize>,
    named: bool,
) -> Result<Vec<Range<usize>>, DecodeError> {
    let section = body.get(range.clone()).ok_or(DecodeError::TooShort {
        what: "values",
        needed: range.end,
        remaining: body.len(),
    })?;
    let mut r = Reader::new(section);
    let mut items = Vec::new();
    walk_values(&mut r, named, |item| {
        items.push(item.start + range.start..item.end + range.start)
    })?;
    Ok(items)
}

/// `<consistency><flags>[<n><value_1>…<value_n>][<result_page_size>][<paging_state>]` and the
/// tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParamsLayout {
    /// Where the `[short]` consistency starts.
    pub(super) consistency_at: usize,
    pub(super) flags: Flags,
    /// The values section (`[short]` count and the values) when the VALUES flag is set.
    pub(super) values: Option<Range<usize>>,
    /// Where `<timestamp>` is, or goes when absent: after `<serial_consistency>`.
    pub(super) timestamp_at: usize,
}

impl ParamsLayout {
    fn read(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let consistency_at = r.pos();
        read_consistency(r.rest())?;
        let flags = Flags::read(r, version)?;
        let values = if flags.has(VALUES) {
            let start = r.pos();
            walk_values(r, flags.has(WITH_NAMES_FOR_VALUES), |_| {})?;
            Some(start..r.pos())
        } else {
            None
        };
        if flags.has(PAGE_SIZE) {
            wire::read_int(r.rest(), "page size")?;
        }
        if flags.has(WITH_PAGING_STATE) {
            wire::read_bytes(r.rest(), "paging state")?;
        }
        let timestamp_at = tail(r, flags)?;
        r.end("query parameters")?;
        Ok(Self {
            consistency_at,
            flags,
            values,
            timestamp_at,
        })
    }
}

/// QUERY: `<query: [long string]><query_parameters>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct QueryLayout {
    /// The statement text's bytes (after the length).
    pub(super) text: Range<usize>,
    pub(super) params: ParamsLayout,
}

impl QueryLayout {
    pub(super) fn read(body: &[u8], version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let text = r.long_string("query string")?;
        let params = ParamsLayout::read(&mut r, version)?;
        Ok(Self { text, params })
    }
}

/// EXECUTE: `<id><result_metadata_id (v5)><query_parameters>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExecuteLayout {
    pub(super) id: Range<usize>,
    pub(super) result_metadata_id: Option<Range<usize>>,
    pub(super) params: ParamsLayout,
}

impl ExecuteLayout {
    /// Reads only the ids (the zero-copy peek of the hot path); the parameters are not checked.
    pub(super) fn read_ids(
        r: &mut Reader<'_>,
        version: ProtocolVersion,
    ) -> Result<(Range<usize>, Option<Range<usize>>), DecodeError> {
        let id = r.short_bytes("prepared id")?;
        let result_metadata_id = if version >= ProtocolVersion::V5 {
            Some(r.short_bytes("result metadata id")?)
        } else {
            None
        };
        Ok((id, result_metadata_id))
    }

    pub(super) fn read(body: &[u8], version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let (id, result_metadata_id) = Self::read_ids(&mut r, version)?;
        let params = ParamsLayout::read(&mut r, version)?;
        Ok(Self {
            id,
            result_metadata_id,
            params,
        })
    }
}

/// One BATCH child: `<kind><string_or_id><n><value_1>…<value_n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChildLayout {
    /// Kind 1 (a prepared id) rather than 0 (a query string).
    pub(super) prepared: bool,
    /// The query text's or the id's bytes (after the length).
    pub(super) statement: Range<usize>,
    /// The `[short]` count and the values.
    pub(super) values: Range<usize>,
}

/// BATCH: `<type><n><child_1>…<child_n><consistency><flags>` and the tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BatchLayout {
    pub(super) children: Vec<ChildLayout>,
    /// Where the `[short]` consistency starts.
    pub(super) consistency_at: usize,
    pub(super) flags: Flags,
    pub(super) timestamp_at: usize,
}

/// The smallest child: kind byte, an empty `[short bytes]` id and a zero value count.
const MIN_CHILD_LEN: usize = 1 + 2 + 2;

impl BatchLayout {
    pub(super) fn read(body: &[u8], version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let batch_type = wire::read_byte(r.rest(), "batch type")?;
        if batch_type > 2 {
            return Err(DecodeError::InvalidValue {
                what: "batch type",
                value: batch_type.into(),
            });
        }
        let n = wire::read_short(r.rest(), "batch statement count")?;
        // Never trust a count off the wire for an allocation: bound it by what can be there.
        let mut children = Vec::with_capacity(usize::from(n).min(body.len() / MIN_CHILD_LEN));
        for _ in 0..n {
            let (prepared, statement) = match wire::read_byte(r.rest(), "batch child kind")? {
                0 => (false, r.long_string("query string")?),
                1 => (true, r.short_bytes("prepared id")?),
                other => {
                    return Err(DecodeError::InvalidValue {
                        what: "batch child kind",
                        value: other.into(),
                    });
                }
            };
            let start = r.pos();
            walk_values(&mut r, false, |_| {})?;
            children.push(ChildLayout {
                prepared,
                statement,
                values: start..r.pos(),
            });
        }
        let consistency_at = r.pos();
        read_consistency(r.rest())?;
        let flags = Flags::read(&mut r, version)?;
        let known = WITH_SERIAL_CONSISTENCY
            | WITH_DEFAULT_TIMESTAMP
            | if version >= ProtocolVersion::V5 {
                WITH_KEYSPACE | WITH_NOW_IN_SECONDS
            } else {
                0
            };
        // Cassandra refuses names for values (0x40) and every other bit in a batch.
        if flags.value & !known != 0 {
            return Err(DecodeError::InvalidValue {
                what: "batch flags",
                value: flags.value.into(),
            });
        }
        let timestamp_at = tail(&mut r, flags)?;
        r.end("batch")?;
        Ok(Self {
            children,
            consistency_at,
            flags,
            timestamp_at,
        })
    }
}
