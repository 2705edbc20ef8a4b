//! AUTHENTICATE (spec v4 §4.2.3): the server requires SASL authentication. The body is a
//! `[string]`, the full class name of the server's IAuthenticator.

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::wire::{DecodeError, EncodeError, read_string, write_string};

/// Cassandra's built-in username/password authenticator, which expects SASL PLAIN tokens.
pub const PASSWORD_AUTHENTICATOR: &str = "org.apache.cassandra.auth.PasswordAuthenticator";

const WHAT: &str = "AUTHENTICATE authenticator";

/// The AUTHENTICATE response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    /// Drivers pick their SASL mechanism from this name (e.g. PLAIN for PasswordAuthenticator).
    pub authenticator: String,
}

impl Authenticate {
    pub fn new(authenticator: impl Into<String>) -> Self {
        Self {
            authenticator: authenticator.into(),
        }
    }

    /// Reads the body from the front of `buf`; the caller checks that nothing is left.
    pub fn decode(buf: &mut &[u8], _version: ProtocolVersion) -> Result<Self, DecodeError> {
        Ok(Self {
            authenticator: read_string(buf, WHAT)?.to_owned(),
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        _version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_string(buf, &self.authenticator, WHAT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(msg: &Authenticate, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&Authenticate::decode(&mut s, version).unwrap(), msg);
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    #[test]
    fn golden_password_authenticator() {
        let mut body = vec![0x00, 0x2f]; // [string] length 47 (spec v4 §4.2.3: a single [string])
        body.extend_from_slice(PASSWORD_AUTHENTICATOR.as_bytes()); // the class name's UTF-8 bytes
        assert_eq!(PASSWORD_AUTHENTICATOR.len(), 0x2f);
        for v in ProtocolVersion::ALL {
            let mut s = body.as_slice();
            let got = Authenticate::decode(&mut s, v).unwrap();
            assert!(s.is_empty());
            assert_eq!(got, Authenticate::new(PASSWORD_AUTHENTICATOR));
            assert_eq!(roundtrip(&got, v), body);
        }
    }

    proptest! {
        #[test]
        fn random_authenticators_roundtrip(
            name in "\\PC{0,40}",
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            roundtrip(&Authenticate::new(name), v);
        }

        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Authenticate::decode(&mut data.as_slice(), ProtocolVersion::V4);
        }
    }
}
