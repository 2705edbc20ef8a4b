//! Prepared-id mapping when a cache forgets: a cluster's (cleared, as after a restart) and the
//! proxy's own (evicted). A cluster that forgot gets the statement prepared again by the proxy
//! and its half of the request resent, so every write lands on both exactly once; an evicted
//! proxy entry gets UNPREPARED and the driver re-prepares.

use std::net::SocketAddr;
use std::time::Duration;

use ferry_cql::message::Response;
use ferry_proxy::settings::{ClusterId, ReadMode, TargetFailurePolicy};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::Counter;

use crate::admin::http;
use crate::failures::{KEYSPACE, create_table, keys};
use crate::harness::{env_with, scylla};
use crate::raw::Raw;

/// Target forgets its prepared statements: the proxy prepares them there again and every later
/// write lands on both — in `strict`, and in `best-effort`, where swallowing the UNPREPARED
/// would leave every later execution missing on target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executes_survive_the_target_forgetting_its_prepared_statements() {
    for (net, policy) in [
        (48u8, TargetFailurePolicy::Strict),
        (49, TargetFailurePolicy::BestEffort),
    ] {
        let env = env_with(net, |c| c.target_failure_policy = policy).await;
        let client = scylla(env.proxy.local_addr()).await;
        create_table(&client).await;
        let insert = client
            .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
            .await
            .unwrap();
        client
            .execute_unpaged(&insert, (1i32, "one"))
            .await
            .unwrap();
        env.target.handler().clear_prepared(0);
        client
            .execute_unpaged(&insert, (2i32, "two"))
            .await
            .unwrap();
        client
            .execute_unpaged(&insert, (3i32, "three"))
            .await
            .unwrap();
        assert_eq!(
            keys(env.origin.addresses()[0]).await,
            [1, 2, 3],
            "{policy:?}"
        );
        assert_eq!(
            keys(env.target.addresses()[0]).await,
            [1, 2, 3],
            "{policy:?}"
        );
        drop(client);
        env.stop().await;
    }
}

/// A proxy cache of one entry: every other EXECUTE names an evicted statement, gets the proxy's
/// own UNPREPARED, and the driver re-prepares. The schema is made on a raw connection and the
/// driver skips schema metadata: the driver's own metadata statements would evict each other
/// in a one-entry cache, as they would on a node with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executes_survive_the_proxy_evicting_its_entries() {
    let env = env_with(50, |c| c.prepared_cache_capacity = 1).await;
    let mut raw = Raw::connect(env.proxy.local_addr()).await;
    for ddl in [KEYSPACE, "CREATE TABLE ks.t (k int PRIMARY KEY, v text)"] {
        assert!(matches!(raw.query(ddl).await, Response::Result(_)), "{ddl}");
    }
    let client = SessionBuilder::new()
        .known_node_addr(env.proxy.local_addr())
        .fetch_schema_metadata(false)
        .build()
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    let update = client
        .prepare("UPDATE ks.t SET v = ? WHERE k = ?")
        .await
        .unwrap();
    for k in 0..4i32 {
        client
            .execute_unpaged(&insert, (k, "inserted"))
            .await
            .unwrap();
        client
            .execute_unpaged(&update, ("updated", k + 10))
            .await
            .unwrap();
    }
    let expected = [0, 1, 2, 3, 10, 11, 12, 13];
    assert_eq!(keys(env.origin.addresses()[0]).await, expected);
    assert_eq!(keys(env.target.addresses()[0]).await, expected);
    drop(client);
    env.stop().await;
}

/// The counter and list tables the re-prepare tests write to, made through the proxy.
async fn counters_and_lists(client: &Session) {
    client.query_unpaged(KEYSPACE, &[]).await.unwrap();
    for ddl in [
        "CREATE TABLE ks.c (k int PRIMARY KEY, n counter)",
        "CREATE TABLE ks.l (k int PRIMARY KEY, items list<int>)",
    ] {
        client.query_unpaged(ddl, &[]).await.unwrap();
    }
}

/// Counter `k` and list `k` as one cluster holds them, read directly.
async fn counter_and_list(addr: SocketAddr, k: i32) -> (i64, Vec<i32>) {
    let session = scylla(addr).await;
    let n = session
        .query_unpaged("SELECT n FROM ks.c WHERE k = ?", (k,))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .maybe_first_row::<(Counter,)>()
        .unwrap()
        .map_or(0, |(c,)| c.0);
    let items = session
        .query_unpaged("SELECT items FROM ks.l WHERE k = ?", (k,))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .maybe_first_row::<(Option<Vec<i32>>,)>()
        .unwrap()
        .and_then(|(l,)| l)
        .unwrap_or_default();
    (n, items)
}

/// A counter increment, a list append and a batch of two prepared appends, each executed once
/// with `round`: the writes that must never be applied twice.
struct Writes {
    increment: PreparedStatement,
    append: PreparedStatement,
    batch: Batch,
}

impl Writes {
    async fn prepare(client: &Session) -> Self {
        let increment = client
            .prepare("UPDATE ks.c SET n = n + 1 WHERE k = ?")
            .await
            .unwrap();
        let append = client
            .prepare("UPDATE ks.l SET items = items + ? WHERE k = ?")
            .await
            .unwrap();
        let mut batch = Batch::new(BatchType::Logged);
        batch.append_statement(append.clone());
        batch.append_statement(append.clone());
        Self {
            increment,
            append,
            batch,
        }
    }

