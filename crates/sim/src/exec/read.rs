//! SELECT: system keyspaces are answered from virtual tables, user tables through a store
//! [`ReadCommand`] built from the WHERE clause, with the selection (columns, `writetime()`,
//! `ttl()`, `token()`, `count`) applied to each returned row and paging carried across requests.

use bytes::Bytes;
use ferry_cql::request::Values;
use ferry_cql::response::ResultBody;
use ferry_cql::response::result::{ColumnSpec, RowsBuilder, RowsMetadata};
use ferry_cql::types::{ColumnType, CqlValue, encode_value};

use crate::cql::{Bound, Order, Select, Selection, SelectorExpr, TermContext, term_to_value};
use crate::schema::{ClusteringOrder, ColumnDef, ColumnKind, TableDef};
use crate::server::{NodeInfo, RequestContext};
use crate::store::read::{CellRef, RowRef};
use crate::store::{PagingState, ReadCommand, Row};

use super::catalog_view;
use super::error::ExecError;
use super::executor::{Executor, PreparedStatement, RunOptions};
use super::prepared::result_metadata_id;
use super::restrict;
use super::schema_tables;
use super::select_virtual::select_virtual;
use super::size_estimates;
use super::system_tables::{self, ClusterView, NodeView};
use super::virtual_table::VirtualTable;

/// One output column of a SELECT on a stored table.
#[derive(Debug, Clone)]
enum Output {
    Column(ColumnDef),
    WriteTime(ColumnDef),
    Ttl(ColumnDef),
    Token,
    Count,
}

fn node_view(n: &NodeInfo) -> NodeView {
    NodeView {
        address: n.address,
        host_id: n.host_id,
        data_center: n.data_center.clone(),
        rack: n.rack.clone(),
        tokens: n.tokens.clone(),
        release_version: n.release_version.clone(),
    }
}

fn per_element(col: &ColumnDef) -> bool {
    col.is_multi_cell()
}

impl Executor {
    /// The virtual table `keyspace.name`, if the simulator answers it itself.
    pub(super) fn virtual_table(
        &self,
        ctx: &RequestContext,
        keyspace: &str,
        name: &str,
    ) -> Option<VirtualTable> {
        let catalog = self.catalog();
        let cluster = ClusterView {
            cluster_name: "Test Cluster".into(),
            schema_version: catalog.schema_version(),
        };
        let local = node_view(&ctx.node);
        let all: Vec<NodeView> = ctx.cluster.nodes.iter().map(|n| node_view(n)).collect();
        let text = |n: &str| (n.to_owned(), ColumnType::Varchar);
        Some(match (keyspace, name) {
            ("system", "local") => system_tables::local(&local, &cluster),
            ("system", "peers") => system_tables::peers(&local, &all, &cluster),
            ("system", "peers_v2") => system_tables::peers_v2(&local, &all, &cluster),
            ("system", "size_estimates" | "table_estimates") => {
                let ring: Vec<i64> = all.iter().flat_map(|n| n.tokens.iter().copied()).collect();
                let ranges = size_estimates::primary_ranges(&local.tokens, &ring);
                let tables: Vec<&TableDef> = catalog
                    .keyspaces()
                    .flat_map(|k| k.tables.values().map(|t| &**t))
                    .collect();
                if name == "size_estimates" {
                    size_estimates::size_estimates(&self.store, &tables, &ranges)
                } else {
                    size_estimates::table_estimates(&self.store, &tables, &ranges)
                }
            }
            ("system_schema", "keyspaces") => {
                schema_tables::keyspaces(&catalog_view::keyspaces(&catalog))
            }
            ("system_schema", "tables") => schema_tables::tables(&catalog_view::tables(&catalog)),
            ("system_schema", "columns") => {
                schema_tables::columns(&catalog_view::columns(&catalog))
            }
            ("system_schema", "types") => schema_tables::types(&catalog_view::types(&catalog)),
            ("system_schema", other) => schema_tables::empty_tables()
                .into_iter()
                .find(|t| t.name == other)?,
            ("system_virtual_schema", "keyspaces") => VirtualTable {
                keyspace: keyspace.into(),
                name: name.into(),
                columns: vec![text("keyspace_name")],
                rows: vec![],
            },
            ("system_virtual_schema", "tables") => VirtualTable {
                keyspace: keyspace.into(),
                name: name.into(),
                columns: vec![text("keyspace_name"), text("table_name"), text("comment")],
                rows: vec![],
            },
            ("system_virtual_schema", "columns") => VirtualTable {
                keyspace: keyspace.into(),
                name: name.into(),
                columns: vec![
                    text("keyspace_name"),
                    text("table_name"),
                    text("column_name"),
                    text("clustering_order"),
                    ("column_name_bytes".into(), ColumnType::Blob),
                    text("kind"),
                    ("position".into(), ColumnType::Int),
                    text("type"),
                ],
                rows: vec![],
            },
            _ => return None,
        })
    }

