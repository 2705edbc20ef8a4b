//! Schema statements (keyspaces, tables, types, TRUNCATE) and DESCRIBE. Each change answers with
//! a SCHEMA_CHANGE result and publishes the same change as an event to registered connections.

use ferry_cql::response::result::Rows;
use ferry_cql::response::{ChangeType, Event, ResultBody, SchemaChange, SchemaTarget};
use ferry_cql::types::ColumnType;

use crate::cql::{
    AlterTableAction, AlterTypeAction, ColumnDefinition, Describe, DescribeTarget,
    OptionValue as AstOption, Order, QualifiedName, Statement, TypeName,
};
use crate::schema::{
    AlterTable, AlterType, Catalog, ClusteringOrder, ColumnSpec, OptionValue, SchemaError,
    TableSpec,
};
use crate::server::RequestContext;

use super::catalog_view;
use super::describe;
use super::error::ExecError;
use super::executor::{Executor, RunOptions};
use super::virtual_table::{Projection, VirtualTable};

impl From<SchemaError> for ExecError {
    fn from(e: SchemaError) -> Self {
        match e {
            SchemaError::AlreadyExists {
                keyspace,
                table,
                message,
            } => ExecError::AlreadyExists {
                keyspace,
                table,
                message,
            },
            SchemaError::Invalid(m) => ExecError::Invalid(m),
            SchemaError::Configuration(m) => ExecError::Config(m),
            SchemaError::Syntax(m) => ExecError::Syntax(m),
        }
    }
}

fn option(v: &AstOption) -> OptionValue {
    match v {
        AstOption::String(s) => OptionValue::Text(s.clone()),
        AstOption::Number(n) => OptionValue::Number(n.clone()),
        AstOption::Bool(b) => OptionValue::Number(b.to_string()),
        AstOption::Map(m) => OptionValue::Map(m.clone()),
        AstOption::Other(o) => OptionValue::Text(o.clone()),
    }
}

fn options(v: &[(String, AstOption)]) -> Vec<(String, OptionValue)> {
    v.iter().map(|(k, v)| (k.clone(), option(v))).collect()
}

/// Resolves a type as written (UDT names looked up in `keyspace`).
fn resolve(
    catalog: &Catalog,
    keyspace: &str,
    ty: &TypeName,
) -> Result<(ColumnType, bool), ExecError> {
    ty.resolve(|name: &QualifiedName| {
        let ks = name.keyspace.as_deref().unwrap_or(keyspace);
        catalog.udt(ks, &name.name).map(|u| u.column_type())
    })
    .map_err(ExecError::Invalid)
}

fn column_specs(
    catalog: &Catalog,
    keyspace: &str,
    defs: &[ColumnDefinition],
) -> Result<Vec<ColumnSpec>, ExecError> {
    defs.iter()
        .map(|d| {
            let (ty, frozen) = resolve(catalog, keyspace, &d.ty)?;
            Ok(ColumnSpec {
                name: d.name.clone(),
                ty,
                frozen,
                is_static: d.is_static,
            })
        })
        .collect()
}

impl Executor {
    fn keyspace_of(name: &QualifiedName, opts: &RunOptions) -> Result<String, ExecError> {
        name.keyspace.clone().or_else(|| opts.keyspace.clone()).ok_or_else(|| {
            ExecError::invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
        })
    }

