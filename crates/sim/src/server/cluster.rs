//! The cluster: builds the topology, binds and starts every node, and shuts them all down.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::config::ClusterConfig;
use super::events::EventSender;
use super::node::{ConnCommand, Node, bind};
use super::topology::Topology;
use super::{Handler, StartError};

/// A running cluster of nodes sharing one handler (and so one data store).
///
/// Dropping it without [`Cluster::shutdown`] tells every node to close its connections but does
/// not wait for them.
#[derive(Debug)]
pub struct Cluster<H: Handler> {
    nodes: Vec<Node<H>>,
    topology: Arc<Topology>,
    events: EventSender,
    config: Arc<ClusterConfig>,
    /// Kept so inspection (the admin API) reaches the executor the nodes share.
    handler: Arc<H>,
}

impl<H: Handler> Cluster<H> {
    /// Validates `config`, binds every node's address and starts serving. Must run inside a
    /// Tokio runtime.
    pub async fn start(config: ClusterConfig, handler: Arc<H>) -> Result<Self, StartError> {
        config.validate()?;
        let tls = config
            .tls
            .as_ref()
            .map(super::tls::acceptor)
            .transpose()
            .map_err(StartError::Tls)?;
        let mut listeners = Vec::with_capacity(config.nodes);
        let mut addresses = config.node_addresses(config.listen.port());
        // Port 0: node 0's port, once known, is every derived node's port.
        if config.addresses.is_empty() && config.listen.port() == 0 {
            let first = bind(addresses[0])?;
            let port = first.local_addr().map_err(|e| StartError::Bind {
                address: addresses[0],
                source: Arc::new(e),
            })?;
            addresses = config.node_addresses(port.port());
            listeners.push(first);
        }
        for &address in &addresses[listeners.len()..] {
            listeners.push(bind(address)?);
        }
        let actual: Vec<SocketAddr> = listeners
            .iter()
            .zip(&addresses)
            .map(|(l, a)| l.local_addr().unwrap_or(*a))
            .collect();
        let topology = Arc::new(Topology::new(
            &config.cluster_name,
            &actual,
            config.vnodes,
            &config.data_center,
            &config.rack,
            &config.release_version,
            config.seed,
        ));
        let config = Arc::new(config);
        let events = EventSender::new();
        let nodes: Vec<Node<H>> = topology
            .nodes
            .iter()
            .map(|info| {
                Node::new(
                    info.clone(),
                    topology.clone(),
                    config.clone(),
                    handler.clone(),
                    events.clone(),
                    tls.clone(),
                )
            })
            .collect();
        for (node, listener) in nodes.iter().zip(listeners) {
            node.start_with(listener).await;
        }
        tracing::info!(nodes = nodes.len(), addresses = ?actual, "cluster started");
        Ok(Self {
            nodes,
            topology,
            events,
            config,
            handler,
        })
    }

    pub fn nodes(&self) -> &[Node<H>] {
        &self.nodes
    }

    /// The node with id `id`; panics if there is none, as slice indexing does.
    pub fn node(&self, id: usize) -> &Node<H> {
        &self.nodes[id]
    }

    /// Every node's native-protocol address, in id order.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(Node::address).collect()
    }

    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// The cluster-wide event bus (the executor's [`super::RequestContext::events`] is a clone).
    pub fn events(&self) -> &EventSender {
        &self.events
    }

    /// The handler every node hands its requests to.
    pub fn handler(&self) -> &Arc<H> {
        &self.handler
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Stops accepting on every node, lets in-flight requests finish within
    /// [`ClusterConfig::shutdown_grace`], answers the rest with an error, closes every
    /// connection, and returns when all tasks are done.
    pub async fn shutdown(&self) {
        let deadline = Instant::now() + self.config.shutdown_grace;
        // Every node stops accepting first; then each is waited for.
        for node in &self.nodes {
            node.signal(ConnCommand::Drain(deadline));
        }
        for node in &self.nodes {
            node.halt(ConnCommand::Drain(deadline)).await;
        }
        tracing::info!("cluster shut down");
    }
}

impl<H: Handler> Drop for Cluster<H> {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.signal(ConnCommand::Close);
        }
    }
}
