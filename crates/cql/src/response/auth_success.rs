//! AUTH_SUCCESS (spec v4 §4.2.8): authentication succeeded; the token carries any final data
//! the client may need. The body is a single `[bytes]` token that may be null.

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::wire::{DecodeError, EncodeError, read_bytes, write_bytes};

const WHAT: &str = "AUTH_SUCCESS token";

/// The AUTH_SUCCESS response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthSuccess {
    /// Final data for the client; `None` is the null `[bytes]` (length -1) that
    /// PasswordAuthenticator sends.
    pub token: Option<Vec<u8>>,
}

impl AuthSuccess {
    pub fn new(token: Option<Vec<u8>>) -> Self {
        Self { token }
    }

    /// Reads the body from the front of `buf`; the caller checks that nothing is left.
    pub fn decode(buf: &mut &[u8], _version: ProtocolVersion) -> Result<Self, DecodeError> {
        Ok(Self {
            token: read_bytes(buf, WHAT)?.map(<[u8]>::to_vec),
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        _version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_bytes(buf, self.token.as_deref(), WHAT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(msg: &AuthSuccess, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&AuthSuccess::decode(&mut s, version).unwrap(), msg);
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    #[test]
    fn golden_token_and_null() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x00, 0x00, 0x03,       // [bytes] length 3 (spec v4 §4.2.8: a single [bytes] token)
            0xca, 0xfe, 0x01,             // the token's bytes
        ];
        let null: &[u8] = &[0xff, 0xff, 0xff, 0xff]; // [bytes] length -1: null (spec v4 §3)
        for v in ProtocolVersion::ALL {
            for (bytes, expected) in [
                (body, AuthSuccess::new(Some(vec![0xca, 0xfe, 0x01]))),
                (null, AuthSuccess::new(None)),
            ] {
                let mut s = bytes;
                let got = AuthSuccess::decode(&mut s, v).unwrap();
                assert!(s.is_empty());
                assert_eq!(got, expected);
                assert_eq!(roundtrip(&got, v), bytes);
            }
        }
    }

    proptest! {
        #[test]
        fn random_tokens_roundtrip(
            token in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            roundtrip(&AuthSuccess { token }, v);
        }

        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = AuthSuccess::decode(&mut data.as_slice(), ProtocolVersion::V4);
        }
    }
}
