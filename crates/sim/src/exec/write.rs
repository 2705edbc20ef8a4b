//! INSERT, UPDATE, DELETE and batches: statements and bound values become store mutations, each
//! operation stamped with the statement's timestamp (USING TIMESTAMP, else the protocol's default
//! timestamp, else server time) and TTL (USING TTL, else the table's default).

use std::sync::Arc;

use ferry_cql::request::Values;
use ferry_cql::response::ResultBody;
use ferry_cql::response::result::{ColumnSpec, Rows, RowsBuilder, RowsMetadata};
use ferry_cql::types::{ColumnType, CqlValue, encode_value};

use crate::cql::{
    Assignment, Bound, Condition as AstCondition, DeleteTarget, InsertValues, Operator, Statement,
    Term, TermContext, Using, term_to_value,
};
use crate::schema::{ColumnDef, ColumnKind, TableDef};
use crate::server::RequestContext;
use crate::store::{
    ColumnCondition, CondOp, Condition, LwtResult, Mutation, Op, WriteError, WriteTime,
};

use super::error::ExecError;
use super::executor::{Executor, RunOptions};
use super::restrict;

impl From<WriteError> for ExecError {
    fn from(e: WriteError) -> Self {
        ExecError::Invalid(e.to_string())
    }
}

/// A statement turned into mutations, with its condition if it is a lightweight transaction.
struct Planned {
    table: Arc<TableDef>,
    mutations: Vec<Mutation>,
    condition: Option<Condition>,
}

fn value(
    term: &Term,
    col: &ColumnDef,
    ty: &ColumnType,
    ctx: &mut TermContext<'_>,
) -> Result<Bound, ExecError> {
    Ok(term_to_value(term, &col.name, ty, ctx)?)
}

fn element_type(ty: &ColumnType) -> ColumnType {
    match ty {
        ColumnType::List(e) | ColumnType::Set(e) => (**e).clone(),
        ColumnType::Map(_, v) => (**v).clone(),
        other => other.clone(),
    }
}

fn items(v: Bound) -> Vec<CqlValue> {
    match v {
        Bound::Value(CqlValue::List(i) | CqlValue::Set(i)) => i,
        Bound::Value(CqlValue::Map(entries)) => entries.into_iter().map(|(k, _)| k).collect(),
        _ => Vec::new(),
    }
}

impl Executor {
    pub(super) fn using_timestamp(&self, term: &Term, values: &Values) -> Result<i64, ExecError> {
        let mut ids = self.ids();
        let mut ctx = TermContext {
            values,
            now_micros: self.store.now_micros(),
            ids: &mut ids,
        };
        match term_to_value(term, "[timestamp]", &ColumnType::Bigint, &mut ctx)? {
            Bound::Value(CqlValue::Bigint(ts)) => Ok(ts),
            _ => Err(ExecError::invalid("Invalid null value of timestamp")),
        }
    }

    fn write_time(
        &self,
        def: &TableDef,
        using: &Using,
        opts: &RunOptions,
        ctx: &mut TermContext<'_>,
    ) -> Result<WriteTime, ExecError> {
        let timestamp = match &using.timestamp {
            Some(t) => match term_to_value(t, "[timestamp]", &ColumnType::Bigint, ctx)? {
                Bound::Value(CqlValue::Bigint(ts)) => ts,
                Bound::Unset => opts
                    .default_timestamp
                    .unwrap_or_else(|| self.store.now_micros()),
                _ => return Err(ExecError::invalid("Invalid null value of timestamp")),
            },
            None => opts
                .default_timestamp
                .unwrap_or_else(|| self.store.now_micros()),
        };
        let ttl = match &using.ttl {
            Some(t) => match term_to_value(t, "[ttl]", &ColumnType::Int, ctx)? {
                Bound::Value(CqlValue::Int(n)) if n >= 0 => n as u32,
                Bound::Value(CqlValue::Int(n)) => {
                    return Err(ExecError::invalid(format!(
                        "A TTL must be greater or equal to 0, but was {n}"
                    )));
                }
                Bound::Unset => def.options.default_time_to_live.max(0) as u32,
                _ => return Err(ExecError::invalid("Invalid null value of TTL")),
            },
            None => def.options.default_time_to_live.max(0) as u32,
        };
        Ok(WriteTime { timestamp, ttl })
    }

