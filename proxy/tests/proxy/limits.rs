//! Limits and edges, checked on raw connections: stream ids per backend connection, graceful
//! shutdown, malformed input, and dual-async reads that must not hold the client up.

use std::time::Duration;

use ferry_cql::message::Response;
use ferry_cql::response::error::ErrorCode;
use ferry_proxy::settings::ReadMode;
use ferry_sim::server::{FaultAction, RequestMatcher};

use crate::failures::{KEYSPACE, create_table};
use crate::harness::{Env, env, env_with, scylla};
use crate::raw::{Raw, error_code, is_rows};

/// Two stream ids per backend connection and a slow origin: the third concurrent read gets
/// OVERLOADED at once, the first two their rows. The delay is long so that "at once" holds
/// even when a loaded machine stalls the proxy for seconds between the three requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_id_exhaustion_answers_overloaded() {
    let env = env_with(51, |c| {
        c.max_in_flight_per_connection = 2;
        // The stream ids of the client's own connections (shared.rs checks shared ones).
        c.share_backend_connections = false;
    })
    .await;
    let mut raw = Raw::connect(env.proxy.local_addr()).await;
    slow_table(&env, &mut raw).await;
    let message = third_slow_read_overloaded(&mut raw).await;
    assert!(message.contains("all 2 stream ids"), "{message}");
    first_two_get_rows(&mut raw).await;
    env.stop().await;
}

/// `ks.slow`, whose reads origin answers after 5 s: long enough that "at once" holds even when
/// a loaded machine stalls the proxy for seconds between requests.
pub(crate) async fn slow_table(env: &Env, raw: &mut Raw) {
    assert!(matches!(raw.query(KEYSPACE).await, Response::Result(_)));
    assert!(matches!(
        raw.query("CREATE TABLE ks.slow (k int PRIMARY KEY)").await,
        Response::Result(_)
    ));
    env.origin.node(0).faults().add(
        RequestMatcher::any().table("ks", "slow"),
        FaultAction::Delay(Duration::from_secs(5)),
    );
}

/// Sends reads of `ks.slow` on streams 1..=`n`.
pub(crate) async fn slow_reads(raw: &mut Raw, n: i16) {
    for stream in 1..=n {
        raw.send_query(stream, "SELECT k FROM ks.slow WHERE k = 1")
            .await;
    }
}

/// Three slow reads with a limit of two in flight: the third is answered first, with
/// OVERLOADED; its message.
pub(crate) async fn third_slow_read_overloaded(raw: &mut Raw) -> String {
    slow_reads(raw, 3).await;
    let (stream, answer) = raw.recv_response().await;
    assert_eq!(stream, 3, "the request over the limit is answered first");
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::Overloaded),
        "{answer:?}"
    );
    let Response::Error(e) = answer else {
        unreachable!()
    };
    e.message
}

/// The answers to streams 1 and 2, both rows.
pub(crate) async fn first_two_get_rows(raw: &mut Raw) {
    let mut rest = vec![raw.recv_response().await, raw.recv_response().await];
    rest.sort_by_key(|(s, _)| *s);
    assert_eq!(rest.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
    assert!(rest.iter().all(|(_, r)| is_rows(r)), "{rest:?}");
}

/// Shutdown with a read in flight: new requests get OVERLOADED, the read still gets its rows,
/// then the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_in_flight_requests() {
    // The grace is far above the read's delay, and the delay far above the time the proxy
    // takes to begin shutting down on a loaded machine.
    let env = env_with(56, |c| c.shutdown_grace = Duration::from_secs(60)).await;
    let mut raw = Raw::connect(env.proxy.local_addr()).await;
    assert!(matches!(raw.query(KEYSPACE).await, Response::Result(_)));
    assert!(matches!(
        raw.query("CREATE TABLE ks.slow (k int PRIMARY KEY)").await,
        Response::Result(_)
    ));
    env.origin.node(0).faults().add(
        RequestMatcher::any().table("ks", "slow"),
        FaultAction::Delay(Duration::from_secs(5)),
    );
    raw.send_query(7, "SELECT k FROM ks.slow WHERE k = 1").await;
    // Requests are taken in order: once a later one is answered, the slow one is in flight.
    raw.send_query(8, "SELECT k FROM ks.t0 WHERE k = 1").await;
    assert_eq!(raw.recv_response().await.0, 8);
    let crate::harness::Env {
        origin,
        target,
        proxy,
    } = env;
    let stopping = tokio::spawn(proxy.shutdown());

    // Shutdown begins asynchronously: ask until the answer says so (ks.t0 does not exist, so
    // the answer before that is an error from origin, at once).
    let mut in_flight = None;
    let mut stream = 100;
    loop {
        raw.send_query(stream, "SELECT k FROM ks.t0 WHERE k = 1")
            .await;
        let (answered, response) = loop {
            let (s, r) = raw.recv_response().await;
            if s == 7 {
                in_flight = Some(r);
                continue;
            }
            break (s, r);
        };
        assert_eq!(answered, stream);
        if error_code(&response) == Some(ErrorCode::Overloaded) {
            break;
        }
        assert!(stream < 3100, "shutdown never began");
        stream += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        in_flight.is_none(),
        "the in-flight read was not cut short: {in_flight:?} after {stream}"
    );
    let (s, answer) = raw.recv_response().await;
    assert_eq!(s, 7);
    assert!(is_rows(&answer), "the in-flight read finishes: {answer:?}");
    assert!(raw.recv().await.is_none(), "then the connection closes");
    stopping.await.unwrap();
    origin.shutdown().await;
    target.shutdown().await;
}

