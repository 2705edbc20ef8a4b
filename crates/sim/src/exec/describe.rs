//! Server-side `DESCRIBE` (Cassandra 4.0+; cqlsh 6.x sends it instead of building DDL itself):
//! result rows of `keyspace_name, type, name, create_statement`, with CREATE statements in
//! Cassandra's format. Replaying the output must recreate the schema.

use ferry_cql::types::{ColumnType, CqlValue};

use super::schema_tables::{
    ColumnKind, ColumnRow, KeyspaceRow, TableRow, TypeRow, quote_if_needed, type_text,
};
use super::virtual_table::VirtualTable;

fn quote_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn map_literal(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", quote_string(k), quote_string(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// `CREATE KEYSPACE …;` as Cassandra prints it.
pub fn keyspace_ddl(k: &KeyspaceRow) -> String {
    format!(
        "CREATE KEYSPACE {} WITH replication = {}  AND durable_writes = {};",
        quote_if_needed(&k.name),
        map_literal(&k.replication),
        k.durable_writes
    )
}

/// `CREATE TYPE …;`.
pub fn type_ddl(t: &TypeRow) -> String {
    let fields: Vec<String> = t
        .fields
        .iter()
        .map(|(n, ty)| {
            format!(
                "    {} {}",
                quote_if_needed(n),
                type_text(
                    ty,
                    matches!(
                        ty,
                        ColumnType::List(_)
                            | ColumnType::Set(_)
                            | ColumnType::Map(..)
                            | ColumnType::Udt { .. }
                    )
                )
            )
        })
        .collect();
    format!(
        "CREATE TYPE {}.{} (\n{}\n);",
        quote_if_needed(&t.keyspace),
        quote_if_needed(&t.name),
        fields.join(",\n")
    )
}

/// `CREATE TABLE …;` with columns in `SELECT *` order, the primary key, clustering order and the
/// options Cassandra lists.
pub fn table_ddl(t: &TableRow, columns: &[ColumnRow]) -> String {
    let mut cols: Vec<&ColumnRow> = columns
        .iter()
        .filter(|c| c.keyspace == t.keyspace && c.table == t.name)
        .collect();
    cols.sort_by_key(|c| match c.kind {
        ColumnKind::PartitionKey(p) => (0, p, String::new()),
        ColumnKind::Clustering(p, _) => (1, p, String::new()),
        ColumnKind::Static | ColumnKind::Regular => (2, 0, c.name.clone()),
    });
    let mut lines: Vec<String> = cols
        .iter()
        .map(|c| {
            let stat = if c.kind == ColumnKind::Static {
                " static"
            } else {
                ""
            };
            format!(
                "    {} {}{stat}",
                quote_if_needed(&c.name),
                type_text(&c.ty, c.frozen)
            )
        })
        .collect();
    let pk: Vec<String> = cols
        .iter()
        .filter(|c| matches!(c.kind, ColumnKind::PartitionKey(_)))
        .map(|c| quote_if_needed(&c.name))
        .collect();
    let ck: Vec<&&ColumnRow> = cols
        .iter()
        .filter(|c| matches!(c.kind, ColumnKind::Clustering(..)))
        .collect();
    let pk_text = if pk.len() == 1 {
        pk[0].clone()
    } else {
        format!("({})", pk.join(", "))
    };
    let key = std::iter::once(pk_text)
        .chain(ck.iter().map(|c| quote_if_needed(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(format!("    PRIMARY KEY ({key})"));

    let mut options = Vec::new();
    if !ck.is_empty() {
        let order: Vec<String> = ck
            .iter()
            .map(|c| {
                let desc = matches!(c.kind, ColumnKind::Clustering(_, true));
                format!(
                    "{} {}",
                    quote_if_needed(&c.name),
                    if desc { "DESC" } else { "ASC" }
                )
            })
            .collect();
        options.push(format!("CLUSTERING ORDER BY ({})", order.join(", ")));
    }
    options.extend([
        "additional_write_policy = '99p'".to_owned(),
        "allow_auto_snapshot = true".to_owned(),
        "bloom_filter_fp_chance = 0.01".to_owned(),
        "caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}".to_owned(),
        "cdc = false".to_owned(),
        format!("comment = {}", quote_string(&t.comment)),
        "compaction = {'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', 'max_threshold': '32', 'min_threshold': '4'}".to_owned(),
        "compression = {'chunk_length_in_kb': '16', 'class': 'org.apache.cassandra.io.compress.LZ4Compressor'}".to_owned(),
        "memtable = 'default'".to_owned(),
        "crc_check_chance = 1.0".to_owned(),
        format!("default_time_to_live = {}", t.default_time_to_live),
        "extensions = {}".to_owned(),
        format!("gc_grace_seconds = {}", t.gc_grace_seconds),
        "incremental_backups = true".to_owned(),
        "max_index_interval = 2048".to_owned(),
        "memtable_flush_period_in_ms = 0".to_owned(),
        "min_index_interval = 128".to_owned(),
        "read_repair = 'BLOCKING'".to_owned(),
        "speculative_retry = '99p'".to_owned(),
    ]);
    format!(
        "CREATE TABLE {}.{} (\n{}\n) WITH {};",
        quote_if_needed(&t.keyspace),
        quote_if_needed(&t.name),
        lines.join(",\n"),
        options.join("\n    AND ")
    )
}

fn result_table(with_statements: bool, rows: Vec<Vec<Option<CqlValue>>>) -> VirtualTable {
    let mut columns = vec![
        ("keyspace_name".to_owned(), ColumnType::Varchar),
        ("type".to_owned(), ColumnType::Varchar),
        ("name".to_owned(), ColumnType::Varchar),
    ];
    if with_statements {
        columns.push(("create_statement".to_owned(), ColumnType::Varchar));
    }
    VirtualTable {
        keyspace: String::new(),
        name: String::new(),
        columns,
        rows,
    }
}

fn text(s: &str) -> Option<CqlValue> {
    Some(CqlValue::Text(s.to_owned()))
}

/// `DESCRIBE KEYSPACE ks`: the keyspace, then its types, then its tables, each with its DDL.
pub fn describe_keyspace(
    k: &KeyspaceRow,
    types: &[TypeRow],
    tables: &[TableRow],
    columns: &[ColumnRow],
) -> VirtualTable {
    let mut rows = vec![vec![
        text(&k.name),
        text("keyspace"),
        text(&k.name),
        text(&keyspace_ddl(k)),
    ]];
    for t in types.iter().filter(|t| t.keyspace == k.name) {
        rows.push(vec![
            text(&k.name),
            text("type"),
            text(&t.name),
            text(&type_ddl(t)),
        ]);
    }
    for t in tables.iter().filter(|t| t.keyspace == k.name) {
        rows.push(vec![
            text(&k.name),
            text("table"),
            text(&t.name),
            text(&table_ddl(t, columns)),
        ]);
    }
    result_table(true, rows)
}

/// `DESCRIBE TABLE ks.t`.
pub fn describe_table(t: &TableRow, columns: &[ColumnRow]) -> VirtualTable {
    result_table(
        true,
        vec![vec![
            text(&t.keyspace),
            text("table"),
            text(&t.name),
            text(&table_ddl(t, columns)),
        ]],
    )
}

/// `DESCRIBE TYPE ks.t`.
pub fn describe_type(t: &TypeRow) -> VirtualTable {
    result_table(
        true,
        vec![vec![
            text(&t.keyspace),
            text("type"),
            text(&t.name),
            text(&type_ddl(t)),
        ]],
    )
}

/// `DESCRIBE KEYSPACES`: one row per keyspace, no statements.
pub fn list_keyspaces(keyspaces: &[KeyspaceRow]) -> VirtualTable {
    result_table(
        false,
        keyspaces
            .iter()
            .map(|k| vec![text(&k.name), text("keyspace"), text(&k.name)])
            .collect(),
    )
}

/// `DESCRIBE TABLES`: one row per table, no statements.
pub fn list_tables(tables: &[TableRow]) -> VirtualTable {
    result_table(
        false,
        tables
            .iter()
            .map(|t| vec![text(&t.keyspace), text("table"), text(&t.name)])
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> (KeyspaceRow, TableRow, Vec<ColumnRow>) {
        let ks = KeyspaceRow {
            name: "shop".into(),
            durable_writes: true,
            replication: vec![
                (
                    "class".into(),
                    "org.apache.cassandra.locator.SimpleStrategy".into(),
                ),
                ("replication_factor".into(), "1".into()),
            ],
        };
        let t = TableRow {
            keyspace: "shop".into(),
            name: "orders".into(),
            id: [7; 16],
            comment: "it's".into(),
            default_time_to_live: 60,
            gc_grace_seconds: 864_000,
            flags: vec!["compound".into()],
        };
        let col = |name: &str, kind, ty| ColumnRow {
            keyspace: "shop".into(),
            table: "orders".into(),
            name: name.into(),
            kind,
            ty,
            frozen: false,
        };
        let cols = vec![
            col("note", ColumnKind::Regular, ColumnType::Varchar),
            col(
                "placed",
                ColumnKind::Clustering(0, true),
                ColumnType::Timestamp,
            ),
            col("customer", ColumnKind::PartitionKey(0), ColumnType::Int),
            col("Region", ColumnKind::PartitionKey(1), ColumnType::Varchar),
            col("total", ColumnKind::Static, ColumnType::Bigint),
        ];
        (ks, t, cols)
    }

    #[test]
    fn keyspace_ddl_matches_cassandras_format() {
        let (ks, _, _) = schema();
        assert_eq!(
            keyspace_ddl(&ks),
            "CREATE KEYSPACE shop WITH replication = {'class': 'org.apache.cassandra.locator.SimpleStrategy', 'replication_factor': '1'}  AND durable_writes = true;"
        );
    }

    #[test]
    fn table_ddl_orders_columns_and_keys() {
        let (_, t, cols) = schema();
        let ddl = table_ddl(&t, &cols);
        assert!(ddl.starts_with(
            "CREATE TABLE shop.orders (\n    customer int,\n    \"Region\" text,\n    placed timestamp,\n    note text,\n    total bigint static,\n    PRIMARY KEY ((customer, \"Region\"), placed)\n) WITH CLUSTERING ORDER BY (placed DESC)\n    AND additional_write_policy = '99p'"
        ), "{ddl}");
        assert!(ddl.contains("AND comment = 'it''s'"));
        assert!(ddl.contains("AND default_time_to_live = 60"));
        assert!(ddl.ends_with("AND speculative_retry = '99p';"));
    }

    #[test]
    fn generated_ddl_parses_back_to_the_same_keys() {
        use crate::cql::{Statement, parse};
        let (ks, t, cols) = schema();
        let Statement::CreateTable(ct) = parse(&table_ddl(&t, &cols)).unwrap() else {
            panic!()
        };
        assert_eq!(ct.partition_key, vec!["customer", "Region"]);
        assert_eq!(ct.clustering_key, vec!["placed"]);
        assert!(ct.columns.iter().any(|c| c.name == "total" && c.is_static));
        assert!(matches!(
            parse(&keyspace_ddl(&ks)).unwrap(),
            Statement::CreateKeyspace(_)
        ));
        let ty = TypeRow {
            keyspace: "shop".into(),
            name: "address".into(),
            fields: vec![(
                "tags".into(),
                ColumnType::Set(Box::new(ColumnType::Varchar)),
            )],
        };
        assert!(matches!(
            parse(&type_ddl(&ty)).unwrap(),
            Statement::CreateType(_)
        ));
    }

    #[test]
    fn describe_keyspace_lists_keyspace_types_and_tables() {
        let (ks, t, cols) = schema();
        let ty = TypeRow {
            keyspace: "shop".into(),
            name: "address".into(),
            fields: vec![
                ("street".into(), ColumnType::Varchar),
                (
                    "tags".into(),
                    ColumnType::Set(Box::new(ColumnType::Varchar)),
                ),
            ],
        };
        let d = describe_keyspace(&ks, &[ty], &[t], &cols);
        assert_eq!(d.rows.len(), 3);
        assert_eq!(
            d.rows[1][3],
            Some(CqlValue::Text(
                "CREATE TYPE shop.address (\n    street text,\n    tags frozen<set<text>>\n);"
                    .into()
            ))
        );
        assert!(d.rows.iter().all(|r| r.len() == d.columns.len()));
        assert_eq!(list_keyspaces(&[schema().0]).columns.len(), 3);
    }
}