    fn plan(
        &self,
        statement: &Statement,
        values: &Values,
        opts: &RunOptions,
        keyspace: Option<&str>,
    ) -> Result<Planned, ExecError> {
        let session = keyspace.or(opts.keyspace.as_deref());
        let mut ids = self.ids();
        let now = self.store.now_micros();
        let mut ctx = TermContext {
            values,
            now_micros: now,
            ids: &mut ids,
        };
        match statement {
            Statement::Insert(ins) => {
                let def = self.table(ins.table.keyspace.as_deref(), &ins.table.name, session)?;
                let InsertValues::Columns {
                    columns,
                    values: terms,
                } = &ins.values
                else {
                    return Err(ExecError::invalid(
                        "INSERT JSON is not supported by the simulator",
                    ));
                };
                let at = self.write_time(&def, &ins.using, opts, &mut ctx)?;
                let mut pk = vec![None; def.partition_key.len()];
                let mut ck = vec![None; def.clustering.len()];
                let mut ops = vec![Op::RowMarker(at)];
                if def.is_counter {
                    return Err(ExecError::invalid(
                        "INSERT statements are not allowed on counter tables, use UPDATE instead",
                    ));
                }
                for (name, term) in columns.iter().zip(terms) {
                    let col = def
                        .column(name)
                        .ok_or_else(|| ExecError::invalid(format!("Undefined column name {name}")))?
                        .clone();
                    let v = value(term, &col, &col.ty, &mut ctx)?;
                    match col.kind {
                        ColumnKind::PartitionKey(i) | ColumnKind::Clustering(i) => {
                            let Bound::Value(v) = v else {
                                return Err(ExecError::invalid(format!(
                                    "Invalid null value in condition for column {name}"
                                )));
                            };
                            if matches!(col.kind, ColumnKind::PartitionKey(_)) {
                                pk[i] = Some(v)
                            } else {
                                ck[i] = Some(v)
                            }
                        }
                        _ => match v {
                            Bound::Unset => {}
                            Bound::Null => ops.push(Op::Set {
                                column: col.name.clone(),
                                value: None,
                                at,
                            }),
                            Bound::Value(v) => ops.push(Op::Set {
                                column: col.name.clone(),
                                value: Some(v),
                                at,
                            }),
                        },
                    }
                }
                let missing = |defs: &[&ColumnDef], vals: &[Option<CqlValue>]| {
                    defs.iter()
                        .zip(vals)
                        .find(|(_, v)| v.is_none())
                        .map(|(c, _)| c.name.clone())
                };
                let pk_defs: Vec<&ColumnDef> = def.partition_key.iter().collect();
                let ck_defs: Vec<&ColumnDef> = def.clustering.iter().map(|(c, _)| c).collect();
                if let Some(m) = missing(&pk_defs, &pk).or_else(|| missing(&ck_defs, &ck)) {
                    return Err(ExecError::invalid(format!(
                        "Some partition key parts are missing: {m}"
                    )));
                }
                let mutation = Mutation {
                    partition_key: pk.into_iter().flatten().collect(),
                    clustering: ck.into_iter().flatten().collect(),
                    ops,
                };
                let condition = ins.if_not_exists.then_some(Condition::NotExists);
                Ok(Planned {
                    table: def,
                    mutations: vec![mutation],
                    condition,
                })
            }
            Statement::Update(up) => {
                let def = self.table(up.table.keyspace.as_deref(), &up.table.name, session)?;
                let at = self.write_time(&def, &up.using, opts, &mut ctx)?;
                let r = restrict::analyse(&def, &up.where_, &mut ctx)?;
                let keys = r
                    .partition_keys
                    .clone()
                    .ok_or_else(|| ExecError::invalid("Some partition key parts are missing"))?;
                let only_static = up.assignments.iter().all(|a| {
                    let name = match a {
                        Assignment::Set(c, _)
                        | Assignment::SetField(c, _, _)
                        | Assignment::SetElement(c, _, _)
                        | Assignment::Add(c, _)
                        | Assignment::Prepend(c, _)
                        | Assignment::Remove(c, _) => c,
                    };
                    def.column(name).is_some_and(|c| c.is_static())
                });
                let rows: Vec<Vec<CqlValue>> =
                    match (&r.clustering_keys, def.clustering.is_empty() || only_static) {
                        (_, true) => vec![Vec::new()],
                        (Some(keys), false) => keys.clone(),
                        (None, false) => {
                            let missing = def
                                .clustering
                                .first()
                                .map(|c| c.0.name.clone())
                                .unwrap_or_default();
                            return Err(ExecError::invalid(format!(
                                "Some clustering keys are missing: {missing}"
                            )));
                        }
                    };
                let mut ops = Vec::with_capacity(up.assignments.len());
                for a in &up.assignments {
                    ops.extend(self.assignment(&def, a, at, &mut ctx)?);
                }
                let mut mutations = Vec::new();
                for pk in &keys {
                    for ck in &rows {
                        mutations.push(Mutation {
                            partition_key: pk.clone(),
                            clustering: ck.clone(),
                            ops: ops.clone(),
                        });
                    }
                }
                let condition = up
                    .condition
                    .as_ref()
                    .map(|c| condition(&def, c, &mut ctx))
                    .transpose()?;
                Ok(Planned {
                    table: def,
                    mutations,
                    condition,
                })
            }
            Statement::Delete(del) => {
                let def = self.table(del.table.keyspace.as_deref(), &del.table.name, session)?;
                if del.using.ttl.is_some() {
                    return Err(ExecError::invalid(
                        "Cannot provide custom TTL for DELETE statements",
                    ));
                }
                let at = self.write_time(&def, &del.using, opts, &mut ctx)?;
                let ts = at.timestamp;
                let r = restrict::analyse(&def, &del.where_, &mut ctx)?;
                let keys = r
                    .partition_keys
                    .clone()
                    .ok_or_else(|| ExecError::invalid("Some partition key parts are missing"))?;
                let mut mutations = Vec::new();
                for pk in &keys {
                    if del.columns.is_empty() {
                        match (&r.clustering_keys, &r.slice) {
                            (Some(cks), _) => {
                                for ck in cks {
                                    mutations.push(Mutation {
                                        partition_key: pk.clone(),
                                        clustering: ck.clone(),
                                        ops: vec![Op::DeleteRow { timestamp: ts }],
                                    });
                                }
                            }
                            (None, Some(slice)) => mutations.push(Mutation {
                                partition_key: pk.clone(),
                                clustering: Vec::new(),
                                ops: vec![Op::DeleteRange {
                                    slice: slice.clone(),
                                    timestamp: ts,
                                }],
                            }),
                            (None, None) => mutations.push(Mutation {
                                partition_key: pk.clone(),
                                clustering: Vec::new(),
                                ops: vec![Op::DeletePartition { timestamp: ts }],
                            }),
                        }
                        continue;
                    }
                    let mut ops = Vec::new();
                    for target in &del.columns {
                        ops.push(self.delete_target(&def, target, ts, &mut ctx)?);
                    }
                    let only_static = del.columns.iter().all(|t| {
                        let n = match t {
                            DeleteTarget::Column(c)
                            | DeleteTarget::Element(c, _)
                            | DeleteTarget::Field(c, _) => c,
                        };
                        def.column(n).is_some_and(|c| c.is_static())
                    });
                    let cks = match (&r.clustering_keys, def.clustering.is_empty() || only_static) {
                        (_, true) => vec![Vec::new()],
                        (Some(cks), false) => cks.clone(),
                        (None, false) => {
                            return Err(ExecError::invalid("Some clustering keys are missing"));
                        }
                    };
                    for ck in cks {
                        mutations.push(Mutation {
                            partition_key: pk.clone(),
                            clustering: ck,
                            ops: ops.clone(),
                        });
                    }
                }
                let condition = del
                    .condition
                    .as_ref()
                    .map(|c| condition(&def, c, &mut ctx))
                    .transpose()?;
                Ok(Planned {
                    table: def,
                    mutations,
                    condition,
                })
            }
            _ => Err(ExecError::Server("not a write".into())),
        }
    }

