//! Prepared ids in EXECUTE and BATCH. The client holds origin's ids; target assigned its own, so
//! before a request goes to target each id is swapped by splicing: the new `[short bytes]` and
//! the untouched rest of the body.

use bytes::{BufMut, Bytes, BytesMut};
use ferry_cql::protocol::{Opcode, ProtocolVersion};
use ferry_cql::wire;

use super::RewriteError;
use super::layout::{BatchLayout, ExecuteLayout, Reader};

/// The prepared id of an EXECUTE body and, in v5, the result metadata id the client holds.
/// Reads only the ids (zero-copy), so it is cheap enough for every EXECUTE.
pub fn execute_id(
    version: ProtocolVersion,
    body: &[u8],
) -> Result<(&[u8], Option<&[u8]>), RewriteError> {
    let mut r = Reader::new(body);
    let (id, rmid) = ExecuteLayout::read_ids(&mut r, version)
        .map_err(RewriteError::malformed(Opcode::Execute, version))?;
    Ok((&body[id], rmid.map(|m| &body[m])))
}

/// An EXECUTE body with `new_id` in place of the client's id and, in v5, `new_result_metadata_id`
/// in place of the client's result metadata id (`None` keeps the client's).
pub fn replace_execute_id(
    version: ProtocolVersion,
    body: &Bytes,
    new_id: &[u8],
    new_result_metadata_id: Option<&[u8]>,
) -> Result<Bytes, RewriteError> {
    if new_result_metadata_id.is_some() && version < ProtocolVersion::V5 {
        return Err(RewriteError::ResultMetadataIdBeforeV5 { version });
    }
    let mut r = Reader::new(body);
    let (_, rmid) = ExecuteLayout::read_ids(&mut r, version)
        .map_err(RewriteError::malformed(Opcode::Execute, version))?;
    let rest = r.pos();
    let encode = RewriteError::encode(Opcode::Execute);
    let mut out = BytesMut::with_capacity(body.len() + new_id.len());
    wire::write_short_bytes(&mut out, new_id, "prepared id").map_err(encode)?;
    if let Some(rmid) = rmid {
        let rmid = new_result_metadata_id.unwrap_or(&body[rmid]);
        wire::write_short_bytes(&mut out, rmid, "result metadata id")
            .map_err(RewriteError::encode(Opcode::Execute))?;
    }
    out.put_slice(&body[rest..]);
    Ok(out.freeze())
}

/// The prepared ids of a BATCH's children, as `(child index, id)`, in order. Query-string
/// children are skipped.
pub fn batch_prepared_ids(
    version: ProtocolVersion,
    body: &[u8],
) -> Result<Vec<(u16, &[u8])>, RewriteError> {
    let layout = BatchLayout::read(body, version)
        .map_err(RewriteError::malformed(Opcode::Batch, version))?;
    Ok(layout
        .children
        .iter()
        .enumerate()
        .filter(|(_, c)| c.prepared)
        // The count was a `[short]`, so every index fits.
        .map(|(i, c)| (i as u16, &body[c.statement.clone()]))
        .collect())
}

/// [`replace_batch_ids`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchIdError {
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    /// The mapping knows no replacement for this child's id: the caller answers UNPREPARED
    /// with it so the driver prepares the statement again.
    #[error("batch child {child} has prepared id {id:02x?}, which has no replacement")]
    UnknownId { child: u16, id: Bytes },
}

