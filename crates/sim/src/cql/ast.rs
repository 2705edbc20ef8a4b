//! The statement tree [`parse`](super::parse) produces.
//!
//! Names are already normalized: unquoted identifiers are lower-cased, quoted ones keep their
//! case with `""` unescaped. Terms are kept as written (a literal's text, not a value): only
//! the executor knows the receiving column's type, so conversion happens in
//! [`term_to_value`](super::term_to_value).

use std::fmt;

use ferry_cql::types::ColumnType;

/// A keyspace-qualified name: `ks.t` or `t` (the session keyspace then applies).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    pub keyspace: Option<String>,
    pub name: String,
}

impl QualifiedName {
    pub fn new(keyspace: Option<&str>, name: &str) -> Self {
        Self {
            keyspace: keyspace.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.keyspace {
            Some(ks) => write!(f, "{ks}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One CQL statement.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Statement {
    Select(Select),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Batch(Batch),
    Use(String),
    CreateKeyspace(CreateKeyspace),
    AlterKeyspace(AlterKeyspace),
    DropKeyspace {
        name: String,
        if_exists: bool,
    },
    CreateTable(CreateTable),
    AlterTable(AlterTable),
    DropTable {
        name: QualifiedName,
        if_exists: bool,
    },
    Truncate {
        table: QualifiedName,
    },
    CreateType(CreateType),
    AlterType(AlterType),
    DropType {
        name: QualifiedName,
        if_exists: bool,
    },
    CreateIndex(CreateIndex),
    DropIndex {
        name: QualifiedName,
        if_exists: bool,
    },
    Describe(Describe),
    /// Role, user and permission statements: recognized, kept as text (the sim has no
    /// authorization model beyond password authentication).
    Auth {
        kind: AuthKind,
        text: String,
    },
    /// A statement Cassandra knows that the sim does not model (functions, aggregates,
    /// materialized views, triggers): the executor answers with an Invalid error naming `what`.
    Unsupported {
        what: &'static str,
        text: String,
    },
}

/// Which auth statement an [`Statement::Auth`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthKind {
    CreateRole,
    AlterRole,
    DropRole,
    CreateUser,
    AlterUser,
    DropUser,
    Grant,
    Revoke,
    ListRoles,
    ListUsers,
    ListPermissions,
}

/// `ASC` / `DESC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    Asc,
    Desc,
}

// ---------------------------------------------------------------------------------------------
// Terms

/// A constant as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// `'…'` or `$$…$$`, unescaped.
    String(String),
    /// `-?[0-9]+`, as text (it may not fit any integer type).
    Integer(String),
    /// A float's text, including `NaN`, `-Infinity`.
    Float(String),
    Bool(bool),
    Null,
    /// A blob's hex digits, without the `0x`.
    Hex(String),
    Uuid(String),
    /// `1h30m`, `P1DT2H`, `-3d` …
    Duration(String),
}

/// A value expression: what goes into a column, a relation, `USING` or `LIMIT`.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Literal(Literal),
    /// A bind marker; `index` is its position among all markers of the statement (order of
    /// appearance), `name` is set for `:name` markers.
    Marker {
        index: usize,
        name: Option<String>,
    },
    List(Vec<Term>),
    Set(Vec<Term>),
    Map(Vec<(Term, Term)>),
    /// `{}`: an empty map or an empty set, decided by the receiver.
    EmptyBraces,
    Tuple(Vec<Term>),
    /// `{field: value, …}`.
    Udt(Vec<(String, Term)>),
    /// `now()`, `ks.f(a, b)`; the name is case-folded.
    FunctionCall {
        name: QualifiedName,
        args: Vec<Term>,
    },
    /// `(type) term`, a type hint.
    Cast {
        ty: TypeName,
        term: Box<Term>,
    },
    /// `-term` where the minus is not part of a number token (`- ?`, `-(1)`).
    Negate(Box<Term>),
    /// `a + b`, `a * b` … (Cassandra 4+ arithmetic on constants and markers).
    Arithmetic {
        op: ArithOp,
        left: Box<Term>,
        right: Box<Term>,
    },
}

impl fmt::Display for Literal {
    /// Cassandra's `getText()`: strings in quotes (not re-escaped), the rest as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => write!(f, "'{s}'"),
            Self::Integer(t) | Self::Float(t) | Self::Uuid(t) | Self::Duration(t) => f.write_str(t),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Null => f.write_str("null"),
            Self::Hex(h) => write!(f, "0x{h}"),
        }
    }
}

fn join<T>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    open: &str,
    close: &str,
    each: impl Fn(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    f.write_str(open)?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        each(f, item)?;
    }
    f.write_str(close)
}