    /// One SET clause as an op; `None` when its value is unset ("leave the column alone").
    fn assignment(
        &self,
        def: &TableDef,
        a: &Assignment,
        at: WriteTime,
        ctx: &mut TermContext<'_>,
    ) -> Result<Option<Op>, ExecError> {
        let col = |name: &str| {
            def.column(name)
                .cloned()
                .ok_or_else(|| ExecError::invalid(format!("Undefined column name {name}")))
        };
        Ok(Some(match a {
            Assignment::Set(name, term) => {
                let c = col(name)?;
                if c.is_primary_key() {
                    return Err(ExecError::invalid(format!(
                        "PRIMARY KEY part {name} found in SET part"
                    )));
                }
                if c.is_counter() {
                    return Err(ExecError::invalid(format!(
                        "Cannot set the value of counter column {name} (counters can only be incremented/decremented, not set)"
                    )));
                }
                match value(term, &c, &c.ty, ctx)? {
                    Bound::Unset => return Ok(None),
                    Bound::Null => Op::Set {
                        column: c.name,
                        value: None,
                        at,
                    },
                    Bound::Value(v) => Op::Set {
                        column: c.name,
                        value: Some(v),
                        at,
                    },
                }
            }
            Assignment::SetField(name, field, term) => {
                let c = col(name)?;
                let ColumnType::Udt { fields, .. } = &c.ty else {
                    return Err(ExecError::invalid(format!(
                        "Invalid field selection: {name} is not a user type"
                    )));
                };
                let fty = fields
                    .iter()
                    .find(|(f, _)| f == field)
                    .map(|(_, t)| t.clone())
                    .ok_or_else(|| {
                        ExecError::invalid(format!(
                            "UDT column {name} does not have a field named {field}"
                        ))
                    })?;
                Op::UdtSetField {
                    column: c.name.clone(),
                    field: field.clone(),
                    value: value(term, &c, &fty, ctx)?.into_option(),
                    at,
                }
            }
            Assignment::SetElement(name, key, term) => {
                let c = col(name)?;
                match &c.ty {
                    ColumnType::List(e) => {
                        let Bound::Value(CqlValue::Int(index)) =
                            term_to_value(key, &format!("idx({name})"), &ColumnType::Int, ctx)?
                        else {
                            return Err(ExecError::invalid("Invalid null value for list index"));
                        };
                        Op::ListSetIndex {
                            column: c.name.clone(),
                            index,
                            value: value(term, &c, e, ctx)?.into_option(),
                            at,
                        }
                    }
                    ColumnType::Map(k, v) => {
                        let Bound::Value(key) =
                            term_to_value(key, &format!("key({name})"), k, ctx)?
                        else {
                            return Err(ExecError::invalid("Invalid null value for map key"));
                        };
                        Op::MapPut {
                            column: c.name.clone(),
                            entries: vec![(key, value(term, &c, v, ctx)?.into_option())],
                            at,
                        }
                    }
                    _ => {
                        return Err(ExecError::invalid(format!(
                            "Invalid operation ({name}[?] = ?) for non list/map column {name}"
                        )));
                    }
                }
            }
            Assignment::Add(name, term) => {
                let c = col(name)?;
                match &c.ty {
                    ColumnType::Counter => match value(term, &c, &ColumnType::Bigint, ctx)? {
                        Bound::Value(CqlValue::Bigint(n)) => Op::CounterAdd {
                            column: c.name.clone(),
                            delta: n,
                        },
                        _ => {
                            return Err(ExecError::invalid(
                                "Invalid null value for counter increment",
                            ));
                        }
                    },
                    ColumnType::List(_) => Op::ListAppend {
                        column: c.name.clone(),
                        values: items(value(term, &c, &c.ty, ctx)?),
                        at,
                    },
                    ColumnType::Set(_) => Op::SetAdd {
                        column: c.name.clone(),
                        values: items(value(term, &c, &c.ty, ctx)?),
                        at,
                    },
                    ColumnType::Map(..) => match value(term, &c, &c.ty, ctx)? {
                        Bound::Value(CqlValue::Map(entries)) => Op::MapPut {
                            column: c.name.clone(),
                            entries: entries.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                            at,
                        },
                        _ => Op::MapPut {
                            column: c.name.clone(),
                            entries: Vec::new(),
                            at,
                        },
                    },
                    _ => {
                        return Err(ExecError::invalid(format!(
                            "Invalid operation ({name} = {name} + ?) for non counter/collection column {name}"
                        )));
                    }
                }
            }
            Assignment::Prepend(name, term) => {
                let c = col(name)?;
                if !matches!(c.ty, ColumnType::List(_)) {
                    return Err(ExecError::invalid(format!(
                        "Invalid operation ({name} = ? + {name}) for non list column {name}"
                    )));
                }
                Op::ListPrepend {
                    column: c.name.clone(),
                    values: items(value(term, &c, &c.ty, ctx)?),
                    at,
                }
            }
            Assignment::Remove(name, term) => {
                let c = col(name)?;
                match &c.ty {
                    ColumnType::Counter => match value(term, &c, &ColumnType::Bigint, ctx)? {
                        Bound::Value(CqlValue::Bigint(n)) => Op::CounterAdd {
                            column: c.name.clone(),
                            delta: n.wrapping_neg(),
                        },
                        _ => {
                            return Err(ExecError::invalid(
                                "Invalid null value for counter decrement",
                            ));
                        }
                    },
                    ColumnType::List(_) => Op::ListRemove {
                        column: c.name.clone(),
                        values: items(value(term, &c, &c.ty, ctx)?),
                        timestamp: at.timestamp,
                    },
                    ColumnType::Set(_) => Op::SetRemove {
                        column: c.name.clone(),
                        values: items(value(term, &c, &c.ty, ctx)?),
                        timestamp: at.timestamp,
                    },
                    ColumnType::Map(k, _) => {
                        let set = ColumnType::Set(k.clone());
                        Op::MapRemove {
                            column: c.name.clone(),
                            keys: items(value(term, &c, &set, ctx)?),
                            timestamp: at.timestamp,
                        }
                    }
                    _ => {
                        return Err(ExecError::invalid(format!(
                            "Invalid operation ({name} = {name} - ?) for non counter/collection column {name}"
                        )));
                    }
                }
            }
        }))
    }

