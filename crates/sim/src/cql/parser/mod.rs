//! A recursive-descent parser over [`Tokenizer`] tokens, one function per grammar rule of
//! Cassandra's `Parser.g` that the sim needs.
//!
//! The token vector is built once (a statement is short); the parser never panics: every
//! lookup past the end is `None`, and nesting (terms, types, selectors) is bounded by
//! [`MAX_DEPTH`] so hostile input cannot overflow the stack.

mod ddl;
mod dml;

use ferry_cql::statement::token::{Token, TokenKind, Tokenizer};
use ferry_cql::types::ColumnType;

use super::ast::{ArithOp, Literal, QualifiedName, Statement, Term, TypeName};

/// Deepest nesting of terms, types and selectors. Real statements stay in single digits;
/// 64 bounds recursion to a few KiB of stack per level.
pub const MAX_DEPTH: usize = 64;

/// Why a statement was refused. Both variants' `Display` is the message the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not valid CQL: answer SYNTAX_ERROR (0x2000). `line` is 1-based, `column` 0-based (in
    /// characters), as ANTLR reports them.
    #[error("line {line}:{column} {message}")]
    Syntax {
        line: u32,
        column: u32,
        message: String,
    },
    /// Valid grammar that Cassandra rejects with a SyntaxException of its own (no position),
    /// e.g. `Unknown property 'x'`: answer SYNTAX_ERROR (0x2000).
    #[error("{0}")]
    Property(String),
    /// Valid grammar that Cassandra rejects while preparing the statement (e.g. `Unmatched
    /// column names/values`): answer INVALID (0x2200).
    #[error("{0}")]
    Invalid(String),
}

impl ParseError {
    /// Whether the error is a SYNTAX_ERROR (else INVALID).
    pub fn is_syntax(&self) -> bool {
        !matches!(self, Self::Invalid(_))
    }
}

/// A bind marker of a parsed statement: its index (order of appearance) and its name for
/// `:name` markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMarker {
    pub index: usize,
    pub name: Option<String>,
}

/// A statement with its bind markers, for PREPARE.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub statement: Statement,
    /// Every marker in order of appearance; `markers[i].index == i`.
    pub markers: Vec<BindMarker>,
}

/// Parses one statement; a trailing `;` is allowed.
pub fn parse(cql: &str) -> std::result::Result<Statement, ParseError> {
    parse_with_markers(cql).map(|p| p.statement)
}

/// Parses one statement and lists its bind markers.
pub fn parse_with_markers(cql: &str) -> std::result::Result<Parsed, ParseError> {
    let mut p = Parser::new(cql)?;
    let statement = p.statement()?;
    p.eat(TokenKind::Semicolon);
    p.expect_end()?;
    let markers = p
        .markers
        .into_iter()
        .enumerate()
        .map(|(index, name)| BindMarker { index, name })
        .collect();
    Ok(Parsed { statement, markers })
}

/// Parses one term alone (`'it''s'`, `0x00ff`, `{1: 'a'}`, `(1, 'x')`) with nothing after
/// it: a value sent as CQL literal text, converted with [`term_to_value`](super::term_to_value)
/// once its receiver's type is known.
pub fn parse_term(text: &str) -> std::result::Result<Term, ParseError> {
    let mut p = Parser::new(text)?;
    let term = p.term()?;
    p.expect_end()?;
    Ok(term)
}

/// Native type names and their column types (`text` and `varchar` are one type).
const NATIVE_TYPES: &[(&str, ColumnType)] = &[
    ("ascii", ColumnType::Ascii),
    ("bigint", ColumnType::Bigint),
    ("blob", ColumnType::Blob),
    ("boolean", ColumnType::Boolean),
    ("counter", ColumnType::Counter),
    ("date", ColumnType::Date),
    ("decimal", ColumnType::Decimal),
    ("double", ColumnType::Double),
    ("duration", ColumnType::Duration),
    ("float", ColumnType::Float),
    ("inet", ColumnType::Inet),
    ("int", ColumnType::Int),
    ("smallint", ColumnType::Smallint),
    ("text", ColumnType::Varchar),
    ("time", ColumnType::Time),
    ("timestamp", ColumnType::Timestamp),
    ("timeuuid", ColumnType::Timeuuid),
    ("tinyint", ColumnType::Tinyint),
    ("uuid", ColumnType::Uuid),
    ("varchar", ColumnType::Varchar),
    ("varint", ColumnType::Varint),
];

