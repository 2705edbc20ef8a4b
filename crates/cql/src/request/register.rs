//! REGISTER (spec 4.1.8): subscribes the connection to server-pushed events. The body is a
//! `[string list]` of event type names.
//!
//! Unknown names decode to [`EventType::Other`] rather than failing: the proxy forwards what the
//! client asked for and lets the server answer, so a future event type never breaks the proxy.

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::response::event::EventType;
use crate::wire::{DecodeError, EncodeError, read_short, read_string, write_short, write_string};

const WHAT: &str = "REGISTER event types";

/// The REGISTER request; the server answers with READY.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Register {
    /// The requested event types, in wire order.
    pub events: Vec<EventType>,
}

impl Register {
    pub fn new(events: impl IntoIterator<Item = EventType>) -> Self {
        Self {
            events: events.into_iter().collect(),
        }
    }

    /// Reads the body from the front of `buf`; the caller checks that nothing is left.
    pub fn decode(buf: &mut &[u8], _version: ProtocolVersion) -> Result<Self, DecodeError> {
        // Read the list directly rather than via `read_string_list` to avoid a throwaway Vec<String>.
        let n = read_short(buf, WHAT)?;
        let mut events = Vec::with_capacity(usize::from(n).min(buf.len() / 2));
        for _ in 0..n {
            events.push(EventType::from_name(read_string(buf, WHAT)?));
        }
        Ok(Self { events })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        _version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        let n = u16::try_from(self.events.len()).map_err(|_| EncodeError::TooLong {
            what: WHAT,
            len: self.events.len(),
            max: usize::from(u16::MAX),
        })?;
        write_short(buf, n);
        for e in &self.events {
            write_string(buf, e.name(), WHAT)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::event::tests::arb_event_type;
    use proptest::prelude::*;

    fn roundtrip(msg: &Register, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&Register::decode(&mut s, version).unwrap(), msg);
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    #[test]
    fn golden_register_all_three() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x03,                   // [short] n = 3 ([string list], spec v4 §3 and §4.1.8)
            0x00, 0x0f,                   // [string] length 15
            b'T', b'O', b'P', b'O', b'L', b'O', b'G', b'Y', b'_', b'C', b'H', b'A', b'N', b'G', b'E',
            0x00, 0x0d,                   // [string] length 13
            b'S', b'T', b'A', b'T', b'U', b'S', b'_', b'C', b'H', b'A', b'N', b'G', b'E',
            0x00, 0x0d,                   // [string] length 13
            b'S', b'C', b'H', b'E', b'M', b'A', b'_', b'C', b'H', b'A', b'N', b'G', b'E',
        ];
        let expected = Register::new([
            EventType::TopologyChange,
            EventType::StatusChange,
            EventType::SchemaChange,
        ]);
        for v in ProtocolVersion::ALL {
            let mut s = body;
            let got = Register::decode(&mut s, v).unwrap();
            assert!(s.is_empty());
            assert_eq!(got, expected);
            assert_eq!(roundtrip(&got, v), body);
        }
    }

    #[test]
    fn unknown_event_names_are_kept() {
        let msg = Register::new([
            EventType::Other("CLIENT_CHANGE".into()),
            EventType::StatusChange,
        ]);
        roundtrip(&msg, ProtocolVersion::V5);
    }

    proptest! {
        #[test]
        fn random_registers_roundtrip(
            events in proptest::collection::vec(arb_event_type(), 0..5),
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            roundtrip(&Register { events }, v);
        }

        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Register::decode(&mut data.as_slice(), ProtocolVersion::V4);
        }
    }
}
