//! AUTH_RESPONSE (spec 4.1.2): the client's SASL token, a single `[bytes]` that may be null.

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::wire::{DecodeError, EncodeError, read_bytes, write_bytes};

const WHAT: &str = "AUTH_RESPONSE token";

/// The AUTH_RESPONSE request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthResponse {
    /// `None` is the null `[bytes]` (length -1), which the spec lets an authenticator use;
    /// distinct from an empty token.
    pub token: Option<Vec<u8>>,
}

impl AuthResponse {
    pub fn new(token: impl Into<Vec<u8>>) -> Self {
        Self {
            token: Some(token.into()),
        }
    }

    /// The token `PasswordAuthenticator` expects: `\0user\0password` (SASL PLAIN, RFC 4616).
    pub fn plain(username: &str, password: &str) -> Self {
        let mut token = Vec::with_capacity(2 + username.len() + password.len());
        token.push(0);
        token.extend_from_slice(username.as_bytes());
        token.push(0);
        token.extend_from_slice(password.as_bytes());
        Self { token: Some(token) }
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

    fn roundtrip(msg: &AuthResponse, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&AuthResponse::decode(&mut s, version).unwrap(), msg);
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    #[test]
    fn golden_plain_token() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x00, 0x00, 0x06,       // [bytes] length 6 (spec v4 §4.1.2: a single [bytes] token)
            0x00, b'u',                   // SASL PLAIN: NUL, authentication id "u"
            0x00, b'p', b'w', b'd',       // NUL, password "pwd"
        ];
        for v in ProtocolVersion::ALL {
            let mut s = body;
            let got = AuthResponse::decode(&mut s, v).unwrap();
            assert!(s.is_empty());
            assert_eq!(got, AuthResponse::plain("u", "pwd"));
            assert_eq!(roundtrip(&got, v), body);
        }
    }

    #[test]
    fn golden_null_token() {
        let body: &[u8] = &[0xff, 0xff, 0xff, 0xff]; // [bytes] length -1: null (spec v4 §3)
        let got = AuthResponse::decode(&mut &body[..], ProtocolVersion::V4).unwrap();
        assert_eq!(got, AuthResponse { token: None });
        assert_eq!(roundtrip(&got, ProtocolVersion::V4), body);
        roundtrip(&AuthResponse::new(Vec::new()), ProtocolVersion::V3);
    }

    proptest! {
        #[test]
        fn random_tokens_roundtrip(
            token in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            roundtrip(&AuthResponse { token }, v);
        }

        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = AuthResponse::decode(&mut data.as_slice(), ProtocolVersion::V4);
        }
    }
}
