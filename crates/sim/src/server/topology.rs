//! Who the nodes are: addresses, host ids, data center, rack and vnode tokens, as `system.local`
//! and `system.peers` describe them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One node as clients see it. Shared (`Arc`) by every connection of the node and by the
/// executor, which answers `system.local`/`system.peers` from it.
#[derive(Debug)]
pub struct NodeInfo {
    /// Index in [`Topology::nodes`]; the key the executor uses for per-node state (prepared cache).
    pub id: usize,
    /// Native-protocol address; also the node's broadcast/listen/rpc address in system tables.
    pub address: SocketAddr,
    /// `host_id` (a version-4 UUID); drivers key their host maps on it.
    pub host_id: [u8; 16],
    pub data_center: String,
    pub rack: String,
    /// Sorted vnode tokens (Murmur3 range), distinct across the cluster.
    pub tokens: Vec<i64>,
    /// `release_version`, e.g. "5.0.4": drivers pick features by it.
    pub release_version: String,
    /// False while the node is stopped by fault injection.
    up: AtomicBool,
}

impl NodeInfo {
    /// Whether the node currently accepts connections.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    /// The host id in its textual UUID form.
    pub fn host_id_string(&self) -> String {
        let h = &self.host_id;
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

/// All nodes of the cluster, in id order.
#[derive(Debug)]
pub struct Topology {
    /// `cluster_name` in `system.local`.
    pub cluster_name: String,
    pub nodes: Vec<Arc<NodeInfo>>,
}

impl Topology {
    /// Builds the nodes at `addresses` with `vnodes` tokens each, drawn from `seed` so the same
    /// config always yields the same ring (tests can assert on token ownership).
    pub(crate) fn new(
        cluster_name: &str,
        addresses: &[SocketAddr],
        vnodes: usize,
        data_center: &str,
        rack: &str,
        release_version: &str,
        seed: u64,
    ) -> Self {
        let mut rng = SplitMix64(seed);
        let mut taken = BTreeSet::new();
        let nodes = addresses
            .iter()
            .enumerate()
            .map(|(id, &address)| {
                let mut host_id = [0u8; 16];
                host_id[..8].copy_from_slice(&rng.next().to_be_bytes());
                host_id[8..].copy_from_slice(&rng.next().to_be_bytes());
                // RFC 4122 version 4, variant 10.
                host_id[6] = (host_id[6] & 0x0f) | 0x40;
                host_id[8] = (host_id[8] & 0x3f) | 0x80;
                let mut tokens = Vec::with_capacity(vnodes);
                while tokens.len() < vnodes {
                    // i64::MIN is Murmur3Partitioner's minimum token, never owned by a node.
                    let t = rng.next() as i64;
                    if t != i64::MIN && taken.insert(t) {
                        tokens.push(t);
                    }
                }
                tokens.sort_unstable();
                Arc::new(NodeInfo {
                    id,
                    address,
                    host_id,
                    data_center: data_center.to_owned(),
                    rack: rack.to_owned(),
                    tokens,
                    release_version: release_version.to_owned(),
                    up: AtomicBool::new(false),
                })
            })
            .collect();
        Self {
            cluster_name: cluster_name.to_owned(),
            nodes,
        }
    }

    /// The node owning `token`: the first node token >= `token`, wrapping around the ring.
    pub fn owner(&self, token: i64) -> Option<&Arc<NodeInfo>> {
        self.nodes
            .iter()
            .flat_map(|n| n.tokens.iter().map(move |t| (*t, n)))
            .filter(|(t, _)| *t >= token)
            .min_by_key(|(t, _)| *t)
            .or_else(|| {
                self.nodes
                    .iter()
                    .flat_map(|n| n.tokens.iter().map(move |t| (*t, n)))
                    .min_by_key(|(t, _)| *t)
            })
            .map(|(_, n)| n)
    }
}

/// SplitMix64: a tiny generator whose output is fixed by its definition, so a seed gives the same
/// tokens and host ids across builds and dependency upgrades (unlike `rand`'s `StdRng`).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([127, 0, 0, i], 9042)))
            .collect()
    }

    #[test]
    fn same_seed_same_ring_and_distinct_tokens() {
        let a = Topology::new("c", &addrs(3), 16, "dc", "r", "5.0.4", 7);
        let b = Topology::new("c", &addrs(3), 16, "dc", "r", "5.0.4", 7);
        let c = Topology::new("c", &addrs(3), 16, "dc", "r", "5.0.4", 8);
        let tokens =
            |t: &Topology| -> Vec<i64> { t.nodes.iter().flat_map(|n| n.tokens.clone()).collect() };
        assert_eq!(tokens(&a), tokens(&b));
        assert_ne!(tokens(&a), tokens(&c));
        let all: BTreeSet<i64> = tokens(&a).into_iter().collect();
        assert_eq!(all.len(), 48);
        assert_eq!(a.nodes[1].host_id, b.nodes[1].host_id);
        assert_ne!(a.nodes[0].host_id, a.nodes[1].host_id);
    }

    #[test]
    fn host_id_is_a_v4_uuid() {
        let t = Topology::new("c", &addrs(1), 1, "dc", "r", "5.0.4", 1);
        let s = t.nodes[0].host_id_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
    }

    #[test]
    fn owner_wraps_around_the_ring() {
        let t = Topology::new("c", &addrs(2), 4, "dc", "r", "5.0.4", 3);
        let max = t.nodes.iter().flat_map(|n| n.tokens.clone()).max().unwrap();
        let min = t.nodes.iter().flat_map(|n| n.tokens.clone()).min().unwrap();
        let owner_of_min = t.owner(min).unwrap().id;
        assert_eq!(t.owner(max.saturating_add(1)).unwrap().id, owner_of_min);
        assert_eq!(t.owner(i64::MIN).unwrap().id, owner_of_min);
    }
}
