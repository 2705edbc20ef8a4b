//! Reads: token-range scans over the whole ring, paging with writes between pages, filtering
//! on collections, and `system.size_estimates`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use scylla::client::session::Session;
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::response::PagingState;
use scylla::statement::Statement;
use scylla::statement::batch::{Batch, BatchType};

use super::{rows, run, session_in};

/// Every vnode token of the cluster, sorted, from `system.local` and `system.peers`.
async fn ring(s: &Session) -> Vec<i64> {
    let mut tokens = Vec::new();
    for table in ["system.local", "system.peers"] {
        let got: Vec<(BTreeSet<String>,)> =
            rows(s, &format!("SELECT tokens FROM {table}"), ()).await;
        for (set,) in got {
            tokens.extend(set.iter().map(|t| t.parse::<i64>().unwrap()));
        }
    }
    tokens.sort_unstable();
    tokens
}

/// `(start, end]` ranges that cover the ring once: one per vnode, plus the piece above the
/// highest token (how a migrator splits a full scan).
fn ranges(ring: &[i64]) -> Vec<(i64, i64)> {
    let mut bounds = vec![i64::MIN];
    bounds.extend_from_slice(ring);
    bounds.push(i64::MAX);
    bounds.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Inserts `partitions × per_partition` rows `(k, c, v = k * 1000 + c)` with unlogged batches
/// (one per partition).
async fn fill(s: &Session, table: &str, partitions: i32, per_partition: i32) {
    let ins = s
        .prepare(format!("INSERT INTO {table} (k, c, v) VALUES (?, ?, ?)"))
        .await
        .unwrap();
    for k in 0..partitions {
        let mut b = Batch::new(BatchType::Unlogged);
        let mut values = Vec::new();
        for c in 0..per_partition {
            b.append_statement(ins.clone());
            values.push((k, c, k * 1000 + c));
        }
        s.batch(&b, values).await.unwrap();
    }
}

#[tokio::test]
async fn token_range_scans_return_every_row_once() {
    let s = session_in("rd_scan").await;
    run(
        &s,
        "CREATE TABLE t (k int, c int, v int, PRIMARY KEY (k, c))",
    )
    .await;
    fill(&s, "t", 500, 3).await;
    let ring = ring(&s).await;
    assert_eq!(ring.len(), 3 * 16, "three nodes of 16 vnodes");

    let mut scan = s
        .prepare("SELECT token(k), k, c FROM t WHERE token(k) > ? AND token(k) <= ?")
        .await
        .unwrap();
    // Small pages, so ranges also page inside themselves.
    scan.set_page_size(17);
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for (start, end) in ranges(&ring) {
        let mut paging = PagingState::start();
        let mut last = i64::MIN;
        loop {
            let (res, next) = s
                .execute_single_page(&scan, (start, end), paging)
                .await
                .unwrap();
            for row in res
                .into_rows_result()
                .unwrap()
                .rows::<(i64, i32, i32)>()
                .unwrap()
            {
                let (token, k, c) = row.unwrap();
                assert!(
                    start < token && token <= end,
                    "{token} outside ({start}, {end}]"
                );
                assert!(token >= last, "token order");
                last = token;
                seen.insert((k, c));
                total += 1;
            }
            match next.into_paging_control_flow() {
                ControlFlow::Continue(p) => paging = p,
                ControlFlow::Break(()) => break,
            }
        }
    }
    assert_eq!(total, 1500, "no row twice");
    assert_eq!(seen.len(), 1500, "every row");
    // A range with start > end selects nothing (no wrap-around in CQL).
    let none: Vec<(i64, i32, i32)> = s
        .execute_unpaged(&scan, (10_i64, -10_i64))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn paging_over_10k_rows_with_writes_between_pages() {
    let s = session_in("rd_paging").await;
    run(
        &s,
        "CREATE TABLE t (k int, c int, v int, PRIMARY KEY (k, c))",
    )
    .await;
    fill(&s, "t", 100, 100).await;
    let mut select = s.prepare("SELECT token(k), k, c, v FROM t").await.unwrap();
    select.set_page_size(997);
    let insert = s
        .prepare("INSERT INTO t (k, c, v) VALUES (?, 0, -1)")
        .await
        .unwrap();
    let delete = s.prepare("DELETE FROM t WHERE k = ?").await.unwrap();

    let mut returned: BTreeMap<(i32, i32), i32> = BTreeMap::new();
    // Partitions written (true) or deleted (false) between pages, with the cursor's token then.
    let mut changes: Vec<(i32, bool, i64)> = Vec::new();
    let mut paging = PagingState::start();
    let mut last = (i64::MIN, -1, -1);
    let mut pages = 0;
    loop {
        let (res, next) = s.execute_single_page(&select, (), paging).await.unwrap();
        pages += 1;
        for row in res
            .into_rows_result()
            .unwrap()
            .rows::<(i64, i32, i32, i32)>()
            .unwrap()
        {
            let (token, k, c, v) = row.unwrap();
            assert!(
                (token, k, c) > last || (token == last.0 && k != last.1),
                "order"
            );
            last = (token, k, c);
            assert!(
                returned.insert((k, c), v).is_none(),
                "({k}, {c}) returned twice"
            );
        }
        match next.into_paging_control_flow() {
            ControlFlow::Continue(p) => paging = p,
            ControlFlow::Break(()) => break,
        }
        // Between pages: a new partition, and an original partition deleted.
        let new_k = 10_000 + pages;
        s.execute_unpaged(&insert, (new_k,)).await.unwrap();
        changes.push((new_k, true, last.0));
        let gone = (pages * 37) % 100;
        s.execute_unpaged(&delete, (gone,)).await.unwrap();
        changes.push((gone, false, last.0));
    }
    assert!(pages >= 10, "{pages} pages");
    let mut expect_missing = BTreeSet::new();
    for (k, written, cursor) in &changes {
        // The driver's token (checked equal to the server's in `routing`): deleted partitions
        // have no row left to ask the server about.
        let token = delete.calculate_token(&(*k,)).unwrap().unwrap().value();
        let seen = returned.keys().any(|(rk, _)| rk == k);
        if *written {
            // Ahead of the cursor: the new row is read; behind it: not.
            assert_eq!(
                seen,
                token > *cursor,
                "new partition {k} (token {token}, cursor {cursor})"
            );
        } else if token > *cursor {
            assert!(!seen, "deleted partition {k} ahead of the cursor was read");
            expect_missing.insert(*k);
        } else if token == *cursor {
            // Deleted while the page ended inside it: read up to the cursor only.
            expect_missing.insert(*k);
        }
    }
    for k in 0..100 {
        if expect_missing.contains(&k) {
            continue;
        }
        for c in 0..100 {
            assert_eq!(
                returned.get(&(k, c)),
                Some(&(k * 1000 + c)),
                "row ({k}, {c})"
            );
        }
    }
}

#[tokio::test]
async fn contains_and_contains_key_filter_with_allow_filtering() {
    let s = session_in("rd_contains").await;
    run(
        &s,
        "CREATE TABLE t (k int PRIMARY KEY, tags set<text>, attrs map<text, int>, \
         nums list<int>, frozen_tags frozen<set<text>>)",
    )
    .await;
    run(&s, "INSERT INTO t (k, tags, attrs, nums, frozen_tags) VALUES (1, {'red', 'big'}, {'a': 1}, [1, 2], {'x'})").await;
    run(&s, "INSERT INTO t (k, tags, attrs, nums, frozen_tags) VALUES (2, {'red'}, {'b': 2}, [3], {'y'})").await;
    run(
        &s,
        "INSERT INTO t (k, tags, attrs) VALUES (3, {'blue'}, {'a': 2})",
    )
    .await;
    let keys = |cql: &'static str, value: &'static str| {
        let s = &s;
        async move {
            let got: Vec<(i32,)> = rows(s, cql, (value,)).await;
            got.into_iter().map(|(k,)| k).collect::<BTreeSet<i32>>()
        }
    };
    assert_eq!(
        keys(
            "SELECT k FROM t WHERE tags CONTAINS ? ALLOW FILTERING",
            "red"
        )
        .await,
        BTreeSet::from([1, 2])
    );
    assert_eq!(
        keys(
            "SELECT k FROM t WHERE attrs CONTAINS KEY ? ALLOW FILTERING",
            "a"
        )
        .await,
        BTreeSet::from([1, 3])
    );
    assert_eq!(
        keys(
            "SELECT k FROM t WHERE frozen_tags CONTAINS ? ALLOW FILTERING",
            "y"
        )
        .await,
        BTreeSet::from([2])
    );
    let got: Vec<(i32,)> = rows(
        &s,
        "SELECT k FROM t WHERE attrs CONTAINS ? AND nums CONTAINS ? ALLOW FILTERING",
        (1, 2),
    )
    .await;
    assert_eq!(got, [(1,)]);
    let err = s
        .query_unpaged("SELECT k FROM t WHERE tags CONTAINS 'red'", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("ALLOW FILTERING"), "{err:?}");
}

#[tokio::test]
async fn size_estimates_cover_each_nodes_ranges() {
    let s = session_in("rd_sizes").await;
    run(
        &s,
        "CREATE TABLE t (k int, c int, v int, PRIMARY KEY (k, c))",
    )
    .await;
    fill(&s, "t", 300, 2).await;
    let state = s.get_cluster_state();
    let mut all_ranges = Vec::new();
    let mut partitions = 0;
    for node in state.get_nodes_info() {
        let mut q = Statement::new(
            "SELECT range_start, range_end, partitions_count, mean_partition_size \
             FROM system.size_estimates WHERE keyspace_name = ? AND table_name = ?",
        );
        q.set_load_balancing_policy(Some(SingleTargetLoadBalancingPolicy::new(
            NodeIdentifier::Node(node.clone()),
            None,
        )));
        let res = s.query_unpaged(q, ("rd_sizes", "t")).await.unwrap();
        assert_eq!(res.request_coordinator().node().host_id, node.host_id);
        let got: Vec<(String, String, i64, i64)> = res
            .into_rows_result()
            .unwrap()
            .rows()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // 16 vnodes; the node owning the wrapping range reports it as two pieces.
        assert!((16..=17).contains(&got.len()), "{} ranges", got.len());
        for (start, end, count, mean) in got {
            assert!(count >= 0 && (count == 0 || mean > 0), "{count} {mean}");
            partitions += count;
            all_ranges.push((start.parse::<i64>().unwrap(), end.parse::<i64>().unwrap()));
        }
    }
    assert_eq!(partitions, 300);
    // Together the nodes' ranges tile the ring: sorted, each starts where the previous ended,
    // from the minimum token round to it again.
    all_ranges.sort_unstable();
    assert_eq!(all_ranges.len(), 49);
    assert_eq!(all_ranges[0].0, i64::MIN);
    assert_eq!(
        all_ranges.last().unwrap().1,
        i64::MIN,
        "the piece ending the ring"
    );
    for w in all_ranges.windows(2) {
        assert_eq!(w[0].1, w[1].0);
    }
    // Other tables and keyspaces have their own rows; the system keyspaces have none.
    let none: Vec<(String,)> = rows(
        &s,
        "SELECT range_start FROM system.size_estimates WHERE keyspace_name = 'system'",
        (),
    )
    .await;
    assert!(none.is_empty());
}