    fn outputs(def: &TableDef, select: &Select) -> Result<Vec<(String, Output)>, ExecError> {
        let col = |name: &str| {
            def.column(name).cloned().ok_or_else(|| {
                ExecError::invalid(format!("Undefined column name {name} in selection clause"))
            })
        };
        match &select.selection {
            Selection::Star => Ok(def.columns().map(|c| (c.name.clone(), Output::Column(c.clone()))).collect()),
            Selection::Selectors(selectors) => selectors
                .iter()
                .map(|s| {
                    let out = match &s.expr {
                        SelectorExpr::Column(n) => Output::Column(col(n)?),
                        SelectorExpr::WriteTime(n) | SelectorExpr::MaxWriteTime(n) => {
                            let c = col(n)?;
                            if c.is_primary_key() {
                                return Err(ExecError::invalid(format!("Cannot use selection function writeTime on PRIMARY KEY part {n}")));
                            }
                            Output::WriteTime(c)
                        }
                        SelectorExpr::Ttl(n) => {
                            let c = col(n)?;
                            if c.is_primary_key() {
                                return Err(ExecError::invalid(format!("Cannot use selection function ttl on PRIMARY KEY part {n}")));
                            }
                            Output::Ttl(c)
                        }
                        SelectorExpr::CountRows => Output::Count,
                        SelectorExpr::Function { name, .. } if name.name == "count" => Output::Count,
                        SelectorExpr::Function { name, .. } if name.name == "token" => Output::Token,
                        other => return Err(ExecError::invalid(format!("Selector {} is not supported by the simulator", other.column_name()))),
                    };
                    Ok((s.alias.clone().unwrap_or_else(|| s.expr.column_name()), out))
                })
                .collect(),
        }
    }

    fn output_spec(def: &TableDef, name: &str, out: &Output) -> ColumnSpec {
        let ty = match out {
            Output::Column(c) => c.ty.clone(),
            Output::WriteTime(c) if per_element(c) => {
                ColumnType::List(Box::new(ColumnType::Bigint))
            }
            Output::Ttl(c) if per_element(c) => ColumnType::List(Box::new(ColumnType::Int)),
            Output::WriteTime(_) | Output::Token | Output::Count => ColumnType::Bigint,
            Output::Ttl(_) => ColumnType::Int,
        };
        ColumnSpec::new(&def.keyspace, &def.name, name, ty)
    }

