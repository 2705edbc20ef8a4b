//! The rewrites against two ferry-sim clusters (origin and target): rewritten bodies are sent
//! byte for byte over a raw connection, and both clusters must accept them and store the same
//! generated values. Each test uses its own 127.0.9.x addresses.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_cql::envelope::{Envelope, EnvelopeDecoder};
use ferry_cql::message::{Request, Response};
use ferry_cql::protocol::{Consistency, Direction, Opcode, ProtocolVersion};
use ferry_cql::request::{
    Batch, BatchChild, BatchStatement, BatchType, Execute, Prepare, Query, QueryParameters,
    Startup, Value, Values,
};
use ferry_cql::response::ResultBody;
use ferry_cql::response::result::Prepared;
use ferry_cql::statement::classify;
use ferry_cql::types::CqlValue;
use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::functions::tests::{Fixed, NOW};
use super::*;

const V: ProtocolVersion = ProtocolVersion::V4;

/// One raw v4 connection that sends bodies exactly as given.
struct Raw {
    socket: TcpStream,
    buf: BytesMut,
    stream: i16,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        let mut raw = Self {
            socket: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            stream: 0,
        };
        let ready = raw
            .request(&Request::Startup(Startup::new("3.0.0", None)))
            .await;
        assert!(matches!(ready, Response::Ready(_)), "{ready:?}");
        raw
    }

    async fn send(&mut self, opcode: Opcode, body: Bytes) -> Response {
        self.stream += 1;
        let env = Envelope::new(V, Direction::Request, 0, self.stream, opcode, body);
        let mut out = Vec::new();
        env.write_to(&mut out);
        self.socket.write_all(&out).await.unwrap();
        let decoder = EnvelopeDecoder::default();
        loop {
            if let Some(env) = decoder.decode(&mut self.buf).unwrap() {
                assert_eq!(env.stream(), self.stream);
                return Response::from_envelope(&env).unwrap().1;
            }
            let n =
                tokio::time::timeout(Duration::from_secs(10), self.socket.read_buf(&mut self.buf))
                    .await
                    .expect("the sim answers within 10 s")
                    .unwrap();
            assert_ne!(n, 0, "the sim closed the connection");
        }
    }

    async fn request(&mut self, req: &Request) -> Response {
        let mut body = BytesMut::new();
        req.encode_body(&mut body, V).unwrap();
        self.send(req.opcode(), body.freeze()).await
    }

    async fn query(&mut self, cql: &str) -> Response {
        let r = self
            .request(&Request::Query(Query::new(cql, QueryParameters::default())))
            .await;
        assert!(!matches!(r, Response::Error(_)), "{cql}: {r:?}");
        r
    }

    /// The typed cells of the one row `cql` selects.
    async fn row(&mut self, cql: &str) -> Vec<Option<CqlValue>> {
        match self.query(cql).await {
            Response::Result(ResultBody::Rows(rows)) => {
                assert_eq!(rows.rows_count(), 1, "{cql}");
                rows.typed_row(0).unwrap()
            }
            other => panic!("{cql}: expected rows, got {other:?}"),
        }
    }
}

/// Origin and target, one node each, with the same schema, and a connection to each.
async fn clusters(octet: u8) -> ([Cluster<Executor>; 2], [Raw; 2]) {
    let mut clusters = Vec::new();
    let mut conns = Vec::new();
    for i in 0..2u8 {
        let config = ClusterConfig {
            listen: SocketAddr::from(([127, 0, 9, octet + i], 0)),
            ..ClusterConfig::default()
        };
        let cluster = Cluster::start(config, Arc::new(Executor::default()))
            .await
            .unwrap();
        let mut raw = Raw::connect(cluster.addresses()[0]).await;
        raw.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
            .await;
        raw.query("CREATE TABLE ks.t (k int PRIMARY KEY, id uuid, tu timeuuid, ts timestamp, d date, tm time, n int)")
            .await;
        clusters.push(cluster);
        conns.push(raw);
    }
    let [o, t] = <[_; 2]>::try_from(clusters).ok().unwrap();
    let [co, ct] = <[_; 2]>::try_from(conns).ok().unwrap();
    ([o, t], [co, ct])
}

