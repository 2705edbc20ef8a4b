//! Writes with Cassandra's semantics: cell timestamps and TTLs, last-write-wins, tombstones,
//! collection operations, counters, lightweight transactions and batches.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use scylla::statement::Statement;
use scylla::statement::batch::{Batch, BatchType};
use scylla::value::{Counter, CqlValue, Row};

use super::{rows, run, session_in};

async fn value_of(s: &Session, table: &str, k: i32) -> Option<Option<String>> {
    let got: Vec<(Option<String>,)> =
        rows(s, &format!("SELECT v FROM {table} WHERE k = ?"), (k,)).await;
    got.into_iter().next().map(|(v,)| v)
}

#[tokio::test]
async fn using_timestamp_and_ttl_read_back() {
    let s = session_in("wr_ts").await;
    run(&s, "CREATE TABLE t (k int PRIMARY KEY, v text, w int)").await;
    let ins = s
        .prepare("INSERT INTO t (k, v) VALUES (?, ?) USING TIMESTAMP ? AND TTL ?")
        .await
        .unwrap();
    s.execute_unpaged(&ins, (1, "a", 1_000_000_i64, 3600))
        .await
        .unwrap();
    // The statement's own timestamp (the protocol's default timestamp) also sets writetime.
    let mut upd = Statement::new("UPDATE t SET w = 9 WHERE k = 1");
    upd.set_timestamp(Some(2_000_000));
    s.query_unpaged(upd, &[]).await.unwrap();

    let (wv, tv, ww, tw): (i64, i32, i64, Option<i32>) = s
        .query_unpaged(
            "SELECT writetime(v), ttl(v), writetime(w), ttl(w) FROM t WHERE k = 1",
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row()
        .unwrap();
    assert_eq!(wv, 1_000_000);
    assert!((3590..=3600).contains(&tv), "ttl {tv}");
    assert_eq!(ww, 2_000_000);
    assert_eq!(tw, None, "no TTL on w");
}

#[tokio::test]
async fn last_write_wins_and_tombstones_in_both_arrival_orders() {
    let s = session_in("wr_lww").await;
    run(&s, "CREATE TABLE t (k int PRIMARY KEY, v text)").await;
    let ins = s
        .prepare("INSERT INTO t (k, v) VALUES (?, ?) USING TIMESTAMP ?")
        .await
        .unwrap();
    let del = s
        .prepare("DELETE FROM t USING TIMESTAMP ? WHERE k = ?")
        .await
        .unwrap();

    // Two writes: the newer timestamp wins whichever arrives first.
    s.execute_unpaged(&ins, (1, "new", 20_i64)).await.unwrap();
    s.execute_unpaged(&ins, (1, "old", 10_i64)).await.unwrap();
    s.execute_unpaged(&ins, (2, "old", 10_i64)).await.unwrap();
    s.execute_unpaged(&ins, (2, "new", 20_i64)).await.unwrap();
    assert_eq!(value_of(&s, "t", 1).await, Some(Some("new".into())));
    assert_eq!(value_of(&s, "t", 2).await, Some(Some("new".into())));

    // Equal timestamps: the greater value wins (Cassandra's tie-break), in either order.
    s.execute_unpaged(&ins, (3, "bbb", 30_i64)).await.unwrap();
    s.execute_unpaged(&ins, (3, "aaa", 30_i64)).await.unwrap();
    s.execute_unpaged(&ins, (4, "aaa", 30_i64)).await.unwrap();
    s.execute_unpaged(&ins, (4, "bbb", 30_i64)).await.unwrap();
    assert_eq!(value_of(&s, "t", 3).await, Some(Some("bbb".into())));
    assert_eq!(value_of(&s, "t", 4).await, Some(Some("bbb".into())));

    // A newer delete shadows an older write, arriving before or after it.
    s.execute_unpaged(&del, (50_i64, 5)).await.unwrap();
    s.execute_unpaged(&ins, (5, "x", 40_i64)).await.unwrap();
    s.execute_unpaged(&ins, (6, "x", 40_i64)).await.unwrap();
    s.execute_unpaged(&del, (50_i64, 6)).await.unwrap();
    assert_eq!(value_of(&s, "t", 5).await, None);
    assert_eq!(value_of(&s, "t", 6).await, None);

    // An older delete does not shadow a newer write, in either order.
    s.execute_unpaged(&del, (40_i64, 7)).await.unwrap();
    s.execute_unpaged(&ins, (7, "kept", 50_i64)).await.unwrap();
    s.execute_unpaged(&ins, (8, "kept", 50_i64)).await.unwrap();
    s.execute_unpaged(&del, (40_i64, 8)).await.unwrap();
    assert_eq!(value_of(&s, "t", 7).await, Some(Some("kept".into())));
    assert_eq!(value_of(&s, "t", 8).await, Some(Some("kept".into())));

    // A delete and a write at the same timestamp: the delete wins.
    s.execute_unpaged(&ins, (9, "tie", 60_i64)).await.unwrap();
    s.execute_unpaged(&del, (60_i64, 9)).await.unwrap();
    assert_eq!(value_of(&s, "t", 9).await, None);
}

#[tokio::test]
async fn short_ttls_expire() {
    let s = session_in("wr_ttl").await;
    run(&s, "CREATE TABLE t (k int PRIMARY KEY, v text, w text)").await;
    // Expiry counts whole seconds from the write's second, so a TTL of 2 ends between 1 and
    // 2 s after the write: a read that ends within a second of the moment before the write
    // must see the row. A slower round trip (a loaded machine) proves nothing either way and
    // is tried again on a new key, so the check never depends on the machine's speed.
    let mut seen = None;
    for k in 100..110 {
        let before = Instant::now();
        run(
            &s,
            &format!("INSERT INTO t (k, v) VALUES ({k}, 'gone') USING TTL 2"),
        )
        .await;
        let got = value_of(&s, "t", k).await;
        if before.elapsed() < Duration::from_secs(1) {
            seen = Some((k, got));
            break;
        }
    }
    let (k, got) = seen.expect("one write and read in 10 took under a second");
    assert_eq!(got, Some(Some("gone".into())), "k = {k} before its TTL");
    run(&s, "INSERT INTO t (k, v) VALUES (2, 'row stays')").await;
    run(&s, "UPDATE t USING TTL 2 SET w = 'cell goes' WHERE k = 2").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // The whole row expired (its marker had the TTL too); on k = 2 only w did.
    assert_eq!(value_of(&s, "t", k).await, None);
    let got: Vec<(Option<String>, Option<String>)> =
        rows(&s, "SELECT v, w FROM t WHERE k = 2", ()).await;
    assert_eq!(got, [(Some("row stays".into()), None)]);
}

#[tokio::test]
async fn collection_operations() {
    let s = session_in("wr_coll").await;
    run(
        &s,
        "CREATE TABLE c (k int PRIMARY KEY, l list<int>, st set<text>, m map<text, int>)",
    )
    .await;
    run(
        &s,
        "INSERT INTO c (k, l, st, m) VALUES (1, [1, 2], {'a'}, {'x': 1})",
    )
    .await;
    let append = s
        .prepare("UPDATE c SET l = l + ?, st = st + ?, m = m + ? WHERE k = ?")
        .await
        .unwrap();
    s.execute_unpaged(
        &append,
        (
            vec![3],
            BTreeSet::from(["b".to_owned()]),
            BTreeMap::from([("y".to_owned(), 2)]),
            1,
        ),
    )
    .await
    .unwrap();
    run(&s, "UPDATE c SET l = [0] + l WHERE k = 1").await;
    run(&s, "UPDATE c SET l[1] = 10 WHERE k = 1").await;
    run(
        &s,
        "UPDATE c SET l = l - [2], st = st - {'a'}, m['z'] = 3 WHERE k = 1",
    )
    .await;
    run(&s, "DELETE m['x'] FROM c WHERE k = 1").await;
    type Coll = (Vec<i32>, BTreeSet<String>, BTreeMap<String, i32>);
    let got: Vec<Coll> = rows(&s, "SELECT l, st, m FROM c WHERE k = 1", ()).await;
    assert_eq!(
        got,
        [(
            vec![0, 10, 3],
            BTreeSet::from(["b".to_owned()]),
            BTreeMap::from([("y".to_owned(), 2), ("z".to_owned(), 3)])
        )]
    );
    // Non-frozen collections have a writetime per element (Cassandra 5.0).
    let wt: Vec<(Vec<i64>,)> = rows(&s, "SELECT writetime(l) FROM c WHERE k = 1", ()).await;
    assert_eq!(wt[0].0.len(), 3);
    // Overwriting a whole collection drops the old elements.
    run(&s, "UPDATE c SET st = {'only'} WHERE k = 1").await;
    let got: Vec<(BTreeSet<String>,)> = rows(&s, "SELECT st FROM c WHERE k = 1", ()).await;
    assert_eq!(got, [(BTreeSet::from(["only".to_owned()]),)]);
}

fn applied(row: &Row) -> bool {
    matches!(row.columns[0], Some(CqlValue::Boolean(true)))
}

async fn lwt(s: &Session, cql: &str, values: impl scylla::serialize::row::SerializeRow) -> Row {
    let result = s
        .query_unpaged(cql, values)
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(
        result.column_specs().get_by_index(0).unwrap().name(),
        "[applied]"
    );
    result.single_row::<Row>().unwrap()
}

#[tokio::test]
async fn lightweight_transactions_return_applied() {
    let s = session_in("wr_lwt").await;
    run(
        &s,
        "CREATE TABLE acc (k int PRIMARY KEY, owner text, balance int)",
    )
    .await;
    let row = lwt(
        &s,
        "INSERT INTO acc (k, owner, balance) VALUES (1, 'ann', 10) IF NOT EXISTS",
        (),
    )
    .await;
    assert!(applied(&row));
    assert_eq!(row.columns.len(), 1);
    // Not applied: the current row comes back next to [applied].
    let row = lwt(
        &s,
        "INSERT INTO acc (k, owner, balance) VALUES (1, 'bob', 0) IF NOT EXISTS",
        (),
    )
    .await;
    assert!(!applied(&row));
    assert!(row.columns.contains(&Some(CqlValue::Text("ann".into()))));

    let cas = s
        .prepare("UPDATE acc SET balance = ? WHERE k = ? IF balance = ?")
        .await
        .unwrap();
    let r = s
        .execute_unpaged(&cas, (20, 1, 10))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<Row>()
        .unwrap();
    assert!(applied(&r));
    let r = s
        .execute_unpaged(&cas, (30, 1, 10))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<Row>()
        .unwrap();
    assert!(!applied(&r));
    assert_eq!(r.columns[1], Some(CqlValue::Int(20)), "current balance");

    let row = lwt(&s, "DELETE FROM acc WHERE k = 2 IF EXISTS", ()).await;
    assert!(!applied(&row));
    let row = lwt(&s, "DELETE FROM acc WHERE k = 1 IF EXISTS", ()).await;
    assert!(applied(&row));
    assert!(rows::<(i32,)>(&s, "SELECT k FROM acc", ()).await.is_empty());
}

#[tokio::test]
async fn batches_with_plain_and_prepared_children() {
    let s = session_in("wr_batch").await;
    run(
        &s,
        "CREATE TABLE t (k int, c int, v text, PRIMARY KEY (k, c))",
    )
    .await;
    run(&s, "CREATE TABLE n (k int PRIMARY KEY, hits counter)").await;
    let prepared = s
        .prepare("INSERT INTO t (k, c, v) VALUES (?, ?, ?)")
        .await
        .unwrap();

    for (kind, k) in [(BatchType::Logged, 1), (BatchType::Unlogged, 2)] {
        let mut b = Batch::new(kind);
        b.append_statement("INSERT INTO t (k, c, v) VALUES (?, 0, 'plain')");
        b.append_statement(prepared.clone());
        b.append_statement("UPDATE t SET v = 'updated' WHERE k = ? AND c = 2");
        b.set_timestamp(Some(1_234));
        s.batch(&b, ((k,), (k, 1, "prepared"), (k,))).await.unwrap();
    }
    for k in [1, 2] {
        let got: Vec<(i32, String, i64)> =
            rows(&s, "SELECT c, v, writetime(v) FROM t WHERE k = ?", (k,)).await;
        assert_eq!(
            got,
            [
                (0, "plain".into(), 1_234),
                (1, "prepared".into(), 1_234),
                (2, "updated".into(), 1_234)
            ]
        );
    }

    let bump = s
        .prepare("UPDATE n SET hits = hits + ? WHERE k = ?")
        .await
        .unwrap();
    let mut b = Batch::new(BatchType::Counter);
    b.append_statement(bump.clone());
    b.append_statement(bump);
    b.append_statement("UPDATE n SET hits = hits + 100 WHERE k = 1");
    s.batch(&b, ((Counter(1), 1), (Counter(2), 2), ()))
        .await
        .unwrap();
    let got: Vec<(i32, Counter)> = rows(&s, "SELECT k, hits FROM n", ()).await;
    let got: BTreeMap<i32, i64> = got.into_iter().map(|(k, c)| (k, c.0)).collect();
    assert_eq!(got, BTreeMap::from([(1, 101), (2, 2)]));

    // A counter update in a logged batch is refused, as Cassandra does.
    let mut b = Batch::new(BatchType::Logged);
    b.append_statement("UPDATE n SET hits = hits + 1 WHERE k = 1");
    let err = s.batch(&b, ((),)).await.unwrap_err();
    assert!(format!("{err:?}").contains("Invalid"), "{err:?}");
}
