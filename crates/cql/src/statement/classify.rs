//! Statement classification: one pass over the tokens of a CQL text, no full parse.
//!
//! The proxy calls [`classify()`] on every QUERY, PREPARE and BATCH text: reads go to the primary,
//! writes to both clusters, and a write that carries no client timestamp, or calls `now()`, must
//! be rewritten so both clusters store the same thing. The classifier therefore reads only what
//! routing and rewriting need (statement kind, keyspace/table, LWT, `USING`, bind markers,
//! non-deterministic calls, batch children) and skips everything else token by token.
//!
//! It never panics and allocates only when there is something to list (named markers,
//! non-deterministic calls, batch children). Text it cannot make sense of is
//! [`StatementKind::Other`] with a [`ParseProblem`]; it does not validate what it skips, so a
//! statement it accepts can still be rejected by the server.

use std::borrow::Cow;

use super::token::{
    DIGIT, SPACE, Token, TokenKind, Tokenizer, UUID_LEN, class_end, ident_end, is_uuid_at,
    lowercase, quoted, unescape,
};

/// What a statement does. Schema kinds follow Cassandra's grammar (`SCHEMA` = `KEYSPACE`,
/// `COLUMNFAMILY` = `TABLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Batch,
    Use,
    Truncate,
    CreateKeyspace,
    AlterKeyspace,
    DropKeyspace,
    CreateTable,
    AlterTable,
    DropTable,
    CreateType,
    AlterType,
    DropType,
    CreateIndex,
    CreateCustomIndex,
    DropIndex,
    CreateMaterializedView,
    AlterMaterializedView,
    DropMaterializedView,
    CreateFunction,
    DropFunction,
    CreateAggregate,
    DropAggregate,
    CreateTrigger,
    DropTrigger,
    CreateRole,
    AlterRole,
    DropRole,
    CreateUser,
    AlterUser,
    DropUser,
    /// `ADD IDENTITY` (Cassandra 5 mTLS identities).
    AddIdentity,
    DropIdentity,
    Grant,
    Revoke,
    ListRoles,
    ListUsers,
    ListSuperusers,
    /// `LIST ALL`, `LIST <permission> [ON …] [OF …]`.
    ListPermissions,
    /// Server-side `DESCRIBE`/`DESC` (Cassandra 4+).
    Describe,
    /// Not recognized, empty or malformed: see [`StatementInfo::problem`].
    Other,
}

impl StatementKind {
    /// Statements that only read: SELECT, DESCRIBE and the LIST family.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Self::Select
                | Self::Describe
                | Self::ListRoles
                | Self::ListUsers
                | Self::ListSuperusers
                | Self::ListPermissions
        )
    }

    /// Data writes: INSERT, UPDATE, DELETE and batches.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::Insert | Self::Update | Self::Delete | Self::Batch
        )
    }

    /// DDL: statements that change the schema (and produce a SCHEMA_CHANGE result).
    pub fn is_schema_change(self) -> bool {
        use StatementKind::*;
        matches!(
            self,
            CreateKeyspace
                | AlterKeyspace
                | DropKeyspace
                | CreateTable
                | AlterTable
                | DropTable
                | CreateType
                | AlterType
                | DropType
                | CreateIndex
                | CreateCustomIndex
                | DropIndex
                | CreateMaterializedView
                | AlterMaterializedView
                | DropMaterializedView
                | CreateFunction
                | DropFunction
                | CreateAggregate
                | DropAggregate
                | CreateTrigger
                | DropTrigger
        )
    }

    /// Roles, users, identities and permissions (DCL) that change something.
    pub fn is_auth_change(self) -> bool {
        use StatementKind::*;
        matches!(
            self,
            CreateRole
                | AlterRole
                | DropRole
                | CreateUser
                | AlterUser
                | DropUser
                | AddIdentity
                | DropIdentity
                | Grant
                | Revoke
        )
    }
}

/// An identifier as written in the statement, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ident<'a> {
    /// The text as written; for a quoted identifier, what is between the quotes (with `""`
    /// escapes still in place).
    pub raw: &'a str,
    pub quoted: bool,
}

impl<'a> Ident<'a> {
    /// From an `Ident`, `QuotedIdent` or `NamedMarker` token.
    fn from_token(t: Token, src: &'a str) -> Option<Self> {
        let text = t.text(src);
        let text = match t.kind {
            TokenKind::Ident | TokenKind::QuotedIdent => text,
            TokenKind::NamedMarker => text.get(1..)?,
            _ => return None,
        };
        match text.strip_prefix('"') {
            Some(inner) => Some(Self {
                raw: inner.strip_suffix('"')?,
                quoted: true,
            }),
            None => Some(Self {
                raw: text,
                quoted: false,
            }),
        }
    }

    /// The name Cassandra uses: unquoted names ASCII-lowercased, quoted ones verbatim with `""`
    /// unescaped. Borrows when nothing changes.
    pub fn normalized(&self) -> Cow<'a, str> {
        if self.quoted {
            unescape(self.raw, "\"\"", "\"")
        } else {
            lowercase(self.raw)
        }
    }

    /// Whether this identifier names `name` (an already normalized name), without allocating.
    pub fn matches(&self, name: &str) -> bool {
        if self.quoted {
            self.normalized() == name
        } else {
            self.raw.eq_ignore_ascii_case(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
        }
    }
}

/// The value of a `USING TIMESTAMP` or `USING TTL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsingValue<'a> {
    /// An integer literal, as written (Cassandra's `intValue`: `-?[0-9]+`).
    Literal(&'a str),
    /// A bind marker; `index` is its position among all the statement's markers (positional
    /// and named, counted from 0 in text order), which is the bind variable it binds.
    Marker { index: u32, name: Option<Ident<'a>> },
}

/// Bind markers seen in the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindMarkers<'a> {
    /// Number of `?`.
    pub positional: u32,
    /// `:name` markers in text order (a name may repeat: each occurrence is a variable).
    pub named: Vec<Ident<'a>>,
}

impl BindMarkers<'_> {
    pub fn total(&self) -> u32 {
        self.positional
            .saturating_add(u32::try_from(self.named.len()).unwrap_or(u32::MAX))
    }

    /// Both `?` and `:name` markers in one statement.
    pub fn is_mixed(&self) -> bool {
        self.positional > 0 && !self.named.is_empty()
    }
}

/// A built-in function whose result differs between two executions, so a dual write must not
/// let each cluster evaluate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NonDeterministicFn {
    /// `now()`, `current_timeuuid()` is the same function.
    Now,
    Uuid,
    CurrentTimestamp,
    CurrentDate,
    CurrentTime,
    CurrentTimeUuid,
}

impl NonDeterministicFn {
    /// The CQL type of the result, which a replacing literal or marker must have.
    pub fn cql_type(self) -> &'static str {
        match self {
            Self::Now | Self::CurrentTimeUuid => "timeuuid",
            Self::Uuid => "uuid",
            Self::CurrentTimestamp => "timestamp",
            Self::CurrentDate => "date",
            Self::CurrentTime => "time",
        }
    }
}

/// Cassandra's (lowercased) names, including Cassandra 5's snake_case aliases.
const NON_DETERMINISTIC: [(&str, NonDeterministicFn); 10] = [
    ("now", NonDeterministicFn::Now),
    ("uuid", NonDeterministicFn::Uuid),
    ("currenttimestamp", NonDeterministicFn::CurrentTimestamp),
    ("currentdate", NonDeterministicFn::CurrentDate),
    ("currenttime", NonDeterministicFn::CurrentTime),
    ("currenttimeuuid", NonDeterministicFn::CurrentTimeUuid),
    ("current_timestamp", NonDeterministicFn::CurrentTimestamp),
    ("current_date", NonDeterministicFn::CurrentDate),
    ("current_time", NonDeterministicFn::CurrentTime),
    ("current_timeuuid", NonDeterministicFn::CurrentTimeUuid),
];

/// One call of a [`NonDeterministicFn`] in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonDeterministicCall<'a> {
    pub function: NonDeterministicFn,
    /// The name Cassandra resolves (`currenttimestamp`, `current_timestamp` …).
    pub name: &'static str,
    /// The whole call as written, `name ( )` or `system.name()`: what a rewrite replaces.
    pub text: &'a str,
    pub start: u32,
    pub end: u32,
    /// How many bind markers come before the call: the index a marker inserted in its place
    /// would get (later markers shift by one).
    pub marker_index: u32,
}

