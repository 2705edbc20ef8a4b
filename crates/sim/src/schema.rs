//! The schema: keyspaces, tables, columns and user types, and the [`Catalog`] that creates,
//! alters and drops them with Cassandra's rules and messages.
//!
//! The catalog is plain data with `&mut self` changes; whoever shares it (the executor) wraps
//! it in a lock. Tables are `Arc<TableDef>`: a change replaces the `Arc`, so a request that
//! already holds a definition keeps a consistent one while DDL runs.
//!
//! Every column gets a table-unique [`ColumnDef::id`] that is never reused: the store keys
//! cells by it, so a dropped and re-added column does not resurrect the old column's data
//! (Cassandra gets the same effect from its dropped-columns timestamps).

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_cql::types::ColumnType;

/// Cassandra's replication strategy classes live in this package.
pub const LOCATOR_PACKAGE: &str = "org.apache.cassandra.locator.";

/// A random (version 4) UUID: table ids and schema versions.
pub fn random_uuid() -> [u8; 16] {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// A clustering column's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusteringOrder {
    Asc,
    Desc,
}

/// Where a column sits in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// Position in the partition key.
    PartitionKey(usize),
    /// Position in the clustering key.
    Clustering(usize),
    Static,
    Regular,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColumnType,
    /// Whether a collection or UDT is frozen (one cell). Non-frozen ones at top level keep one
    /// cell per element, each with its own timestamp and TTL.
    pub frozen: bool,
    pub kind: ColumnKind,
    /// The store's key for this column's cells; unique in the table and never reused, so
    /// dropping and re-adding a column does not bring the old data back.
    pub id: u32,
}

impl ColumnDef {
    /// Whether the column keeps one cell per element (non-frozen list/set/map/UDT).
    pub fn is_multi_cell(&self) -> bool {
        !self.frozen
            && matches!(
                self.ty,
                ColumnType::List(_)
                    | ColumnType::Set(_)
                    | ColumnType::Map(..)
                    | ColumnType::Udt { .. }
            )
    }

    pub fn is_primary_key(&self) -> bool {
        matches!(
            self.kind,
            ColumnKind::PartitionKey(_) | ColumnKind::Clustering(_)
        )
    }

    pub fn is_static(&self) -> bool {
        self.kind == ColumnKind::Static
    }

    pub fn is_counter(&self) -> bool {
        self.ty == ColumnType::Counter
    }

    /// The CQL type as DESCRIBE and `system_schema.columns` spell it, `frozen<…>` included.
    pub fn cql_type(&self) -> String {
        let name = self.ty.cql_name();
        let wraps = matches!(
            self.ty,
            ColumnType::List(_)
                | ColumnType::Set(_)
                | ColumnType::Map(..)
                | ColumnType::Udt { .. }
                | ColumnType::Tuple(_)
        );
        // Tuples are always frozen; Cassandra prints them wrapped when they are columns.
        if wraps && (self.frozen || matches!(self.ty, ColumnType::Tuple(_))) {
            format!("frozen<{name}>")
        } else {
            name
        }
    }
}

/// A table option's value as written in `WITH name = value`.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// A string literal, unquoted.
    Text(String),
    /// A numeric or boolean literal, as written.
    Number(String),
    /// A map literal (`{'class': 'SimpleStrategy', …}`), keys and values unquoted.
    Map(Vec<(String, String)>),
}

