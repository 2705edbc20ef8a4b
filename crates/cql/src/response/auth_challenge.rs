//! AUTH_CHALLENGE (spec v4 §4.2.7): a server SASL challenge, which the client answers with
//! AUTH_RESPONSE. The body is a single `[bytes]` token that may be null.

use crate::sasl::sasl_token_message;

sasl_token_message!(
    /// The AUTH_CHALLENGE response.
    AuthChallenge,
    "AUTH_CHALLENGE token"
);

impl AuthChallenge {
    pub fn new(token: Option<Vec<u8>>) -> Self {
        Self { token }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ProtocolVersion;

    fn roundtrip(msg: &AuthChallenge, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&AuthChallenge::decode(&mut s, version).unwrap(), msg);
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    #[test]
    fn golden_token_and_null() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x00, 0x00, 0x03,       // [bytes] length 3 (spec v4 §4.2.7: a single [bytes] token)
            0xca, 0xfe, 0x01,             // the token's bytes
        ];
        let null: &[u8] = &[0xff, 0xff, 0xff, 0xff]; // [bytes] length -1: null (spec v4 §3)
        for v in ProtocolVersion::ALL {
            for (bytes, expected) in [
                (body, AuthChallenge::new(Some(vec![0xca, 0xfe, 0x01]))),
                (null, AuthChallenge::new(None)),
            ] {
                let mut s = bytes;
                let got = AuthChallenge::decode(&mut s, v).unwrap();
                assert!(s.is_empty());
                assert_eq!(got, expected);
                assert_eq!(roundtrip(&got, v), bytes);
            }
        }
    }
}
