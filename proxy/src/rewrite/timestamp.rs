//! The protocol's default timestamp on writes that carry none: without it each cluster's
//! coordinator stamps the write with its own clock, and origin and target end up with different
//! writetimes (and, for racing writes, different winners).
//!
//! The `[long]` goes where the spec puts it, after `<serial_consistency>` and before the v5
//! `<keyspace>`/`<now_in_seconds>`, and the WITH_DEFAULT_TIMESTAMP flag (0x20) is set; every
//! other byte is copied as it was.

use bytes::Bytes;
use ferry_cql::protocol::{Opcode, ProtocolVersion};
use ferry_cql::request::params::query_flags::WITH_DEFAULT_TIMESTAMP;

use super::RewriteError;
use super::layout::{BatchLayout, ExecuteLayout, Flags, QueryLayout};

/// Sets `timestamp_micros` as the default timestamp of a QUERY, EXECUTE or BATCH body that has
/// none. `Ok(None)` when the body already carries one (the client's wins).
pub fn inject_default_timestamp(
    version: ProtocolVersion,
    opcode: Opcode,
    body: &Bytes,
    timestamp_micros: i64,
) -> Result<Option<Bytes>, RewriteError> {
    let malformed = RewriteError::malformed(opcode, version);
    let (flags, timestamp_at) = match opcode {
        Opcode::Query => {
            let l = QueryLayout::read(body, version).map_err(malformed)?;
            (l.params.flags, l.params.timestamp_at)
        }
        Opcode::Execute => {
            let l = ExecuteLayout::read(body, version).map_err(malformed)?;
            (l.params.flags, l.params.timestamp_at)
        }
        Opcode::Batch => {
            let l = BatchLayout::read(body, version).map_err(malformed)?;
            (l.flags, l.timestamp_at)
        }
        other => {
            return Err(RewriteError::WrongOpcode {
                opcode: other,
                expected: "QUERY, EXECUTE, BATCH",
            });
        }
    };
    if flags.has(WITH_DEFAULT_TIMESTAMP) {
        return Ok(None);
    }
    Ok(Some(splice(body, flags, timestamp_at, timestamp_micros)))
}

/// A dual write's two EXECUTE bodies at once: origin's is [`inject_default_timestamp`]'s, and
/// target's is the same naming `target_id` (and v5's `target_result_metadata_id`, when given)
/// as [`super::replace_execute_id`] would make it. One parse for both: the two steps apart
/// parse the body twice. Two unshared buffers, not one split in two: a split buffer's handles
/// are reference-counted with an atomic operation per clone and per drop.
/// `Ok(None)` when the body already carries a timestamp.
pub fn inject_default_timestamp_both(
    version: ProtocolVersion,
    body: &Bytes,
    timestamp_micros: i64,
    target_id: &[u8],
    target_result_metadata_id: Option<&[u8]>,
) -> Result<Option<(Bytes, Bytes)>, RewriteError> {
    if target_result_metadata_id.is_some() && version < ProtocolVersion::V5 {
        return Err(RewriteError::ResultMetadataIdBeforeV5 { version });
    }
    let l = ExecuteLayout::read(body, version)
        .map_err(RewriteError::malformed(Opcode::Execute, version))?;
    let flags = l.params.flags;
    if flags.has(WITH_DEFAULT_TIMESTAMP) {
        return Ok(None);
    }
    let ids_end = l.result_metadata_id.as_ref().unwrap_or(&l.id).end;
    let rmid_len = l.result_metadata_id.as_ref().map_or(0, |r| {
        2 + target_result_metadata_id.map_or(r.len(), <[u8]>::len)
    });
    let origin_len = body.len() + 8;
    let target_len = origin_len - ids_end + 2 + target_id.len() + rmid_len;
    let mut origin = Vec::with_capacity(origin_len);
    splice_into(
        &mut origin,
        body,
        0,
        flags,
        l.params.timestamp_at,
        timestamp_micros,
    );
    let mut out = Vec::with_capacity(target_len);
    put_short_bytes(&mut out, target_id, "prepared id")?;
    if let Some(rmid) = &l.result_metadata_id {
        let rmid = target_result_metadata_id.unwrap_or(&body[rmid.clone()]);
        put_short_bytes(&mut out, rmid, "result metadata id")?;
    }
    splice_into(
        &mut out,
        body,
        ids_end,
        flags,
        l.params.timestamp_at,
        timestamp_micros,
    );
    // Exactly sized: `Bytes` takes a full vector over as it is (else it adds a shared header).
    debug_assert!(origin.len() == origin.capacity() && out.len() == out.capacity());
    Ok(Some((Bytes::from(origin), Bytes::from(out))))
}

/// `body` with the flag set and the timestamp inserted at `timestamp_at`.
fn splice(body: &Bytes, flags: Flags, timestamp_at: usize, timestamp_micros: i64) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 8);
    splice_into(&mut out, body, 0, flags, timestamp_at, timestamp_micros);
    Bytes::from(out)
}

