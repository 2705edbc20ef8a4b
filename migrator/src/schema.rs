//! Schema: read origin's keyspaces, user types and tables from `system_schema`, create what
//! target lacks (user types before tables), and when target already has a table, list every
//! difference instead of copying into it.
//!
//! Types are kept as the CQL text `system_schema` stores (`frozen<list<int>>`, `"MyType"`): it
//! is exactly what DDL needs, and comparing origin with target compares the same spelling.
//! Table options copied: `comment`, `default_time_to_live`, `gc_grace_seconds` (compaction,
//! compression and caching are target-specific tuning and left to target's defaults).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use scylla::client::session::Session;

use crate::error::SchemaError;
use crate::progress::TableName;

/// Keyspaces that hold the cluster's own data: never migrated, never matched by patterns.
pub const SYSTEM_KEYSPACES: [&str; 7] = [
    "system",
    "system_schema",
    "system_auth",
    "system_distributed",
    "system_traces",
    "system_views",
    "system_virtual_schema",
];

/// Where a column sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnKind {
    PartitionKey(i32),
    /// Position, and whether the clustering order is descending.
    Clustering(i32, bool),
    Static,
    Regular,
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PartitionKey(p) => write!(f, "partition key #{p}"),
            Self::Clustering(p, desc) => {
                write!(f, "clustering #{p} {}", if *desc { "DESC" } else { "ASC" })
            }
            Self::Static => f.write_str("static"),
            Self::Regular => f.write_str("regular"),
        }
    }
}

/// How the migrator reads and writes a column, derived from its type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shape {
    /// One cell: simple types, frozen collections / UDTs, tuples, vectors.
    Simple,
    Counter,
    /// Non-frozen: one cell per element, each with its own writetime and TTL.
    List,
    Set,
    Map,
    /// Non-frozen user type: one cell per field (field names in order).
    Udt(Vec<String>),
}

impl Shape {
    /// Whether `writetime()` / `ttl()` return a list (one entry per live element).
    pub fn is_multi_cell(&self) -> bool {
        matches!(self, Self::List | Self::Set | Self::Map | Self::Udt(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    pub kind: ColumnKind,
    /// CQL text as `system_schema.columns.type` has it.
    pub ty: String,
    pub shape: Shape,
}

/// A table as origin (or target) defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub name: TableName,
    /// Partition key, clustering, then static and regular columns in name order.
    pub columns: Vec<ColumnDef>,
    pub comment: String,
    pub default_time_to_live: i32,
    pub gc_grace_seconds: i32,
}

impl TableDef {
    pub fn partition_key(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::PartitionKey(_)))
    }