    fn delete_target(
        &self,
        def: &TableDef,
        target: &DeleteTarget,
        timestamp: i64,
        ctx: &mut TermContext<'_>,
    ) -> Result<Op, ExecError> {
        let col = |name: &str| {
            def.column(name)
                .cloned()
                .ok_or_else(|| ExecError::invalid(format!("Undefined column name {name}")))
        };
        Ok(match target {
            DeleteTarget::Column(name) => {
                let c = col(name)?;
                if c.is_primary_key() {
                    return Err(ExecError::invalid(format!(
                        "Invalid identifier {name} for deletion (should not be a PRIMARY KEY part)"
                    )));
                }
                Op::DeleteColumn {
                    column: c.name,
                    timestamp,
                }
            }
            DeleteTarget::Element(name, key) => {
                let c = col(name)?;
                match &c.ty {
                    ColumnType::List(_) => {
                        let Bound::Value(CqlValue::Int(index)) =
                            term_to_value(key, &format!("idx({name})"), &ColumnType::Int, ctx)?
                        else {
                            return Err(ExecError::invalid("Invalid null value for list index"));
                        };
                        Op::ListDeleteIndex {
                            column: c.name.clone(),
                            index,
                            timestamp,
                        }
                    }
                    ColumnType::Map(k, _) | ColumnType::Set(k) => {
                        let Bound::Value(key) =
                            term_to_value(key, &format!("key({name})"), k, ctx)?
                        else {
                            return Err(ExecError::invalid("Invalid null value for map key"));
                        };
                        if matches!(c.ty, ColumnType::Set(_)) {
                            Op::SetRemove {
                                column: c.name.clone(),
                                values: vec![key],
                                timestamp,
                            }
                        } else {
                            Op::MapRemove {
                                column: c.name.clone(),
                                keys: vec![key],
                                timestamp,
                            }
                        }
                    }
                    _ => {
                        return Err(ExecError::invalid(format!(
                            "Invalid element deletion on non-collection column {name}"
                        )));
                    }
                }
            }
            DeleteTarget::Field(name, field) => {
                let c = col(name)?;
                Op::UdtSetField {
                    column: c.name.clone(),
                    field: field.clone(),
                    value: None,
                    at: WriteTime { timestamp, ttl: 0 },
                }
            }
        })
    }