pub(crate) fn native_type(name: &str) -> Option<ColumnType> {
    NATIVE_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, t)| t.clone())
}

pub(crate) struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    /// Names of the bind markers seen so far (`None` for `?`); the length is the next index.
    markers: Vec<Option<String>>,
    /// Current nesting of terms/types/selectors, checked against [`MAX_DEPTH`].
    depth: usize,
}

type Result<T> = std::result::Result<T, ParseError>;

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self> {
        let mut toks = Vec::new();
        for t in Tokenizer::new(src) {
            if t.kind.is_error() {
                return Err(lex_error(src, t));
            }
            toks.push(t);
        }
        Ok(Self {
            src,
            toks,
            pos: 0,
            markers: Vec::new(),
            depth: 0,
        })
    }

    // -- token access -------------------------------------------------------------------------

    fn peek(&self) -> Option<Token> {
        self.toks.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<Token> {
        self.toks.get(self.pos + n).copied()
    }

    fn kind_at(&self, n: usize) -> Option<TokenKind> {
        self.peek_at(n).map(|t| t.kind)
    }

    fn text(&self, t: Token) -> &'a str {
        t.text(self.src)
    }

    fn bump(&mut self) -> Option<Token> {
        let t = self.peek();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn at_kw(&self, kw: &str) -> bool {
        self.kw_at(0, kw)
    }

    fn kw_at(&self, n: usize, kw: &str) -> bool {
        self.peek_at(n).is_some_and(|t| t.is_keyword(self.src, kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.at_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.mismatch(&kw.to_ascii_uppercase()))
        }
    }

    /// `IF NOT EXISTS`, all or nothing.
    fn if_not_exists(&mut self) -> Result<bool> {
        if self.at_kw("if") && self.kw_at(1, "not") {
            self.pos += 2;
            self.expect_kw("exists")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// `IF EXISTS`.
    fn if_exists(&mut self) -> Result<bool> {
        if self.at_kw("if") && self.kw_at(1, "exists") {
            self.pos += 2;
            return Ok(true);
        }
        Ok(false)
    }

    fn at(&self, kind: TokenKind) -> bool {
        self.kind_at(0) == Some(kind)
    }

    fn eat(&mut self, kind: TokenKind) -> bool {
        if self.at(kind) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kind: TokenKind, what: &str) -> Result<Token> {
        match self.peek() {
            Some(t) if t.kind == kind => {
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.mismatch(what)),
        }
    }

    /// A `:` separating a map key or UDT field from its value. The tokenizer lexes `:x` as a
    /// named marker after some keywords (`{ttl:x}`); here it can only be a colon, so the
    /// token is split in two.
    fn expect_colon(&mut self) -> Result<()> {
        match self.peek() {
            Some(t) if t.kind == TokenKind::Colon => {
                self.pos += 1;
                Ok(())
            }
            Some(t) if t.kind == TokenKind::NamedMarker => {
                let rest = t.text(self.src).get(1..).unwrap_or("");
                let kind = if rest.starts_with('"') {
                    TokenKind::QuotedIdent
                } else {
                    TokenKind::Ident
                };
                self.toks[self.pos] = Token {
                    kind,
                    start: t.start + 1,
                    end: t.end,
                };
                Ok(())
            }
            _ => Err(self.mismatch("':'")),
        }
    }

    fn expect_end(&self) -> Result<()> {
        if self.peek().is_some() {
            return Err(self.mismatch("EOF"));
        }
        Ok(())
    }

    // -- errors -------------------------------------------------------------------------------

    /// Line and column of byte offset `at`.
    fn position(&self, at: usize) -> (u32, u32) {
        position(self.src, at)
    }

    fn current_text_and_pos(&self) -> (String, usize) {
        match self.peek() {
            Some(t) => (self.text(t).to_owned(), t.start as usize),
            None => ("<EOF>".to_owned(), self.src.len()),
        }
    }

    fn syntax(&self, at: usize, message: String) -> ParseError {
        let (line, column) = self.position(at);
        ParseError::Syntax {
            line,
            column,
            message,
        }
    }

    /// `mismatched input 'x' expecting Y` at the current token.
    fn mismatch(&self, expecting: &str) -> ParseError {
        let (text, at) = self.current_text_and_pos();
        self.syntax(
            at,
            format!("mismatched input '{text}' expecting {expecting}"),
        )
    }

    /// `no viable alternative at input 'x'` at the current token.
    fn no_viable(&self) -> ParseError {
        let (text, at) = self.current_text_and_pos();
        self.syntax(at, format!("no viable alternative at input '{text}'"))
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let (_, at) = self.current_text_and_pos();
            return Err(self.syntax(
                at,
                format!("nesting deeper than {MAX_DEPTH} levels is not supported"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // -- names --------------------------------------------------------------------------------

    /// An identifier: unquoted (not reserved, case-folded) or quoted.
    fn ident(&mut self) -> Result<String> {
        match self.peek() {
            Some(t) if t.kind == TokenKind::QuotedIdent => {
                self.pos += 1;
                Ok(t.ident_value(self.src).unwrap_or_default().into_owned())
            }
            Some(t) if t.kind == TokenKind::Ident && !self.is_reserved(t) => {
                self.pos += 1;
                Ok(t.ident_value(self.src).unwrap_or_default().into_owned())
            }
            _ => Err(self.no_viable()),
        }
    }

    /// An identifier where reserved keywords are fine too (option names, map keys).
    fn any_ident(&mut self) -> Result<String> {
        match self.peek() {
            Some(t) if matches!(t.kind, TokenKind::Ident | TokenKind::QuotedIdent) => {
                self.pos += 1;
                Ok(t.ident_value(self.src).unwrap_or_default().into_owned())
            }
            _ => Err(self.no_viable()),
        }
    }

    fn is_reserved(&self, t: Token) -> bool {
        let text = self.text(t);
        ferry_cql::statement::keywords::is_reserved(text)
    }

    fn at_ident(&self) -> bool {
        self.peek().is_some_and(|t| {
            t.kind == TokenKind::QuotedIdent || (t.kind == TokenKind::Ident && !self.is_reserved(t))
        })
    }

    /// `name` or `ks.name`.
    fn qualified_name(&mut self) -> Result<QualifiedName> {
        let first = self.ident()?;
        if self.eat(TokenKind::Dot) {
            let name = self.ident()?;
            return Ok(QualifiedName {
                keyspace: Some(first),
                name,
            });
        }
        Ok(QualifiedName {
            keyspace: None,
            name: first,
        })
    }

    /// `a, b, c` (at least one).
    fn ident_list(&mut self) -> Result<Vec<String>> {
        let mut out = vec![self.ident()?];
        while self.eat(TokenKind::Comma) {
            out.push(self.ident()?);
        }
        Ok(out)
    }

    fn integer(&mut self) -> Result<i64> {
        let t = self.expect(TokenKind::Integer, "INTEGER")?;
        self.text(t).parse().map_err(|_| {
            self.syntax(
                t.start as usize,
                format!("integer '{}' is out of range", self.text(t)),
            )
        })
    }

    // -- statements ---------------------------------------------------------------------------

    fn statement(&mut self) -> Result<Statement> {
        let Some(first) = self.peek() else {
            return Err(self.no_viable());
        };
        if first.kind != TokenKind::Ident {
            return Err(self.no_viable());
        }
        let kw = self.text(first).to_ascii_lowercase();
        match kw.as_str() {
            "select" => self.select().map(Statement::Select),
            "insert" => self.insert().map(Statement::Insert),
            "update" => self.update().map(Statement::Update),
            "delete" => self.delete().map(Statement::Delete),
            "begin" => self.batch().map(Statement::Batch),
            "use" => {
                self.pos += 1;
                self.ident().map(Statement::Use)
            }
            "truncate" => {
                self.pos += 1;
                if !self.eat_kw("table") {
                    self.eat_kw("columnfamily");
                }
                Ok(Statement::Truncate {
                    table: self.qualified_name()?,
                })
            }
            "create" => self.create(),
            "alter" => self.alter(),
            "drop" => self.drop(),
            "describe" | "desc" => self.describe().map(Statement::Describe),
            "grant" | "revoke" | "list" => self.auth(),
            _ => Err(self.no_viable()),
        }
    }

    // -- terms --------------------------------------------------------------------------------

    fn new_marker(&mut self, name: Option<String>) -> Term {
        let index = self.markers.len();
        self.markers.push(name.clone());
        Term::Marker { index, name }
    }

    /// A term with arithmetic (`+ -` over `* / %`), Cassandra 4+'s `termAddition`.
    pub(crate) fn term(&mut self) -> Result<Term> {
        self.enter()?;
        let r = self.term_addition();
        self.leave();
        r
    }

    fn term_addition(&mut self) -> Result<Term> {
        let mut left = self.term_multiplication()?;
        loop {
            let op = match self.kind_at(0) {
                Some(TokenKind::Plus) => ArithOp::Add,
                Some(TokenKind::Minus) => ArithOp::Sub,
                _ => return Ok(left),
            };
            // `c = v + c` (list prepend): a bare column name after `+` ends the term.
            if self.bare_ident_at(1) {
                return Ok(left);
            }
            self.pos += 1;
            let right = self.term_multiplication()?;
            left = Term::Arithmetic {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
    }

    /// Whether token `n` is an identifier that cannot start a term (not a function call, not
    /// `true`/`false`/`null`).
    fn bare_ident_at(&self, n: usize) -> bool {
        let Some(t) = self.peek_at(n) else {
            return false;
        };
        match t.kind {
            TokenKind::QuotedIdent => self.kind_at(n + 1) != Some(TokenKind::LParen),
            TokenKind::Ident => {
                let text = self.text(t);
                !["true", "false", "null"]
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(text))
                    && !matches!(
                        self.kind_at(n + 1),
                        Some(TokenKind::LParen | TokenKind::Dot)
                    )
            }
            _ => false,
        }
    }

    fn term_multiplication(&mut self) -> Result<Term> {
        let mut left = self.term_unary()?;
        loop {
            let op = match self.kind_at(0) {
                Some(TokenKind::Star) => ArithOp::Mul,
                Some(TokenKind::Slash) => ArithOp::Div,
                Some(TokenKind::Percent) => ArithOp::Rem,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.term_unary()?;
            left = Term::Arithmetic {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
    }

    fn term_unary(&mut self) -> Result<Term> {
        if self.eat(TokenKind::Minus) {
            self.enter()?;
            let inner = self.term_unary();
            self.leave();
            return Ok(Term::Negate(Box::new(inner?)));
        }
        self.simple_term()
    }

    /// A term without arithmetic at its top.
    fn simple_term(&mut self) -> Result<Term> {
        let Some(t) = self.peek() else {
            return Err(self.no_viable());
        };
        let text = self.text(t);
        let lit = match t.kind {
            TokenKind::String | TokenKind::DollarString => {
                Literal::String(t.string_value(self.src).unwrap_or_default().into_owned())
            }
            TokenKind::Integer => Literal::Integer(text.to_owned()),
            TokenKind::Float => Literal::Float(text.to_owned()),
            TokenKind::Hex => Literal::Hex(text.get(2..).unwrap_or("").to_owned()),
            TokenKind::Uuid => Literal::Uuid(text.to_owned()),
            TokenKind::Duration => Literal::Duration(text.to_owned()),
            TokenKind::QMark => {
                self.pos += 1;
                return Ok(self.new_marker(None));
            }
            TokenKind::NamedMarker => {
                self.pos += 1;
                let name = t.ident_value(self.src).unwrap_or_default().into_owned();
                return Ok(self.new_marker(Some(name)));
            }
            TokenKind::Colon => {
                // `: name` with a space: still a named marker in Cassandra's grammar.
                self.pos += 1;
                let name = self.any_ident()?;
                return Ok(self.new_marker(Some(name)));
            }
            TokenKind::LBracket => return self.list_literal(),
            TokenKind::LBrace => return self.brace_literal(),
            TokenKind::LParen => return self.paren_term(),
            TokenKind::Ident | TokenKind::QuotedIdent => return self.ident_term(),
            _ => return Err(self.no_viable()),
        };
        self.pos += 1;
        Ok(Term::Literal(lit))
    }

    /// `true`, `false`, `null` or a function call.
    fn ident_term(&mut self) -> Result<Term> {
        for (kw, lit) in [
            ("true", Literal::Bool(true)),
            ("false", Literal::Bool(false)),
            ("null", Literal::Null),
        ] {
            if self.eat_kw(kw) {
                return Ok(Term::Literal(lit));
            }
        }
        let call = self.kind_at(1) == Some(TokenKind::LParen)
            || (self.kind_at(1) == Some(TokenKind::Dot)
                && self.kind_at(3) == Some(TokenKind::LParen));
        if !call {
            return Err(self.no_viable());
        }
        let name = self.function_name()?;
        let args = self.term_args()?;
        Ok(Term::FunctionCall { name, args })
    }

    /// A function name: `f` or `ks.f`; `token` and other keywords are allowed as names.
    fn function_name(&mut self) -> Result<QualifiedName> {
        let first = self.any_ident()?;
        if self.at(TokenKind::Dot) && self.kind_at(2) == Some(TokenKind::LParen) {
            self.pos += 1;
            let name = self.any_ident()?;
            return Ok(QualifiedName {
                keyspace: Some(first),
                name,
            });
        }
        Ok(QualifiedName {
            keyspace: None,
            name: first,
        })
    }

    /// `( term, … )`, possibly empty.
    fn term_args(&mut self) -> Result<Vec<Term>> {
        self.expect(TokenKind::LParen, "'('")?;
        let mut args = Vec::new();
        if self.eat(TokenKind::RParen) {
            return Ok(args);
        }
        loop {
            args.push(self.term()?);
            if self.eat(TokenKind::RParen) {
                return Ok(args);
            }
            self.expect(TokenKind::Comma, "')'")?;
        }
    }

    fn list_literal(&mut self) -> Result<Term> {
        self.expect(TokenKind::LBracket, "'['")?;
        let mut items = Vec::new();
        if self.eat(TokenKind::RBracket) {
            return Ok(Term::List(items));
        }
        loop {
            items.push(self.term()?);
            if self.eat(TokenKind::RBracket) {
                return Ok(Term::List(items));
            }
            self.expect(TokenKind::Comma, "']'")?;
        }
    }

    /// `{}`, `{a, b}`, `{k: v}` or `{field: v}`.
    fn brace_literal(&mut self) -> Result<Term> {
        self.expect(TokenKind::LBrace, "'{'")?;
        if self.eat(TokenKind::RBrace) {
            return Ok(Term::EmptyBraces);
        }
        // A UDT literal starts with a field name and a colon; a map key is a term.
        let udt = self.bare_ident_at(0)
            && matches!(
                self.kind_at(1),
                Some(TokenKind::Colon | TokenKind::NamedMarker)
            );
        if udt {
            let mut fields = Vec::new();
            loop {
                let name = self.any_ident()?;
                self.expect_colon()?;
                fields.push((name, self.term()?));
                if self.eat(TokenKind::RBrace) {
                    return Ok(Term::Udt(fields));
                }
                self.expect(TokenKind::Comma, "'}'")?;
            }
        }
        let first = self.term()?;
        if matches!(
            self.kind_at(0),
            Some(TokenKind::Colon | TokenKind::NamedMarker)
        ) {
            self.expect_colon()?;
            let mut entries = vec![(first, self.term()?)];
            while self.eat(TokenKind::Comma) {
                let k = self.term()?;
                self.expect_colon()?;
                entries.push((k, self.term()?));
            }
            self.expect(TokenKind::RBrace, "'}'")?;
            return Ok(Term::Map(entries));
        }
        let mut items = vec![first];
        while self.eat(TokenKind::Comma) {
            items.push(self.term()?);
        }
        self.expect(TokenKind::RBrace, "'}'")?;
        Ok(Term::Set(items))
    }

    /// `(type) term` (a type hint) or a tuple `(a, b)`.
    fn paren_term(&mut self) -> Result<Term> {
        self.expect(TokenKind::LParen, "'('")?;
        if self.bare_ident_at(0)
            || (self.at(TokenKind::String) && self.kind_at(1) == Some(TokenKind::RParen))
        {
            let save = self.pos;
            if let Ok(ty) = self.type_name()
                && self.eat(TokenKind::RParen)
            {
                self.enter()?;
                let term = self.simple_term();
                self.leave();
                return Ok(Term::Cast {
                    ty,
                    term: Box::new(term?),
                });
            }
            self.pos = save;
        }
        let mut items = vec![self.term()?];
        while self.eat(TokenKind::Comma) {
            items.push(self.term()?);
        }
        self.expect(TokenKind::RParen, "')'")?;
        Ok(Term::Tuple(items))
    }

    // -- types --------------------------------------------------------------------------------

    pub(crate) fn type_name(&mut self) -> Result<TypeName> {
        self.enter()?;
        let r = self.type_name_inner();
        self.leave();
        r
    }

    fn type_name_inner(&mut self) -> Result<TypeName> {
        let Some(t) = self.peek() else {
            return Err(self.no_viable());
        };
        if t.kind == TokenKind::String {
            self.pos += 1;
            return Ok(TypeName::Custom(
                t.string_value(self.src).unwrap_or_default().into_owned(),
            ));
        }
        if t.kind == TokenKind::Ident {
            let word = self.text(t).to_ascii_lowercase();
            let generic = matches!(
                word.as_str(),
                "list" | "set" | "map" | "tuple" | "frozen" | "vector"
            ) && self.kind_at(1) == Some(TokenKind::Lt);
            if generic {
                self.pos += 2;
                let ty = match word.as_str() {
                    "list" => TypeName::List(Box::new(self.type_name()?)),
                    "set" => TypeName::Set(Box::new(self.type_name()?)),
                    "frozen" => TypeName::Frozen(Box::new(self.type_name()?)),
                    "map" => {
                        let k = self.type_name()?;
                        self.expect(TokenKind::Comma, "','")?;
                        TypeName::Map(Box::new(k), Box::new(self.type_name()?))
                    }
                    "tuple" => {
                        let mut ts = vec![self.type_name()?];
                        while self.eat(TokenKind::Comma) {
                            ts.push(self.type_name()?);
                        }
                        TypeName::Tuple(ts)
                    }
                    _ => {
                        let e = self.type_name()?;
                        self.expect(TokenKind::Comma, "','")?;
                        let at = self.peek();
                        let n = self.integer()?;
                        let n = u32::try_from(n).map_err(|_| {
                            self.syntax(
                                at.map_or(0, |t| t.start as usize),
                                format!("invalid vector dimension {n}"),
                            )
                        })?;
                        TypeName::Vector(Box::new(e), n)
                    }
                };
                self.expect(TokenKind::Gt, "'>'")?;
                return Ok(ty);
            }
            if let Some(native) = native_type(&word) {
                self.pos += 1;
                return Ok(TypeName::Native(native));
            }
        }
        Ok(TypeName::Udt(self.qualified_name()?))
    }
}

/// 1-based line and 0-based character column of byte offset `at`.
fn position(src: &str, at: usize) -> (u32, u32) {
    let before = src.get(..at).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count());
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

/// The error for a token the lexer could not finish, worded like ANTLR's lexer errors.
fn lex_error(src: &str, t: Token) -> ParseError {
    let (line, column) = position(src, t.start as usize);
    let text = t.text(src);
    let message = match t.kind {
        TokenKind::UnterminatedString => {
            let quote = if text.starts_with('$') { "$$" } else { "'" };
            format!("mismatched character '<EOF>' expecting '{quote}'")
        }
        TokenKind::UnterminatedQuotedIdent => "mismatched character '<EOF>' expecting '\"'".into(),
        TokenKind::UnterminatedComment => "mismatched character '<EOF>' expecting '*/'".into(),
        _ => format!("no viable alternative at character '{text}'"),
    };
    ParseError::Syntax {
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod tests;