    pub fn clustering(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Clustering(..)))
    }

    /// Static and regular columns.
    pub fn values(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Static | ColumnKind::Regular))
    }

    pub fn is_counter(&self) -> bool {
        self.values().any(|c| c.shape == Shape::Counter)
    }

    /// `"a", "b"`: the partition key columns, for `token(…)`.
    pub fn partition_key_list(&self) -> String {
        let names: Vec<String> = self.partition_key().map(|c| quote(&c.name)).collect();
        names.join(", ")
    }

    /// `CREATE TABLE IF NOT EXISTS …` with the key, clustering order and copied options.
    pub fn create_cql(&self) -> String {
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let stat = if c.kind == ColumnKind::Static {
                    " static"
                } else {
                    ""
                };
                format!("{} {}{stat}", quote(&c.name), c.ty)
            })
            .collect();
        let pk: Vec<String> = self.partition_key().map(|c| quote(&c.name)).collect();
        let ck: Vec<String> = self.clustering().map(|c| quote(&c.name)).collect();
        let mut key = format!("({})", pk.join(", "));
        if !ck.is_empty() {
            key = format!("{key}, {}", ck.join(", "));
        }
        cols.push(format!("PRIMARY KEY ({key})"));
        let mut with = Vec::new();
        let order: Vec<String> = self
            .clustering()
            .map(|c| {
                let desc = matches!(c.kind, ColumnKind::Clustering(_, true));
                format!("{} {}", quote(&c.name), if desc { "DESC" } else { "ASC" })
            })
            .collect();
        if !order.is_empty() {
            with.push(format!("CLUSTERING ORDER BY ({})", order.join(", ")));
        }
        with.push(format!("comment = {}", string_literal(&self.comment)));
        with.push(format!(
            "default_time_to_live = {}",
            self.default_time_to_live
        ));
        with.push(format!("gc_grace_seconds = {}", self.gc_grace_seconds));
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}) WITH {}",
            qualified(&self.name),
            cols.join(", "),
            with.join(" AND ")
        )
    }

    /// Every way `target` differs from `self` (origin) that makes copying unsafe: missing
    /// columns, other types, other key layout or clustering order. Extra regular columns on
    /// target are fine (they stay null) and not listed.
    pub fn differences(&self, target: &TableDef) -> Vec<Difference> {
        let mut out = Vec::new();
        for c in &self.columns {
            match target.columns.iter().find(|t| t.name == c.name) {
                None => out.push(Difference::MissingColumn {
                    column: c.name.clone(),
                    ty: c.ty.clone(),
                    kind: c.kind,
                }),
                Some(t) => {
                    if t.kind != c.kind {
                        out.push(Difference::KindMismatch {
                            column: c.name.clone(),
                            origin: c.kind,
                            target: t.kind,
                        });
                    }
                    if normalize_type(&t.ty) != normalize_type(&c.ty) {
                        out.push(Difference::TypeMismatch {
                            column: c.name.clone(),
                            origin: c.ty.clone(),
                            target: t.ty.clone(),
                        });
                    }
                }
            }
        }
        for t in &target.columns {
            let key = !matches!(t.kind, ColumnKind::Static | ColumnKind::Regular);
            if key && !self.columns.iter().any(|c| c.name == t.name) {
                out.push(Difference::ExtraKeyColumn {
                    column: t.name.clone(),
                    kind: t.kind,
                });
            }
        }
        out
    }
}

/// One incompatibility between origin's and target's definition of a table or user type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Difference {
    MissingColumn {
        column: String,
        ty: String,
        kind: ColumnKind,
    },
    TypeMismatch {
        column: String,
        origin: String,
        target: String,
    },
    /// Key membership, key position or clustering order differ.
    KindMismatch {
        column: String,
        origin: ColumnKind,
        target: ColumnKind,
    },
    ExtraKeyColumn {
        column: String,
        kind: ColumnKind,
    },
    /// A user type the table uses has other fields on target.
    TypeFields {
        name: String,
        origin: Vec<(String, String)>,
        target: Vec<(String, String)>,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingColumn { column, ty, kind } => {
                write!(f, "column {column} ({ty}, {kind}) is missing on target")
            }
            Self::TypeMismatch {
                column,
                origin,
                target,
            } => write!(
                f,
                "column {column} has type {origin} on origin but {target} on target"
            ),
            Self::KindMismatch {
                column,
                origin,
                target,
            } => write!(
                f,
                "column {column} is {origin} on origin but {target} on target"
            ),
            Self::ExtraKeyColumn { column, kind } => {
                write!(
                    f,
                    "target has key column {column} ({kind}) that origin lacks"
                )
            }
            Self::TypeFields {
                name,
                origin,
                target,
            } => {
                let show = |fs: &[(String, String)]| {
                    fs.iter()
                        .map(|(n, t)| format!("{n} {t}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                write!(
                    f,
                    "user type {name} has fields ({}) on origin but ({}) on target",
                    show(origin),
                    show(target)
                )
            }
        }
    }
}

/// A user-defined type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdtDef {
    pub keyspace: String,
    pub name: String,
    /// (field name, CQL type text).
    pub fields: Vec<(String, String)>,
}

impl UdtDef {
    pub fn create_cql(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(n, t)| format!("{} {t}", quote(n)))
            .collect();
        format!(
            "CREATE TYPE IF NOT EXISTS {}.{} ({})",
            quote(&self.keyspace),
            quote(&self.name),
            fields.join(", ")
        )
    }
}