impl NonDeterministicCall<'_> {
    pub fn span(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchType {
    Logged,
    Unlogged,
    Counter,
}

/// One statement of a text batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchChild<'a> {
    /// Insert, Update or Delete.
    pub kind: StatementKind,
    pub keyspace: Option<Ident<'a>>,
    pub table: Option<Ident<'a>>,
    pub lwt: bool,
    pub using_timestamp: Option<UsingValue<'a>>,
    pub using_ttl: Option<UsingValue<'a>>,
    /// Byte span of the child in the text, without its `;`.
    pub start: u32,
    pub end: u32,
}

/// What a text `BEGIN … BATCH … APPLY BATCH` contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo<'a> {
    pub batch_type: BatchType,
    pub children: Vec<BatchChild<'a>>,
}

/// Where a statement's client timestamp comes from, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampCoverage {
    /// The statement itself (for a batch: `BEGIN BATCH USING TIMESTAMP`) has one.
    Statement,
    /// A batch without its own timestamp whose children all have one.
    AllChildren,
    /// A batch where only some children have one: the others get the coordinator's time.
    SomeChildren,
    None,
}

/// Why a text is [`StatementKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseProblem {
    /// No tokens at all (empty, whitespace or comments).
    Empty,
    /// The first word is not a statement this classifier knows.
    Unrecognized,
    /// A statement it knows, but a part it needs is missing or wrong.
    Malformed,
    /// An unterminated string, quoted name or comment, or an unexpected character.
    Lexical,
    /// More tokens after the end of the statement (e.g. a second statement).
    TrailingTokens,
}

/// Everything the classifier found in one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementInfo<'a> {
    pub kind: StatementKind,
    /// The keyspace named in the statement (`ks.tbl`, `USE ks`, keyspace DDL); `None` when the
    /// statement relies on the session's keyspace.
    pub keyspace: Option<Ident<'a>>,
    /// The table, materialized view or user type the statement is about (for index and trigger
    /// DDL, the table they are on).
    pub table: Option<Ident<'a>>,
    /// The schema object's own name when it is not the table: index, function, aggregate,
    /// trigger.
    pub name: Option<Ident<'a>>,
    /// A lightweight transaction (`IF …` on INSERT/UPDATE/DELETE, or any such batch child):
    /// it must run on one cluster with SERIAL semantics, never be blindly dual-written.
    pub lwt: bool,
    pub using_timestamp: Option<UsingValue<'a>>,
    pub using_ttl: Option<UsingValue<'a>>,
    pub markers: BindMarkers<'a>,
    /// Non-deterministic calls in text order (nested ones too, e.g. `toTimestamp(now())`).
    pub nondeterministic: Vec<NonDeterministicCall<'a>>,
    /// Present for [`StatementKind::Batch`].
    pub batch: Option<BatchInfo<'a>>,
    /// Set when `kind` is [`StatementKind::Other`]; the other fields are then best effort.
    pub problem: Option<ParseProblem>,
}

impl StatementInfo<'_> {
    fn new() -> Self {
        Self {
            kind: StatementKind::Other,
            keyspace: None,
            table: None,
            name: None,
            lwt: false,
            using_timestamp: None,
            using_ttl: None,
            markers: BindMarkers::default(),
            nondeterministic: Vec::new(),
            batch: None,
            problem: None,
        }
    }

    pub fn is_read(&self) -> bool {
        self.kind.is_read()
    }

    pub fn is_write(&self) -> bool {
        self.kind.is_write()
    }

    pub fn is_schema_change(&self) -> bool {
        self.kind.is_schema_change()
    }

    /// Whether, and from where, the statement carries its own write timestamp.
    pub fn timestamp_coverage(&self) -> TimestampCoverage {
        if self.using_timestamp.is_some() {
            return TimestampCoverage::Statement;
        }
        let Some(batch) = &self.batch else {
            return TimestampCoverage::None;
        };
        let with = batch
            .children
            .iter()
            .filter(|c| c.using_timestamp.is_some())
            .count();
        match with {
            0 => TimestampCoverage::None,
            n if n == batch.children.len() => TimestampCoverage::AllChildren,
            _ => TimestampCoverage::SomeChildren,
        }
    }
}

/// Classifies one CQL text (a QUERY/PREPARE string, or one statement of a BATCH message).
pub fn classify(cql: &str) -> StatementInfo<'_> {
    classify_with(cql, true)
}

/// `fast: false` consumes every token through [`Cursor::next`]: the reference the fast skipping
/// is tested against.
fn classify_with(cql: &str, fast: bool) -> StatementInfo<'_> {
    let mut c = Cursor::new(cql, fast);
    let mut info = StatementInfo::new();
    let mut problem = statement(&mut c, &mut info).err();
    if problem.is_none() {
        c.eat(TokenKind::Semicolon);
        if c.peek().is_some() {
            problem = Some(ParseProblem::TrailingTokens);
        }
    }
    // Markers, calls and lexical errors count wherever they are.
    loop {
        c.skip_fast(&Stops::NONE);
        if c.next().is_none() {
            break;
        }
    }
    if c.lex_error {
        problem = Some(ParseProblem::Lexical);
    }
    if problem.is_some() {
        info.kind = StatementKind::Other;
        info.problem = problem;
    }
    info.markers = c.markers;
    info.nondeterministic = c.calls;
    info
}

type Parsed<T> = Result<T, ParseProblem>;

/// Reads one statement into `info`, leaving the cursor at its end (`;` or end of text).
fn statement<'a>(c: &mut Cursor<'a>, info: &mut StatementInfo<'a>) -> Parsed<()> {
    use StatementKind as S;
    let Some(first) = c.next() else {
        return Err(ParseProblem::Empty);
    };
    let src = c.src;
    let word = |w: &str| first.is_keyword(src, w);
    if word("select") {
        info.kind = S::Select;
        c.skip_to_top_level_keyword("from")?;
        (info.keyspace, info.table) = c.qualified_name()?;
    } else if word("insert") || word("update") || word("delete") {
        let dml = dml(c, first)?;
        info.kind = dml.kind;
        info.keyspace = dml.keyspace;
        info.table = dml.table;
        info.lwt = dml.lwt;
        info.using_timestamp = dml.using_timestamp;
        info.using_ttl = dml.using_ttl;
        return Ok(());
    } else if word("begin") {
        return batch(c, info);
    } else if word("use") {
        info.kind = S::Use;
        info.keyspace = Some(c.ident()?);
    } else if word("truncate") {
        info.kind = S::Truncate;
        let _ = c.eat_keyword("table") || c.eat_keyword("columnfamily");
        (info.keyspace, info.table) = c.qualified_name()?;
    } else if word("create") {
        create(c, info)?;
    } else if word("alter") {
        alter(c, info)?;
    } else if word("drop") {
        drop(c, info)?;
    } else if word("grant") {
        info.kind = S::Grant;
    } else if word("revoke") {
        info.kind = S::Revoke;
    } else if word("list") {
        info.kind = if c.eat_keyword("roles") {
            S::ListRoles
        } else if c.eat_keyword("users") {
            S::ListUsers
        } else if c.eat_keyword("superusers") {
            S::ListSuperusers
        } else {
            S::ListPermissions
        };
    } else if word("add") {
        c.expect_keyword("identity")?;
        info.kind = S::AddIdentity;
    } else if word("describe") || word("desc") {
        info.kind = S::Describe;
    } else {
        return Err(ParseProblem::Unrecognized);
    }
    // The rest (selectors, WHERE, DDL bodies, options) does not change the classification.
    loop {
        c.skip_fast(&Stops::SEMICOLON);
        if matches!(
            c.peek(),
            None | Some(Token {
                kind: TokenKind::Semicolon,
                ..
            })
        ) && c.depth == 0
        {
            break;
        }
        if c.next().is_none() {
            break;
        }
    }
    Ok(())
}

