//! Counter tables: refused by default, `origin − target` in counters mode.

use ferry_migrator::{CountersMode, Event, Phase};

use crate::harness::env;

const SCHEMA: &[&str] = &[
    "CREATE KEYSPACE cnt WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    "CREATE TABLE cnt.t (k int, c int, n counter, m counter, PRIMARY KEY (k, c))",
];

async fn counters(
    session: &scylla::client::session::Session,
) -> Vec<(i32, i32, Option<i64>, Option<i64>)> {
    let rows = session
        .query_unpaged("SELECT k, c, n, m FROM cnt.t", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut v: Vec<(i32, i32, Option<i64>, Option<i64>)> = rows
        .rows::<(
            i32,
            i32,
            Option<scylla::value::Counter>,
            Option<scylla::value::Counter>,
        )>()
        .unwrap()
        .map(|r| {
            let (k, c, n, m) = r.unwrap();
            (k, c, n.map(|x| x.0), m.map(|x| x.0))
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn counters_apply_the_difference_once() {
    let env = env(74).await;
    env.origin_cql(SCHEMA).await;
    env.origin_cql(&[
        "UPDATE cnt.t SET n = n + 5, m = m + 1 WHERE k = 1 AND c = 1",
        "UPDATE cnt.t SET n = n - 3 WHERE k = 2 AND c = 1",
        "UPDATE cnt.t SET n = n + 10, m = m + 10 WHERE k = 3 AND c = 1",
    ])
    .await;
    env.target_cql(SCHEMA).await;
    // Increments that reached target through dual writes are also on origin.
    env.target_cql(&["UPDATE cnt.t SET n = n + 2 WHERE k = 1 AND c = 1"])
        .await;

    // Refused without the explicit mode.
    let (report, _) = env.run(env.spec(&["cnt.t"])).await;
    let Phase::Failed(reason) = &report.tables[0].phase else {
        panic!("{report:?}")
    };
    assert!(
        reason.contains("counter table") && reason.contains("--counters"),
        "{reason}"
    );

    let mut spec = env.spec(&["cnt.t"]);
    spec.counters = CountersMode::ApplyDifference;
    let (report, events) = env.run(spec.clone()).await;
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Warning { message, .. } if message.contains("counter")))
    );
    let expected = counters(&env.o).await;
    assert_eq!(counters(&env.t).await, expected);
    assert_eq!(expected[0], (1, 1, Some(5), Some(1)));

    // A rerun from scratch adds nothing.
    spec.job_dir = env.job_dir.join("again");
    let (report, _) = env.run(spec).await;
    assert_eq!(report.tables[0].phase, Phase::Done);
    assert_eq!(counters(&env.t).await, expected);
    env.stop().await;
}