/// A keyspace with its user types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceDef {
    pub name: String,
    pub replication: BTreeMap<String, String>,
    pub durable_writes: bool,
    pub types: Vec<UdtDef>,
}

impl KeyspaceDef {
    /// `CREATE KEYSPACE IF NOT EXISTS …` with origin's replication, or `replication` (a CQL
    /// map literal) instead.
    pub fn create_cql(&self, replication: Option<&str>) -> String {
        let repl = match replication {
            Some(r) => r.to_owned(),
            None => {
                let entries: Vec<String> = self
                    .replication
                    .iter()
                    .map(|(k, v)| format!("{}: {}", string_literal(k), string_literal(v)))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
        };
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {repl} AND durable_writes = {}",
            quote(&self.name),
            self.durable_writes
        )
    }

    /// The user types `table` uses, directly or through other types, dependencies first.
    pub fn types_used_by(&self, table: &TableDef) -> Vec<&UdtDef> {
        let mut wanted: BTreeSet<&str> = BTreeSet::new();
        let mut queue: Vec<&str> = table.columns.iter().map(|c| c.ty.as_str()).collect();
        while let Some(ty) = queue.pop() {
            for t in &self.types {
                if mentions(ty, &t.name) && wanted.insert(&t.name) {
                    queue.extend(t.fields.iter().map(|(_, ft)| ft.as_str()));
                }
            }
        }
        // Dependencies first: emit a type once every type it mentions is out (bounded by
        // the number of types; a cycle, which Cassandra forbids, ends the loop).
        let mut ordered: Vec<&UdtDef> = Vec::new();
        for _ in 0..=self.types.len() {
            for t in &self.types {
                let pending =
                    wanted.contains(t.name.as_str()) && !ordered.iter().any(|o| o.name == t.name);
                let ready = t.fields.iter().all(|(_, ft)| {
                    self.types.iter().all(|dep| {
                        dep.name == t.name
                            || !mentions(ft, &dep.name)
                            || ordered.iter().any(|o| o.name == dep.name)
                    })
                });
                if pending && ready {
                    ordered.push(t);
                }
            }
        }
        ordered
    }
}

/// Whether type text `ty` names the identifier `name` (as a whole word, quoted or not).
fn mentions(ty: &str, name: &str) -> bool {
    ty.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '"'))
        .map(|w| w.trim_matches('"'))
        .any(|w| w == name)
}

/// Type text without whitespace, for comparing spellings.
fn normalize_type(ty: &str) -> String {
    ty.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A double-quoted CQL identifier: keeps case and allows reserved words.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `"ks"."table"`.
pub fn qualified(t: &TableName) -> String {
    format!("{}.{}", quote(&t.keyspace), quote(&t.table))
}

fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn rows<R>(session: &Session, cql: &str, values: Vec<String>) -> Result<Vec<R>, SchemaError>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let fail = |e: String| SchemaError::Query {
        cql: cql.to_owned(),
        error: e,
    };
    let result = session
        .query_unpaged(cql, values)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let rows = result.into_rows_result().map_err(|e| fail(e.to_string()))?;
    rows.rows::<R>()
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<R>, _>>()
        .map_err(|e| fail(e.to_string()))
}

/// `system_schema.keyspaces`: name, durable_writes, replication.
type KeyspaceRow = (String, Option<bool>, Option<BTreeMap<String, String>>);
/// `system_schema.types`: name, field names, field types.
type TypeRow = (String, Option<Vec<String>>, Option<Vec<String>>);