    /// The result columns of a SELECT, for PREPARE.
    pub(super) fn select_columns(
        &self,
        ctx: &RequestContext,
        ctx_keyspace: Option<&str>,
        select: &Select,
    ) -> Result<Vec<ColumnSpec>, ExecError> {
        let ks = select.table.keyspace.as_deref().or(ctx_keyspace);
        if let Some(k) = ks.filter(|k| catalog_view::SYSTEM_KEYSPACES.contains(k)) {
            let table = self
                .virtual_table(ctx, k, &select.table.name)
                .ok_or_else(|| {
                    ExecError::invalid(format!("table {} does not exist", select.table.name))
                })?;
            return Ok(table.result_columns(&super::select_virtual::projection(&table, select)?)?);
        }
        let def = self.table(
            select.table.keyspace.as_deref(),
            &select.table.name,
            ctx_keyspace,
        )?;
        Ok(Self::outputs(&def, select)?
            .iter()
            .map(|(n, o)| Self::output_spec(&def, n, o))
            .collect())
    }

    pub(super) fn select(
        &self,
        ctx: &RequestContext,
        select: &Select,
        values: &Values,
        opts: &RunOptions,
        _prepared: Option<&PreparedStatement>,
    ) -> Result<ResultBody, ExecError> {
        let keyspace = select
            .table
            .keyspace
            .clone()
            .or_else(|| opts.keyspace.clone());
        if let Some(ks) = keyspace
            .as_deref()
            .filter(|k| catalog_view::SYSTEM_KEYSPACES.contains(k))
        {
            let table = self
                .virtual_table(ctx, ks, &select.table.name)
                .ok_or_else(|| {
                    ExecError::invalid(format!("table {} does not exist", select.table.name))
                })?;
            let mut ids = self.ids();
            let rows = select_virtual(&table, select, values, self.store.now_micros(), &mut ids)?;
            return Ok(ResultBody::Rows(rows));
        }
        let def = self.table(
            select.table.keyspace.as_deref(),
            &select.table.name,
            opts.keyspace.as_deref(),
        )?;
        let outputs = Self::outputs(&def, select)?;
        let mut ids = self.ids();
        let mut tctx = TermContext {
            values,
            now_micros: self.store.now_micros(),
            ids: &mut ids,
        };
        let r = restrict::analyse(&def, &select.where_, &mut tctx)?;
        if !r.filters.is_empty() && !select.allow_filtering {
            return Err(ExecError::invalid(
                "Cannot execute this query as it might involve data filtering and thus may have unpredictable performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING",
            ));
        }
        let positive = |t: &Option<crate::cql::Term>,
                        what: &str,
                        ctx: &mut TermContext<'_>|
         -> Result<Option<u32>, ExecError> {
            match t {
                None => Ok(None),
                Some(t) => match term_to_value(t, what, &ColumnType::Int, ctx)? {
                    Bound::Value(CqlValue::Int(n)) if n > 0 => Ok(Some(n as u32)),
                    Bound::Unset => Ok(None),
                    _ => Err(ExecError::invalid(format!(
                        "{what} must be strictly positive"
                    ))),
                },
            }
        };
        let limit = positive(&select.limit, "LIMIT", &mut tctx)?;
        let per_partition_limit = positive(
            &select.per_partition_limit,
            "PER PARTITION LIMIT",
            &mut tctx,
        )?;
        let reversed = match select.order_by.first() {
            None => false,
            Some((name, order)) => {
                let (_, declared) = def.clustering.iter().find(|(c, _)| &c.name == name).ok_or_else(|| ExecError::invalid(format!("Order by is currently only supported on the clustered columns of the PRIMARY KEY, got {name}")))?;
                if r.partition_keys.is_none() {
                    return Err(ExecError::invalid(
                        "ORDER BY is only supported when the partition key is restricted by an EQ or an IN.",
                    ));
                }
                (*declared == ClusteringOrder::Desc) != (*order == Order::Desc)
            }
        };
        let aggregate = outputs.iter().any(|(_, o)| matches!(o, Output::Count));
        let only_static = outputs.iter().all(|(_, o)| match o {
            Output::Column(c) | Output::WriteTime(c) | Output::Ttl(c) => {
                matches!(c.kind, ColumnKind::PartitionKey(_) | ColumnKind::Static)
            }
            Output::Token => true,
            Output::Count => false,
        });
        let paging_state = match (&opts.paging_state, aggregate) {
            (Some(bytes), false) => Some(
                PagingState::decode(bytes)
                    .map_err(|e| ExecError::invalid(format!("Invalid paging state: {e}")))?,
            ),
            _ => None,
        };
        let cmd = ReadCommand {
            partitions: r.partitions(),
            clustering: r.clustering(),
            reversed,
            limit: if aggregate { None } else { limit },
            per_partition_limit,
            page_size: if aggregate {
                None
            } else {
                opts.page_size.map(|n| n as u32)
            },
            paging_state,
            // Selecting only partition key and static columns reads one row per partition.
            distinct: select.distinct
                || (only_static
                    && outputs
                        .iter()
                        .any(|(_, o)| matches!(o, Output::Column(c) if c.is_static()))),
            filter: restrict::row_filter(&def, &r.filters)?,
        };
        let specs: Vec<ColumnSpec> = outputs
            .iter()
            .map(|(n, o)| Self::output_spec(&def, n, o))
            .collect();
        let changed = opts.result_metadata_id.as_ref().and_then(|client| {
            let current = result_metadata_id(&specs);
            (client.as_ref() != current).then(|| Bytes::copy_from_slice(&current))
        });
        // Encodes the page's rows while they are still in the store (no copy of them first).
        let encode = |rows: &[RowRef<'_>],
                      paging_state: Option<PagingState>|
         -> Result<ResultBody, ExecError> {
            let mut metadata = RowsMetadata::new(specs);
            metadata.paging_state = paging_state.as_ref().map(PagingState::encode);
            // A client with stale metadata gets the new columns even if it asked to skip them.
            if opts.skip_metadata && changed.is_none() {
                metadata.columns = None;
            }
            metadata.new_metadata_id = changed;
            let mut builder = RowsBuilder::new(metadata);
            if aggregate {
                let count = rows.len() as i64;
                let first = rows.first().map(|r| r.to_row());
                let cells = outputs
                    .iter()
                    .map(|(_, o)| match o {
                        Output::Count => Ok(Some(count.to_be_bytes().to_vec())),
                        other => first
                            .as_ref()
                            .map(|row| cell(&def, row, other))
                            .transpose()
                            .map(Option::flatten),
                    })
                    .collect::<Result<Vec<_>, ExecError>>()?;
                builder
                    .push_row(cells.iter().map(|c| c.as_deref()))
                    .map_err(|e| ExecError::Server(e.to_string()))?;
            } else {
                // One buffer for a row's cells, reused: a scan row costs no allocation per cell.
                let mut buf: Vec<u8> = Vec::new();
                let mut cells: Vec<Option<std::ops::Range<usize>>> =
                    Vec::with_capacity(outputs.len());
                for row in rows {
                    buf.clear();
                    cells.clear();
                    for (_, o) in &outputs {
                        let start = buf.len();
                        let written = cell_into(&def, row, o, &mut buf)?;
                        cells.push(written.then_some(start..buf.len()));
                    }
                    builder
                        .push_row(cells.iter().map(|c| c.clone().map(|r| &buf[r])))
                        .map_err(|e| ExecError::Server(e.to_string()))?;
                }
            }
            Ok(ResultBody::Rows(builder.finish()))
        };
        if r.empty_token_range() {
            return encode(&[], None);
        }
        self.store
            .read_with(&def, &cmd, encode)
            .map_err(|e| ExecError::invalid(e.to_string()))?
    }
}

fn encoded(ty: &ColumnType, v: &CqlValue) -> Result<Vec<u8>, ExecError> {
    let mut b = Vec::new();
    encode_value(ty, v, &mut b).map_err(|e| ExecError::Server(e.to_string()))?;
    Ok(b)
}

/// Appends the bytes of one output cell of `row` to `out`; false when it is null. Keys and
/// single cells are copied straight from the store; the rest go through [`cell`].
fn cell_into(
    def: &TableDef,
    row: &RowRef<'_>,
    out: &Output,
    buf: &mut Vec<u8>,
) -> Result<bool, ExecError> {
    let bytes = match out {
        Output::Token => {
            buf.extend_from_slice(&row.token().to_be_bytes());
            return Ok(true);
        }
        Output::Column(c) => match c.kind {
            ColumnKind::PartitionKey(i) => row.partition_key(i),
            ColumnKind::Clustering(i) => row.clustering(i),
            _ => match row.cell(c) {
                CellRef::Cell { value, .. } => Some(value),
                CellRef::Null => None,
                CellRef::Elements => return owned_cell_into(def, row, out, buf),
            },
        },
        Output::WriteTime(c) if !per_element(c) => match row.cell(c) {
            CellRef::Cell { writetime, .. } => {
                buf.extend_from_slice(&writetime.to_be_bytes());
                return Ok(true);
            }
            CellRef::Null => None,
            CellRef::Elements => return owned_cell_into(def, row, out, buf),
        },
        Output::Ttl(c) if !per_element(c) => match row.cell(c) {
            CellRef::Cell { ttl: Some(t), .. } => {
                buf.extend_from_slice(&(t as i32).to_be_bytes());
                return Ok(true);
            }
            CellRef::Cell { ttl: None, .. } | CellRef::Null => None,
            CellRef::Elements => return owned_cell_into(def, row, out, buf),
        },
        _ => return owned_cell_into(def, row, out, buf),
    };
    match bytes {
        Some(b) => {
            buf.extend_from_slice(b);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// [`cell_into`] through a copy of the row: collections, UDTs and their per-element
/// `writetime()` / `ttl()` lists.
fn owned_cell_into(
    def: &TableDef,
    row: &RowRef<'_>,
    out: &Output,
    buf: &mut Vec<u8>,
) -> Result<bool, ExecError> {
    match cell(def, &row.to_row(), out)? {
        Some(b) => {
            buf.extend_from_slice(&b);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The bytes of one output cell of `row`.
fn cell(def: &TableDef, row: &Row, out: &Output) -> Result<Option<Vec<u8>>, ExecError> {
    Ok(match out {
        Output::Token => Some(row.token.to_be_bytes().to_vec()),
        Output::Count => None,
        Output::Column(c) => match c.kind {
            ColumnKind::PartitionKey(i) => row.partition_key.get(i).map(|b| b.to_vec()),
            ColumnKind::Clustering(i) => row
                .clustering
                .as_ref()
                .and_then(|ck| ck.get(i))
                .map(|b| b.to_vec()),
            _ => row.value(def, &c.name).map(|v| v.serialize(c).to_vec()),
        },
        Output::WriteTime(c) => match row.value(def, &c.name) {
            None => None,
            Some(v) if per_element(c) => {
                let list =
                    CqlValue::List(v.writetimes().into_iter().map(CqlValue::Bigint).collect());
                Some(encoded(
                    &ColumnType::List(Box::new(ColumnType::Bigint)),
                    &list,
                )?)
            }
            Some(v) => v.writetimes().first().map(|t| t.to_be_bytes().to_vec()),
        },
        Output::Ttl(c) => match row.value(def, &c.name) {
            None => None,
            Some(v) if per_element(c) => {
                let ttls = v.ttls();
                if ttls.iter().all(Option::is_none) {
                    None
                } else {
                    // Elements without a TTL have no value in the list; Cassandra shows null.
                    let list = CqlValue::List(
                        ttls.into_iter()
                            .map(|t| CqlValue::Int(t.map_or(0, |t| t as i32)))
                            .collect(),
                    );
                    Some(encoded(
                        &ColumnType::List(Box::new(ColumnType::Int)),
                        &list,
                    )?)
                }
            }
            Some(v) => v
                .ttls()
                .first()
                .copied()
                .flatten()
                .map(|t| (t as i32).to_be_bytes().to_vec()),
        },
    })
}