impl Term {
    /// Whether the term is a constant: a literal, or a collection, tuple or user type value
    /// made only of constants — no bind marker, function call, cast or arithmetic.
    pub fn is_constant(&self) -> bool {
        match self {
            Self::Literal(_) | Self::EmptyBraces => true,
            Self::List(ts) | Self::Set(ts) | Self::Tuple(ts) => ts.iter().all(Self::is_constant),
            Self::Map(kvs) => kvs.iter().all(|(k, v)| k.is_constant() && v.is_constant()),
            Self::Udt(fs) => fs.iter().all(|(_, v)| v.is_constant()),
            Self::Marker { .. }
            | Self::FunctionCall { .. }
            | Self::Cast { .. }
            | Self::Negate(_)
            | Self::Arithmetic { .. } => false,
        }
    }
}

impl fmt::Display for Term {
    /// The term as Cassandra re-renders it (`Term.Raw.getText()`), which names unaliased
    /// selector columns: `[1, 2]`, `{'a': 1}`, `(1, 'x')`, `now()`, `?`, `:name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal(l) => l.fmt(f),
            Self::Marker { name: None, .. } => f.write_str("?"),
            Self::Marker { name: Some(n), .. } => write!(f, ":{n}"),
            Self::List(ts) => join(f, ts, "[", "]", |f, t| t.fmt(f)),
            Self::Set(ts) => join(f, ts, "{", "}", |f, t| t.fmt(f)),
            Self::Map(kvs) => join(f, kvs, "{", "}", |f, (k, v)| write!(f, "{k}: {v}")),
            Self::EmptyBraces => f.write_str("{}"),
            Self::Tuple(ts) => join(f, ts, "(", ")", |f, t| t.fmt(f)),
            Self::Udt(fs) => join(f, fs, "{", "}", |f, (n, v)| write!(f, "{n}: {v}")),
            Self::FunctionCall { name, args } => {
                write!(f, "{name}")?;
                join(f, args, "(", ")", |f, t| t.fmt(f))
            }
            Self::Cast { ty, term } => write!(f, "({ty}){term}"),
            Self::Negate(t) => write!(f, "-{t}"),
            Self::Arithmetic { op, left, right } => write!(f, "{left} {} {right}", op.symbol()),
        }
    }
}

/// An arithmetic operator in a [`Term::Arithmetic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl ArithOp {
    pub fn symbol(self) -> char {
        match self {
            Self::Add => '+',
            Self::Sub => '-',
            Self::Mul => '*',
            Self::Div => '/',
            Self::Rem => '%',
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Types

/// A CQL type as written in DDL or a cast; [`TypeName::resolve`] (in `types`) maps it to a
/// [`ColumnType`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypeName {
    /// A native type; `text` and `varchar` both give [`ColumnType::Varchar`].
    Native(ColumnType),
    List(Box<TypeName>),
    Set(Box<TypeName>),
    Map(Box<TypeName>, Box<TypeName>),
    Tuple(Vec<TypeName>),
    Frozen(Box<TypeName>),
    Vector(Box<TypeName>, u32),
    /// A user-defined type, maybe keyspace-qualified.
    Udt(QualifiedName),
    /// `'org.apache.cassandra.db.marshal.…'`.
    Custom(String),
}

// ---------------------------------------------------------------------------------------------
// WHERE, IF, USING

/// A relation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Ne,
    In,
    Contains,
    ContainsKey,
    Like,
}

impl Operator {
    /// The operator as CQL spells it (for error messages).
    pub fn as_cql(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Ne => "!=",
            Self::In => "IN",
            Self::Contains => "CONTAINS",
            Self::ContainsKey => "CONTAINS KEY",
            Self::Like => "LIKE",
        }
    }
}

/// One WHERE restriction.
///
/// For [`Operator::In`] the value is a [`Term::List`] of the listed terms when written as
/// `IN (a, b)`, or a marker for `IN ?` (bound as a `list<T>`, as Cassandra does), so
/// `term_to_value(value, list<T>)` converts both forms.
#[derive(Debug, Clone, PartialEq)]
pub enum Relation {
    /// `c op term`.
    Column(String, Operator, Term),
    /// `(c1, c2) op (v1, v2)`: the value is a [`Term::Tuple`], a marker, or for `IN` a
    /// [`Term::List`] of tuples/markers (or one marker).
    MultiColumn(Vec<String>, Operator, Term),
    /// `token(a, b) op term`.
    Token(Vec<String>, Operator, Term),
}

/// `IF …` of an UPDATE, DELETE or INSERT.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    IfExists,
    IfNotExists,
    If(Vec<ColumnCondition>),
}

/// `c op v`, `c[k] op v` or `c.f op v` in an IF clause. For `IN` the value follows
/// [`Relation`]'s convention.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnCondition {
    pub column: String,
    /// The element or key of `c[k]`.
    pub element: Option<Term>,
    /// The UDT field of `c.f`.
    pub field: Option<String>,
    pub op: Operator,
    pub value: Term,
}

