//! Prepared-id mapping when a cache forgets: the target's (cleared, as after a restart) and the
//! proxy's own (evicted). The driver re-prepares transparently and every write lands on both.

use ferry_proxy::settings::TargetFailurePolicy;

use ferry_cql::message::Response;
use scylla::client::session_builder::SessionBuilder;

use crate::failures::{KEYSPACE, create_table, keys};
use crate::harness::{env_with, scylla};
use crate::raw::Raw;

/// Target forgets its prepared statements: its UNPREPARED reaches the driver under origin's id
/// (the only id the driver knows), the driver re-prepares on both through the proxy and the
/// retried write lands on both — in `strict`, and in `best-effort`, where swallowing the
/// UNPREPARED would leave every later execution missing on target.
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