impl OptionValue {
    /// The CQL literal, as DESCRIBE prints it.
    pub fn to_cql(&self) -> String {
        fn quote(s: &str) -> String {
            format!("'{}'", s.replace('\'', "''"))
        }
        match self {
            Self::Text(s) => quote(s),
            Self::Number(n) => n.clone(),
            Self::Map(m) => {
                let items: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
        }
    }
}

/// Table options. The three with semantics are typed; the rest are kept as given (with
/// Cassandra 5.0's defaults) so DESCRIBE and `system_schema.tables` can show them.
#[derive(Debug, Clone, PartialEq)]
pub struct TableOptions {
    /// Seconds; 0 means no default TTL.
    pub default_time_to_live: i32,
    pub gc_grace_seconds: i32,
    pub comment: String,
    /// Every other option by name, sorted, each as a typed value.
    pub other: BTreeMap<String, OptionValue>,
}

fn text(s: &str) -> OptionValue {
    OptionValue::Text(s.to_owned())
}

fn num(s: &str) -> OptionValue {
    OptionValue::Number(s.to_owned())
}

fn map(items: &[(&str, &str)]) -> OptionValue {
    OptionValue::Map(
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

impl Default for TableOptions {
    /// Cassandra 5.0's defaults (as `DESCRIBE TABLE` shows them on a fresh table).
    fn default() -> Self {
        let other = [
            ("additional_write_policy", text("99p")),
            ("allow_auto_snapshot", num("true")),
            ("bloom_filter_fp_chance", num("0.01")),
            (
                "caching",
                map(&[("keys", "ALL"), ("rows_per_partition", "NONE")]),
            ),
            ("cdc", num("false")),
            (
                "compaction",
                map(&[
                    (
                        "class",
                        "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
                    ),
                    ("max_threshold", "32"),
                    ("min_threshold", "4"),
                ]),
            ),
            (
                "compression",
                map(&[
                    ("chunk_length_in_kb", "16"),
                    ("class", "org.apache.cassandra.io.compress.LZ4Compressor"),
                ]),
            ),
            ("crc_check_chance", num("1.0")),
            ("extensions", OptionValue::Map(Vec::new())),
            ("incremental_backups", num("true")),
            ("max_index_interval", num("2048")),
            ("memtable", text("default")),
            ("memtable_flush_period_in_ms", num("0")),
            ("min_index_interval", num("128")),
            ("read_repair", text("BLOCKING")),
            ("speculative_retry", text("99p")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            default_time_to_live: 0,
            gc_grace_seconds: 864_000,
            comment: String::new(),
            other,
        }
    }
}

impl TableOptions {
    /// Applies `WITH` options, checking names and the typed ones' values.
    pub fn apply(&mut self, options: &[(String, OptionValue)]) -> Result<(), SchemaError> {
        for (name, value) in options {
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "default_time_to_live" => {
                    self.default_time_to_live = int_option(&name, value)?;
                    if self.default_time_to_live < 0 {
                        return Err(SchemaError::Configuration(format!(
                            "default_time_to_live must be greater than or equal to 0 (got {})",
                            self.default_time_to_live
                        )));
                    }
                    if self.default_time_to_live > crate::store::MAX_TTL as i32 {
                        return Err(SchemaError::Configuration(format!(
                            "default_time_to_live must be less than or equal to {} (got {})",
                            crate::store::MAX_TTL,
                            self.default_time_to_live
                        )));
                    }
                }
                "gc_grace_seconds" => {
                    self.gc_grace_seconds = int_option(&name, value)?;
                    if self.gc_grace_seconds < 0 {
                        return Err(SchemaError::Configuration(format!(
                            "gc_grace_seconds must be greater than or equal to 0 (got {})",
                            self.gc_grace_seconds
                        )));
                    }
                }
                "comment" => match value {
                    OptionValue::Text(s) => self.comment = s.clone(),
                    other => {
                        return Err(SchemaError::Syntax(format!(
                            "Invalid value for property 'comment': {}",
                            other.to_cql()
                        )));
                    }
                },
                _ if self.other.contains_key(&name) => {
                    self.other.insert(name, value.clone());
                }
                _ => {
                    return Err(SchemaError::Syntax(format!("Unknown property '{name}'")));
                }
            }
        }
        Ok(())
    }
}

fn int_option(name: &str, value: &OptionValue) -> Result<i32, SchemaError> {
    let s = match value {
        OptionValue::Number(s) | OptionValue::Text(s) => s,
        OptionValue::Map(_) => "",
    };
    s.parse().map_err(|_| {
        SchemaError::Syntax(format!(
            "Invalid integer value {} for '{name}'",
            value.to_cql()
        ))
    })
}

/// A column that was dropped, for `system_schema.dropped_columns`.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedColumn {
    pub name: String,
    pub ty: ColumnType,
    /// When it was dropped, µs since the epoch.
    pub dropped_time_micros: i64,
    pub kind: ColumnKind,
}

/// A table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub keyspace: String,
    pub name: String,
    pub id: [u8; 16],
    pub partition_key: Vec<ColumnDef>,
    pub clustering: Vec<(ColumnDef, ClusteringOrder)>,
    /// Static and regular columns together, sorted by name: the order `SELECT *` shows them
    /// after the primary key.
    pub value_columns: Vec<ColumnDef>,
    pub options: TableOptions,
    /// A counter table has only counter columns outside its primary key.
    pub is_counter: bool,
    pub dropped_columns: Vec<DroppedColumn>,
    /// The next [`ColumnDef::id`]; ids are never reused.
    pub next_column_id: u32,
}

impl TableDef {
    /// Every column in `SELECT *` order: partition key, clustering, then the rest by name.
    pub fn columns(&self) -> impl Iterator<Item = &ColumnDef> {
        self.partition_key
            .iter()
            .chain(self.clustering.iter().map(|(c, _)| c))
            .chain(self.value_columns.iter())
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns().find(|c| c.name == name)
    }

    /// The position of a static or regular column in [`TableDef::value_columns`].
    pub fn value_index(&self, name: &str) -> Option<usize> {
        self.value_columns.iter().position(|c| c.name == name)
    }

    pub fn static_columns(&self) -> impl Iterator<Item = &ColumnDef> {
        self.value_columns.iter().filter(|c| c.is_static())
    }

    pub fn regular_columns(&self) -> impl Iterator<Item = &ColumnDef> {
        self.value_columns.iter().filter(|c| !c.is_static())
    }

    pub fn has_static_columns(&self) -> bool {
        self.value_columns.iter().any(ColumnDef::is_static)
    }
}

/// A user-defined type.
#[derive(Debug, Clone, PartialEq)]
pub struct UdtDef {
    pub keyspace: String,
    pub name: String,
    pub fields: Vec<(String, ColumnType)>,
}

impl UdtDef {
    /// The column type of this UDT.
    pub fn column_type(&self) -> ColumnType {
        ColumnType::Udt {
            keyspace: self.keyspace.clone(),
            name: self.name.clone(),
            fields: self.fields.clone(),
        }
    }
}

/// A keyspace.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyspaceDef {
    pub name: String,
    /// `class` first (full class name), then the strategy's options as given.
    pub replication: Vec<(String, String)>,
    pub durable_writes: bool,
    pub tables: BTreeMap<String, Arc<TableDef>>,
    pub types: BTreeMap<String, UdtDef>,
}

