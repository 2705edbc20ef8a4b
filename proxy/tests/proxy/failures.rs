//! A slow, failing or stopped target: what the client gets under each target-failure policy.
//!
//! Documented behaviour (issue 4, item 4 and 10):
//! - `strict`: a write the target fails gets the target's error (WRITE_TIMEOUT, OVERLOADED, …);
//!   a target that does not answer within `request_timeout` gets a WRITE_TIMEOUT from the proxy.
//! - `best-effort`: the client gets origin's success; the target's failure is recorded for repair.
//! - A backend connection that dies fails what was in flight on it at once (SERVER_ERROR naming
//!   the cluster), then the proxy closes the client connection, so the driver reconnects and
//!   gets fresh backend connections; while the cluster stays down, new connections are refused
//!   at STARTUP with a SERVER_ERROR.
//! - `secondary_consistency`: the secondary's copy of each write carries that level.

use std::time::Duration;

use ferry_cql::message::Response;
use ferry_cql::protocol::Consistency;
use ferry_cql::response::WriteType;
use ferry_cql::response::error::ErrorCode;
use ferry_proxy::settings::{ClusterId, TargetFailurePolicy};
use ferry_sim::server::faults::{self, FaultAction, RequestMatcher};
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};

use crate::harness::{Env, env_with, scylla};
use crate::raw::{Raw, error_code};

pub(crate) const KEYSPACE: &str =
    "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}";

pub(crate) async fn create_table(client: &Session) {
    client.query_unpaged(KEYSPACE, &[]).await.unwrap();
    client
        .query_unpaged("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", &[])
        .await
        .unwrap();
}

/// The keys of `ks.t` as one cluster holds them, read directly.
pub(crate) async fn keys(addr: std::net::SocketAddr) -> Vec<i32> {
    let session = scylla(addr).await;
    let rows = session
        .query_unpaged("SELECT k FROM ks.t", &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut keys: Vec<i32> = rows
        .rows::<(i32,)>()
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    keys.sort_unstable();
    keys
}

fn db_error(
    result: Result<scylla::response::query_result::QueryResult, ExecutionError>,
) -> (DbError, String) {
    match result {
        Err(ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, message))) => {
            (e, message)
        }
        other => panic!("expected a database error, got {other:?}"),
    }
}

/// Target faults for rows 1–3: an injected WRITE_TIMEOUT, OVERLOADED, and an answer held back
/// past the proxy's request timeout. Row 4 is not touched.
fn inject_target_faults(env: &Env) {
    let faults = env.target.node(0).faults();
    faults.add(
        RequestMatcher::any().text_contains("'wt'"),
        FaultAction::Error(faults::write_timeout(
            Consistency::One,
            1,
            WriteType::Simple,
        )),
    );
    faults.add(
        RequestMatcher::any().text_contains("'ovl'"),
        FaultAction::Error(faults::overloaded()),
    );
    faults.add(
        RequestMatcher::any().text_contains("'late'"),
        FaultAction::Delay(Duration::from_secs(60)),
    );
}

const WRITES: [&str; 4] = [
    "INSERT INTO ks.t (k, v) VALUES (1, 'wt')",
    "INSERT INTO ks.t (k, v) VALUES (2, 'ovl')",
    "INSERT INTO ks.t (k, v) VALUES (3, 'late')",
    "INSERT INTO ks.t (k, v) VALUES (4, 'fine')",
];