fn create<'a>(c: &mut Cursor<'a>, info: &mut StatementInfo<'a>) -> Parsed<()> {
    use StatementKind as S;
    let or_replace = c.eat_keyword("or");
    if or_replace {
        c.expect_keyword("replace")?;
    }
    let what = c.next().ok_or(ParseProblem::Malformed)?;
    let src = c.src;
    let word = |w: &str| what.is_keyword(src, w);
    if or_replace && !(word("function") || word("aggregate")) {
        return Err(ParseProblem::Malformed);
    }
    if word("keyspace") || word("schema") {
        info.kind = S::CreateKeyspace;
        c.skip_if_exists();
        info.keyspace = Some(c.ident()?);
    } else if word("table") || word("columnfamily") {
        info.kind = S::CreateTable;
        c.skip_if_exists();
        (info.keyspace, info.table) = c.qualified_name()?;
    } else if word("type") {
        info.kind = S::CreateType;
        c.skip_if_exists();
        (info.keyspace, info.table) = c.qualified_name()?;
    } else if word("materialized") {
        c.expect_keyword("view")?;
        info.kind = S::CreateMaterializedView;
        c.skip_if_exists();
        (info.keyspace, info.table) = c.qualified_name()?;
    } else if word("index") || word("custom") {
        info.kind = if word("custom") {
            c.expect_keyword("index")?;
            S::CreateCustomIndex
        } else {
            S::CreateIndex
        };
        c.skip_if_exists();
        // The index name is optional: `CREATE INDEX ON t (c)`.
        if !c.peek_keyword("on") {
            info.name = Some(c.ident()?);
        }
        c.expect_keyword("on")?;
        (info.keyspace, info.table) = c.qualified_name()?;
    } else if word("function") || word("aggregate") {
        info.kind = if word("function") {
            S::CreateFunction
        } else {
            S::CreateAggregate
        };
        c.skip_if_exists();
        let (ks, name) = c.qualified_name()?;
        (info.keyspace, info.name) = (ks, name);
    } else if word("trigger") {
        info.kind = S::CreateTrigger;
        c.skip_if_exists();
        info.name = Some(c.ident()?);
        c.expect_keyword("on")?;
        (info.keyspace, info.table) = c.qualified_name()?;
    } else if word("role") {
        info.kind = S::CreateRole;
    } else if word("user") {
        info.kind = S::CreateUser;
    } else {
        return Err(ParseProblem::Unrecognized);
    }
    Ok(())
}

fn alter<'a>(c: &mut Cursor<'a>, info: &mut StatementInfo<'a>) -> Parsed<()> {
    use StatementKind as S;
    let what = c.next().ok_or(ParseProblem::Malformed)?;
    let src = c.src;
    let word = |w: &str| what.is_keyword(src, w);
    if word("keyspace") || word("schema") {
        info.kind = S::AlterKeyspace;
        c.skip_if_exists();
        info.keyspace = Some(c.ident()?);
        return Ok(());
    }
    info.kind = if word("table") || word("columnfamily") {
        S::AlterTable
    } else if word("type") {
        S::AlterType
    } else if word("materialized") {
        c.expect_keyword("view")?;
        S::AlterMaterializedView
    } else if word("role") {
        info.kind = S::AlterRole;
        return Ok(());
    } else if word("user") {
        info.kind = S::AlterUser;
        return Ok(());
    } else {
        return Err(ParseProblem::Unrecognized);
    };
    c.skip_if_exists();
    (info.keyspace, info.table) = c.qualified_name()?;
    Ok(())
}

fn drop<'a>(c: &mut Cursor<'a>, info: &mut StatementInfo<'a>) -> Parsed<()> {
    use StatementKind as S;
    let what = c.next().ok_or(ParseProblem::Malformed)?;
    let src = c.src;
    let word = |w: &str| what.is_keyword(src, w);
    if word("keyspace") || word("schema") {
        info.kind = S::DropKeyspace;
        c.skip_if_exists();
        info.keyspace = Some(c.ident()?);
    } else if word("table") || word("columnfamily") || word("type") || word("materialized") {
        info.kind = if word("type") {
            S::DropType
        } else if word("materialized") {
            c.expect_keyword("view")?;
            S::DropMaterializedView
        } else {
            S::DropTable
        };
        c.skip_if_exists();
        (info.keyspace, info.table) = c.qualified_name()?;
    } else if word("index") || word("function") || word("aggregate") {
        info.kind = if word("index") {
            S::DropIndex
        } else if word("function") {
            S::DropFunction
        } else {
            S::DropAggregate
        };
        c.skip_if_exists();
        let (ks, name) = c.qualified_name()?;
        (info.keyspace, info.name) = (ks, name);
    } else if word("trigger") {
        info.kind = S::DropTrigger;
        c.skip_if_exists();
        info.name = Some(c.ident()?);
        c.expect_keyword("on")?;
        (info.keyspace, info.table) = c.qualified_name()?;
    } else if word("role") {
        info.kind = S::DropRole;
    } else if word("user") {
        info.kind = S::DropUser;
    } else if word("identity") {
        info.kind = S::DropIdentity;
    } else {
        return Err(ParseProblem::Unrecognized);
    }
    Ok(())
}

/// INSERT, UPDATE or DELETE whose first token was already read; stops before its `;`, before
/// `APPLY` or the next child in a batch, or at the end.
fn dml<'a>(c: &mut Cursor<'a>, first: Token) -> Parsed<BatchChild<'a>> {
    let kind = if first.is_keyword(c.src, "insert") {
        c.expect_keyword("into")?;
        StatementKind::Insert
    } else if first.is_keyword(c.src, "update") {
        StatementKind::Update
    } else {
        // DELETE [selection] FROM: the selection may hold `m['k']`, `l[0]`, `u.f`.
        c.skip_to_top_level_keyword("from")?;
        StatementKind::Delete
    };
    let (keyspace, table) = c.qualified_name()?;
    let mut child = BatchChild {
        kind,
        keyspace,
        table,
        lwt: false,
        using_timestamp: None,
        using_ttl: None,
        start: first.start,
        end: c.last_end,
    };
    // USING comes after VALUES (INSERT), after the table (UPDATE, DELETE); IF comes last. Both
    // only count at nesting depth 0: elsewhere they are inside a literal or a function call.
    loop {
        c.skip_fast(&Stops::DML);
        if c.at_dml_end() {
            break;
        }
        let top = c.depth == 0;
        let Some(t) = c.next() else { break };
        if top && t.is_keyword(c.src, "if") {
            child.lwt = true;
        } else if top && t.is_keyword(c.src, "using") {
            c.using(&mut child.using_timestamp, &mut child.using_ttl)?;
        }
    }
    child.end = c.last_end;
    Ok(child)
}

/// `BEGIN [UNLOGGED|COUNTER] BATCH [USING TIMESTAMP v] (child [;])* APPLY BATCH`.
fn batch<'a>(c: &mut Cursor<'a>, info: &mut StatementInfo<'a>) -> Parsed<()> {
    info.kind = StatementKind::Batch;
    let batch_type = if c.eat_keyword("unlogged") {
        BatchType::Unlogged
    } else if c.eat_keyword("counter") {
        BatchType::Counter
    } else {
        BatchType::Logged
    };
    c.expect_keyword("batch")?;
    if c.eat_keyword("using") {
        // Cassandra accepts only TIMESTAMP here; a TTL is recorded and left to the server to refuse.
        c.using(&mut info.using_timestamp, &mut info.using_ttl)?;
    }
    let mut children = Vec::new();
    loop {
        let t = c.peek().ok_or(ParseProblem::Malformed)?;
        if t.kind == TokenKind::Semicolon {
            c.next();
        } else if t.is_keyword(c.src, "apply") {
            c.next();
            c.expect_keyword("batch")?;
            break;
        } else if ["insert", "update", "delete"]
            .iter()
            .any(|w| t.is_keyword(c.src, w))
        {
            c.next();
            children.push(dml(c, t)?);
        } else {
            return Err(ParseProblem::Malformed);
        }
    }
    info.lwt = children.iter().any(|child| child.lwt);
    info.batch = Some(BatchInfo {
        batch_type,
        children,
    });
    Ok(())
}

/// The tokens [`Cursor::skip_fast`] stops at when they are at depth 0.
struct Stops<'w> {
    semicolon: bool,
    /// Bit `n` set when some word has `n` bytes: rejects most identifiers without their text.
    lengths: u32,
    words: &'w [&'w str],
}

impl<'w> Stops<'w> {
    const NONE: Stops<'static> = Stops::new(&[], false);
    const SEMICOLON: Stops<'static> = Stops::new(&[], true);
    /// What [`dml`] looks at: `IF`, `USING` and the ends of a data statement.
    const DML: Stops<'static> = Stops::new(
        &[
            "if", "using", "insert", "update", "delete", "apply", "begin",
        ],
        true,
    );

    const fn new(words: &'w [&'w str], semicolon: bool) -> Self {
        let mut lengths = 0u32;
        let mut i = 0;
        while i < words.len() {
            lengths |= 1u32.wrapping_shl(words[i].len() as u32);
            i += 1;
        }
        Self {
            semicolon,
            lengths,
            words,
        }
    }

    #[inline]
    fn hit(&self, kind: TokenKind, start: u32, end: u32, src: &str) -> bool {
        match kind {
            TokenKind::Semicolon => self.semicolon,
            TokenKind::Ident => src
                .as_bytes()
                .get(start as usize..end as usize)
                .is_some_and(|w| self.hit_word(w)),
            _ => false,
        }
    }

    #[inline]
    fn hit_word(&self, w: &[u8]) -> bool {
        w.len() < 32
            && self.lengths & (1 << w.len()) != 0
            && self
                .words
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
    }
}