/// The keyspace `name` with its user types, or `None` when the cluster lacks it.
pub async fn read_keyspace(
    session: &Session,
    name: &str,
) -> Result<Option<KeyspaceDef>, SchemaError> {
    let ks: Vec<KeyspaceRow> = rows(
        session,
        "SELECT keyspace_name, durable_writes, replication FROM system_schema.keyspaces \
         WHERE keyspace_name = ?",
        vec![name.to_owned()],
    )
    .await?;
    let Some((_, durable, replication)) = ks.into_iter().next() else {
        return Ok(None);
    };
    let types: Vec<TypeRow> = rows(
        session,
        "SELECT type_name, field_names, field_types FROM system_schema.types \
         WHERE keyspace_name = ?",
        vec![name.to_owned()],
    )
    .await?;
    Ok(Some(KeyspaceDef {
        name: name.to_owned(),
        replication: replication.unwrap_or_default(),
        durable_writes: durable.unwrap_or(true),
        types: types
            .into_iter()
            .map(|(t, names, tys)| UdtDef {
                keyspace: name.to_owned(),
                name: t,
                fields: names
                    .unwrap_or_default()
                    .into_iter()
                    .zip(tys.unwrap_or_default())
                    .collect(),
            })
            .collect(),
    }))
}

/// Every (keyspace, table) of the cluster outside the system keyspaces, in name order.
pub async fn list_tables(session: &Session) -> Result<Vec<TableName>, SchemaError> {
    let all: Vec<(String, String)> = rows(
        session,
        "SELECT keyspace_name, table_name FROM system_schema.tables",
        Vec::new(),
    )
    .await?;
    let mut out: Vec<TableName> = all
        .into_iter()
        .filter(|(k, _)| !SYSTEM_KEYSPACES.contains(&k.as_str()))
        .map(|(k, t)| TableName::new(k, t))
        .collect();
    out.sort();
    Ok(out)
}

/// The table `name` as the cluster defines it (`ks` gives its user types, to tell non-frozen
/// UDT columns), or `None` when it does not exist.
pub async fn read_table(
    session: &Session,
    ks: &KeyspaceDef,
    name: &TableName,
) -> Result<Option<TableDef>, SchemaError> {
    let key = vec![name.keyspace.clone(), name.table.clone()];
    let tables: Vec<(Option<String>, Option<i32>, Option<i32>)> = rows(
        session,
        "SELECT comment, default_time_to_live, gc_grace_seconds FROM system_schema.tables \
         WHERE keyspace_name = ? AND table_name = ?",
        key.clone(),
    )
    .await?;
    let Some((comment, ttl, gc)) = tables.into_iter().next() else {
        return Ok(None);
    };
    let cols: Vec<(String, String, i32, String, String)> = rows(
        session,
        "SELECT column_name, kind, position, clustering_order, type FROM system_schema.columns \
         WHERE keyspace_name = ? AND table_name = ?",
        key,
    )
    .await?;
    let mut columns = Vec::with_capacity(cols.len());
    for (col, kind, position, order, ty) in cols {
        let kind = match kind.as_str() {
            "partition_key" => ColumnKind::PartitionKey(position),
            "clustering" => ColumnKind::Clustering(position, order.eq_ignore_ascii_case("desc")),
            "static" => ColumnKind::Static,
            "regular" => ColumnKind::Regular,
            other => {
                return Err(SchemaError::UnknownColumnKind {
                    table: name.to_string(),
                    column: col,
                    kind: other.to_owned(),
                });
            }
        };
        let shape = shape_of(&ty, ks);
        columns.push(ColumnDef {
            name: col,
            kind,
            ty,
            shape,
        });
    }
    // Key columns by position, then the others by name: a stable order for statements.
    columns.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name)));
    Ok(Some(TableDef {
        name: name.clone(),
        columns,
        comment: comment.unwrap_or_default(),
        default_time_to_live: ttl.unwrap_or(0),
        gc_grace_seconds: gc.unwrap_or(864_000),
    }))
}

fn rank(c: &ColumnDef) -> (u8, i32) {
    match c.kind {
        ColumnKind::PartitionKey(p) => (0, p),
        ColumnKind::Clustering(p, _) => (1, p),
        ColumnKind::Static => (2, 0),
        ColumnKind::Regular => (3, 0),
    }
}

