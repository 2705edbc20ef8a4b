//! SELECT, INSERT, UPDATE, DELETE and BATCH, with their WHERE, IF and USING clauses.

use ferry_cql::statement::token::TokenKind;

use super::{ParseError, Parser, Result};
use crate::cql::ast::{
    Assignment, Batch, BatchKind, ColumnCondition, Condition, Delete, DeleteTarget, Insert,
    InsertValues, Literal, Operator, Order, Relation, Select, Selection, Selector, SelectorExpr,
    Statement, Term, Update, Using,
};

impl Parser<'_> {
    // -- SELECT -------------------------------------------------------------------------------

    pub(super) fn select(&mut self) -> Result<Select> {
        self.expect_kw("select")?;
        let json = self.eat_kw("json");
        let distinct = self.at_kw("distinct") && !self.selection_ends_at(1) && {
            self.pos += 1;
            true
        };
        let selection = if self.eat(TokenKind::Star) {
            Selection::Star
        } else {
            let mut selectors = vec![self.selector()?];
            while self.eat(TokenKind::Comma) {
                selectors.push(self.selector()?);
            }
            Selection::Selectors(selectors)
        };
        self.expect_kw("from")?;
        let table = self.qualified_name()?;
        let where_ = if self.eat_kw("where") {
            self.relations()?
        } else {
            Vec::new()
        };
        let mut group_by = Vec::new();
        if self.eat_kw("group") {
            self.expect_kw("by")?;
            group_by = self.ident_list()?;
        }
        let mut order_by = Vec::new();
        if self.eat_kw("order") {
            self.expect_kw("by")?;
            loop {
                let col = self.ident()?;
                let order = if self.eat_kw("desc") {
                    Order::Desc
                } else {
                    self.eat_kw("asc");
                    Order::Asc
                };
                order_by.push((col, order));
                if !self.eat(TokenKind::Comma) {
                    break;
                }
            }
        }
        let mut per_partition_limit = None;
        if self.at_kw("per") {
            self.pos += 1;
            self.expect_kw("partition")?;
            self.expect_kw("limit")?;
            per_partition_limit = Some(self.limit_value()?);
        }
        let limit = if self.eat_kw("limit") {
            Some(self.limit_value()?)
        } else {
            None
        };
        let allow_filtering = if self.eat_kw("allow") {
            self.expect_kw("filtering")?;
            true
        } else {
            false
        };
        Ok(Select {
            table,
            distinct,
            json,
            selection,
            where_,
            group_by,
            order_by,
            per_partition_limit,
            limit,
            allow_filtering,
        })
    }

    /// Whether token `n` ends a selector list item, so `distinct` before it is a column name.
    fn selection_ends_at(&self, n: usize) -> bool {
        matches!(self.kind_at(n), Some(TokenKind::Comma))
            || self.kw_at(n, "from")
            || self.kw_at(n, "as")
    }

    /// `LIMIT` values: an integer or a marker (Cassandra's `intValue`).
    fn limit_value(&mut self) -> Result<Term> {
        match self.kind_at(0) {
            Some(TokenKind::Integer) => {
                let t = self.bump().map(|t| self.text(t).to_owned());
                Ok(Term::Literal(Literal::Integer(t.unwrap_or_default())))
            }
            Some(TokenKind::QMark | TokenKind::NamedMarker | TokenKind::Colon) => {
                self.simple_term()
            }
            _ => Err(self.mismatch("INTEGER")),
        }
    }

    fn selector(&mut self) -> Result<Selector> {
        let expr = self.selector_expr()?;
        let alias = if self.eat_kw("as") {
            Some(self.ident()?)
        } else {
            None
        };
        Ok(Selector { expr, alias })
    }

    fn selector_expr(&mut self) -> Result<SelectorExpr> {
        self.enter()?;
        let r = self.selector_expr_inner();
        self.leave();
        r
    }

    fn selector_expr_inner(&mut self) -> Result<SelectorExpr> {
        let mut expr = self.selector_primary()?;
        loop {
            if self.at(TokenKind::Dot) {
                self.pos += 1;
                expr = SelectorExpr::Field(Box::new(expr), self.ident()?);
            } else if self.eat(TokenKind::LBracket) {
                let key = self.term()?;
                self.expect(TokenKind::RBracket, "']'")?;
                expr = SelectorExpr::Element(Box::new(expr), key);
            } else {
                return Ok(expr);
            }
        }
    }

    fn selector_primary(&mut self) -> Result<SelectorExpr> {
        let is_ident = matches!(
            self.kind_at(0),
            Some(TokenKind::Ident | TokenKind::QuotedIdent)
        );
        let call = is_ident
            && (self.kind_at(1) == Some(TokenKind::LParen)
                || (self.kind_at(1) == Some(TokenKind::Dot)
                    && self.kind_at(3) == Some(TokenKind::LParen)));
        if call && self.kind_at(0) == Some(TokenKind::Ident) {
            if self.at_kw("count") && self.kind_at(1) == Some(TokenKind::LParen) {
                let star = self.kind_at(2) == Some(TokenKind::Star)
                    || (self.kind_at(2) == Some(TokenKind::Integer)
                        && self.peek_at(2).is_some_and(|t| self.text(t) == "1"));
                if star && self.kind_at(3) == Some(TokenKind::RParen) {
                    self.pos += 4;
                    return Ok(SelectorExpr::CountRows);
                }
            }
            for (kw, make) in [
                (
                    "writetime",
                    SelectorExpr::WriteTime as fn(String) -> SelectorExpr,
                ),
                ("maxwritetime", SelectorExpr::MaxWriteTime),
                ("ttl", SelectorExpr::Ttl),
            ] {
                if self.at_kw(kw) && self.kind_at(1) == Some(TokenKind::LParen) {
                    self.pos += 2;
                    let col = self.ident()?;
                    self.expect(TokenKind::RParen, "')'")?;
                    return Ok(make(col));
                }
            }
            if self.at_kw("cast") && self.kind_at(1) == Some(TokenKind::LParen) {
                self.pos += 2;
                let expr = self.selector_expr()?;
                self.expect_kw("as")?;
                let ty = self.type_name()?;
                self.expect(TokenKind::RParen, "')'")?;
                return Ok(SelectorExpr::Cast {
                    expr: Box::new(expr),
                    ty,
                });
            }
        }
        if call {
            let name = self.function_name()?;
            self.expect(TokenKind::LParen, "'('")?;
            let mut args = Vec::new();
            if !self.eat(TokenKind::RParen) {
                loop {
                    args.push(self.selector_expr()?);
                    if self.eat(TokenKind::RParen) {
                        break;
                    }
                    self.expect(TokenKind::Comma, "')'")?;
                }
            }
            return Ok(SelectorExpr::Function { name, args });
        }
        if self.bare_ident_at(0) && self.at_ident() {
            return Ok(SelectorExpr::Column(self.ident()?));
        }
        if is_ident && self.at_ident() && self.kind_at(1) == Some(TokenKind::Dot) {
            // `col.field` (a function call was ruled out above).
            return Ok(SelectorExpr::Column(self.ident()?));
        }
        Ok(SelectorExpr::Term(self.simple_term()?))
    }

    // -- WHERE --------------------------------------------------------------------------------

    pub(super) fn relations(&mut self) -> Result<Vec<Relation>> {
        let mut out = vec![self.relation()?];
        while self.eat_kw("and") {
            out.push(self.relation()?);
        }
        Ok(out)
    }

    fn relation(&mut self) -> Result<Relation> {
        if self.at_kw("token") && self.kind_at(1) == Some(TokenKind::LParen) {
            self.pos += 2;
            let cols = self.ident_list()?;
            self.expect(TokenKind::RParen, "')'")?;
            let op = self.comparison()?;
            return Ok(Relation::Token(cols, op, self.term()?));
        }
        if self.eat(TokenKind::LParen) {
            let cols = self.ident_list()?;
            self.expect(TokenKind::RParen, "')'")?;
            if self.eat_kw("in") {
                let value = if self.eat(TokenKind::LParen) {
                    let mut items = Vec::new();
                    if !self.eat(TokenKind::RParen) {
                        loop {
                            items.push(self.tuple_or_marker()?);
                            if self.eat(TokenKind::RParen) {
                                break;
                            }
                            self.expect(TokenKind::Comma, "')'")?;
                        }
                    }
                    Term::List(items)
                } else {
                    self.marker()?
                };
                return Ok(Relation::MultiColumn(cols, Operator::In, value));
            }
            let op = self.comparison()?;
            return Ok(Relation::MultiColumn(cols, op, self.tuple_or_marker()?));
        }
        let col = self.ident()?;
        let (op, value) = self.operator_and_value()?;
        Ok(Relation::Column(col, op, value))
    }

    /// The operator and value of `c op v` in WHERE and IF.
    fn operator_and_value(&mut self) -> Result<(Operator, Term)> {
        if self.eat_kw("in") {
            return Ok((Operator::In, self.in_values()?));
        }
        if self.eat_kw("contains") {
            let op = if self.eat_kw("key") {
                Operator::ContainsKey
            } else {
                Operator::Contains
            };
            return Ok((op, self.term()?));
        }
        if self.eat_kw("like") {
            return Ok((Operator::Like, self.term()?));
        }
        let op = self.comparison()?;
        Ok((op, self.term()?))
    }

    /// `(a, b, …)` → [`Term::List`], or a marker.
    fn in_values(&mut self) -> Result<Term> {
        if self.eat(TokenKind::LParen) {
            let mut items = Vec::new();
            if self.eat(TokenKind::RParen) {
                return Ok(Term::List(items));
            }
            loop {
                items.push(self.term()?);
                if self.eat(TokenKind::RParen) {
                    return Ok(Term::List(items));
                }
                self.expect(TokenKind::Comma, "')'")?;
            }
        }
        self.marker()
    }

    fn marker(&mut self) -> Result<Term> {
        match self.kind_at(0) {
            Some(TokenKind::QMark | TokenKind::NamedMarker | TokenKind::Colon) => {
                self.simple_term()
            }
            _ => Err(self.no_viable()),
        }
    }

    fn tuple_or_marker(&mut self) -> Result<Term> {
        if self.at(TokenKind::LParen) {
            let t = self.simple_term()?;
            return match t {
                Term::Tuple(_) => Ok(t),
                // `((int) 1)` is not a tuple literal in a multi-column relation.
                other => Ok(Term::Tuple(vec![other])),
            };
        }
        self.marker()
    }

    fn comparison(&mut self) -> Result<Operator> {
        let op = match self.kind_at(0) {
            Some(TokenKind::Eq) => Operator::Eq,
            Some(TokenKind::Lt) => Operator::Lt,
            Some(TokenKind::Le) => Operator::Le,
            Some(TokenKind::Gt) => Operator::Gt,
            Some(TokenKind::Ge) => Operator::Ge,
            Some(TokenKind::Ne) => Operator::Ne,
            _ => return Err(self.no_viable()),
        };
        self.pos += 1;
        Ok(op)
    }

    // -- USING, IF ----------------------------------------------------------------------------

    fn using(&mut self, allow_ttl: bool) -> Result<Using> {
        let mut using = Using::default();
        if !self.eat_kw("using") {
            return Ok(using);
        }
        loop {
            if self.eat_kw("timestamp") {
                using.timestamp = Some(self.limit_value()?);
            } else if allow_ttl && self.eat_kw("ttl") {
                using.ttl = Some(self.limit_value()?);
            } else {
                return Err(self.no_viable());
            }
            if !self.eat_kw("and") {
                return Ok(using);
            }
        }
    }

    /// `IF EXISTS` or `IF c = v AND …` (the `IF` not yet consumed).
    fn condition(&mut self) -> Result<Option<Condition>> {
        if !self.eat_kw("if") {
            return Ok(None);
        }
        if self.eat_kw("exists") {
            return Ok(Some(Condition::IfExists));
        }
        let mut conds = Vec::new();
        loop {
            let column = self.ident()?;
            let mut element = None;
            let mut field = None;
            if self.eat(TokenKind::LBracket) {
                element = Some(self.term()?);
                self.expect(TokenKind::RBracket, "']'")?;
            } else if self.eat(TokenKind::Dot) {
                field = Some(self.ident()?);
            }
            let (op, value) = self.operator_and_value()?;
            conds.push(ColumnCondition {
                column,
                element,
                field,
                op,
                value,
            });
            if !self.eat_kw("and") {
                return Ok(Some(Condition::If(conds)));
            }
        }
    }

    // -- INSERT -------------------------------------------------------------------------------

    pub(super) fn insert(&mut self) -> Result<Insert> {
        self.expect_kw("insert")?;
        self.expect_kw("into")?;
        let table = self.qualified_name()?;
        let values = if self.eat_kw("json") {
            let json = self.term()?;
            let mut default_unset = false;
            if self.eat_kw("default") {
                if self.eat_kw("unset") {
                    default_unset = true;
                } else if !self.eat_kw("null") {
                    return Err(self.no_viable());
                }
            }
            InsertValues::Json {
                json,
                default_unset,
            }
        } else {
            self.expect(TokenKind::LParen, "'('")?;
            let columns = self.ident_list()?;
            self.expect(TokenKind::RParen, "')'")?;
            self.expect_kw("values")?;
            self.expect(TokenKind::LParen, "'('")?;
            let mut values = vec![self.term()?];
            while self.eat(TokenKind::Comma) {
                values.push(self.term()?);
            }
            self.expect(TokenKind::RParen, "')'")?;
            if columns.len() != values.len() {
                return Err(ParseError::Invalid("Unmatched column names/values".into()));
            }
            InsertValues::Columns { columns, values }
        };
        let if_not_exists = self.if_not_exists()?;
        let using = self.using(true)?;
        Ok(Insert {
            table,
            values,
            if_not_exists,
            using,
        })
    }

    // -- UPDATE -------------------------------------------------------------------------------

    pub(super) fn update(&mut self) -> Result<Update> {
        self.expect_kw("update")?;
        let table = self.qualified_name()?;
        let using = self.using(true)?;
        self.expect_kw("set")?;
        let mut assignments = vec![self.assignment()?];
        while self.eat(TokenKind::Comma) {
            assignments.push(self.assignment()?);
        }
        self.expect_kw("where")?;
        let where_ = self.relations()?;
        let condition = self.condition()?;
        Ok(Update {
            table,
            using,
            assignments,
            where_,
            condition,
        })
    }

    fn assignment(&mut self) -> Result<Assignment> {
        let col = self.ident()?;
        if self.eat(TokenKind::LBracket) {
            let key = self.term()?;
            self.expect(TokenKind::RBracket, "']'")?;
            self.expect(TokenKind::Eq, "'='")?;
            return Ok(Assignment::SetElement(col, key, self.term()?));
        }
        if self.eat(TokenKind::Dot) {
            let field = self.ident()?;
            self.expect(TokenKind::Eq, "'='")?;
            return Ok(Assignment::SetField(col, field, self.term()?));
        }
        if self.eat(TokenKind::PlusEq) {
            return Ok(Assignment::Add(col, self.term()?));
        }
        if self.eat(TokenKind::MinusEq) {
            return Ok(Assignment::Remove(col, self.term()?));
        }
        self.expect(TokenKind::Eq, "'='")?;
        // `c = c + v`, `c = c - v`, and `c = c -1` where the lexer glued the sign to the number.
        if self.peek().is_some_and(|t| {
            matches!(t.kind, TokenKind::Ident | TokenKind::QuotedIdent)
                && t.ident_value(self.src).as_deref() == Some(col.as_str())
        }) && self.bare_ident_at(0)
        {
            self.pos += 1;
            if self.eat(TokenKind::Plus) {
                return Ok(Assignment::Add(col, self.term()?));
            }
            if self.eat(TokenKind::Minus) {
                return Ok(Assignment::Remove(col, self.term()?));
            }
            if let Some(t) = self.peek()
                && matches!(t.kind, TokenKind::Integer | TokenKind::Float)
                && self.text(t).starts_with('-')
            {
                self.pos += 1;
                let text = self.text(t).get(1..).unwrap_or("").to_owned();
                let lit = if t.kind == TokenKind::Integer {
                    Literal::Integer(text)
                } else {
                    Literal::Float(text)
                };
                return Ok(Assignment::Remove(col, Term::Literal(lit)));
            }
            return Err(ParseError::Invalid(
                "Only expressions of the form X = X + <value> are supported.".into(),
            ));
        }
        let value = self.term()?;
        if self.at(TokenKind::Plus)
            && self.peek_at(1).is_some_and(|t| {
                matches!(t.kind, TokenKind::Ident | TokenKind::QuotedIdent)
                    && t.ident_value(self.src).as_deref() == Some(col.as_str())
            })
        {
            self.pos += 2;
            return Ok(Assignment::Prepend(col, value));
        }
        if self.at(TokenKind::Plus) || self.at(TokenKind::Minus) {
            return Err(ParseError::Invalid(
                "Only expressions of the form X = <value> + X are supported.".into(),
            ));
        }
        Ok(Assignment::Set(col, value))
    }

    // -- DELETE -------------------------------------------------------------------------------

    pub(super) fn delete(&mut self) -> Result<Delete> {
        self.expect_kw("delete")?;
        let mut columns = Vec::new();
        if !self.at_kw("from") {
            loop {
                let col = self.ident()?;
                if self.eat(TokenKind::LBracket) {
                    let key = self.term()?;
                    self.expect(TokenKind::RBracket, "']'")?;
                    columns.push(DeleteTarget::Element(col, key));
                } else if self.eat(TokenKind::Dot) {
                    columns.push(DeleteTarget::Field(col, self.ident()?));
                } else {
                    columns.push(DeleteTarget::Column(col));
                }
                if !self.eat(TokenKind::Comma) {
                    break;
                }
            }
        }
        self.expect_kw("from")?;
        let table = self.qualified_name()?;
        let using = self.using(false)?;
        self.expect_kw("where")?;
        let where_ = self.relations()?;
        let condition = self.condition()?;
        Ok(Delete {
            table,
            columns,
            using,
            where_,
            condition,
        })
    }

    // -- BATCH --------------------------------------------------------------------------------

    pub(super) fn batch(&mut self) -> Result<Batch> {
        self.expect_kw("begin")?;
        let kind = if self.eat_kw("unlogged") {
            BatchKind::Unlogged
        } else if self.eat_kw("counter") {
            BatchKind::Counter
        } else {
            self.eat_kw("logged");
            BatchKind::Logged
        };
        self.expect_kw("batch")?;
        let using = self.using(false)?;
        let mut statements = Vec::new();
        loop {
            if self.eat_kw("apply") {
                self.expect_kw("batch")?;
                return Ok(Batch {
                    kind,
                    using,
                    statements,
                });
            }
            let st = if self.at_kw("insert") {
                Statement::Insert(self.insert()?)
            } else if self.at_kw("update") {
                Statement::Update(self.update()?)
            } else if self.at_kw("delete") {
                Statement::Delete(self.delete()?)
            } else {
                return Err(self.mismatch("APPLY"));
            };
            statements.push(st);
            self.eat(TokenKind::Semicolon);
        }
    }
}
