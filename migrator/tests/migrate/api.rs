//! The migrator as a service: the admin API with a real HTTP client (hyper's) while a job runs
//! against two sims — progress moves, a second job is refused, cancel stops at a checkpoint, a
//! rerun resumes and ends DONE, and the metrics describe what happened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_migrator::api::{Api, Jobs};
use ferry_migrator::config::MigratorConfig;
use ferry_migrator::metrics::Metrics;
use ferry_migrator::{LogObserver, Observer};
use ferry_service::http::AdminServer;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::harness::env;

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "migrator")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn json(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(addr, method, path, body).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, v)
}

/// Long enough for any step of the job below on a loaded machine (the rate-limited part takes
/// about 23 s in all); only a hung job reaches it.
const PATIENCE: Duration = Duration::from_secs(90);

/// Polls `GET /jobs/{id}` until `done` holds; fails after [`PATIENCE`] with `what` was awaited
/// and the job as last seen, rather than hanging until CI's global timeout.
async fn until(addr: SocketAddr, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let polled = tokio::time::timeout(PATIENCE, async {
        loop {
            let (status, v) = json(addr, "GET", &format!("/jobs/{id}"), "").await;
            assert_eq!(status, 200, "{v}");
            if done(&v) {
                return v;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    polled.unwrap_or_else(|_| {
        panic!("job {id}: still waiting for {what} after {PATIENCE:?}; last seen: {last}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_api_progress_cancel_resume_and_metrics() {
    let env = env(100).await;
    env.origin_cql(&[
        "CREATE KEYSPACE api WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE api.t (k int PRIMARY KEY, v text)",
    ])
    .await;
    const ROWS: i32 = 1200;
    let insert = env
        .o
        .prepare("INSERT INTO api.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    for k in 0..ROWS {
        env.o
            .execute_unpaged(&insert, (k, format!("v{k}")))
            .await
            .unwrap();
    }
    // The service's config: clusters, job directory, a rows/s limit so the job runs long
    // enough to be watched and cancelled (no timing is asserted): 50 rows at once, then
    // 23 s for the rest, far beyond what a loaded machine takes for the steps below.
    let yaml = format!(
        "origin: {{contact_points: ['{}']}}\ntarget: {{contact_points: ['{}']}}\n\
         job_dir: '{}'\nranges: 8\npage_size: 20\nrows_per_second: 50\nretry_backoff: 10ms\n",
        env.origin.addresses()[0],
        env.target.addresses()[0],
        env.job_dir.display()
    );
    let no_env: [(&str, &str); 0] = [];
    let config = MigratorConfig::load(Some(&yaml), no_env, &[]).unwrap();
    let metrics = Arc::new(Metrics::new());
    let log: Arc<dyn Observer> = Arc::new(LogObserver);
    let jobs = Arc::new(Jobs::new(metrics.clone(), log));
    let api = Arc::new(Api::new(jobs.clone(), metrics, config));
    let server = AdminServer::start("127.0.100.3:0".parse().unwrap(), api)
        .await
        .unwrap();
    let addr = server.addr();

    let (status, v) = json(addr, "POST", "/jobs", r#"{"tables": ["api.t"]}"#).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (status, v) = json(addr, "POST", "/jobs", r#"{"tables": ["api.t"]}"#).await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("job {id} is running")),
        "{v}"
    );
    let (status, v) = json(
        addr,
        "POST",
        "/jobs",
        r#"{"tables": ["a b"], "concurency": 1}"#,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("table selector \"a b\"") && e.contains("did you mean concurrency"),
        "{e}"
    );

    // Progress moves while the job runs.
    let first = until(addr, &id, "rows copied", |v| v["rows"].as_u64() > Some(0)).await;
    assert_eq!(first["state"], "running", "{first}");
    assert_eq!(first["tables_total"], 1);
    assert_eq!(first["tables"][0]["phase"], "BACKFILL", "{first}");
    let seen = first["rows"].as_u64().unwrap();
    let later = until(addr, &id, "more rows copied", |v| {
        v["rows"].as_u64() > Some(seen)
    })
    .await;
    assert!(later["updated_at_ms"].as_u64() >= first["updated_at_ms"].as_u64());
    assert!(later["percentage"].as_f64().unwrap() < 100.0, "{later}");

    let (status, v) = json(addr, "POST", &format!("/jobs/{id}/cancel"), "").await;
    assert_eq!(status, 202, "{v}");
    let cancelled = until(addr, &id, "state cancelled", |v| v["state"] == "cancelled").await;
    assert_eq!(cancelled["tables"][0]["phase"], "CANCELLED", "{cancelled}");
    let rows_first = cancelled["rows"].as_u64().unwrap();
    assert!(rows_first < ROWS as u64, "{cancelled}");
    assert!(
        cancelled["completed_at_ms"].as_u64().is_some(),
        "{cancelled}"
    );
    let (status, v) = json(addr, "POST", &format!("/jobs/{id}/cancel"), "").await;
    assert_eq!(status, 409, "{v}");

    // The rerun resumes from the checkpoints: it writes the rest, not everything again.
    let (status, v) = json(
        addr,
        "POST",
        "/jobs",
        r#"{"tables": ["api.t"], "rows_per_second": "unlimited"}"#,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id2 = v["id"].as_str().unwrap().to_owned();
    assert_ne!(id2, id);
    let done = until(addr, &id2, "the rerun ended", |v| v["state"] != "running").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["percentage"], 100.0, "{done}");
    assert_eq!(done["tables_completed"], 1, "{done}");
    let rows_second = done["rows"].as_u64().unwrap();
    assert!(
        rows_second < ROWS as u64,
        "the rerun rewrote everything: {done}"
    );
    assert!(
        rows_first + rows_second >= ROWS as u64,
        "{cancelled} {done}"
    );
    let count: i64 = env
        .t
        .query_unpaged("SELECT count(*) FROM api.t", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(i64,)>()
        .unwrap()
        .0;
    assert_eq!(count, i64::from(ROWS));

    let (status, list) = json(addr, "GET", "/jobs", "").await;
    assert_eq!(status, 200);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2, "{list}");
    let (status, text) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    let written: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ferry_migrator_rows_written_total{table=\"api.t\"} "))
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    assert_eq!(written, rows_first + rows_second);
    assert!(
        text.contains("ferry_migrator_job_progress_ratio 1\n"),
        "{text}"
    );
    assert!(
        text.contains("ferry_migrator_table_phase{table=\"api.t\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("ferry_migrator_read_latency_seconds_count"),
        "{text}"
    );
    let (status, ready) = json(addr, "GET", "/health/readiness", "").await;
    assert_eq!((status, ready["running_job"].clone()), (200, Value::Null));
    assert_eq!(http(addr, "GET", "/health/liveness", "").await.0, 200);
    assert_eq!(http(addr, "GET", "/jobs/99", "").await.0, 404);

    server.stop().await;
    env.stop().await;
}