/// How a column of type text `ty` is read and written.
fn shape_of(ty: &str, ks: &KeyspaceDef) -> Shape {
    let t = ty.trim();
    if t == "counter" {
        Shape::Counter
    } else if t.starts_with("list<") {
        Shape::List
    } else if t.starts_with("set<") {
        Shape::Set
    } else if t.starts_with("map<") {
        Shape::Map
    } else if let Some(udt) = ks.types.iter().find(|u| u.name == t.trim_matches('"')) {
        Shape::Udt(udt.fields.iter().map(|(n, _)| n.clone()).collect())
    } else {
        Shape::Simple
    }
}

/// The DDL statements that make target able to take `table`: its keyspace and user types
/// where target lacks them, then the table. When target has the table already, checks it
/// instead and fails with every [`Difference`].
pub async fn prepare_target(
    origin: &Session,
    target: &Session,
    table: &TableName,
    replication: Option<&str>,
) -> Result<(TableDef, Vec<String>), SchemaError> {
    let origin_ks = read_keyspace(origin, &table.keyspace)
        .await?
        .ok_or_else(|| SchemaError::NoSuchTable(table.to_string()))?;
    let def = read_table(origin, &origin_ks, table)
        .await?
        .ok_or_else(|| SchemaError::NoSuchTable(table.to_string()))?;
    let mut applied = Vec::new();
    let target_ks = match read_keyspace(target, &table.keyspace).await? {
        Some(ks) => ks,
        None => {
            let cql = origin_ks.create_cql(replication);
            execute_ddl(target, &cql).await?;
            applied.push(cql);
            KeyspaceDef {
                types: Vec::new(),
                ..origin_ks.clone()
            }
        }
    };
    let mut differences = Vec::new();
    for udt in origin_ks.types_used_by(&def) {
        match target_ks.types.iter().find(|t| t.name == udt.name) {
            None => {
                let cql = udt.create_cql();
                execute_ddl(target, &cql).await?;
                applied.push(cql);
            }
            Some(t) => {
                let norm = |fs: &[(String, String)]| -> Vec<(String, String)> {
                    fs.iter()
                        .map(|(n, ty)| (n.clone(), normalize_type(ty)))
                        .collect()
                };
                if norm(&t.fields) != norm(&udt.fields) {
                    differences.push(Difference::TypeFields {
                        name: udt.name.clone(),
                        origin: udt.fields.clone(),
                        target: t.fields.clone(),
                    });
                }
            }
        }
    }
    match read_table(target, &origin_ks, table).await? {
        Some(existing) => differences.extend(def.differences(&existing)),
        None if differences.is_empty() => {
            let cql = def.create_cql();
            execute_ddl(target, &cql).await?;
            applied.push(cql);
        }
        None => {}
    }
    if !differences.is_empty() {
        return Err(SchemaError::Incompatible {
            table: table.to_string(),
            differences,
        });
    }
    Ok((def, applied))
}

/// Origin's definition of `table` once target's is known compatible (the validator changes
/// no schema): fails when either cluster lacks the table or with every [`Difference`].
pub async fn compatible_tables(
    origin: &Session,
    target: &Session,
    table: &TableName,
) -> Result<TableDef, SchemaError> {
    let origin_ks = read_keyspace(origin, &table.keyspace)
        .await?
        .ok_or_else(|| SchemaError::NoSuchTable(table.to_string()))?;
    let def = read_table(origin, &origin_ks, table)
        .await?
        .ok_or_else(|| SchemaError::NoSuchTable(table.to_string()))?;
    let missing = || SchemaError::MissingOnTarget(table.to_string());
    let target_ks = read_keyspace(target, &table.keyspace)
        .await?
        .ok_or_else(missing)?;
    let existing = read_table(target, &target_ks, table)
        .await?
        .ok_or_else(missing)?;
    let differences = def.differences(&existing);
    if !differences.is_empty() {
        return Err(SchemaError::Incompatible {
            table: table.to_string(),
            differences,
        });
    }
    Ok(def)
}

