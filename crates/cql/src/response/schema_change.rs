//! The SCHEMA_CHANGE payload `<change_type><target><options>` (spec v4 §4.2.6), shared by the
//! SCHEMA_CHANGE event and by RESULT kind Schema_change (§4.2.5.5 says the two bodies are the
//! same).
//!
//! Versions: v3 defines the targets KEYSPACE, TABLE and TYPE; v4 added FUNCTION and AGGREGATE.
//! The layouts never conflict, so every target is read and written in every version (a proxy
//! forwards what the server sent; a v3 server simply never sends FUNCTION).

use bytes::BufMut;

use crate::protocol::ProtocolVersion;
use crate::wire::{
    DecodeError, EncodeError, read_string, read_string_list, write_string, write_string_list,
};

/// `<change_type>` and `<target>` strings, named once.
pub mod names {
    pub const CREATED: &str = "CREATED";
    pub const UPDATED: &str = "UPDATED";
    pub const DROPPED: &str = "DROPPED";

    pub const KEYSPACE: &str = "KEYSPACE";
    pub const TABLE: &str = "TABLE";
    pub const TYPE: &str = "TYPE";
    pub const FUNCTION: &str = "FUNCTION";
    pub const AGGREGATE: &str = "AGGREGATE";
}

/// What happened to the schema element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeType {
    Created,
    Updated,
    Dropped,
}

impl ChangeType {
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => names::CREATED,
            Self::Updated => names::UPDATED,
            Self::Dropped => names::DROPPED,
        }
    }
}

/// Which schema element changed, with the fields the spec gives for that target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SchemaTarget {
    Keyspace {
        keyspace: String,
    },
    Table {
        keyspace: String,
        table: String,
    },
    /// A user-defined type.
    Type {
        keyspace: String,
        name: String,
    },
    /// A user-defined function; `arg_types` tells overloads apart (CQL type names).
    Function {
        keyspace: String,
        name: String,
        arg_types: Vec<String>,
    },
    Aggregate {
        keyspace: String,
        name: String,
        arg_types: Vec<String>,
    },
}

impl SchemaTarget {
    /// The `<target>` string.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Keyspace { .. } => names::KEYSPACE,
            Self::Table { .. } => names::TABLE,
            Self::Type { .. } => names::TYPE,
            Self::Function { .. } => names::FUNCTION,
            Self::Aggregate { .. } => names::AGGREGATE,
        }
    }

    /// Every target lives in a keyspace (or is one).
    pub fn keyspace(&self) -> &str {
        match self {
            Self::Keyspace { keyspace }
            | Self::Table { keyspace, .. }
            | Self::Type { keyspace, .. }
            | Self::Function { keyspace, .. }
            | Self::Aggregate { keyspace, .. } => keyspace,
        }
    }
}

/// A schema change: what happened, and to what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaChange {
    pub change_type: ChangeType,
    pub target: SchemaTarget,
}

/// The target without its fields, so decoding can reject an unknown one before reading on.
#[derive(Clone, Copy)]
enum TargetKind {
    Keyspace,
    Table,
    Type,
    Function,
    Aggregate,
}

const WHAT_CHANGE: &str = "schema change type";
const WHAT_TARGET: &str = "schema change target";
const WHAT_OPTIONS: &str = "schema change options";

impl SchemaChange {
    pub fn new(change_type: ChangeType, target: SchemaTarget) -> Self {
        Self {
            change_type,
            target,
        }
    }

