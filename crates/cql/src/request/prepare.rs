//! PREPARE (opcode 0x09, spec v4/v5 §4.1.5): `<query: [long string]>`, and in v5
//! `<flags: [int]>[<keyspace: [string]>]` after it.

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::wire::{self, DecodeError, EncodeError};

/// v5 PREPARE flag: a keyspace follows.
pub const PREPARE_WITH_KEYSPACE: u32 = 0x01;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    pub query: String,
    /// v5: prepare in this keyspace instead of the connection's.
    pub keyspace: Option<String>,
}

impl Prepare {
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            keyspace: None,
        }
    }

    pub fn decode(buf: &mut &[u8], version: ProtocolVersion) -> Result<Self, DecodeError> {
        let query = wire::read_long_string(buf, "query string")?.to_owned();
        let mut keyspace = None;
        if version >= ProtocolVersion::V5 {
            let flags = wire::read_int(buf, "prepare flags")? as u32;
            if flags & !PREPARE_WITH_KEYSPACE != 0 {
                return Err(DecodeError::InvalidValue {
                    what: "prepare flags",
                    value: flags.into(),
                });
            }
            if flags & PREPARE_WITH_KEYSPACE != 0 {
                keyspace = Some(wire::read_string(buf, "keyspace")?.to_owned());
            }
        }
        Ok(Self { query, keyspace })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        wire::write_long_string(buf, &self.query, "query string")?;
        if version >= ProtocolVersion::V5 {
            match &self.keyspace {
                Some(ks) => {
                    buf.put_u32(PREPARE_WITH_KEYSPACE);
                    wire::write_string(buf, ks, "keyspace")?;
                }
                None => buf.put_u32(0),
            }
        } else if self.keyspace.is_some() {
            return Err(EncodeError::Invalid {
                what: "prepare keyspace",
                reason: format!("a per-statement keyspace needs protocol v5, not {version}"),
            });
        }
        Ok(())
    }
}