/// Appends `body[from..]` to `out` with the flag set and the timestamp inserted at
/// `timestamp_at`; `from` is at or before the flags.
fn splice_into(
    out: &mut Vec<u8>,
    body: &[u8],
    from: usize,
    flags: Flags,
    timestamp_at: usize,
    timestamp_micros: i64,
) {
    let (new_flags, flags_len) = flags.encode_with(WITH_DEFAULT_TIMESTAMP);
    let flags_range = flags.range();
    // `extend_from_slice`, not `BufMut::put_slice`: the caller reserved it all, and `put_slice`
    // walks its chunk loop per call (five calls per body, on every dual write).
    out.reserve(body.len() - from + 8);
    out.extend_from_slice(&body[from..flags_range.start]);
    out.extend_from_slice(&new_flags[..flags_len]);
    out.extend_from_slice(&body[flags_range.end..timestamp_at]);
    out.extend_from_slice(&timestamp_micros.to_be_bytes());
    out.extend_from_slice(&body[timestamp_at..]);
}

/// `[short bytes]` appended with plain copies (see `splice_into`).
fn put_short_bytes(out: &mut Vec<u8>, b: &[u8], what: &'static str) -> Result<(), RewriteError> {
    let len = u16::try_from(b.len()).map_err(|_| {
        RewriteError::encode(Opcode::Execute)(ferry_cql::wire::EncodeError::TooLong {
            what,
            len: b.len(),
            max: usize::from(u16::MAX),
        })
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use bytes::BytesMut;
    use ferry_cql::message::Request;
    use ferry_cql::protocol::Consistency;
    use ferry_cql::request::{
        Batch, BatchChild, BatchStatement, BatchType, Execute, Query, QueryParameters, Value,
        Values,
    };
    use proptest::prelude::*;

    use super::*;

    const TS: i64 = 1_700_000_000_123_456;

    fn encode(req: &Request, version: ProtocolVersion) -> Bytes {
        let mut out = BytesMut::new();
        req.encode_body(&mut out, version).unwrap();
        out.freeze()
    }

    fn decode(opcode: Opcode, body: &Bytes, version: ProtocolVersion) -> Request {
        Request::decode_body(opcode, body, version).unwrap()
    }

    /// Parameters with every optional field before and after the timestamp.
    fn full_params(version: ProtocolVersion) -> QueryParameters {
        let v5 = version >= ProtocolVersion::V5;
        QueryParameters {
            consistency: Consistency::LocalQuorum,
            values: Values::Named(vec![
                (
                    "k".to_owned(),
                    Value::Set(Bytes::from_static(&[0, 0, 0, 7])),
                ),
                ("v".to_owned(), Value::Null),
            ]),
            skip_metadata: true,
            page_size: Some(100),
            paging_state: Some(Bytes::from_static(b"state")),
            serial_consistency: Some(Consistency::LocalSerial),
            default_timestamp: None,
            keyspace: v5.then(|| "ks".to_owned()),
            now_in_seconds: v5.then_some(1_700_000_000),
        }
    }

    fn requests(version: ProtocolVersion) -> Vec<Request> {
        let v5 = version >= ProtocolVersion::V5;
        vec![
            Request::Query(Query::new(
                "INSERT INTO t (k) VALUES (1)",
                full_params(version),
            )),
            Request::Query(Query::new("DELETE FROM t", QueryParameters::default())),
            Request::Execute(Execute {
                id: Bytes::from_static(&[1, 2, 3]),
                result_metadata_id: v5.then(|| Bytes::from_static(&[9; 16])),
                params: full_params(version),
            }),
            Request::Batch(Batch {
                batch_type: BatchType::Unlogged,
                children: vec![
                    BatchChild {
                        statement: BatchStatement::Query("INSERT INTO t (k) VALUES (?)".into()),
                        values: Values::Positional(vec![Value::Set(Bytes::from_static(&[1]))]),
                    },
                    BatchChild {
                        statement: BatchStatement::Prepared(Bytes::from_static(&[7; 16])),
                        values: Values::None,
                    },
                ],
                consistency: Consistency::Quorum,
                serial_consistency: Some(Consistency::Serial),
                default_timestamp: None,
                keyspace: v5.then(|| "ks".to_owned()),
                now_in_seconds: v5.then_some(42),
            }),
        ]
    }

    /// The same request as decoded, with only the timestamp set.
    fn with_timestamp(req: &Request, ts: i64) -> Request {
        let mut req = req.clone();
        match &mut req {
            Request::Query(q) => q.params.default_timestamp = Some(ts),
            Request::Execute(e) => e.params.default_timestamp = Some(ts),
            Request::Batch(b) => b.default_timestamp = Some(ts),
            _ => unreachable!("only statement requests are built here"),
        }
        req
    }

    #[test]
    fn injected_timestamp_decodes_and_nothing_else_changes() {
        for version in ProtocolVersion::ALL {
            for req in requests(version) {
                let body = encode(&req, version);
                let out = inject_default_timestamp(version, req.opcode(), &body, TS)
                    .unwrap()
                    .unwrap();
                assert_eq!(out.len(), body.len() + 8, "{version} {req:?}");
                let back = decode(req.opcode(), &out, version);
                assert_eq!(back, with_timestamp(&req, TS), "{version}");
                // Byte-identical to what the codec writes for the same request.
                assert_eq!(out, encode(&with_timestamp(&req, TS), version), "{version}");
            }
        }
    }

    #[test]
    fn both_bodies_at_once_equal_the_two_steps_apart() {
        for version in ProtocolVersion::ALL {
            let v5 = version >= ProtocolVersion::V5;
            for req in requests(version) {
                if req.opcode() != Opcode::Execute {
                    continue;
                }
                let body = encode(&req, version);
                for rmid in [None, v5.then_some(&[4u8; 5][..])] {
                    let target_id = [8u8; 20];
                    let (origin, target) =
                        inject_default_timestamp_both(version, &body, TS, &target_id, rmid)
                            .unwrap()
                            .unwrap();
                    let expected = inject_default_timestamp(version, Opcode::Execute, &body, TS)
                        .unwrap()
                        .unwrap();
                    assert_eq!(origin, expected, "{version}");
                    assert_eq!(
                        target,
                        super::super::replace_execute_id(version, &expected, &target_id, rmid)
                            .unwrap(),
                        "{version} {rmid:?}"
                    );
                }
                let stamped = encode(&with_timestamp(&req, 5), version);
                assert_eq!(
                    inject_default_timestamp_both(version, &stamped, TS, &[1], None).unwrap(),
                    None,
                    "the client's timestamp wins"
                );
            }
        }
        let v4 = ProtocolVersion::V4;
        let body = encode(&requests(v4)[2], v4);
        assert!(matches!(
            inject_default_timestamp_both(v4, &body, TS, &[1], Some(&[2])),
            Err(RewriteError::ResultMetadataIdBeforeV5 { .. })
        ));
    }

    #[test]
    fn a_client_timestamp_is_kept() {
        for version in ProtocolVersion::ALL {
            for req in requests(version) {
                let body = encode(&with_timestamp(&req, 5), version);
                assert_eq!(
                    inject_default_timestamp(version, req.opcode(), &body, TS).unwrap(),
                    None
                );
            }
        }
    }

    #[test]
    fn v4_flags_are_a_byte_and_v5_flags_an_int() {
        let req = Request::Query(Query::new("X", QueryParameters::default()));
        let v4 = inject_default_timestamp(
            ProtocolVersion::V4,
            Opcode::Query,
            &encode(&req, ProtocolVersion::V4),
            1,
        )
        .unwrap()
        .unwrap();
        // [long string] "X", consistency ONE, flags byte 0x20, [long] 1.
        assert_eq!(
            &v4[..],
            &[0, 0, 0, 1, b'X', 0, 1, 0x20, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        let v5 = inject_default_timestamp(
            ProtocolVersion::V5,
            Opcode::Query,
            &encode(&req, ProtocolVersion::V5),
            1,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            &v5[..],
            &[
                0, 0, 0, 1, b'X', 0, 1, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 1
            ]
        );
    }

    #[test]
    fn malformed_and_wrong_opcode_are_errors() {
        let req = Request::Query(Query::new("X", full_params(ProtocolVersion::V4)));
        let body = encode(&req, ProtocolVersion::V4);
        for cut in 0..body.len() {
            let err =
                inject_default_timestamp(ProtocolVersion::V4, Opcode::Query, &body.slice(..cut), 1)
                    .unwrap_err();
            assert!(
                matches!(
                    err,
                    RewriteError::Malformed {
                        opcode: Opcode::Query,
                        ..
                    }
                ),
                "{err}"
            );
        }
        let mut longer = body.to_vec();
        longer.push(0);
        let err = inject_default_timestamp(ProtocolVersion::V4, Opcode::Query, &longer.into(), 1)
            .unwrap_err();
        assert!(err.to_string().contains("1 bytes left over"), "{err}");
        assert!(matches!(
            inject_default_timestamp(ProtocolVersion::V4, Opcode::Prepare, &body, 1),
            Err(RewriteError::WrongOpcode {
                opcode: Opcode::Prepare,
                ..
            })
        ));
    }

    fn versions() -> impl Strategy<Value = ProtocolVersion> {
        prop_oneof![
            Just(ProtocolVersion::V3),
            Just(ProtocolVersion::V4),
            Just(ProtocolVersion::V5)
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(
            version in versions(),
            op in prop_oneof![Just(Opcode::Query), Just(Opcode::Execute), Just(Opcode::Batch)],
            data in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let body = Bytes::from(data);
            if let Ok(Some(out)) = inject_default_timestamp(version, op, &body, TS) {
                // Whatever it accepted, the codec reads back with the timestamp set.
                let back = Request::decode_body(op, &out, version);
                if Request::decode_body(op, &body, version).is_ok() {
                    prop_assert!(back.is_ok());
                }
            }
        }
    }
}
