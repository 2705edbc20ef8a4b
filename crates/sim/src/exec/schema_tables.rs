//! `system_schema.*` in Cassandra 5.0's layout. Drivers build their schema metadata (and token-aware
//! routing keys) from these tables, so column names, types and the text of `type` columns follow
//! Cassandra exactly.

use ferry_cql::types::{ColumnType, CqlValue};

use super::virtual_table::VirtualTable;

/// A keyspace as `system_schema.keyspaces` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceRow {
    pub name: String,
    pub durable_writes: bool,
    /// `class` first, then the strategy options, as Cassandra stores them.
    pub replication: Vec<(String, String)>,
}

/// A table as `system_schema.tables` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRow {
    pub keyspace: String,
    pub name: String,
    pub id: [u8; 16],
    pub comment: String,
    pub default_time_to_live: i32,
    pub gc_grace_seconds: i32,
    /// `compound`, `counter` …: what drivers use to tell table kinds apart.
    pub flags: Vec<String>,
}

/// Where a column sits in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    PartitionKey(u16),
    /// Position, and whether the clustering order is descending.
    Clustering(u16, bool),
    Static,
    Regular,
}

/// A column as `system_schema.columns` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRow {
    pub keyspace: String,
    pub table: String,
    pub name: String,
    pub kind: ColumnKind,
    pub ty: ColumnType,
    /// Whether a collection or UDT at the top level is frozen (nested ones always are).
    pub frozen: bool,
}

/// A user-defined type as `system_schema.types` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRow {
    pub keyspace: String,
    pub name: String,
    pub fields: Vec<(String, ColumnType)>,
}

/// The CQL text of a type as Cassandra writes it in schema tables and DESCRIBE:
/// `map<text, frozen<list<int>>>`, `frozen<address>`, `frozen<tuple<int, text>>`,
/// `vector<float, 3>`.
pub fn type_text(ty: &ColumnType, frozen: bool) -> String {
    let inner = |t: &ColumnType| type_text(t, true);
    let body = match ty {
        ColumnType::List(e) => format!("list<{}>", inner(e)),
        ColumnType::Set(e) => format!("set<{}>", inner(e)),
        ColumnType::Map(k, v) => format!("map<{}, {}>", inner(k), inner(v)),
        // Tuples are always frozen in Cassandra.
        ColumnType::Tuple(items) => {
            let items: Vec<String> = items.iter().map(inner).collect();
            return format!("frozen<tuple<{}>>", items.join(", "));
        }
        ColumnType::Udt { name, .. } => quote_if_needed(name),
        ColumnType::Vector { element, dimension } => {
            return format!("vector<{}, {dimension}>", inner(element));
        }
        other => return other.cql_name(),
    };
    if frozen {
        format!("frozen<{body}>")
    } else {
        body
    }
}

/// An identifier as CQL spells it (bare, or double-quoted when it needs to be).
pub fn quote_if_needed(name: &str) -> String {
    ferry_cql::statement::keywords::quote_identifier(name)
}

fn text(s: &str) -> Option<CqlValue> {
    Some(CqlValue::Text(s.to_owned()))
}

fn text_map(pairs: &[(&str, &str)]) -> Option<CqlValue> {
    Some(CqlValue::Map(
        pairs
            .iter()
            .map(|(k, v)| (CqlValue::Text((*k).into()), CqlValue::Text((*v).into())))
            .collect(),
    ))
}

fn text_list(items: impl IntoIterator<Item = String>) -> Option<CqlValue> {
    Some(CqlValue::List(
        items.into_iter().map(CqlValue::Text).collect(),
    ))
}

fn frozen_map(k: ColumnType, v: ColumnType) -> ColumnType {
    ColumnType::Map(Box::new(k), Box::new(v))
}

fn table(
    name: &str,
    columns: Vec<(&str, ColumnType)>,
    rows: Vec<Vec<Option<CqlValue>>>,
) -> VirtualTable {
    VirtualTable {
        keyspace: "system_schema".into(),
        name: name.into(),
        columns: columns
            .into_iter()
            .map(|(n, t)| (n.to_owned(), t))
            .collect(),
        rows,
    }
}

