//! CREATE / ALTER / DROP of keyspaces, tables, types and indexes; DESCRIBE; auth statements.

use ferry_cql::statement::token::TokenKind;

use super::{ParseError, Parser, Result};
use crate::cql::ast::{
    AlterKeyspace, AlterTable, AlterTableAction, AlterType, AlterTypeAction, AuthKind,
    ColumnDefinition, CreateIndex, CreateKeyspace, CreateTable, CreateType, Describe,
    DescribeTarget, IndexTarget, IndexTargetKind, OptionValue, Order, QualifiedName, Statement,
};

/// Builds the DESCRIBE target for a keyword followed by a name.
type NamedTarget = fn(QualifiedName) -> DescribeTarget;

impl Parser<'_> {
    fn rest_as_text(&mut self) -> String {
        let start = self.peek().map_or(self.src.len(), |t| t.start as usize);
        let end = self
            .toks
            .iter()
            .rev()
            .find(|t| t.kind != TokenKind::Semicolon)
            .map_or(start, |t| t.end as usize);
        self.pos = self.toks.len();
        // Leave a trailing `;` for the caller, as every other statement does.
        if self
            .toks
            .last()
            .is_some_and(|t| t.kind == TokenKind::Semicolon)
        {
            self.pos -= 1;
        }
        self.src.get(start..end.max(start)).unwrap_or("").to_owned()
    }

    /// The whole statement's text (from the first token).
    fn statement_text(&mut self) -> String {
        self.pos = 0;
        self.rest_as_text()
    }

    pub(super) fn create(&mut self) -> Result<Statement> {
        self.expect_kw("create")?;
        if self.eat_kw("keyspace") || self.eat_kw("schema") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.ident()?;
            let (replication, durable_writes) = self.keyspace_properties()?;
            return Ok(Statement::CreateKeyspace(CreateKeyspace {
                name,
                if_not_exists,
                replication: replication.unwrap_or_default(),
                durable_writes,
            }));
        }
        if self.eat_kw("table") || self.eat_kw("columnfamily") {
            return self.create_table().map(Statement::CreateTable);
        }
        if self.eat_kw("type") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.qualified_name()?;
            self.expect(TokenKind::LParen, "'('")?;
            let mut fields = Vec::new();
            loop {
                let field = self.ident()?;
                fields.push((field, self.type_name()?));
                if self.eat(TokenKind::RParen) {
                    break;
                }
                self.expect(TokenKind::Comma, "')'")?;
            }
            return Ok(Statement::CreateType(CreateType {
                name,
                if_not_exists,
                fields,
            }));
        }
        if self.at_kw("index") || (self.at_kw("custom") && self.kw_at(1, "index")) {
            return self.create_index().map(Statement::CreateIndex);
        }
        if self.at_kw("role") {
            return Ok(self.auth_text(AuthKind::CreateRole));
        }
        if self.at_kw("user") {
            return Ok(self.auth_text(AuthKind::CreateUser));
        }
        self.unsupported()
    }

    /// Functions, aggregates, views and triggers: recognized by their keywords only.
    fn unsupported(&mut self) -> Result<Statement> {
        let what = if self.at_kw("or") || self.at_kw("function") {
            "user-defined functions"
        } else if self.at_kw("aggregate") {
            "user-defined aggregates"
        } else if self.at_kw("materialized") {
            "materialized views"
        } else if self.at_kw("trigger") {
            "triggers"
        } else {
            return Err(self.no_viable());
        };
        let text = self.statement_text();
        Ok(Statement::Unsupported { what, text })
    }

    fn auth_text(&mut self, kind: AuthKind) -> Statement {
        let text = self.statement_text();
        Statement::Auth { kind, text }
    }

    pub(super) fn auth(&mut self) -> Result<Statement> {
        let kind = if self.at_kw("grant") {
            AuthKind::Grant
        } else if self.at_kw("revoke") {
            AuthKind::Revoke
        } else if self.kw_at(1, "roles") {
            AuthKind::ListRoles
        } else if self.kw_at(1, "users") {
            AuthKind::ListUsers
        } else if self.peek_at(1).is_some() {
            AuthKind::ListPermissions
        } else {
            self.pos += 1;
            return Err(self.no_viable());
        };
        Ok(self.auth_text(kind))
    }

    /// `WITH replication = {…} AND durable_writes = b`.
    #[allow(clippy::type_complexity)]
    fn keyspace_properties(&mut self) -> Result<(Option<Vec<(String, String)>>, Option<bool>)> {
        let mut replication = None;
        let mut durable_writes = None;
        if !self.eat_kw("with") {
            return Ok((None, None));
        }
        for (name, value) in self.properties()? {
            match (name.as_str(), value) {
                ("replication", OptionValue::Map(m)) => replication = Some(m),
                ("replication", _) => {
                    return Err(ParseError::Property(
                        "Invalid value for property 'replication'. It should be a map.".into(),
                    ));
                }
                ("durable_writes", v) => durable_writes = Some(bool_property(&name, &v)?),
                _ => return Err(ParseError::Property(format!("Unknown property '{name}'"))),
            }
        }
        Ok((replication, durable_writes))
    }

    /// `name = value AND …` (at least one).
    fn properties(&mut self) -> Result<Vec<(String, OptionValue)>> {
        let mut out = Vec::new();
        loop {
            let name = self.any_ident()?;
            self.expect(TokenKind::Eq, "'='")?;
            let value = self.property_value()?;
            if out.iter().any(|(n, _)| *n == name) {
                return Err(ParseError::Property(format!(
                    "Multiple definition for property '{name}'"
                )));
            }
            out.push((name, value));
            if !self.eat_kw("and") {
                return Ok(out);
            }
        }
    }

    fn property_value(&mut self) -> Result<OptionValue> {
        let Some(t) = self.peek() else {
            return Err(self.no_viable());
        };
        let text = self.text(t).to_owned();
        let v = match t.kind {
            TokenKind::String | TokenKind::DollarString => {
                OptionValue::String(t.string_value(self.src).unwrap_or_default().into_owned())
            }
            TokenKind::Integer | TokenKind::Float => OptionValue::Number(text),
            TokenKind::Ident if text.eq_ignore_ascii_case("true") => OptionValue::Bool(true),
            TokenKind::Ident if text.eq_ignore_ascii_case("false") => OptionValue::Bool(false),
            TokenKind::Ident => OptionValue::Other(text.to_ascii_lowercase()),
            TokenKind::Hex | TokenKind::Uuid | TokenKind::Duration => OptionValue::Other(text),
            TokenKind::LBrace => return self.property_map(),
            _ => return Err(self.no_viable()),
        };
        self.pos += 1;
        Ok(v)
    }

    fn property_map(&mut self) -> Result<OptionValue> {
        self.expect(TokenKind::LBrace, "'{'")?;
        let mut out = Vec::new();
        if self.eat(TokenKind::RBrace) {
            return Ok(OptionValue::Map(out));
        }
        loop {
            let key = self.property_scalar()?;
            self.expect_colon()?;
            let value = self.property_scalar()?;
            out.push((key, value));
            if self.eat(TokenKind::RBrace) {
                return Ok(OptionValue::Map(out));
            }
            self.expect(TokenKind::Comma, "'}'")?;
        }
    }

    /// A constant inside a property map, as text.
    fn property_scalar(&mut self) -> Result<String> {
        let Some(t) = self.peek() else {
            return Err(self.no_viable());
        };
        let v = match t.kind {
            TokenKind::String | TokenKind::DollarString => {
                t.string_value(self.src).unwrap_or_default().into_owned()
            }
            TokenKind::Integer
            | TokenKind::Float
            | TokenKind::Hex
            | TokenKind::Uuid
            | TokenKind::Duration
            | TokenKind::Ident => self.text(t).to_owned(),
            _ => return Err(self.no_viable()),
        };
        self.pos += 1;
        Ok(v)
    }

    fn create_table(&mut self) -> Result<CreateTable> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.qualified_name()?;
        self.expect(TokenKind::LParen, "'('")?;
        let mut columns = Vec::new();
        let mut keys: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        loop {
            if self.at_kw("primary") {
                self.pos += 1;
                self.expect_kw("key")?;
                self.expect(TokenKind::LParen, "'('")?;
                let partition = if self.eat(TokenKind::LParen) {
                    let p = self.ident_list()?;
                    self.expect(TokenKind::RParen, "')'")?;
                    p
                } else {
                    vec![self.ident()?]
                };
                let mut clustering = Vec::new();
                while self.eat(TokenKind::Comma) {
                    clustering.push(self.ident()?);
                }
                self.expect(TokenKind::RParen, "')'")?;
                keys.push((partition, clustering));
            } else {
                let col = self.ident()?;
                let ty = self.type_name()?;
                let is_static = self.eat_kw("static");
                if self.eat_kw("primary") {
                    self.expect_kw("key")?;
                    keys.push((vec![col.clone()], Vec::new()));
                }
                columns.push(ColumnDefinition {
                    name: col,
                    ty,
                    is_static,
                });
            }
            if self.eat(TokenKind::RParen) {
                break;
            }
            self.expect(TokenKind::Comma, "')'")?;
        }
        let mut clustering_order = Vec::new();
        let mut options = Vec::new();
        let mut compact_storage = false;
        if self.eat_kw("with") {
            loop {
                if self.at_kw("clustering") {
                    self.pos += 1;
                    self.expect_kw("order")?;
                    self.expect_kw("by")?;
                    self.expect(TokenKind::LParen, "'('")?;
                    loop {
                        let col = self.ident()?;
                        let order = if self.eat_kw("desc") {
                            Order::Desc
                        } else {
                            self.expect_kw("asc")?;
                            Order::Asc
                        };
                        clustering_order.push((col, order));
                        if self.eat(TokenKind::RParen) {
                            break;
                        }
                        self.expect(TokenKind::Comma, "')'")?;
                    }
                } else if self.at_kw("compact") {
                    self.pos += 1;
                    self.expect_kw("storage")?;
                    compact_storage = true;
                } else {
                    let name = self.any_ident()?;
                    self.expect(TokenKind::Eq, "'='")?;
                    let value = self.property_value()?;
                    if options.iter().any(|(n, _)| *n == name) {
                        return Err(ParseError::Property(format!(
                            "Multiple definition for property '{name}'"
                        )));
                    }
                    options.push((name, value));
                }
                if !self.eat_kw("and") {
                    break;
                }
            }
        }
        let (partition_key, clustering_key) = match keys.len() {
            1 => keys.remove(0),
            0 => {
                return Err(ParseError::Invalid(format!(
                    "No PRIMARY KEY specifed for table '{}' (exactly one required)",
                    name.name
                )));
            }
            _ => {
                return Err(ParseError::Invalid(
                    "Multiple PRIMARY KEYs specified (exactly one required)".into(),
                ));
            }
        };
        Ok(CreateTable {
            name,
            if_not_exists,
            columns,
            partition_key,
            clustering_key,
            clustering_order,
            options,
            compact_storage,
        })
    }

    fn create_index(&mut self) -> Result<CreateIndex> {
        let custom = self.eat_kw("custom");
        self.expect_kw("index")?;
        let if_not_exists = self.if_not_exists()?;
        let name = if self.at_kw("on") {
            None
        } else {
            Some(self.ident()?)
        };
        self.expect_kw("on")?;
        let table = self.qualified_name()?;
        self.expect(TokenKind::LParen, "'('")?;
        let mut kind = IndexTargetKind::Simple;
        for (kw, k) in [
            ("keys", IndexTargetKind::Keys),
            ("values", IndexTargetKind::Values),
            ("entries", IndexTargetKind::Entries),
            ("full", IndexTargetKind::Full),
        ] {
            if self.at_kw(kw) && self.kind_at(1) == Some(TokenKind::LParen) {
                self.pos += 2;
                kind = k;
                break;
            }
        }
        let column = self.ident()?;
        if kind != IndexTargetKind::Simple {
            self.expect(TokenKind::RParen, "')'")?;
        }
        self.expect(TokenKind::RParen, "')'")?;
        let mut using = None;
        if self.eat_kw("using") {
            let t = self.expect(TokenKind::String, "STRING_LITERAL")?;
            using = Some(t.string_value(self.src).unwrap_or_default().into_owned());
        } else if custom {
            return Err(self.mismatch("USING"));
        }
        let mut options = Vec::new();
        if self.eat_kw("with") {
            self.expect_kw("options")?;
            self.expect(TokenKind::Eq, "'='")?;
            if let OptionValue::Map(m) = self.property_map()? {
                options = m
                    .into_iter()
                    .map(|(k, v)| (k, OptionValue::String(v)))
                    .collect();
            }
        }
        Ok(CreateIndex {
            name,
            if_not_exists,
            table,
            target: IndexTarget { kind, column },
            using,
            options,
        })
    }

    pub(super) fn alter(&mut self) -> Result<Statement> {
        self.expect_kw("alter")?;
        if self.eat_kw("keyspace") || self.eat_kw("schema") {
            let if_exists = self.if_exists()?;
            let name = self.ident()?;
            if !self.at_kw("with") {
                return Err(self.mismatch("WITH"));
            }
            let (replication, durable_writes) = self.keyspace_properties()?;
            return Ok(Statement::AlterKeyspace(AlterKeyspace {
                name,
                if_exists,
                replication,
                durable_writes,
            }));
        }
        if self.eat_kw("table") || self.eat_kw("columnfamily") {
            return self.alter_table().map(Statement::AlterTable);
        }
        if self.eat_kw("type") {
            let if_exists = self.if_exists()?;
            let name = self.qualified_name()?;
            let action = if self.eat_kw("add") {
                let if_not_exists = self.if_not_exists()?;
                let field = self.ident()?;
                let ty = self.type_name()?;
                AlterTypeAction::Add {
                    if_not_exists,
                    field,
                    ty,
                }
            } else if self.eat_kw("rename") {
                let if_exists = self.if_exists()?;
                AlterTypeAction::Rename {
                    if_exists,
                    renames: self.renames()?,
                }
            } else {
                return Err(self.no_viable());
            };
            return Ok(Statement::AlterType(AlterType {
                name,
                if_exists,
                action,
            }));
        }
        if self.at_kw("role") {
            return Ok(self.auth_text(AuthKind::AlterRole));
        }
        if self.at_kw("user") {
            return Ok(self.auth_text(AuthKind::AlterUser));
        }
        if self.at_kw("materialized") {
            let text = self.statement_text();
            return Ok(Statement::Unsupported {
                what: "materialized views",
                text,
            });
        }
        Err(self.no_viable())
    }

    /// `a TO b AND c TO d`.
    fn renames(&mut self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        loop {
            let from = self.ident()?;
            self.expect_kw("to")?;
            out.push((from, self.ident()?));
            if !self.eat_kw("and") {
                return Ok(out);
            }
        }
    }

    fn alter_table(&mut self) -> Result<AlterTable> {
        let if_exists = self.if_exists()?;
        let table = self.qualified_name()?;
        let action = if self.eat_kw("add") {
            let if_not_exists = self.if_not_exists()?;
            let mut columns = Vec::new();
            let parens = self.eat(TokenKind::LParen);
            loop {
                let name = self.ident()?;
                let ty = self.type_name()?;
                let is_static = self.eat_kw("static");
                columns.push(ColumnDefinition {
                    name,
                    ty,
                    is_static,
                });
                if !parens || !self.eat(TokenKind::Comma) {
                    break;
                }
            }
            if parens {
                self.expect(TokenKind::RParen, "')'")?;
            }
            AlterTableAction::Add {
                if_not_exists,
                columns,
            }
        } else if self.eat_kw("drop") {
            let if_exists = self.if_exists()?;
            let columns = if self.eat(TokenKind::LParen) {
                let cols = self.ident_list()?;
                self.expect(TokenKind::RParen, "')'")?;
                cols
            } else {
                vec![self.ident()?]
            };
            let timestamp = if self.eat_kw("using") {
                self.expect_kw("timestamp")?;
                Some(self.integer()?)
            } else {
                None
            };
            AlterTableAction::Drop {
                if_exists,
                columns,
                timestamp,
            }
        } else if self.eat_kw("rename") {
            let if_exists = self.if_exists()?;
            AlterTableAction::Rename {
                if_exists,
                renames: self.renames()?,
            }
        } else if self.eat_kw("with") {
            AlterTableAction::With(self.properties()?)
        } else {
            return Err(self.no_viable());
        };
        Ok(AlterTable {
            table,
            if_exists,
            action,
        })
    }

    pub(super) fn drop(&mut self) -> Result<Statement> {
        self.expect_kw("drop")?;
        if self.eat_kw("keyspace") || self.eat_kw("schema") {
            let if_exists = self.if_exists()?;
            return Ok(Statement::DropKeyspace {
                if_exists,
                name: self.ident()?,
            });
        }
        if self.eat_kw("table") || self.eat_kw("columnfamily") {
            let if_exists = self.if_exists()?;
            return Ok(Statement::DropTable {
                if_exists,
                name: self.qualified_name()?,
            });
        }
        if self.eat_kw("type") {
            let if_exists = self.if_exists()?;
            return Ok(Statement::DropType {
                if_exists,
                name: self.qualified_name()?,
            });
        }
        if self.eat_kw("index") {
            let if_exists = self.if_exists()?;
            return Ok(Statement::DropIndex {
                if_exists,
                name: self.qualified_name()?,
            });
        }
        if self.at_kw("role") {
            return Ok(self.auth_text(AuthKind::DropRole));
        }
        if self.at_kw("user") {
            return Ok(self.auth_text(AuthKind::DropUser));
        }
        self.unsupported()
    }

    pub(super) fn describe(&mut self) -> Result<Describe> {
        self.pos += 1; // DESCRIBE | DESC
        let target = self.describe_target()?;
        let with_internals = if self.eat_kw("with") {
            self.expect_kw("internals")?;
            true
        } else {
            false
        };
        Ok(Describe {
            target,
            with_internals,
        })
    }

    fn describe_target(&mut self) -> Result<DescribeTarget> {
        use DescribeTarget as D;
        if self.eat_kw("full") {
            self.expect_kw("schema")?;
            return Ok(D::Schema { full: true });
        }
        let simple = [
            ("cluster", D::Cluster),
            ("schema", D::Schema { full: false }),
            ("keyspaces", D::Keyspaces),
            ("tables", D::Tables),
            ("columnfamilies", D::Tables),
            ("types", D::Types),
            ("functions", D::Functions),
            ("aggregates", D::Aggregates),
        ];
        for (kw, target) in simple {
            if self.eat_kw(kw) {
                return Ok(target);
            }
        }
        let only = self.eat_kw("only");
        if self.eat_kw("keyspace") {
            let name = if self.at_ident() {
                Some(self.ident()?)
            } else {
                None
            };
            return Ok(D::Keyspace { name, only });
        }
        if only {
            return Err(self.mismatch("KEYSPACE"));
        }
        let named: [(&str, NamedTarget); 6] = [
            ("table", D::Table),
            ("columnfamily", D::Table),
            ("type", D::Type),
            ("function", D::Function),
            ("aggregate", D::Aggregate),
            ("index", D::Index),
        ];
        for (kw, make) in named {
            // `DESCRIBE type` alone names an object called "type".
            if self.at_kw(kw)
                && self
                    .peek_at(1)
                    .is_some_and(|t| t.kind != TokenKind::Semicolon)
            {
                self.pos += 1;
                return Ok(make(self.qualified_name()?));
            }
        }
        if self.at_kw("materialized") {
            self.pos += 1;
            self.expect_kw("view")?;
            return Ok(D::MaterializedView(self.qualified_name()?));
        }
        Ok(D::Name(self.qualified_name()?))
    }
}

/// A boolean property: `true`/`false`, bare or quoted, any case (Cassandra's
/// `PropertyDefinitions.getBoolean`).
fn bool_property(name: &str, v: &OptionValue) -> Result<bool> {
    match v {
        OptionValue::Bool(b) => Ok(*b),
        OptionValue::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        OptionValue::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ParseError::Property(format!(
            "Invalid boolean value {} for '{name}'. Expected 'true' or 'false'",
            other.as_text().unwrap_or("{…}")
        ))),
    }
}