async fn env_with_policy(net: u8, policy: TargetFailurePolicy) -> Env {
    env_with(net, |c| {
        c.target_failure_policy = policy;
        // Long enough for every other request on a loaded machine; the held write (60 s)
        // always outlasts it.
        c.request_timeout = Duration::from_secs(5);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_gives_the_client_the_targets_failure() {
    let env = env_with_policy(45, TargetFailurePolicy::Strict).await;
    let client = scylla(env.proxy.local_addr()).await;
    create_table(&client).await;
    inject_target_faults(&env);

    let (e, _) = db_error(client.query_unpaged(WRITES[0], &[]).await);
    assert!(
        matches!(e, DbError::WriteTimeout { received: 0, .. }),
        "the target's WRITE_TIMEOUT: {e:?}"
    );
    let (e, _) = db_error(client.query_unpaged(WRITES[1], &[]).await);
    assert_eq!(e, DbError::Overloaded, "the target's OVERLOADED");
    let (e, message) = db_error(client.query_unpaged(WRITES[2], &[]).await);
    assert!(
        matches!(e, DbError::WriteTimeout { .. }),
        "the proxy's own timeout: {e:?}"
    );
    assert!(
        message.contains("target") && message.contains("did not answer within 5s"),
        "{message}"
    );
    client.query_unpaged(WRITES[3], &[]).await.unwrap();

    assert_eq!(keys(env.origin.addresses()[0]).await, [1, 2, 3, 4]);
    let target = keys(env.target.addresses()[0]).await;
    assert!(
        !target.contains(&1) && !target.contains(&2) && target.contains(&4),
        "{target:?}"
    );
    drop(client);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_effort_gives_the_client_origins_success() {
    let env = env_with_policy(46, TargetFailurePolicy::BestEffort).await;
    let client = scylla(env.proxy.local_addr()).await;
    create_table(&client).await;
    inject_target_faults(&env);

    for write in WRITES {
        client.query_unpaged(write, &[]).await.unwrap();
    }
    assert_eq!(keys(env.origin.addresses()[0]).await, [1, 2, 3, 4]);
    let target = keys(env.target.addresses()[0]).await;
    assert!(
        !target.contains(&1) && !target.contains(&2) && target.contains(&4),
        "{target:?}"
    );
    assert_eq!(
        env.proxy.repairs().pending(),
        3,
        "each write the target failed is recorded for repair"
    );
    drop(client);
    env.stop().await;
}

/// Stopping the target node fails the write in flight on it (no waiting for the timeout), closes
/// the client connection, refuses new ones while target is down, and works again once it is back
/// — for a raw connection and for the driver, which reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_target_gives_errors_not_hangs() {
    // A request timeout far beyond the test: an answer can only come from the lost connection.
    let env = env_with(47, |c| c.request_timeout = Duration::from_secs(600)).await;
    let proxy = env.proxy.local_addr();
    let driver = scylla(proxy).await;
    create_table(&driver).await;
    env.target.node(0).faults().add(
        RequestMatcher::any().text_contains("'in flight'"),
        FaultAction::Delay(Duration::from_secs(600)),
    );
    let mut raw = Raw::connect(proxy).await;
    raw.send_query(5, "INSERT INTO ks.t (k, v) VALUES (1, 'in flight')")
        .await;
    // Requests are taken in order: once a later one is answered, the write is in flight. (One
    // not yet taken when the connection dies gets OVERLOADED instead.)
    raw.send_query(6, "SELECT k FROM ks.t").await;
    assert_eq!(raw.recv_response().await.0, 6);
    env.target.node(0).stop().await;

    let (stream, answer) = raw.recv_response().await;
    assert_eq!(stream, 5);
    // The node's own "request abandoned" if it answered before closing, else the proxy's
    // "connection to target lost": a SERVER_ERROR either way.
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::ServerError),
        "{answer:?}"
    );
    assert!(
        raw.recv().await.is_none(),
        "the client connection is closed"
    );

    let mut refused = Raw::open(proxy).await;
    let answer = refused.startup().await;
    assert_eq!(
        error_code(&crate::raw::decode(&answer)),
        Some(ErrorCode::ServerError),
        "STARTUP while target is down"
    );
    assert!(
        driver
            .query_unpaged("INSERT INTO ks.t (k, v) VALUES (2, 'down')", &[])
            .await
            .is_err(),
        "the driver gets an error while target is down"
    );

    env.target.node(0).faults().clear();
    env.target.node(0).start().await.unwrap();
    let mut again = Raw::connect(proxy).await;
    assert!(
        matches!(
            again
                .query("INSERT INTO ks.t (k, v) VALUES (3, 'back')")
                .await,
            Response::Result(_)
        ),
        "a new connection works once target is back"
    );
    // The driver reconnects on its own schedule; each attempt gets an answer.
    let mut attempts = 0;
    while driver
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (4, 'driver')", &[])
        .await
        .is_err()
    {
        attempts += 1;
        assert!(attempts < 300, "the driver never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let target = keys(env.target.addresses()[0]).await;
    assert!(target.contains(&3) && target.contains(&4), "{target:?}");
    drop(driver);
    env.stop().await;
}

/// A raw client of `proxy` with the table `ks.t (k int, v text)`.
/// A backend connection idle for several timeouts sweeps only now and then (for its
/// heartbeat, at least once per timeout); a request sent on it to a target that never answers
/// still gets the proxy's WRITE_TIMEOUT about one timeout later, not at the next heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_long_idle_connection_still_times_out_on_time() {
    let timeout = Duration::from_millis(400);
    let env = env_with(82, |c| c.request_timeout = timeout).await;
    let mut raw = raw_with_table(env.proxy.local_addr()).await;
    env.target.node(0).faults().add(
        RequestMatcher::any().text_contains("'held'"),
        FaultAction::Delay(Duration::from_secs(600)),
    );
    // Idle for several timeouts (the heartbeat is 30 s away).
    tokio::time::sleep(timeout * 5).await;
    let started = std::time::Instant::now();
    raw.send_query(7, "INSERT INTO ks.t (k, v) VALUES (1, 'held')")
        .await;
    let (stream, answer) = raw.recv_response().await;
    let took = started.elapsed();
    assert_eq!(stream, 7);
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::WriteTimeout),
        "{answer:?}"
    );
    assert!(
        took >= timeout,
        "answered after {took:?}, before the timeout"
    );
    // A timeout and a tick (100 ms) at most, with room for a loaded machine.
    assert!(
        took < Duration::from_secs(5),
        "answered only after {took:?}"
    );
    env.target.node(0).faults().clear();
    env.stop().await;
}

