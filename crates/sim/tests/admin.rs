//! The admin HTTP API against a running cluster: requests go through hyper's HTTP/1 client,
//! and every effect is checked from the outside with the Rust `scylla` driver or raw TCP.
//! Addresses 127.0.6.x.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_sim::admin;
use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig};
use ferry_sim::store::{ManualClock, Store};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError, WriteType};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A cluster with its admin API, stopped by [`Harness::stop`].
struct Harness {
    cluster: Arc<Cluster<Executor>>,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl Harness {
    async fn start(ip: &str, nodes: usize) -> Self {
        Self::start_with(ip, nodes, Executor::default()).await
    }

    async fn start_with(ip: &str, nodes: usize, executor: Executor) -> Self {
        let config = ClusterConfig {
            nodes,
            listen: format!("{ip}:0").parse().unwrap(),
            ..ClusterConfig::default()
        };
        let cluster = Arc::new(Cluster::start(config, Arc::new(executor)).await.unwrap());
        let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
        let admin = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(admin::serve(listener, cluster.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            cluster,
            admin,
            stop: Some(stop),
            server,
        }
    }

    /// One request on a fresh connection; the status and the JSON body.
    async fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (status, bytes) = self.raw(method, path, Bytes::from(body.to_owned())).await;
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {bytes:?}"));
        (status, json)
    }

    async fn raw(&self, method: &str, path: &str, body: Bytes) -> (u16, Bytes) {
        let stream = TcpStream::connect(self.admin).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "admin")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, bytes)
    }

    async fn ok(&self, method: &str, path: &str, body: &str) -> Value {
        let (status, json) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} {body}: {status} {json}"
        );
        json
    }

    async fn session(&self) -> Session {
        SessionBuilder::new()
            .known_node_addr(self.cluster.addresses()[0])
            .fetch_schema_metadata(false)
            .connection_timeout(Duration::from_secs(5))
            .build()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.server).await.unwrap();
        self.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_json_4xx_answers() {
    let h = Harness::start("127.0.6.1", 2).await;
    let (status, health) = h.call("GET", "/health", "").await;
    assert_eq!(
        (status, &health),
        (200, &json!({"status": "ok", "nodes": 2, "up": 2}))
    );

    let rule = r#"{"action": {"delay_ms": 1}}"#;
    let cases: [(&str, &str, &str, u16, &str); 13] = [
        (
            "GET",
            "/nodes/9/faults",
            "",
            404,
            "unknown node 9: the cluster has 2 nodes (0 to 1)",
        ),
        (
            "POST",
            "/nodes/abc/stop",
            "",
            400,
            "node id must be a number, got \"abc\"",
        ),
        (
            "POST",
            "/nodes/0/faults",
            "{not json",
            400,
            "invalid JSON body",
        ),
        (
            "POST",
            "/nodes/0/faults",
            r#"{"action": {"error": "teapot"}}"#,
            400,
            "unknown error \"teapot\"",
        ),
        (
            "POST",
            "/nodes/0/faults",
            r#"{"action": {"delay_ms": 1}, "extra": 1}"#,
            400,
            "unknown field `extra`",
        ),
        (
            "POST",
            "/nodes/0/faults",
            r#"{"match": {"kind": "upsert"}, "action": {"delay_ms": 1}}"#,
            400,
            "unknown statement kind",
        ),
        (
            "DELETE",
            "/nodes/0/faults/77",
            "",
            404,
            "unknown fault rule 77 on node 0",
        ),
        (
            "DELETE",
            "/nodes/0/faults/x",
            "",
            400,
            "fault rule id must be a number",
        ),
        ("GET", "/tables/nope/t", "", 404, "unknown table nope.t"),
        (
            "GET",
            "/tables/system/local?limit=0",
            "",
            400,
            "limit must be a number from 1 to 100000",
        ),
        (
            "GET",
            "/tables/system/local?lim=3",
            "",
            400,
            "unknown query parameter \"lim\"",
        ),
        ("GET", "/nowhere", "", 404, "no endpoint /nowhere"),
        (
            "PUT",
            "/nodes/0/faults",
            rule,
            405,
            "method PUT is not allowed on /nodes/0/faults",
        ),
    ];
    for (method, path, body, want_status, want) in cases {
        let (status, json) = h.call(method, path, body).await;
        assert_eq!(status, want_status, "{method} {path}: {json}");
        assert_eq!(json["status"], want_status, "{json}");
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(want), "{method} {path}: {error}");
    }
    // A body over the limit is refused without being read whole.
    let (status, _) = h
        .raw("POST", "/nodes/0/faults", Bytes::from(vec![b' '; 100_000]))
        .await;
    assert_eq!(status, 413);
    // Nothing above added a rule.
    assert_eq!(
        h.ok("GET", "/nodes/0/faults", "").await,
        json!({"rules": []})
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_and_delays_reach_the_driver() {
    let h = Harness::start("127.0.6.2", 1).await;
    let s = h.session().await;
    s.query_unpaged(
        "CREATE KEYSPACE adm WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        &[],
    )
    .await
    .unwrap();
    s.query_unpaged("CREATE TABLE adm.t (k int PRIMARY KEY, v text)", &[])
        .await
        .unwrap();

    let id = h
        .ok(
            "POST",
            "/nodes/0/faults",
            r#"{"match": {"opcode": "QUERY", "kind": "insert", "keyspace": "adm", "table": "t"},
                "action": {"error": "write_timeout", "consistency": "QUORUM", "block_for": 2},
                "times": 1}"#,
        )
        .await["id"]
        .as_u64()
        .unwrap();
    let listed = h.ok("GET", "/nodes/0/faults", "").await;
    assert_eq!(listed["rules"][0]["id"], id, "{listed}");
    assert_eq!(listed["rules"][0]["times"], 1, "{listed}");
    assert_eq!(listed["rules"][0]["match"]["kind"], "insert", "{listed}");
    assert_eq!(
        listed["rules"][0]["action"]["write_type"], "SIMPLE",
        "{listed}"
    );

    let insert = "INSERT INTO adm.t (k, v) VALUES (1, 'a')";
    // A read of the same table does not match the rule.
    s.query_unpaged("SELECT * FROM adm.t", &[]).await.unwrap();
    let err = s.query_unpaged(insert, &[]).await.unwrap_err();
    match &err {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                consistency,
                received,
                required,
                write_type,
            },
            _,
        )) => {
            assert_eq!(
                (format!("{consistency:?}"), *received, *required, write_type),
                ("Quorum".to_owned(), 0, 2, &WriteType::Simple)
            );
        }
        other => panic!("expected a write timeout, got {other:?}"),
    }
    // `times: 1` used the rule up.
    assert_eq!(
        h.ok("GET", "/nodes/0/faults", "").await,
        json!({"rules": []})
    );
    s.query_unpaged(insert, &[]).await.unwrap();

    // Other error kinds, each once, matched by text.
    for (error, want) in [
        ("read_timeout", "ReadTimeout"),
        ("unavailable", "Unavailable"),
        ("overloaded", "Overloaded"),
        ("server_error", "ServerError"),
    ] {
        let body = json!({"match": {"text_contains": "WHERE k = 1"}, "action": {"error": error}, "times": 1});
        h.ok("POST", "/nodes/0/faults", &body.to_string()).await;
        let e = s
            .query_unpaged("SELECT v FROM adm.t WHERE k = 1", &[])
            .await
            .unwrap_err();
        assert!(format!("{e:?}").contains(want), "{error}: {e:?}");
    }

    // A delay rule holds the response back at least that long.
    let delay = Duration::from_millis(300);
    h.ok(
        "POST",
        "/nodes/0/faults",
        r#"{"match": {"text_contains": "WHERE k = 1"}, "action": {"delay_ms": 300}}"#,
    )
    .await;
    let started = tokio::time::Instant::now();
    s.query_unpaged("SELECT v FROM adm.t WHERE k = 1", &[])
        .await
        .unwrap();
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(
        h.ok("DELETE", "/nodes/0/faults", "").await,
        json!({"removed": 1})
    );
    assert_eq!(
        h.ok("GET", "/nodes/0/faults", "").await,
        json!({"rules": []})
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_drop_and_reset() {
    let h = Harness::start("127.0.6.3", 2).await;
    let node1 = h.cluster.addresses()[1];

    let mut conn = TcpStream::connect(node1).await.unwrap();
    wait_for_connections(&h, 1, 1).await;
    let dropped = h.ok("POST", "/nodes/1/connections/drop", "").await;
    assert_eq!(dropped, json!({"connections": 1}));
    let mut buf = [0u8; 16];
    assert_eq!(conn.read(&mut buf).await.unwrap(), 0, "closed with FIN");
    wait_for_connections(&h, 1, 0).await;

    let mut conn = TcpStream::connect(node1).await.unwrap();
    wait_for_connections(&h, 1, 1).await;
    h.ok("POST", "/nodes/1/connections/reset", "").await;
    let e = conn.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");

    let stopped = h.ok("POST", "/nodes/1/stop", "").await;
    assert_eq!(stopped["up"], false, "{stopped}");
    let e = TcpStream::connect(node1).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    let nodes = h.ok("GET", "/nodes", "").await;
    assert_eq!(nodes["nodes"][0]["up"], true, "{nodes}");
    assert_eq!(nodes["nodes"][1]["up"], false, "{nodes}");
    assert_eq!(nodes["nodes"][1]["address"], node1.to_string(), "{nodes}");
    assert_eq!(h.ok("GET", "/health", "").await["up"], 1);

    let started = h.ok("POST", "/nodes/1/start", "").await;
    assert_eq!(started["up"], true, "{started}");
    TcpStream::connect(node1).await.unwrap();
    h.stop().await;
}

/// Polls `GET /nodes` until node `id` has `want` open connections (the accept loop registers
/// a connection shortly after the client's connect returns), for at least 30 s: a loaded
/// machine may take seconds.
async fn wait_for_connections(h: &Harness, id: usize, want: u64) {
    for _ in 0..3000 {
        let nodes = h.ok("GET", "/nodes", "").await;
        if nodes["nodes"][id]["connections"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("node {id} never had {want} connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_the_prepared_cache_makes_the_driver_reprepare() {
    let h = Harness::start("127.0.6.4", 1).await;
    let s = h.session().await;
    s.query_unpaged(
        "CREATE KEYSPACE adp WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        &[],
    )
    .await
    .unwrap();
    s.query_unpaged("CREATE TABLE adp.t (k int PRIMARY KEY, v int)", &[])
        .await
        .unwrap();
    let insert = s
        .prepare("INSERT INTO adp.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    s.execute_unpaged(&insert, (1, 1)).await.unwrap();
    let cache = h.cluster.handler().prepared_cache(0);
    let id = insert.get_id().clone();
    assert!(cache.get(&id).is_some());
    let nodes = h.ok("GET", "/nodes", "").await;
    assert_eq!(
        nodes["nodes"][0]["prepared_statements"],
        cache.len(),
        "{nodes}"
    );

    let cleared = h.ok("POST", "/nodes/0/prepared/clear", "").await;
    assert!(cleared["cleared"].as_u64().unwrap() >= 1, "{cleared}");
    assert!(cache.is_empty());
    // The node answers UNPREPARED; the driver re-prepares and retries transparently, so the
    // statement is back in the cache and the write happened.
    s.execute_unpaged(&insert, (2, 2)).await.unwrap();
    assert!(cache.get(&id).is_some(), "the driver prepared again");
    let rows = s
        .query_unpaged("SELECT v FROM adp.t WHERE k = 2", &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(rows.first_row::<(i32,)>().unwrap(), (2,));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_dump_shows_values_writetimes_and_ttls() {
    // A hand-moved clock, so the TTL left is exact and expiry needs no waiting.
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
    let h = Harness::start_with("127.0.6.5", 1, Executor::new(Store::new(clock.clone()))).await;
    let s = h.session().await;
    for ddl in [
        "CREATE KEYSPACE adu WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE adu.t (k int, c text, v text, tags set<text>, m map<int, text>, \
         PRIMARY KEY (k, c))",
    ] {
        s.query_unpaged(ddl, &[]).await.unwrap();
    }
    s.query_unpaged(
        "INSERT INTO adu.t (k, c, v, tags, m) VALUES (7, 'it''s', 'x', {'p'}, {1: 'one'}) \
         USING TIMESTAMP 1234567 AND TTL 5000",
        &[],
    )
    .await
    .unwrap();
    s.query_unpaged(
        "DELETE m[1] FROM adu.t USING TIMESTAMP 2000000 WHERE k = 7 AND c = 'it''s'",
        &[],
    )
    .await
    .unwrap();

    let dump = h.ok("GET", "/tables/adu/t", "").await;
    assert_eq!(dump["partition_key_columns"], json!(["k"]));
    assert_eq!(dump["clustering_columns"], json!(["c"]));
    assert_eq!(dump["truncated"], false);
    let cells = dump["cells"].as_array().unwrap();
    let find = |kind: &str, column: Value| {
        cells
            .iter()
            .find(|c| c["kind"] == kind && c["column"] == column)
            .unwrap_or_else(|| panic!("no {kind} {column} in {dump}"))
    };
    let marker = find("row_marker", Value::Null);
    assert_eq!(marker["partition_key"], json!(["7"]));
    assert_eq!(marker["clustering"], json!(["'it''s'"]));
    assert_eq!(marker["writetime"], 1_234_567);
    assert_eq!(marker["ttl"], 5_000);
    assert_eq!(marker["expired"], false);

    let v = find("cell", json!("v"));
    assert_eq!(v["value"], "'x'");
    assert_eq!(v["writetime"], 1_234_567);
    assert_eq!(v["expired"], false);
    assert_eq!(v["ttl"], 5_000);
    let tag = find("cell", json!("tags"));
    assert_eq!((&tag["path"], &tag["value"]), (&json!("'p'"), &Value::Null));
    let tomb = find("tombstone", json!("m"));
    assert_eq!(tomb["path"], "1");
    assert_eq!(tomb["writetime"], 2_000_000);
    assert_eq!(tomb["value"], Value::Null);

    let first = h.ok("GET", "/tables/adu/t?limit=2", "").await;
    assert_eq!(first["truncated"], true);
    assert_eq!(first["cells"].as_array().unwrap().len(), 2);
    assert_eq!(first["cells"][0], cells[0]);

    // Past the TTL the cells are still stored, expired, with no time left.
    clock.advance_seconds(1_200);
    let later = h.ok("GET", "/tables/adu/t", "").await;
    assert_eq!(later["cells"][0]["ttl"], 3_800, "{later}");
    clock.advance_seconds(3_801);
    let expired = h.ok("GET", "/tables/adu/t", "").await;
    let v = expired["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "v")
        .unwrap();
    assert_eq!((&v["expired"], &v["ttl"]), (&json!(true), &json!(0)), "{v}");
    assert_eq!(
        v["value"], "'x'",
        "an expired cell keeps its value until compaction"
    );
    h.stop().await;
}
