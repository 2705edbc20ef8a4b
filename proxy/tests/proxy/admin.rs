//! The proxy's admin HTTP server with a real driver connected: live switches, dual-read
//! counts, the bearer token, metric names and readiness. Addresses 127.0.40–44.x.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ferry_cql::statement::classify::StatementKind;
use ferry_proxy::config::Secret;
use ferry_proxy::settings::TargetFailurePolicy;
use ferry_sim::server::faults;
use ferry_sim::server::{FaultAction, RequestMatcher};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use scylla::client::session::Session;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::harness::{Env, env, env_with, scylla};

/// One HTTP/1 request on a fresh connection: status and body text.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn json(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(addr, method, path, None, body).await;
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (status, value)
}

async fn ok_json(addr: SocketAddr, method: &str, path: &str, body: &str) -> Value {
    let (status, value) = json(addr, method, path, body).await;
    assert_eq!(status, 200, "{method} {path} {body}: {value}");
    value
}

async fn schema(client: &Session) {
    client
        .query_unpaged(
            "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            &[],
        )
        .await
        .unwrap();
    client
        .query_unpaged("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", &[])
        .await
        .unwrap();
}

async fn rows(client: &Session, query: &str) -> usize {
    client
        .query_unpaged(query, &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows_num()
}

/// A row written straight to origin: present on one cluster only.
async fn origin_only(env: &Env, k: i32) {
    let origin = scylla(env.origin.addresses()[0]).await;
    origin
        .query_unpaged(
            format!("INSERT INTO ks.t (k, v) VALUES ({k}, 'origin only')"),
            &[],
        )
        .await
        .unwrap();
}

/// Polls `/status` until `done` holds (the secondary's half of a dual read is compared in the
/// background, after the client already has its answer). Gives up after 1500 polls (at least
/// 30 s: a loaded machine may take seconds).
async fn status_until(admin: SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1500 {
        let status = ok_json(admin, "GET", "/status", "").await;
        if done(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/status never reached the expected state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_primary_moves_reads_live_without_reconnecting() {
    let env = env(40).await;
    let admin = env.proxy.admin_addr();
    let client = scylla(env.proxy.local_addr()).await;
    schema(&client).await;
    origin_only(&env, 1).await;
    let query = "SELECT v FROM ks.t WHERE k = 1";
    assert_eq!(rows(&client, query).await, 1, "origin is primary");
    let before = ok_json(admin, "GET", "/status", "").await;
    assert_eq!(
        ok_json(admin, "GET", "/primary", "").await["primary"],
        "origin"
    );

    let switched = ok_json(admin, "PUT", "/primary", r#"{"primary": "target"}"#).await;
    assert_eq!(switched["primary"], "target");
    assert_eq!(switched["previous"], "origin");
    assert_eq!(rows(&client, query).await, 0, "target is primary now");
    assert_eq!(
        ok_json(admin, "GET", "/primary", "").await["primary"],
        "target"
    );
    // zdm-proxy's spelling is accepted too.
    ok_json(admin, "PUT", "/primary", r#"{"primary": "ORIGIN"}"#).await;
    assert_eq!(rows(&client, query).await, 1);
    let after = ok_json(admin, "GET", "/status", "").await;
    assert_eq!(
        before["client_connections"], after["client_connections"],
        "the driver kept its connections"
    );

    // Mistakes are clear 4xx JSON errors, and change nothing.
    let (status, e) = json(admin, "PUT", "/primary", r#"{"primary": "both"}"#).await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("\"both\""), "{e}");
    let (status, e) = json(admin, "PUT", "/primary", "{primary: target").await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("expected"), "{e}");
    let (status, _) = json(admin, "PUT", "/primary", r#"{"primary": "target", "x": 1}"#).await;
    assert_eq!(status, 400, "unknown fields are refused");
    let (status, _) = json(admin, "PUT", "/read-mode", r#"{"read_mode": "sometimes"}"#).await;
    assert_eq!(status, 400);
    let (status, _) = json(admin, "DELETE", "/primary", "").await;
    assert_eq!(status, 405);
    let (status, _) = json(admin, "GET", "/nothing", "").await;
    assert_eq!(status, 404);
    assert_eq!(
        ok_json(admin, "GET", "/primary", "").await["primary"],
        "origin"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_async_reads_are_compared_and_mismatches_counted() {
    let env = env(41).await;
    let admin = env.proxy.admin_addr();
    let client = scylla(env.proxy.local_addr()).await;
    schema(&client).await;
    client
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (1, 'both')", &[])
        .await
        .unwrap();
    origin_only(&env, 2).await;

    // Primary-only: nothing is mirrored.
    rows(&client, "SELECT v FROM ks.t WHERE k = 1").await;
    let set = ok_json(admin, "PUT", "/read-mode", r#"{"read_mode": "dual-async"}"#).await;
    assert_eq!(set["previous"], "primary-only");
    assert_eq!(
        ok_json(admin, "GET", "/read-mode", "").await["read_mode"],
        "dual-async"
    );
    assert_eq!(rows(&client, "SELECT v FROM ks.t WHERE k = 1").await, 1);
    let status = status_until(admin, |s| s["dual_reads"]["compared"] == 1).await;
    assert_eq!(status["dual_reads"]["tables"]["ks.t"]["mismatches"], 0);
    assert_eq!(status["read_mode"], "dual-async");

    // The row only origin has: the client gets origin's answer, the comparison counts a
    // mismatch.
    assert_eq!(rows(&client, "SELECT v FROM ks.t WHERE k = 2").await, 1);
    let status = status_until(admin, |s| s["dual_reads"]["compared"] == 2).await;
    let table = &status["dual_reads"]["tables"]["ks.t"];
    assert_eq!(
        (table["compared"].clone(), table["mismatches"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(env.proxy.dual_read_counts("ks.t"), (2, 1));

    let (code, metrics) = http(admin, "GET", "/metrics", None, "").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("ferry_proxy_dual_reads_compared_total{table=\"ks.t\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_proxy_dual_read_mismatches_total{table=\"ks.t\"} 1"));
    // Both halves were sent: the mirrored read counts as a read on target too.
    assert!(metrics.contains("ferry_proxy_requests_total{cluster=\"target\",kind=\"read\"} 2"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_guards_the_switches() {
    let env = env_with(42, |c| {
        c.admin.bearer_token = Some(Secret::new("s3cret"));
        c.admin.metrics_enabled = false;
    })
    .await;
    let admin = env.proxy.admin_addr();
    let body = r#"{"primary": "target"}"#;
    let (status, text) = http(admin, "PUT", "/primary", None, body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("Authorization: Bearer"), "{text}");
    let (status, _) = http(admin, "PUT", "/primary", Some("guess"), body).await;
    assert_eq!(status, 401);
    let (status, _) = http(admin, "PUT", "/read-mode", Some("s3cre"), "{}").await;
    assert_eq!(status, 401, "the token is checked before the body");
    assert_eq!(env.proxy.live().primary().name(), "origin");

    let (status, text) = http(admin, "PUT", "/primary", Some("s3cret"), body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(env.proxy.live().primary().name(), "target");
    // Reads need no token.
    assert_eq!(
        ok_json(admin, "GET", "/primary", "").await["primary"],
        "target"
    );
    let (status, text) = http(admin, "GET", "/metrics", None, "").await;
    assert_eq!(status, 404, "metrics are disabled: {text}");
    let (status, text) = http(admin, "GET", "/health/liveness", None, "").await;
    assert_eq!((status, text.trim()), (200, "OK"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_the_traffic_and_best_effort_failures() {
    let env = env_with(43, |c| {
        c.target_failure_policy = TargetFailurePolicy::BestEffort;
    })
    .await;
    let admin = env.proxy.admin_addr();
    let client = scylla(env.proxy.local_addr()).await;
    schema(&client).await;
    let insert = client
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    for k in 0..5i32 {
        client.execute_unpaged(&insert, (k, "v")).await.unwrap();
    }
    rows(&client, "SELECT * FROM ks.t").await;
    // A statement the clusters refuse: an ERROR answer labelled by its code.
    assert!(
        client
            .query_unpaged("SELECT * FROM ks.missing", &[])
            .await
            .is_err()
    );

    // Best effort: a write the target refuses is acknowledged and recorded for repair.
    env.target.node(0).faults().add(
        RequestMatcher::any().kind(StatementKind::Insert),
        FaultAction::Error(faults::overloaded()),
    );
    client.execute_unpaged(&insert, (9i32, "v")).await.unwrap();

    let (status, text) = http(admin, "GET", "/metrics", None, "").await;
    assert_eq!(status, 200);
    for expected in [
        "ferry_proxy_requests_total{cluster=\"origin\",kind=\"write\"} 6",
        "ferry_proxy_requests_total{cluster=\"target\",kind=\"write\"} 6",
        "ferry_proxy_request_duration_seconds_count{cluster=\"origin\",kind=\"write\"} 6",
        "ferry_proxy_request_failures_total{cluster=\"target\",error=\"overloaded\",kind=\"write\"} 1",
        "ferry_proxy_target_write_failures_total{table=\"ks.t\"} 1",
        "ferry_proxy_repairs_pending 1",
        "ferry_proxy_request_failures_total{cluster=\"origin\",error=\"invalid\",kind=\"read\"} 1",
        "ferry_proxy_client_connections ",
        "ferry_proxy_backend_connections{cluster=\"target\"} ",
        "ferry_proxy_inflight_requests{cluster=\"origin\"} 0",
        "ferry_proxy_stream_ids_in_use{cluster=\"origin\"} 0",
        "ferry_proxy_prepared_cache_entries ",
        "ferry_proxy_prepared_cache_misses_total 0",
        "ferry_proxy_primary{cluster=\"origin\"} 1",
        "ferry_proxy_cluster_ready{cluster=\"target\"} 1",
        "# HELP ferry_proxy_request_duration_seconds ",
        "# TYPE ferry_proxy_request_duration_seconds histogram",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("ferry_proxy_"), "{line}");
    }
    // The driver prepares its own schema queries too: /metrics and /status read one cache.
    let status = ok_json(admin, "GET", "/status", "").await;
    let entries = status["prepared_cache"]["entries"].as_u64().unwrap();
    assert!(entries >= 1);
    assert!(text.contains(&format!("ferry_proxy_prepared_cache_entries {entries}\n")));
    assert_eq!(status["target_failure_policy"], "best-effort");
    assert_eq!(status["repairs"]["pending"], 1);
    assert_eq!(status["repairs"]["tables"]["ks.t"]["pending"], 1);
    let batch = env.proxy.repairs().drain();
    assert_eq!(batch.failures.len(), 1);
    assert_eq!(batch.failures[0].table.as_deref(), Some("ks.t"));
    assert_eq!(env.proxy.repairs().pending(), 0, "drained");
    assert!(status["protocol_versions"].as_array().unwrap().len() >= 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_down_with_a_stopped_node_and_up_after_restart() {
    let env = env_with(44, |c| {
        // Re-probes of the DOWN cluster stay frequent, so the test does not wait long.
        c.reconnect.max_delay = Duration::from_millis(200);
    })
    .await;
    let admin = env.proxy.admin_addr();
    let (status, ready) = json(admin, "GET", "/health/readiness", "").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["Status"], "UP");
    assert_eq!(
        ready["TargetStatus"]["Addr"],
        env.target.addresses()[0].to_string()
    );

    let client = scylla(env.proxy.local_addr()).await;
    schema(&client).await;
    env.target.node(0).stop().await;
    let write = client
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (1, 'x')", &[])
        .await;
    assert!(write.is_err(), "strict: a write the target missed fails");
    let (status, ready) = json(admin, "GET", "/health/readiness", "").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["Status"], "DOWN");
    assert_eq!(ready["TargetStatus"]["Status"], "DOWN");
    assert_eq!(ready["OriginStatus"]["Status"], "UP");
    assert!(
        ready["TargetStatus"]["CurrentFailureCount"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(ready["TargetStatus"]["FailureCountThreshold"], 1);
    let (_, metrics) = http(admin, "GET", "/metrics", None, "").await;
    assert!(metrics.contains("ferry_proxy_cluster_ready{cluster=\"target\"} 0"));

    env.target.node(0).start().await.unwrap();
    let mut up = false;
    for _ in 0..1200 {
        let (status, _) = json(admin, "GET", "/health/readiness", "").await;
        if status == 200 {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the re-probe finds the restarted node");
    let (_, ready) = json(admin, "GET", "/health/readiness", "").await;
    assert_eq!(ready["TargetStatus"]["CurrentFailureCount"], 0);
    assert!(ready["TargetStatus"]["TotalFailureCount"].as_u64().unwrap() >= 1);
    // A new client connection reaches the restarted target again.
    let fresh = scylla(env.proxy.local_addr()).await;
    fresh
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (2, 'y')", &[])
        .await
        .unwrap();
    env.stop().await;
}