/// A column in `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: ColumnType,
    pub frozen: bool,
    pub is_static: bool,
}

/// `CREATE TABLE`, resolved (UDT names already turned into their types).
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub keyspace: String,
    pub name: String,
    /// In declaration order.
    pub columns: Vec<ColumnSpec>,
    pub partition_key: Vec<String>,
    /// Clustering columns with `CLUSTERING ORDER BY` applied (ASC when not given).
    pub clustering: Vec<(String, ClusteringOrder)>,
    pub options: Vec<(String, OptionValue)>,
    /// `WITH id = …`; a random id otherwise.
    pub id: Option<[u8; 16]>,
}

/// `ALTER TABLE`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AlterTable {
    Add(Vec<ColumnSpec>),
    Drop(Vec<String>),
    Rename(Vec<(String, String)>),
    With(Vec<(String, OptionValue)>),
}

/// `ALTER TYPE`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AlterType {
    Add(String, ColumnType),
    Rename(Vec<(String, String)>),
}

/// Why a schema change was refused: Cassandra's messages; the variant picks the error code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// ALREADY_EXISTS (0x2400); `table` is empty for a keyspace.
    #[error("{message}")]
    AlreadyExists {
        keyspace: String,
        table: String,
        message: String,
    },
    /// INVALID (0x2200).
    #[error("{0}")]
    Invalid(String),
    /// CONFIG_ERROR (0x2300).
    #[error("{0}")]
    Configuration(String),
    /// SYNTAX_ERROR (0x2000): bad option names or values.
    #[error("{0}")]
    Syntax(String),
}

fn invalid(s: String) -> SchemaError {
    SchemaError::Invalid(s)
}

/// All keyspaces, and the schema version that changes with each of their changes.
#[derive(Debug, Clone)]
pub struct Catalog {
    keyspaces: BTreeMap<String, KeyspaceDef>,
    version: [u8; 16],
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    pub fn new() -> Self {
        Self {
            keyspaces: BTreeMap::new(),
            version: random_uuid(),
        }
    }

    /// Changes on every schema change (drivers wait for agreement on it).
    pub fn schema_version(&self) -> [u8; 16] {
        self.version
    }

    fn changed(&mut self) {
        self.version = random_uuid();
    }

    pub fn keyspaces(&self) -> impl Iterator<Item = &KeyspaceDef> {
        self.keyspaces.values()
    }

    pub fn keyspace(&self, name: &str) -> Option<&KeyspaceDef> {
        self.keyspaces.get(name)
    }

    pub fn table(&self, keyspace: &str, table: &str) -> Option<&Arc<TableDef>> {
        self.keyspaces.get(keyspace)?.tables.get(table)
    }

    pub fn udt(&self, keyspace: &str, name: &str) -> Option<&UdtDef> {
        self.keyspaces.get(keyspace)?.types.get(name)
    }

    fn keyspace_mut(&mut self, name: &str) -> Result<&mut KeyspaceDef, SchemaError> {
        self.keyspaces
            .get_mut(name)
            .ok_or_else(|| invalid(format!("Keyspace '{name}' doesn't exist")))
    }

    /// `CREATE KEYSPACE`. `Ok(false)`: it existed and `if_not_exists` was given.
    pub fn create_keyspace(
        &mut self,
        name: &str,
        replication: &[(String, String)],
        durable_writes: bool,
        if_not_exists: bool,
    ) -> Result<bool, SchemaError> {
        let replication = validate_replication(replication)?;
        if self.keyspaces.contains_key(name) {
            if if_not_exists {
                return Ok(false);
            }
            return Err(SchemaError::AlreadyExists {
                keyspace: name.to_owned(),
                table: String::new(),
                message: format!("Cannot add existing keyspace \"{name}\""),
            });
        }
        self.keyspaces.insert(
            name.to_owned(),
            KeyspaceDef {
                name: name.to_owned(),
                replication,
                durable_writes,
                tables: BTreeMap::new(),
                types: BTreeMap::new(),
            },
        );
        self.changed();
        Ok(true)
    }

    /// `ALTER KEYSPACE`.
    pub fn alter_keyspace(
        &mut self,
        name: &str,
        replication: Option<&[(String, String)]>,
        durable_writes: Option<bool>,
    ) -> Result<(), SchemaError> {
        let replication = replication.map(validate_replication).transpose()?;
        let ks = self.keyspace_mut(name)?;
        if let Some(r) = replication {
            ks.replication = r;
        }
        if let Some(d) = durable_writes {
            ks.durable_writes = d;
        }
        self.changed();
        Ok(())
    }

    /// `DROP KEYSPACE`; returns the dropped keyspace (its tables' data is the store's to free).
    pub fn drop_keyspace(
        &mut self,
        name: &str,
        if_exists: bool,
    ) -> Result<Option<KeyspaceDef>, SchemaError> {
        match self.keyspaces.remove(name) {
            Some(ks) => {
                self.changed();
                Ok(Some(ks))
            }
            None if if_exists => Ok(None),
            None => Err(invalid(format!(
                "Cannot drop non existing keyspace '{name}'."
            ))),
        }
    }

