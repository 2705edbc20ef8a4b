//! A job stopped mid-table and run again ends identical to an uninterrupted run.

use std::sync::Arc;
use std::time::Duration;

use ferry_migrator::{LogObserver, Phase};

use crate::harness::{assert_same_cells, dump, env};

#[tokio::test]
async fn stopped_mid_table_and_rerun_ends_identical_without_duplicate_list_elements() {
    let env = env(77).await;
    env.origin_cql(&[
        "CREATE KEYSPACE res WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE res.t (k int, c int, s text static, v int, l list<int>, m map<int, int>, \
         PRIMARY KEY (k, c))",
    ])
    .await;
    for k in 0..30 {
        for c in 0..4 {
            // Lists built by several appends with different writetimes: a stop between two
            // appends of one row leaves a prefix on target.
            env.origin_cql(&[
                &format!(
                    "INSERT INTO res.t (k, c, v, l) VALUES ({k}, {c}, {c}, [{c}, {c}]) \
                     USING TIMESTAMP {}",
                    1000 + c
                ),
                &format!(
                    "UPDATE res.t USING TIMESTAMP 2000 SET l = l + [7, {k}], m[{c}] = {k} \
                     WHERE k = {k} AND c = {c}"
                ),
                &format!(
                    "UPDATE res.t USING TIMESTAMP 3000 SET l = l + [{c}] WHERE k = {k} AND c = {c}"
                ),
                &format!("UPDATE res.t USING TIMESTAMP 900 SET s = 's{k}' WHERE k = {k}"),
            ])
            .await;
        }
    }
    let mut spec = env.spec(&["res.t"]);
    spec.ranges = ferry_migrator::RangeCount::Fixed(4);
    spec.page_size = 5;
    // 10 rows/s: the bucket's first second (10 rows) goes at once, the other 110 rows take
    // 11 s, so the job is still mid-table however long a loaded machine takes to notice
    // the first checkpoints.
    spec.max_rows_per_second = Some(10);
    let progress = env.job_dir.join("res.t.progress");
    let job = tokio::spawn(ferry_migrator::run(spec.clone(), Arc::new(LogObserver)));
    // Stop once some progress is durable (a rows/s limit keeps the job mid-table).
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let log = std::fs::read_to_string(&progress).unwrap_or_default();
        if log.lines().count() >= 3 {
            break;
        }
        assert!(
            !job.is_finished(),
            "the job ended before it could be stopped"
        );
    }
    job.abort();
    let _ = job.await;
    let log = std::fs::read_to_string(&progress).unwrap();
    assert!(
        log.lines().filter(|l| l.starts_with("done")).count() < 4,
        "{log}"
    );
    let partial = dump(&env.target, "res", "t").len();
    assert!(partial > 0 && partial < dump(&env.origin, "res", "t").len());

    spec.max_rows_per_second = None;
    let (report, _) = env.run(spec).await;
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");
    // Some rows were written by the first run only.
    assert!(report.tables[0].rows < 120, "{report:?}");
    assert_same_cells(&env, "res", "t");
    env.stop().await;
}