/// A BATCH body with every child's prepared id replaced by `map(id)`. Stops at the first id
/// `map` does not know. Query-string children and everything else are copied untouched.
pub fn replace_batch_ids(
    version: ProtocolVersion,
    body: &Bytes,
    mut map: impl FnMut(&[u8]) -> Option<Bytes>,
) -> Result<Bytes, BatchIdError> {
    let layout = BatchLayout::read(body, version)
        .map_err(RewriteError::malformed(Opcode::Batch, version))?;
    let mut out = BytesMut::with_capacity(body.len());
    let mut copied = 0;
    for (i, child) in layout.children.iter().enumerate() {
        if !child.prepared {
            continue;
        }
        let old = &body[child.statement.clone()];
        let new = map(old).ok_or_else(|| BatchIdError::UnknownId {
            child: i as u16,
            id: body.slice(child.statement.clone()),
        })?;
        // The `[short]` length sits right before the id's bytes.
        out.put_slice(&body[copied..child.statement.start - 2]);
        wire::write_short_bytes(&mut out, &new, "prepared id")
            .map_err(RewriteError::encode(Opcode::Batch))?;
        copied = child.statement.end;
    }
    out.put_slice(&body[copied..]);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use std::collections::HashMap;

    use ferry_cql::message::Request;
    use ferry_cql::protocol::Consistency;
    use ferry_cql::request::{
        Batch, BatchChild, BatchStatement, BatchType, Execute, QueryParameters, Value, Values,
    };
    use proptest::prelude::*;

    use super::*;

    fn encode(req: &Request, version: ProtocolVersion) -> Bytes {
        let mut out = BytesMut::new();
        req.encode_body(&mut out, version).unwrap();
        out.freeze()
    }

    fn execute(version: ProtocolVersion) -> Execute {
        Execute {
            id: Bytes::from_static(&[0xaa; 16]),
            result_metadata_id: (version >= ProtocolVersion::V5)
                .then(|| Bytes::from_static(&[0xbb; 16])),
            params: QueryParameters {
                values: Values::Positional(vec![Value::Set(Bytes::from_static(b"v"))]),
                default_timestamp: Some(3),
                ..QueryParameters::default()
            },
        }
    }

    #[test]
    fn execute_ids_are_peeked_and_replaced() {
        for version in ProtocolVersion::ALL {
            let e = execute(version);
            let body = encode(&Request::Execute(e.clone()), version);
            let (id, rmid) = execute_id(version, &body).unwrap();
            assert_eq!(id, &e.id[..]);
            assert_eq!(rmid, e.result_metadata_id.as_deref());

            // A longer id shifts the rest; the parameters decode unchanged.
            let out = replace_execute_id(version, &body, b"target-id-0123456789", None).unwrap();
            let Request::Execute(back) =
                Request::decode_body(Opcode::Execute, &out, version).unwrap()
            else {
                unreachable!("decoded an EXECUTE body")
            };
            assert_eq!(&back.id[..], b"target-id-0123456789");
            assert_eq!(back.result_metadata_id, e.result_metadata_id);
            assert_eq!(back.params, e.params);
        }
        let body = encode(
            &Request::Execute(execute(ProtocolVersion::V5)),
            ProtocolVersion::V5,
        );
        let out = replace_execute_id(ProtocolVersion::V5, &body, b"i", Some(b"m")).unwrap();
        assert_eq!(
            execute_id(ProtocolVersion::V5, &out).unwrap(),
            (&b"i"[..], Some(&b"m"[..]))
        );
        let body = encode(
            &Request::Execute(execute(ProtocolVersion::V4)),
            ProtocolVersion::V4,
        );
        assert_eq!(
            replace_execute_id(ProtocolVersion::V4, &body, b"i", Some(b"m")),
            Err(RewriteError::ResultMetadataIdBeforeV5 {
                version: ProtocolVersion::V4
            })
        );
    }

    fn batch(version: ProtocolVersion) -> Batch {
        Batch {
            batch_type: BatchType::Logged,
            children: vec![
                BatchChild {
                    statement: BatchStatement::Prepared(Bytes::from_static(b"origin-1")),
                    values: Values::Positional(vec![Value::Null]),
                },
                BatchChild {
                    statement: BatchStatement::Query("INSERT INTO t (k) VALUES (1)".into()),
                    values: Values::None,
                },
                BatchChild {
                    statement: BatchStatement::Prepared(Bytes::from_static(b"origin-2")),
                    values: Values::None,
                },
            ],
            consistency: Consistency::One,
            serial_consistency: None,
            default_timestamp: Some(9),
            keyspace: (version >= ProtocolVersion::V5).then(|| "ks".to_owned()),
            now_in_seconds: None,
        }
    }

    #[test]
    fn batch_ids_are_listed_and_replaced() {
        let map: HashMap<&[u8], Bytes> = HashMap::from([
            (&b"origin-1"[..], Bytes::from_static(b"t1")),
            (&b"origin-2"[..], Bytes::from_static(b"target-two")),
        ]);
        for version in ProtocolVersion::ALL {
            let b = batch(version);
            let body = encode(&Request::Batch(b.clone()), version);
            assert_eq!(
                batch_prepared_ids(version, &body).unwrap(),
                vec![(0, &b"origin-1"[..]), (2, &b"origin-2"[..])]
            );
            let out = replace_batch_ids(version, &body, |id| map.get(id).cloned()).unwrap();
            let mut expected = b.clone();
            expected.children[0].statement = BatchStatement::Prepared(Bytes::from_static(b"t1"));
            expected.children[2].statement =
                BatchStatement::Prepared(Bytes::from_static(b"target-two"));
            assert_eq!(out, encode(&Request::Batch(expected), version));
        }
    }

    #[test]
    fn an_unknown_batch_id_is_named() {
        let version = ProtocolVersion::V4;
        let body = encode(&Request::Batch(batch(version)), version);
        let err = replace_batch_ids(version, &body, |id| {
            (id == b"origin-1").then(|| Bytes::from_static(b"t1"))
        })
        .unwrap_err();
        assert_eq!(
            err,
            BatchIdError::UnknownId {
                child: 2,
                id: Bytes::from_static(b"origin-2")
            }
        );
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let version = ProtocolVersion::V5;
        let body = encode(&Request::Execute(execute(version)), version);
        for cut in 0..34 {
            assert!(execute_id(version, &body[..cut]).is_err(), "cut at {cut}");
        }
        let body = encode(&Request::Batch(batch(version)), version);
        for cut in 0..body.len() {
            let cut = body.slice(..cut);
            assert!(matches!(
                replace_batch_ids(version, &cut, |_| Some(Bytes::new())),
                Err(BatchIdError::Rewrite(RewriteError::Malformed { .. }))
            ));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(
            v5 in any::<bool>(),
            data in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V4 };
            let body = Bytes::from(data);
            let _ = execute_id(version, &body);
            let _ = replace_execute_id(version, &body, b"x", None);
            let _ = batch_prepared_ids(version, &body);
            let _ = replace_batch_ids(version, &body, |id| Some(Bytes::copy_from_slice(id)));
        }
    }
}