    /// `CREATE TABLE`. `Ok(None)`: it existed and `if_not_exists` was given.
    pub fn create_table(
        &mut self,
        spec: &TableSpec,
        if_not_exists: bool,
    ) -> Result<Option<Arc<TableDef>>, SchemaError> {
        let ks = self.keyspace_mut(&spec.keyspace)?;
        if ks.tables.contains_key(&spec.name) {
            if if_not_exists {
                return Ok(None);
            }
            return Err(SchemaError::AlreadyExists {
                keyspace: spec.keyspace.clone(),
                table: spec.name.clone(),
                message: format!(
                    "Cannot add already existing table \"{}\" to keyspace \"{}\"",
                    spec.name, spec.keyspace
                ),
            });
        }
        let def = Arc::new(build_table(spec)?);
        ks.tables.insert(spec.name.clone(), def.clone());
        self.changed();
        Ok(Some(def))
    }

    /// `DROP TABLE`; returns the dropped definition (the store frees its data by id).
    pub fn drop_table(
        &mut self,
        keyspace: &str,
        name: &str,
        if_exists: bool,
    ) -> Result<Option<Arc<TableDef>>, SchemaError> {
        let removed = match self.keyspaces.get_mut(keyspace) {
            Some(ks) => ks.tables.remove(name),
            None if if_exists => return Ok(None),
            None => return Err(invalid(format!("Keyspace '{keyspace}' doesn't exist"))),
        };
        match removed {
            Some(t) => {
                self.changed();
                Ok(Some(t))
            }
            None if if_exists => Ok(None),
            None => Err(invalid(format!("Table '{keyspace}.{name}' doesn't exist"))),
        }
    }

    /// `ALTER TABLE`, with Cassandra's rules; returns the new definition.
    /// `now_micros` is recorded as the drop time of dropped columns.
    pub fn alter_table(
        &mut self,
        keyspace: &str,
        name: &str,
        change: &AlterTable,
        now_micros: i64,
    ) -> Result<Arc<TableDef>, SchemaError> {
        let ks = self.keyspace_mut(keyspace)?;
        let old = ks
            .tables
            .get(name)
            .ok_or_else(|| invalid(format!("Table '{keyspace}.{name}' doesn't exist")))?;
        let mut t = TableDef::clone(old);
        match change {
            AlterTable::Add(cols) => {
                for c in cols {
                    add_column(&mut t, c)?;
                }
            }
            AlterTable::Drop(names) => {
                for n in names {
                    let col = t.column(n).ok_or_else(|| {
                        invalid(format!("Column {n} was not found in table {name}"))
                    })?;
                    if col.is_primary_key() {
                        return Err(invalid(format!("Cannot drop PRIMARY KEY column {n}")));
                    }
                    let dropped = DroppedColumn {
                        name: col.name.clone(),
                        ty: col.ty.clone(),
                        dropped_time_micros: now_micros,
                        kind: col.kind,
                    };
                    t.value_columns.retain(|c| &c.name != n);
                    t.dropped_columns.retain(|d| &d.name != n);
                    t.dropped_columns.push(dropped);
                }
            }
            AlterTable::Rename(pairs) => {
                for (from, to) in pairs {
                    let Some(col) = t.column(from) else {
                        return Err(invalid(format!(
                            "Cannot rename unknown column {from} in table {name}"
                        )));
                    };
                    if !col.is_primary_key() {
                        return Err(invalid(format!(
                            "Cannot rename non PRIMARY KEY column {from}"
                        )));
                    }
                    if t.column(to).is_some() {
                        return Err(invalid(format!(
                            "Cannot rename column {from} to {to} in table '{name}'; another column with that name already exists"
                        )));
                    }
                    for c in t
                        .partition_key
                        .iter_mut()
                        .chain(t.clustering.iter_mut().map(|(c, _)| c))
                    {
                        if &c.name == from {
                            c.name = to.clone();
                        }
                    }
                }
            }
            AlterTable::With(options) => {
                t.options.apply(options)?;
                if t.is_counter && t.options.default_time_to_live > 0 {
                    return Err(SchemaError::Configuration(
                        "Cannot set default_time_to_live on a table with counters".into(),
                    ));
                }
            }
        }
        let t = Arc::new(t);
        ks.tables.insert(name.to_owned(), t.clone());
        self.changed();
        Ok(t)
    }

    /// `CREATE TYPE`. `Ok(false)`: it existed and `if_not_exists` was given.
    pub fn create_type(
        &mut self,
        keyspace: &str,
        name: &str,
        fields: &[(String, ColumnType)],
        if_not_exists: bool,
    ) -> Result<bool, SchemaError> {
        let ks = self.keyspace_mut(keyspace)?;
        if ks.types.contains_key(name) {
            if if_not_exists {
                return Ok(false);
            }
            return Err(SchemaError::AlreadyExists {
                keyspace: keyspace.to_owned(),
                table: name.to_owned(),
                message: format!("A user type with name '{name}' already exists"),
            });
        }
        for (i, (f, _)) in fields.iter().enumerate() {
            if fields[..i].iter().any(|(g, _)| g == f) {
                return Err(invalid(format!("Duplicate field name {f} in type {name}")));
            }
        }
        ks.types.insert(
            name.to_owned(),
            UdtDef {
                keyspace: keyspace.to_owned(),
                name: name.to_owned(),
                fields: fields.to_vec(),
            },
        );
        self.changed();
        Ok(true)
    }

