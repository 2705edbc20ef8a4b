//! Scan pages routed to a replica. A token-range `SELECT` binds no partition key, so the
//! driver's token-aware policy has no token to place it by and the load-balancing policy picks
//! any node, which then reads the range from the replicas as a coordinator. Each page is
//! therefore sent first to a replica of the token it starts at (the range's start for the
//! first page, the previous page's last row for the next ones, which is where the paging
//! state resumes): that node serves the page from its own data until the page crosses into a
//! range it does not own.
//!
//! ```text
//!  page start token ─► driver's ring (keyspace replication) ─► replicas, in the driver's order
//!      ─► first connected one (in the local DC when set) ─► the scan statement with a profile
//!         whose policy picks that node, then falls back to the session's own policy
//! ```
//!
//! Routing is a preference, never a requirement: with no connected replica, no keyspace
//! metadata or a node down, the page goes where the session's policy sends it, and the
//! fallback plan still retries elsewhere.

use std::sync::{Arc, Mutex, PoisonError};

use scylla::client::execution_profile::{ExecutionProfile, ExecutionProfileHandle};
use scylla::client::session::Session;
use scylla::cluster::{ClusterState, Node, NodeRef};
use scylla::policies::load_balancing::{FallbackPlan, LoadBalancingPolicy, RoutingInfo};
use scylla::routing::{Shard, Token};
use scylla::statement::prepared::PreparedStatement;

/// Picks the node each scan page goes to first (module docs).
pub(crate) struct Router {
    session: Arc<Session>,
    keyspace: String,
    table: String,
    local_dc: Option<String>,
    /// The session's default profile, which the per-node profiles copy.
    base: ExecutionProfile,
    /// One profile per node, made when a page first goes there (nodes are few).
    profiles: Mutex<Vec<(Arc<Node>, ExecutionProfileHandle)>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Router({}.{})", self.keyspace, self.table)
    }
}

impl Router {
    pub(crate) fn new(
        session: Arc<Session>,
        keyspace: &str,
        table: &str,
        local_dc: Option<String>,
    ) -> Self {
        let base = session.get_default_execution_profile_handle().to_profile();
        Self {
            session,
            keyspace: keyspace.to_owned(),
            table: table.to_owned(),
            local_dc,
            base,
            profiles: Mutex::new(Vec::new()),
        }
    }

    /// The replica a page starting at `token` goes to first, if one is connected.
    pub(crate) fn replica(&self, token: i64) -> Option<Arc<Node>> {
        let cluster = self.session.get_cluster_state();
        cluster
            .get_token_endpoints(&self.keyspace, &self.table, Token::new(token))
            .into_iter()
            .map(|(node, _)| node)
            .find(|n| {
                n.is_connected()
                    && self
                        .local_dc
                        .as_ref()
                        .is_none_or(|dc| n.datacenter.as_ref() == Some(dc))
            })
    }

    /// `select` for a page starting at `token`: sent to [`Self::replica`] first, or as the
    /// session's policy decides when there is none.
    pub(crate) fn statement(&self, select: &PreparedStatement, token: i64) -> PreparedStatement {
        let mut statement = select.clone();
        if let Some(node) = self.replica(token) {
            statement.set_execution_profile_handle(Some(self.profile(node)));
        }
        statement
    }

    fn profile(&self, node: Arc<Node>) -> ExecutionProfileHandle {
        let mut profiles = self.profiles.lock().unwrap_or_else(PoisonError::into_inner);
        // By identity: a node the driver replaced (new address) gets a new profile.
        if let Some((_, handle)) = profiles.iter().find(|(n, _)| Arc::ptr_eq(n, &node)) {
            return handle.clone();
        }
        let policy = ReplicaFirst {
            node: node.clone(),
            rest: self.base.get_load_balancing_policy().clone(),
        };
        let handle = self
            .base
            .to_builder()
            .load_balancing_policy(Arc::new(policy))
            .build()
            .into_handle();
        profiles.retain(|(n, _)| n.host_id != node.host_id);
        profiles.push((node, handle.clone()));
        handle
    }
}

/// `node` first while it is connected, then the session's policy without it.
#[derive(Debug)]
struct ReplicaFirst {
    node: Arc<Node>,
    rest: Arc<dyn LoadBalancingPolicy>,
}

impl LoadBalancingPolicy for ReplicaFirst {
    fn pick<'a>(
        &'a self,
        request: &'a RoutingInfo,
        cluster: &'a ClusterState,
    ) -> Option<(NodeRef<'a>, Option<Shard>)> {
        if self.node.is_connected() {
            Some((&self.node, None))
        } else {
            self.rest.pick(request, cluster)
        }
    }

    fn fallback<'a>(
        &'a self,
        request: &'a RoutingInfo,
        cluster: &'a ClusterState,
    ) -> FallbackPlan<'a> {
        let host = self.node.host_id;
        Box::new(
            self.rest
                .fallback(request, cluster)
                .filter(move |(n, _)| n.host_id != host),
        )
    }

    fn name(&self) -> String {
        format!("ReplicaFirst({})", self.node.host_id)
    }
}
