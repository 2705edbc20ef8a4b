//! PREPARE's variable metadata: every bind marker's receiver (name and type), found by walking the
//! statement, and the partition key indexes drivers route with.

use ferry_cql::response::result::ColumnSpec;
use ferry_cql::types::ColumnType;

use crate::cql::{
    Assignment, Condition, DeleteTarget, InsertValues, Operator, Parsed, Relation, Statement, Term,
    Using,
};
use crate::schema::{ColumnKind, TableDef};

use super::error::ExecError;
use super::executor::Executor;

/// What PREPARE answers besides the id.
#[derive(Debug, Clone, Default)]
pub(super) struct BoundVariables {
    pub variables: Vec<ColumnSpec>,
    pub pk_indexes: Vec<u16>,
    pub result_columns: Vec<ColumnSpec>,
    /// Every table is named with its keyspace, so the id does not depend on the session's.
    pub fully_qualified: bool,
}

struct Walk<'a> {
    def: Option<&'a TableDef>,
    slots: Vec<Option<ColumnSpec>>,
    /// Marker index bound to each partition key column by `=` (or INSERT's value).
    pk_markers: Vec<Option<usize>>,
}

impl Walk<'_> {
    fn spec(&self, name: &str, ty: ColumnType) -> ColumnSpec {
        match self.def {
            Some(d) => ColumnSpec::new(&d.keyspace, &d.name, name, ty),
            None => ColumnSpec::new("", "", name, ty),
        }
    }

    /// Gives every marker inside `term` its receiver.
    fn term(&mut self, term: &Term, name: &str, ty: &ColumnType) -> Result<(), ExecError> {
        match term {
            Term::Marker {
                index,
                name: marker_name,
            } => {
                let spec = self.spec(marker_name.as_deref().unwrap_or(name), ty.clone());
                if let Some(slot) = self.slots.get_mut(*index) {
                    *slot = Some(spec);
                }
            }
            Term::List(items) | Term::Set(items) => {
                let elem = match ty {
                    ColumnType::List(e) | ColumnType::Set(e) => (**e).clone(),
                    ColumnType::Vector { element, .. } => (**element).clone(),
                    other => other.clone(),
                };
                for i in items {
                    self.term(i, name, &elem)?;
                }
            }
            Term::Map(entries) => {
                if let ColumnType::Map(k, v) = ty {
                    for (a, b) in entries {
                        self.term(a, name, k)?;
                        self.term(b, name, v)?;
                    }
                }
            }
            Term::Tuple(items) => {
                if let ColumnType::Tuple(types) = ty {
                    for (i, t) in items.iter().zip(types) {
                        self.term(i, name, t)?;
                    }
                }
            }
            Term::Udt(fields) => {
                if let ColumnType::Udt { fields: types, .. } = ty {
                    for (f, t) in fields {
                        if let Some((_, fty)) = types.iter().find(|(n, _)| n == f) {
                            self.term(t, f, fty)?;
                        }
                    }
                }
            }
            Term::FunctionCall { args, .. } if args.iter().any(has_marker) => {
                return Err(ExecError::invalid(
                    "Bind markers inside function calls are not supported by the simulator",
                ));
            }
            Term::Cast { term, .. } | Term::Negate(term) => self.term(term, name, ty)?,
            Term::Arithmetic { left, right, .. } => {
                self.term(left, name, ty)?;
                self.term(right, name, ty)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn column(&self, name: &str) -> Result<(String, ColumnType, ColumnKind), ExecError> {
        let def = self
            .def
            .ok_or_else(|| ExecError::invalid("Bind markers need a table"))?;
        let c = def
            .column(name)
            .ok_or_else(|| ExecError::invalid(format!("Undefined column name {name}")))?;
        // A counter's marker keeps the counter type (`c = c + ?`), as Cassandra prepares it
        // against the column: drivers then bind their counter type (the Rust driver refuses a
        // plain i64 for it), and the value is the same 8-byte long either way.
        Ok((c.name.clone(), c.ty.clone(), c.kind))
    }

    fn relations(&mut self, relations: &[Relation]) -> Result<(), ExecError> {
        for r in relations {
            match r {
                Relation::Column(name, op, term) => {
                    let (name, ty, kind) = self.column(name)?;
                    match op {
                        Operator::In => self.term(
                            term,
                            &format!("in({name})"),
                            &ColumnType::List(Box::new(ty)),
                        )?,
                        Operator::Contains => {
                            let elem = match &ty {
                                ColumnType::List(e) | ColumnType::Set(e) => (**e).clone(),
                                ColumnType::Map(_, v) => (**v).clone(),
                                t => t.clone(),
                            };
                            self.term(term, &name, &elem)?;
                        }
                        Operator::ContainsKey => {
                            let key = match &ty {
                                ColumnType::Map(k, _) => (**k).clone(),
                                t => t.clone(),
                            };
                            self.term(term, &name, &key)?;
                        }
                        _ => {
                            self.term(term, &name, &ty)?;
                            if let (
                                Operator::Eq,
                                ColumnKind::PartitionKey(i),
                                Term::Marker { index, .. },
                            ) = (op, kind, term)
                            {
                                self.pk_markers[i] = Some(*index);
                            }
                        }
                    }
                }
                Relation::Token(_, _, term) => {
                    self.term(term, "partition key token", &ColumnType::Bigint)?
                }
                Relation::MultiColumn(columns, op, term) => {
                    let types = columns
                        .iter()
                        .map(|c| self.column(c).map(|(_, t, _)| t))
                        .collect::<Result<Vec<_>, _>>()?;
                    let tuple = ColumnType::Tuple(types);
                    let ty = if *op == Operator::In {
                        ColumnType::List(Box::new(tuple))
                    } else {
                        tuple
                    };
                    self.term(term, &format!("({})", columns.join(",")), &ty)?;
                }
            }
        }
        Ok(())
    }

    fn using(&mut self, using: &Using) -> Result<(), ExecError> {
        if let Some(t) = &using.timestamp {
            self.term(t, "[timestamp]", &ColumnType::Bigint)?;
        }
        if let Some(t) = &using.ttl {
            self.term(t, "[ttl]", &ColumnType::Int)?;
        }
        Ok(())
    }

    fn condition(&mut self, c: &Option<Condition>) -> Result<(), ExecError> {
        if let Some(Condition::If(conds)) = c {
            for cc in conds {
                let (name, ty, _) = self.column(&cc.column)?;
                let ty = if cc.element.is_some() {
                    match &ty {
                        ColumnType::List(e) | ColumnType::Set(e) => (**e).clone(),
                        ColumnType::Map(_, v) => (**v).clone(),
                        t => t.clone(),
                    }
                } else {
                    ty
                };
                if let Some(e) = &cc.element {
                    self.term(e, &format!("key({name})"), &ColumnType::Int)?;
                }
                let ty = if cc.op == Operator::In {
                    ColumnType::List(Box::new(ty))
                } else {
                    ty
                };
                self.term(&cc.value, &name, &ty)?;
            }
        }
        Ok(())
    }
}

fn has_marker(t: &Term) -> bool {
    match t {
        Term::Marker { .. } => true,
        Term::List(i) | Term::Set(i) | Term::Tuple(i) => i.iter().any(has_marker),
        Term::Map(e) => e.iter().any(|(a, b)| has_marker(a) || has_marker(b)),
        Term::Udt(f) => f.iter().any(|(_, t)| has_marker(t)),
        Term::FunctionCall { args, .. } => args.iter().any(has_marker),
        Term::Cast { term, .. } | Term::Negate(term) => has_marker(term),
        Term::Arithmetic { left, right, .. } => has_marker(left) || has_marker(right),
        _ => false,
    }
}

impl Executor {
    fn walk_statement(
        &self,
        w: &mut Walk<'_>,
        statement: &Statement,
        keyspace: Option<&str>,
    ) -> Result<bool, ExecError> {
        let table = |name: &crate::cql::QualifiedName| {
            self.table(name.keyspace.as_deref(), &name.name, keyspace)
        };
        match statement {
            Statement::Insert(ins) => {
                let def = table(&ins.table)?;
                let mut inner = Walk {
                    def: Some(&def),
                    slots: std::mem::take(&mut w.slots),
                    pk_markers: vec![None; def.partition_key.len()],
                };
                if let InsertValues::Columns { columns, values } = &ins.values {
                    for (c, t) in columns.iter().zip(values) {
                        let (name, ty, kind) = inner.column(c)?;
                        inner.term(t, &name, &ty)?;
                        if let (ColumnKind::PartitionKey(i), Term::Marker { index, .. }) = (kind, t)
                        {
                            inner.pk_markers[i] = Some(*index);
                        }
                    }
                }
                inner.using(&ins.using)?;
                w.slots = inner.slots;
                w.pk_markers = inner.pk_markers;
                Ok(ins.table.keyspace.is_some())
            }
            Statement::Update(up) => {
                let def = table(&up.table)?;
                let mut inner = Walk {
                    def: Some(&def),
                    slots: std::mem::take(&mut w.slots),
                    pk_markers: vec![None; def.partition_key.len()],
                };
                inner.using(&up.using)?;
                for a in &up.assignments {
                    match a {
                        Assignment::Set(c, t)
                        | Assignment::Add(c, t)
                        | Assignment::Prepend(c, t)
                        | Assignment::Remove(c, t) => {
                            let (name, ty, _) = inner.column(c)?;
                            let ty = match (a, &ty) {
                                (Assignment::Remove(..), ColumnType::Map(k, _)) => {
                                    ColumnType::Set(k.clone())
                                }
                                _ => ty,
                            };
                            inner.term(t, &name, &ty)?;
                        }
                        Assignment::SetField(c, f, t) => {
                            let (_, ty, _) = inner.column(c)?;
                            if let ColumnType::Udt { fields, .. } = &ty
                                && let Some((_, fty)) = fields.iter().find(|(n, _)| n == f)
                            {
                                inner.term(t, f, fty)?;
                            }
                        }
                        Assignment::SetElement(c, k, v) => {
                            let (name, ty, _) = inner.column(c)?;
                            match &ty {
                                ColumnType::List(e) => {
                                    inner.term(k, &format!("idx({name})"), &ColumnType::Int)?;
                                    inner.term(v, &format!("value({name})"), e)?;
                                }
                                ColumnType::Map(kt, vt) => {
                                    inner.term(k, &format!("key({name})"), kt)?;
                                    inner.term(v, &format!("value({name})"), vt)?;
                                }
                                _ => {}
                            }
                        }
                    }
                }
                inner.relations(&up.where_)?;
                inner.condition(&up.condition)?;
                w.slots = inner.slots;
                w.pk_markers = inner.pk_markers;
                Ok(up.table.keyspace.is_some())
            }
            Statement::Delete(del) => {
                let def = table(&del.table)?;
                let mut inner = Walk {
                    def: Some(&def),
                    slots: std::mem::take(&mut w.slots),
                    pk_markers: vec![None; def.partition_key.len()],
                };
                for t in &del.columns {
                    if let DeleteTarget::Element(c, key) = t {
                        let (name, ty, _) = inner.column(c)?;
                        let kt = match &ty {
                            ColumnType::Map(k, _) | ColumnType::Set(k) => (**k).clone(),
                            _ => ColumnType::Int,
                        };
                        inner.term(key, &format!("key({name})"), &kt)?;
                    }
                }
                inner.using(&del.using)?;
                inner.relations(&del.where_)?;
                inner.condition(&del.condition)?;
                w.slots = inner.slots;
                w.pk_markers = inner.pk_markers;
                Ok(del.table.keyspace.is_some())
            }
            Statement::Select(sel) => {
                let virtual_ks = sel
                    .table
                    .keyspace
                    .as_deref()
                    .or(keyspace)
                    .is_some_and(|k| super::catalog_view::SYSTEM_KEYSPACES.contains(&k));
                if virtual_ks {
                    // Markers on virtual tables: typed as text (keyspace/table names), the only
                    // shape drivers send.
                    for r in &sel.where_ {
                        if let Relation::Column(name, op, term) = r {
                            let ty = if *op == Operator::In {
                                ColumnType::List(Box::new(ColumnType::Varchar))
                            } else {
                                ColumnType::Varchar
                            };
                            w.term(term, name, &ty)?;
                        }
                    }
                    return Ok(sel.table.keyspace.is_some());
                }
                let def = table(&sel.table)?;
                let mut inner = Walk {
                    def: Some(&def),
                    slots: std::mem::take(&mut w.slots),
                    pk_markers: vec![None; def.partition_key.len()],
                };
                inner.relations(&sel.where_)?;
                if let Some(t) = &sel.limit {
                    inner.term(t, "[limit]", &ColumnType::Int)?;
                }
                if let Some(t) = &sel.per_partition_limit {
                    inner.term(t, "[per_partition_limit]", &ColumnType::Int)?;
                }
                w.slots = inner.slots;
                w.pk_markers = inner.pk_markers;
                Ok(sel.table.keyspace.is_some())
            }
            Statement::Batch(b) => {
                let mut qualified = true;
                for s in &b.statements {
                    qualified &= self.walk_statement(w, s, keyspace)?;
                }
                // A batch routes by its first child only when every child agrees; drivers use
                // the first statement's key, so keep what the first child gave.
                w.pk_markers.clear();
                let mut u = Walk {
                    def: None,
                    slots: std::mem::take(&mut w.slots),
                    pk_markers: Vec::new(),
                };
                u.using(&b.using)?;
                w.slots = u.slots;
                Ok(qualified)
            }
            _ => Ok(true),
        }
    }

    pub(super) fn bind_variables(
        &self,
        ctx: &crate::server::RequestContext,
        parsed: &Parsed,
        keyspace: Option<&str>,
    ) -> Result<BoundVariables, ExecError> {
        let mut w = Walk {
            def: None,
            slots: vec![None; parsed.markers.len()],
            pk_markers: Vec::new(),
        };
        let fully_qualified = self.walk_statement(&mut w, &parsed.statement, keyspace)?;
        let variables = w
            .slots
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.ok_or_else(|| {
                    ExecError::invalid(format!("Cannot infer the type of bind marker {i}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pk_indexes = if !w.pk_markers.is_empty() && w.pk_markers.iter().all(Option::is_some) {
            w.pk_markers
                .into_iter()
                .flatten()
                .map(|i| i as u16)
                .collect()
        } else {
            Vec::new()
        };
        let result_columns = match &parsed.statement {
            Statement::Select(sel) => self.select_columns(ctx, keyspace, sel)?,
            _ => Vec::new(),
        };
        Ok(BoundVariables {
            variables,
            pk_indexes,
            result_columns,
            fully_qualified,
        })
    }
}
