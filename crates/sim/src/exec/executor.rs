//! The [`Executor`]: the [`Handler`] behind every node. It owns the schema catalog, the data store
//! and each node's prepared statements, and runs parsed statements against them.
//!
//! ```text
//!  QUERY ──parse──┐
//!  EXECUTE ─cache─┼─► Statement ─► run() ─┬─ USE / DDL ───────► catalog (+ SCHEMA_CHANGE event)
//!  BATCH ─────────┘   + values            ├─ INSERT/UPDATE/DELETE ─► mutations ─► store
//!  PREPARE ─parse─► bind markers' receivers├─ SELECT ─┬─ system.* / system_schema.* (virtual)
//!                   + result metadata      │          └─ ReadCommand ─► store ─► Rows (+ paging)
//!                   ─► per-node cache      └─ DESCRIBE ─► CREATE statements
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use ferry_cql::message::{Request, Response};
use ferry_cql::request::{Batch, BatchStatement, Execute, Prepare, Query, QueryParameters, Values};
use ferry_cql::response::ResultBody;
use ferry_cql::response::result::{ColumnSpec, Prepared, PreparedMetadata, RowsMetadata};

use crate::cql::{IdGenerator, Parsed, Statement, parse_with_markers};
use crate::schema::{Catalog, TableDef};
use crate::server::{Handler, RequestContext};
use crate::store::Store;

use super::error::ExecError;
use super::prepared::{PreparedCache, result_metadata_id, statement_id};

/// Prepared statements kept per node before the least recently used is evicted.
const PREPARED_CACHE_CAPACITY: usize = 10_000;

/// A prepared statement as a node keeps it.
#[derive(Debug)]
pub struct PreparedStatement {
    pub query: String,
    /// The keyspace the statement was prepared in (for unqualified tables).
    pub keyspace: Option<String>,
    pub parsed: Parsed,
    /// The bind variables' receivers, in marker order.
    pub variables: Vec<ColumnSpec>,
    pub pk_indexes: Vec<u16>,
    /// The SELECT result columns (empty for other statements).
    pub result_columns: Vec<ColumnSpec>,
}

/// A protocol BATCH child's statement: parsed from its text, or a cached prepared statement.
#[derive(Debug)]
enum BatchChild {
    Parsed(Box<Statement>),
    Prepared(Arc<PreparedStatement>),
}

/// Options a statement runs with, from the request's parameters.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The connection keyspace, or the request's (v5) keyspace.
    pub keyspace: Option<String>,
    pub default_timestamp: Option<i64>,
    pub page_size: Option<i32>,
    pub paging_state: Option<Bytes>,
    pub skip_metadata: bool,
}

impl RunOptions {
    fn from_params(ctx: &RequestContext, params: &QueryParameters) -> Self {
        Self {
            keyspace: params.keyspace.clone().or_else(|| ctx.keyspace.clone()),
            default_timestamp: params.default_timestamp,
            page_size: params.page_size.filter(|n| *n > 0),
            paging_state: params.paging_state.clone(),
            skip_metadata: params.skip_metadata,
        }
    }
}

/// Runs statements for every node of a simulated cluster.
#[derive(Debug)]
pub struct Executor {
    pub(super) catalog: RwLock<Catalog>,
    pub(super) store: Store,
    /// Per node (keyed by node id): prepared statements are node-local, as in Cassandra.
    prepared: Mutex<HashMap<usize, Arc<PreparedCache<PreparedStatement>>>>,
    /// Timeuuids and uuids for `now()` / `uuid()`.
    pub(super) ids: Mutex<IdGenerator>,
}

impl Default for Executor {
    fn default() -> Self {
        Self::new(Store::with_system_clock())
    }
}

