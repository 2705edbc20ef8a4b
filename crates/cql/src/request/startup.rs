//! STARTUP (spec 4.1.1): the first request of a connection, a `[string map]` of options.
//!
//! The options are kept as an ordered list rather than a map: a proxy that rewrites one option
//! (say, drops COMPRESSION) re-encodes the others in the client's order, and an untouched body
//! re-encodes byte-identically.

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::wire::{DecodeError, EncodeError, read_short, read_string, write_string_map};

/// Option keys a client may send (spec 4.1.1, plus the keys Cassandra and drivers use in
/// practice).
pub mod keys {
    /// Mandatory; "3.0.0" in every server so far. Not the protocol version.
    pub const CQL_VERSION: &str = "CQL_VERSION";
    /// Optional body compression ("lz4" or "snappy"; v5 only allows "lz4", at the segment layer).
    pub const COMPRESSION: &str = "COMPRESSION";
    /// Asks the server to hide COMPACT STORAGE internals (Cassandra 3.0.16+/3.11.2+).
    pub const NO_COMPACT: &str = "NO_COMPACT";
    /// "true" makes an overloaded server answer OVERLOADED instead of queueing (Cassandra 4.0).
    pub const THROW_ON_OVERLOAD: &str = "THROW_ON_OVERLOAD";
    /// Informational, shown in `system_views.clients`.
    pub const DRIVER_NAME: &str = "DRIVER_NAME";
    pub const DRIVER_VERSION: &str = "DRIVER_VERSION";
    /// The application's name and version (DataStax drivers), also informational.
    pub const APPLICATION_NAME: &str = "APPLICATION_NAME";
    pub const APPLICATION_VERSION: &str = "APPLICATION_VERSION";
    pub const CLIENT_ID: &str = "CLIENT_ID";
}

/// The only CQL version servers accept.
pub const DEFAULT_CQL_VERSION: &str = "3.0.0";

const WHAT: &str = "STARTUP options";

/// The STARTUP request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Startup {
    /// Every (key, value) pair in wire order; duplicates are kept so re-encoding is byte-identical.
    pub options: Vec<(String, String)>,
}

impl Startup {
    /// The options a minimal client sends: CQL_VERSION and, if given, COMPRESSION.
    pub fn new(cql_version: &str, compression: Option<&str>) -> Self {
        let mut options = vec![(keys::CQL_VERSION.to_owned(), cql_version.to_owned())];
        if let Some(c) = compression {
            options.push((keys::COMPRESSION.to_owned(), c.to_owned()));
        }
        Self { options }
    }

    /// The first value given for `key` (keys are case-sensitive, as in Cassandra).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn cql_version(&self) -> Option<&str> {
        self.get(keys::CQL_VERSION)
    }

    /// The requested compression algorithm, if any.
    pub fn compression(&self) -> Option<&str> {
        self.get(keys::COMPRESSION)
    }

    /// Sets `key` to `value`, replacing the first existing entry in place (order kept) or
    /// appending a new one.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.options.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => value.clone_into(v),
            None => self.options.push((key.to_owned(), value.to_owned())),
        }
    }

    /// Removes every entry for `key`, returning the first removed value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let first = self.options.iter().position(|(k, _)| k == key)?;
        let (_, value) = self.options.remove(first);
        self.options.retain(|(k, _)| k != key);
        Some(value)
    }

    /// Reads the body from the front of `buf`; the caller checks that nothing is left.
    pub fn decode(buf: &mut &[u8], _version: ProtocolVersion) -> Result<Self, DecodeError> {
        // `wire::read_string_map` returns a HashMap, which loses the order; read pairs directly.
        let n = read_short(buf, WHAT)?;
        // Each pair takes at least 4 bytes (two empty strings): bound the pre-allocation.
        let mut options = Vec::with_capacity(usize::from(n).min(buf.len() / 4));
        for _ in 0..n {
            let k = read_string(buf, WHAT)?;
            let v = read_string(buf, WHAT)?;
            options.push((k.to_owned(), v.to_owned()));
        }
        Ok(Self { options })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        _version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_string_map(
            buf,
            self.options.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            WHAT,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(msg: &Startup, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&Startup::decode(&mut s, version).unwrap(), msg);
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    #[test]
    fn golden_startup_with_compression() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x02,                                     // [short] n = 2 pairs ([string map], spec v4 §3)
            0x00, 0x0b,                                     // [string] key length 11
            b'C', b'Q', b'L', b'_', b'V', b'E', b'R', b'S', b'I', b'O', b'N', // "CQL_VERSION" (§4.1.1)
            0x00, 0x05, b'3', b'.', b'0', b'.', b'0',       // [string] value "3.0.0"
            0x00, 0x0b,                                     // [string] key length 11
            b'C', b'O', b'M', b'P', b'R', b'E', b'S', b'S', b'I', b'O', b'N', // "COMPRESSION" (§4.1.1)
            0x00, 0x03, b'l', b'z', b'4',                   // [string] value "lz4" (§5)
        ];
        let expected = Startup::new("3.0.0", Some("lz4"));
        for v in ProtocolVersion::ALL {
            let mut s = body;
            let got = Startup::decode(&mut s, v).unwrap();
            assert!(s.is_empty());
            assert_eq!(got, expected);
            assert_eq!(got.compression(), Some("lz4"));
            assert_eq!(got.cql_version(), Some(DEFAULT_CQL_VERSION));
            assert_eq!(roundtrip(&got, v), body);
        }
    }

    #[test]
    fn order_and_duplicates_survive_a_roundtrip() {
        let msg = Startup {
            options: vec![
                (keys::DRIVER_NAME.into(), "ferry".into()),
                (keys::CQL_VERSION.into(), "3.0.0".into()),
                (keys::DRIVER_NAME.into(), "again".into()),
            ],
        };
        roundtrip(&msg, ProtocolVersion::V5);
        assert_eq!(msg.get(keys::DRIVER_NAME), Some("ferry"));
    }

    #[test]
    fn set_and_remove_keep_the_order() {
        let mut msg = Startup::new("3.0.0", Some("snappy"));
        msg.set(keys::DRIVER_NAME, "ferry");
        msg.set(keys::COMPRESSION, "lz4");
        assert_eq!(
            msg.options[1],
            (keys::COMPRESSION.to_owned(), "lz4".to_owned())
        );
        assert_eq!(msg.remove(keys::COMPRESSION), Some("lz4".to_owned()));
        assert_eq!(msg.compression(), None);
        assert_eq!(msg.remove(keys::COMPRESSION), None);
        assert_eq!(msg.options.len(), 2);
    }

    #[test]
    fn truncated_body_names_the_numbers() {
        let mut s: &[u8] = &[0x00, 0x01, 0x00, 0x05, b'a'];
        assert_eq!(
            Startup::decode(&mut s, ProtocolVersion::V4),
            Err(DecodeError::TooShort {
                what: WHAT,
                needed: 5,
                remaining: 1
            })
        );
    }

    proptest! {
        #[test]
        fn random_startups_roundtrip(
            options in proptest::collection::vec(("[A-Z_]{0,12}", "\\PC{0,8}"), 0..6),
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            roundtrip(&Startup { options }, v);
        }

        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Startup::decode(&mut data.as_slice(), ProtocolVersion::V4);
        }
    }
}
