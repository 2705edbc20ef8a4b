//! Backend connections shared by client connections (`share_backend_connections`, on in every
//! test of this binary): who shares, what stays on a client's own connections, and the
//! per-client in-flight limit on a shared pair.

use std::time::Duration;

use ferry_cql::message::{Request, Response};
use ferry_cql::request::{Execute, Prepare, QueryParameters};
use ferry_cql::response::error::ErrorCode;
use ferry_cql::response::result::ResultBody;
use ferry_proxy::config::Secret;
use ferry_proxy::proxy::Proxy;
use ferry_sim::server::{FaultAction, RequestMatcher};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::admin::http;
use crate::failures::{KEYSPACE, create_table, insert_reset_by_target, raw_with_table};
use crate::harness::{Env, env, env_with, proxy_config, scylla, sim};
use crate::limits::{first_two_get_rows, slow_reads, slow_table, third_slow_read_overloaded};
use crate::raw::{Raw, error_code, is_rows};

async fn metrics(env: &Env) -> String {
    http(env.proxy.admin_addr(), "GET", "/metrics", None, "")
        .await
        .1
}

fn metric(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(-1)
}

/// Waits (30 s at most, then fails showing `what`) until `done` holds for `/metrics`.
async fn until_metrics(env: &Env, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(env).await;
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 30 s for {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pairs(env: &Env, n: i64) {
    until_metrics(env, &format!("{n} shared pairs"), |m| {
        metric(m, "ferry_proxy_shared_backend_pairs") == n
    })
    .await;
}

async fn count(session: &Session, query: &str) -> Result<i64, String> {
    let rows = session
        .query_unpaged(query, &[])
        .await
        .map_err(|e| e.to_string())?
        .into_rows_result()
        .map_err(|e| e.to_string())?;
    let (n,): (i64,) = rows.first_row().map_err(|e| e.to_string())?;
    Ok(n)
}

/// Two driver sessions without a keyspace share one pair (each cluster sees one connection
/// more than the proxy has clients), their writes land on both clusters, and a third session
/// that sets a keyspace resolves unqualified names in it while the keyspace never reaches the
/// shared connections. The pair closes with its last client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_sessions_share_one_pair_and_a_keyspace_stays_with_its_session() {
    let env = env(72).await;
    let a = scylla(env.proxy.local_addr()).await;
    create_table(&a).await;
    pairs(&env, 1).await;
    let b = scylla(env.proxy.local_addr()).await;
    let nodes = [env.origin.node(0), env.target.node(0)];
    until_metrics(
        &env,
        "one backend connection per client, plus the pair",
        |m| {
            let clients = metric(m, "ferry_proxy_client_connections");
            clients >= 2
                && nodes
                    .iter()
                    .all(|n| n.connection_count() as i64 == clients + 1)
        },
    )
    .await;

    let insert = a
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    for k in 0..20i32 {
        let session = if k % 2 == 0 { &a } else { &b };
        session
            .execute_unpaged(&insert, (k, format!("v{k}")))
            .await
            .unwrap();
    }
    assert_eq!(count(&b, "SELECT count(*) FROM ks.t").await, Ok(20));

    let c = SessionBuilder::new()
        .known_node_addr(env.proxy.local_addr())
        .use_keyspace("ks", false)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM t").await, Ok(20));
    c.query_unpaged("INSERT INTO t (k, v) VALUES (100, 'c')", &[])
        .await
        .unwrap();
    let unqualified = count(&a, "SELECT count(*) FROM t").await;
    assert!(
        unqualified.as_ref().is_err_and(|e| e.contains("keyspace")),
        "a session that never set a keyspace must not see another's: {unqualified:?}"
    );

    for node in [env.origin.addresses()[0], env.target.addresses()[0]] {
        let direct = scylla(node).await;
        assert_eq!(count(&direct, "SELECT count(*) FROM ks.t").await, Ok(21));
    }
    drop((a, b, c));
    pairs(&env, 0).await;
    env.stop().await;
}

/// Sessions logged in with different credentials never share; the same credentials do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_sessions_with_the_same_credentials_share() {
    let net = 73;
    let users = vec![
        ("alice".to_owned(), "apass".to_owned()),
        ("bob".to_owned(), "bpass".to_owned()),
    ];
    let origin = sim(
        &format!("127.0.{net}.1"),
        vec![("ouser".into(), "opass".into())],
    )
    .await;
    let target = sim(&format!("127.0.{net}.2"), users).await;
    let mut config = proxy_config(net, origin.addresses()[0], target.addresses()[0]);
    config.origin.username = Some("ouser".into());
    config.origin.password = Some(Secret::new("opass"));
    let env = Env {
        proxy: Proxy::start(config).await.unwrap(),
        origin,
        target,
    };
    let addr = env.proxy.local_addr();
    let login = |user: &'static str, pass: &'static str| async move {
        SessionBuilder::new()
            .known_node_addr(addr)
            .user(user, pass)
            .connection_timeout(Duration::from_secs(5))
            .build()
            .await
    };
    let alice = login("alice", "apass").await.unwrap();
    create_table(&alice).await;
    pairs(&env, 1).await;
    let bob = login("bob", "bpass").await.unwrap();
    pairs(&env, 2).await;
    let alice_again = login("alice", "apass").await.unwrap();
    for session in [&alice, &bob, &alice_again] {
        session
            .query_unpaged("INSERT INTO ks.t (k, v) VALUES (1, 'x')", &[])
            .await
            .unwrap();
        assert_eq!(count(session, "SELECT count(*) FROM ks.t").await, Ok(1));
    }
    let text = metrics(&env).await;
    assert_eq!(
        metric(&text, "ferry_proxy_shared_backend_pairs"),
        2,
        "alice's second session joins her pair:\n{text}"
    );
    assert!(
        login("alice", "wrong").await.is_err(),
        "a wrong password is refused, shared pair or not"
    );
    env.stop().await;
}

