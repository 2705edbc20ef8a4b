//! QUERY (opcode 0x07, spec v4/v5 §4.1.4): `<query: [long string]><query_parameters>`.

use bytes::{BufMut, Bytes};

use super::params::QueryParameters;
use crate::protocol::ProtocolVersion;
use crate::wire::{self, DecodeError, EncodeError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub query: String,
    pub params: QueryParameters,
}

impl Query {
    pub fn new(query: impl Into<String>, params: QueryParameters) -> Self {
        Self {
            query: query.into(),
            params,
        }
    }

    /// Reads the body from the front of `buf`, a cursor into `body` (values are shared with it).
    pub fn decode(
        buf: &mut &[u8],
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let query = wire::read_long_string(buf, "query string")?.to_owned();
        let params = QueryParameters::decode(buf, body, version)?;
        Ok(Self { query, params })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        wire::write_long_string(buf, &self.query, "query string")?;
        self.params.encode(buf, version)
    }
}
