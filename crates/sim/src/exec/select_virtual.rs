//! A parsed SELECT on a virtual table (`system.*`, `system_schema.*`) turned into a
//! [`VirtualTable::query`]: the projection, `=`/`IN` restrictions typed by the table's columns,
//! and LIMIT.

use ferry_cql::request::Values;
use ferry_cql::response::result::Rows;
use ferry_cql::types::{ColumnType, CqlValue};

use crate::cql::{
    Bound, IdSource, Operator, Relation, Select, Selection, SelectorExpr, TermContext,
    term_to_value,
};

use super::error::ExecError;
use super::virtual_table::{Filter, Projection, ProjectionItem, VirtualTable};

/// The projection of a SELECT on `table` (also what PREPARE describes its result with).
pub fn projection(table: &VirtualTable, select: &Select) -> Result<Projection, ExecError> {
    Ok(match &select.selection {
        Selection::Star => Projection::Star,
        Selection::Selectors(selectors) => Projection::Items(
            selectors
                .iter()
                .map(|s| match &s.expr {
                    SelectorExpr::Column(name) => Ok(ProjectionItem::Column {
                        name: name.clone(),
                        alias: s.alias.clone(),
                    }),
                    SelectorExpr::CountRows => Ok(ProjectionItem::Count {
                        alias: s.alias.clone(),
                    }),
                    SelectorExpr::Function { name, .. } if name.name == "count" => {
                        Ok(ProjectionItem::Count {
                            alias: s.alias.clone(),
                        })
                    }
                    _ => Err(ExecError::invalid(format!(
                        "Selector {} is not supported on {}.{}",
                        s.expr.column_name(),
                        table.keyspace,
                        table.name
                    ))),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

pub fn select_virtual(
    table: &VirtualTable,
    select: &Select,
    values: &Values,
    now_micros: i64,
    ids: &mut dyn IdSource,
) -> Result<Rows, ExecError> {
    let mut ctx = TermContext {
        values,
        now_micros,
        ids,
    };
    let projection = projection(table, select)?;
    let mut filters = Vec::with_capacity(select.where_.len());
    for relation in &select.where_ {
        let Relation::Column(column, op, term) = relation else {
            return Err(ExecError::invalid(format!(
                "Only single-column = and IN restrictions are supported on {}.{}",
                table.keyspace, table.name
            )));
        };
        let ty = table
            .columns
            .iter()
            .find(|(n, _)| n == column)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| {
                ExecError::invalid(format!(
                    "Undefined column name {column} in table {}.{}",
                    table.keyspace, table.name
                ))
            })?;
        let values = match op {
            Operator::Eq => match term_to_value(term, column, &ty, &mut ctx)? {
                Bound::Value(v) => vec![v],
                Bound::Null | Bound::Unset => {
                    return Err(ExecError::invalid(format!(
                        "Invalid null value in condition for column {column}"
                    )));
                }
            },
            Operator::In => {
                let list = ColumnType::List(Box::new(ty));
                match term_to_value(term, column, &list, &mut ctx)? {
                    Bound::Value(CqlValue::List(items)) => items,
                    _ => {
                        return Err(ExecError::invalid(format!(
                            "Invalid null value for IN restriction on {column}"
                        )));
                    }
                }
            }
            _ => {
                return Err(ExecError::invalid(format!(
                    "Only = and IN restrictions are supported on {}.{}",
                    table.keyspace, table.name
                )));
            }
        };
        filters.push(Filter {
            column: column.clone(),
            values,
        });
    }
    let limit = match &select.limit {
        None => None,
        Some(term) => match term_to_value(term, "[limit]", &ColumnType::Int, &mut ctx)? {
            Bound::Value(CqlValue::Int(n)) if n > 0 => Some(n as usize),
            _ => return Err(ExecError::invalid("LIMIT must be strictly positive")),
        },
    };
    Ok(table.query(&projection, &filters, limit)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cql::{IdGenerator, Statement, parse};
    use crate::exec::system_tables::{ClusterView, NodeView, local};

    fn run(cql: &str) -> Result<Rows, ExecError> {
        let node = NodeView {
            address: "127.0.0.1:9042".parse().unwrap(),
            host_id: [1; 16],
            data_center: "datacenter1".into(),
            rack: "rack1".into(),
            tokens: vec![0],
            release_version: "5.0.4".into(),
        };
        let table = local(
            &node,
            &ClusterView {
                cluster_name: "ferry".into(),
                schema_version: [2; 16],
            },
        );
        let Statement::Select(select) = parse(cql).unwrap() else {
            panic!("not a select")
        };
        select_virtual(&table, &select, &Values::None, 0, &mut IdGenerator::new(1))
    }

    #[test]
    fn driver_queries_on_system_local() {
        assert_eq!(
            run("SELECT * FROM system.local WHERE key='local'")
                .unwrap()
                .rows_count(),
            1
        );
        assert_eq!(
            run("SELECT * FROM system.local WHERE key='other'")
                .unwrap()
                .rows_count(),
            0
        );
        let r = run(
            "SELECT schema_version, release_version AS v FROM system.local WHERE key IN ('local')",
        )
        .unwrap();
        assert_eq!(r.metadata.columns.as_ref().unwrap()[1].name, "v");
        assert_eq!(
            run("SELECT count(*) FROM system.local")
                .unwrap()
                .rows_count(),
            1
        );
    }

    #[test]
    fn bad_queries_are_invalid_not_server_errors() {
        assert!(matches!(
            run("SELECT nope FROM system.local"),
            Err(ExecError::Invalid(_))
        ));
        assert!(matches!(
            run("SELECT * FROM system.local WHERE key > 'a'"),
            Err(ExecError::Invalid(_))
        ));
        assert!(matches!(
            run("SELECT * FROM system.local WHERE key = 1"),
            Err(ExecError::Invalid(_))
        ));
    }
}
