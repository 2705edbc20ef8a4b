//! The Rust `scylla` driver (protocol v4 only) against the simulator.

use std::time::Duration;

use ferry_cql::Consistency;
use ferry_sim::server::{ClusterConfig, FaultAction, RequestMatcher, faults};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::frame::Compression;

use super::{config, start};

async fn session(
    addr: std::net::SocketAddr,
    compression: Option<Compression>,
    user: Option<(&str, &str)>,
) -> Result<Session, String> {
    let mut b = SessionBuilder::new()
        .known_node_addr(addr)
        .compression(compression)
        .fetch_schema_metadata(false)
        .connection_timeout(Duration::from_secs(5));
    if let Some((u, p)) = user {
        b = b.user(u, p);
    }
    b.build().await.map_err(|e| format!("{e:?} / {e}"))
}

#[tokio::test]
async fn discovers_three_nodes_with_every_v4_compression() {
    let cluster = start(config(3)).await;
    for compression in [None, Some(Compression::Lz4), Some(Compression::Snappy)] {
        let s = session(cluster.addresses()[0], compression, None)
            .await
            .unwrap();
        let state = s.get_cluster_state();
        assert_eq!(state.get_nodes_info().len(), 3, "{compression:?}");
        let r = s
            .query_unpaged("SELECT release_version FROM system.local", &[])
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let (v,): (String,) = r.first_row().unwrap();
        assert_eq!(v, "5.0.4");
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn auth_and_injected_errors() {
    let cluster = start(ClusterConfig {
        users: vec![("bob".to_owned(), "pw".to_owned())],
        ..config(1)
    })
    .await;
    let addr = cluster.addresses()[0];
    let err = session(addr, None, Some(("bob", "bad")))
        .await
        .err()
        .unwrap();
    assert!(
        err.contains("Provided username bob and/or password are incorrect"),
        "{err}"
    );
    let s = session(addr, Some(Compression::Lz4), Some(("bob", "pw")))
        .await
        .unwrap();
    cluster.node(0).faults().add(
        RequestMatcher::any().text_contains("ks.over"),
        FaultAction::Error(faults::overloaded()),
    );
    cluster.node(0).faults().add(
        RequestMatcher::any().text_contains("ks.unavail"),
        FaultAction::Error(faults::unavailable(Consistency::Quorum, 2, 1)),
    );
    let e = s
        .query_unpaged("SELECT * FROM ks.unavail", &[])
        .await
        .unwrap_err();
    let e = format!("{e:?}");
    assert!(e.contains("Unavailable"), "{e}");
    let e = s
        .query_unpaged("SELECT * FROM ks.over", &[])
        .await
        .unwrap_err();
    let e = format!("{e:?}");
    assert!(e.contains("Overloaded"), "{e}");
    cluster.shutdown().await;
}