const SELECT: &str = "SELECT id, tu, ts, d, tm, n FROM ks.t WHERE k = ";

/// The values [`Fixed`] generates at [`NOW`] for ts, d and tm.
fn fixed_time_values() -> [Option<CqlValue>; 3] {
    [
        Some(CqlValue::Timestamp(NOW / 1000)),
        Some(CqlValue::Date(19_675 + (1 << 31))),
        Some(CqlValue::Time(NOW % 86_400_000_000 * 1000)),
    ]
}

#[tokio::test]
async fn a_rewritten_query_stores_the_same_generated_values_on_both_clusters() {
    let (clusters, mut conns) = clusters(10).await;
    let cql = "INSERT INTO ks.t (k, id, tu, ts, d, tm, n) \
               VALUES (1, uuid(), now(), currentTimestamp(), current_date(), currentTime(), 5)";
    let mut body = BytesMut::new();
    Request::Query(Query::new(cql, QueryParameters::default()))
        .encode_body(&mut body, V)
        .unwrap();
    let body = body.freeze();
    let info = classify(statement_text(V, Opcode::Query, &body).unwrap());
    assert_eq!(info.nondeterministic.len(), 5);
    let body = rewrite_query_body(V, &body, &info.nondeterministic, &mut Fixed::new()).unwrap();
    let body = inject_default_timestamp(V, Opcode::Query, &body, NOW)
        .unwrap()
        .unwrap();

    let mut rows = Vec::new();
    for conn in &mut conns {
        let r = conn.send(Opcode::Query, body.clone()).await;
        assert!(matches!(r, Response::Result(ResultBody::Void)), "{r:?}");
        rows.push(conn.row(&format!("{SELECT}1")).await);
        let wt = conn.row("SELECT writetime(n) FROM ks.t WHERE k = 1").await;
        assert_eq!(wt, vec![Some(CqlValue::Bigint(NOW))]);
    }
    assert_eq!(rows[0], rows[1]);
    assert!(matches!(rows[0][0], Some(CqlValue::Uuid(_))));
    assert!(matches!(rows[0][1], Some(CqlValue::Timeuuid(_))));
    assert_eq!(rows[0][2..5], fixed_time_values());
    for c in &clusters {
        c.shutdown().await;
    }
}

fn prepared(r: Response) -> Prepared {
    match r {
        Response::Result(ResultBody::Prepared(p)) => p,
        other => panic!("expected PREPARED, got {other:?}"),
    }
}

fn int(n: i32) -> Value {
    Value::Set(Bytes::copy_from_slice(&n.to_be_bytes()))
}

