//! EVENT (spec v4 §4.2.6): a server push, on stream -1, of a type the connection REGISTERed for.
//! The body is a `[string]` event type then that type's fields.

use std::net::SocketAddr;

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::response::schema_change::SchemaChange;
use crate::wire::{DecodeError, EncodeError, read_inet, read_string, write_inet, write_string};

/// Event type and change names, named once.
pub mod names {
    pub const TOPOLOGY_CHANGE: &str = "TOPOLOGY_CHANGE";
    pub const STATUS_CHANGE: &str = "STATUS_CHANGE";
    pub const SCHEMA_CHANGE: &str = "SCHEMA_CHANGE";

    pub const NEW_NODE: &str = "NEW_NODE";
    pub const REMOVED_NODE: &str = "REMOVED_NODE";
    pub const MOVED_NODE: &str = "MOVED_NODE";

    pub const UP: &str = "UP";
    pub const DOWN: &str = "DOWN";
}

/// An event type name as REGISTER lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    TopologyChange,
    StatusChange,
    SchemaChange,
    /// A name this crate does not know, kept so a proxy can forward it unchanged.
    Other(String),
}

impl EventType {
    pub fn from_name(name: &str) -> Self {
        match name {
            names::TOPOLOGY_CHANGE => Self::TopologyChange,
            names::STATUS_CHANGE => Self::StatusChange,
            names::SCHEMA_CHANGE => Self::SchemaChange,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::TopologyChange => names::TOPOLOGY_CHANGE,
            Self::StatusChange => names::STATUS_CHANGE,
            Self::SchemaChange => names::SCHEMA_CHANGE,
            Self::Other(name) => name,
        }
    }
}

/// A node joined or left the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopologyChangeType {
    NewNode,
    RemovedNode,
    /// Not in the spec text, but Cassandra's `Event.TopologyChange` defines and has sent it when a
    /// node's token moves; accepted so such a push does not fail decoding.
    MovedNode,
}

impl TopologyChangeType {
    pub fn name(self) -> &'static str {
        match self {
            Self::NewNode => names::NEW_NODE,
            Self::RemovedNode => names::REMOVED_NODE,
            Self::MovedNode => names::MOVED_NODE,
        }
    }
}

/// A node went up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusChangeType {
    Up,
    Down,
}

impl StatusChangeType {
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => names::UP,
            Self::Down => names::DOWN,
        }
    }
}

/// The EVENT response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// `node` is the node's native-protocol address as the server knows it; a proxy that
    /// virtualizes topology rewrites it.
    TopologyChange {
        change: TopologyChangeType,
        node: SocketAddr,
    },
    StatusChange {
        change: StatusChangeType,
        node: SocketAddr,
    },
    SchemaChange(SchemaChange),
}

const WHAT_TYPE: &str = "event type";
const WHAT_CHANGE: &str = "event change";
const WHAT_NODE: &str = "event node address";

fn unknown(what: &'static str, name: &str) -> DecodeError {
    DecodeError::Malformed {
        what,
        reason: format!("unknown name {name:?}"),
    }
}

