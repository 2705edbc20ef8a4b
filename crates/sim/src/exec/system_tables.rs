//! `system.local`, `system.peers` and `system.peers_v2` as Cassandra 5.0 lays them out: drivers
//! read them on connect to learn the cluster's nodes, tokens (token-aware routing), data centers
//! and schema version.

use std::net::SocketAddr;

use ferry_cql::types::{ColumnType, CqlValue};

use super::virtual_table::VirtualTable;

/// What the system tables say about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The native-protocol address clients connect to (also used as broadcast/listen address).
    pub address: SocketAddr,
    pub host_id: [u8; 16],
    pub data_center: String,
    pub rack: String,
    pub tokens: Vec<i64>,
    pub release_version: String,
}

/// Cluster-wide facts shared by every row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster_name: String,
    pub schema_version: [u8; 16],
}

pub const PARTITIONER: &str = "org.apache.cassandra.dht.Murmur3Partitioner";
pub const CQL_VERSION: &str = "3.4.7";
/// The highest native protocol version, as `system.local` reports it.
pub const NATIVE_PROTOCOL_VERSION: &str = "5";
/// Internode port, reported as Cassandra's default.
const STORAGE_PORT: i32 = 7000;

fn text(s: &str) -> Option<CqlValue> {
    Some(CqlValue::Text(s.to_owned()))
}

fn inet(addr: SocketAddr) -> Option<CqlValue> {
    Some(CqlValue::Inet(addr.ip()))
}

fn tokens(node: &NodeView) -> Option<CqlValue> {
    // A set<text> is sent in its element order: Cassandra sorts text bytewise.
    let mut t: Vec<String> = node.tokens.iter().map(i64::to_string).collect();
    t.sort();
    Some(CqlValue::Set(t.into_iter().map(CqlValue::Text).collect()))
}

fn set_of_text() -> ColumnType {
    ColumnType::Set(Box::new(ColumnType::Varchar))
}

/// `system.local`: the node the client is connected to.
pub fn local(node: &NodeView, cluster: &ClusterView) -> VirtualTable {
    use ColumnType as T;
    let columns = vec![
        ("key", T::Varchar),
        ("bootstrapped", T::Varchar),
        ("broadcast_address", T::Inet),
        ("broadcast_port", T::Int),
        ("cluster_name", T::Varchar),
        ("cql_version", T::Varchar),
        ("data_center", T::Varchar),
        ("gossip_generation", T::Int),
        ("host_id", T::Uuid),
        ("listen_address", T::Inet),
        ("listen_port", T::Int),
        ("native_protocol_version", T::Varchar),
        ("partitioner", T::Varchar),
        ("rack", T::Varchar),
        ("release_version", T::Varchar),
        ("rpc_address", T::Inet),
        ("rpc_port", T::Int),
        ("schema_version", T::Uuid),
        ("tokens", set_of_text()),
        ("truncated_at", T::Map(Box::new(T::Uuid), Box::new(T::Blob))),
    ];
    let row = vec![
        text("local"),
        text("COMPLETED"),
        inet(node.address),
        Some(CqlValue::Int(STORAGE_PORT)),
        text(&cluster.cluster_name),
        text(CQL_VERSION),
        text(&node.data_center),
        Some(CqlValue::Int(0)),
        Some(CqlValue::Uuid(node.host_id)),
        inet(node.address),
        Some(CqlValue::Int(STORAGE_PORT)),
        text(NATIVE_PROTOCOL_VERSION),
        text(PARTITIONER),
        text(&node.rack),
        text(&node.release_version),
        inet(node.address),
        Some(CqlValue::Int(i32::from(node.address.port()))),
        Some(CqlValue::Uuid(cluster.schema_version)),
        tokens(node),
        None,
    ];
    VirtualTable {
        keyspace: "system".into(),
        name: "local".into(),
        columns: columns
            .into_iter()
            .map(|(n, t)| (n.to_owned(), t))
            .collect(),
        rows: vec![row],
    }
}

