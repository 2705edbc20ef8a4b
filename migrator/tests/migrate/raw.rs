//! Tables of regular single-cell columns, copied from the scan's raw bytes, keep every
//! writetime, TTL and marker rule; scan pages go first to a replica of their first token.

use std::sync::Arc;
use std::time::Duration;

use ferry_cql::protocol::Opcode;
use ferry_migrator::{Phase, RangeCount};
use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig, FaultAction, RequestMatcher};

use crate::harness::{Env, assert_same_cells, env, markers, session};

#[tokio::test]
async fn single_cell_tables_keep_writetimes_ttls_and_markers() {
    let env = env(84).await;
    env.origin_cql(&[
        "CREATE KEYSPACE rw WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE rw.t (k int, c int, a text, b int, f frozen<list<int>>, PRIMARY KEY (k, c))",
        // One group: the INSERT carries the marker.
        "INSERT INTO rw.t (k, c, a, b, f) VALUES (1, 1, 'x', 1, [1, 2]) USING TIMESTAMP 1000",
        // A second group with a TTL in the same row.
        "UPDATE rw.t USING TIMESTAMP 2000 AND TTL 5000 SET b = 2 WHERE k = 1 AND c = 1",
        // Nulls are left unset.
        "INSERT INTO rw.t (k, c, a) VALUES (1, 2, 'y') USING TIMESTAMP 3000",
        // Key only: the marker gets the floor.
        "INSERT INTO rw.t (k, c) VALUES (2, 1) USING TIMESTAMP 4000",
        // No marker on origin: target's is the oldest cell's.
        "UPDATE rw.t USING TIMESTAMP 500 SET a = 'old' WHERE k = 3 AND c = 1",
        // Two cells in the newer group, one in the older.
        "UPDATE rw.t USING TIMESTAMP 700 SET a = 'p', f = [3] WHERE k = 3 AND c = 2",
        "UPDATE rw.t USING TIMESTAMP 600 SET b = 6 WHERE k = 3 AND c = 2",
    ])
    .await;
    // Enough partitions and rows for several batches.
    for k in 10..40 {
        for c in 0..4 {
            env.origin_cql(&[&format!(
                "INSERT INTO rw.t (k, c, a, b) VALUES ({k}, {c}, 'v{k}-{c}', {c}) USING TIMESTAMP {}",
                10_000 + k * 10 + c
            )])
            .await;
        }
    }
    let mut spec = env.spec(&["rw.t"]);
    spec.floor_timestamp = 77;
    spec.page_size = 7;
    let (report, _) = env.run(spec).await;
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");
    assert_eq!(report.tables[0].rows, 5 + 30 * 4);
    assert_same_cells(&env, "rw", "t");
    let marker = |k: i32, c: i32| {
        markers(&env.target, "rw", "t")
            .into_iter()
            .find(|(m, _)| {
                m.pk[0].as_ref() == k.to_be_bytes()
                    && m.ck
                        .as_ref()
                        .is_some_and(|ck| ck[0].as_ref() == c.to_be_bytes())
            })
            .map(|(m, ttl)| (m.writetime, ttl))
    };
    assert_eq!(marker(1, 1), Some((1000, None)));
    assert_eq!(marker(1, 2), Some((3000, None)));
    assert_eq!(marker(2, 1), Some((77, None)));
    assert_eq!(marker(3, 1), Some((500, None)));
    assert_eq!(marker(3, 2), Some((600, None)));
    assert_eq!(marker(25, 3), Some((10_253, None)));
    env.stop().await;
}

/// Origin with three nodes on 127.0.`net`.11–13 (one replica per token), target on .2.
pub(crate) async fn three_node_env(net: u8) -> Env {
    let config = ClusterConfig {
        nodes: 3,
        listen: format!("127.0.{net}.11:0").parse().unwrap(),
        ..ClusterConfig::default()
    };
    let origin = Cluster::start(config, Arc::new(Executor::default()))
        .await
        .unwrap();
    let config = ClusterConfig {
        nodes: 1,
        listen: format!("127.0.{net}.2:0").parse().unwrap(),
        ..ClusterConfig::default()
    };
    let target = Cluster::start(config, Arc::new(Executor::default()))
        .await
        .unwrap();
    let o = session(origin.addresses()[0]).await;
    let t = session(target.addresses()[0]).await;
    let job_dir =
        std::env::temp_dir().join(format!("ferry-migrator-test-{}-{net}", std::process::id()));
    let _ = std::fs::remove_dir_all(&job_dir);
    Env {
        origin,
        target,
        o,
        t,
        job_dir,
    }
}