pub(crate) async fn raw_with_table(proxy: std::net::SocketAddr) -> Raw {
    let mut raw = Raw::connect(proxy).await;
    for ddl in [KEYSPACE, "CREATE TABLE ks.t (k int PRIMARY KEY, v text)"] {
        assert!(matches!(raw.query(ddl).await, Response::Result(_)), "{ddl}");
    }
    raw
}

/// Inserts `(k, text)` into `ks.t` while target resets the connection under it: the client gets
/// the proxy's own SERVER_ERROR naming target.
pub(crate) async fn insert_reset_by_target(env: &Env, raw: &mut Raw, k: i32, text: &str) {
    env.target.node(0).faults().add_times(
        RequestMatcher::any().text_contains(&format!("'{text}'")),
        FaultAction::ResetConnection,
        Some(1),
    );
    let answer = raw
        .query(&format!("INSERT INTO ks.t (k, v) VALUES ({k}, '{text}')"))
        .await;
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::ServerError),
        "{answer:?}"
    );
    let Response::Error(e) = &answer else {
        unreachable!()
    };
    assert!(
        e.message.contains("the connection to target"),
        "{}",
        e.message
    );
}

/// The target resets the connection under a write without answering: the proxy's own
/// SERVER_ERROR names target, the client connection closes, and a new one works at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_backend_connection_fails_its_requests_and_ends_the_session() {
    let env = env_with(58, |c| {
        c.request_timeout = Duration::from_secs(600);
        // The client's own connection (shared.rs: a shared one).
        c.share_backend_connections = false;
    })
    .await;
    let proxy = env.proxy.local_addr();
    let mut raw = raw_with_table(proxy).await;
    insert_reset_by_target(&env, &mut raw, 1, "reset").await;
    assert!(
        raw.recv().await.is_none(),
        "the client connection is closed"
    );
    let mut again = Raw::connect(proxy).await;
    assert!(matches!(
        again
            .query("INSERT INTO ks.t (k, v) VALUES (2, 'again')")
            .await,
        Response::Result(_)
    ));
    assert_eq!(keys(env.target.addresses()[0]).await, [2]);
    env.stop().await;
}

/// `secondary_consistency` sets the level of the secondary's copy of every write — QUERY,
/// EXECUTE and BATCH — and leaves the primary's copy and reads at the client's level; the
/// secondary follows a live primary switch. Each cluster counts what it receives on `ks.t`
/// per level with zero-delay fault rules (each match uses one of the rule's activations).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secondary_copy_of_a_write_gets_the_configured_consistency() {
    const ACTIVATIONS: u64 = 1000;
    let env = env_with(68, |c| c.secondary_consistency = Some(Consistency::One)).await;
    let client = scylla(env.proxy.local_addr()).await;
    create_table(&client).await;
    let levels = [Consistency::One, Consistency::LocalQuorum];
    let counters = |env: &Env| {
        [&env.origin, &env.target].map(|cluster| {
            let faults = cluster.node(0).faults();
            levels.map(|level| {
                let matcher = RequestMatcher::any().table("ks", "t").consistency(level);
                let action = FaultAction::Delay(Duration::ZERO);
                faults.add_times(matcher, action, Some(ACTIVATIONS))
            })
        })
    };
    let rules = counters(&env);
    // Requests each cluster received on ks.t as [at ONE, at LOCAL_QUORUM] (the driver's
    // default).
    let received = |env: &Env| {
        [&env.origin, &env.target]
            .iter()
            .zip(&rules)
            .map(|(cluster, ids)| {
                let listed = cluster.node(0).faults().rules();
                ids.map(|id| {
                    let left = listed.iter().find(|r| r.id == id).unwrap().remaining;
                    ACTIVATIONS - left.unwrap()
                })
            })
            .collect::<Vec<_>>()
    };
    let insert = client
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    let mut batch = scylla::statement::batch::Batch::default();
    batch.append_statement(insert.clone());
    client
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (1, 'query')", &[])
        .await
        .unwrap();
    client
        .execute_unpaged(&insert, (2, "execute"))
        .await
        .unwrap();
    client.batch(&batch, ((3, "batch"),)).await.unwrap();
    client
        .query_unpaged("SELECT * FROM ks.t WHERE k = 1", &[])
        .await
        .unwrap();
    assert_eq!(received(&env), [[0, 4], [3, 0]], "origin primary");

    env.proxy.live().set_primary(ClusterId::Target);
    client
        .execute_unpaged(&insert, (4, "execute"))
        .await
        .unwrap();
    assert_eq!(received(&env), [[1, 4], [3, 1]], "target primary");
    assert_eq!(keys(env.origin.addresses()[0]).await, [1, 2, 3, 4]);
    assert_eq!(keys(env.target.addresses()[0]).await, [1, 2, 3, 4]);
    drop(client);
    env.stop().await;
}
