//! Read-only tables materialised when queried: `system.local`, `system.peers(_v2)` and
//! `system_schema.*`. Their rows are built from cluster and schema state at query time, then
//! filtered and projected the way Cassandra answers a SELECT on them.
//!
//! Drivers read these tables on every connect and schema refresh with a handful of query shapes
//! (`SELECT *`, a column list, `WHERE key = 'local'`, `WHERE keyspace_name = ? AND table_name = ?`,
//! `count(*)`), so the engine is deliberately small: equality/IN filters on any column, a
//! projection with aliases, and a limit.

use ferry_cql::response::result::{ColumnSpec, Rows, RowsBuilder, RowsMetadata};
use ferry_cql::types::{ColumnType, CqlValue, encode_value};

/// A table whose rows are computed, not stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualTable {
    pub keyspace: String,
    pub name: String,
    /// In `SELECT *` order: partition key, clustering columns, then the rest by name.
    pub columns: Vec<(String, ColumnType)>,
    /// Rows in the table's primary key order; one cell per column, `None` for null.
    pub rows: Vec<Vec<Option<CqlValue>>>,
}

/// What a SELECT asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    Star,
    Items(Vec<ProjectionItem>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionItem {
    Column {
        name: String,
        alias: Option<String>,
    },
    /// `count(*)` / `count(1)`: one row, a `bigint` named `count` unless aliased.
    Count {
        alias: Option<String>,
    },
}

/// `column = value` or `column IN (values…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: String,
    pub values: Vec<CqlValue>,
}

/// A query on a virtual table that cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VirtualQueryError {
    /// Cassandra's wording, answered as an Invalid error.
    #[error("Undefined column name {column} in table {keyspace}.{table}")]
    UndefinedColumn {
        keyspace: String,
        table: String,
        column: String,
    },
    #[error("cannot encode {column}: {reason}")]
    Encode { column: String, reason: String },
}

impl VirtualTable {
    fn column_index(&self, name: &str) -> Result<usize, VirtualQueryError> {
        self.columns
            .iter()
            .position(|(c, _)| c == name)
            .ok_or_else(|| VirtualQueryError::UndefinedColumn {
                keyspace: self.keyspace.clone(),
                table: self.name.clone(),
                column: name.to_owned(),
            })
    }

    fn spec(&self, name: &str, ty: ColumnType) -> ColumnSpec {
        ColumnSpec::new(&self.keyspace, &self.name, name, ty)
    }

    fn items(&self, projection: &Projection) -> Vec<ProjectionItem> {
        match projection {
            Projection::Star => self
                .columns
                .iter()
                .map(|(n, _)| ProjectionItem::Column {
                    name: n.clone(),
                    alias: None,
                })
                .collect(),
            Projection::Items(items) => items.clone(),
        }
    }

    /// The result columns a projection gives (also what PREPARE reports for it).
    pub fn result_columns(
        &self,
        projection: &Projection,
    ) -> Result<Vec<ColumnSpec>, VirtualQueryError> {
        self.items(projection)
            .iter()
            .map(|item| match item {
                ProjectionItem::Count { alias } => {
                    Ok(self.spec(alias.as_deref().unwrap_or("count"), ColumnType::Bigint))
                }
                ProjectionItem::Column { name, alias } => {
                    let i = self.column_index(name)?;
                    Ok(self.spec(alias.as_deref().unwrap_or(name), self.columns[i].1.clone()))
                }
            })
            .collect()
    }