/// The node owning `token`: the one with the first vnode token at or after it, wrapping.
pub(crate) fn owner(c: &Cluster<Executor>, token: i64) -> usize {
    let ring: Vec<(i64, usize)> = {
        let mut r: Vec<(i64, usize)> = c
            .topology()
            .nodes
            .iter()
            .flat_map(|n| n.tokens.iter().map(move |t| (*t, n.id)))
            .collect();
        r.sort();
        r
    };
    ring.iter()
        .find(|(t, _)| *t >= token)
        .or(ring.first())
        .map(|(_, id)| *id)
        .unwrap()
}

#[tokio::test]
async fn scan_pages_go_to_a_replica_of_their_first_token() {
    let env = three_node_env(85).await;
    let (first, pk, pk_owner) = partition_off_first(&env);
    env.origin_cql(&[
        "CREATE KEYSPACE rt WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE rt.t (k int, c int, v text, PRIMARY KEY (k, c))",
    ])
    .await;
    for c in 0..50 {
        env.origin_cql(&[&format!(
            "INSERT INTO rt.t (k, c, v) VALUES ({pk}, {c}, 'v{c}') USING TIMESTAMP {}",
            100 + c
        )])
        .await;
    }
    count_scan_pages(&env);
    let mut spec = env.spec(&["rt.t"]);
    spec.ranges = RangeCount::Fixed(1);
    spec.scan_parallelism = 1;
    spec.page_size = 10;
    let (report, _) = env.run(spec).await;
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");
    assert_same_cells(&env, "rt", "t");
    assert_pages_routed(&env, first, pk_owner, "scan pages per node");
    env.stop().await;
}

/// A large activation budget for [`count_scan_pages`]'s rules.
const SCAN_BUDGET: u64 = 1_000_000;

/// Counts each origin node's scan requests: a delay of nothing on every scan page, with a
/// large activation budget.
pub(crate) fn count_scan_pages(env: &Env) {
    for node in env.origin.nodes() {
        node.faults().add_times(
            RequestMatcher::any()
                .opcode(Opcode::Execute)
                .text_contains("token(\"k\") >"),
            FaultAction::Delay(Duration::ZERO),
            Some(SCAN_BUDGET),
        );
    }
}

/// Checks, after [`count_scan_pages`], that a one-range scan of a single 50-row partition
/// (pages of 10) sent its first page to the owner of the ring's first token (`first`) and
/// every later page to the partition's owner.
pub(crate) fn assert_pages_routed(env: &Env, first: usize, pk_owner: usize, what: &str) {
    let served: Vec<u64> = env
        .origin
        .nodes()
        .iter()
        .map(|n| {
            n.faults()
                .rules()
                .first()
                .and_then(|r| r.remaining)
                .map_or(SCAN_BUDGET, |left| SCAN_BUDGET - left)
        })
        .collect();
    let pages: u64 = served.iter().sum();
    // At least 5 pages; the first starts at the ring's first token, every later one inside
    // the partition.
    assert!(pages >= 5, "{what}: {served:?}");
    let mut expected = vec![0; served.len()];
    expected[first] = 1;
    expected[pk_owner] = pages - 1;
    assert_eq!(served, expected, "{what}; partition on node {pk_owner}");
}

/// An int partition key whose owner is not the owner of the ring's first token, so a scan's
/// first page and the following ones have different replicas: (first token's owner, key,
/// key's owner).
pub(crate) fn partition_off_first(env: &Env) -> (usize, i32, usize) {
    let first = owner(&env.origin, i64::MIN + 1);
    let (pk, pk_owner) = (0..100)
        .map(|k: i32| {
            let token = ferry_sim::murmur3::token(&k.to_be_bytes());
            (k, owner(&env.origin, token))
        })
        .find(|(_, o)| *o != first)
        .expect("100 keys on 3 nodes");
    (first, pk, pk_owner)
}