    async fn run(&self, client: &Session, round: i32) -> Result<(), ExecutionError> {
        client.execute_unpaged(&self.increment, (1i32,)).await?;
        client
            .execute_unpaged(&self.append, (vec![round], 1i32))
            .await?;
        client
            .batch(&self.batch, ((vec![round], 2i32), (vec![round], 3i32)))
            .await?;
        Ok(())
    }
}

/// One cluster forgets its prepared statements between two rounds of non-idempotent writes.
/// The proxy prepares them again on that cluster alone and resends its half, so each write is
/// applied exactly once on each cluster — whichever cluster forgot, in `strict` and in
/// `best-effort`. (Passing the UNPREPARED on made the driver retry, and the cluster that had
/// applied the write applied it twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_statement_is_applied_exactly_once_on_each_cluster() {
    for policy in [TargetFailurePolicy::Strict, TargetFailurePolicy::BestEffort] {
        for forgets in [ClusterId::Target, ClusterId::Origin] {
            let env = env_with(65, |c| c.target_failure_policy = policy).await;
            let client = scylla(env.proxy.local_addr()).await;
            counters_and_lists(&client).await;
            let writes = Writes::prepare(&client).await;
            writes.run(&client, 1).await.unwrap();
            match forgets {
                ClusterId::Origin => env.origin.handler().clear_prepared(0),
                ClusterId::Target => env.target.handler().clear_prepared(0),
            }
            writes.run(&client, 2).await.unwrap();
            for (cluster, addr) in [
                ("origin", env.origin.addresses()[0]),
                ("target", env.target.addresses()[0]),
            ] {
                let what = format!("{policy:?}, {forgets} forgot, on {cluster}");
                assert_eq!(counter_and_list(addr, 1).await, (2, vec![1, 2]), "{what}");
                for k in [2, 3] {
                    assert_eq!(counter_and_list(addr, k).await.1, [1, 2], "{what}");
                }
            }
            assert_eq!(env.proxy.repairs().pending(), 0, "{policy:?}");
            let (_, metrics) = http(env.proxy.admin_addr(), "GET", "/metrics", None, "").await;
            assert!(
                !metrics.contains("ferry_proxy_failed_writes_total{failed_on=\"target\"} 1")
                    && !metrics.contains("ferry_proxy_failed_writes_total{failed_on=\"origin\"} 1"),
                "{metrics}"
            );
            drop(client);
            env.stop().await;
        }
    }
}

/// When preparing again fails (target lost the table too), that is the target's failure of the
/// write, and never an UNPREPARED the driver would retry: `strict` answers the target's error,
/// `best-effort` acknowledges and records the write for repair. Origin applied it once either
/// way, and the failure is counted by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_target_cannot_prepare_again_fails_on_target_only() {
    for policy in [TargetFailurePolicy::Strict, TargetFailurePolicy::BestEffort] {
        let env = env_with(66, |c| c.target_failure_policy = policy).await;
        let client = scylla(env.proxy.local_addr()).await;
        counters_and_lists(&client).await;
        let increment = client
            .prepare("UPDATE ks.c SET n = n + 1 WHERE k = ?")
            .await
            .unwrap();
        client.execute_unpaged(&increment, (1i32,)).await.unwrap();
        env.target.handler().clear_prepared(0);
        let direct = scylla(env.target.addresses()[0]).await;
        direct.query_unpaged("DROP TABLE ks.c", &[]).await.unwrap();
        let result = client.execute_unpaged(&increment, (1i32,)).await;
        match policy {
            TargetFailurePolicy::Strict => match result {
                Err(ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                    DbError::Invalid,
                    message,
                ))) => assert!(message.contains("c"), "{message}"),
                other => panic!("expected target's INVALID, got {other:?}"),
            },
            _ => {
                result.unwrap();
                assert_eq!(env.proxy.repairs().pending(), 1);
            }
        }
        assert_eq!(
            counter_and_list(env.origin.addresses()[0], 1).await.0,
            2,
            "{policy:?}: applied once more on origin"
        );
        let (_, metrics) = http(env.proxy.admin_addr(), "GET", "/metrics", None, "").await;
        assert!(
            metrics.contains("ferry_proxy_failed_writes_total{failed_on=\"target\"} 1"),
            "{policy:?}: {metrics}"
        );
        drop((client, direct));
        env.stop().await;
    }
}

/// A dual-async read of a statement the secondary forgot: the proxy prepares it there again and
/// compares, rather than counting a secondary failure on every read until something else
/// prepares it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_read_prepares_again_on_the_secondary() {
    let env = env_with(67, |c| c.read_mode = ReadMode::DualAsync).await;
    let client = scylla(env.proxy.local_addr()).await;
    create_table(&client).await;
    client
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (1, 'one')", &[])
        .await
        .unwrap();
    let select = client
        .prepare("SELECT v FROM ks.t WHERE k = ?")
        .await
        .unwrap();
    for round in 1..=2u64 {
        if round == 2 {
            env.target.handler().clear_prepared(0);
        }
        client.execute_unpaged(&select, (1i32,)).await.unwrap();
        // The secondary's half is compared after the client has its answer.
        let mut polls = 0;
        while env.proxy.dual_read_counts("ks.t").0 < round {
            polls += 1;
            assert!(polls < 3000, "round {round} never compared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(env.proxy.dual_read_counts("ks.t"), (round, 0));
    }
    drop(client);
    env.stop().await;
}
