use proptest::prelude::*;

use super::*;
use crate::cql::ast::*;

fn qn(ks: Option<&str>, name: &str) -> QualifiedName {
    QualifiedName::new(ks, name)
}

fn int(s: &str) -> Term {
    Term::Literal(Literal::Integer(s.into()))
}

fn string(s: &str) -> Term {
    Term::Literal(Literal::String(s.into()))
}

fn marker(index: usize, name: Option<&str>) -> Term {
    Term::Marker {
        index,
        name: name.map(str::to_owned),
    }
}

fn ok(cql: &str) -> Statement {
    parse(cql).unwrap_or_else(|e| panic!("{cql}: {e}"))
}

fn syntax_err(cql: &str) -> String {
    match parse(cql) {
        Err(e @ ParseError::Syntax { .. }) => e.to_string(),
        other => panic!("{cql}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn select_every_clause() {
    let Statement::Select(s) = ok(
        "SELECT JSON DISTINCT a, \"B\" AS x FROM Ks.\"T\" WHERE a = ? \
         AND b IN (1, 2) AND (c, d) > (1, 'x') AND e CONTAINS KEY :k AND f LIKE 'a%' \
         GROUP BY a ORDER BY c DESC, d PER PARTITION LIMIT 2 LIMIT ? ALLOW FILTERING;",
    ) else {
        panic!()
    };
    assert!(s.json && s.distinct && s.allow_filtering);
    assert_eq!(s.table, qn(Some("ks"), "T"));
    let Selection::Selectors(sel) = &s.selection else {
        panic!()
    };
    assert_eq!(sel[0].column_name(), "a");
    assert_eq!(sel[1].expr, SelectorExpr::Column("B".into()));
    assert_eq!(sel[1].column_name(), "x");
    assert_eq!(
        s.where_,
        vec![
            Relation::Column("a".into(), Operator::Eq, marker(0, None)),
            Relation::Column(
                "b".into(),
                Operator::In,
                Term::List(vec![int("1"), int("2")])
            ),
            Relation::MultiColumn(
                vec!["c".into(), "d".into()],
                Operator::Gt,
                Term::Tuple(vec![int("1"), string("x")])
            ),
            Relation::Column("e".into(), Operator::ContainsKey, marker(1, Some("k"))),
            Relation::Column("f".into(), Operator::Like, string("a%")),
        ]
    );
    assert_eq!(s.group_by, vec!["a".to_owned()]);
    assert_eq!(
        s.order_by,
        vec![("c".into(), Order::Desc), ("d".into(), Order::Asc)]
    );
    assert_eq!(s.per_partition_limit, Some(int("2")));
    assert_eq!(s.limit, Some(marker(2, None)));
}

#[test]
fn select_star_token_and_comments() {
    let Statement::Select(s) = ok("select * /* c */ from t -- x\n where token(a, b) > ? and \
         token(a, b) <= token(1, 2) AND c IN ? AND (d, e) IN ((1, 2), ?) AND (d) IN ?")
    else {
        panic!()
    };
    assert_eq!(s.selection, Selection::Star);
    assert_eq!(s.table, qn(None, "t"));
    assert_eq!(
        s.where_[0],
        Relation::Token(vec!["a".into(), "b".into()], Operator::Gt, marker(0, None))
    );
    assert!(matches!(
        &s.where_[1],
        Relation::Token(_, Operator::Le, Term::FunctionCall { name, args }) if name.name == "token" && args.len() == 2
    ));
    assert_eq!(
        s.where_[2],
        Relation::Column("c".into(), Operator::In, marker(1, None))
    );
    assert_eq!(
        s.where_[3],
        Relation::MultiColumn(
            vec!["d".into(), "e".into()],
            Operator::In,
            Term::List(vec![Term::Tuple(vec![int("1"), int("2")]), marker(2, None)])
        )
    );
    assert_eq!(
        s.where_[4],
        Relation::MultiColumn(vec!["d".into()], Operator::In, marker(3, None))
    );
}

#[test]
fn selector_names_follow_cassandra() {
    let Statement::Select(s) = ok("SELECT writetime(v), TTL(v), maxwritetime(v), count(*), \
         COUNT(1), count(v), max(v), token(k), cast(v AS text), u.f, ks.f(v), 'lit', 3, \
         blobAsText(b) AS t, distinct FROM t")
    else {
        panic!()
    };
    let Selection::Selectors(sel) = &s.selection else {
        panic!()
    };
    let names: Vec<String> = sel.iter().map(Selector::column_name).collect();
    assert_eq!(
        names,
        [
            "writetime(v)",
            "ttl(v)",
            "maxwritetime(v)",
            "count",
            "count",
            "system.count(v)",
            "system.max(v)",
            "system.token(k)",
            "cast(v as text)",
            "u.f",
            "ks.f(v)",
            "'lit'",
            "3",
            "t",
            "distinct"
        ]
    );
    assert!(!s.distinct);
    assert_eq!(sel[3].expr, SelectorExpr::CountRows);
}

#[test]
fn insert_forms() {
    let Statement::Insert(i) = ok("INSERT INTO ks.t (a, \"B\", c) VALUES (1, 'x''y', ?) \
         IF NOT EXISTS USING TTL 10 AND TIMESTAMP :ts")
    else {
        panic!()
    };
    assert!(i.if_not_exists);
    assert_eq!(
        i.values,
        InsertValues::Columns {
            columns: vec!["a".into(), "B".into(), "c".into()],
            values: vec![int("1"), string("x'y"), marker(0, None)]
        }
    );
    assert_eq!(i.using.ttl, Some(int("10")));
    assert_eq!(i.using.timestamp, Some(marker(1, Some("ts"))));

    let Statement::Insert(i) = ok("INSERT INTO t JSON '{\"a\": 1}' DEFAULT UNSET") else {
        panic!()
    };
    assert_eq!(
        i.values,
        InsertValues::Json {
            json: string("{\"a\": 1}"),
            default_unset: true
        }
    );
    assert_eq!(
        parse("INSERT INTO t (a, b) VALUES (1)"),
        Err(ParseError::Invalid("Unmatched column names/values".into()))
    );
}

#[test]
fn literals_and_collections() {
    let Statement::Insert(i) = ok("INSERT INTO t (a,b,c,d,e,f,g,h,i,j,k,l,m,n) VALUES \
         ([1, 2], {1, 2}, {'k': 1}, {}, (1, 'a'), {street: 'x', zip: 1}, 0xCAFE, \
         5b6962dd-3f90-4c93-8f61-eabfb4a03ef1, 1h30m, -1.5e3, true, null, now(), (int) ?)")
    else {
        panic!()
    };
    let InsertValues::Columns { values, .. } = i.values else {
        panic!()
    };
    assert_eq!(values[0], Term::List(vec![int("1"), int("2")]));
    assert_eq!(values[1], Term::Set(vec![int("1"), int("2")]));
    assert_eq!(values[2], Term::Map(vec![(string("k"), int("1"))]));
    assert_eq!(values[3], Term::EmptyBraces);
    assert_eq!(values[4], Term::Tuple(vec![int("1"), string("a")]));
    assert_eq!(
        values[5],
        Term::Udt(vec![
            ("street".into(), string("x")),
            ("zip".into(), int("1"))
        ])
    );
    assert_eq!(values[6], Term::Literal(Literal::Hex("CAFE".into())));
    assert!(matches!(values[7], Term::Literal(Literal::Uuid(_))));
    assert_eq!(values[8], Term::Literal(Literal::Duration("1h30m".into())));
    assert_eq!(values[9], Term::Literal(Literal::Float("-1.5e3".into())));
    assert_eq!(values[10], Term::Literal(Literal::Bool(true)));
    assert_eq!(values[11], Term::Literal(Literal::Null));
    assert_eq!(
        values[12],
        Term::FunctionCall {
            name: qn(None, "now"),
            args: vec![]
        }
    );
    assert_eq!(
        values[13],
        Term::Cast {
            ty: TypeName::Native(ferry_cql::types::ColumnType::Int),
            term: Box::new(marker(0, None))
        }
    );
}

#[test]
fn one_term_alone() {
    assert_eq!(parse_term("'it''s'").unwrap(), string("it's"));
    assert_eq!(
        parse_term("(1, 'a')").unwrap(),
        Term::Tuple(vec![int("1"), string("a")])
    );
    assert!(parse_term("{'k': [1, 2]}").unwrap().is_constant());
    assert!(parse_term("-1").unwrap().is_constant());
    for not_constant in ["now()", "?", "1 + 2", "(int) 1", "[1, ?]"] {
        assert!(
            !parse_term(not_constant).unwrap().is_constant(),
            "{not_constant}"
        );
    }
    for bad in ["", "1 AND k = 2", "1; DROP TABLE t", "'open", "1 2"] {
        assert!(parse_term(bad).is_err(), "{bad}");
    }
}

#[test]
fn udt_literal_with_keyword_field() {
    let Statement::Insert(i) = ok("INSERT INTO t (a) VALUES ({ttl:1, key: 'x'})") else {
        panic!()
    };
    let InsertValues::Columns { values, .. } = i.values else {
        panic!()
    };
    assert_eq!(
        values[0],
        Term::Udt(vec![("ttl".into(), int("1")), ("key".into(), string("x"))])
    );
}

#[test]
fn update_assignments() {
    let Statement::Update(u) = ok("UPDATE t USING TIMESTAMP 5 SET a = 1, c = c + 1, \
         c2 = c2 - 2, c3 = c3 -3, l = [1] + l, l = l + [2], m['k'] = 'v', u.f = 3, s += {1}, \
         s -= {2} WHERE k = 1 IF a = 1 AND m['k'] != 'x' AND u.f IN (1, 2)")
    else {
        panic!()
    };
    assert_eq!(u.using.timestamp, Some(int("5")));
    assert_eq!(
        u.assignments,
        vec![
            Assignment::Set("a".into(), int("1")),
            Assignment::Add("c".into(), int("1")),
            Assignment::Remove("c2".into(), int("2")),
            Assignment::Remove("c3".into(), int("3")),
            Assignment::Prepend("l".into(), Term::List(vec![int("1")])),
            Assignment::Add("l".into(), Term::List(vec![int("2")])),
            Assignment::SetElement("m".into(), string("k"), string("v")),
            Assignment::SetField("u".into(), "f".into(), int("3")),
            Assignment::Add("s".into(), Term::Set(vec![int("1")])),
            Assignment::Remove("s".into(), Term::Set(vec![int("2")])),
        ]
    );
    let Some(Condition::If(conds)) = u.condition else {
        panic!()
    };
    assert_eq!(conds.len(), 3);
    assert_eq!(conds[1].element, Some(string("k")));
    assert_eq!(conds[1].op, Operator::Ne);
    assert_eq!(conds[2].field.as_deref(), Some("f"));
    assert_eq!(conds[2].value, Term::List(vec![int("1"), int("2")]));
    assert!(matches!(
        ok("UPDATE t SET a = 1 WHERE k = 1 IF EXISTS"),
        Statement::Update(Update {
            condition: Some(Condition::IfExists),
            ..
        })
    ));
}

#[test]
fn delete_forms() {
    let Statement::Delete(d) =
        ok("DELETE a, m['k'], u.f FROM t USING TIMESTAMP ? WHERE k = ? IF EXISTS")
    else {
        panic!()
    };
    assert_eq!(
        d.columns,
        vec![
            DeleteTarget::Column("a".into()),
            DeleteTarget::Element("m".into(), string("k")),
            DeleteTarget::Field("u".into(), "f".into())
        ]
    );
    assert_eq!(d.using.timestamp, Some(marker(0, None)));
    assert_eq!(d.condition, Some(Condition::IfExists));
    let Statement::Delete(d) = ok("DELETE FROM t WHERE k = 1 AND c > 2") else {
        panic!()
    };
    assert!(d.columns.is_empty());
    assert!(parse("DELETE FROM t USING TTL 1 WHERE k = 1").is_err());
}

#[test]
fn batches_count_markers_across_children() {
    let p = parse_with_markers(
        "BEGIN UNLOGGED BATCH USING TIMESTAMP 1 INSERT INTO t (k) VALUES (?); \
         UPDATE t SET v = :v WHERE k = ? DELETE FROM t WHERE k = ?; APPLY BATCH;",
    )
    .unwrap();
    let Statement::Batch(b) = p.statement else {
        panic!()
    };
    assert_eq!(b.kind, BatchKind::Unlogged);
    assert_eq!(b.statements.len(), 3);
    assert_eq!(b.using.timestamp, Some(int("1")));
    assert_eq!(p.markers.len(), 4);
    assert_eq!(p.markers[1].name.as_deref(), Some("v"));
    assert!(matches!(
        ok("BEGIN COUNTER BATCH UPDATE t SET c = c + 1 WHERE k = 1; APPLY BATCH"),
        Statement::Batch(Batch {
            kind: BatchKind::Counter,
            ..
        })
    ));
    assert!(matches!(
        ok("BEGIN BATCH APPLY BATCH"),
        Statement::Batch(Batch {
            kind: BatchKind::Logged,
            ..
        })
    ));
}

#[test]
fn keyspace_statements() {
    assert_eq!(
        ok(
            "CREATE KEYSPACE IF NOT EXISTS \"Ks\" WITH replication = {'class': \
            'SimpleStrategy', 'replication_factor': 1} AND durable_writes = false"
        ),
        Statement::CreateKeyspace(CreateKeyspace {
            name: "Ks".into(),
            if_not_exists: true,
            replication: vec![
                ("class".into(), "SimpleStrategy".into()),
                ("replication_factor".into(), "1".into())
            ],
            durable_writes: Some(false),
        })
    );
    assert_eq!(
        ok("ALTER KEYSPACE ks WITH durable_writes = 'true'"),
        Statement::AlterKeyspace(AlterKeyspace {
            name: "ks".into(),
            if_exists: false,
            replication: None,
            durable_writes: Some(true),
        })
    );
    assert_eq!(
        ok("DROP KEYSPACE IF EXISTS ks"),
        Statement::DropKeyspace {
            name: "ks".into(),
            if_exists: true
        }
    );
    assert_eq!(ok("USE \"MyKs\""), Statement::Use("MyKs".into()));
    assert_eq!(
        parse("CREATE KEYSPACE k WITH foo = 1"),
        Err(ParseError::Property("Unknown property 'foo'".into()))
    );
}

#[test]
fn create_table_forms() {
    use ferry_cql::types::ColumnType as C;
    let Statement::CreateTable(t) = ok("CREATE TABLE IF NOT EXISTS ks.t (a int, b text, \
         c timeuuid, s set<int> STATIC, m frozen<map<text, list<int>>>, v vector<float, 3>, \
         u ks.addr, x 'org.example.T', PRIMARY KEY ((a, b), c)) WITH CLUSTERING ORDER BY \
         (c DESC) AND default_time_to_live = 10 AND comment = 'x' AND compaction = \
         {'class': 'LeveledCompactionStrategy', 'enabled': true} AND COMPACT STORAGE")
    else {
        panic!()
    };
    assert!(t.if_not_exists && t.compact_storage);
    assert_eq!(t.partition_key, vec!["a".to_owned(), "b".to_owned()]);
    assert_eq!(t.clustering_key, vec!["c".to_owned()]);
    assert_eq!(t.clustering_order, vec![("c".into(), Order::Desc)]);
    assert_eq!(t.columns.len(), 8);
    assert!(t.columns[3].is_static);
    assert_eq!(t.columns[4].ty.to_string(), "frozen<map<text, list<int>>>");
    assert_eq!(
        t.columns[5].ty,
        TypeName::Vector(Box::new(TypeName::Native(C::Float)), 3)
    );
    assert_eq!(t.columns[6].ty, TypeName::Udt(qn(Some("ks"), "addr")));
    assert_eq!(t.columns[7].ty, TypeName::Custom("org.example.T".into()));
    assert_eq!(
        t.options,
        vec![
            (
                "default_time_to_live".into(),
                OptionValue::Number("10".into())
            ),
            ("comment".into(), OptionValue::String("x".into())),
            (
                "compaction".into(),
                OptionValue::Map(vec![
                    ("class".into(), "LeveledCompactionStrategy".into()),
                    ("enabled".into(), "true".into())
                ])
            ),
        ]
    );
    let Statement::CreateTable(t) = ok("create table t (k int primary key, v text)") else {
        panic!()
    };
    assert_eq!(t.partition_key, vec!["k".to_owned()]);
    assert!(t.clustering_key.is_empty());
    assert_eq!(
        parse("CREATE TABLE t (k int PRIMARY KEY, v int, PRIMARY KEY (v))"),
        Err(ParseError::Invalid(
            "Multiple PRIMARY KEYs specified (exactly one required)".into()
        ))
    );
    assert!(matches!(
        parse("CREATE TABLE t (k int)"),
        Err(ParseError::Invalid(m)) if m.starts_with("No PRIMARY KEY")
    ));
}

#[test]
fn alter_drop_truncate_type_index() {
    assert!(matches!(
        ok("ALTER TABLE t ADD (a int, b text static)"),
        Statement::AlterTable(AlterTable { action: AlterTableAction::Add { columns, .. }, .. })
            if columns.len() == 2 && columns[1].is_static
    ));
    assert!(matches!(
        ok("ALTER TABLE IF EXISTS t ADD IF NOT EXISTS a int"),
        Statement::AlterTable(AlterTable {
            if_exists: true,
            action: AlterTableAction::Add {
                if_not_exists: true,
                ..
            },
            ..
        })
    ));
    assert_eq!(
        ok("ALTER TABLE ks.t DROP (a, b) USING TIMESTAMP 5"),
        Statement::AlterTable(AlterTable {
            table: qn(Some("ks"), "t"),
            if_exists: false,
            action: AlterTableAction::Drop {
                if_exists: false,
                columns: vec!["a".into(), "b".into()],
                timestamp: Some(5)
            }
        })
    );
    assert!(matches!(
        ok("ALTER TABLE t RENAME a TO b AND c TO d"),
        Statement::AlterTable(AlterTable { action: AlterTableAction::Rename { renames, .. }, .. }) if renames.len() == 2
    ));
    assert!(matches!(
        ok("ALTER TABLE t WITH gc_grace_seconds = 0 AND caching = {'keys': 'ALL'}"),
        Statement::AlterTable(AlterTable { action: AlterTableAction::With(opts), .. }) if opts.len() == 2
    ));
    assert_eq!(
        ok("DROP TABLE IF EXISTS ks.t"),
        Statement::DropTable {
            name: qn(Some("ks"), "t"),
            if_exists: true
        }
    );
    assert_eq!(
        ok("TRUNCATE TABLE t"),
        Statement::Truncate {
            table: qn(None, "t")
        }
    );
    assert_eq!(
        ok("truncate ks.t"),
        Statement::Truncate {
            table: qn(Some("ks"), "t")
        }
    );
    let Statement::CreateType(ty) =
        ok("CREATE TYPE IF NOT EXISTS ks.addr (street text, zip int, tags frozen<set<text>>)")
    else {
        panic!()
    };
    assert_eq!(ty.fields.len(), 3);
    assert!(matches!(
        ok("ALTER TYPE addr ADD city text"),
        Statement::AlterType(AlterType {
            action: AlterTypeAction::Add { .. },
            ..
        })
    ));
    assert!(matches!(
        ok("ALTER TYPE addr RENAME zip TO code"),
        Statement::AlterType(AlterType {
            action: AlterTypeAction::Rename { .. },
            ..
        })
    ));
    assert!(matches!(ok("DROP TYPE addr"), Statement::DropType { .. }));
    let Statement::CreateIndex(ix) = ok("CREATE INDEX IF NOT EXISTS ix ON t (keys(m))") else {
        panic!()
    };
    assert_eq!(ix.name.as_deref(), Some("ix"));
    assert_eq!(ix.target.kind, IndexTargetKind::Keys);
    let Statement::CreateIndex(ix) =
        ok("CREATE CUSTOM INDEX ON t (v) USING 'StorageAttachedIndex' WITH OPTIONS = {'a': 'b'}")
    else {
        panic!()
    };
    assert_eq!(ix.name, None);
    assert_eq!(ix.using.as_deref(), Some("StorageAttachedIndex"));
    assert!(matches!(
        ok("DROP INDEX ks.ix"),
        Statement::DropIndex { .. }
    ));
}

#[test]
fn describe_and_auth() {
    let d = |cql| match ok(cql) {
        Statement::Describe(d) => d.target,
        other => panic!("{other:?}"),
    };
    assert_eq!(d("DESCRIBE KEYSPACES"), DescribeTarget::Keyspaces);
    assert_eq!(
        d("DESC KEYSPACE ks"),
        DescribeTarget::Keyspace {
            name: Some("ks".into()),
            only: false
        }
    );
    assert_eq!(
        d("DESCRIBE ONLY KEYSPACE"),
        DescribeTarget::Keyspace {
            name: None,
            only: true
        }
    );
    assert_eq!(d("describe tables"), DescribeTarget::Tables);
    assert_eq!(
        d("DESCRIBE TABLE ks.t"),
        DescribeTarget::Table(qn(Some("ks"), "t"))
    );
    assert_eq!(
        d("DESCRIBE FULL SCHEMA"),
        DescribeTarget::Schema { full: true }
    );
    assert_eq!(d("DESCRIBE CLUSTER"), DescribeTarget::Cluster);
    assert_eq!(
        d("DESCRIBE TYPE addr"),
        DescribeTarget::Type(qn(None, "addr"))
    );
    assert_eq!(
        d("DESCRIBE ks.t"),
        DescribeTarget::Name(qn(Some("ks"), "t"))
    );
    assert!(matches!(
        ok("DESCRIBE KEYSPACE ks WITH INTERNALS"),
        Statement::Describe(Describe {
            with_internals: true,
            ..
        })
    ));
    assert!(matches!(
        ok("CREATE ROLE r WITH PASSWORD = 'p' AND LOGIN = true;"),
        Statement::Auth { kind: AuthKind::CreateRole, text } if text.ends_with("true")
    ));
    assert!(matches!(
        ok("GRANT SELECT ON ks.t TO r"),
        Statement::Auth {
            kind: AuthKind::Grant,
            ..
        }
    ));
    assert!(matches!(
        ok("LIST ROLES"),
        Statement::Auth {
            kind: AuthKind::ListRoles,
            ..
        }
    ));
    assert!(matches!(
        ok(
            "CREATE FUNCTION f (a int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS 'return a;'"
        ),
        Statement::Unsupported { .. }
    ));
}

#[test]
fn syntax_errors_carry_position_and_token() {
    assert_eq!(
        syntax_err("SELEC * FROM t"),
        "line 1:0 no viable alternative at input 'SELEC'"
    );
    assert_eq!(
        syntax_err("SELECT * FORM t"),
        "line 1:9 mismatched input 'FORM' expecting FROM"
    );
    assert_eq!(
        syntax_err("SELECT * FROM t\nWHERE a = 1 b"),
        "line 2:12 mismatched input 'b' expecting EOF"
    );
    assert_eq!(
        syntax_err("SELECT * FROM"),
        "line 1:13 no viable alternative at input '<EOF>'"
    );
    assert_eq!(
        syntax_err("INSERT INTO t (a) VALUES ('x)"),
        "line 1:26 mismatched character '<EOF>' expecting '''"
    );
    assert!(syntax_err("SELECT a ! b FROM t").contains("'!'"));
    assert!(syntax_err("SELECT select FROM t").starts_with("line 1:7 "));
    assert!(syntax_err("").contains("<EOF>"));
    let deep = format!(
        "SELECT * FROM t WHERE a = {}1{}",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(syntax_err(&deep).contains("nesting"));
}

const VALID: &[&str] = &[
    "SELECT a, writetime(b) FROM ks.t WHERE k = ? AND c > 1 LIMIT 10",
    "INSERT INTO t (a, b) VALUES (1, {'x': [1, 2]}) USING TTL 5",
    "UPDATE t SET l = l + [1], m['k'] = 2 WHERE k = 1 IF v = 3",
    "DELETE m['k'] FROM t WHERE k = 1 IF EXISTS",
    "BEGIN BATCH INSERT INTO t (k) VALUES (1); DELETE FROM t WHERE k = 2; APPLY BATCH",
    "CREATE TABLE t (k int, c text, v map<int, frozen<list<int>>>, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC)",
    "CREATE KEYSPACE k WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}",
];

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(src in ".{0,200}") {
        let _ = parse(&src);
    }

    #[test]
    fn never_panics_on_cql_like_text(src in "[a-zA-Z0-9 '\"$:?;,.()\\[\\]{}<>=+*/%-]{0,120}") {
        let _ = parse(&src);
    }

    #[test]
    fn never_panics_on_mutated_statements(
        which in 0..VALID.len(),
        cut in 0usize..200,
        insert in "[ (){}\\[\\]<>,;:?'\"a-z0-9.+-]{0,4}",
    ) {
        let base = VALID[which];
        let at = (0..=cut.min(base.len())).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
        let mutated = format!("{}{}{}", &base[..at], insert, &base[at..]);
        let _ = parse(&mutated);
        let truncated = &base[..at];
        let _ = parse(truncated);
    }
}

#[test]
fn valid_samples_parse() {
    for cql in VALID {
        ok(cql);
    }
}

#[test]
fn driver_and_cqlsh_statements() {
    for cql in [
        "SELECT * FROM system.local WHERE key='local'",
        "SELECT peer, data_center, host_id, rpc_address, release_version, tokens FROM system.peers",
        "SELECT keyspace_name, table_name, type, value FROM system_schema.columns WHERE keyspace_name = 'ks'",
        "USE \"Ks\"",
        "SELECT key, value, ttl, timestamp, date FROM t WHERE token(key) > :start AND token(key) <= :end LIMIT :lim",
        "select count(*) from ks.t where k in (1, 2) per partition limit 1",
        "UPDATE ks.counters SET c = c + ? WHERE k = ?",
        "INSERT INTO t (k, v) VALUES (?, ?) USING TIMESTAMP ? AND TTL ?",
        "DESCRIBE KEYSPACE \"Ks\";",
        "SELECT v[1], m['k'] FROM t",
    ] {
        ok(cql);
    }
}
