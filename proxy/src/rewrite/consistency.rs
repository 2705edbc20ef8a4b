//! The consistency level of the secondary's copy of a write (`secondary_consistency`): a slow
//! or smaller target can take writes at `ONE` while the client's level still holds on the
//! primary.
//!
//! The `[short]` is overwritten in place (same length), after the QUERY text, the EXECUTE ids or
//! the BATCH children; `<serial_consistency>` and every other byte stay as they were.

use bytes::Bytes;
use ferry_cql::protocol::{Consistency, Opcode, ProtocolVersion};

use super::RewriteError;
use super::layout::{BatchLayout, ExecuteLayout, QueryLayout};

/// A QUERY, EXECUTE or BATCH body at `consistency`. `Ok(None)` when it already has that level.
pub fn set_consistency(
    version: ProtocolVersion,
    opcode: Opcode,
    body: &Bytes,
    consistency: Consistency,
) -> Result<Option<Bytes>, RewriteError> {
    let malformed = RewriteError::malformed(opcode, version);
    let at = match opcode {
        Opcode::Query => {
            QueryLayout::read(body, version)
                .map_err(malformed)?
                .params
                .consistency_at
        }
        Opcode::Execute => {
            ExecuteLayout::read(body, version)
                .map_err(malformed)?
                .params
                .consistency_at
        }
        Opcode::Batch => {
            BatchLayout::read(body, version)
                .map_err(malformed)?
                .consistency_at
        }
        other => {
            return Err(RewriteError::WrongOpcode {
                opcode: other,
                expected: "QUERY, EXECUTE, BATCH",
            });
        }
    };
    let new = (consistency as u16).to_be_bytes();
    // The layout walked the whole body, so the two bytes are there.
    if body.get(at..at + 2) == Some(&new[..]) {
        return Ok(None);
    }
    let mut out = body.to_vec();
    out[at..at + 2].copy_from_slice(&new);
    Ok(Some(Bytes::from(out)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use bytes::BytesMut;
    use ferry_cql::message::Request;
    use ferry_cql::request::{
        Batch, BatchChild, BatchStatement, BatchType, Execute, Query, QueryParameters, Value,
        Values,
    };
    use proptest::prelude::*;

    use super::*;

    fn encode(req: &Request, version: ProtocolVersion) -> Bytes {
        let mut out = BytesMut::new();
        req.encode_body(&mut out, version).unwrap();
        out.freeze()
    }

    /// Parameters with every optional field, so a misplaced splice would corrupt one of them.
    fn params(version: ProtocolVersion) -> QueryParameters {
        let v5 = version >= ProtocolVersion::V5;
        QueryParameters {
            consistency: Consistency::LocalQuorum,
            values: Values::Positional(vec![Value::Set(Bytes::from_static(&[0, 0, 0, 7]))]),
            skip_metadata: false,
            page_size: Some(100),
            paging_state: Some(Bytes::from_static(b"state")),
            serial_consistency: Some(Consistency::LocalSerial),
            default_timestamp: Some(42),
            keyspace: v5.then(|| "ks".to_owned()),
            now_in_seconds: v5.then_some(1_700_000_000),
        }
    }

    fn requests(version: ProtocolVersion) -> Vec<Request> {
        let v5 = version >= ProtocolVersion::V5;
        vec![
            Request::Query(Query::new(
                "UPDATE t SET v = ? WHERE k = 1",
                params(version),
            )),
            Request::Execute(Execute {
                id: Bytes::from_static(&[1, 2, 3]),
                result_metadata_id: v5.then(|| Bytes::from_static(&[9; 16])),
                params: params(version),
            }),
            Request::Batch(Batch {
                batch_type: BatchType::Counter,
                children: vec![
                    BatchChild {
                        statement: BatchStatement::Query("UPDATE t SET c = c + 1".into()),
                        values: Values::None,
                    },
                    BatchChild {
                        statement: BatchStatement::Prepared(Bytes::from_static(&[7; 16])),
                        values: Values::Positional(vec![Value::Null]),
                    },
                ],
                consistency: Consistency::LocalQuorum,
                serial_consistency: Some(Consistency::Serial),
                default_timestamp: Some(42),
                keyspace: v5.then(|| "ks".to_owned()),
                now_in_seconds: None,
            }),
        ]
    }

    fn with_consistency(req: &Request, c: Consistency) -> Request {
        let mut req = req.clone();
        match &mut req {
            Request::Query(q) => q.params.consistency = c,
            Request::Execute(e) => e.params.consistency = c,
            Request::Batch(b) => b.consistency = c,
            _ => unreachable!("only statement requests are built here"),
        }
        req
    }

    #[test]
    fn only_the_consistency_changes() {
        for version in ProtocolVersion::ALL {
            for req in requests(version) {
                let body = encode(&req, version);
                let out = set_consistency(version, req.opcode(), &body, Consistency::One)
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    out,
                    encode(&with_consistency(&req, Consistency::One), version),
                    "{version} {req:?}"
                );
                // Already at the level: nothing to do.
                assert_eq!(
                    set_consistency(version, req.opcode(), &body, Consistency::LocalQuorum)
                        .unwrap(),
                    None
                );
            }
        }
    }

    #[test]
    fn malformed_and_wrong_opcode_are_errors() {
        let version = ProtocolVersion::V4;
        let req = &requests(version)[2];
        let body = encode(req, version);
        for cut in 0..body.len() {
            let err = set_consistency(version, Opcode::Batch, &body.slice(..cut), Consistency::One)
                .unwrap_err();
            assert!(matches!(err, RewriteError::Malformed { .. }), "{err}");
        }
        assert!(matches!(
            set_consistency(version, Opcode::Prepare, &body, Consistency::One),
            Err(RewriteError::WrongOpcode { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(
            v5 in any::<bool>(),
            op in prop_oneof![Just(Opcode::Query), Just(Opcode::Execute), Just(Opcode::Batch)],
            data in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V4 };
            let body = Bytes::from(data);
            if let Ok(Some(out)) = set_consistency(version, op, &body, Consistency::Two) {
                prop_assert_eq!(out.len(), body.len());
            }
        }
    }
}