/// On a shared pair the stream ids are not one client's, so each client's in-flight limit is
/// counted per client: its third concurrent request gets OVERLOADED at once, while another
/// client on the same pair is not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_keeps_its_in_flight_limit_on_a_shared_pair() {
    let env = env_with(74, |c| c.max_in_flight_per_connection = 2).await;
    let mut raw = Raw::connect(env.proxy.local_addr()).await;
    slow_table(&env, &mut raw).await;
    pairs(&env, 1).await;
    let mut other = Raw::connect(env.proxy.local_addr()).await;
    let message = third_slow_read_overloaded(&mut raw).await;
    assert!(
        message.contains("2 requests of this connection are in flight"),
        "{message}"
    );
    slow_reads(&mut other, 2).await;
    first_two_get_rows(&mut raw).await;
    first_two_get_rows(&mut other).await;
    env.stop().await;
}

/// A shared connection reset under a write fails that write with the proxy's SERVER_ERROR
/// naming the cluster, as a client's own connection would; the client stays connected, its next
/// request opens a fresh pair (no new client needed), and the one after goes over it: a second
/// reset fails it the same way, and the client still stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_shared_connection_fails_its_requests_and_the_clients_go_on() {
    let env = env_with(75, |c| c.request_timeout = Duration::from_secs(600)).await;
    let proxy = env.proxy.local_addr();
    let mut raw = raw_with_table(proxy).await;
    pairs(&env, 1).await;
    for (k, text) in [(1, "reset"), (3, "again")] {
        insert_reset_by_target(&env, &mut raw, k, text).await;
        pairs(&env, 0).await;
        // The old pair's origin connection outlived its partner: it closes by itself, though
        // the client, idle, has not let go of the old pair yet.
        let origin = env.origin.node(0);
        until_metrics(&env, "the client's own connection alone on origin", |_| {
            origin.connection_count() == 1
        })
        .await;
        let same = format!("INSERT INTO ks.t (k, v) VALUES ({}, 'same client')", k + 1);
        assert!(matches!(raw.query(&same).await, Response::Result(_)));
        pairs(&env, 1).await;
    }
    let mut again = Raw::connect(proxy).await;
    assert!(matches!(
        again
            .query("INSERT INTO ks.t (k, v) VALUES (5, 'new client')")
            .await,
        Response::Result(_)
    ));
    let text = metrics(&env).await;
    assert_eq!(
        metric(&text, "ferry_proxy_shared_backend_pairs"),
        1,
        "{text}"
    );
    let direct = scylla(env.target.addresses()[0]).await;
    assert_eq!(count(&direct, "SELECT count(*) FROM ks.t").await, Ok(3));
    env.stop().await;
}

