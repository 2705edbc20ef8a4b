//! What drivers learn about the cluster through the proxy: a 3-instance proxy topology appears
//! as 3 nodes, and schema changes arrive once.

use std::net::SocketAddr;

use ferry_cql::message::{Request, Response};
use ferry_cql::request::Register;
use ferry_cql::response::event::{Event, EventType};
use ferry_cql::response::schema_change::SchemaTarget;
use ferry_proxy::Proxy;
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::statement::unprepared::Statement;

use crate::failures::{create_table, keys};
use crate::harness::{env, proxy_config, scylla, sim};
use crate::raw::Raw;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/topology.py");
/// Every instance listens on this port of its own address: the addresses are configured before
/// any instance starts, and drivers assume peers share the contact point's port.
const PORT: u16 = 19553;

/// Three proxy instances on 127.0.53.3/.4/.5 with the same topology list: the Rust driver and
/// the Python driver, connected to one of them, each see three nodes and run queries through
/// every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_see_every_proxy_instance() {
    let net = 53;
    let origin = sim(&format!("127.0.{net}.1"), Vec::new()).await;
    let target = sim(&format!("127.0.{net}.2"), Vec::new()).await;
    let addresses: Vec<SocketAddr> = (3..=5)
        .map(|host| format!("127.0.{net}.{host}:{PORT}").parse().unwrap())
        .collect();
    let mut proxies = Vec::new();
    for (index, &listen) in addresses.iter().enumerate() {
        let mut config = proxy_config(net, origin.addresses()[0], target.addresses()[0]);
        config.listen = listen;
        config.topology.addresses = addresses.clone();
        config.topology.index = index;
        proxies.push(Proxy::start(config).await.unwrap());
    }

    let client = scylla(addresses[0]).await;
    create_table(&client).await;
    let mut nodes: Vec<SocketAddr> = client
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .map(|n| SocketAddr::new(n.address.ip(), n.address.port()))
        .collect();
    nodes.sort();
    assert_eq!(nodes, addresses);
    for (i, &addr) in addresses.iter().enumerate() {
        let mut statement = Statement::new("INSERT INTO ks.t (k, v) VALUES (?, 'rust')");
        statement.set_load_balancing_policy(Some(SingleTargetLoadBalancingPolicy::new(
            NodeIdentifier::NodeAddress(addr),
            None,
        )));
        let result = client.query_unpaged(statement, (i as i32,)).await.unwrap();
        assert_eq!(result.request_coordinator().connection_address(), addr);
    }

    let hosts = addresses
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let out = tokio::process::Command::new("python3")
        .args([
            SCRIPT,
            &addresses[1].ip().to_string(),
            &PORT.to_string(),
            &hosts,
        ])
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let expected = [0, 1, 2, 100, 101, 102];
    assert_eq!(keys(origin.addresses()[0]).await, expected);
    assert_eq!(keys(target.addresses()[0]).await, expected);
    drop(client);
    for proxy in proxies {
        proxy.shutdown().await;
    }
    origin.shutdown().await;
    target.shutdown().await;
}

/// A client registered for SCHEMA_CHANGE gets exactly one event per DDL sent through the proxy
/// (origin's; target's copy of the same change is not forwarded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ddl_produces_exactly_one_schema_change() {
    let env = env(54).await;
    let proxy = env.proxy.local_addr();
    let mut ddl = Raw::connect(proxy).await;
    assert!(matches!(
        ddl.query(crate::failures::KEYSPACE).await,
        Response::Result(_)
    ));
    let mut listener = Raw::connect(proxy).await;
    listener
        .send(
            1,
            &Request::Register(Register::new([EventType::SchemaChange])),
        )
        .await;
    assert!(matches!(
        listener.recv_response().await,
        (1, Response::Ready(_))
    ));

    for table in ["e1", "e2"] {
        assert!(matches!(
            ddl.query(&format!("CREATE TABLE ks.{table} (k int PRIMARY KEY)"))
                .await,
            Response::Result(_)
        ));
        let event = listener.recv().await.expect("an event");
        assert_eq!(event.stream(), -1, "{event:?}");
        let Response::Event(Event::SchemaChange(change)) = crate::raw::decode(&event) else {
            panic!("not a schema change: {event:?}");
        };
        assert!(
            matches!(&change.target, SchemaTarget::Table { keyspace, table: t } if keyspace == "ks" && t == table),
            "{change:?}"
        );
    }
    // Anything else pending (a second copy) would arrive before the answer to this.
    listener
        .send(2, &Request::Options(ferry_cql::request::Options))
        .await;
    let answer = listener.recv().await.expect("an answer");
    assert_eq!(answer.stream(), 2, "no further event: {answer:?}");
    env.stop().await;
}