    /// Runs a schema statement; `None` from a step means nothing changed (IF [NOT] EXISTS).
    pub(super) fn schema_change(
        &self,
        ctx: &RequestContext,
        statement: &Statement,
        opts: &RunOptions,
    ) -> Result<ResultBody, ExecError> {
        let change = match statement {
            Statement::CreateKeyspace(k) => {
                if k.replication.is_empty() {
                    return Err(ExecError::Syntax(
                        "Missing mandatory option 'replication'".into(),
                    ));
                }
                let created = self.catalog_mut().create_keyspace(
                    &k.name,
                    &k.replication,
                    k.durable_writes.unwrap_or(true),
                    k.if_not_exists,
                )?;
                created.then(|| {
                    (
                        ChangeType::Created,
                        SchemaTarget::Keyspace {
                            keyspace: k.name.clone(),
                        },
                    )
                })
            }
            Statement::AlterKeyspace(k) => {
                let mut catalog = self.catalog_mut();
                if catalog.keyspace(&k.name).is_none() && k.if_exists {
                    None
                } else {
                    catalog.alter_keyspace(&k.name, k.replication.as_deref(), k.durable_writes)?;
                    Some((
                        ChangeType::Updated,
                        SchemaTarget::Keyspace {
                            keyspace: k.name.clone(),
                        },
                    ))
                }
            }
            Statement::DropKeyspace { name, if_exists } => {
                let dropped = self.catalog_mut().drop_keyspace(name, *if_exists)?;
                dropped.map(|ks| {
                    for t in ks.tables.values() {
                        self.store.drop_table(&t.id);
                    }
                    (
                        ChangeType::Dropped,
                        SchemaTarget::Keyspace {
                            keyspace: name.clone(),
                        },
                    )
                })
            }
            Statement::CreateTable(t) => {
                if t.compact_storage {
                    return Err(ExecError::invalid(
                        "COMPACT STORAGE tables are not supported starting with version 4.0",
                    ));
                }
                let keyspace = Self::keyspace_of(&t.name, opts)?;
                let mut catalog = self.catalog_mut();
                let columns = column_specs(&catalog, &keyspace, &t.columns)?;
                let clustering = t
                    .clustering_key
                    .iter()
                    .map(|c| {
                        let desc = t
                            .clustering_order
                            .iter()
                            .any(|(n, o)| n == c && *o == Order::Desc);
                        (
                            c.clone(),
                            if desc {
                                ClusteringOrder::Desc
                            } else {
                                ClusteringOrder::Asc
                            },
                        )
                    })
                    .collect();
                let spec = TableSpec {
                    keyspace: keyspace.clone(),
                    name: t.name.name.clone(),
                    columns,
                    partition_key: t.partition_key.clone(),
                    clustering,
                    options: options(&t.options),
                    id: None,
                };
                catalog.create_table(&spec, t.if_not_exists)?.map(|_| {
                    (
                        ChangeType::Created,
                        SchemaTarget::Table {
                            keyspace,
                            table: t.name.name.clone(),
                        },
                    )
                })
            }
            Statement::AlterTable(a) => {
                let keyspace = Self::keyspace_of(&a.table, opts)?;
                let mut catalog = self.catalog_mut();
                if catalog.table(&keyspace, &a.table.name).is_none() && a.if_exists {
                    None
                } else {
                    let change = match &a.action {
                        AlterTableAction::Add { columns, .. } => {
                            AlterTable::Add(column_specs(&catalog, &keyspace, columns)?)
                        }
                        AlterTableAction::Drop { columns, .. } => AlterTable::Drop(columns.clone()),
                        AlterTableAction::Rename { renames, .. } => {
                            AlterTable::Rename(renames.clone())
                        }
                        AlterTableAction::With(o) => AlterTable::With(options(o)),
                    };
                    let now = self.store.now_micros();
                    catalog.alter_table(&keyspace, &a.table.name, &change, now)?;
                    Some((
                        ChangeType::Updated,
                        SchemaTarget::Table {
                            keyspace,
                            table: a.table.name.clone(),
                        },
                    ))
                }
            }
            Statement::DropTable { name, if_exists } => {
                let keyspace = Self::keyspace_of(name, opts)?;
                let dropped = self
                    .catalog_mut()
                    .drop_table(&keyspace, &name.name, *if_exists)?;
                dropped.map(|t| {
                    self.store.drop_table(&t.id);
                    (
                        ChangeType::Dropped,
                        SchemaTarget::Table {
                            keyspace,
                            table: name.name.clone(),
                        },
                    )
                })
            }
            Statement::Truncate { table } => {
                let def = self.table(
                    table.keyspace.as_deref(),
                    &table.name,
                    opts.keyspace.as_deref(),
                )?;
                self.store.truncate(&def);
                return Ok(ResultBody::Void);
            }
            Statement::CreateType(t) => {
                let keyspace = Self::keyspace_of(&t.name, opts)?;
                let mut catalog = self.catalog_mut();
                let fields = t
                    .fields
                    .iter()
                    .map(|(n, ty)| Ok((n.clone(), resolve(&catalog, &keyspace, ty)?.0)))
                    .collect::<Result<Vec<_>, ExecError>>()?;
                catalog
                    .create_type(&keyspace, &t.name.name, &fields, t.if_not_exists)?
                    .then(|| {
                        (
                            ChangeType::Created,
                            SchemaTarget::Type {
                                keyspace,
                                name: t.name.name.clone(),
                            },
                        )
                    })
            }
            Statement::AlterType(t) => {
                let keyspace = Self::keyspace_of(&t.name, opts)?;
                let mut catalog = self.catalog_mut();
                let change = match &t.action {
                    AlterTypeAction::Add { field, ty, .. } => {
                        AlterType::Add(field.clone(), resolve(&catalog, &keyspace, ty)?.0)
                    }
                    AlterTypeAction::Rename { renames, .. } => AlterType::Rename(renames.clone()),
                };
                catalog.alter_type(&keyspace, &t.name.name, &change)?;
                Some((
                    ChangeType::Updated,
                    SchemaTarget::Type {
                        keyspace,
                        name: t.name.name.clone(),
                    },
                ))
            }
            Statement::DropType { name, if_exists } => {
                let keyspace = Self::keyspace_of(name, opts)?;
                self.catalog_mut()
                    .drop_type(&keyspace, &name.name, *if_exists)?
                    .then(|| {
                        (
                            ChangeType::Dropped,
                            SchemaTarget::Type {
                                keyspace,
                                name: name.name.clone(),
                            },
                        )
                    })
            }
            other => {
                return Err(ExecError::Server(format!(
                    "not a schema statement: {other:?}"
                )));
            }
        };
        match change {
            None => Ok(ResultBody::Void),
            Some((change_type, target)) => {
                let change = SchemaChange {
                    change_type,
                    target,
                };
                ctx.events.publish(Event::SchemaChange(change.clone()));
                Ok(ResultBody::SchemaChange(change))
            }
        }
    }