impl Executor {
    pub fn new(store: Store) -> Self {
        Self {
            catalog: RwLock::new(Catalog::new()),
            store,
            prepared: Mutex::new(HashMap::new()),
            ids: Mutex::new(IdGenerator::new(0x5eed)),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    // A panic while a lock is held cannot leave the catalog half-changed (every change is one
    // call on it), so poisoned locks are recovered instead of failing every later request.
    pub(super) fn catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn catalog_mut(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A table's current definition, by its exact (normalized) keyspace and table names.
    pub fn table_def(&self, keyspace: &str, table: &str) -> Option<Arc<TableDef>> {
        self.catalog().table(keyspace, table).cloned()
    }

    /// A node's prepared-statement cache.
    pub fn prepared_cache(&self, node: usize) -> Arc<PreparedCache<PreparedStatement>> {
        let mut all = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(node)
            .or_insert_with(|| Arc::new(PreparedCache::new(PREPARED_CACHE_CAPACITY)))
            .clone()
    }

    /// Forgets a node's prepared statements (fault injection).
    pub fn clear_prepared(&self, node: usize) {
        self.prepared_cache(node).clear();
    }

    /// The table a statement names, resolving an unqualified name in the session keyspace.
    pub(super) fn table(
        &self,
        keyspace: Option<&str>,
        name: &str,
        session: Option<&str>,
    ) -> Result<Arc<TableDef>, ExecError> {
        let ks = keyspace.or(session).ok_or_else(|| {
            ExecError::invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
        })?;
        let catalog = self.catalog();
        if catalog.keyspace(ks).is_none() {
            return Err(ExecError::invalid(format!("keyspace {ks} does not exist")));
        }
        catalog
            .table(ks, name)
            .cloned()
            .ok_or_else(|| ExecError::invalid(format!("table {name} does not exist")))
    }

    fn query(&self, ctx: &RequestContext, q: &Query) -> Result<ResultBody, ExecError> {
        let parsed = parse_with_markers(&q.query)?;
        let opts = RunOptions::from_params(ctx, &q.params);
        self.run(ctx, &parsed.statement, &q.params.values, &opts, None)
    }

    fn prepare(&self, ctx: &RequestContext, p: &Prepare) -> Result<ResultBody, ExecError> {
        let parsed = parse_with_markers(&p.query)?;
        let keyspace = p.keyspace.clone().or_else(|| ctx.keyspace.clone());
        let bound = self.bind_variables(ctx, &parsed, keyspace.as_deref())?;
        // Cassandra 4+ hashes with the session keyspace only when the statement needs it.
        let id_keyspace = if bound.fully_qualified {
            None
        } else {
            keyspace.as_deref()
        };
        let id = statement_id(&p.query, id_keyspace);
        let result_columns = bound.result_columns.clone();
        let entry = PreparedStatement {
            query: p.query.clone(),
            keyspace,
            parsed,
            variables: bound.variables.clone(),
            pk_indexes: bound.pk_indexes.clone(),
            result_columns: result_columns.clone(),
        };
        self.prepared_cache(ctx.node.id).insert(id, Arc::new(entry));
        Ok(ResultBody::Prepared(Prepared {
            id: Bytes::copy_from_slice(&id),
            result_metadata_id: Some(Bytes::copy_from_slice(&result_metadata_id(&result_columns))),
            metadata: PreparedMetadata::new(bound.variables, bound.pk_indexes),
            result_metadata: if result_columns.is_empty() {
                RowsMetadata {
                    columns_count: 0,
                    paging_state: None,
                    new_metadata_id: None,
                    columns: Some(Vec::new()),
                    global_table_spec: false,
                }
            } else {
                RowsMetadata::new(result_columns)
            },
        }))
    }

    fn execute(&self, ctx: &RequestContext, e: &Execute) -> Result<Response, ExecError> {
        let Some(entry) = self.prepared_cache(ctx.node.id).get(&e.id) else {
            return Ok(Response::Error(
                ferry_cql::response::ErrorResponse::unprepared(e.id.to_vec()),
            ));
        };
        let mut opts = RunOptions::from_params(ctx, &e.params);
        opts.keyspace = e
            .params
            .keyspace
            .clone()
            .or_else(|| entry.keyspace.clone())
            .or(opts.keyspace);
        self.run(
            ctx,
            &entry.parsed.statement,
            &e.params.values,
            &opts,
            Some(&entry),
        )
        .map(Response::Result)
    }

    fn batch(&self, ctx: &RequestContext, b: &Batch) -> Result<Response, ExecError> {
        let opts = RunOptions {
            keyspace: b.keyspace.clone().or_else(|| ctx.keyspace.clone()),
            default_timestamp: b.default_timestamp,
            ..RunOptions::default()
        };
        let cache = self.prepared_cache(ctx.node.id);
        // Text children are parsed here; prepared ones are borrowed from the cache, not copied.
        let mut owned = Vec::with_capacity(b.children.len());
        for child in &b.children {
            owned.push(match &child.statement {
                BatchStatement::Query(text) => {
                    BatchChild::Parsed(Box::new(parse_with_markers(text)?.statement))
                }
                BatchStatement::Prepared(id) => match cache.get(id) {
                    Some(entry) => BatchChild::Prepared(entry),
                    None => {
                        return Ok(Response::Error(
                            ferry_cql::response::ErrorResponse::unprepared(id.to_vec()),
                        ));
                    }
                },
            });
        }
        let children: Vec<(&Statement, Option<&str>, &Values)> = owned
            .iter()
            .zip(&b.children)
            .map(|(o, c)| match o {
                BatchChild::Parsed(s) => (&**s, None, &c.values),
                BatchChild::Prepared(e) => (&e.parsed.statement, e.keyspace.as_deref(), &c.values),
            })
            .collect();
        let counter = b.batch_type == ferry_cql::request::BatchType::Counter;
        self.run_batch(ctx, &children, counter, &opts)
            .map(Response::Result)
    }

    /// Runs one statement.
    pub(super) fn run(
        &self,
        ctx: &RequestContext,
        statement: &Statement,
        values: &Values,
        opts: &RunOptions,
        prepared: Option<&PreparedStatement>,
    ) -> Result<ResultBody, ExecError> {
        match statement {
            Statement::Use(ks) => {
                if self.catalog().keyspace(ks).is_none()
                    && !super::catalog_view::SYSTEM_KEYSPACES.contains(&ks.as_str())
                {
                    return Err(ExecError::invalid(format!(
                        "Keyspace '{ks}' does not exist"
                    )));
                }
                Ok(ResultBody::SetKeyspace(ks.clone()))
            }
            Statement::Select(select) => self.select(ctx, select, values, opts, prepared),
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                self.write(statement, values, opts, None)
            }
            Statement::Batch(batch) => {
                let children: Vec<(&Statement, Option<&str>, &Values)> =
                    batch.statements.iter().map(|s| (s, None, values)).collect();
                let counter = batch.kind == crate::cql::BatchKind::Counter;
                let mut opts = opts.clone();
                if let Some(ts) = &batch.using.timestamp {
                    opts.default_timestamp = Some(self.using_timestamp(ts, values)?);
                }
                self.run_batch(ctx, &children, counter, &opts)
            }
            Statement::Describe(d) => self.describe(ctx, d, opts),
            Statement::Auth { text, .. } => Err(ExecError::Unauthorized(format!(
                "The simulator has no role management; refused: {text}"
            ))),
            Statement::Unsupported { what, .. } => Err(ExecError::invalid(format!(
                "{what} are not supported by the simulator"
            ))),
            Statement::CreateIndex(_) | Statement::DropIndex { .. } => Err(ExecError::invalid(
                "Secondary indexes are not supported by the simulator",
            )),
            ddl => self.schema_change(ctx, ddl, opts),
        }
    }
}

impl Handler for Executor {
    async fn handle(&self, ctx: &RequestContext, request: Request) -> Response {
        let result = match &request {
            Request::Query(q) => self.query(ctx, q).map(Response::Result),
            Request::Prepare(p) => self.prepare(ctx, p).map(Response::Result),
            Request::Execute(e) => self.execute(ctx, e),
            Request::Batch(b) => self.batch(ctx, b),
            other => Err(ExecError::Server(format!(
                "{:?} is not a statement",
                other.opcode()
            ))),
        };
        result.unwrap_or_else(|e| Response::Error(e.to_response()))
    }
}
