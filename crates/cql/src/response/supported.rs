//! SUPPORTED (spec v4 §4.2.4): the answer to OPTIONS, a `[string multimap]` from each STARTUP
//! option to its supported values, plus (v5 spec) PROTOCOL_VERSIONS.
//!
//! Entries are kept as an ordered list so an untouched body re-encodes byte-identically and a
//! proxy can rewrite one entry (say, narrow COMPRESSION to what both clusters support).

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::request::startup::keys;
use crate::wire::{DecodeError, EncodeError, read_string_multimap, write_string_multimap};

/// Versions the server speaks, as `"<number>/<description>"`, e.g. `"5/v5"` or `"5/v5-beta"`.
pub const PROTOCOL_VERSIONS: &str = "PROTOCOL_VERSIONS";

const WHAT: &str = "SUPPORTED options";

/// The SUPPORTED response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Supported {
    /// Every (option, values) pair in wire order.
    pub options: Vec<(String, Vec<String>)>,
}

impl Supported {
    /// What a Cassandra 4.x/5.0 node typically advertises for the given protocol versions.
    pub fn new(cql_versions: &[&str], compression: &[&str], protocol_versions: &[&str]) -> Self {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Self {
            options: vec![
                (keys::CQL_VERSION.to_owned(), owned(cql_versions)),
                (keys::COMPRESSION.to_owned(), owned(compression)),
                (PROTOCOL_VERSIONS.to_owned(), owned(protocol_versions)),
            ],
        }
    }

    /// The values for `key`, or `None` when the server did not list it.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Replaces the values of `key` in place (order kept), or appends the entry.
    pub fn set(&mut self, key: &str, values: Vec<String>) {
        match self.options.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = values,
            None => self.options.push((key.to_owned(), values)),
        }
    }

    /// Supported compression algorithms; empty when none is listed.
    pub fn compression(&self) -> &[String] {
        self.get(keys::COMPRESSION).unwrap_or_default()
    }

    pub fn cql_versions(&self) -> &[String] {
        self.get(keys::CQL_VERSION).unwrap_or_default()
    }

    /// The raw `"<number>/<description>"` strings; empty when the server predates the entry.
    pub fn protocol_versions(&self) -> &[String] {
        self.get(PROTOCOL_VERSIONS).unwrap_or_default()
    }

    /// The protocol versions this crate also speaks, each with whether the server marks it beta
    /// (a beta version needs the USE_BETA header flag). Entries it cannot parse are skipped.
    pub fn known_protocol_versions(&self) -> Vec<(ProtocolVersion, bool)> {
        self.protocol_versions()
            .iter()
            .filter_map(|s| {
                let (number, description) = s.split_once('/')?;
                let version = ProtocolVersion::try_from(number.parse::<u8>().ok()?).ok()?;
                Some((version, description.contains("beta")))
            })
            .collect()
    }

    /// Reads the body from the front of `buf`; the caller checks that nothing is left.
    pub fn decode(buf: &mut &[u8], _version: ProtocolVersion) -> Result<Self, DecodeError> {
        Ok(Self {
            options: read_string_multimap(buf, WHAT)?,
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        _version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_string_multimap(buf, &self.options, WHAT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(msg: &Supported, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&Supported::decode(&mut s, version).unwrap(), msg);
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    #[test]
    fn golden_supported() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x02,                                   // [short] n = 2 entries ([string multimap], spec v4 §3)
            0x00, 0x0b,                                   // [string] key, 11 bytes
            b'C', b'O', b'M', b'P', b'R', b'E', b'S', b'S', b'I', b'O', b'N',
            0x00, 0x02,                                   // [string list] n = 2 values
            0x00, 0x06, b's', b'n', b'a', b'p', b'p', b'y', //   [string] "snappy" (§5)
            0x00, 0x03, b'l', b'z', b'4',                 //   [string] "lz4" (§5)
            0x00, 0x11,                                   // [string] key, 17 bytes (v5 spec §4.2.4)
            b'P', b'R', b'O', b'T', b'O', b'C', b'O', b'L', b'_', b'V', b'E', b'R', b'S', b'I', b'O', b'N', b'S',
            0x00, 0x02,                                   // [string list] n = 2 values
            0x00, 0x04, b'4', b'/', b'v', b'4',           //   [string] "4/v4"
            0x00, 0x09,                                   //   [string] 9 bytes
            b'5', b'/', b'v', b'5', b'-', b'b', b'e', b't', b'a', // "5/v5-beta"
        ];
        for v in ProtocolVersion::ALL {
            let mut s = body;
            let got = Supported::decode(&mut s, v).unwrap();
            assert!(s.is_empty());
            assert_eq!(got.compression(), ["snappy", "lz4"]);
            assert_eq!(got.protocol_versions(), ["4/v4", "5/v5-beta"]);
            assert!(got.cql_versions().is_empty());
            assert_eq!(
                got.known_protocol_versions(),
                [(ProtocolVersion::V4, false), (ProtocolVersion::V5, true)]
            );
            assert_eq!(roundtrip(&got, v), body);
        }
    }

    #[test]
    fn new_and_set_keep_the_order() {
        let mut msg = Supported::new(
            &["3.4.7"],
            &["snappy", "lz4"],
            &["3/v3", "4/v4", "5/v5", "6/v6-beta"],
        );
        msg.set(keys::COMPRESSION, vec!["lz4".into()]);
        assert_eq!(msg.options[1].0, keys::COMPRESSION);
        assert_eq!(msg.compression(), ["lz4"]);
        assert_eq!(msg.cql_versions(), ["3.4.7"]);
        assert_eq!(
            msg.known_protocol_versions().len(),
            3,
            "6/v6-beta is not a version this crate speaks"
        );
        roundtrip(&msg, ProtocolVersion::V5);
    }

    proptest! {
        #[test]
        fn random_supported_roundtrip(
            options in proptest::collection::vec(
                ("[A-Z_]{0,12}", proptest::collection::vec("\\PC{0,8}", 0..4)),
                0..5,
            ),
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            roundtrip(&Supported { options }, v);
        }

        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Supported::decode(&mut data.as_slice(), ProtocolVersion::V4);
        }
    }
}
