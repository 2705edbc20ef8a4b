//! Target schema checks.

use ferry_migrator::Phase;

use crate::harness::env;

#[tokio::test]
async fn incompatible_target_lists_every_difference() {
    let env = env(72).await;
    let ks = "CREATE KEYSPACE sch WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}";
    env.origin_cql(&[
        ks,
        "CREATE TYPE sch.pt (x int, y int)",
        "CREATE TABLE sch.t (k int, c int, v text, w int, p frozen<pt>, PRIMARY KEY (k, c))",
        "INSERT INTO sch.t (k, c, v, w) VALUES (1, 1, 'a', 1)",
        "CREATE TABLE sch.ok (k int PRIMARY KEY, v int)",
        "INSERT INTO sch.ok (k, v) VALUES (1, 1)",
    ])
    .await;
    env.target_cql(&[
        ks,
        "CREATE TYPE sch.pt (x int, z text)",
        // k is bigint, c is descending, w is missing, x is an extra clustering column.
        "CREATE TABLE sch.t (k bigint, c int, x int, v text, p frozen<pt>, extra int, \
         PRIMARY KEY (k, c, x)) WITH CLUSTERING ORDER BY (c DESC, x ASC)",
    ])
    .await;
    let (report, _) = env.run(env.spec(&["sch.t", "sch.ok"])).await;
    let Phase::Failed(reason) = &report.tables[0].phase else {
        panic!("{report:?}");
    };
    for expected in [
        "target's sch.t is incompatible with origin's (5 differences)",
        "user type pt has fields (x int, y int) on origin but (x int, z text) on target",
        "column k has type int on origin but bigint on target",
        "column c is clustering #0 ASC on origin but clustering #0 DESC on target",
        "column w (int, regular) is missing on target",
        "target has key column x (clustering #1 ASC) that origin lacks",
    ] {
        assert!(reason.contains(expected), "{expected:?} not in {reason}");
    }
    // Nothing was copied into the incompatible table; the next table went on.
    let n = env
        .t
        .query_unpaged("SELECT * FROM sch.t", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows_num();
    assert_eq!(n, 0);
    assert_eq!(report.tables[1].phase, Phase::Done);
    assert!(!report.succeeded());
    env.stop().await;
}

#[tokio::test]
async fn replication_override_and_missing_table() {
    let env = env(73).await;
    env.origin_cql(&[
        "CREATE KEYSPACE rep WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE rep.t (k int PRIMARY KEY, v int)",
        "INSERT INTO rep.t (k, v) VALUES (1, 1)",
    ])
    .await;
    let mut spec = env.spec(&["rep.t", "rep.nope"]);
    spec.replication.insert(
        "rep".into(),
        "{'class': 'SimpleStrategy', 'replication_factor': 2}".into(),
    );
    let (report, _) = env.run(spec).await;
    assert_eq!(report.tables[0].phase, Phase::Done);
    assert!(report.tables[0].ddl[0].contains("'replication_factor': 2"));
    assert_eq!(
        report.tables[1].phase,
        Phase::Failed("table rep.nope does not exist on origin".into())
    );
    let ddl = std::fs::read_to_string(env.job_dir.join("schema.cql")).unwrap();
    assert!(
        ddl.starts_with("-- rep.t\nCREATE KEYSPACE IF NOT EXISTS \"rep\""),
        "{ddl}"
    );
    env.stop().await;
}