/// `USING TIMESTAMP t AND TTL n`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Using {
    pub timestamp: Option<Term>,
    pub ttl: Option<Term>,
}

// ---------------------------------------------------------------------------------------------
// DML

#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub table: QualifiedName,
    pub values: InsertValues,
    pub if_not_exists: bool,
    pub using: Using,
}

/// The two forms of INSERT.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertValues {
    /// `(a, b) VALUES (1, 2)`; both lists have the same length (checked by the parser).
    Columns {
        columns: Vec<String>,
        values: Vec<Term>,
    },
    /// `JSON '…'` (a string literal or a marker); `default_unset` is `DEFAULT UNSET`
    /// (Cassandra's default is `DEFAULT NULL`).
    Json { json: Term, default_unset: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub table: QualifiedName,
    pub using: Using,
    pub assignments: Vec<Assignment>,
    pub where_: Vec<Relation>,
    /// `IF EXISTS` or `IF c = v …`.
    pub condition: Option<Condition>,
}

/// One `SET` item of an UPDATE.
#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    /// `c = v`.
    Set(String, Term),
    /// `c.field = v`.
    SetField(String, String, Term),
    /// `c[index_or_key] = v`.
    SetElement(String, Term, Term),
    /// `c = c + v` or `c += v`: counter increment, list append, set/map union.
    Add(String, Term),
    /// `c = v + c`: list prepend.
    Prepend(String, Term),
    /// `c = c - v` or `c -= v`: counter decrement, list/set element or map key removal.
    Remove(String, Term),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub table: QualifiedName,
    /// Empty: delete whole rows (or partitions/ranges).
    pub columns: Vec<DeleteTarget>,
    pub using: Using,
    pub where_: Vec<Relation>,
    pub condition: Option<Condition>,
}

/// What one DELETE selector removes.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteTarget {
    Column(String),
    /// `c[index_or_key]`.
    Element(String, Term),
    /// `c.field`.
    Field(String, String),
}

/// BATCH kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchKind {
    Logged,
    Unlogged,
    Counter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub kind: BatchKind,
    pub using: Using,
    /// Only [`Statement::Insert`], [`Statement::Update`] and [`Statement::Delete`].
    pub statements: Vec<Statement>,
}

// ---------------------------------------------------------------------------------------------
// SELECT

#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub table: QualifiedName,
    pub distinct: bool,
    pub json: bool,
    pub selection: Selection,
    pub where_: Vec<Relation>,
    pub group_by: Vec<String>,
    pub order_by: Vec<(String, Order)>,
    pub per_partition_limit: Option<Term>,
    pub limit: Option<Term>,
    pub allow_filtering: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    Star,
    Selectors(Vec<Selector>),
}

/// One item of a select list.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub expr: SelectorExpr,
    pub alias: Option<String>,
}

impl Selector {
    /// The result column's name: the alias, else Cassandra's name for the expression.
    pub fn column_name(&self) -> String {
        match &self.alias {
            Some(a) => a.clone(),
            None => self.expr.column_name(),
        }
    }
}

/// A select expression.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectorExpr {
    Column(String),
    WriteTime(String),
    MaxWriteTime(String),
    Ttl(String),
    /// `count(*)` and `count(1)`.
    CountRows,
    /// Any other function: `token(a, b)`, `count(c)`, `min(c)`, `toJson(c)`, `ks.f(…)`. The
    /// name is case-folded; `keyspace` is `None` unless written.
    Function {
        name: QualifiedName,
        args: Vec<SelectorExpr>,
    },
    /// `CAST(x AS type)`.
    Cast {
        expr: Box<SelectorExpr>,
        ty: TypeName,
    },
    /// `x.field`.
    Field(Box<SelectorExpr>, String),
    /// `x[key]`.
    Element(Box<SelectorExpr>, Term),
    /// A constant, marker or other term; its [`Display`](fmt::Display) names the column.
    Term(Term),
}

