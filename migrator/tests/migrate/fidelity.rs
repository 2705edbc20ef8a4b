//! Every type and cell shape is copied with its writetime and TTL; newer target writes and
//! deletes win over the backfill.

use ferry_migrator::{Event, Phase};

use crate::harness::{assert_same_cells, dump, env, markers};

const SCHEMA: &[&str] = &[
    "CREATE KEYSPACE fid WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    "CREATE TYPE fid.tags (names frozen<set<text>>, n int)",
    "CREATE TYPE fid.addr (street text, zip int, t frozen<tags>)",
    "CREATE TABLE fid.t (a int, b text, c int, d timeuuid, \
       s int static, sl list<int> static, \
       v_ascii ascii, v_bigint bigint, v_blob blob, v_bool boolean, v_date date, \
       v_dec decimal, v_double double, v_dur duration, v_float float, v_inet inet, \
       v_int int, v_small smallint, v_text text, v_time time, v_ts timestamp, \
       v_tuuid timeuuid, v_tiny tinyint, v_uuid uuid, v_varint varint, \
       v_vec vector<float, 3>, v_tuple tuple<int, text>, \
       f_list frozen<list<int>>, f_set frozen<set<text>>, f_map frozen<map<int, text>>, \
       f_udt frozen<addr>, \
       l list<text>, st set<int>, m map<text, int>, u addr, \
       PRIMARY KEY ((a, b), c, d)) WITH CLUSTERING ORDER BY (c DESC, d ASC) \
       AND comment = 'every shape' AND gc_grace_seconds = 3600",
];

const TU: &str = "50554d6e-29bb-11e5-b345-feff819cdc9f";

fn data() -> Vec<String> {
    let k = |c: i32| format!("a = 1 AND b = 'p' AND c = {c} AND d = {TU}");
    let mut v = vec![
        format!(
            "INSERT INTO fid.t (a, b, c, d, v_ascii, v_bigint, v_blob, v_bool, v_date, v_dec, \
             v_double, v_dur, v_float, v_inet, v_int, v_small, v_text, v_time, v_ts, v_tuuid, \
             v_tiny, v_uuid, v_varint, v_vec, v_tuple, f_list, f_set, f_map, f_udt) VALUES \
             (1, 'p', 1, {TU}, 'asc', -9000000000, 0xcafe, true, '2024-01-02', 1.50, 2.25, \
             1h2m3s, 0.5, '10.0.0.1', 42, -7, 'héllo', '12:34:56.789', 1700000000000, {TU}, \
             3, 7f1c6b2e-1111-4a4a-8888-123456789abc, 123456789012345678901234567890, \
             [1.0, 2.5, -3.0], (5, 'five'), [3, 1, 3], {{'x', 'y'}}, {{1: 'one', 2: 'two'}}, \
             {{street: 'main', zip: 10, t: {{names: {{'a'}}, n: 1}}}}) USING TIMESTAMP 1000"
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 2000 AND TTL 5000 SET v_int = 7, v_text = 'x' WHERE {}",
            k(1)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 1500 SET l = l + ['a', 'b'] WHERE {}",
            k(1)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 2500 AND TTL 3000 SET l = l + ['c'] WHERE {}",
            k(1)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 3000 SET l = l + ['a'] WHERE {}",
            k(1)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 1100 SET st = st + {{1, 2}} WHERE {}",
            k(1)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 1200 AND TTL 4000 SET st = st + {{3}} WHERE {}",
            k(1)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 1300 SET m = m + {{'k1': 1}} WHERE {}",
            k(1)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 1400 SET m['k2'] = 2 WHERE {}",
            k(1)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 1600 SET u = {{street: 's', zip: 1}} WHERE {}",
            k(1)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 1700 AND TTL 6000 SET u.zip = 2 WHERE {}",
            k(1)
        ),
        // A cell written and then deleted: the tombstone is not copied, nor the value.
        format!(
            "UPDATE fid.t USING TIMESTAMP 1000 SET v_bigint = 5 WHERE {}",
            k(2)
        ),
        format!(
            "UPDATE fid.t USING TIMESTAMP 3000 SET v_int = 8 WHERE {}",
            k(2)
        ),
        format!(
            "DELETE v_bigint FROM fid.t USING TIMESTAMP 1001 WHERE {}",
            k(2)
        ),
        // Primary key only (its marker's writetime cannot be read: the floor is used).
        format!("INSERT INTO fid.t (a, b, c, d) VALUES (1, 'p', 3, {TU}) USING TIMESTAMP 4000"),
        // Static cells, and a partition with static cells only.
        "UPDATE fid.t USING TIMESTAMP 900 SET s = 5 WHERE a = 1 AND b = 'p'".to_owned(),
        "UPDATE fid.t USING TIMESTAMP 901 SET sl = sl + [1] WHERE a = 1 AND b = 'p'".to_owned(),
        "UPDATE fid.t USING TIMESTAMP 902 SET sl = sl + [2, 2] WHERE a = 1 AND b = 'p'".to_owned(),
        "UPDATE fid.t USING TIMESTAMP 950 AND TTL 7000 SET s = 9 WHERE a = 2 AND b = 'q'"
            .to_owned(),
    ];
    // Enough partitions for several ranges and pages.
    for i in 0..60 {
        v.push(format!(
            "INSERT INTO fid.t (a, b, c, d, v_int, l) VALUES ({i}, 'n', {i}, {TU}, {i}, ['z{i}']) \
             USING TIMESTAMP {}",
            10_000 + i
        ));
    }
    v
}