    /// `ALTER TYPE`; tables using the type see the new fields.
    pub fn alter_type(
        &mut self,
        keyspace: &str,
        name: &str,
        change: &AlterType,
    ) -> Result<(), SchemaError> {
        let ks = self.keyspace_mut(keyspace)?;
        let udt = ks
            .types
            .get_mut(name)
            .ok_or_else(|| invalid(format!("No user type named '{name}' exists.")))?;
        match change {
            AlterType::Add(field, ty) => {
                if udt.fields.iter().any(|(f, _)| f == field) {
                    return Err(invalid(format!(
                        "Cannot add new field {field} to type {keyspace}.{name}: a field with name {field} already exists"
                    )));
                }
                udt.fields.push((field.clone(), ty.clone()));
            }
            AlterType::Rename(pairs) => {
                for (from, to) in pairs {
                    if !udt.fields.iter().any(|(f, _)| f == from) {
                        return Err(invalid(format!(
                            "Unkown field {from} in user type {keyspace}.{name}"
                        )));
                    }
                    if udt.fields.iter().any(|(f, _)| f == to) {
                        return Err(invalid(format!(
                            "Duplicate field name {to} in type {keyspace}.{name}"
                        )));
                    }
                    for (f, _) in &mut udt.fields {
                        if f == from {
                            f.clone_from(to);
                        }
                    }
                }
            }
        }
        let new_ty = udt.column_type();
        for t in ks.tables.values_mut() {
            let mut def = TableDef::clone(t);
            let mut touched = false;
            for c in def
                .partition_key
                .iter_mut()
                .chain(def.clustering.iter_mut().map(|(c, _)| c))
                .chain(def.value_columns.iter_mut())
            {
                touched |= replace_udt(&mut c.ty, &new_ty);
            }
            if touched {
                *t = Arc::new(def);
            }
        }
        self.changed();
        Ok(())
    }

    /// `DROP TYPE`. `Ok(false)`: it did not exist and `if_exists` was given.
    pub fn drop_type(
        &mut self,
        keyspace: &str,
        name: &str,
        if_exists: bool,
    ) -> Result<bool, SchemaError> {
        let ks = match self.keyspaces.get_mut(keyspace) {
            Some(ks) => ks,
            None if if_exists => return Ok(false),
            None => return Err(invalid(format!("Keyspace '{keyspace}' doesn't exist"))),
        };
        if !ks.types.contains_key(name) {
            if if_exists {
                return Ok(false);
            }
            return Err(invalid(format!("Type '{keyspace}.{name}' doesn't exist")));
        }
        for t in ks.tables.values() {
            if t.columns().any(|c| uses_udt(&c.ty, keyspace, name)) {
                return Err(invalid(format!(
                    "Cannot drop user type '{keyspace}.{name}' as it is still used by table {keyspace}.{}",
                    t.name
                )));
            }
        }
        for u in ks.types.values() {
            if u.name != name && u.fields.iter().any(|(_, t)| uses_udt(t, keyspace, name)) {
                return Err(invalid(format!(
                    "Cannot drop user type '{keyspace}.{name}' as it is still used by user type {}",
                    u.name
                )));
            }
        }
        ks.types.remove(name);
        self.changed();
        Ok(true)
    }
}

fn uses_udt(ty: &ColumnType, keyspace: &str, name: &str) -> bool {
    match ty {
        ColumnType::Udt {
            keyspace: k,
            name: n,
            fields,
        } => {
            (k == keyspace && n == name) || fields.iter().any(|(_, t)| uses_udt(t, keyspace, name))
        }
        ColumnType::List(e) | ColumnType::Set(e) => uses_udt(e, keyspace, name),
        ColumnType::Map(k, v) => uses_udt(k, keyspace, name) || uses_udt(v, keyspace, name),
        ColumnType::Tuple(ts) => ts.iter().any(|t| uses_udt(t, keyspace, name)),
        ColumnType::Vector { element, .. } => uses_udt(element, keyspace, name),
        _ => false,
    }
}

/// Replaces every occurrence of the UDT `new` (same keyspace and name) inside `ty`.
fn replace_udt(ty: &mut ColumnType, new: &ColumnType) -> bool {
    let ColumnType::Udt {
        keyspace: nk,
        name: nn,
        ..
    } = new
    else {
        return false;
    };
    match ty {
        ColumnType::Udt { keyspace, name, .. } if keyspace == nk && name == nn => {
            *ty = new.clone();
            true
        }
        ColumnType::Udt { fields, .. } => fields
            .iter_mut()
            .fold(false, |acc, (_, t)| replace_udt(t, new) | acc),
        ColumnType::List(e) | ColumnType::Set(e) => replace_udt(e, new),
        ColumnType::Map(k, v) => replace_udt(k, new) | replace_udt(v, new),
        ColumnType::Tuple(ts) => ts
            .iter_mut()
            .fold(false, |acc, t| replace_udt(t, new) | acc),
        ColumnType::Vector { element, .. } => replace_udt(element, new),
        _ => false,
    }
}