/// `system.peers`: every other node. Peers on the same IP (one host, several ports) would
/// collide on this table's `peer inet` key, which is why drivers prefer `peers_v2`.
pub fn peers(local: &NodeView, all: &[NodeView], cluster: &ClusterView) -> VirtualTable {
    use ColumnType as T;
    let columns = vec![
        ("peer", T::Inet),
        ("data_center", T::Varchar),
        ("host_id", T::Uuid),
        ("preferred_ip", T::Inet),
        ("rack", T::Varchar),
        ("release_version", T::Varchar),
        ("rpc_address", T::Inet),
        ("schema_version", T::Uuid),
        ("tokens", set_of_text()),
    ];
    let rows = others(local, all)
        .map(|n| {
            vec![
                inet(n.address),
                text(&n.data_center),
                Some(CqlValue::Uuid(n.host_id)),
                None,
                text(&n.rack),
                text(&n.release_version),
                inet(n.address),
                Some(CqlValue::Uuid(cluster.schema_version)),
                tokens(n),
            ]
        })
        .collect();
    VirtualTable {
        keyspace: "system".into(),
        name: "peers".into(),
        columns: columns
            .into_iter()
            .map(|(n, t)| (n.to_owned(), t))
            .collect(),
        rows,
    }
}

/// `system.peers_v2`: like `peers`, with ports, so nodes sharing an IP stay distinct.
pub fn peers_v2(local: &NodeView, all: &[NodeView], cluster: &ClusterView) -> VirtualTable {
    use ColumnType as T;
    let columns = vec![
        ("peer", T::Inet),
        ("peer_port", T::Int),
        ("data_center", T::Varchar),
        ("host_id", T::Uuid),
        ("native_address", T::Inet),
        ("native_port", T::Int),
        ("preferred_ip", T::Inet),
        ("preferred_port", T::Int),
        ("rack", T::Varchar),
        ("release_version", T::Varchar),
        ("schema_version", T::Uuid),
        ("tokens", set_of_text()),
    ];
    let rows = others(local, all)
        .map(|n| {
            vec![
                inet(n.address),
                Some(CqlValue::Int(STORAGE_PORT)),
                text(&n.data_center),
                Some(CqlValue::Uuid(n.host_id)),
                inet(n.address),
                Some(CqlValue::Int(i32::from(n.address.port()))),
                None,
                None,
                text(&n.rack),
                text(&n.release_version),
                Some(CqlValue::Uuid(cluster.schema_version)),
                tokens(n),
            ]
        })
        .collect();
    VirtualTable {
        keyspace: "system".into(),
        name: "peers_v2".into(),
        columns: columns
            .into_iter()
            .map(|(n, t)| (n.to_owned(), t))
            .collect(),
        rows,
    }
}

fn others<'a>(local: &'a NodeView, all: &'a [NodeView]) -> impl Iterator<Item = &'a NodeView> {
    all.iter().filter(move |n| n.host_id != local.host_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::virtual_table::{Filter, Projection};

    fn node(i: u8) -> NodeView {
        NodeView {
            address: format!("127.0.0.{i}:9042").parse().unwrap(),
            host_id: [i; 16],
            data_center: "datacenter1".into(),
            rack: "rack1".into(),
            tokens: vec![-(i as i64) * 1000, i as i64 * 1000],
            release_version: "5.0.4".into(),
        }
    }

    #[test]
    fn local_answers_the_drivers_connect_query() {
        let cluster = ClusterView {
            cluster_name: "ferry".into(),
            schema_version: [9; 16],
        };
        let t = local(&node(1), &cluster);
        assert_eq!(t.columns.len(), t.rows[0].len());
        let filters = [Filter {
            column: "key".into(),
            values: vec![CqlValue::Text("local".into())],
        }];
        let rows = t.query(&Projection::Star, &filters, None).unwrap();
        assert_eq!(rows.rows_count(), 1);
    }

    #[test]
    fn peers_list_every_other_node() {
        let cluster = ClusterView {
            cluster_name: "ferry".into(),
            schema_version: [9; 16],
        };
        let all = [node(1), node(2), node(3)];
        let p = peers(&all[1], &all, &cluster);
        assert_eq!(p.rows.len(), 2);
        assert!(p.rows.iter().all(|r| r.len() == p.columns.len()));
        let v2 = peers_v2(&all[1], &all, &cluster);
        assert_eq!(v2.rows.len(), 2);
        assert!(v2.rows.iter().all(|r| r.len() == v2.columns.len()));
        assert_eq!(
            v2.rows[0][0],
            Some(CqlValue::Inet("127.0.0.1".parse().unwrap()))
        );
    }
}
