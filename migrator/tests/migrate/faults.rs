//! Timeouts: retried and split, or the table fails naming the range.

use std::time::Duration;

use ferry_cql::protocol::{Consistency, Opcode};
use ferry_cql::response::error::WriteType;
use ferry_migrator::{Event, Phase, RangeCount};
use ferry_sim::server::faults::{read_timeout, write_timeout};
use ferry_sim::server::{FaultAction, RequestMatcher};

use scylla::client::session::Session;

use crate::harness::{assert_same_cells, env};

async fn setup(env: &crate::harness::Env) {
    env.origin_cql(&[
        "CREATE KEYSPACE flt WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE flt.t (k int PRIMARY KEY, v int)",
    ])
    .await;
    for k in 0..40 {
        env.origin_cql(&[&format!(
            "INSERT INTO flt.t (k, v) VALUES ({k}, {k}) USING TIMESTAMP {}",
            100 + k
        )])
        .await;
    }
}

fn scan_matcher() -> RequestMatcher {
    RequestMatcher::any()
        .opcode(Opcode::Execute)
        .text_contains("token(\"k\") >")
}

#[tokio::test]
async fn timeouts_are_retried_with_split_ranges() {
    let env = env(75).await;
    setup(&env).await;
    env.origin.node(0).faults().add_times(
        scan_matcher(),
        FaultAction::Error(read_timeout(Consistency::LocalQuorum, 1)),
        Some(3),
    );
    let mut spec = env.spec(&["flt.t"]);
    spec.ranges = RangeCount::Fixed(1);
    spec.scan_parallelism = 1;
    spec.page_size = 5;
    let (report, events) = env.run(spec).await;
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");
    let retries = events
        .iter()
        .filter(|e| matches!(e, Event::Retry { .. }))
        .count();
    assert_eq!(retries, 3);
    assert_same_cells(&env, "flt", "t");
    // The split sub-ranges left resume points at their ends.
    let log = std::fs::read_to_string(env.job_dir.join("flt.t.progress")).unwrap();
    assert!(log.ends_with("done 0\n"), "{log}");
    env.stop().await;
}

#[tokio::test]
async fn a_range_that_keeps_failing_fails_the_table_by_name() {
    let env = env(76).await;
    setup(&env).await;
    env.origin.node(0).faults().add(
        scan_matcher().text_contains("token(\"k\") >"),
        FaultAction::Delay(Duration::from_secs(10)),
    );
    let mut spec = env.spec(&["flt.t"]);
    spec.ranges = RangeCount::Fixed(4);
    spec.retries = 2;
    // Every scan takes far longer than the client's limit, which is long enough for the
    // schema reads and the first range's scans on a loaded machine.
    spec.origin.request_timeout = Duration::from_secs(2);
    let (report, _) = env.run(spec).await;
    let Phase::Failed(reason) = &report.tables[0].phase else {
        panic!("{report:?}")
    };
    assert!(reason.contains("range #"), "{reason}");
    assert!(reason.contains("failed 3 times in a row"), "{reason}");
    assert!(report.tables[0].ranges_done < 4);
    env.stop().await;
}

/// Pages are written while the next ones are read, several at once: a failed batch must not
/// let a later page's checkpoint claim rows before it.
#[tokio::test]
async fn a_failed_batch_is_never_checkpointed_past() {
    let env = env(89).await;
    setup(&env).await;
    env.target.node(0).faults().add_times(
        RequestMatcher::any().opcode(Opcode::Batch),
        FaultAction::Error(write_timeout(
            Consistency::LocalQuorum,
            1,
            WriteType::UnloggedBatch,
        )),
        Some(1),
    );
    let mut spec = env.spec(&["flt.t"]);
    spec.ranges = RangeCount::Fixed(1);
    spec.scan_parallelism = 1;
    spec.page_size = 4;
    // No retry: the first failed batch fails the table.
    spec.retries = 0;
    let (report, _) = env.run(spec.clone()).await;
    assert!(
        matches!(report.tables[0].phase, Phase::Failed(_)),
        "{report:?}"
    );
    // Every row the log says is written (token below its last resume point) is on target.
    let log = std::fs::read_to_string(env.job_dir.join("flt.t.progress")).unwrap();
    assert!(!log.contains("done"), "{log}");
    let resume = log
        .lines()
        .filter_map(|l| l.strip_prefix("at 0 "))
        .map(|t| t.parse::<i64>().unwrap())
        .max()
        .unwrap_or(i64::MIN);
    let on_target: Vec<i32> = rows(&env.t).await.into_iter().map(|(_, k)| k).collect();
    for (token, k) in rows(&env.o).await {
        if token < resume {
            assert!(
                on_target.contains(&k),
                "key {k} (token {token}) checkpointed but missing"
            );
        }
    }
    // The rerun continues from the log and ends identical.
    spec.retries = 5;
    let (report, _) = env.run(spec).await;
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");
    assert_same_cells(&env, "flt", "t");
    env.stop().await;
}

/// (token, key) of every row of `flt.t`.
async fn rows(s: &Session) -> Vec<(i64, i32)> {
    s.query_unpaged("SELECT token(k), k FROM flt.t", &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(i64, i32)>()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}
