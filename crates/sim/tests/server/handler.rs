//! A test-only [`Handler`]: answers `system.local`, `system.peers` and `system.peers_v2` from the
//! topology with Cassandra 5.0's columns (projected to the selected ones, since typed drivers
//! check column counts), `USE ks` with Set_keyspace, PREPARE with a Prepared result, and any
//! `CREATE KEYSPACE k …` with a SCHEMA_CHANGE result and event, and any other statement with an
//! empty result. Statement text containing `slow` is held until the test (or a statement
//! containing `unblock`) releases it, so tests order answers by construction, not by timers;
//! `panic` panics.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_cql::message::{Request, Response};
use ferry_cql::response::result::{
    ColumnSpec, Prepared, PreparedMetadata, RowsBuilder, RowsMetadata,
};
use ferry_cql::response::{
    ChangeType, ErrorResponse, Event, ResultBody, SchemaChange, SchemaTarget,
};
use ferry_cql::types::{ColumnType, CqlValue, encode_value};
use ferry_sim::server::{Handler, NodeInfo, RequestContext};
use tokio::sync::watch;

/// The longest a `slow` request waits for its release: only a guard against a hung test, so a
/// server that wrongly waits for it before taking later requests fails instead of hanging.
pub(crate) const SLOW_LIMIT: Duration = Duration::from_secs(30);
pub(crate) const SCHEMA_VERSION: [u8; 16] = [
    0x59, 0xad, 0xb2, 0x4e, 0xf3, 0xcd, 0x3e, 0x02, 0x97, 0xf0, 0x5b, 0x39, 0x5f, 0x64, 0x4b, 0x79,
];

#[derive(Debug)]
pub(crate) struct TestHandler {
    /// Prepared id → statement text; EXECUTE answers as QUERY of the text would.
    prepared: Mutex<HashMap<Bytes, String>>,
    /// How many `slow` requests have begun, so a test knows one is in flight.
    slow_started: watch::Sender<usize>,
    /// Set once: every `slow` request, held or later, may answer.
    released: watch::Sender<bool>,
}

impl Default for TestHandler {
    fn default() -> Self {
        Self {
            prepared: Mutex::default(),
            slow_started: watch::Sender::new(0),
            released: watch::Sender::new(false),
        }
    }
}

impl TestHandler {
    /// Lets every `slow` request answer.
    pub(crate) fn release_slow(&self) {
        self.released.send_replace(true);
    }

    /// Waits until `n` `slow` requests have reached the handler.
    pub(crate) async fn slow_started(&self, n: usize) {
        let mut started = self.slow_started.subscribe();
        tokio::time::timeout(SLOW_LIMIT, started.wait_for(|s| *s >= n))
            .await
            .expect("the slow request reached the handler")
            .unwrap();
    }

    async fn answer(&self, ctx: &RequestContext, text: &str) -> Response {
        let lower = text.to_ascii_lowercase();
        if lower.contains("unblock") {
            self.release_slow();
        }
        if lower.contains("slow") {
            self.slow_started.send_modify(|n| *n += 1);
            let mut released = self.released.subscribe();
            let _ = tokio::time::timeout(SLOW_LIMIT, released.wait_for(|r| *r)).await;
        }
        answer(ctx, &lower).await
    }
}

impl Handler for TestHandler {
    async fn handle(&self, ctx: &RequestContext, request: Request) -> Response {
        match request {
            Request::Query(q) => self.answer(ctx, &q.query).await,
            Request::Execute(e) => {
                let text = self.prepared.lock().unwrap().get(&e.id).cloned();
                match text {
                    Some(text) => self.answer(ctx, &text).await,
                    None => Response::Error(ErrorResponse::unprepared(e.id.to_vec())),
                }
            }
            Request::Prepare(p) => {
                let mut h = DefaultHasher::new();
                p.query.hash(&mut h);
                let id = Bytes::copy_from_slice(&h.finish().to_be_bytes());
                self.prepared
                    .lock()
                    .unwrap()
                    .insert(id.clone(), p.query.clone());
                Response::Result(ResultBody::Prepared(Prepared {
                    id: id.clone(),
                    result_metadata_id: Some(id),
                    metadata: PreparedMetadata::new(Vec::new(), Vec::new()),
                    result_metadata: RowsMetadata::new(Vec::new()),
                }))
            }
            _ => Response::Result(ResultBody::Void),
        }
    }
}