pub fn keyspaces(rows: &[KeyspaceRow]) -> VirtualTable {
    use ColumnType as T;
    table(
        "keyspaces",
        vec![
            ("keyspace_name", T::Varchar),
            ("durable_writes", T::Boolean),
            ("replication", frozen_map(T::Varchar, T::Varchar)),
        ],
        rows.iter()
            .map(|k| {
                let pairs: Vec<(&str, &str)> = k
                    .replication
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                vec![
                    text(&k.name),
                    Some(CqlValue::Boolean(k.durable_writes)),
                    text_map(&pairs),
                ]
            })
            .collect(),
    )
}

/// The per-table options Cassandra 5.0 reports; the ones the simulator does not model are given
/// Cassandra's defaults so drivers and `DESCRIBE` see a complete row.
pub fn tables(rows: &[TableRow]) -> VirtualTable {
    use ColumnType as T;
    let text_text = || frozen_map(T::Varchar, T::Varchar);
    table(
        "tables",
        vec![
            ("keyspace_name", T::Varchar),
            ("table_name", T::Varchar),
            ("additional_write_policy", T::Varchar),
            ("allow_auto_snapshot", T::Boolean),
            ("bloom_filter_fp_chance", T::Double),
            ("caching", text_text()),
            ("cdc", T::Boolean),
            ("comment", T::Varchar),
            ("compaction", text_text()),
            ("compression", text_text()),
            ("crc_check_chance", T::Double),
            ("dclocal_read_repair_chance", T::Double),
            ("default_time_to_live", T::Int),
            ("extensions", frozen_map(T::Varchar, T::Blob)),
            ("flags", T::Set(Box::new(T::Varchar))),
            ("gc_grace_seconds", T::Int),
            ("id", T::Uuid),
            ("incremental_backups", T::Boolean),
            ("max_index_interval", T::Int),
            ("memtable", T::Varchar),
            ("memtable_flush_period_in_ms", T::Int),
            ("min_index_interval", T::Int),
            ("read_repair", T::Varchar),
            ("read_repair_chance", T::Double),
            ("speculative_retry", T::Varchar),
        ],
        rows.iter()
            .map(|t| {
                let mut flags = t.flags.clone();
                flags.sort();
                vec![
                    text(&t.keyspace),
                    text(&t.name),
                    text("99p"),
                    Some(CqlValue::Boolean(true)),
                    Some(CqlValue::Double(0.01)),
                    text_map(&[("keys", "ALL"), ("rows_per_partition", "NONE")]),
                    Some(CqlValue::Boolean(false)),
                    text(&t.comment),
                    text_map(&[
                        (
                            "class",
                            "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
                        ),
                        ("max_threshold", "32"),
                        ("min_threshold", "4"),
                    ]),
                    text_map(&[
                        ("chunk_length_in_kb", "16"),
                        ("class", "org.apache.cassandra.io.compress.LZ4Compressor"),
                    ]),
                    Some(CqlValue::Double(1.0)),
                    Some(CqlValue::Double(0.0)),
                    Some(CqlValue::Int(t.default_time_to_live)),
                    Some(CqlValue::Map(Vec::new())),
                    Some(CqlValue::Set(
                        flags.into_iter().map(CqlValue::Text).collect(),
                    )),
                    Some(CqlValue::Int(t.gc_grace_seconds)),
                    Some(CqlValue::Uuid(t.id)),
                    Some(CqlValue::Boolean(true)),
                    Some(CqlValue::Int(2048)),
                    text("default"),
                    Some(CqlValue::Int(0)),
                    Some(CqlValue::Int(128)),
                    text("BLOCKING"),
                    Some(CqlValue::Double(0.0)),
                    text("99p"),
                ]
            })
            .collect(),
    )
}

