//! BATCH (opcode 0x0D, spec v4/v5 §4.1.7):
//! `<type: [byte]><n: [short]><query_1>…<query_n><consistency><flags>[<serial_consistency>]`
//! `[<timestamp>][<keyspace> (v5)][<now_in_seconds> (v5)]`, each query being
//! `<kind: [byte]><string_or_id><n: [short]><value_1>…<value_n>`.

use bytes::{BufMut, Bytes};

use super::params::{Tail, Values, query_flags, read_flags, share, write_flags};
use crate::protocol::{Consistency, ProtocolVersion, read_consistency, write_consistency};
use crate::wire::{self, DecodeError, EncodeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BatchType {
    Logged = 0,
    Unlogged = 1,
    Counter = 2,
}

impl TryFrom<u8> for BatchType {
    type Error = DecodeError;

    fn try_from(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(Self::Logged),
            1 => Ok(Self::Unlogged),
            2 => Ok(Self::Counter),
            other => Err(DecodeError::InvalidValue {
                what: "batch type",
                value: other.into(),
            }),
        }
    }
}

/// The statement of one batch child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchStatement {
    /// kind 0: a query string.
    Query(String),
    /// kind 1: a prepared statement id.
    Prepared(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchChild {
    pub statement: BatchStatement,
    pub values: Values,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch_type: BatchType,
    pub children: Vec<BatchChild>,
    pub consistency: Consistency,
    pub serial_consistency: Option<Consistency>,
    pub default_timestamp: Option<i64>,
    /// v5 only.
    pub keyspace: Option<String>,
    /// v5 only.
    pub now_in_seconds: Option<i32>,
}

impl Batch {
    pub fn decode(
        buf: &mut &[u8],
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let batch_type = BatchType::try_from(wire::read_byte(buf, "batch type")?)?;
        let n = wire::read_short(buf, "batch statement count")?;
        // Each child takes at least 1 + 4 + 2 bytes; never trust the count for the allocation.
        let mut children = Vec::with_capacity(usize::from(n).min(buf.len() / 7));
        for _ in 0..n {
            let statement = match wire::read_byte(buf, "batch child kind")? {
                0 => BatchStatement::Query(wire::read_long_string(buf, "query string")?.to_owned()),
                1 => BatchStatement::Prepared(share(
                    body,
                    wire::read_short_bytes(buf, "prepared id")?,
                )),
                other => {
                    return Err(DecodeError::InvalidValue {
                        what: "batch child kind",
                        value: other.into(),
                    });
                }
            };
            // Values are never named here: Cassandra reads children before the flags and refuses
            // the names flag (0x40) in a batch, and so do we.
            let values = match Values::decode(buf, body, false, version)? {
                // A child always writes its count; "no values" reads back as `None`.
                Values::Positional(v) if v.is_empty() => Values::None,
                other => other,
            };
            children.push(BatchChild { statement, values });
        }
        let consistency = read_consistency(buf)?;
        let flags = read_flags(buf, version)?;
        use query_flags::*;
        if flags & WITH_NAMES_FOR_VALUES != 0 {
            return Err(DecodeError::Malformed {
                what: "batch flags",
                reason: "names for values (0x40) are not supported in a batch".to_owned(),
            });
        }
        let known = WITH_SERIAL_CONSISTENCY
            | WITH_DEFAULT_TIMESTAMP
            | if version >= ProtocolVersion::V5 {
                WITH_KEYSPACE | WITH_NOW_IN_SECONDS
            } else {
                0
            };
        if flags & !known != 0 {
            return Err(DecodeError::InvalidValue {
                what: "batch flags",
                value: flags.into(),
            });
        }
        let (serial_consistency, default_timestamp, keyspace, now_in_seconds) =
            Tail::decode(buf, flags)?.into_owned();
        Ok(Self {
            batch_type,
            children,
            consistency,
            serial_consistency,
            default_timestamp,
            keyspace,
            now_in_seconds,
        })
    }

    pub fn flags(&self) -> u32 {
        self.tail().flags()
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
        buf.put_u8(self.batch_type as u8);
        let n = u16::try_from(self.children.len()).map_err(|_| EncodeError::TooLong {
            what: "batch statement count",
            len: self.children.len(),
            max: u16::MAX as usize,
        })?;
        buf.put_u16(n);
        for child in &self.children {
            match &child.statement {
                BatchStatement::Query(q) => {
                    buf.put_u8(0);
                    wire::write_long_string(buf, q, "query string")?;
                }
                BatchStatement::Prepared(id) => {
                    buf.put_u8(1);
                    wire::write_short_bytes(buf, id, "prepared id")?;
                }
            }
            if matches!(child.values, Values::Named(_)) {
                return Err(EncodeError::Invalid {
                    what: "batch values",
                    reason: "a batch child's values cannot be named".to_owned(),
                });
            }
            child.values.encode(buf)?;
        }
        write_consistency(buf, self.consistency);
        write_flags(buf, self.flags(), version)?;
        self.tail().encode(buf)
    }
}