/// The tokenizer's `lex` with the common tokens decided inline. Whatever a first byte could
/// still make something else (a uuid, a duration, `NaN`, a comment, a marker …) goes to `lex`
/// itself, so the result is always exactly `lex`'s.
#[inline]
fn lex_fast(tokens: &mut Tokenizer<'_>, b: &[u8], start: usize) -> Option<(TokenKind, usize)> {
    use TokenKind as K;
    let one = |kind| Some((kind, start + 1));
    match b[start] {
        // A uuid has `-` at its 9th byte; anything else like that is rare enough for `lex`.
        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if b.get(start + 8) == Some(&b'-') => {
            if is_uuid_at(b, start) {
                Some((K::Uuid, start + UUID_LEN))
            } else {
                tokens.lex(start)
            }
        }
        // `P` may start an ISO duration.
        b'a'..=b'z' | b'A'..=b'O' | b'Q'..=b'Z' => {
            let end = ident_end(b, start + 1);
            let word = &b[start..end];
            if word.eq_ignore_ascii_case(b"nan") || word.eq_ignore_ascii_case(b"infinity") {
                Some((K::Float, end))
            } else {
                Some((K::Ident, end))
            }
        }
        // A plain integer: no uuid (`-` at the 9th byte), and nothing after the digits that
        // could make it a float, duration, blob or identifier.
        b'0'..=b'9' => {
            let end = class_end(b, start + 1, DIGIT);
            match b.get(end) {
                Some(&c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c >= 0x80 => {
                    tokens.lex(start)
                }
                _ => Some((K::Integer, end)),
            }
        }
        b'\'' => Some(quoted(b, start, b'\'', K::String, K::UnterminatedString)),
        b'(' => one(K::LParen),
        b')' => one(K::RParen),
        b'[' => one(K::LBracket),
        b']' => one(K::RBracket),
        b'{' => one(K::LBrace),
        b'}' => one(K::RBrace),
        b',' => one(K::Comma),
        b';' => one(K::Semicolon),
        b'?' => one(K::QMark),
        b'=' => one(K::Eq),
        b'.' if b.get(start + 1) != Some(&b'.') => one(K::Dot),
        _ => tokens.lex(start),
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum CallStep {
    #[default]
    None,
    /// Just read an identifier (a possible function name or qualifier).
    Name,
    /// Read `identifier .`.
    Dot,
    /// Read `name (`.
    Open,
    /// Read `name ( )`: a call to look up.
    Closed,
}

/// Spans of the possible function name and its qualifier.
#[derive(Debug, Clone, Copy, Default)]
struct CallState {
    step: CallStep,
    name_start: u32,
    name_end: u32,
    qualified: bool,
    qualifier_start: u32,
    qualifier_end: u32,
}

/// The token stream with one token of lookahead, and the bookkeeping every consumed token goes
/// through exactly once: nesting depth, bind markers, non-deterministic calls, lexical errors.
struct Cursor<'a> {
    src: &'a str,
    tokens: Tokenizer<'a>,
    /// The lookahead token as scalars (`la_kind: None` = end of text), valid when `la_full`.
    /// Not an `Option<Option<Token>>`: copying a just-returned token whole into it stalled store
    /// forwarding, which cost more than the tokenizer itself (measured with perf).
    la_full: bool,
    la_kind: Option<TokenKind>,
    la_start: u32,
    la_end: u32,
    /// Open `(`, `[`, `{`: keywords only mean something at depth 0.
    depth: u32,
    /// Where `[qualifier .] name ( )` recognition stands (see [`Cursor::track_call`]).
    call: CallState,
    last_end: u32,
    markers: BindMarkers<'a>,
    calls: Vec<NonDeterministicCall<'a>>,
    lex_error: bool,
    /// Whether [`Cursor::skip_fast`] may run (off only to test it against plain `next()`).
    fast: bool,
}

impl<'a> Cursor<'a> {
    fn new(src: &'a str, fast: bool) -> Self {
        Self {
            fast,
            src,
            tokens: Tokenizer::new(src),
            la_full: false,
            la_kind: None,
            la_start: 0,
            la_end: 0,
            depth: 0,
            call: CallState::default(),
            last_end: 0,
            markers: BindMarkers::default(),
            calls: Vec::new(),
            lex_error: false,
        }
    }

    #[inline]
    fn peek(&mut self) -> Option<Token> {
        if !self.la_full {
            // `Tokenizer::next` with `lex_fast`, which gives the same tokens.
            let b = self.src.as_bytes();
            self.la_kind = None;
            loop {
                let start = class_end(b, self.tokens.pos, SPACE);
                self.tokens.pos = start;
                if start >= b.len() {
                    break;
                }
                // `None`: a comment, and `lex` moved `pos` past it.
                if let Some((kind, end)) = lex_fast(&mut self.tokens, b, start) {
                    let end = end.min(b.len());
                    let (start, end) = (start as u32, end as u32);
                    let t = &mut self.tokens;
                    (t.pos, t.prev_kind, t.prev_start, t.prev_end) =
                        (end as usize, Some(kind), start, end);
                    (self.la_kind, self.la_start, self.la_end) = (Some(kind), start, end);
                    break;
                }
            }
            self.la_full = true;
        }
        Some(Token {
            kind: self.la_kind?,
            start: self.la_start,
            end: self.la_end,
        })
    }

    #[inline]
    fn next(&mut self) -> Option<Token> {
        let t = self.peek()?;
        self.la_full = false;
        // Scalars, not the token: a `&Token` built piecewise and read back whole stalls.
        self.account(t.kind, t.start, t.end);
        Some(t)
    }

    /// Consumes tokens exactly as repeated [`Cursor::next`] calls would, until a token that
    /// `stops` names at depth 0 (left in the lookahead) or the end of the text. The callers'
    /// loops then look at that one token the slow way; everything in between needs only the
    /// bookkeeping, so it skips the lookahead and decides common tokens inline.
    fn skip_fast(&mut self, stops: &Stops<'_>) {
        use TokenKind as K;
        if self.la_full || !self.fast {
            return;
        }
        let src = self.src;
        let b = src.as_bytes();
        let mut pos = self.tokens.pos;
        // The last token, for the tokenizer's `:` rule: kept here, written back before `lex`
        // runs and on the way out.
        let (mut pk, mut ps, mut pe) = (
            self.tokens.prev_kind,
            self.tokens.prev_start,
            self.tokens.prev_end,
        );
        let stop = loop {
            let start = class_end(b, pos, SPACE);
            let Some(&c) = b.get(start) else {
                pos = start;
                break None;
            };
            let s = start as u32;
            // The common tokens, each with only the bookkeeping its kind needs (what `account`
            // would do for it); the conditions are `lex_fast`'s.
            let simple = match c {
                b',' => Some((K::Comma, start + 1)),
                b'=' => Some((K::Eq, start + 1)),
                b'\'' => match quoted(b, start, b'\'', K::String, K::UnterminatedString) {
                    (K::String, end) => Some((K::String, end)),
                    _ => None,
                },
                b'0'..=b'9' if b.get(start + 8) != Some(&b'-') => {
                    let end = class_end(b, start + 1, DIGIT);
                    match b.get(end) {
                        Some(&c)
                            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c >= 0x80 =>
                        {
                            None
                        }
                        _ => Some((K::Integer, end)),
                    }
                }
                _ => None,
            };
            if let Some((kind, end)) = simple {
                let e = end as u32;
                (pk, ps, pe) = (Some(kind), s, e);
                self.call.step = CallStep::None;
                self.last_end = e;
                pos = end;
                continue;
            }
            match c {
                b'a'..=b'z' | b'A'..=b'O' | b'Q'..=b'Z'
                    if !(c.is_ascii_hexdigit() && b.get(start + 8) == Some(&b'-')) =>
                {
                    let end = ident_end(b, start + 1);
                    let word = &b[start..end];
                    if !(word.eq_ignore_ascii_case(b"nan")
                        || word.eq_ignore_ascii_case(b"infinity"))
                    {
                        let e = end as u32;
                        pos = end;
                        (pk, ps, pe) = (Some(K::Ident), s, e);
                        if self.depth == 0 && stops.hit_word(word) {
                            break Some((K::Ident, s, e));
                        }
                        let st = &mut self.call;
                        st.qualified = st.step == CallStep::Dot;
                        if st.qualified {
                            (st.qualifier_start, st.qualifier_end) = (st.name_start, st.name_end);
                        }
                        (st.name_start, st.name_end, st.step) = (s, e, CallStep::Name);
                        self.last_end = e;
                        continue;
                    }
                }
                b'(' => {
                    let e = s + 1;
                    (pk, ps, pe) = (Some(K::LParen), s, e);
                    self.depth += 1;
                    self.call.step = if self.call.step == CallStep::Name {
                        CallStep::Open
                    } else {
                        CallStep::None
                    };
                    self.last_end = e;
                    pos = start + 1;
                    continue;
                }
                b')' => {
                    let e = s + 1;
                    (pk, ps, pe) = (Some(K::RParen), s, e);
                    self.depth = self.depth.saturating_sub(1);
                    self.last_end = e;
                    pos = start + 1;
                    if self.call.step == CallStep::Open {
                        self.call.step = CallStep::Closed;
                        self.record_call(e);
                    } else {
                        self.call.step = CallStep::None;
                    }
                    continue;
                }
                _ => {}
            }
            // Everything else: the exact lexer and the general bookkeeping.
            (
                self.tokens.prev_kind,
                self.tokens.prev_start,
                self.tokens.prev_end,
            ) = (pk, ps, pe);
            let Some((kind, end)) = lex_fast(&mut self.tokens, b, start) else {
                // A comment: `lex` moved `pos` past it.
                pos = self.tokens.pos;
                continue;
            };
            let end = end.min(b.len());
            let e = end as u32;
            pos = end;
            (pk, ps, pe) = (Some(kind), s, e);
            if self.depth == 0 && stops.hit(kind, s, e, src) {
                break Some((kind, s, e));
            }
            self.account(kind, s, e);
        };
        let t = &mut self.tokens;
        (t.pos, t.prev_kind, t.prev_start, t.prev_end) = (pos, pk, ps, pe);
        if let Some((kind, start, end)) = stop {
            (self.la_full, self.la_kind, self.la_start, self.la_end) =
                (true, Some(kind), start, end);
        }
    }

    /// The bookkeeping every consumed token goes through, and the small state machine that
    /// recognizes `name ( )` and `qualifier . name ( )`, in one match on the kind. Scalar fields
    /// only: a history of whole tokens cost more than the tokenizer.
    #[inline(always)]
    fn account(&mut self, kind: TokenKind, start: u32, end: u32) {
        use TokenKind as K;
        self.last_end = end;
        let st = &mut self.call;
        let step = match kind {
            K::Ident | K::QuotedIdent => {
                st.qualified = st.step == CallStep::Dot;
                if st.qualified {
                    (st.qualifier_start, st.qualifier_end) = (st.name_start, st.name_end);
                }
                (st.name_start, st.name_end) = (start, end);
                CallStep::Name
            }
            K::Dot if st.step == CallStep::Name && !st.qualified => CallStep::Dot,
            K::LParen => {
                self.depth += 1;
                if st.step == CallStep::Name {
                    CallStep::Open
                } else {
                    CallStep::None
                }
            }
            K::LBracket | K::LBrace => {
                self.depth += 1;
                CallStep::None
            }
            K::RParen => {
                self.depth = self.depth.saturating_sub(1);
                if st.step == CallStep::Open {
                    CallStep::Closed
                } else {
                    CallStep::None
                }
            }
            K::RBracket | K::RBrace => {
                self.depth = self.depth.saturating_sub(1);
                CallStep::None
            }
            K::QMark => {
                self.markers.positional = self.markers.positional.saturating_add(1);
                CallStep::None
            }
            K::NamedMarker => {
                if let Some(name) = Ident::from_token(Token { kind, start, end }, self.src) {
                    self.markers.named.push(name);
                }
                CallStep::None
            }
            kind => {
                if kind.is_error() {
                    self.lex_error = true;
                }
                CallStep::None
            }
        };
        self.call.step = step;
        if step == CallStep::Closed {
            self.record_call(end);
        }
    }

    /// Records the call `name ( )` ending at `end` when `name` is non-deterministic.
    fn record_call(&mut self, end: u32) {
        let st = self.call;
        let text = self
            .src
            .get(st.name_start as usize..st.name_end as usize)
            .unwrap_or("");
        let found = match text.strip_prefix('"') {
            // A quoted function name is case-sensitive: `"now"()` is now(), `"NOW"()` is not.
            Some(quoted) => NON_DETERMINISTIC
                .iter()
                .find(|(n, _)| quoted.strip_suffix('"') == Some(*n)),
            None => NON_DETERMINISTIC
                .iter()
                .find(|(n, _)| text.eq_ignore_ascii_case(n)),
        };
        let Some(&(name, function)) = found else {
            return;
        };
        let mut start = st.name_start;
        if st.qualified {
            // Only the built-in keyspace: `ks.now()` is a user function.
            let qualifier = self
                .src
                .get(st.qualifier_start as usize..st.qualifier_end as usize)
                .unwrap_or("");
            if !(qualifier.eq_ignore_ascii_case("system") || qualifier == "\"system\"") {
                return;
            }
            start = st.qualifier_start;
        }
        let call = NonDeterministicCall {
            function,
            name,
            text: self.src.get(start as usize..end as usize).unwrap_or(""),
            start,
            end,
            marker_index: self.markers.total(),
        };
        self.calls.push(call);
    }

    fn eat(&mut self, kind: TokenKind) -> bool {
        let hit = self.peek().is_some_and(|t| t.kind == kind);
        if hit {
            self.next();
        }
        hit
    }

    fn peek_keyword(&mut self, kw: &str) -> bool {
        let src = self.src;
        self.peek().is_some_and(|t| t.is_keyword(src, kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let hit = self.peek_keyword(kw);
        if hit {
            self.next();
        }
        hit
    }

    fn expect_keyword(&mut self, kw: &str) -> Parsed<()> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(ParseProblem::Malformed)
        }
    }

    /// `IF [NOT] EXISTS` of DDL: not a lightweight transaction.
    fn skip_if_exists(&mut self) {
        if self.eat_keyword("if") {
            self.eat_keyword("not");
            self.eat_keyword("exists");
        }
    }

    fn ident(&mut self) -> Parsed<Ident<'a>> {
        let t = self.peek().ok_or(ParseProblem::Malformed)?;
        let ident = Ident::from_token(t, self.src).filter(|_| t.kind != TokenKind::NamedMarker);
        let ident = ident.ok_or(ParseProblem::Malformed)?;
        self.next();
        Ok(ident)
    }

    /// `[ks .] name`.
    fn qualified_name(&mut self) -> Parsed<(Option<Ident<'a>>, Option<Ident<'a>>)> {
        let first = self.ident()?;
        if self.eat(TokenKind::Dot) {
            Ok((Some(first), Some(self.ident()?)))
        } else {
            Ok((None, Some(first)))
        }
    }

    /// Consumes tokens up to and including `kw` at depth 0, within the current statement.
    fn skip_to_top_level_keyword(&mut self, kw: &str) -> Parsed<()> {
        let words = [kw, "insert", "update", "delete", "apply", "begin"];
        let stops = Stops::new(&words, true);
        loop {
            self.skip_fast(&stops);
            if self.at_dml_end() {
                break;
            }
            let top = self.depth == 0;
            match self.next() {
                Some(t) if top && t.is_keyword(self.src, kw) => return Ok(()),
                Some(_) => {}
                None => break,
            }
        }
        Err(ParseProblem::Malformed)
    }

    /// End of a data statement: end of text, or at depth 0 a `;` or a keyword that starts the
    /// next batch child or ends the batch (all reserved, so never a column name).
    fn at_dml_end(&mut self) -> bool {
        let depth = self.depth;
        let src = self.src;
        match self.peek() {
            None => true,
            Some(_) if depth > 0 => false,
            Some(t) => match (t.kind, t.end - t.start) {
                (TokenKind::Semicolon, _) => true,
                (TokenKind::Ident, 5 | 6) => ["insert", "update", "delete", "apply", "begin"]
                    .iter()
                    .any(|w| t.is_keyword(src, w)),
                _ => false,
            },
        }
    }

    /// The part after `USING`: `TTL v` / `TIMESTAMP v` joined by `AND`.
    fn using(
        &mut self,
        timestamp: &mut Option<UsingValue<'a>>,
        ttl: &mut Option<UsingValue<'a>>,
    ) -> Parsed<()> {
        loop {
            if self.eat_keyword("ttl") {
                *ttl = Some(self.using_value()?);
            } else if self.eat_keyword("timestamp") {
                *timestamp = Some(self.using_value()?);
            } else {
                return Err(ParseProblem::Malformed);
            }
            if !self.eat_keyword("and") {
                return Ok(());
            }
        }
    }

    fn using_value(&mut self) -> Parsed<UsingValue<'a>> {
        let t = self.peek().ok_or(ParseProblem::Malformed)?;
        let index = self.markers.total();
        let value = match t.kind {
            TokenKind::Integer => UsingValue::Literal(t.text(self.src)),
            TokenKind::QMark => UsingValue::Marker { index, name: None },
            TokenKind::NamedMarker => UsingValue::Marker {
                index,
                name: Ident::from_token(t, self.src),
            },
            _ => return Err(ParseProblem::Malformed),
        };
        self.next();
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatementKind as S;
    use proptest::prelude::*;

    fn names(info: &StatementInfo<'_>) -> (Option<String>, Option<String>) {
        (
            info.keyspace.map(|k| k.normalized().into_owned()),
            info.table.map(|t| t.normalized().into_owned()),
        )
    }

    fn ks_tbl(ks: Option<&str>, t: Option<&str>) -> (Option<String>, Option<String>) {
        (ks.map(str::to_owned), t.map(str::to_owned))
    }

    #[test]
    fn select_with_comments_everywhere() {
        let info = classify("SELECT /* FROM x */ * FROM ks.t -- from y");
        assert_eq!(info.kind, S::Select);
        assert_eq!(info.problem, None);
        assert_eq!(names(&info), ks_tbl(Some("ks"), Some("t")));
        assert!(info.is_read() && !info.is_write());

        let info = classify(
            "  select\tcount(*), writetime(v) AS \"from\"\n//c\nFrOm\r\nT WHERE k = ? LIMIT :lim;",
        );
        assert_eq!(info.kind, S::Select);
        assert_eq!(names(&info), ks_tbl(None, Some("t")));
        assert_eq!(info.markers.positional, 1);
        assert_eq!(info.markers.named[0].normalized(), "lim");
        assert!(info.markers.is_mixed());
        assert_eq!(info.markers.total(), 2);
    }

    #[test]
    fn quoted_identifiers_and_case_folding() {
        let info = classify(r#"SELECT * FROM "MyKs"."My""Table""#);
        assert_eq!(
            info.keyspace,
            Some(Ident {
                raw: "MyKs",
                quoted: true
            })
        );
        assert_eq!(
            info.table,
            Some(Ident {
                raw: "My\"\"Table",
                quoted: true
            })
        );
        assert_eq!(names(&info), ks_tbl(Some("MyKs"), Some("My\"Table")));
        let info = classify("UPDATE MyKs.MyTable SET a = 1 WHERE k = 1");
        assert_eq!(names(&info), ks_tbl(Some("myks"), Some("mytable")));
        assert!(
            info.table
                .is_some_and(|t| t.matches("mytable") && !t.matches("MyTable"))
        );
        let info = classify(r#"USE "Ks""#);
        assert_eq!(info.kind, S::Use);
        assert_eq!(names(&info), ks_tbl(Some("Ks"), None));
        assert!(matches!(
            info.keyspace.map(|k| k.normalized()),
            Some(Cow::Borrowed("Ks"))
        ));
        assert_eq!(names(&classify("use MyKs;")), ks_tbl(Some("myks"), None));
    }

    #[test]
    fn insert_lwt_and_using() {
        let info = classify("INSERT INTO t (a) VALUES ('x IF NOT EXISTS')");
        assert_eq!(info.kind, S::Insert);
        assert!(!info.lwt);
        let info = classify("insert into ks.t (a, b) values (1, {'k': [1, 2]}) if not exists;");
        assert!(info.lwt);
        assert_eq!(names(&info), ks_tbl(Some("ks"), Some("t")));

        let info = classify("INSERT INTO t (a, b) VALUES (?, ?) USING TTL 10 AND TIMESTAMP ?");
        assert_eq!(info.using_ttl, Some(UsingValue::Literal("10")));
        assert_eq!(
            info.using_timestamp,
            Some(UsingValue::Marker {
                index: 2,
                name: None
            })
        );
        assert_eq!(info.timestamp_coverage(), TimestampCoverage::Statement);
        assert_eq!(info.markers.positional, 3);

        let info = classify("INSERT INTO t JSON '{\"a\": 1}' USING TIMESTAMP :ts");
        assert_eq!(
            info.using_timestamp,
            Some(UsingValue::Marker {
                index: 0,
                name: Some(Ident {
                    raw: "ts",
                    quoted: false
                })
            })
        );
        assert_eq!(info.using_ttl, None);
        assert_eq!(
            classify("INSERT INTO t (a) VALUES (1)").timestamp_coverage(),
            TimestampCoverage::None
        );
    }

    #[test]
    fn update_and_delete() {
        let info = classify(
            "UPDATE ks.t USING TIMESTAMP 123 AND TTL 5 SET m['if'] = 'IF', c = c + 1 WHERE k = 1",
        );
        assert_eq!(info.kind, S::Update);
        assert!(!info.lwt);
        assert_eq!(info.using_timestamp, Some(UsingValue::Literal("123")));
        assert_eq!(info.using_ttl, Some(UsingValue::Literal("5")));
        let info = classify("UPDATE t SET a = 2 WHERE k = 1 IF a = 1");
        assert!(info.lwt);
        let info = classify("UPDATE t SET a = 2 WHERE k = 1 IF EXISTS");
        assert!(info.lwt);

        let info = classify(
            "DELETE m['from'], l[0] FROM ks.t USING TIMESTAMP -5 WHERE k IN (1, 2) IF EXISTS",
        );
        assert_eq!(info.kind, S::Delete);
        assert_eq!(names(&info), ks_tbl(Some("ks"), Some("t")));
        assert_eq!(info.using_timestamp, Some(UsingValue::Literal("-5")));
        assert!(info.lwt);
        let info = classify("DELETE FROM t WHERE k = ?");
        assert_eq!(names(&info), ks_tbl(None, Some("t")));
        assert!(!info.lwt);
        assert!(info.is_write());
    }

    #[test]
    fn truncate() {
        for q in [
            "TRUNCATE ks.t",
            "truncate table ks.t;",
            "TRUNCATE COLUMNFAMILY ks.t",
        ] {
            let info = classify(q);
            assert_eq!(info.kind, S::Truncate, "{q}");
            assert_eq!(names(&info), ks_tbl(Some("ks"), Some("t")), "{q}");
        }
    }

    #[test]
    fn non_deterministic_calls_have_exact_spans() {
        let q = "INSERT INTO t (k, a, b, c) VALUES (?, now(), toTimestamp(NOW ( )), 'now()') USING TTL ?";
        let info = classify(q);
        assert_eq!(info.nondeterministic.len(), 2);
        let first = info.nondeterministic[0];
        assert_eq!(
            (first.function, first.name, first.text),
            (NonDeterministicFn::Now, "now", "now()")
        );
        assert_eq!(&q[first.span()], "now()");
        assert_eq!(first.marker_index, 1);
        let second = info.nondeterministic[1];
        assert_eq!(&q[second.span()], "NOW ( )");
        assert_eq!(
            info.using_ttl,
            Some(UsingValue::Marker {
                index: 1,
                name: None
            })
        );

        let q = "UPDATE t SET a = currentTimestamp(), b = current_date(), c = uuid(), d = system.currentTimeUUID(), \
                 e = ks.now(), f = \"now\"(), g = \"NOW\"(), h = current_time /* x */ (), i = currenttime(1) WHERE k = :k";
        let info = classify(q);
        let found: Vec<_> = info
            .nondeterministic
            .iter()
            .map(|c| (c.function, c.name, c.text))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    NonDeterministicFn::CurrentTimestamp,
                    "currenttimestamp",
                    "currentTimestamp()"
                ),
                (
                    NonDeterministicFn::CurrentDate,
                    "current_date",
                    "current_date()"
                ),
                (NonDeterministicFn::Uuid, "uuid", "uuid()"),
                (
                    NonDeterministicFn::CurrentTimeUuid,
                    "currenttimeuuid",
                    "system.currentTimeUUID()"
                ),
                (NonDeterministicFn::Now, "now", "\"now\"()"),
                (
                    NonDeterministicFn::CurrentTime,
                    "current_time",
                    "current_time /* x */ ()"
                ),
            ]
        );
        assert_eq!(NonDeterministicFn::CurrentDate.cql_type(), "date");
        // A `uuid` column type is not a call.
        assert!(
            classify("CREATE TABLE t (id uuid PRIMARY KEY, now timeuuid)")
                .nondeterministic
                .is_empty()
        );
    }

    #[test]
    fn batches() {
        let q = "BEGIN UNLOGGED BATCH USING TIMESTAMP 42 \
                 INSERT INTO ks.a (k, v) VALUES (1, 'APPLY BATCH;'); \
                 UPDATE b USING TTL 3 SET v = ? WHERE k = 2 \
                 DELETE FROM ks.c WHERE k = 3 IF EXISTS; \
                 APPLY BATCH;";
        let info = classify(q);
        assert_eq!(info.kind, S::Batch);
        assert_eq!(info.problem, None);
        assert!(info.lwt);
        assert_eq!(info.using_timestamp, Some(UsingValue::Literal("42")));
        assert_eq!(info.timestamp_coverage(), TimestampCoverage::Statement);
        let batch = info.batch.as_ref().unwrap();
        assert_eq!(batch.batch_type, BatchType::Unlogged);
        let kinds: Vec<_> = batch.children.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, vec![S::Insert, S::Update, S::Delete]);
        let child = batch.children[0];
        assert_eq!(
            &q[child.start as usize..child.end as usize],
            "INSERT INTO ks.a (k, v) VALUES (1, 'APPLY BATCH;')"
        );
        let child = batch.children[1];
        assert_eq!(
            &q[child.start as usize..child.end as usize],
            "UPDATE b USING TTL 3 SET v = ? WHERE k = 2"
        );
        assert_eq!(child.using_ttl, Some(UsingValue::Literal("3")));
        assert_eq!(child.table.map(|t| t.raw), Some("b"));
        assert!(batch.children[2].lwt && !batch.children[0].lwt);

        let info = classify(
            "begin counter batch update c set n = n + 1 where k = 1 using timestamp 1 apply batch",
        );
        // USING after WHERE is not CQL, but the classifier only reports what it sees.
        assert_eq!(
            info.batch.as_ref().map(|b| b.batch_type),
            Some(BatchType::Counter)
        );

        let info = classify(
            "BEGIN BATCH INSERT INTO t (k) VALUES (1) USING TIMESTAMP 1; INSERT INTO t (k) VALUES (2) USING TIMESTAMP ?; APPLY BATCH",
        );
        assert_eq!(
            info.batch.as_ref().map(|b| b.batch_type),
            Some(BatchType::Logged)
        );
        assert_eq!(info.timestamp_coverage(), TimestampCoverage::AllChildren);
        assert!(!info.lwt);
        let info = classify(
            "BEGIN BATCH INSERT INTO t (k) VALUES (now()) USING TIMESTAMP 1; INSERT INTO t (k) VALUES (2); APPLY BATCH",
        );
        assert_eq!(info.timestamp_coverage(), TimestampCoverage::SomeChildren);
        assert_eq!(info.nondeterministic.len(), 1);

        for bad in [
            "BEGIN BATCH INSERT INTO t (k) VALUES (1)",
            "BEGIN BATCH SELECT * FROM t APPLY BATCH",
            "BEGIN TRANSACTION",
        ] {
            let info = classify(bad);
            assert_eq!(
                (info.kind, info.problem),
                (S::Other, Some(ParseProblem::Malformed)),
                "{bad}"
            );
        }
    }

    /// Statement text, kind, keyspace, table and object name.
    type SchemaCase<'a> = (
        &'a str,
        StatementKind,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );

    #[test]
    fn schema_statements() {
        let cases: &[SchemaCase<'_>] = &[
            (
                "CREATE KEYSPACE IF NOT EXISTS Ks WITH replication = {'class': 'SimpleStrategy'}",
                S::CreateKeyspace,
                Some("ks"),
                None,
                None,
            ),
            (
                "CREATE SCHEMA ks",
                S::CreateKeyspace,
                Some("ks"),
                None,
                None,
            ),
            (
                "ALTER KEYSPACE \"Ks\" WITH durable_writes = false",
                S::AlterKeyspace,
                Some("Ks"),
                None,
                None,
            ),
            (
                "DROP KEYSPACE IF EXISTS ks",
                S::DropKeyspace,
                Some("ks"),
                None,
                None,
            ),
            (
                "CREATE TABLE IF NOT EXISTS ks.t (k int PRIMARY KEY, v text) WITH comment = 'IF'",
                S::CreateTable,
                Some("ks"),
                Some("t"),
                None,
            ),
            (
                "CREATE COLUMNFAMILY t (k int PRIMARY KEY)",
                S::CreateTable,
                None,
                Some("t"),
                None,
            ),
            (
                "ALTER TABLE ks.t ADD v2 int",
                S::AlterTable,
                Some("ks"),
                Some("t"),
                None,
            ),
            (
                "DROP TABLE IF EXISTS t",
                S::DropTable,
                None,
                Some("t"),
                None,
            ),
            (
                "CREATE TYPE ks.addr (street text)",
                S::CreateType,
                Some("ks"),
                Some("addr"),
                None,
            ),
            (
                "ALTER TYPE addr RENAME street TO road",
                S::AlterType,
                None,
                Some("addr"),
                None,
            ),
            (
                "DROP TYPE IF EXISTS ks.addr",
                S::DropType,
                Some("ks"),
                Some("addr"),
                None,
            ),
            (
                "CREATE INDEX idx ON ks.t (v)",
                S::CreateIndex,
                Some("ks"),
                Some("t"),
                Some("idx"),
            ),
            (
                "CREATE INDEX IF NOT EXISTS ON t (keys(m))",
                S::CreateIndex,
                None,
                Some("t"),
                None,
            ),
            (
                "CREATE CUSTOM INDEX i ON ks.t (v) USING 'StorageAttachedIndex'",
                S::CreateCustomIndex,
                Some("ks"),
                Some("t"),
                Some("i"),
            ),
            (
                "DROP INDEX ks.idx",
                S::DropIndex,
                Some("ks"),
                None,
                Some("idx"),
            ),
            (
                "CREATE MATERIALIZED VIEW ks.v AS SELECT * FROM ks.t WHERE k IS NOT NULL PRIMARY KEY (k)",
                S::CreateMaterializedView,
                Some("ks"),
                Some("v"),
                None,
            ),
            (
                "ALTER MATERIALIZED VIEW v WITH comment = 'x'",
                S::AlterMaterializedView,
                None,
                Some("v"),
                None,
            ),
            (
                "DROP MATERIALIZED VIEW IF EXISTS ks.v",
                S::DropMaterializedView,
                Some("ks"),
                Some("v"),
                None,
            ),
            (
                "CREATE OR REPLACE FUNCTION ks.f (a int) CALLED ON NULL INPUT RETURNS int LANGUAGE java AS $$ return now(); $$",
                S::CreateFunction,
                Some("ks"),
                None,
                Some("f"),
            ),
            (
                "CREATE FUNCTION IF NOT EXISTS f (a int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS 'return a;'",
                S::CreateFunction,
                None,
                None,
                Some("f"),
            ),
            (
                "DROP FUNCTION IF EXISTS ks.f(int)",
                S::DropFunction,
                Some("ks"),
                None,
                Some("f"),
            ),
            (
                "CREATE AGGREGATE ks.agg (int) SFUNC f STYPE int",
                S::CreateAggregate,
                Some("ks"),
                None,
                Some("agg"),
            ),
            (
                "DROP AGGREGATE agg",
                S::DropAggregate,
                None,
                None,
                Some("agg"),
            ),
            (
                "CREATE TRIGGER IF NOT EXISTS trg ON ks.t USING 'org.Trigger'",
                S::CreateTrigger,
                Some("ks"),
                Some("t"),
                Some("trg"),
            ),
            (
                "DROP TRIGGER trg ON t",
                S::DropTrigger,
                None,
                Some("t"),
                Some("trg"),
            ),
        ];
        for &(q, kind, ks, table, name) in cases {
            let info = classify(q);
            assert_eq!(info.kind, kind, "{q}");
            assert_eq!(info.problem, None, "{q}");
            assert!(
                info.is_schema_change() && !info.lwt && !info.is_write(),
                "{q}"
            );
            assert_eq!(names(&info), ks_tbl(ks, table), "{q}");
            assert_eq!(
                info.name.map(|n| n.normalized().into_owned()).as_deref(),
                name,
                "{q}"
            );
        }
    }

    #[test]
    fn auth_and_describe() {
        let cases = [
            (
                "CREATE ROLE IF NOT EXISTS r WITH PASSWORD = 'p' AND LOGIN = true",
                S::CreateRole,
            ),
            ("ALTER ROLE r WITH SUPERUSER = false", S::AlterRole),
            ("DROP ROLE r", S::DropRole),
            ("CREATE USER 'bob' WITH PASSWORD 'x'", S::CreateUser),
            ("ALTER USER bob WITH PASSWORD 'y'", S::AlterUser),
            ("DROP USER IF EXISTS bob", S::DropUser),
            ("ADD IDENTITY 'spiffe://x' TO ROLE r", S::AddIdentity),
            ("DROP IDENTITY 'spiffe://x'", S::DropIdentity),
            ("GRANT SELECT ON KEYSPACE ks TO r", S::Grant),
            ("REVOKE MODIFY ON ALL KEYSPACES FROM r", S::Revoke),
            ("LIST ROLES OF r", S::ListRoles),
            ("LIST USERS", S::ListUsers),
            ("LIST SUPERUSERS", S::ListSuperusers),
            ("LIST ALL PERMISSIONS OF r NORECURSIVE", S::ListPermissions),
            ("DESCRIBE KEYSPACES", S::Describe),
            ("desc table ks.t", S::Describe),
        ];
        for (q, kind) in cases {
            let info = classify(q);
            assert_eq!((info.kind, info.problem), (kind, None), "{q}");
            assert!(!info.is_schema_change() && !info.is_write(), "{q}");
        }
        assert!(S::Grant.is_auth_change() && !S::ListRoles.is_auth_change());
        assert!(S::ListPermissions.is_read() && S::Describe.is_read());
    }

    #[test]
    fn problems_become_other() {
        let cases = [
            ("", ParseProblem::Empty),
            ("  -- only a comment\n /* and this */ ", ParseProblem::Empty),
            ("EXPLAIN SELECT * FROM t", ParseProblem::Unrecognized),
            ("42", ParseProblem::Unrecognized),
            ("SELECT * FROM", ParseProblem::Malformed),
            ("SELECT now()", ParseProblem::Malformed),
            ("INSERT t (a) VALUES (1)", ParseProblem::Malformed),
            ("UPDATE t USING TTL x SET a = 1", ParseProblem::Malformed),
            ("INSERT INTO t (a) VALUES ('abc", ParseProblem::Lexical),
            ("SELECT * FROM t /* open", ParseProblem::Lexical),
            ("SELECT * FROM \"t", ParseProblem::Lexical),
            (
                "SELECT * FROM t; SELECT * FROM u",
                ParseProblem::TrailingTokens,
            ),
            ("CREATE OR REPLACE TABLE t (k int)", ParseProblem::Malformed),
            ("CREATE SOMETHING x", ParseProblem::Unrecognized),
        ];
        for (q, problem) in cases {
            let info = classify(q);
            assert_eq!(
                (info.kind, info.problem),
                (S::Other, Some(problem)),
                "{q:?}"
            );
        }
        // Markers are still counted in text that did not parse.
        assert_eq!(classify("FOO ? ?").markers.positional, 2);
    }

    #[test]
    fn whitespace_variants() {
        for q in [
            "INSERT INTO ks.t(a)VALUES(1)USING TTL 1",
            "\n\tINSERT\r\nINTO\tks . t ( a ) VALUES ( 1 ) USING\nTTL\n1 ;\n",
            "INSERT/**/INTO/**/ks.t(a)VALUES(1)USING--x\nTTL 1",
        ] {
            let info = classify(q);
            assert_eq!((info.kind, info.problem), (S::Insert, None), "{q:?}");
            assert_eq!(names(&info), ks_tbl(Some("ks"), Some("t")), "{q:?}");
            assert_eq!(info.using_ttl, Some(UsingValue::Literal("1")), "{q:?}");
        }
    }

    #[test]
    fn dollar_strings_hide_keywords() {
        let info = classify("INSERT INTO t (a) VALUES ($$ IF NOT EXISTS now() ; ? $$)");
        assert!(!info.lwt && info.nondeterministic.is_empty() && info.markers.total() == 0);
        assert_eq!(info.problem, None);
    }

    #[test]
    fn ordinary_statements_do_not_allocate() {
        let info = classify("INSERT INTO ks.t (a, b) VALUES (?, 'x') USING TTL 5");
        assert_eq!(info.markers.named.capacity(), 0);
        assert_eq!(info.nondeterministic.capacity(), 0);
        assert!(info.batch.is_none());
    }

    fn check(src: &str) {
        let info = classify(src);
        for call in &info.nondeterministic {
            assert!(call.end as usize <= src.len() && call.start < call.end);
            assert_eq!(src.get(call.span()), Some(call.text));
        }
        if let Some(batch) = &info.batch {
            for child in &batch.children {
                assert!(src.get(child.start as usize..child.end as usize).is_some());
            }
        }
        assert_eq!(info.problem.is_some(), info.kind == StatementKind::Other);
        // The fast skipping must be invisible: same result as consuming token by token.
        assert_eq!(info, classify_with(src, false), "{src:?}");
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(src in ".*") {
            check(&src);
        }

        #[test]
        fn never_panics_on_lossy_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            check(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn never_panics_on_cql_like_text(
            words in proptest::collection::vec(
                prop_oneof![
                    Just("SELECT"), Just("INSERT"), Just("INTO"), Just("UPDATE"), Just("DELETE"), Just("FROM"),
                    Just("BEGIN"), Just("BATCH"), Just("APPLY"), Just("USING"), Just("TTL"), Just("TIMESTAMP"),
                    Just("AND"), Just("IF"), Just("NOT"), Just("EXISTS"), Just("CREATE"), Just("DROP"), Just("INDEX"),
                    Just("ON"), Just("now()"), Just("system.now()"), Just("("), Just(")"), Just(";"), Just("?"),
                    Just(":n"), Just("'s'"), Just("ks.t"), Just("t"), Just("1"), Just("{"), Just("}"), Just("/*"),
                    Just("--"), Just("\n"), Just("\""), Just("'"), Just("$$"),
                ],
                0..24,
            )
        ) {
            check(&words.join(" "));
        }

        /// Glued fragments around the tokens whose lexing the fast path hands back to the
        /// tokenizer (uuids, durations, `NaN`, blobs, markers, comments, quotes).
        #[test]
        fn fast_skipping_matches_token_by_token(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("INSERT INTO t (a) VALUES ("), Just("UPDATE ks.t SET a = "), Just("DELETE a FROM t WHERE k = "),
                    Just("SELECT a FROM t WHERE k IN ("), Just("BEGIN BATCH "), Just("APPLY BATCH"), Just("CREATE TABLE t ("),
                    Just(" USING TTL "), Just(" USING TIMESTAMP "), Just(" AND "), Just(" IF "), Just(" if "), Just(" EXISTS"),
                    Just("now()"), Just("system.uuid()"), Just("NaN"), Just("-nan"), Just("nancy"), Just("Infinity"),
                    Just("P1D"), Just("-P1D"), Just("P1Dx"), Just("5b6962dd-3f90-4c93-8f61-eabfb4a03ef1"),
                    Just("deadbeef-3f90-4c93-8f61-eabfb4a03ef1"), Just("deadbeef-1"), Just("0xCAFE"), Just("1.5"),
                    Just("1..2"), Just("1e5"), Just("1h30m"), Just("3µs"), Just("42"), Just("-7"), Just("x"), Just("_"),
                    Just(":n"), Just(":\"N\""), Just("?"), Just(":"), Just("'s''t'"), Just("$$a$$"), Just("\"Q\"\"x\""),
                    Just("/* c */"), Just("-- c\n"), Just("//"), Just("("), Just(")"), Just("["), Just("]"), Just("{"),
                    Just("}"), Just(","), Just(";"), Just("."), Just(".."), Just("="), Just(" "), Just("\n"), Just("'"),
                    Just("\""), Just("$$"), Just("é"), Just("-"), Just("+="), Just("!="),
                ],
                0..32,
            )
        ) {
            check(&parts.concat());
        }
    }
}