/// The answer to `lower` (the statement text in lower case).
async fn answer(ctx: &RequestContext, lower: &str) -> Response {
    if lower.contains("panic") {
        panic!("test handler asked to panic");
    }
    if let Some(ks) = lower.trim().strip_prefix("use ") {
        return Response::Result(ResultBody::SetKeyspace(
            ks.trim_matches(|c| c == '"' || c == ';' || c == ' ')
                .to_owned(),
        ));
    }
    if let Some(ks) = lower.trim().strip_prefix("create keyspace ") {
        let change = SchemaChange::new(
            ChangeType::Created,
            SchemaTarget::Keyspace {
                keyspace: ks.split_whitespace().next().unwrap_or_default().to_owned(),
            },
        );
        ctx.events.publish(Event::SchemaChange(change.clone()));
        return Response::Result(ResultBody::SchemaChange(change));
    }
    if !lower.trim_start().starts_with("select") {
        return Response::Result(ResultBody::Void);
    }
    let (template, rows): (Vec<Column>, Vec<Vec<Column>>) = if lower.contains("system.local") {
        (local_row(ctx), vec![local_row(ctx)])
    } else if lower.contains("system.peers_v2") {
        (
            peer_row(&ctx.node, true),
            peers(ctx).map(|n| peer_row(n, true)).collect(),
        )
    } else if lower.contains("system.peers") {
        (
            peer_row(&ctx.node, false),
            peers(ctx).map(|n| peer_row(n, false)).collect(),
        )
    } else if let Some(rest) = lower.split("system_schema.").nth(1) {
        let table: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if table.starts_with("scylla_") {
            // As Cassandra: ScyllaDB's extra schema tables do not exist.
            return Response::Error(ErrorResponse::invalid(format!(
                "table {table} does not exist"
            )));
        }
        return project(
            lower,
            "system_schema",
            &table,
            schema_columns(lower),
            Vec::new(),
        );
    } else {
        return project(
            lower,
            "ks",
            "t",
            vec![("a", ColumnType::Varchar, None)],
            Vec::new(),
        );
    };
    let table = if lower.contains("system.local") {
        "local"
    } else if lower.contains("peers_v2") {
        "peers_v2"
    } else {
        "peers"
    };
    project(lower, "system", table, template, rows)
}

/// Columns for an (empty) `system_schema` result, typed from the selected names.
fn schema_columns(lower: &str) -> Vec<Column> {
    let selected = lower
        .trim_start()
        .strip_prefix("select")
        .and_then(|s| s.split(" from ").next())
        .unwrap_or_default();
    selected
        .split(',')
        .map(|c| c.trim())
        .filter_map(|c| {
            let name: &'static str = Box::leak(c.to_owned().into_boxed_str());
            let ty = match c {
                "replication" => {
                    ColumnType::Map(Box::new(ColumnType::Varchar), Box::new(ColumnType::Varchar))
                }
                "durable_writes" => ColumnType::Boolean,
                "field_names" | "field_types" => ColumnType::List(Box::new(ColumnType::Varchar)),
                "" | "*" => return None,
                _ => ColumnType::Varchar,
            };
            Some((name, ty, None))
        })
        .collect()
}

