//! READY (spec v4 §4.2.2): the connection may send queries. The body is empty. Also the answer to
//! REGISTER (§4.1.8).

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::wire::{DecodeError, EncodeError};

/// The READY response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready;

impl Ready {
    /// Reads nothing: the body is empty and the caller checks that nothing is left.
    pub fn decode(_buf: &mut &[u8], _version: ProtocolVersion) -> Result<Self, DecodeError> {
        Ok(Self)
    }

    pub fn encode(
        &self,
        _buf: &mut impl BufMut,
        _version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_empty_body_roundtrips_in_every_version() {
        // Spec v4 §4.2.2: "The body of a READY message is empty."
        let body: &[u8] = &[];
        for v in ProtocolVersion::ALL {
            let mut s = body;
            assert_eq!(Ready::decode(&mut s, v).unwrap(), Ready);
            assert!(s.is_empty());
            let mut out = Vec::new();
            Ready.encode(&mut out, v).unwrap();
            assert_eq!(out, body);
        }
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_consumes_nothing(data in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut s = data.as_slice();
            prop_assert_eq!(Ready::decode(&mut s, ProtocolVersion::V4), Ok(Ready));
            prop_assert_eq!(s.len(), data.len());
        }
    }
}
