//! The three SASL messages — AUTH_RESPONSE (request), AUTH_CHALLENGE and AUTH_SUCCESS (responses)
//! — share one body: a single `[bytes]` token that may be null (spec v4 §4.1.2, §4.2.7, §4.2.8).
//! [`sasl_token_message!`] defines each as its own type over that body, so the dispatch cannot mix
//! them up; per-type constructors and golden fixtures live in each opcode's module.

/// Defines a message type whose body is one nullable `[bytes]` token.
macro_rules! sasl_token_message {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            /// `None` is the null `[bytes]` (length -1), distinct from an empty token.
            pub token: Option<Vec<u8>>,
        }

        impl $name {
            /// Reads the body from the front of `buf`; the caller checks that nothing is left.
            pub fn decode(
                buf: &mut &[u8],
                _version: $crate::protocol::ProtocolVersion,
            ) -> Result<Self, $crate::wire::DecodeError> {
                Ok(Self { token: $crate::wire::read_bytes(buf, $what)?.map(<[u8]>::to_vec) })
            }

            pub fn encode(
                &self,
                buf: &mut impl bytes::BufMut,
                _version: $crate::protocol::ProtocolVersion,
            ) -> Result<(), $crate::wire::EncodeError> {
                $crate::wire::write_bytes(buf, self.token.as_deref(), $what)
            }
        }
    };
}

pub(crate) use sasl_token_message;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::protocol::ProtocolVersion;
    use crate::request::AuthResponse;
    use crate::response::{AuthChallenge, AuthSuccess};

    macro_rules! check_all {
        ($token:expr, $version:expr) => {{
            let token: Option<Vec<u8>> = $token;
            let mut bodies = Vec::new();
            let r = AuthResponse {
                token: token.clone(),
            };
            let c = AuthChallenge {
                token: token.clone(),
            };
            let s = AuthSuccess {
                token: token.clone(),
            };
            let mut out = Vec::new();
            r.encode(&mut out, $version).unwrap();
            prop_assert_eq!(AuthResponse::decode(&mut &out[..], $version).unwrap(), r);
            bodies.push(out);
            let mut out = Vec::new();
            c.encode(&mut out, $version).unwrap();
            prop_assert_eq!(AuthChallenge::decode(&mut &out[..], $version).unwrap(), c);
            bodies.push(out);
            let mut out = Vec::new();
            s.encode(&mut out, $version).unwrap();
            prop_assert_eq!(AuthSuccess::decode(&mut &out[..], $version).unwrap(), s);
            bodies.push(out);
            // One body layout for all three.
            prop_assert!(bodies.windows(2).all(|w| w[0] == w[1]));
        }};
    }

    proptest! {
        #[test]
        fn tokens_roundtrip(token in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)), v in 3u8..=5) {
            check_all!(token, ProtocolVersion::try_from(v).unwrap());
        }

        #[test]
        fn random_bodies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            for v in ProtocolVersion::ALL {
                let _ = AuthResponse::decode(&mut &data[..], v);
                let _ = AuthChallenge::decode(&mut &data[..], v);
                let _ = AuthSuccess::decode(&mut &data[..], v);
            }
        }
    }
}