/// After a shared connection is reset, the same driver sessions share again without any
/// client reconnecting: a fresh pair opens, the old pair's surviving connection closes (each
/// cluster is back at one connection per client plus the pair), and every answer is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_sessions_go_back_to_a_fresh_pair_after_a_reset() {
    let env = env_with(80, |c| c.request_timeout = Duration::from_secs(600)).await;
    let a = scylla(env.proxy.local_addr()).await;
    create_table(&a).await;
    let b = scylla(env.proxy.local_addr()).await;
    let nodes = [env.origin.node(0), env.target.node(0)];
    let sharing = |m: &str| {
        let clients = metric(m, "ferry_proxy_client_connections");
        clients >= 2
            && metric(m, "ferry_proxy_shared_backend_pairs") == 1
            && nodes
                .iter()
                .all(|n| n.connection_count() as i64 == clients + 1)
    };
    let before = until_metrics(&env, "one pair besides the clients' own", sharing).await;
    let clients = metric(&before, "ferry_proxy_client_connections");
    env.target.node(0).faults().add_times(
        RequestMatcher::any().text_contains("'reset'"),
        FaultAction::ResetConnection,
        Some(1),
    );
    let reset = a
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (0, 'reset')", &[])
        .await;
    let reset = reset.map(|_| ()).map_err(|e| e.to_string());
    assert!(
        reset
            .as_ref()
            .is_err_and(|e| e.contains("the connection to target")),
        "{reset:?}"
    );
    let insert = a
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    let select = b.prepare("SELECT v FROM ks.t WHERE k = ?").await.unwrap();
    let sessions = [&a, &b];
    for k in 1..=20i32 {
        sessions[k as usize % 2]
            .execute_unpaged(&insert, (k, format!("v{k}")))
            .await
            .unwrap();
    }
    let after = until_metrics(&env, "a fresh pair for the same clients", sharing).await;
    assert_eq!(
        metric(&after, "ferry_proxy_client_connections"),
        clients,
        "no client reconnected:\n{after}"
    );
    for k in 1..=20i32 {
        let rows = sessions[k as usize % 2]
            .execute_unpaged(&select, (k,))
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let (v,): (String,) = rows.first_row().unwrap();
        assert_eq!(v, format!("v{k}"));
    }
    let text = metrics(&env).await;
    assert!(sharing(&text), "still one pair:\n{text}");
    let direct = scylla(env.target.addresses()[0]).await;
    assert_eq!(count(&direct, "SELECT count(*) FROM ks.t").await, Ok(20));
    env.stop().await;
}

/// A prepared `USE` sets the keyspace on the client's own connections, as a QUERY `USE` does:
/// the client resolves unqualified names, another client on the shared pair does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_use_keeps_its_keyspace_off_the_shared_pair() {
    let env = env(76).await;
    let mut raw = Raw::connect(env.proxy.local_addr()).await;
    for ddl in [KEYSPACE, "CREATE TABLE ks.t (k int PRIMARY KEY, v text)"] {
        assert!(matches!(raw.query(ddl).await, Response::Result(_)), "{ddl}");
    }
    pairs(&env, 1).await;
    let mut other = Raw::connect(env.proxy.local_addr()).await;
    raw.send(1, &Request::Prepare(Prepare::new("USE ks"))).await;
    let (_, prepared) = raw.recv_response().await;
    let Response::Result(ResultBody::Prepared(prepared)) = prepared else {
        panic!("{prepared:?}")
    };
    let execute = Execute {
        id: prepared.id,
        result_metadata_id: None,
        params: QueryParameters::default(),
    };
    raw.send(2, &Request::Execute(execute)).await;
    let (_, used) = raw.recv_response().await;
    assert!(matches!(used, Response::Result(_)), "{used:?}");
    let mine = raw.query("SELECT count(*) FROM t").await;
    assert!(is_rows(&mine), "{mine:?}");
    let theirs = other.query("SELECT count(*) FROM t").await;
    assert_eq!(error_code(&theirs), Some(ErrorCode::Invalid), "{theirs:?}");
    env.stop().await;
}
