//! EXECUTE (opcode 0x0A, spec v4/v5 §4.1.6):
//! `<id: [short bytes]>[<result_metadata_id: [short bytes]> (v5)]<query_parameters>`.

use bytes::{BufMut, Bytes};

use super::params::{QueryParameters, share};
use crate::protocol::ProtocolVersion;
use crate::wire::{self, DecodeError, EncodeError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    /// The prepared statement id (an MD5 in Cassandra; opaque here).
    pub id: Bytes,
    /// v5: the result metadata id the client holds, so the server can tell it has changed.
    pub result_metadata_id: Option<Bytes>,
    pub params: QueryParameters,
}

impl Execute {
    pub fn decode(
        buf: &mut &[u8],
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let id = share(body, wire::read_short_bytes(buf, "prepared id")?);
        let result_metadata_id = if version >= ProtocolVersion::V5 {
            Some(share(
                body,
                wire::read_short_bytes(buf, "result metadata id")?,
            ))
        } else {
            None
        };
        let params = QueryParameters::decode(buf, body, version)?;
        Ok(Self {
            id,
            result_metadata_id,
            params,
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        wire::write_short_bytes(buf, &self.id, "prepared id")?;
        if version >= ProtocolVersion::V5 {
            let id = self
                .result_metadata_id
                .as_deref()
                .ok_or(EncodeError::Invalid {
                    what: "result metadata id",
                    reason: "protocol v5 EXECUTE needs a result metadata id".to_owned(),
                })?;
            wire::write_short_bytes(buf, id, "result metadata id")?;
        }
        self.params.encode(buf, version)
    }
}
