//! The endpoints: routing a request by method and path, running it against the cluster, and
//! the JSON error every user mistake gets (never a panic, never a 500).

use std::sync::Arc;

use bytes::Bytes;
use ferry_service::http::{self, BodyError, Handler, error_response, json_response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::cells::{DEFAULT_LIMIT, MAX_LIMIT, TableDump};
use super::rules::{RuleBody, RuleError, RuleView};
use crate::exec::Executor;
use crate::server::{Cluster, Node, RuleId, StartError};

/// Largest request body: a fault rule is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;
/// Rules per node: each request is checked against every rule, so the list stays short.
const MAX_RULES: usize = 1_000;

/// Why a request was refused; each maps to one HTTP status and a JSON `{"error": …}` body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("no endpoint {path}")]
    NoEndpoint { path: String },
    #[error("method {method} is not allowed on {path} (allowed: {allowed})")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    #[error("node id must be a number, got {0:?}")]
    BadNodeId(String),
    #[error("unknown node {id}: the cluster has {nodes} nodes (0 to {})", .nodes.saturating_sub(1))]
    UnknownNode { id: usize, nodes: usize },
    #[error("fault rule id must be a number, got {0:?}")]
    BadRuleId(String),
    #[error("unknown fault rule {rule} on node {node}")]
    UnknownRule { node: usize, rule: u64 },
    #[error("node {node} already has {MAX_RULES} fault rules, the most allowed")]
    TooManyRules { node: usize },
    #[error("invalid fault rule: {0}")]
    Rule(#[from] RuleError),
    #[error("invalid JSON body: {0}")]
    BadJson(String),
    #[error("request body is larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("unknown table {keyspace}.{table}")]
    UnknownTable { keyspace: String, table: String },
    #[error("{0:?} in the path is not valid percent-encoded UTF-8")]
    BadPath(String),
    #[error("limit must be a number from 1 to {MAX_LIMIT}, got {0:?}")]
    BadLimit(String),
    #[error("unknown query parameter {0:?} (this endpoint takes: {1})")]
    UnknownParameter(String, &'static str),
    #[error("cannot restart node {node}: {source}")]
    Start { node: usize, source: StartError },
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NoEndpoint { .. }
            | Self::UnknownNode { .. }
            | Self::UnknownRule { .. }
            | Self::UnknownTable { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRules { .. } => StatusCode::CONFLICT,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadNodeId(_)
            | Self::BadRuleId(_)
            | Self::Rule(_)
            | Self::BadJson(_)
            | Self::Body(_)
            | Self::BadPath(_)
            | Self::BadLimit(_)
            | Self::UnknownParameter(..) => StatusCode::BAD_REQUEST,
            // The address is taken by someone else: the machine's problem, not the request's.
            Self::Start { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The admin API over one cluster.
#[derive(Debug)]
pub(super) struct Api {
    cluster: Arc<Cluster<Executor>>,
}

/// One node as `GET /nodes` shows it.
#[derive(Debug, Serialize)]
struct NodeView {
    id: usize,
    address: String,
    up: bool,
    connections: usize,
    fault_rules: usize,
    prepared_statements: usize,
}

type Reply = Result<(StatusCode, serde_json::Value), ApiError>;

impl Api {
    pub(super) fn new(cluster: Arc<Cluster<Executor>>) -> Self {
        Self { cluster }
    }

    /// Answers one request; every outcome, error or not, is a JSON response.
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let reply = self.route(req).await;
        match reply {
            Ok((status, body)) => {
                tracing::debug!(%method, %path, status = status.as_u16(), "admin request");
                json_response(status, &body)
            }
            Err(e) => {
                let status = e.status();
                tracing::debug!(%method, %path, status = status.as_u16(), error = %e, "admin request refused");
                let mut resp = error_response(status, &e.to_string());
                if let ApiError::MethodNotAllowed { allowed, .. } = &e {
                    resp.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static(allowed));
                }
                resp
            }
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Reply {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        let not_allowed = |allowed: &'static str| ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: path.clone(),
            allowed,
        };
        match segments.as_slice() {
            ["health"] => match method {
                Method::GET => Ok(self.health()),
                _ => Err(not_allowed("GET")),
            },
            ["nodes"] => match method {
                Method::GET => Ok(self.nodes()),
                _ => Err(not_allowed("GET")),
            },
            ["nodes", id, action @ ("stop" | "start")] => {
                if method != Method::POST {
                    return Err(not_allowed("POST"));
                }
                let node = self.node(id)?;
                if *action == "stop" {
                    node.stop().await;
                } else {
                    node.start().await.map_err(|source| ApiError::Start {
                        node: node.id(),
                        source,
                    })?;
                }
                Ok((StatusCode::OK, json!(self.view(node))))
            }
            ["nodes", id, "faults"] => {
                let node = self.node(id)?;
                match method {
                    Method::GET => Ok((StatusCode::OK, rules(node))),
                    Method::POST => self.add_rule(node, req).await,
                    Method::DELETE => {
                        let removed = node.faults().rules().len();
                        node.faults().clear();
                        Ok((StatusCode::OK, json!({"removed": removed})))
                    }
                    _ => Err(not_allowed("GET, POST, DELETE")),
                }
            }
            ["nodes", id, "faults", rule] => {
                if method != Method::DELETE {
                    return Err(not_allowed("DELETE"));
                }
                let node = self.node(id)?;
                let rule: u64 = rule
                    .parse()
                    .map_err(|_| ApiError::BadRuleId((*rule).to_owned()))?;
                if node.faults().remove(RuleId::from(rule)) {
                    Ok((StatusCode::OK, json!({"removed": 1})))
                } else {
                    Err(ApiError::UnknownRule {
                        node: node.id(),
                        rule,
                    })
                }
            }
            ["nodes", id, "connections", how @ ("drop" | "reset")] => {
                if method != Method::POST {
                    return Err(not_allowed("POST"));
                }
                let node = self.node(id)?;
                let count = node.connection_count();
                if *how == "drop" {
                    node.drop_connections();
                } else {
                    node.reset_connections();
                }
                Ok((StatusCode::OK, json!({"connections": count})))
            }
            ["nodes", id, "prepared", "clear"] => {
                if method != Method::POST {
                    return Err(not_allowed("POST"));
                }
                let node = self.node(id)?;
                let cache = self.cluster.handler().prepared_cache(node.id());
                let cleared = cache.len();
                cache.clear();
                Ok((StatusCode::OK, json!({"cleared": cleared})))
            }
            ["tables", keyspace, table] => match method {
                Method::GET => self.dump(keyspace, table, query.as_deref()),
                _ => Err(not_allowed("GET")),
            },
            _ => Err(ApiError::NoEndpoint { path }),
        }
    }

    fn health(&self) -> (StatusCode, serde_json::Value) {
        let nodes = self.cluster.nodes();
        let up = nodes.iter().filter(|n| n.is_up()).count();
        (
            StatusCode::OK,
            json!({"status": "ok", "nodes": nodes.len(), "up": up}),
        )
    }

    fn nodes(&self) -> (StatusCode, serde_json::Value) {
        let nodes: Vec<NodeView> = self.cluster.nodes().iter().map(|n| self.view(n)).collect();
        (StatusCode::OK, json!({"nodes": nodes}))
    }

    fn view(&self, node: &Node<Executor>) -> NodeView {
        NodeView {
            id: node.id(),
            address: node.address().to_string(),
            up: node.is_up(),
            connections: node.connection_count(),
            fault_rules: node.faults().rules().len(),
            prepared_statements: self.cluster.handler().prepared_cache(node.id()).len(),
        }
    }

    fn node(&self, id: &str) -> Result<&Node<Executor>, ApiError> {
        let n: usize = id.parse().map_err(|_| ApiError::BadNodeId(id.to_owned()))?;
        let nodes = self.cluster.nodes();
        nodes.get(n).ok_or(ApiError::UnknownNode {
            id: n,
            nodes: nodes.len(),
        })
    }

    async fn add_rule(&self, node: &Node<Executor>, req: Request<Incoming>) -> Reply {
        let body = read_body(req).await?;
        let body: RuleBody =
            serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
        let rule = body.into_rule()?;
        if node.faults().rules().len() >= MAX_RULES {
            return Err(ApiError::TooManyRules { node: node.id() });
        }
        let id = node
            .faults()
            .add_times(rule.matcher, rule.action, rule.times);
        tracing::info!(node = node.id(), rule = id.get(), "fault rule added");
        Ok((StatusCode::CREATED, json!({"id": id.get()})))
    }

    fn dump(&self, keyspace: &str, table: &str, query: Option<&str>) -> Reply {
        let keyspace = percent_decode(keyspace)?;
        let table = percent_decode(table)?;
        let limit = limit(query)?;
        let def = self
            .cluster
            .handler()
            .table_def(&keyspace, &table)
            .ok_or(ApiError::UnknownTable { keyspace, table })?;
        // One more than asked, so `truncated` is exact.
        let entries = self.cluster.handler().store().dump_first(&def, limit + 1);
        Ok((StatusCode::OK, json!(TableDump::new(&def, entries, limit))))
    }
}

fn rules(node: &Node<Executor>) -> serde_json::Value {
    let rules: Vec<RuleView> = node.faults().rules().iter().map(RuleView::new).collect();
    json!({"rules": rules})
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    http::read_body(req, MAX_BODY).await.map_err(|e| match e {
        BodyError::TooLarge { .. } => ApiError::BodyTooLarge,
        other => ApiError::Body(other.to_string()),
    })
}

/// The `limit` query parameter of the table dump.
fn limit(query: Option<&str>) -> Result<usize, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "limit" {
            return Err(ApiError::UnknownParameter(name.to_owned(), "limit"));
        }
        limit = value
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::BadLimit(value.to_owned()))?;
    }
    Ok(limit)
}

/// Decodes `%XX` escapes in a path segment (a quoted CQL name may hold any character).
fn percent_decode(segment: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadPath(segment.to_owned());
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

impl Handler for Api {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.answer(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("ks").ok(), Some("ks".to_owned()));
        assert_eq!(
            percent_decode("My%20Table").ok(),
            Some("My Table".to_owned())
        );
        assert!(percent_decode("bad%2").is_err());
        assert!(percent_decode("bad%zz").is_err());
        assert!(percent_decode("%ff").is_err(), "not UTF-8");
    }

    #[test]
    fn limit_parameter() {
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(limit(Some("limit=5")).ok(), Some(5));
        assert!(matches!(limit(Some("limit=0")), Err(ApiError::BadLimit(_))));
        assert!(matches!(
            limit(Some(&format!("limit={}", MAX_LIMIT + 1))),
            Err(ApiError::BadLimit(_))
        ));
        assert!(matches!(
            limit(Some("limt=5")),
            Err(ApiError::UnknownParameter(..))
        ));
    }
}