async fn execute_ddl(session: &Session, cql: &str) -> Result<(), SchemaError> {
    tracing::info!(%cql, "applying DDL on target");
    session
        .query_unpaged(cql, ())
        .await
        .map_err(|e| SchemaError::Ddl {
            cql: cql.to_owned(),
            error: e.to_string(),
        })?;
    // Later statements (and other drivers) must see the new schema on every node.
    session
        .await_schema_agreement()
        .await
        .map_err(|e| SchemaError::Ddl {
            cql: cql.to_owned(),
            error: format!("schema agreement: {e}"),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: ColumnKind, ty: &str) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            kind,
            ty: ty.into(),
            shape: Shape::Simple,
        }
    }

    fn table(columns: Vec<ColumnDef>) -> TableDef {
        TableDef {
            name: TableName::new("ks", "t"),
            columns,
            comment: "it's".into(),
            default_time_to_live: 0,
            gc_grace_seconds: 10,
        }
    }

    #[test]
    fn create_table_quotes_and_orders() {
        let t = table(vec![
            col("a", ColumnKind::PartitionKey(0), "int"),
            col("B", ColumnKind::PartitionKey(1), "text"),
            col("c", ColumnKind::Clustering(0, true), "int"),
            col("s", ColumnKind::Static, "int"),
            col("v", ColumnKind::Regular, "frozen<list<int>>"),
        ]);
        assert_eq!(
            t.create_cql(),
            "CREATE TABLE IF NOT EXISTS \"ks\".\"t\" (\"a\" int, \"B\" text, \"c\" int, \
             \"s\" int static, \"v\" frozen<list<int>>, PRIMARY KEY ((\"a\", \"B\"), \"c\")) \
             WITH CLUSTERING ORDER BY (\"c\" DESC) AND comment = 'it''s' AND \
             default_time_to_live = 0 AND gc_grace_seconds = 10"
        );
    }

    #[test]
    fn differences_lists_each() {
        let origin = table(vec![
            col("a", ColumnKind::PartitionKey(0), "int"),
            col("c", ColumnKind::Clustering(0, false), "int"),
            col("v", ColumnKind::Regular, "text"),
            col("w", ColumnKind::Regular, "int"),
        ]);
        let target = table(vec![
            col("a", ColumnKind::PartitionKey(0), "bigint"),
            col("c", ColumnKind::Clustering(0, true), "int"),
            col("v", ColumnKind::Regular, "text"),
            col("x", ColumnKind::Clustering(1, false), "int"),
            col("extra", ColumnKind::Regular, "int"),
        ]);
        let d: Vec<String> = origin
            .differences(&target)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            d,
            vec![
                "column a has type int on origin but bigint on target",
                "column c is clustering #0 ASC on origin but clustering #0 DESC on target",
                "column w (int, regular) is missing on target",
                "target has key column x (clustering #1 ASC) that origin lacks",
            ]
        );
    }

    #[test]
    fn user_types_dependencies_first() {
        let udt = |n: &str, f: &[(&str, &str)]| UdtDef {
            keyspace: "ks".into(),
            name: n.into(),
            fields: f
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };
        let ks = KeyspaceDef {
            name: "ks".into(),
            replication: BTreeMap::new(),
            durable_writes: true,
            types: vec![
                udt("outer", &[("i", "frozen<inner>")]),
                udt("unused", &[("x", "int")]),
                udt("inner", &[("x", "int")]),
            ],
        };
        let t = table(vec![
            col("a", ColumnKind::PartitionKey(0), "int"),
            col("v", ColumnKind::Regular, "list<frozen<outer>>"),
        ]);
        let names: Vec<&str> = ks
            .types_used_by(&t)
            .iter()
            .map(|u| u.name.as_str())
            .collect();
        assert_eq!(names, vec!["inner", "outer"]);
        assert_eq!(shape_of("outer", &ks), Shape::Udt(vec!["i".into()]));
        assert_eq!(shape_of("frozen<outer>", &ks), Shape::Simple);
        assert_eq!(shape_of("map<int, text>", &ks), Shape::Map);
    }
}