    /// Runs a single INSERT/UPDATE/DELETE.
    pub(super) fn write(
        &self,
        statement: &Statement,
        values: &Values,
        opts: &RunOptions,
        keyspace: Option<&str>,
    ) -> Result<ResultBody, ExecError> {
        let mut planned = self.plan(statement, values, opts, keyspace)?;
        match planned.condition.take() {
            None => {
                for m in planned.mutations {
                    self.store.apply(&planned.table, m)?;
                }
                Ok(ResultBody::Void)
            }
            Some(condition) => {
                let mut mutations = planned.mutations;
                if mutations.len() != 1 {
                    return Err(ExecError::invalid(
                        "IN on the partition key is not supported with conditional updates",
                    ));
                }
                let Some(m) = mutations.pop() else {
                    return Err(ExecError::Server("no mutation".into()));
                };
                let checked: Vec<String> = match &condition {
                    Condition::Columns(cs) => cs.iter().map(|c| c.column.clone()).collect(),
                    _ => Vec::new(),
                };
                let result = self.store.apply_if(&planned.table, m, condition)?;
                Ok(ResultBody::Rows(applied_rows(
                    &planned.table,
                    &result,
                    &checked,
                )?))
            }
        }
    }

    /// Runs a batch's children as one unit (the simulator applies them in order, under each
    /// table's lock; Cassandra's batchlog guarantees are not observable from one process).
    pub(super) fn run_batch(
        &self,
        _ctx: &RequestContext,
        children: &[(&Statement, Option<&str>, &Values)],
        counter: bool,
        opts: &RunOptions,
    ) -> Result<ResultBody, ExecError> {
        let mut planned = Vec::with_capacity(children.len());
        for (statement, keyspace, values) in children {
            if !matches!(
                statement,
                Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
            ) {
                return Err(ExecError::invalid(
                    "Only INSERT, UPDATE, and DELETE statements are allowed in a batch",
                ));
            }
            let p = self.plan(statement, values, opts, *keyspace)?;
            if counter != p.table.is_counter {
                return Err(ExecError::invalid(if counter {
                    "Only counter mutations are allowed in COUNTER batches"
                } else {
                    "Counter mutations are only allowed in COUNTER batches"
                }));
            }
            planned.push(p);
        }
        if planned.iter().any(|p| p.condition.is_some()) {
            let table = planned[0].table.clone();
            if planned.iter().any(|p| p.table.id != table.id) {
                return Err(ExecError::invalid(
                    "Batch with conditions cannot span multiple tables",
                ));
            }
            let mut checks = Vec::new();
            let mut mutations = Vec::new();
            for p in planned {
                if let Some(c) = p.condition {
                    let ck = p
                        .mutations
                        .first()
                        .map(|m| m.clustering.clone())
                        .unwrap_or_default();
                    checks.push((ck, c));
                }
                mutations.extend(p.mutations);
            }
            let result = self.store.apply_batch_if(&table, checks, mutations)?;
            return Ok(ResultBody::Rows(applied_rows(&table, &result, &[])?));
        }
        for p in planned {
            for m in p.mutations {
                self.store.apply(&p.table, m)?;
            }
        }
        Ok(ResultBody::Void)
    }
}

