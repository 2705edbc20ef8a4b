//! The Rust `scylla` driver (protocol v4) through the proxy.

use ferry_proxy::settings::ClusterId;

use crate::harness::{env, scylla};

async fn count(session: &scylla::client::session::Session, query: &str) -> i64 {
    let rows = session
        .query_unpaged(query, &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (n,): (i64,) = rows.first_row().unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_both_clusters_and_reads_follow_the_primary() {
    let env = env(20).await;
    let client = scylla(env.proxy.local_addr()).await;
    client
        .query_unpaged(
            "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            &[],
        )
        .await
        .unwrap();
    client
        .query_unpaged("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", &[])
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    for k in 0..10i32 {
        client
            .execute_unpaged(&insert, (k, format!("v{k}")))
            .await
            .unwrap();
    }
    client
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (100, 'text')", &[])
        .await
        .unwrap();

    let origin = scylla(env.origin.addresses()[0]).await;
    let target = scylla(env.target.addresses()[0]).await;
    assert_eq!(count(&origin, "SELECT count(*) FROM ks.t").await, 11);
    assert_eq!(count(&target, "SELECT count(*) FROM ks.t").await, 11);

    // A row only origin has is visible through the proxy while origin is primary.
    origin
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (500, 'origin only')", &[])
        .await
        .unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM ks.t").await, 12);
    env.proxy.live().set_primary(ClusterId::Target);
    assert_eq!(count(&client, "SELECT count(*) FROM ks.t").await, 11);
    let select = client
        .prepare("SELECT v FROM ks.t WHERE k = ?")
        .await
        .unwrap();
    let rows = client
        .execute_unpaged(&select, (500i32,))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(
        rows.rows_num(),
        0,
        "target is primary: the origin-only row is not read"
    );
    env.proxy.live().set_primary(ClusterId::Origin);
    let rows = client
        .execute_unpaged(&select, (500i32,))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(rows.rows_num(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_sees_the_proxy_as_the_cluster() {
    let env = env(21).await;
    let client = scylla(env.proxy.local_addr()).await;
    let nodes = client.get_cluster_state().get_nodes_info().to_vec();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].address.ip(), env.proxy.local_addr().ip());
    let rows = client
        .query_unpaged("SELECT release_version, rpc_address FROM system.local", &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (version, rpc): (String, std::net::IpAddr) = rows.first_row().unwrap();
    assert_eq!(version, "5.0.4");
    assert_eq!(rpc, env.proxy.local_addr().ip());
    env.stop().await;
}

/// Writes without a client timestamp get one from the proxy, and `now()`/`uuid()` are evaluated
/// once, so both clusters store identical cells — as text, prepared and batched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_clusters_store_identical_writetimes_and_generated_values() {
    use scylla::statement::batch::Batch;
    use uuid::Uuid;

    let env = env(22).await;
    let client = scylla(env.proxy.local_addr()).await;
    client
        .query_unpaged(
            "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            &[],
        )
        .await
        .unwrap();
    client
        .query_unpaged(
            "CREATE TABLE ks.ev (k int, id timeuuid, u uuid, v text, PRIMARY KEY (k, id))",
            &[],
        )
        .await
        .unwrap();
    client
        .query_unpaged(
            "INSERT INTO ks.ev (k, id, u, v) VALUES (1, now(), uuid(), 'text')",
            &[],
        )
        .await
        .unwrap();
    let prepared = client
        .prepare("INSERT INTO ks.ev (k, id, u, v) VALUES (?, now(), uuid(), ?)")
        .await
        .unwrap();
    assert_eq!(
        prepared.get_variable_col_specs().len(),
        2,
        "the client binds only its own markers"
    );
    client
        .execute_unpaged(&prepared, (2i32, "prepared"))
        .await
        .unwrap();
    client
        .execute_unpaged(&prepared, (2i32, "prepared again"))
        .await
        .unwrap();
    let mut batch = Batch::default();
    batch.append_statement(prepared.clone());
    batch.append_statement(
        "INSERT INTO ks.ev (k, id, u, v) VALUES (3, now(), uuid(), 'batch text')",
    );
    client
        .batch(&batch, ((3i32, "batch prepared"), ()))
        .await
        .unwrap();

    let dump = |session: scylla::client::session::Session| async move {
        let rows = session
            .query_unpaged("SELECT k, id, u, v, writetime(v) FROM ks.ev", &[])
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let mut all: Vec<(i32, Uuid, Uuid, String, i64)> = rows
            .rows::<(i32, scylla::value::CqlTimeuuid, Uuid, String, i64)>()
            .unwrap()
            .map(|r| {
                let (k, id, u, v, wt) = r.unwrap();
                (k, Uuid::from(id), u, v, wt)
            })
            .collect();
        all.sort();
        all
    };
    let origin = dump(scylla(env.origin.addresses()[0]).await).await;
    let target = dump(scylla(env.target.addresses()[0]).await).await;
    assert_eq!(origin.len(), 5);
    assert_eq!(
        origin, target,
        "identical ids, uuids and writetimes on both clusters"
    );
    let ids: std::collections::HashSet<_> = origin.iter().map(|r| r.1).collect();
    assert_eq!(ids.len(), 5, "every execution got its own timeuuid");
    env.stop().await;
}
