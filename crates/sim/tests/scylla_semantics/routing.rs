//! Token-aware routing on three nodes: prepared metadata names the partition key markers, the
//! driver's token equals the server's `token()`, and each request is served by the node that
//! owns its token. Also the LZ4-compressed connection.

use std::collections::{BTreeMap, BTreeSet};

use scylla::client::session::Session;
use scylla::frame::Compression;
use scylla::statement::Statement;

use super::{connect, create_keyspace, rows, run, session_in};

/// Each vnode token and the host id of the node that owns it (from the system tables, not from
/// the driver, so the check is independent of the driver's own ring).
async fn owners(s: &Session) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    for table in ["system.local", "system.peers"] {
        // One node's answer covers local + peers; pin both queries to the same node.
        let mut q = Statement::new(format!("SELECT host_id, tokens FROM {table}"));
        q.set_load_balancing_policy(Some(
            scylla::policies::load_balancing::SingleTargetLoadBalancingPolicy::new(
                scylla::policies::load_balancing::NodeIdentifier::Node(
                    s.get_cluster_state().get_nodes_info()[0].clone(),
                ),
                None,
            ),
        ));
        let res = s
            .query_unpaged(q, ())
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        for row in res
            .rows::<(scylla::value::CqlValue, BTreeSet<String>)>()
            .unwrap()
        {
            let (host, tokens) = row.unwrap();
            let host = format!("{:?}", host.as_uuid().unwrap());
            for t in tokens {
                out.insert(t.parse().unwrap(), host.clone());
            }
        }
    }
    out
}

/// The owner of `token`: the node of the first vnode token at or after it, wrapping round.
fn owner(ring: &BTreeMap<i64, String>, token: i64) -> &str {
    ring.range(token..)
        .next()
        .or_else(|| ring.iter().next())
        .map(|(_, h)| h.as_str())
        .unwrap()
}

#[tokio::test]
async fn token_aware_statements_reach_the_owning_node() {
    let s = session_in("rt_aware").await;
    run(
        &s,
        "CREATE TABLE t (a text, b int, c int, v text, PRIMARY KEY ((a, b), c))",
    )
    .await;
    // Markers in an order different from the key's: the metadata maps each to its key part.
    let insert = s
        .prepare("INSERT INTO t (c, b, v, a) VALUES (?, ?, ?, ?)")
        .await
        .unwrap();
    let pk: Vec<(u16, u16)> = insert
        .get_variable_pk_indexes()
        .iter()
        .map(|i| (i.index, i.sequence))
        .collect();
    assert_eq!(
        pk,
        [(1, 1), (3, 0)],
        "marker b is key part 1, marker a part 0"
    );
    assert!(insert.is_token_aware());
    let select = s
        .prepare("SELECT token(a, b), v FROM t WHERE b = ? AND a = ? AND c = 0")
        .await
        .unwrap();
    assert!(select.is_token_aware());

    let ring = owners(&s).await;
    assert_eq!(ring.len(), 48);
    let mut served = BTreeSet::new();
    for i in 0..60 {
        let a = format!("key-{i}");
        let values = (0, i, "v", a.as_str());
        let driver_token = insert.calculate_token(&values).unwrap().unwrap().value();
        let res = s.execute_unpaged(&insert, values).await.unwrap();
        let coordinator = format!("{:?}", res.request_coordinator().node().host_id);
        assert_eq!(coordinator, owner(&ring, driver_token), "insert of {a}");

        let res = s.execute_unpaged(&select, (i, a.as_str())).await.unwrap();
        let coordinator = format!("{:?}", res.request_coordinator().node().host_id);
        let (server_token, v): (i64, String) =
            res.into_rows_result().unwrap().single_row().unwrap();
        assert_eq!(
            server_token, driver_token,
            "driver and server tokens of {a}"
        );
        assert_eq!(v, "v");
        assert_eq!(coordinator, owner(&ring, server_token), "select of {a}");
        served.insert(coordinator);
    }
    assert_eq!(served.len(), 3, "keys spread over every node");
}

#[tokio::test]
async fn lz4_compressed_session() {
    let s = connect(Some(Compression::Lz4)).await;
    create_keyspace(&s, "rt_lz4").await;
    run(&s, "CREATE TABLE t (k int PRIMARY KEY, body text)").await;
    // Large and repetitive, so the frames really are compressed.
    let body = "ferry ".repeat(20_000);
    let ins = s
        .prepare("INSERT INTO t (k, body) VALUES (?, ?)")
        .await
        .unwrap();
    for k in 0..20 {
        s.execute_unpaged(&ins, (k, body.as_str())).await.unwrap();
    }
    let got: Vec<(i32, String)> = rows(&s, "SELECT k, body FROM t", ()).await;
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|(_, b)| *b == body));
}