    /// Server-side DESCRIBE (what cqlsh 6 sends).
    pub(super) fn describe(
        &self,
        _ctx: &RequestContext,
        d: &Describe,
        opts: &RunOptions,
    ) -> Result<ResultBody, ExecError> {
        let catalog = self.catalog();
        let keyspaces = catalog_view::keyspaces(&catalog);
        let tables = catalog_view::tables(&catalog);
        let types = catalog_view::types(&catalog);
        let columns = catalog_view::columns(&catalog);
        let user_keyspaces: Vec<_> = keyspaces
            .iter()
            .filter(|k| !catalog_view::SYSTEM_KEYSPACES.contains(&k.name.as_str()))
            .cloned()
            .collect();
        let find_table = |name: &QualifiedName| -> Result<VirtualTable, ExecError> {
            let ks = Self::keyspace_of(name, opts)?;
            let t = tables
                .iter()
                .find(|t| t.keyspace == ks && t.name == name.name)
                .ok_or_else(|| {
                    ExecError::invalid(format!(
                        "Table '{}' not found in keyspace '{ks}'",
                        name.name
                    ))
                })?;
            Ok(describe::describe_table(t, &columns))
        };
        let table: VirtualTable = match &d.target {
            DescribeTarget::Keyspaces => describe::list_keyspaces(&keyspaces),
            DescribeTarget::Tables => describe::list_tables(&tables),
            DescribeTarget::Keyspace { name, .. } => {
                let ks = name
                    .clone()
                    .or_else(|| opts.keyspace.clone())
                    .ok_or_else(|| {
                        ExecError::invalid("No keyspace specified and no current keyspace")
                    })?;
                let k = keyspaces
                    .iter()
                    .find(|k| k.name == ks)
                    .ok_or_else(|| ExecError::invalid(format!("'{ks}' not found in keyspaces")))?;
                describe::describe_keyspace(k, &types, &tables, &columns)
            }
            DescribeTarget::Schema { .. } | DescribeTarget::Cluster => {
                let mut rows = Vec::new();
                let mut cols = Vec::new();
                for k in &user_keyspaces {
                    let d = describe::describe_keyspace(k, &types, &tables, &columns);
                    cols = d.columns.clone();
                    rows.extend(d.rows);
                }
                if cols.is_empty() {
                    cols = describe::list_keyspaces(&[]).columns;
                    cols.push(("create_statement".into(), ColumnType::Varchar));
                }
                VirtualTable {
                    keyspace: String::new(),
                    name: String::new(),
                    columns: cols,
                    rows,
                }
            }
            DescribeTarget::Table(name) => find_table(name)?,
            DescribeTarget::Type(name) => {
                let ks = Self::keyspace_of(name, opts)?;
                let t = types
                    .iter()
                    .find(|t| t.keyspace == ks && t.name == name.name)
                    .ok_or_else(|| {
                        ExecError::invalid(format!(
                            "User defined type '{}' not found in '{ks}'",
                            name.name
                        ))
                    })?;
                describe::describe_type(t)
            }
            DescribeTarget::Name(name) => {
                if name.keyspace.is_none()
                    && let Some(k) = keyspaces.iter().find(|k| k.name == name.name)
                {
                    return rows(describe::describe_keyspace(k, &types, &tables, &columns));
                }
                find_table(name)?
            }
            _ => {
                return Err(ExecError::invalid(
                    "This DESCRIBE form is not supported by the simulator",
                ));
            }
        };
        rows(table)
    }
}

fn rows(table: VirtualTable) -> Result<ResultBody, ExecError> {
    let rows: Rows = table.query(&Projection::Star, &[], None)?;
    Ok(ResultBody::Rows(rows))
}
