//! Request bodies (spec section 4.1), one module per opcode. Each type reads its body from the
//! front of a `&mut &[u8]` and writes it to a `BufMut`; types that keep bound values or ids also
//! take the body's `Bytes` so those stay zero-copy slices of it.
//!
//! # Layout
//! - [`startup`]: STARTUP, the connection's options (CQL version, compression, driver name …).
//! - [`options`]: OPTIONS, the empty "what do you support?" request.
//! - [`register`]: REGISTER, the event types a connection subscribes to.
//! - [`auth_response`]: AUTH_RESPONSE, the client's SASL token.
//! - [`params`]: `<query_parameters>` and bound values shared by QUERY, EXECUTE and BATCH.
//! - [`query`], [`prepare`], [`execute`], [`batch`]: the statement-carrying requests.

pub mod auth_response;
pub mod batch;
pub mod execute;
pub mod options;
pub mod params;
pub mod prepare;
pub mod query;
pub mod register;
pub mod startup;

pub use auth_response::AuthResponse;
pub use batch::{Batch, BatchChild, BatchStatement, BatchType};
pub use execute::Execute;
pub use options::Options;
pub use params::{QueryParameters, Value, Values};
pub use prepare::Prepare;
pub use query::Query;
pub use register::Register;
pub use startup::Startup;

#[cfg(test)]
pub(crate) mod strategies {
    //! Proptest strategies for request bodies, shared with the envelope-level tests.
    use bytes::Bytes;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::{Consistency, ProtocolVersion};

    pub(crate) fn consistency() -> impl Strategy<Value = Consistency> {
        (0u16..=0x0A).prop_map(|c| Consistency::try_from(c).unwrap())
    }

    fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn value(version: ProtocolVersion) -> impl Strategy<Value = Value> {
        let unset = version.supports_unset();
        prop_oneof![
            Just(Value::Null),
            bytes(24).prop_map(Value::Set),
            Just(if unset { Value::Unset } else { Value::Null }),
        ]
    }

    pub(crate) fn values(
        version: ProtocolVersion,
        allow_named: bool,
    ) -> impl Strategy<Value = Values> {
        prop_oneof![
            Just(Values::None),
            vec(value(version), 0..5).prop_map(Values::Positional),
            vec(("[a-z_]{1,8}", value(version)), 0..4).prop_map(move |v| if allow_named {
                Values::Named(v)
            } else {
                Values::Positional(v.into_iter().map(|(_, v)| v).collect())
            }),
        ]
    }

    pub(crate) fn params(version: ProtocolVersion) -> impl Strategy<Value = QueryParameters> {
        let v5 = version >= ProtocolVersion::V5;
        (
            consistency(),
            values(version, true),
            any::<bool>(),
            proptest::option::of(any::<i32>()),
            proptest::option::of(bytes(16)),
            proptest::option::of(consistency()),
            proptest::option::of(any::<i64>()),
            proptest::option::of("[a-z]{1,10}"),
            proptest::option::of(any::<i32>()),
        )
            .prop_map(move |(c, values, skip, page, state, serial, ts, ks, now)| {
                QueryParameters {
                    consistency: c,
                    values,
                    skip_metadata: skip,
                    page_size: page,
                    paging_state: state,
                    serial_consistency: serial,
                    default_timestamp: ts,
                    keyspace: ks.filter(|_| v5),
                    now_in_seconds: now.filter(|_| v5),
                }
            })
    }

    pub(crate) fn query(version: ProtocolVersion) -> impl Strategy<Value = Query> {
        (".{0,40}", params(version)).prop_map(|(q, p)| Query::new(q, p))
    }

    pub(crate) fn prepare(version: ProtocolVersion) -> impl Strategy<Value = Prepare> {
        let v5 = version >= ProtocolVersion::V5;
        (".{0,40}", proptest::option::of("[a-z]{1,10}")).prop_map(move |(q, ks)| Prepare {
            query: q,
            keyspace: ks.filter(|_| v5),
        })
    }

    pub(crate) fn execute(version: ProtocolVersion) -> impl Strategy<Value = Execute> {
        let v5 = version >= ProtocolVersion::V5;
        (bytes(16), bytes(16), params(version)).prop_map(move |(id, rid, params)| Execute {
            id,
            result_metadata_id: v5.then_some(rid),
            params,
        })
    }