fn validate_replication(r: &[(String, String)]) -> Result<Vec<(String, String)>, SchemaError> {
    let class = r
        .iter()
        .find(|(k, _)| k == "class")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            SchemaError::Configuration("Missing replication strategy class".to_owned())
        })?;
    let short = class.strip_prefix(LOCATOR_PACKAGE).unwrap_or(class);
    let full = match short {
        "SimpleStrategy" | "NetworkTopologyStrategy" | "LocalStrategy" | "EverywhereStrategy" => {
            format!("{LOCATOR_PACKAGE}{short}")
        }
        _ => {
            return Err(SchemaError::Configuration(format!(
                "Unable to find replication strategy class '{class}'"
            )));
        }
    };
    let options: Vec<(String, String)> = r.iter().filter(|(k, _)| k != "class").cloned().collect();
    for (k, v) in &options {
        if short == "SimpleStrategy" && k != "replication_factor" {
            return Err(SchemaError::Configuration(format!(
                "Unrecognized strategy option {{{k}}} passed to SimpleStrategy for keyspace"
            )));
        }
        let rf = v.split('/').next().unwrap_or("");
        if rf.parse::<u32>().is_err() {
            return Err(SchemaError::Configuration(format!(
                "Replication factor must be numeric; found {v}"
            )));
        }
    }
    if short == "SimpleStrategy" && options.is_empty() {
        return Err(SchemaError::Configuration(
            "SimpleStrategy requires a replication_factor strategy option.".to_owned(),
        ));
    }
    let mut out = vec![("class".to_owned(), full)];
    out.extend(options);
    Ok(out)
}

/// Checks one column's type where it is declared; `key` for primary key columns.
fn check_column_type(c: &ColumnSpec, key: bool) -> Result<(), SchemaError> {
    let multi = !c.frozen
        && matches!(
            c.ty,
            ColumnType::List(_) | ColumnType::Set(_) | ColumnType::Map(..) | ColumnType::Udt { .. }
        );
    if key {
        if multi {
            return Err(invalid(format!(
                "Invalid non-frozen collection type {} for PRIMARY KEY component {}",
                c.ty.cql_name(),
                c.name
            )));
        }
        if matches!(c.ty, ColumnType::Counter | ColumnType::Duration) {
            return Err(invalid(format!(
                "{} type is not supported for PRIMARY KEY column '{}'",
                c.ty.cql_name(),
                c.name
            )));
        }
    }
    if c.is_static && key {
        return Err(invalid(format!(
            "Static column {} cannot be part of the PRIMARY KEY",
            c.name
        )));
    }
    Ok(())
}

fn build_table(spec: &TableSpec) -> Result<TableDef, SchemaError> {
    for (i, c) in spec.columns.iter().enumerate() {
        if spec.columns[..i].iter().any(|d| d.name == c.name) {
            return Err(invalid(format!(
                "Duplicate column {} declaration for table {}.{}",
                c.name, spec.keyspace, spec.name
            )));
        }
    }
    if spec.partition_key.is_empty() {
        return Err(invalid(format!(
            "No PRIMARY KEY specifed for table '{}' (exactly one required)",
            spec.name
        )));
    }
    let find = |n: &str| {
        spec.columns
            .iter()
            .find(|c| c.name == n)
            .ok_or_else(|| invalid(format!("Unknown definition {n} referenced in PRIMARY KEY")))
    };
    let mut id = 0u32;
    let mut next = || {
        id += 1;
        id - 1
    };
    let mut partition_key = Vec::new();
    for (i, n) in spec.partition_key.iter().enumerate() {
        let c = find(n)?;
        check_column_type(c, true)?;
        partition_key.push(ColumnDef {
            name: c.name.clone(),
            ty: c.ty.clone(),
            frozen: c.frozen,
            kind: ColumnKind::PartitionKey(i),
            id: next(),
        });
    }
    let mut clustering = Vec::new();
    for (i, (n, order)) in spec.clustering.iter().enumerate() {
        let c = find(n)?;
        check_column_type(c, true)?;
        if spec.partition_key.contains(n) {
            return Err(invalid(format!("Duplicate column {n} in PRIMARY KEY")));
        }
        clustering.push((
            ColumnDef {
                name: c.name.clone(),
                ty: c.ty.clone(),
                frozen: c.frozen,
                kind: ColumnKind::Clustering(i),
                id: next(),
            },
            *order,
        ));
    }
    let mut t = TableDef {
        keyspace: spec.keyspace.clone(),
        name: spec.name.clone(),
        id: spec.id.unwrap_or_else(random_uuid),
        partition_key,
        clustering,
        value_columns: Vec::new(),
        options: TableOptions::default(),
        is_counter: false,
        dropped_columns: Vec::new(),
        next_column_id: id,
    };
    let values: Vec<&ColumnSpec> = spec
        .columns
        .iter()
        .filter(|c| t.column(&c.name).is_none())
        .collect();
    let counters = values
        .iter()
        .filter(|c| c.ty == ColumnType::Counter)
        .count();
    if counters > 0 && counters != values.len() {
        return Err(invalid(
            "Cannot mix counter and non counter columns in the same table".to_owned(),
        ));
    }
    t.is_counter = counters > 0;
    for c in values {
        add_column(&mut t, c)?;
    }
    t.options.apply(&spec.options)?;
    if t.is_counter && t.options.default_time_to_live > 0 {
        return Err(SchemaError::Configuration(
            "Cannot set default_time_to_live on a table with counters".into(),
        ));
    }
    Ok(t)
}

