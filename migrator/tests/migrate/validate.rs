//! `validate`: each kind of difference found with its key, newer target writes and writes
//! landing between the two scans not reported, repair then a clean second pass.

use std::time::Duration;

use ferry_cql::protocol::Opcode;
use ferry_migrator::{DiffKind, Phase, ValidateOptions, ValidationReport};
use ferry_sim::server::{FaultAction, RequestMatcher};

use crate::harness::{Env, Recorder, env};
use crate::raw::{assert_pages_routed, count_scan_pages, partition_off_first, three_node_env};

const FLOOR: i64 = 1_000_000;

async fn validate(env: &Env, tables: &[&str], options: ValidateOptions) -> ValidationReport {
    let mut spec = env.spec(tables);
    spec.floor_timestamp = FLOOR;
    spec.page_size = 5;
    let rec = std::sync::Arc::new(Recorder::default());
    ferry_migrator::validate(spec, options, rec)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn options(f: impl FnOnce(&mut ValidateOptions)) -> ValidateOptions {
    let mut o = ValidateOptions::default();
    f(&mut o);
    o
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The JSONL lines of `kind`, as (key, columns).
fn keys_of(lines: &[serde_json::Value], kind: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = lines
        .iter()
        .filter(|l| l["kind"] == kind)
        .map(|l| {
            let key = format!(
                "{}/{}",
                l["key"]["k"].as_str().unwrap(),
                l["key"]["c"].as_str().unwrap_or("-")
            );
            let cols = l["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            (key, cols)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn finds_each_kind_and_repair_leaves_nothing() {
    let env = env(90).await;
    env.origin_cql(&[
        "CREATE KEYSPACE val WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE val.t (k int, c text, v text, w int, s int static, st set<int>, \
         l list<int>, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC)",
    ])
    .await;
    for k in 0..20 {
        for c in ["a", "b"] {
            env.origin_cql(&[&format!(
                "INSERT INTO val.t (k, c, v, w, st, l) VALUES ({k}, '{c}', 'v{k}', {k}, {{1, 2}}, [7, 7]) \
                 USING TIMESTAMP {} AND TTL 50000",
                100 + k
            )])
            .await;
        }
        env.origin_cql(&[&format!(
            "UPDATE val.t USING TIMESTAMP 90 SET s = {k} WHERE k = {k}"
        )])
        .await;
    }
    let (report, _) = env.run(env.spec(&["val.t"])).await;
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");

    let clean = validate(&env, &["val.t"], ValidateOptions::default()).await;
    let t = &clean.tables[0];
    assert!(clean.is_clean(), "{t:?}");
    assert_eq!((t.rows, t.keys, t.listed), (40, 0, 0));

    // Differences, each on its own key.
    env.origin_cql(&[
        // missing: a row target never got.
        "INSERT INTO val.t (k, c, v) VALUES (1, 'new', 'only on origin') USING TIMESTAMP 500",
        // value: origin's newer write target lacks (target keeps an older, other value).
        "UPDATE val.t USING TIMESTAMP 600 SET v = 'changed' WHERE k = 2 AND c = 'a'",
        // value: a set element target lacks.
        "UPDATE val.t USING TIMESTAMP 600 SET st = st + {3} WHERE k = 3 AND c = 'a'",
        // writetime: the same value, written again later on origin only.
        "UPDATE val.t USING TIMESTAMP 700 SET w = 4 WHERE k = 4 AND c = 'b'",
        // ttl: the same value and writetime with a longer TTL (wins the tie on origin).
        "UPDATE val.t USING TIMESTAMP 105 AND TTL 90000 SET w = 5 WHERE k = 5 AND c = 'a'",
        // value (static): a partition's static cell.
        "UPDATE val.t USING TIMESTAMP 800 SET s = 66 WHERE k = 6",
    ])
    .await;
    env.target_cql(&[
        // extra: a row only target has, written before dual writes started.
        "INSERT INTO val.t (k, c, v) VALUES (7, 'stale', 'only on target') USING TIMESTAMP 300",
        // A newer dual write on target: not a difference.
        "UPDATE val.t USING TIMESTAMP 2000000 SET v = 'dual' WHERE k = 8 AND c = 'a'",
        "UPDATE val.t USING TIMESTAMP 2000000 SET l = l + [9] WHERE k = 8 AND c = 'b'",
    ])
    .await;

    let found = validate(&env, &["val.t"], ValidateOptions::default()).await;
    let t = &found.tables[0];
    assert!(!found.is_clean());
    assert_eq!(t.error, None);
    assert_eq!(t.rows, 42);
    let counts: Vec<u64> = DiffKind::ALL
        .iter()
        .map(|k| t.differences.get(*k))
        .collect();
    // missing, extra, value, writetime, ttl
    assert_eq!(counts, [1, 1, 3, 1, 1], "{t:?}");
    assert_eq!((t.keys, t.remaining, t.listed), (7, 7, 7));
    let l = lines(&t.keys_file);
    assert_eq!(l.len(), 7);
    assert!(l.iter().all(|l| l["table"] == "val.t"));
    assert_eq!(
        keys_of(&l, "missing"),
        [("1/'new'".to_owned(), vec!["v".to_owned()])]
    );
    assert_eq!(
        keys_of(&l, "extra"),
        [("7/'stale'".to_owned(), vec!["v".to_owned()])]
    );
    assert_eq!(
        keys_of(&l, "value"),
        [
            ("2/'a'".to_owned(), vec!["v".to_owned()]),
            ("3/'a'".to_owned(), vec!["st".to_owned()]),
            ("6/-".to_owned(), vec!["s".to_owned()]),
        ]
    );
    assert_eq!(
        keys_of(&l, "writetime"),
        [("4/'b'".to_owned(), vec!["w".to_owned()])]
    );
    assert_eq!(
        keys_of(&l, "ttl"),
        [("5/'a'".to_owned(), vec!["w".to_owned()])]
    );
    let wt = l.iter().find(|l| l["kind"] == "writetime").unwrap();
    assert_eq!(wt["origin_writetime"]["w"], 700);
    assert_eq!(wt["target_writetime"]["w"], 104);
    let static_line = l.iter().find(|l| l["key"]["k"] == "6").unwrap();
    assert_eq!(static_line["scope"], "partition");

    // Bounded listing, full counts.
    let few = validate(&env, &["val.t"], options(|o| o.max_keys = 2)).await;
    assert_eq!(few.tables[0].keys, 7);
    assert_eq!(lines(&few.tables[0].keys_file).len(), 2);

    // Repair: extra rows only reported …
    let kept = validate(&env, &["val.t"], options(|o| o.repair = true)).await;
    let t = &kept.tables[0];
    assert_eq!((t.keys, t.repaired, t.remaining), (7, 6, 1), "{t:?}");
    let extra = lines(&t.keys_file);
    assert_eq!(extra.iter().filter(|l| l["repair"] == "kept").count(), 1);
    // … until deleting them is asked for.
    let repaired = validate(
        &env,
        &["val.t"],
        options(|o| {
            o.repair = true;
            o.delete_extra = true;
        }),
    )
    .await;
    let t = &repaired.tables[0];
    assert_eq!((t.keys, t.repaired, t.remaining), (1, 1, 0), "{t:?}");
    assert!(repaired.is_clean());

    let after = validate(&env, &["val.t"], ValidateOptions::default()).await;
    let t = &after.tables[0];
    assert!(after.is_clean(), "{t:?}");
    assert_eq!((t.rows, t.keys), (41, 0));
    // The dual writes survived the repair.
    let v: (Option<String>,) = env
        .t
        .query_unpaged("SELECT v FROM val.t WHERE k = 8 AND c = 'a'", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row()
        .unwrap();
    assert_eq!(v.0.as_deref(), Some("dual"));
    env.stop().await;
}

#[tokio::test]
async fn a_write_between_the_two_scans_is_cleared_by_the_recheck() {
    let env = env(91).await;
    let schema = [
        "CREATE KEYSPACE rc WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE rc.t (k int PRIMARY KEY, v int)",
    ];
    env.origin_cql(&schema).await;
    env.target_cql(&schema).await;
    for k in 0..10 {
        let insert = format!("INSERT INTO rc.t (k, v) VALUES ({k}, {k}) USING TIMESTAMP 100");
        env.origin_cql(&[&insert]).await;
        env.target_cql(&[&insert]).await;
    }
    // A dual write that reached target first; origin gets it once origin's scan is done.
    let late = "INSERT INTO rc.t (k, v) VALUES (99, 99) USING TIMESTAMP 5000";
    env.target_cql(&[late]).await;
    // Target's scan is held back, so it runs after the write reached origin too: 10 s, far
    // more than a loaded machine takes for that write, and far less than the client's limit.
    let rule = env.target.node(0).faults().add_times(
        RequestMatcher::any()
            .opcode(Opcode::Execute)
            .text_contains("token(\"k\") >"),
        FaultAction::Delay(Duration::from_secs(10)),
        Some(1),
    );
    let mut spec = env.spec(&["rc.t"]);
    spec.target.request_timeout = Duration::from_secs(60);
    spec.ranges = ferry_migrator::RangeCount::Fixed(1);
    spec.scan_parallelism = 1;
    let rec = std::sync::Arc::new(Recorder::default());
    let run = tokio::spawn(ferry_migrator::validate(
        spec,
        ValidateOptions::default(),
        rec,
    ));
    // The merge reads origin's page before asking target for its own.
    while env
        .target
        .node(0)
        .faults()
        .rules()
        .iter()
        .any(|r| r.id == rule && r.remaining != Some(0))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    env.origin_cql(&[late]).await;
    let report = run.await.unwrap().unwrap();
    let t = &report.tables[0];
    assert!(report.is_clean(), "{t:?}");
    assert_eq!((t.rows, t.keys, t.cleared), (11, 0, 1));
    env.stop().await;
}

/// Validation scans page like the backfill's and are routed the same way: each page goes
/// first to a replica of its first token (the range's start, then the previous page's last
/// row), so on a three-node origin every page inside a partition goes to its owner.
#[tokio::test]
async fn scan_pages_go_to_a_replica_of_their_first_token() {
    let env = three_node_env(86).await;
    let (first, pk, pk_owner) = partition_off_first(&env);
    let schema = [
        "CREATE KEYSPACE vr WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE vr.t (k int, c int, v text, PRIMARY KEY (k, c))",
    ];
    env.origin_cql(&schema).await;
    env.target_cql(&schema).await;
    for c in 0..50 {
        let insert = format!(
            "INSERT INTO vr.t (k, c, v) VALUES ({pk}, {c}, 'v{c}') USING TIMESTAMP {}",
            100 + c
        );
        env.origin_cql(&[&insert]).await;
        env.target_cql(&[&insert]).await;
    }
    count_scan_pages(&env);
    let mut spec = env.spec(&["vr.t"]);
    spec.ranges = ferry_migrator::RangeCount::Fixed(1);
    spec.scan_parallelism = 1;
    spec.page_size = 10;
    let rec = std::sync::Arc::new(Recorder::default());
    let report = ferry_migrator::validate(spec, ValidateOptions::default(), rec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.tables[0].is_clean(), "{report:?}");
    assert_pages_routed(&env, first, pk_owner, "origin scan pages per node");
    env.stop().await;
}