    pub(crate) fn batch(version: ProtocolVersion) -> impl Strategy<Value = Batch> {
        let v5 = version >= ProtocolVersion::V5;
        let child = (
            prop_oneof![
                ".{0,30}".prop_map(BatchStatement::Query),
                bytes(16).prop_map(BatchStatement::Prepared)
            ],
            values(version, false).prop_map(|v| if v.is_empty() { Values::None } else { v }),
        )
            .prop_map(|(statement, values)| BatchChild { statement, values });
        (
            0u8..3,
            vec(child, 0..4),
            consistency(),
            proptest::option::of(consistency()),
            proptest::option::of(any::<i64>()),
            proptest::option::of("[a-z]{1,10}"),
            proptest::option::of(any::<i32>()),
        )
            .prop_map(move |(t, children, c, serial, ts, ks, now)| Batch {
                batch_type: BatchType::try_from(t).unwrap(),
                children,
                consistency: c,
                serial_consistency: serial,
                default_timestamp: ts,
                keyspace: ks.filter(|_| v5),
                now_in_seconds: now.filter(|_| v5),
            })
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use proptest::prelude::*;

    use super::strategies::*;
    use super::*;
    use crate::protocol::{Consistency, ProtocolVersion};
    use crate::wire::{DecodeError, expect_end};

    fn versions() -> impl Strategy<Value = ProtocolVersion> {
        prop_oneof![
            Just(ProtocolVersion::V3),
            Just(ProtocolVersion::V4),
            Just(ProtocolVersion::V5)
        ]
    }

    /// Encodes, decodes, checks equality and that re-encoding gives the same bytes.
    macro_rules! roundtrip {
        ($ty:ident, $msg:expr, $v:expr, with_body) => {{
            let mut out = BytesMut::new();
            $msg.encode(&mut out, $v).unwrap();
            let body = out.freeze();
            let mut cur: &[u8] = &body;
            let back = $ty::decode(&mut cur, &body, $v).unwrap();
            expect_end(cur, "test").unwrap();
            prop_assert_eq!(&back, &$msg);
            let mut again = BytesMut::new();
            back.encode(&mut again, $v).unwrap();
            prop_assert_eq!(&again[..], &body[..]);
        }};
    }

    proptest! {
        #[test]
        fn query_v3_roundtrips(msg in query(ProtocolVersion::V3)) {
            roundtrip!(Query, msg, ProtocolVersion::V3, with_body);
        }

        #[test]
        fn query_v4_roundtrips(msg in query(ProtocolVersion::V4)) {
            roundtrip!(Query, msg, ProtocolVersion::V4, with_body);
        }

        #[test]
        fn query_v5_roundtrips(msg in query(ProtocolVersion::V5)) {
            roundtrip!(Query, msg, ProtocolVersion::V5, with_body);
        }

        #[test]
        fn execute_roundtrips(msg in execute(ProtocolVersion::V5)) {
            roundtrip!(Execute, msg, ProtocolVersion::V5, with_body);
        }

        #[test]
        fn execute_v3_roundtrips(msg in execute(ProtocolVersion::V3)) {
            roundtrip!(Execute, msg, ProtocolVersion::V3, with_body);
        }

        #[test]
        fn batch_roundtrips(msg in batch(ProtocolVersion::V4)) {
            roundtrip!(Batch, msg, ProtocolVersion::V4, with_body);
        }

        #[test]
        fn batch_v5_roundtrips(msg in batch(ProtocolVersion::V5)) {
            roundtrip!(Batch, msg, ProtocolVersion::V5, with_body);
        }

        #[test]
        fn prepare_roundtrips(v in versions(), q in ".{0,40}", ks in proptest::option::of("[a-z]{1,9}")) {
            let msg = Prepare { query: q, keyspace: ks.filter(|_| v >= ProtocolVersion::V5) };
            let mut out = BytesMut::new();
            msg.encode(&mut out, v).unwrap();
            let mut cur: &[u8] = &out;
            prop_assert_eq!(Prepare::decode(&mut cur, v).unwrap(), msg);
            prop_assert!(cur.is_empty());
        }

        #[test]
        fn prepare_v5_roundtrips(msg in prepare(ProtocolVersion::V5)) {
            let mut out = BytesMut::new();
            msg.encode(&mut out, ProtocolVersion::V5).unwrap();
            let mut cur: &[u8] = &out;
            prop_assert_eq!(Prepare::decode(&mut cur, ProtocolVersion::V5).unwrap(), msg);
            prop_assert!(cur.is_empty());
        }

        #[test]
        fn random_bodies_never_panic(v in versions(), data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let body = Bytes::from(data);
            let _ = Query::decode(&mut &body[..], &body, v);
            let _ = Execute::decode(&mut &body[..], &body, v);
            let _ = Batch::decode(&mut &body[..], &body, v);
            let _ = Prepare::decode(&mut &body[..], v);
        }
    }

    #[test]
    fn query_golden_v4() {
        // QUERY body, spec v4 §4.1.4.
        let golden: &[u8] = &[
            0x00, 0x00, 0x00, 0x0b, // [long string] length 11
            b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'n', b'o', b'w', b'?', // query text
            0x00, 0x06, // [consistency] LOCAL_QUORUM
            0x25, // [byte] flags: VALUES 0x01 | PAGE_SIZE 0x04 | WITH_DEFAULT_TIMESTAMP 0x20
            0x00, 0x02, // [short] 2 values
            0x00, 0x00, 0x00, 0x01, 0x2a, // [value] 1 byte: 42
            0xff, 0xff, 0xff, 0xfe, // [value] -2: not set
            0x00, 0x00, 0x13, 0x88, // [int] page size 5000
            0x00, 0x06, 0x0a, 0x24, 0x18, 0x1e, 0x40,
            0x00, // [long] timestamp 1_700_000_000_000_000
        ];
        let body = Bytes::from_static(golden);
        let mut cur = golden;
        let q = Query::decode(&mut cur, &body, ProtocolVersion::V4).unwrap();
        assert!(cur.is_empty());
        assert_eq!(q.query, "SELECT now?");
        assert_eq!(q.params.consistency, Consistency::LocalQuorum);
        assert_eq!(
            q.params.values,
            Values::Positional(vec![Value::Set(Bytes::from_static(&[42])), Value::Unset])
        );
        assert_eq!(q.params.page_size, Some(5000));
        assert_eq!(q.params.default_timestamp, Some(1_700_000_000_000_000));
        let mut out = BytesMut::new();
        q.encode(&mut out, ProtocolVersion::V4).unwrap();
        assert_eq!(&out[..], golden);
    }

    #[test]
    fn v5_flags_are_an_int_and_carry_keyspace_and_now() {
        let params = QueryParameters {
            consistency: Consistency::One,
            keyspace: Some("ks".to_owned()),
            now_in_seconds: Some(1_700_000_000),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        params.encode(&mut out, ProtocolVersion::V5).unwrap();
        assert_eq!(
            &out[..],
            &[
                0x00, 0x01, 0x00, 0x00, 0x01, 0x80, 0x00, 0x02, b'k', b's', 0x65, 0x53, 0xf1, 0x00
            ]
        );
        assert!(
            params
                .encode(&mut BytesMut::new(), ProtocolVersion::V4)
                .is_err()
        );
    }

    #[test]
    fn unset_is_refused_in_v3() {
        let body = Bytes::from_static(&[0x00, 0x01, 0x01, 0x00, 0x01, 0xff, 0xff, 0xff, 0xfe]);
        let err = QueryParameters::decode(&mut &body[..], &body, ProtocolVersion::V3).unwrap_err();
        assert!(
            matches!(err, DecodeError::Malformed { what: "value", .. }),
            "{err}"
        );
    }

    #[test]
    fn batch_golden_v4_with_a_query_and_a_prepared_child() {
        // BATCH body, spec v4 §4.1.7.
        let golden: &[u8] = &[
            0x01, // [byte] type UNLOGGED
            0x00, 0x02, // [short] 2 statements
            0x00, // kind 0: query string
            0x00, 0x00, 0x00, 0x03, b'X', b'Y', b'Z', // [long string]
            0x00, 0x00, // [short] 0 values
            0x01, // kind 1: prepared id
            0x00, 0x02, 0xab, 0xcd, // [short bytes] id
            0x00, 0x01, // [short] 1 value
            0xff, 0xff, 0xff, 0xff, // [value] null
            0x00, 0x04, // [consistency] QUORUM
            0x20, // [byte] flags: WITH_DEFAULT_TIMESTAMP
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // [long] timestamp 7
        ];
        let body = Bytes::from_static(golden);
        let mut cur = golden;
        let b = Batch::decode(&mut cur, &body, ProtocolVersion::V4).unwrap();
        assert!(cur.is_empty());
        assert_eq!(b.batch_type, BatchType::Unlogged);
        assert_eq!(b.children.len(), 2);
        assert_eq!(
            b.children[0].statement,
            BatchStatement::Query("XYZ".to_owned())
        );
        assert_eq!(b.children[1].values, Values::Positional(vec![Value::Null]));
        assert_eq!(b.default_timestamp, Some(7));
        let mut out = BytesMut::new();
        b.encode(&mut out, ProtocolVersion::V4).unwrap();
        assert_eq!(&out[..], golden);
    }

    #[test]
    fn batch_names_flag_is_refused_as_cassandra_does() {
        let body = Bytes::from_static(&[0x00, 0x00, 0x00, 0x00, 0x01, 0x40]);
        let err = Batch::decode(&mut &body[..], &body, ProtocolVersion::V4).unwrap_err();
        assert!(err.to_string().contains("names for values"), "{err}");
    }

    #[test]
    fn execute_golden_v5_carries_the_result_metadata_id() {
        // EXECUTE body, spec v5 §4.1.6.
        let golden: &[u8] = &[
            0x00, 0x02, 0x01, 0x02, // [short bytes] prepared id
            0x00, 0x01, 0x09, // [short bytes] result metadata id
            0x00, 0x0a, // [consistency] LOCAL_ONE
            0x00, 0x00, 0x00, 0x02, // [int] flags: SKIP_METADATA
        ];
        let body = Bytes::from_static(golden);
        let mut cur = golden;
        let e = Execute::decode(&mut cur, &body, ProtocolVersion::V5).unwrap();
        assert!(cur.is_empty());
        assert_eq!(&e.id[..], &[1, 2]);
        assert_eq!(e.result_metadata_id.as_deref(), Some(&[9u8][..]));
        assert!(e.params.skip_metadata);
        let mut out = BytesMut::new();
        e.encode(&mut out, ProtocolVersion::V5).unwrap();
        assert_eq!(&out[..], golden);
    }
}
