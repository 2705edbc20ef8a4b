//! Topology virtualization: `system.local`, `system.peers` and `system.peers_v2` answered by the
//! proxy, so drivers see the N proxy instances as the cluster's nodes and spread their load over
//! them, never connecting around the proxy to the real nodes.
//!
//! Each instance appears with its client-visible address, a host id derived from that address
//! (stable across restarts and the same on every instance), and tokens evenly spaced over the ring.
//! Data center, rack, release version, cluster name and schema version are copied from the real
//! cluster's `system.local`, read at query time so schema agreement checks see DDL happen.
//!
//! The tables' layout and the SELECT evaluation (projections, aliases, `count(*)`, `WHERE`) are
//! the simulator's: the same code that answers drivers in `ferry sim`.

use std::net::SocketAddr;

use ferry_cql::request::Values;
use ferry_cql::response::error::ErrorResponse;
use ferry_cql::response::result::Rows;
use ferry_cql::types::CqlValue;
use ferry_sim::cql::{IdGenerator, Statement, parse};
use ferry_sim::exec::select_virtual::select_virtual;
use ferry_sim::exec::system_tables::{self, ClusterView, NodeView};
use md5::{Digest, Md5};

use crate::route::VirtualTable;

/// The query that reads what the virtual tables copy from the real cluster.
pub(crate) const REAL_LOCAL_QUERY: &str = "SELECT * FROM system.local WHERE key = 'local'";

/// The proxy instances, as configured identically on every instance.
#[derive(Debug, Clone)]
pub(crate) struct ProxyTopology {
    addresses: Vec<SocketAddr>,
    index: usize,
    num_tokens: u16,
}

/// What the virtual rows copy from the real cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RealNode {
    pub data_center: String,
    pub rack: String,
    pub release_version: String,
    pub cluster_name: String,
    pub schema_version: [u8; 16],
}

impl ProxyTopology {
    pub(crate) fn new(addresses: Vec<SocketAddr>, index: usize, num_tokens: u16) -> Self {
        Self {
            addresses,
            index,
            num_tokens: num_tokens.max(1),
        }
    }

    /// Evenly spaced tokens, interleaved between instances so each owns an equal share.
    fn tokens(&self, instance: usize) -> Vec<i64> {
        let n = self.addresses.len().max(1) as u128;
        let total = n * u128::from(self.num_tokens);
        let step = (1u128 << 64) / total;
        (0..u128::from(self.num_tokens))
            .map(|j| {
                let offset = step * (j * n + instance as u128);
                (i128::from(i64::MIN) + offset as i128) as i64
            })
            .collect()
    }

    /// `connection`: the local address of the client's connection, advertised for an instance
    /// configured with an unspecified address (`0.0.0.0`), which no driver could connect to.
    fn nodes(&self, real: &RealNode, connection: SocketAddr) -> Vec<NodeView> {
        self.addresses
            .iter()
            .enumerate()
            .map(|(i, &address)| NodeView {
                address: if address.ip().is_unspecified() {
                    SocketAddr::new(connection.ip(), address.port())
                } else {
                    address
                },
                host_id: host_id(address),
                data_center: real.data_center.clone(),
                rack: real.rack.clone(),
                tokens: self.tokens(i),
                release_version: real.release_version.clone(),
            })
            .collect()
    }