#[tokio::test]
async fn every_type_and_shape_keeps_writetimes_and_ttls() {
    let env = env(70).await;
    env.origin_cql(SCHEMA).await;
    let data = data();
    let stmts: Vec<&str> = data.iter().map(String::as_str).collect();
    env.origin_cql(&stmts).await;

    let mut spec = env.spec(&["fid.t"]);
    spec.page_size = 7;
    spec.floor_timestamp = 3999;
    let (report, events) = env.run(spec.clone()).await;
    assert_eq!(report.tables.len(), 1);
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");
    assert_eq!(report.tables[0].ranges_done, 8);
    assert_eq!(report.tables[0].rows, 64);
    let phases: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Phase { phase, .. } => Some(phase.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(phases, ["SCHEMA", "BACKFILL", "VALIDATING", "DONE"]);
    assert_same_cells(&env, "fid", "t");

    // Markers: every origin row has one on target; the key-only row's is the floor.
    let key_only = markers(&env.target, "fid", "t")
        .into_iter()
        .find(|(c, _)| {
            c.ck.as_ref()
                .is_some_and(|ck| ck[0].as_ref() == 3i32.to_be_bytes())
        })
        .map(|(c, _)| c.writetime);
    assert_eq!(key_only, Some(3999));
    for (m, _) in markers(&env.origin, "fid", "t") {
        assert!(
            markers(&env.target, "fid", "t")
                .iter()
                .any(|(t, _)| t.pk == m.pk && t.ck == m.ck),
            "{m:?} has no marker on target"
        );
    }

    // The DDL went to schema.cql, UDTs first.
    let ddl = std::fs::read_to_string(env.job_dir.join("schema.cql")).unwrap();
    let tags = ddl
        .find("CREATE TYPE IF NOT EXISTS \"fid\".\"tags\"")
        .unwrap();
    let addr = ddl
        .find("CREATE TYPE IF NOT EXISTS \"fid\".\"addr\"")
        .unwrap();
    let table = ddl
        .find("CREATE TABLE IF NOT EXISTS \"fid\".\"t\"")
        .unwrap();
    assert!(tags < addr && addr < table, "{ddl}");
    assert!(
        ddl.contains("CLUSTERING ORDER BY (\"c\" DESC, \"d\" ASC)"),
        "{ddl}"
    );

    // A second run with the same job directory has nothing left to do.
    let (again, _) = env.run(spec.clone()).await;
    assert_eq!(again.tables[0].phase, Phase::Done);
    assert_eq!(again.tables[0].rows, 0);

    // A whole new run (new job directory) over a full target changes nothing: no list
    // element is appended twice.
    let before = dump(&env.target, "fid", "t");
    spec.job_dir = env.job_dir.join("second");
    let (fresh, _) = env.run(spec).await;
    assert_eq!(fresh.tables[0].phase, Phase::Done);
    assert_eq!(fresh.tables[0].rows, 64);
    assert_eq!(
        before.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        dump(&env.target, "fid", "t")
            .iter()
            .map(|(c, _)| c)
            .collect::<Vec<_>>()
    );
    env.stop().await;
}

#[tokio::test]
async fn newer_target_writes_and_deletes_win() {
    let env = env(71).await;
    env.origin_cql(&[
        "CREATE KEYSPACE lww WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE lww.t (k int PRIMARY KEY, v text, w int, l list<int>)",
        "INSERT INTO lww.t (k, v, w, l) VALUES (1, 'old', 1, [1]) USING TIMESTAMP 100",
        "INSERT INTO lww.t (k, v, w, l) VALUES (2, 'doomed', 2, [2]) USING TIMESTAMP 100",
        "INSERT INTO lww.t (k, v, w) VALUES (3, 'kept', 3) USING TIMESTAMP 100",
    ])
    .await;
    // The schema step would create the table; the proxy's dual writes need it first.
    env.target_cql(&[
        "CREATE KEYSPACE lww WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE lww.t (k int PRIMARY KEY, v text, w int, l list<int>)",
        // A dual write newer than origin's cell, before the backfill reaches the row.
        "UPDATE lww.t USING TIMESTAMP 200 SET v = 'new' WHERE k = 1",
        // A delete made during the backfill: target has it, origin gets it after the scan.
        "DELETE FROM lww.t USING TIMESTAMP 300 WHERE k = 2",
    ])
    .await;
    let (report, _) = env.run(env.spec(&["lww"])).await;
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");
    assert!(report.tables[0].ddl.is_empty());
    env.origin_cql(&["DELETE FROM lww.t USING TIMESTAMP 300 WHERE k = 2"])
        .await;

    let rows = env
        .t
        .query_unpaged("SELECT k, v, w, writetime(v) FROM lww.t", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut rows: Vec<(i32, Option<String>, Option<i32>, Option<i64>)> = rows
        .rows::<(i32, Option<String>, Option<i32>, Option<i64>)>()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (1, Some("new".into()), Some(1), Some(200)),
            (3, Some("kept".into()), Some(3), Some(100)),
        ]
    );
    // Origin and target now agree cell by cell, k = 1's newer v aside.
    env.origin_cql(&["UPDATE lww.t USING TIMESTAMP 200 SET v = 'new' WHERE k = 1"])
        .await;
    assert_same_cells(&env, "lww", "t");
    env.stop().await;
}