type Column = (&'static str, ColumnType, Option<CqlValue>);

fn peers(ctx: &RequestContext) -> impl Iterator<Item = &std::sync::Arc<NodeInfo>> {
    let me = ctx.node.id;
    ctx.cluster.nodes.iter().filter(move |n| n.id != me)
}

fn text(s: &str) -> Option<CqlValue> {
    Some(CqlValue::Text(s.to_owned()))
}

fn inet(ip: IpAddr) -> Option<CqlValue> {
    Some(CqlValue::Inet(ip))
}

fn tokens(n: &NodeInfo) -> Option<CqlValue> {
    Some(CqlValue::Set(
        n.tokens
            .iter()
            .map(|t| CqlValue::Text(t.to_string()))
            .collect(),
    ))
}

fn set_text() -> ColumnType {
    ColumnType::Set(Box::new(ColumnType::Varchar))
}

fn local_row(ctx: &RequestContext) -> Vec<Column> {
    let n = &ctx.node;
    let ip = n.address.ip();
    vec![
        ("key", ColumnType::Varchar, text("local")),
        ("bootstrapped", ColumnType::Varchar, text("COMPLETED")),
        ("broadcast_address", ColumnType::Inet, inet(ip)),
        ("broadcast_port", ColumnType::Int, Some(CqlValue::Int(7000))),
        (
            "cluster_name",
            ColumnType::Varchar,
            text(&ctx.cluster.cluster_name),
        ),
        ("cql_version", ColumnType::Varchar, text("3.4.7")),
        ("data_center", ColumnType::Varchar, text(&n.data_center)),
        ("host_id", ColumnType::Uuid, Some(CqlValue::Uuid(n.host_id))),
        ("listen_address", ColumnType::Inet, inet(ip)),
        ("listen_port", ColumnType::Int, Some(CqlValue::Int(7000))),
        ("native_protocol_version", ColumnType::Varchar, text("5")),
        (
            "partitioner",
            ColumnType::Varchar,
            text("org.apache.cassandra.dht.Murmur3Partitioner"),
        ),
        ("rack", ColumnType::Varchar, text(&n.rack)),
        (
            "release_version",
            ColumnType::Varchar,
            text(&n.release_version),
        ),
        ("rpc_address", ColumnType::Inet, inet(ip)),
        (
            "rpc_port",
            ColumnType::Int,
            Some(CqlValue::Int(i32::from(n.address.port()))),
        ),
        (
            "schema_version",
            ColumnType::Uuid,
            Some(CqlValue::Uuid(SCHEMA_VERSION)),
        ),
        ("tokens", set_text(), tokens(n)),
    ]
}

fn peer_row(n: &NodeInfo, v2: bool) -> Vec<Column> {
    let ip = n.address.ip();
    let mut row = vec![
        ("peer", ColumnType::Inet, inet(ip)),
        ("data_center", ColumnType::Varchar, text(&n.data_center)),
        ("host_id", ColumnType::Uuid, Some(CqlValue::Uuid(n.host_id))),
        ("preferred_ip", ColumnType::Inet, None),
        ("rack", ColumnType::Varchar, text(&n.rack)),
        (
            "release_version",
            ColumnType::Varchar,
            text(&n.release_version),
        ),
        (
            "schema_version",
            ColumnType::Uuid,
            Some(CqlValue::Uuid(SCHEMA_VERSION)),
        ),
        ("tokens", set_text(), tokens(n)),
    ];
    if v2 {
        row.insert(1, ("peer_port", ColumnType::Int, Some(CqlValue::Int(7000))));
        row.push(("native_address", ColumnType::Inet, inet(ip)));
        row.push((
            "native_port",
            ColumnType::Int,
            Some(CqlValue::Int(i32::from(n.address.port()))),
        ));
        row.push(("preferred_port", ColumnType::Int, None));
    } else {
        row.push(("rpc_address", ColumnType::Inet, inet(ip)));
    }
    row
}

/// Builds a Rows result with the columns of `template` that the statement selects (`*` keeps
/// all), filled from `rows`.
fn project(
    lower: &str,
    ks: &str,
    table: &str,
    template: Vec<Column>,
    rows: Vec<Vec<Column>>,
) -> Response {
    let selected: Vec<String> = lower
        .trim_start()
        .strip_prefix("select")
        .and_then(|s| s.split(" from ").next())
        .map(|s| s.split(',').map(|c| c.trim().to_owned()).collect())
        .unwrap_or_default();
    let mut indexes: Vec<usize> = selected
        .iter()
        .filter_map(|s| template.iter().position(|(name, _, _)| name == s))
        .collect();
    // `*`, or nothing known selected: all columns (the Python driver's row parser rejects a
    // Rows result without columns).
    if indexes.is_empty() || selected.iter().any(|s| s == "*") {
        indexes = (0..template.len()).collect();
    }
    let specs: Vec<ColumnSpec> = indexes
        .iter()
        .map(|&i| ColumnSpec::new(ks, table, template[i].0, template[i].1.clone()))
        .collect();
    let mut builder = RowsBuilder::new(RowsMetadata::new(specs));
    {
        for row in &rows {
            let cells: Vec<Option<Vec<u8>>> = indexes
                .iter()
                .map(|&i| {
                    row[i].2.as_ref().map(|v| {
                        let mut buf = BytesMut::new();
                        encode_value(&row[i].1, v, &mut buf).unwrap();
                        buf.to_vec()
                    })
                })
                .collect();
            builder
                .push_row(cells.iter().map(|c| c.as_deref()))
                .unwrap();
        }
    }
    Response::Result(ResultBody::Rows(builder.finish()))
}