impl Event {
    /// The type a client must have REGISTERed for to receive this event.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::TopologyChange { .. } => EventType::TopologyChange,
            Self::StatusChange { .. } => EventType::StatusChange,
            Self::SchemaChange(_) => EventType::SchemaChange,
        }
    }

    /// Reads the body from the front of `buf`; the caller checks that nothing is left. An unknown
    /// event type is an error: its fields' layout is unknown, so a proxy forwards such a body raw.
    pub fn decode(buf: &mut &[u8], version: ProtocolVersion) -> Result<Self, DecodeError> {
        match read_string(buf, WHAT_TYPE)? {
            names::TOPOLOGY_CHANGE => {
                let change = match read_string(buf, WHAT_CHANGE)? {
                    names::NEW_NODE => TopologyChangeType::NewNode,
                    names::REMOVED_NODE => TopologyChangeType::RemovedNode,
                    names::MOVED_NODE => TopologyChangeType::MovedNode,
                    other => return Err(unknown(WHAT_CHANGE, other)),
                };
                Ok(Self::TopologyChange {
                    change,
                    node: read_inet(buf, WHAT_NODE)?,
                })
            }
            names::STATUS_CHANGE => {
                let change = match read_string(buf, WHAT_CHANGE)? {
                    names::UP => StatusChangeType::Up,
                    names::DOWN => StatusChangeType::Down,
                    other => return Err(unknown(WHAT_CHANGE, other)),
                };
                Ok(Self::StatusChange {
                    change,
                    node: read_inet(buf, WHAT_NODE)?,
                })
            }
            names::SCHEMA_CHANGE => Ok(Self::SchemaChange(SchemaChange::decode(buf, version)?)),
            other => Err(unknown(WHAT_TYPE, other)),
        }
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_string(buf, self.event_type().name(), WHAT_TYPE)?;
        match self {
            Self::TopologyChange { change, node } => {
                write_string(buf, change.name(), WHAT_CHANGE)?;
                write_inet(buf, *node);
            }
            Self::StatusChange { change, node } => {
                write_string(buf, change.name(), WHAT_CHANGE)?;
                write_inet(buf, *node);
            }
            Self::SchemaChange(sc) => sc.encode(buf, version)?,
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::response::schema_change::tests::arb_schema_change;
    use crate::response::schema_change::{ChangeType, SchemaTarget};
    use proptest::prelude::*;

    pub(crate) fn arb_event_type() -> impl Strategy<Value = EventType> {
        prop_oneof![
            Just(EventType::TopologyChange),
            Just(EventType::StatusChange),
            Just(EventType::SchemaChange),
            // Known names never decode to Other, so keep generated ones lowercase.
            "[a-z_]{0,16}".prop_map(EventType::Other),
        ]
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (
                prop_oneof![
                    Just(TopologyChangeType::NewNode),
                    Just(TopologyChangeType::RemovedNode),
                    Just(TopologyChangeType::MovedNode)
                ],
                arb_addr()
            )
                .prop_map(|(change, node)| Event::TopologyChange { change, node }),
            (
                prop_oneof![Just(StatusChangeType::Up), Just(StatusChangeType::Down)],
                arb_addr()
            )
                .prop_map(|(change, node)| Event::StatusChange { change, node }),
            arb_schema_change().prop_map(Event::SchemaChange),
        ]
    }

    fn roundtrip(msg: &Event, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&Event::decode(&mut s, version).unwrap(), msg);
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    fn golden(body: &[u8], expected: &Event) {
        for v in ProtocolVersion::ALL {
            let mut s = body;
            assert_eq!(&Event::decode(&mut s, v).unwrap(), expected);
            assert!(s.is_empty());
            assert_eq!(roundtrip(expected, v), body);
        }
    }

    #[test]
    fn golden_status_change_up() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x0d,                       // [string] event type, 13 bytes (spec v4 §4.2.6)
            b'S', b'T', b'A', b'T', b'U', b'S', b'_', b'C', b'H', b'A', b'N', b'G', b'E',
            0x00, 0x02, b'U', b'P',           // [string] change "UP"
            0x04,                             // [inet]: address size 4 (IPv4, spec v4 §3)
            10, 0, 0, 7,                      //   10.0.0.7
            0x00, 0x00, 0x23, 0x52,           //   [int] port 9042
        ];
        golden(
            body,
            &Event::StatusChange {
                change: StatusChangeType::Up,
                node: "10.0.0.7:9042".parse().unwrap(),
            },
        );
    }

    #[test]
    fn golden_topology_change_new_node_ipv6() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x0f,                       // [string] event type, 15 bytes (spec v4 §4.2.6)
            b'T', b'O', b'P', b'O', b'L', b'O', b'G', b'Y', b'_', b'C', b'H', b'A', b'N', b'G', b'E',
            0x00, 0x08,                       // [string] change, 8 bytes
            b'N', b'E', b'W', b'_', b'N', b'O', b'D', b'E',
            0x10,                             // [inet]: address size 16 (IPv6, spec v4 §3)
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // ::1
            0x00, 0x00, 0x4a, 0x63,           //   [int] port 19043
        ];
        golden(
            body,
            &Event::TopologyChange {
                change: TopologyChangeType::NewNode,
                node: "[::1]:19043".parse().unwrap(),
            },
        );
    }

    #[test]
    fn golden_schema_change_function() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x0d,                       // [string] event type, 13 bytes (spec v4 §4.2.6)
            b'S', b'C', b'H', b'E', b'M', b'A', b'_', b'C', b'H', b'A', b'N', b'G', b'E',
            0x00, 0x07,                       // [string] <change_type>, 7 bytes
            b'U', b'P', b'D', b'A', b'T', b'E', b'D',
            0x00, 0x08,                       // [string] <target>, 8 bytes
            b'F', b'U', b'N', b'C', b'T', b'I', b'O', b'N',
            0x00, 0x02, b'k', b's',           // [string] keyspace of the function
            0x00, 0x03, b'a', b'd', b'd',     // [string] function name "add"
            0x00, 0x02,                       // [string list] n = 2 argument types
            0x00, 0x03, b'i', b'n', b't',     //   [string] "int"
            0x00, 0x09,                       //   [string] 9 bytes
            b'l', b'i', b's', b't', b'<', b'i', b'n', b't', b'>', // "list<int>"
        ];
        golden(
            body,
            &Event::SchemaChange(SchemaChange::new(
                ChangeType::Updated,
                SchemaTarget::Function {
                    keyspace: "ks".into(),
                    name: "add".into(),
                    arg_types: vec!["int".into(), "list<int>".into()],
                },
            )),
        );
    }

    #[test]
    fn unknown_names_are_errors_naming_the_string() {
        let mut out = Vec::new();
        write_string(&mut out, "CLIENT_CHANGE", "t").unwrap();
        let err = Event::decode(&mut out.as_slice(), ProtocolVersion::V5).unwrap_err();
        assert!(err.to_string().contains("CLIENT_CHANGE"), "{err}");

        let mut out = Vec::new();
        write_string(&mut out, names::STATUS_CHANGE, "t").unwrap();
        write_string(&mut out, "SIDEWAYS", "t").unwrap();
        let err = Event::decode(&mut out.as_slice(), ProtocolVersion::V5).unwrap_err();
        assert!(err.to_string().contains("SIDEWAYS"), "{err}");
    }

    #[test]
    fn event_type_names_roundtrip() {
        for t in [
            EventType::TopologyChange,
            EventType::StatusChange,
            EventType::SchemaChange,
        ] {
            assert_eq!(EventType::from_name(t.name()), t);
        }
        assert_eq!(EventType::from_name("X"), EventType::Other("X".into()));
    }

    proptest! {
        #[test]
        fn random_events_roundtrip(
            msg in arb_event(),
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            roundtrip(&msg, v);
        }

        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Event::decode(&mut data.as_slice(), ProtocolVersion::V5);
        }

        #[test]
        fn decoding_near_valid_bodies_never_panics(msg in arb_event(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
            let mut out = Vec::new();
            msg.encode(&mut out, ProtocolVersion::V4).unwrap();
            let i = cut.index(out.len());
            out[i] ^= flip;
            let _ = Event::decode(&mut out.as_slice(), ProtocolVersion::V4);
            let _ = Event::decode(&mut &out[..i], ProtocolVersion::V4);
        }
    }
}