impl SelectorExpr {
    /// Cassandra's name for an unaliased result column: the column name, `writetime(c)`,
    /// `ttl(c)`, `count` for `count(*)`, `system.max(c)` for native functions (Cassandra
    /// qualifies them with their keyspace), `cast(c as int)`, `c.f`, the term's text.
    pub fn column_name(&self) -> String {
        match self {
            Self::Column(c) => c.clone(),
            Self::WriteTime(c) => format!("writetime({c})"),
            Self::MaxWriteTime(c) => format!("maxwritetime({c})"),
            Self::Ttl(c) => format!("ttl({c})"),
            Self::CountRows => "count".to_owned(),
            Self::Function { name, args } => {
                let ks = name.keyspace.as_deref().unwrap_or("system");
                let args: Vec<String> = args.iter().map(Self::column_name).collect();
                format!("{ks}.{}({})", name.name, args.join(", "))
            }
            Self::Cast { expr, ty } => format!("cast({} as {ty})", expr.column_name()),
            Self::Field(e, f) => format!("{}.{f}", e.column_name()),
            Self::Element(e, k) => format!("{}[{k}]", e.column_name()),
            Self::Term(t) => t.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DDL

/// A `WITH` option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    String(String),
    /// An integer or float, as its text.
    Number(String),
    Bool(bool),
    /// `{'k': 'v', …}`; non-string constants are kept as their text.
    Map(Vec<(String, String)>),
    /// Any other constant or an unreserved keyword, as its text.
    Other(String),
}

impl OptionValue {
    /// The value as Cassandra's property parser sees a scalar: its text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::String(s) | Self::Number(s) | Self::Other(s) => Some(s),
            Self::Bool(true) => Some("true"),
            Self::Bool(false) => Some("false"),
            Self::Map(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateKeyspace {
    pub name: String,
    pub if_not_exists: bool,
    /// The `replication` map; empty when the clause is missing (the executor reports it).
    pub replication: Vec<(String, String)>,
    pub durable_writes: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlterKeyspace {
    pub name: String,
    pub if_exists: bool,
    pub replication: Option<Vec<(String, String)>>,
    pub durable_writes: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDefinition {
    pub name: String,
    pub ty: TypeName,
    pub is_static: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub name: QualifiedName,
    pub if_not_exists: bool,
    /// In the order written.
    pub columns: Vec<ColumnDefinition>,
    /// Never empty (the parser requires exactly one primary key definition).
    pub partition_key: Vec<String>,
    pub clustering_key: Vec<String>,
    pub clustering_order: Vec<(String, Order)>,
    /// Other `WITH` options in the order written (`comment`, `default_time_to_live`, …).
    pub options: Vec<(String, OptionValue)>,
    /// `WITH COMPACT STORAGE`: parsed so the executor can refuse it as Cassandra 5 does.
    pub compact_storage: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlterTable {
    pub table: QualifiedName,
    /// `ALTER TABLE IF EXISTS`.
    pub if_exists: bool,
    pub action: AlterTableAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterTableAction {
    /// `ADD [IF NOT EXISTS] c type [static]` or `ADD (a int, b text)`.
    Add {
        if_not_exists: bool,
        columns: Vec<ColumnDefinition>,
    },
    /// `DROP [IF EXISTS] c` or `DROP (a, b)`, optionally `USING TIMESTAMP n`.
    Drop {
        if_exists: bool,
        columns: Vec<String>,
        timestamp: Option<i64>,
    },
    /// `RENAME [IF EXISTS] a TO b AND c TO d`.
    Rename {
        if_exists: bool,
        renames: Vec<(String, String)>,
    },
    /// `WITH option = value AND …`.
    With(Vec<(String, OptionValue)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateType {
    pub name: QualifiedName,
    pub if_not_exists: bool,
    pub fields: Vec<(String, TypeName)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlterType {
    pub name: QualifiedName,
    pub if_exists: bool,
    pub action: AlterTypeAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterTypeAction {
    Add {
        if_not_exists: bool,
        field: String,
        ty: TypeName,
    },
    Rename {
        if_exists: bool,
        renames: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateIndex {
    /// The index name when given.
    pub name: Option<String>,
    pub if_not_exists: bool,
    pub table: QualifiedName,
    pub target: IndexTarget,
    /// `CREATE CUSTOM INDEX … USING 'class'`, or `USING 'sai'`.
    pub using: Option<String>,
    pub options: Vec<(String, OptionValue)>,
}

/// `c`, `keys(c)`, `values(c)`, `entries(c)`, `full(c)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTarget {
    pub kind: IndexTargetKind,
    pub column: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexTargetKind {
    Simple,
    Keys,
    Values,
    Entries,
    Full,
}

// ---------------------------------------------------------------------------------------------
// DESCRIBE

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    pub target: DescribeTarget,
    /// `WITH INTERNALS`.
    pub with_internals: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DescribeTarget {
    Cluster,
    /// `DESCRIBE [FULL] SCHEMA`.
    Schema {
        full: bool,
    },
    Keyspaces,
    /// `DESCRIBE [ONLY] KEYSPACE [ks]`; `None` is the session keyspace.
    Keyspace {
        name: Option<String>,
        only: bool,
    },
    Tables,
    Table(QualifiedName),
    Types,
    Type(QualifiedName),
    Functions,
    Function(QualifiedName),
    Aggregates,
    Aggregate(QualifiedName),
    Index(QualifiedName),
    MaterializedView(QualifiedName),
    /// `DESCRIBE x` / `DESCRIBE ks.x`: a keyspace, table, index, view or type by that name.
    Name(QualifiedName),
}