pub fn columns(rows: &[ColumnRow]) -> VirtualTable {
    use ColumnType as T;
    table(
        "columns",
        vec![
            ("keyspace_name", T::Varchar),
            ("table_name", T::Varchar),
            ("column_name", T::Varchar),
            ("clustering_order", T::Varchar),
            ("column_name_bytes", T::Blob),
            ("kind", T::Varchar),
            ("position", T::Int),
            ("type", T::Varchar),
        ],
        rows.iter()
            .map(|c| {
                let (order, kind, position) = match c.kind {
                    ColumnKind::PartitionKey(p) => ("none", "partition_key", i32::from(p)),
                    ColumnKind::Clustering(p, desc) => (
                        if desc { "desc" } else { "asc" },
                        "clustering",
                        i32::from(p),
                    ),
                    ColumnKind::Static => ("none", "static", -1),
                    ColumnKind::Regular => ("none", "regular", -1),
                };
                vec![
                    text(&c.keyspace),
                    text(&c.table),
                    text(&c.name),
                    text(order),
                    Some(CqlValue::Blob(c.name.as_bytes().to_vec())),
                    text(kind),
                    Some(CqlValue::Int(position)),
                    text(&type_text(&c.ty, c.frozen)),
                ]
            })
            .collect(),
    )
}

pub fn types(rows: &[TypeRow]) -> VirtualTable {
    use ColumnType as T;
    let list_text = || T::List(Box::new(T::Varchar));
    table(
        "types",
        vec![
            ("keyspace_name", T::Varchar),
            ("type_name", T::Varchar),
            ("field_names", list_text()),
            ("field_types", list_text()),
        ],
        rows.iter()
            .map(|t| {
                vec![
                    text(&t.keyspace),
                    text(&t.name),
                    text_list(t.fields.iter().map(|(n, _)| n.clone())),
                    // Fields of a UDT are frozen when they are collections or UDTs.
                    text_list(
                        t.fields
                            .iter()
                            .map(|(_, ty)| type_text(ty, is_multicell(ty))),
                    ),
                ]
            })
            .collect(),
    )
}

fn is_multicell(ty: &ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::List(_) | ColumnType::Set(_) | ColumnType::Map(..) | ColumnType::Udt { .. }
    )
}