fn condition(
    def: &TableDef,
    c: &AstCondition,
    ctx: &mut TermContext<'_>,
) -> Result<Condition, ExecError> {
    Ok(match c {
        AstCondition::IfExists => Condition::Exists,
        AstCondition::IfNotExists => Condition::NotExists,
        AstCondition::If(conds) => Condition::Columns(
            conds
                .iter()
                .map(|cc| {
                    let col = def.column(&cc.column).ok_or_else(|| {
                        ExecError::invalid(format!("Undefined column name {}", cc.column))
                    })?;
                    let (ty, element) = match &cc.element {
                        Some(key) => {
                            let key_ty = match &col.ty {
                                ColumnType::List(_) => ColumnType::Int,
                                ColumnType::Map(k, _) => (**k).clone(),
                                _ => {
                                    return Err(ExecError::invalid(format!(
                                        "Invalid element access on {}",
                                        cc.column
                                    )));
                                }
                            };
                            (
                                element_type(&col.ty),
                                term_to_value(key, &cc.column, &key_ty, ctx)?.into_option(),
                            )
                        }
                        None => (col.ty.clone(), None),
                    };
                    let (op, values) = match cc.op {
                        Operator::In => {
                            let list = ColumnType::List(Box::new(ty.clone()));
                            let vals = match term_to_value(&cc.value, &cc.column, &list, ctx)? {
                                Bound::Value(CqlValue::List(items)) => {
                                    items.into_iter().map(Some).collect()
                                }
                                _ => vec![None],
                            };
                            (CondOp::In, vals)
                        }
                        op => {
                            let op = match op {
                                Operator::Eq => CondOp::Eq,
                                Operator::Ne => CondOp::Ne,
                                Operator::Lt => CondOp::Lt,
                                Operator::Le => CondOp::Le,
                                Operator::Gt => CondOp::Gt,
                                Operator::Ge => CondOp::Ge,
                                other => {
                                    return Err(ExecError::invalid(format!(
                                        "Unsupported operator {other:?} in condition"
                                    )));
                                }
                            };
                            (
                                op,
                                vec![term_to_value(&cc.value, &cc.column, &ty, ctx)?.into_option()],
                            )
                        }
                    };
                    Ok(ColumnCondition {
                        column: cc.column.clone(),
                        element,
                        op,
                        values,
                    })
                })
                .collect::<Result<_, ExecError>>()?,
        ),
    })
}