    /// Reads `<change_type><target><options>` from the front of `buf`; the caller checks that
    /// nothing is left. Unknown change types or targets are errors: the options' layout depends
    /// on the target, so an unknown target cannot be skipped safely.
    pub fn decode(buf: &mut &[u8], _version: ProtocolVersion) -> Result<Self, DecodeError> {
        let change_type = match read_string(buf, WHAT_CHANGE)? {
            names::CREATED => ChangeType::Created,
            names::UPDATED => ChangeType::Updated,
            names::DROPPED => ChangeType::Dropped,
            other => {
                return Err(DecodeError::Malformed {
                    what: WHAT_CHANGE,
                    reason: format!("unknown change type {other:?}"),
                });
            }
        };
        // Name an unknown target before reading options whose layout it would decide.
        let kind = match read_string(buf, WHAT_TARGET)? {
            names::KEYSPACE => TargetKind::Keyspace,
            names::TABLE => TargetKind::Table,
            names::TYPE => TargetKind::Type,
            names::FUNCTION => TargetKind::Function,
            names::AGGREGATE => TargetKind::Aggregate,
            other => {
                return Err(DecodeError::Malformed {
                    what: WHAT_TARGET,
                    reason: format!("unknown target {other:?}"),
                });
            }
        };
        let keyspace = read_string(buf, WHAT_OPTIONS)?.to_owned();
        let target = match kind {
            TargetKind::Keyspace => SchemaTarget::Keyspace { keyspace },
            TargetKind::Table => SchemaTarget::Table {
                keyspace,
                table: read_string(buf, WHAT_OPTIONS)?.to_owned(),
            },
            TargetKind::Type => SchemaTarget::Type {
                keyspace,
                name: read_string(buf, WHAT_OPTIONS)?.to_owned(),
            },
            TargetKind::Function => SchemaTarget::Function {
                keyspace,
                name: read_string(buf, WHAT_OPTIONS)?.to_owned(),
                arg_types: read_string_list(buf, WHAT_OPTIONS)?,
            },
            TargetKind::Aggregate => SchemaTarget::Aggregate {
                keyspace,
                name: read_string(buf, WHAT_OPTIONS)?.to_owned(),
                arg_types: read_string_list(buf, WHAT_OPTIONS)?,
            },
        };
        Ok(Self {
            change_type,
            target,
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        _version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_string(buf, self.change_type.name(), WHAT_CHANGE)?;
        write_string(buf, self.target.name(), WHAT_TARGET)?;
        write_string(buf, self.target.keyspace(), WHAT_OPTIONS)?;
        match &self.target {
            SchemaTarget::Keyspace { .. } => {}
            SchemaTarget::Table { table: name, .. } | SchemaTarget::Type { name, .. } => {
                write_string(buf, name, WHAT_OPTIONS)?;
            }
            SchemaTarget::Function {
                name, arg_types, ..
            }
            | SchemaTarget::Aggregate {
                name, arg_types, ..
            } => {
                write_string(buf, name, WHAT_OPTIONS)?;
                write_string_list(buf, arg_types, WHAT_OPTIONS)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_schema_change() -> impl Strategy<Value = SchemaChange> {
        let ident = || "[a-z_]{0,10}";
        let args = || proptest::collection::vec("[a-z<>, ]{0,12}", 0..4);
        let change = prop_oneof![
            Just(ChangeType::Created),
            Just(ChangeType::Updated),
            Just(ChangeType::Dropped)
        ];
        let target = prop_oneof![
            ident().prop_map(|keyspace| SchemaTarget::Keyspace { keyspace }),
            (ident(), ident())
                .prop_map(|(keyspace, table)| SchemaTarget::Table { keyspace, table }),
            (ident(), ident()).prop_map(|(keyspace, name)| SchemaTarget::Type { keyspace, name }),
            (ident(), ident(), args()).prop_map(|(keyspace, name, arg_types)| {
                SchemaTarget::Function {
                    keyspace,
                    name,
                    arg_types,
                }
            }),
            (ident(), ident(), args()).prop_map(|(keyspace, name, arg_types)| {
                SchemaTarget::Aggregate {
                    keyspace,
                    name,
                    arg_types,
                }
            }),
        ];
        (change, target).prop_map(|(change_type, target)| SchemaChange {
            change_type,
            target,
        })
    }

    fn roundtrip(msg: &SchemaChange, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(&SchemaChange::decode(&mut s, version).unwrap(), msg);
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    #[test]
    fn golden_table_created() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x07, b'C', b'R', b'E', b'A', b'T', b'E', b'D', // [string] <change_type> (spec v4 §4.2.6)
            0x00, 0x05, b'T', b'A', b'B', b'L', b'E',             // [string] <target> "TABLE"
            0x00, 0x02, b'k', b's',                               // [string] keyspace
            0x00, 0x01, b't',                                     // [string] table name
        ];
        let expected = SchemaChange::new(
            ChangeType::Created,
            SchemaTarget::Table {
                keyspace: "ks".into(),
                table: "t".into(),
            },
        );
        for v in ProtocolVersion::ALL {
            let mut s = body;
            assert_eq!(SchemaChange::decode(&mut s, v).unwrap(), expected);
            assert!(s.is_empty());
            assert_eq!(roundtrip(&expected, v), body);
        }
    }

    #[test]
    fn every_target_roundtrips_in_every_version() {
        let targets = [
            SchemaTarget::Keyspace {
                keyspace: "ks".into(),
            },
            SchemaTarget::Table {
                keyspace: "ks".into(),
                table: "t".into(),
            },
            SchemaTarget::Type {
                keyspace: "ks".into(),
                name: "address".into(),
            },
            SchemaTarget::Function {
                keyspace: "ks".into(),
                name: "f".into(),
                arg_types: vec!["int".into()],
            },
            SchemaTarget::Aggregate {
                keyspace: "ks".into(),
                name: "a".into(),
                arg_types: vec![],
            },
        ];
        for v in ProtocolVersion::ALL {
            for t in &targets {
                for c in [
                    ChangeType::Created,
                    ChangeType::Updated,
                    ChangeType::Dropped,
                ] {
                    roundtrip(&SchemaChange::new(c, t.clone()), v);
                }
            }
        }
    }

    #[test]
    fn unknown_names_are_errors_naming_the_string() {
        let mut out = Vec::new();
        write_string(&mut out, "RENAMED", "t").unwrap();
        let err = SchemaChange::decode(&mut out.as_slice(), ProtocolVersion::V4).unwrap_err();
        assert!(err.to_string().contains("RENAMED"), "{err}");

        let mut out = Vec::new();
        for s in [names::DROPPED, "INDEX", "ks"] {
            write_string(&mut out, s, "t").unwrap();
        }
        let err = SchemaChange::decode(&mut out.as_slice(), ProtocolVersion::V4).unwrap_err();
        assert!(err.to_string().contains("INDEX"), "{err}");
    }

    proptest! {
        #[test]
        fn random_schema_changes_roundtrip(
            msg in arb_schema_change(),
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            roundtrip(&msg, v);
        }

        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = SchemaChange::decode(&mut data.as_slice(), ProtocolVersion::V5);
        }
    }
}