/// The schema tables the simulator has no objects for (it has no views, indexes, functions,
/// aggregates, triggers, masks or dropped-column registry yet): empty, with Cassandra's columns, so
/// drivers' schema refresh queries succeed.
pub fn empty_tables() -> Vec<VirtualTable> {
    use ColumnType as T;
    let list_text = || T::List(Box::new(T::Varchar));
    let text_text = || frozen_map(T::Varchar, T::Varchar);
    vec![
        table(
            "views",
            vec![
                ("keyspace_name", T::Varchar),
                ("view_name", T::Varchar),
                ("base_table_id", T::Uuid),
                ("base_table_name", T::Varchar),
                ("include_all_columns", T::Boolean),
                ("where_clause", T::Varchar),
            ],
            vec![],
        ),
        table(
            "indexes",
            vec![
                ("keyspace_name", T::Varchar),
                ("table_name", T::Varchar),
                ("index_name", T::Varchar),
                ("kind", T::Varchar),
                ("options", text_text()),
            ],
            vec![],
        ),
        table(
            "triggers",
            vec![
                ("keyspace_name", T::Varchar),
                ("table_name", T::Varchar),
                ("trigger_name", T::Varchar),
                ("options", text_text()),
            ],
            vec![],
        ),
        table(
            "dropped_columns",
            vec![
                ("keyspace_name", T::Varchar),
                ("table_name", T::Varchar),
                ("column_name", T::Varchar),
                ("dropped_time", T::Timestamp),
                ("kind", T::Varchar),
                ("type", T::Varchar),
            ],
            vec![],
        ),
        table(
            "column_masks",
            vec![
                ("keyspace_name", T::Varchar),
                ("table_name", T::Varchar),
                ("column_name", T::Varchar),
                ("function_argument_nulls", T::List(Box::new(T::Boolean))),
                ("function_argument_types", list_text()),
                ("function_argument_values", list_text()),
                ("function_keyspace", T::Varchar),
                ("function_name", T::Varchar),
            ],
            vec![],
        ),
        table(
            "functions",
            vec![
                ("keyspace_name", T::Varchar),
                ("function_name", T::Varchar),
                ("argument_types", list_text()),
                ("argument_names", list_text()),
                ("body", T::Varchar),
                ("called_on_null_input", T::Boolean),
                ("language", T::Varchar),
                ("return_type", T::Varchar),
            ],
            vec![],
        ),
        table(
            "aggregates",
            vec![
                ("keyspace_name", T::Varchar),
                ("aggregate_name", T::Varchar),
                ("argument_types", list_text()),
                ("final_func", T::Varchar),
                ("initcond", T::Varchar),
                ("return_type", T::Varchar),
                ("state_func", T::Varchar),
                ("state_type", T::Varchar),
            ],
            vec![],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udt() -> ColumnType {
        ColumnType::Udt {
            keyspace: "ks".into(),
            name: "address".into(),
            fields: vec![("street".into(), ColumnType::Varchar)],
        }
    }

    #[test]
    fn type_text_marks_nested_and_frozen_types_as_cassandra_does() {
        let list_int = ColumnType::List(Box::new(ColumnType::Int));
        assert_eq!(type_text(&ColumnType::Int, false), "int");
        assert_eq!(type_text(&ColumnType::Varchar, false), "text");
        assert_eq!(type_text(&list_int, false), "list<int>");
        assert_eq!(type_text(&list_int, true), "frozen<list<int>>");
        let map = ColumnType::Map(Box::new(ColumnType::Varchar), Box::new(list_int));
        assert_eq!(type_text(&map, false), "map<text, frozen<list<int>>>");
        assert_eq!(type_text(&udt(), true), "frozen<address>");
        assert_eq!(
            type_text(
                &ColumnType::Tuple(vec![ColumnType::Int, ColumnType::Varchar]),
                false
            ),
            "frozen<tuple<int, text>>"
        );
        let vector = ColumnType::Vector {
            element: Box::new(ColumnType::Float),
            dimension: 3,
        };
        assert_eq!(type_text(&vector, false), "vector<float, 3>");
    }

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(quote_if_needed("orders"), "orders");
        assert_eq!(quote_if_needed("Orders"), "\"Orders\"");
        assert_eq!(quote_if_needed("select"), "\"select\"");
        assert_eq!(quote_if_needed("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn every_row_matches_its_columns() {
        let ks = keyspaces(&[KeyspaceRow {
            name: "ks".into(),
            durable_writes: true,
            replication: vec![
                (
                    "class".into(),
                    "org.apache.cassandra.locator.SimpleStrategy".into(),
                ),
                ("replication_factor".into(), "1".into()),
            ],
        }]);
        let t = tables(&[TableRow {
            keyspace: "ks".into(),
            name: "t".into(),
            id: [1; 16],
            comment: String::new(),
            default_time_to_live: 0,
            gc_grace_seconds: 864_000,
            flags: vec!["compound".into()],
        }]);
        let c = columns(&[ColumnRow {
            keyspace: "ks".into(),
            table: "t".into(),
            name: "c".into(),
            kind: ColumnKind::Clustering(0, true),
            ty: ColumnType::Int,
            frozen: false,
        }]);
        let ty = types(&[TypeRow {
            keyspace: "ks".into(),
            name: "address".into(),
            fields: vec![(
                "tags".into(),
                ColumnType::Set(Box::new(ColumnType::Varchar)),
            )],
        }]);
        for v in [ks, t, c, ty].into_iter().chain(empty_tables()) {
            assert!(
                v.rows.iter().all(|r| r.len() == v.columns.len()),
                "{}",
                v.name
            );
            // Every table answers a SELECT * (values encode with their column types).
            v.query(&super::super::virtual_table::Projection::Star, &[], None)
                .unwrap();
        }
    }
}