    /// Answers `SELECT projection FROM table WHERE filters… LIMIT limit`.
    pub fn query(
        &self,
        projection: &Projection,
        filters: &[Filter],
        limit: Option<usize>,
    ) -> Result<Rows, VirtualQueryError> {
        let filters = filters
            .iter()
            .map(|f| Ok((self.column_index(&f.column)?, &f.values)))
            .collect::<Result<Vec<_>, VirtualQueryError>>()?;
        let matching = self.rows.iter().filter(|row| {
            filters.iter().all(|(i, values)| match &row[*i] {
                Some(v) => values.contains(v),
                None => false,
            })
        });
        let limit = limit.unwrap_or(usize::MAX);

        let items = self.items(projection);
        let specs = self.result_columns(projection)?;
        // Aggregates fold every matching row into one; LIMIT applies to that one row.
        if items
            .iter()
            .any(|i| matches!(i, ProjectionItem::Count { .. }))
        {
            let matching: Vec<&Vec<Option<CqlValue>>> = matching.collect();
            let count = matching.len() as i64;
            let cells = items
                .iter()
                .map(|item| match item {
                    ProjectionItem::Count { .. } => Ok(Some(CqlValue::Bigint(count))),
                    // Cassandra returns the first matching row's value next to an aggregate.
                    ProjectionItem::Column { name, .. } => {
                        let i = self.column_index(name)?;
                        Ok(matching.first().and_then(|r| r[i].clone()))
                    }
                })
                .collect::<Result<Vec<_>, VirtualQueryError>>()?;
            return self.build(specs, std::iter::once(cells));
        }
        let picks = items
            .iter()
            .filter_map(|i| match i {
                ProjectionItem::Column { name, .. } => Some(self.column_index(name)),
                ProjectionItem::Count { .. } => None,
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows = matching
            .take(limit)
            .map(|row| picks.iter().map(|&i| row[i].clone()).collect::<Vec<_>>());
        self.build(specs, rows)
    }

    fn build(
        &self,
        specs: Vec<ColumnSpec>,
        rows: impl Iterator<Item = Vec<Option<CqlValue>>>,
    ) -> Result<Rows, VirtualQueryError> {
        let types: Vec<ColumnType> = specs.iter().map(|s| s.ty.clone()).collect();
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let mut builder = RowsBuilder::new(RowsMetadata::new(specs));
        let mut encoded: Vec<Option<Vec<u8>>> = Vec::with_capacity(types.len());
        for row in rows {
            encoded.clear();
            for (i, cell) in row.iter().enumerate() {
                encoded.push(match cell {
                    None => None,
                    Some(v) => {
                        let mut buf = Vec::new();
                        encode_value(&types[i], v, &mut buf).map_err(|e| {
                            VirtualQueryError::Encode {
                                column: names[i].clone(),
                                reason: e.to_string(),
                            }
                        })?;
                        Some(buf)
                    }
                });
            }
            builder
                .push_row(encoded.iter().map(|c| c.as_deref()))
                .map_err(|e| VirtualQueryError::Encode {
                    column: String::new(),
                    reason: e.to_string(),
                })?;
        }
        Ok(builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> VirtualTable {
        VirtualTable {
            keyspace: "system_schema".into(),
            name: "tables".into(),
            columns: vec![
                ("keyspace_name".into(), ColumnType::Varchar),
                ("table_name".into(), ColumnType::Varchar),
                ("default_time_to_live".into(), ColumnType::Int),
            ],
            rows: vec![
                vec![
                    Some(CqlValue::Text("ks".into())),
                    Some(CqlValue::Text("a".into())),
                    Some(CqlValue::Int(0)),
                ],
                vec![
                    Some(CqlValue::Text("ks".into())),
                    Some(CqlValue::Text("b".into())),
                    None,
                ],
                vec![
                    Some(CqlValue::Text("other".into())),
                    Some(CqlValue::Text("c".into())),
                    Some(CqlValue::Int(5)),
                ],
            ],
        }
    }

    fn text(rows: &Rows, r: usize, c: usize) -> Option<String> {
        rows.cell(r, c)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn star_with_an_equality_filter() {
        let t = table();
        let filters = [Filter {
            column: "keyspace_name".into(),
            values: vec![CqlValue::Text("ks".into())],
        }];
        let rows = t.query(&Projection::Star, &filters, None).unwrap();
        assert_eq!(rows.rows_count(), 2);
        assert_eq!(rows.columns_count(), 3);
        assert_eq!(text(&rows, 1, 1).as_deref(), Some("b"));
        assert_eq!(rows.cell(1, 2), None, "null stays null");
    }

    #[test]
    fn projection_aliases_in_filters_and_limit() {
        let t = table();
        let proj = Projection::Items(vec![ProjectionItem::Column {
            name: "table_name".into(),
            alias: Some("t".into()),
        }]);
        let filters = [Filter {
            column: "table_name".into(),
            values: vec![CqlValue::Text("a".into()), CqlValue::Text("c".into())],
        }];
        let rows = t.query(&proj, &filters, Some(1)).unwrap();
        assert_eq!(rows.rows_count(), 1);
        assert_eq!(rows.metadata.columns.as_ref().unwrap()[0].name, "t");
        assert_eq!(text(&rows, 0, 0).as_deref(), Some("a"));
    }

    #[test]
    fn count_star_is_one_bigint_row() {
        // LIMIT applies to the one result row, not to what is counted.
        let rows = table()
            .query(
                &Projection::Items(vec![ProjectionItem::Count { alias: None }]),
                &[],
                Some(1),
            )
            .unwrap();
        assert_eq!(rows.rows_count(), 1);
        assert_eq!(rows.metadata.columns.as_ref().unwrap()[0].name, "count");
        assert_eq!(rows.cell(0, 0), Some(&3i64.to_be_bytes()[..]));
    }

    #[test]
    fn unknown_columns_get_cassandras_message() {
        let err = table()
            .query(
                &Projection::Items(vec![ProjectionItem::Column {
                    name: "nope".into(),
                    alias: None,
                }]),
                &[],
                None,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Undefined column name nope in table system_schema.tables"
        );
    }
}