/// Garbage, an unknown opcode, an oversized length and a v6 header each get a PROTOCOL_ERROR;
/// a driver connected alongside keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_protocol_errors() {
    let env = env(57).await;
    let proxy = env.proxy.local_addr();
    let driver = scylla(proxy).await;
    create_table(&driver).await;

    // An HTTP request: 'G' is no protocol version.
    let mut garbage = Raw::open(proxy).await;
    garbage
        .send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let env_answer = garbage.recv().await.expect("an answer to garbage");
    let answer = crate::raw::decode(&env_answer);
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::ProtocolError),
        "{answer:?}"
    );
    assert!(garbage.recv().await.is_none(), "then the connection closes");

    // v6 (a future version) before STARTUP: answered in a version the client can read.
    let mut v6 = Raw::open(proxy).await;
    v6.send_bytes(&[0x06, 0, 0, 1, 0x05, 0, 0, 0, 0]).await;
    let env_answer = v6.recv().await.expect("an answer to v6");
    assert_eq!(env_answer.stream(), 1);
    let answer = crate::raw::decode(&env_answer);
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::ProtocolError),
        "{answer:?}"
    );
    let Response::Error(e) = &answer else {
        unreachable!()
    };
    assert!(e.message.contains("(6)"), "{}", e.message);

    // An unknown opcode on an established connection: the stream gets the error.
    let mut unknown = Raw::connect(proxy).await;
    unknown.send_bytes(&[0x04, 0, 0, 9, 0x42, 0, 0, 0, 0]).await;
    let (stream, answer) = unknown.recv_response().await;
    assert_eq!(stream, 9);
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::ProtocolError),
        "{answer:?}"
    );

    // A length beyond the protocol's 256 MiB.
    let mut oversized = Raw::connect(proxy).await;
    oversized
        .send_bytes(&[0x04, 0, 0, 3, 0x07, 0x7f, 0xff, 0xff, 0xff])
        .await;
    let (stream, answer) = oversized.recv_response().await;
    assert_eq!(stream, 3);
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::ProtocolError),
        "{answer:?}"
    );

    driver
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (1, 'still fine')", &[])
        .await
        .unwrap();
    let mut fresh = Raw::connect(proxy).await;
    assert!(is_rows(&fresh.query("SELECT k FROM ks.t").await));
    drop(driver);
    env.stop().await;
}

/// Dual-async reads: the client has its rows while the secondary's answer is still held back
/// (for longer than a loaded machine takes to answer the client); the comparison lands later
/// and counts the mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_async_reads_do_not_wait_for_the_secondary() {
    let env = env_with(52, |c| {
        c.read_mode = ReadMode::DualAsync;
        c.request_timeout = Duration::from_secs(30);
    })
    .await;
    let client = scylla(env.proxy.local_addr()).await;
    create_table(&client).await;
    let origin = scylla(env.origin.addresses()[0]).await;
    origin
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (1, 'origin only')", &[])
        .await
        .unwrap();
    env.target.node(0).faults().add(
        RequestMatcher::any().table("ks", "t"),
        FaultAction::Delay(Duration::from_secs(10)),
    );
    let rows = client
        .query_unpaged("SELECT v FROM ks.t WHERE k = 1", &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(rows.rows_num(), 1);
    assert_eq!(
        env.proxy.dual_read_counts("ks.t"),
        (0, 0),
        "the client was answered before the secondary"
    );
    let mut polls = 0;
    while env.proxy.dual_read_counts("ks.t") == (0, 0) {
        polls += 1;
        assert!(polls < 1200, "the comparison never happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.proxy.dual_read_counts("ks.t"), (1, 1), "one mismatch");
    drop(client);
    env.stop().await;
}