    /// Answers a SELECT on a virtual table.
    pub(crate) fn answer(
        &self,
        table: VirtualTable,
        cql: &str,
        values: &Values,
        real: &RealNode,
        connection: SocketAddr,
    ) -> Result<Rows, ErrorResponse> {
        let select = match parse(cql) {
            Ok(Statement::Select(select)) => select,
            Ok(_) => {
                return Err(ErrorResponse::invalid(
                    "Only SELECT is supported on system tables",
                ));
            }
            Err(e) => return Err(ferry_sim::exec::error::ExecError::from(e).to_response()),
        };
        let nodes = self.nodes(real, connection);
        let local = &nodes[self.index.min(nodes.len() - 1)];
        let cluster = ClusterView {
            cluster_name: real.cluster_name.clone(),
            schema_version: real.schema_version,
        };
        let virtual_table = match table {
            VirtualTable::Local => system_tables::local(local, &cluster),
            VirtualTable::Peers => system_tables::peers(local, &nodes, &cluster),
            VirtualTable::PeersV2 => system_tables::peers_v2(local, &nodes, &cluster),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        // The system tables' queries never generate ids; the generator is only the API's.
        let mut ids = IdGenerator::new(0);
        select_virtual(&virtual_table, &select, values, now, &mut ids).map_err(|e| e.to_response())
    }
}

/// A version-3-style UUID from the instance's address: the same on every instance and restart.
fn host_id(address: SocketAddr) -> [u8; 16] {
    let digest = Md5::digest(format!("ferry-proxy/{address}").as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest);
    id[6] = (id[6] & 0x0f) | 0x30;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

impl RealNode {
    /// Reads the fields from the real cluster's `system.local` row.
    pub(crate) fn from_rows(rows: &Rows) -> Result<Self, String> {
        if rows.rows_count() == 0 {
            return Err("system.local returned no row".to_owned());
        }
        let row = rows.typed_row(0).map_err(|e| e.to_string())?;
        let column = |name: &str| -> Option<&CqlValue> {
            let i = rows
                .metadata
                .columns
                .as_ref()?
                .iter()
                .position(|c| c.name == name)?;
            row.get(i)?.as_ref()
        };
        let text = |name: &str| match column(name) {
            Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => s.clone(),
            _ => String::new(),
        };
        let schema_version = match column("schema_version") {
            Some(CqlValue::Uuid(u) | CqlValue::Timeuuid(u)) => *u,
            _ => [0; 16],
        };
        Ok(Self {
            data_center: text("data_center"),
            rack: text("rack"),
            release_version: text("release_version"),
            cluster_name: text("cluster_name"),
            schema_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> RealNode {
        RealNode {
            data_center: "dc1".into(),
            rack: "rack1".into(),
            release_version: "5.0.4".into(),
            cluster_name: "origin".into(),
            schema_version: [7; 16],
        }
    }

    fn conn() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 9], 9042))
    }

    fn topology() -> ProxyTopology {
        let addrs = (1..=3)
            .map(|i| SocketAddr::from(([127, 0, 0, i], 9042)))
            .collect();
        ProxyTopology::new(addrs, 1, 4)
    }

    #[test]
    fn tokens_are_evenly_spaced_and_distinct() {
        let t = topology();
        let mut all: Vec<i64> = (0..3).flat_map(|i| t.tokens(i)).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 12);
        assert_eq!(all[0], i64::MIN);
        let gaps: Vec<i128> = all
            .windows(2)
            .map(|w| i128::from(w[1]) - i128::from(w[0]))
            .collect();
        assert!(gaps.iter().all(|&g| (g - gaps[0]).abs() <= 1), "{gaps:?}");
    }

    #[test]
    fn local_and_peers_describe_the_instances() {
        let t = topology();
        let local = t
            .answer(VirtualTable::Local, "SELECT rpc_address, data_center, release_version FROM system.local WHERE key='local'", &Values::None, &real(), conn())
            .unwrap();
        assert_eq!(local.rows_count(), 1);
        let row = local.typed_row(0).unwrap();
        assert_eq!(row[0], Some(CqlValue::Inet("127.0.0.2".parse().unwrap())));
        assert_eq!(row[1], Some(CqlValue::Text("dc1".into())));
        let peers = t
            .answer(
                VirtualTable::Peers,
                "SELECT peer, host_id FROM system.peers",
                &Values::None,
                &real(),
                conn(),
            )
            .unwrap();
        assert_eq!(peers.rows_count(), 2);
        let count = t
            .answer(
                VirtualTable::PeersV2,
                "SELECT count(*) FROM system.peers_v2",
                &Values::None,
                &real(),
                conn(),
            )
            .unwrap();
        assert_eq!(count.typed_row(0).unwrap()[0], Some(CqlValue::Bigint(2)));
        let err = t
            .answer(
                VirtualTable::Local,
                "SELECT nope FROM system.local",
                &Values::None,
                &real(),
                conn(),
            )
            .unwrap_err();
        assert!(err.message.contains("nope"), "{}", err.message);
    }

    #[test]
    fn host_ids_are_stable_per_address() {
        let a = SocketAddr::from(([10, 0, 0, 1], 9042));
        assert_eq!(host_id(a), host_id(a));
        assert_ne!(host_id(a), host_id(SocketAddr::from(([10, 0, 0, 2], 9042))));
    }
}
