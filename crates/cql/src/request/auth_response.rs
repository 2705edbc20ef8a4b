//! AUTH_RESPONSE (spec 4.1.2): the client's SASL token, a single `[bytes]` that may be null.

use crate::sasl::sasl_token_message;

sasl_token_message!(
    /// The AUTH_RESPONSE request.
    AuthResponse,
    "AUTH_RESPONSE token"
);

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ProtocolVersion;

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
}