fn add_column(t: &mut TableDef, c: &ColumnSpec) -> Result<(), SchemaError> {
    if t.column(&c.name).is_some() {
        return Err(invalid(format!(
            "Column with name '{}' already exists",
            c.name
        )));
    }
    check_column_type(c, false)?;
    if c.is_static && t.clustering.is_empty() {
        return Err(invalid(
            "Static columns are only useful (and thus allowed) if the table has at least one clustering column".to_owned(),
        ));
    }
    let is_counter = c.ty == ColumnType::Counter;
    if !t.value_columns.is_empty() || t.is_counter {
        if t.is_counter && !is_counter {
            return Err(invalid(format!(
                "Cannot add a non counter column ({}) in a counter column family",
                c.name
            )));
        }
        if !t.is_counter && is_counter {
            return Err(invalid(format!(
                "Cannot add a counter column ({}) in a non counter column family",
                c.name
            )));
        }
    }
    let def = ColumnDef {
        name: c.name.clone(),
        ty: c.ty.clone(),
        frozen: c.frozen,
        kind: if c.is_static {
            ColumnKind::Static
        } else {
            ColumnKind::Regular
        },
        id: t.next_column_id,
    };
    t.next_column_id += 1;
    let at = t
        .value_columns
        .partition_point(|x| x.name.as_str() < c.name.as_str());
    t.value_columns.insert(at, def);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn col(name: &str, ty: ColumnType) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            ty,
            frozen: false,
            is_static: false,
        }
    }

    pub(crate) fn catalog_with_ks() -> Catalog {
        let mut c = Catalog::new();
        c.create_keyspace(
            "ks",
            &[
                ("class".into(), "SimpleStrategy".into()),
                ("replication_factor".into(), "1".into()),
            ],
            true,
            false,
        )
        .unwrap();
        c
    }

    pub(crate) fn spec(
        name: &str,
        columns: Vec<ColumnSpec>,
        pk: &[&str],
        ck: &[(&str, ClusteringOrder)],
    ) -> TableSpec {
        TableSpec {
            keyspace: "ks".into(),
            name: name.into(),
            columns,
            partition_key: pk.iter().map(|s| (*s).to_owned()).collect(),
            clustering: ck.iter().map(|(s, o)| ((*s).to_owned(), *o)).collect(),
            options: Vec::new(),
            id: None,
        }
    }

    #[test]
    fn keyspace_lifecycle_and_versions() {
        let mut c = catalog_with_ks();
        let v1 = c.schema_version();
        assert_eq!(
            c.keyspace("ks").unwrap().replication[0].1,
            "org.apache.cassandra.locator.SimpleStrategy"
        );
        let err = c
            .create_keyspace(
                "ks",
                &[
                    ("class".into(), "SimpleStrategy".into()),
                    ("replication_factor".into(), "1".into()),
                ],
                true,
                false,
            )
            .unwrap_err();
        assert!(matches!(err, SchemaError::AlreadyExists { .. }), "{err}");
        assert!(
            !c.create_keyspace(
                "ks",
                &[
                    ("class".into(), "SimpleStrategy".into()),
                    ("replication_factor".into(), "1".into())
                ],
                true,
                true
            )
            .unwrap()
        );
        assert_eq!(c.schema_version(), v1);
        let err = c
            .create_keyspace(
                "k2",
                &[("class".into(), "SimpleStrategy".into())],
                true,
                false,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "SimpleStrategy requires a replication_factor strategy option."
        );
        assert!(matches!(
            c.create_keyspace("k2", &[("class".into(), "Nope".into())], true, false),
            Err(SchemaError::Configuration(_))
        ));
        c.alter_keyspace("ks", None, Some(false)).unwrap();
        assert_ne!(c.schema_version(), v1);
        assert!(c.drop_keyspace("ks", false).unwrap().is_some());
        assert_eq!(
            c.drop_keyspace("ks", false).unwrap_err().to_string(),
            "Cannot drop non existing keyspace 'ks'."
        );
        assert!(c.drop_keyspace("ks", true).unwrap().is_none());
    }

    #[test]
    fn tables_order_columns_like_cassandra() {
        let mut c = catalog_with_ks();
        let mut s = col("s", ColumnType::Int);
        s.is_static = true;
        let t = c
            .create_table(
                &spec(
                    "t",
                    vec![
                        col("z", ColumnType::Int),
                        col("ck", ColumnType::Int),
                        col("a", ColumnType::Varchar),
                        s,
                        col("pk", ColumnType::Int),
                    ],
                    &["pk"],
                    &[("ck", ClusteringOrder::Desc)],
                ),
                false,
            )
            .unwrap()
            .unwrap();
        let names: Vec<&str> = t.columns().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["pk", "ck", "a", "s", "z"]);
        assert_eq!(t.static_columns().count(), 1);
        assert_eq!(t.options.gc_grace_seconds, 864_000);
        let err = c
            .create_table(
                &spec("t", vec![col("pk", ColumnType::Int)], &["pk"], &[]),
                false,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot add already existing table \"t\" to keyspace \"ks\""
        );
        assert!(
            c.create_table(
                &spec("t", vec![col("pk", ColumnType::Int)], &["pk"], &[]),
                true
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn create_table_rules() {
        let mut c = catalog_with_ks();
        let mixed = spec(
            "m",
            vec![
                col("k", ColumnType::Int),
                col("c", ColumnType::Counter),
                col("v", ColumnType::Int),
            ],
            &["k"],
            &[],
        );
        assert_eq!(
            c.create_table(&mixed, false).unwrap_err().to_string(),
            "Cannot mix counter and non counter columns in the same table"
        );
        let mut s = col("s", ColumnType::Int);
        s.is_static = true;
        let no_ck = spec("n", vec![col("k", ColumnType::Int), s], &["k"], &[]);
        assert!(
            c.create_table(&no_ck, false)
                .unwrap_err()
                .to_string()
                .starts_with("Static columns are only useful")
        );
        let list_key = spec(
            "l",
            vec![col("k", ColumnType::List(Box::new(ColumnType::Int)))],
            &["k"],
            &[],
        );
        assert!(c.create_table(&list_key, false).is_err());
        let mut ttl = spec(
            "c",
            vec![col("k", ColumnType::Int), col("c", ColumnType::Counter)],
            &["k"],
            &[],
        );
        ttl.options = vec![(
            "default_time_to_live".into(),
            OptionValue::Number("5".into()),
        )];
        assert!(matches!(
            c.create_table(&ttl, false),
            Err(SchemaError::Configuration(_))
        ));
        let mut bad = spec("b", vec![col("k", ColumnType::Int)], &["k"], &[]);
        bad.options = vec![("nope".into(), OptionValue::Number("5".into()))];
        assert_eq!(
            c.create_table(&bad, false).unwrap_err().to_string(),
            "Unknown property 'nope'"
        );
        let missing = TableSpec {
            keyspace: "nope".into(),
            ..spec("x", vec![col("k", ColumnType::Int)], &["k"], &[])
        };
        assert_eq!(
            c.create_table(&missing, false).unwrap_err().to_string(),
            "Keyspace 'nope' doesn't exist"
        );
    }

    #[test]
    fn alter_table_rules() {
        let mut c = catalog_with_ks();
        c.create_table(
            &spec(
                "t",
                vec![
                    col("k", ColumnType::Int),
                    col("ck", ColumnType::Int),
                    col("v", ColumnType::Int),
                ],
                &["k"],
                &[("ck", ClusteringOrder::Asc)],
            ),
            false,
        )
        .unwrap();
        let v_id = c.table("ks", "t").unwrap().column("v").unwrap().id;
        let err = c
            .alter_table(
                "ks",
                "t",
                &AlterTable::Add(vec![col("v", ColumnType::Int)]),
                1,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "Column with name 'v' already exists");
        let err = c
            .alter_table(
                "ks",
                "t",
                &AlterTable::Add(vec![col("n", ColumnType::Counter)]),
                1,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot add a counter column (n) in a non counter column family"
        );
        let err = c
            .alter_table("ks", "t", &AlterTable::Drop(vec!["ck".into()]), 1)
            .unwrap_err();
        assert_eq!(err.to_string(), "Cannot drop PRIMARY KEY column ck");
        let err = c
            .alter_table("ks", "t", &AlterTable::Drop(vec!["q".into()]), 1)
            .unwrap_err();
        assert_eq!(err.to_string(), "Column q was not found in table t");
        let err = c
            .alter_table(
                "ks",
                "t",
                &AlterTable::Rename(vec![("v".into(), "w".into())]),
                1,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "Cannot rename non PRIMARY KEY column v");
        let t = c
            .alter_table("ks", "t", &AlterTable::Drop(vec!["v".into()]), 7)
            .unwrap();
        assert_eq!(t.dropped_columns[0].dropped_time_micros, 7);
        let t = c
            .alter_table(
                "ks",
                "t",
                &AlterTable::Add(vec![col("v", ColumnType::Int)]),
                8,
            )
            .unwrap();
        assert_ne!(
            t.column("v").unwrap().id,
            v_id,
            "re-added column is a new column"
        );
        let t = c
            .alter_table(
                "ks",
                "t",
                &AlterTable::Rename(vec![("ck".into(), "c2".into())]),
                9,
            )
            .unwrap();
        assert_eq!(t.clustering[0].0.name, "c2");
        let t = c
            .alter_table(
                "ks",
                "t",
                &AlterTable::With(vec![
                    ("comment".into(), OptionValue::Text("hi".into())),
                    (
                        "default_time_to_live".into(),
                        OptionValue::Number("60".into()),
                    ),
                ]),
                9,
            )
            .unwrap();
        assert_eq!(
            (t.options.comment.as_str(), t.options.default_time_to_live),
            ("hi", 60)
        );
        assert!(c.drop_table("ks", "t", false).unwrap().is_some());
        assert_eq!(
            c.drop_table("ks", "t", false).unwrap_err().to_string(),
            "Table 'ks.t' doesn't exist"
        );
    }

    #[test]
    fn types_follow_into_tables() {
        let mut c = catalog_with_ks();
        c.create_type(
            "ks",
            "addr",
            &[("street".into(), ColumnType::Varchar)],
            false,
        )
        .unwrap();
        let ty = c.udt("ks", "addr").unwrap().column_type();
        c.create_table(
            &spec(
                "t",
                vec![col("k", ColumnType::Int), col("a", ty)],
                &["k"],
                &[],
            ),
            false,
        )
        .unwrap();
        c.alter_type("ks", "addr", &AlterType::Add("zip".into(), ColumnType::Int))
            .unwrap();
        let t = c.table("ks", "t").unwrap();
        let ColumnType::Udt { fields, .. } = &t.column("a").unwrap().ty else {
            panic!()
        };
        assert_eq!(fields.len(), 2);
        assert_eq!(
            c.drop_type("ks", "addr", false).unwrap_err().to_string(),
            "Cannot drop user type 'ks.addr' as it is still used by table ks.t"
        );
        c.drop_table("ks", "t", false).unwrap();
        assert!(c.drop_type("ks", "addr", false).unwrap());
        assert!(!c.drop_type("ks", "addr", true).unwrap());
    }
}