#[tokio::test]
async fn a_rewritten_prepared_statement_stores_the_same_row_on_both_clusters() {
    let (clusters, mut conns) = clusters(20).await;
    let cql = "INSERT INTO ks.t (k, id, tu, ts, d, tm, n) \
               VALUES (?, uuid(), now(), currentTimestamp(), currentDate(), currentTime(), ?)";
    let mut body = BytesMut::new();
    Request::Prepare(Prepare::new(cql))
        .encode_body(&mut body, V)
        .unwrap();
    let body = body.freeze();
    let info = classify(statement_text(V, Opcode::Prepare, &body).unwrap());
    let (body, plan) = rewrite_prepare_body(V, &body, &info).unwrap();
    assert_eq!(
        plan.injected.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );

    // PREPARE on both; the client sees origin's answer without the injected variables.
    let mut ids = Vec::new();
    for conn in &mut conns {
        let r = conn.send(Opcode::Prepare, body.clone()).await;
        let Response::Result(ResultBody::Prepared(full)) = &r else {
            panic!("expected PREPARED, got {r:?}")
        };
        assert_eq!(full.metadata.columns.len(), 7);
        ids.push(full.id.clone());
        let mut raw = BytesMut::new();
        r.encode_body(&mut raw, V).unwrap();
        let stripped = strip_injected_variables(V, &raw.freeze(), &plan).unwrap();
        let client_view = prepared(Response::decode_body(Opcode::Result, &stripped, V).unwrap());
        let names: Vec<_> = client_view
            .metadata
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["k", "n"]);
        assert_eq!(client_view.metadata.pk_indexes, vec![0]);
    }

    // The client executes with its own two values; the proxy adds the generated ones once and
    // sends the same values to target under target's id.
    let execute = Execute {
        id: ids[0].clone(),
        result_metadata_id: None,
        params: QueryParameters {
            values: Values::Positional(vec![int(2), int(7)]),
            ..QueryParameters::default()
        },
    };
    let mut client_body = BytesMut::new();
    Request::Execute(execute)
        .encode_body(&mut client_body, V)
        .unwrap();
    // One source for the whole session, as the proxy has: every execution draws new randomness.
    let mut source = Fixed::new();
    let origin_body =
        insert_generated_values(V, &client_body.freeze(), &plan, &mut source).unwrap();
    let target_body = replace_execute_id(V, &origin_body, &ids[1], None).unwrap();

    // A batch: the same prepared statement (k = 3) and a text child (k = 4).
    let batch = Batch {
        batch_type: BatchType::Logged,
        children: vec![
            BatchChild {
                statement: BatchStatement::Prepared(ids[0].clone()),
                values: Values::Positional(vec![int(3), int(8)]),
            },
            BatchChild {
                statement: BatchStatement::Query(
                    "INSERT INTO ks.t (k, id, ts, d, tm) VALUES (4, uuid(), currentTimestamp(), currentDate(), currentTime())".into(),
                ),
                values: Values::None,
            },
        ],
        consistency: Consistency::One,
        serial_consistency: None,
        default_timestamp: None,
        keyspace: None,
        now_in_seconds: None,
    };
    let mut batch_body = BytesMut::new();
    Request::Batch(batch)
        .encode_body(&mut batch_body, V)
        .unwrap();
    let origin_batch = rewrite_batch(
        V,
        &batch_body.freeze(),
        |id| (id == &ids[0][..]).then_some(&plan),
        &mut source,
    )
    .unwrap()
    .unwrap();
    let origin_batch = inject_default_timestamp(V, Opcode::Batch, &origin_batch, NOW)
        .unwrap()
        .unwrap();
    let target_batch = replace_batch_ids(V, &origin_batch, |id| {
        (id == &ids[0][..]).then(|| ids[1].clone())
    })
    .unwrap();

    let bodies = [(origin_body, origin_batch), (target_body, target_batch)];
    let mut rows = Vec::new();
    for (conn, (execute, batch)) in conns.iter_mut().zip(bodies) {
        let r = conn.send(Opcode::Execute, execute).await;
        assert!(matches!(r, Response::Result(ResultBody::Void)), "{r:?}");
        let r = conn.send(Opcode::Batch, batch).await;
        assert!(matches!(r, Response::Result(ResultBody::Void)), "{r:?}");
        let mut all = Vec::new();
        for k in 2..=4 {
            all.push(conn.row(&format!("{SELECT}{k}")).await);
        }
        rows.push(all);
    }
    assert_eq!(rows[0], rows[1], "origin and target rows");
    let [executed, in_batch, text_child] = <[_; 3]>::try_from(rows.remove(0)).ok().unwrap();
    assert_eq!(executed[5], Some(CqlValue::Int(7)));
    assert_eq!(executed[2..5], fixed_time_values());
    assert_eq!(in_batch[5], Some(CqlValue::Int(8)));
    assert_eq!(in_batch[2..5], fixed_time_values());
    assert_eq!(text_child[2..5], fixed_time_values());
    // Generated uuids are distinct per row.
    assert_ne!(executed[0], in_batch[0]);
    let Some(CqlValue::Timeuuid(tu)) = executed[1] else {
        panic!("a timeuuid, got {:?}", executed[1])
    };
    assert_eq!(tu[6] >> 4, 1, "a version 1 timeuuid");
    for c in &clusters {
        c.shutdown().await;
    }
}