/// The `[applied]` result of a lightweight transaction, with the row's current values when it
/// was not applied (all columns for IF [NOT] EXISTS, the checked columns otherwise), as
/// Cassandra answers.
fn applied_rows(def: &TableDef, result: &LwtResult, checked: &[String]) -> Result<Rows, ExecError> {
    let mut specs = vec![ColumnSpec::new(
        &def.keyspace,
        &def.name,
        "[applied]",
        ColumnType::Boolean,
    )];
    let current = result.current.first().and_then(|r| r.as_ref());
    let mut cells: Vec<Option<Vec<u8>>> = vec![Some(vec![u8::from(result.applied)])];
    if let Some(row) = current.filter(|_| !result.applied) {
        let values = row
            .cql_values(def)
            .map_err(|e| ExecError::Server(e.to_string()))?;
        for (c, v) in def.columns().zip(values) {
            if !checked.is_empty() && !checked.contains(&c.name) && !c.is_primary_key() {
                continue;
            }
            if !checked.is_empty() && c.is_primary_key() {
                continue;
            }
            specs.push(ColumnSpec::new(
                &def.keyspace,
                &def.name,
                &c.name,
                c.ty.clone(),
            ));
            cells.push(match v {
                None => None,
                Some(v) => {
                    let mut b = Vec::new();
                    encode_value(&c.ty, &v, &mut b)
                        .map_err(|e| ExecError::Server(e.to_string()))?;
                    Some(b)
                }
            });
        }
    }
    let mut builder = RowsBuilder::new(RowsMetadata::new(specs));
    builder
        .push_row(cells.iter().map(|c| c.as_deref()))
        .map_err(|e| ExecError::Server(e.to_string()))?;
    Ok(builder.finish())
}
