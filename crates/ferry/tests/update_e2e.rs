//! The Update channel end to end (issue 6's acceptance): two sim clusters, the proxy (dual-async
//! reads, best-effort target writes, `update.listen`) and the migrator's libraries as `ferry
//! migrate --serve` and `ferry validate` wire them, clients through the proxy with the scylla
//! driver. Proves: async dual reads start on a table only once it is backfilled; an `ALTER
//! TABLE` through the proxy makes the migrator copy the table again, so a new column's data
//! written on origin reaches target; a write that failed on target under best-effort is
//! repaired by the migrator, and validation then finds 0 differences. Addresses 127.0.140.x.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_cql::protocol::Opcode;
use ferry_migrator::api::Jobs;
use ferry_migrator::config::MigratorConfig;
use ferry_migrator::metrics::Metrics;
use ferry_migrator::progress::Fanout;
use ferry_migrator::update::Link;
use ferry_migrator::{LogObserver, Observer, ValidateOptions};
use ferry_proxy::Proxy;
use ferry_proxy::config::{ContactPoint, ProxyConfig, UpdateConfig};
use ferry_proxy::settings::{ReadMode, TargetFailurePolicy};
use ferry_sim::server::{FaultAction, RequestMatcher, faults};
use ferry_update::Purpose;
use scylla::client::session::Session;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{cql, session, sim};

/// Long enough for anything on loopback; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);
const NET: &str = "127.0.140";

/// `GET path` on the proxy's admin API, as JSON.
async fn get(admin: SocketAddr, path: &str) -> Value {
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: proxy\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Polls `probe` until it returns `Some`, or fails the test naming `what`.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never happened: {what}"))
}

async fn text_of(s: &Session, query: &str) -> Option<String> {
    let rows = s
        .query_unpaged(query, ())
        .await
        .ok()?
        .into_rows_result()
        .ok()?;
    let (v,) = rows.maybe_first_row::<(Option<String>,)>().ok()??;
    v
}

/// `ferry migrate --serve` as `crates/ferry/src/migrate.rs` wires it: the link's reporter
/// among the jobs' observers, the jobs attached to the link.
struct Migrator {
    link: Arc<Link>,
    jobs: Arc<Jobs>,
    metrics: Arc<Metrics>,
}

fn migrator(config: &MigratorConfig) -> Migrator {
    let metrics = Arc::new(Metrics::new());
    let repairs: Arc<dyn Observer> = Arc::new(Fanout(vec![metrics.clone(), Arc::new(LogObserver)]));
    let link = Link::start(config, Purpose::Migrate, true, repairs)
        .unwrap()
        .unwrap();
    let reporter = link.reporter("e2e-job");
    let jobs = Arc::new(Jobs::new(
        metrics.clone(),
        Arc::new(Fanout(vec![Arc::new(LogObserver), reporter])),
    ));
    link.answer(Some(jobs.clone()));
    Migrator {
        link,
        jobs,
        metrics,
    }
}

impl Migrator {
    async fn run(&self, config: &MigratorConfig, tables: &str) {
        let config = config
            .with_job(&format!("{{\"tables\": [\"{tables}\"]}}"))
            .unwrap();
        let id = self.jobs.start(config.job_spec()).unwrap();
        let report = self.jobs.wait(&id).await.unwrap().unwrap();
        assert!(report.succeeded(), "{report:?}");
    }

    async fn idle(&self) {
        until("the migrator's jobs end", || async {
            self.jobs.running().is_none().then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remigration_repair_validation_and_dual_reads_over_the_update_channel() {
    let origin = sim(&format!("{NET}.1")).await;
    let target = sim(&format!("{NET}.2")).await;
    let mut pc = ProxyConfig::default();
    pc.listen = format!("{NET}.3:0").parse().unwrap();
    pc.admin.listen = format!("{NET}.3:0").parse().unwrap();
    pc.origin.contact_points = vec![ContactPoint::from(origin.addresses()[0])];
    pc.target.contact_points = vec![ContactPoint::from(target.addresses()[0])];
    // Far above any answer on a loaded machine: under best-effort a target timeout would be
    // recorded for repair and change the counts below.
    pc.request_timeout = Duration::from_secs(30);
    pc.read_mode = ReadMode::DualAsync;
    pc.target_failure_policy = TargetFailurePolicy::BestEffort;
    let mut update = UpdateConfig::default();
    update.listen = format!("{NET}.3:0").parse().unwrap();
    pc.update = Some(update);
    let proxy = Proxy::start(pc).await.unwrap();
    let admin = proxy.admin_addr();
    let client = session(proxy.local_addr()).await;
    let o = session(origin.addresses()[0]).await;
    let t = session(target.addresses()[0]).await;

    // The schema through the proxy (both clusters), the history on origin only.
    cql(
        &client,
        &[
            "CREATE KEYSPACE e2e WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            "CREATE TABLE e2e.t (k int PRIMARY KEY, v text)",
            "CREATE TABLE e2e.other (k int PRIMARY KEY, v text)",
        ],
    )
    .await;
    for k in 0..50 {
        cql(
            &o,
            &[&format!("INSERT INTO e2e.t (k, v) VALUES ({k}, 'old-{k}')")],
        )
        .await;
    }
    for k in 0..5 {
        cql(
            &o,
            &[&format!(
                "INSERT INTO e2e.other (k, v) VALUES ({k}, 'o-{k}')"
            )],
        )
        .await;
    }

    let job_dir: PathBuf =
        std::env::temp_dir().join(format!("ferry-update-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&job_dir);
    let yaml = format!(
        "origin: {{contact_points: ['{}']}}\ntarget: {{contact_points: ['{}']}}\n\
         ranges: 4\njob_dir: '{}'\nupdate: {{proxies: ['{}']}}\n",
        origin.addresses()[0],
        target.addresses()[0],
        job_dir.display(),
        proxy.update_addr().unwrap(),
    );
    let config =
        MigratorConfig::load(Some(&yaml), std::iter::empty::<(&str, &str)>(), &[]).unwrap();

    // (c) A first migrator backfills e2e.other only. From its first report on, the proxy
    // mirrors reads of backfilled tables only: e2e.t's read is not compared while
    // e2e.other's, sent after it on the same connections, is.
    let a = migrator(&config);
    a.run(&config, "e2e.other").await;
    until("e2e.other backfilled in /status", || async {
        let s = get(admin, "/status").await;
        (s["migration"]["tables"]["e2e.other"]["phase"] == "backfilled").then_some(())
    })
    .await;
    cql(
        &client,
        &[
            "SELECT v FROM e2e.t WHERE k = 1",
            "SELECT v FROM e2e.other WHERE k = 1",
        ],
    )
    .await;
    until("e2e.other's read compared", || async {
        (proxy.dual_read_counts("e2e.other").0 >= 1).then_some(())
    })
    .await;
    assert_eq!(
        proxy.dual_read_counts("e2e.t"),
        (0, 0),
        "e2e.t is not backfilled yet"
    );

    // Backfilled: /status shows the phases and counts the migrator reported; reads compare.
    a.run(&config, "e2e.t").await;
    let s = until("e2e.t backfilled in /status", || async {
        let s = get(admin, "/status").await;
        (s["migration"]["tables"]["e2e.t"]["phase"] == "backfilled").then_some(s)
    })
    .await;
    let row = &s["migration"]["tables"]["e2e.t"];
    assert_eq!(row["rows"], 50, "{s}");
    assert_eq!(row["ranges_total"], 4, "{s}");
    assert_eq!(row["ranges_done"], 4, "{s}");
    assert_eq!(row["dual_reads"], true, "{s}");
    assert_eq!(s["migration"]["job"]["name"], "e2e-job", "{s}");
    cql(&client, &["SELECT v FROM e2e.t WHERE k = 1"]).await;
    until("e2e.t's read compared", || async {
        (proxy.dual_read_counts("e2e.t").0 >= 1).then_some(())
    })
    .await;
    assert_eq!(
        proxy.dual_read_counts("e2e.t").1,
        0,
        "mismatches on a backfilled table"
    );
    a.link
        .finish(Duration::from_secs(5), Duration::from_secs(5))
        .await;
    drop(a);

    // With no migrator connected: (a) a column added through the proxy, its data written on
    // origin only; (b) a write that fails on target under best-effort.
    cql(&client, &["ALTER TABLE e2e.t ADD w text"]).await;
    for k in 0..10 {
        cql(
            &o,
            &[&format!("UPDATE e2e.t SET w = 'new-{k}' WHERE k = {k}")],
        )
        .await;
    }
    let target_faults = target.node(0).faults();
    let rule = target_faults.add(
        RequestMatcher::any().opcode(Opcode::Execute),
        FaultAction::Error(faults::overloaded()),
    );
    let insert = client
        .prepare("INSERT INTO e2e.other (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    client
        .execute_unpaged(&insert, (100, "written through the proxy"))
        .await
        .unwrap();
    target_faults.remove(rule);
    assert_eq!(proxy.repairs().pending(), 1);
    assert_eq!(
        text_of(&t, "SELECT v FROM e2e.other WHERE k = 100").await,
        None,
        "the write failed on target"
    );

    // The next migrator gets both requests: it copies e2e.t again (a new job, --serve) and
    // repairs e2e.other's partition.
    let b = migrator(&config);
    for k in [0, 9] {
        let q = format!("SELECT w FROM e2e.t WHERE k = {k}");
        let w = until("the new column's data on target", || async {
            text_of(&t, &q).await
        })
        .await;
        assert_eq!(w, format!("new-{k}"));
    }
    let v = until("the failed write repaired on target", || async {
        text_of(&t, "SELECT v FROM e2e.other WHERE k = 100").await
    })
    .await;
    assert_eq!(v, "written through the proxy");
    until("the repair acknowledged", || async {
        (proxy.repairs().pending() == 0).then_some(())
    })
    .await;
    let metrics = String::from_utf8(b.metrics.render().unwrap()).unwrap();
    assert!(
        metrics.contains("ferry_migrator_repairs_total{result=\"repaired\"} 1"),
        "{metrics}"
    );
    b.idle().await;
    let jobs = b.jobs.list();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs["jobs"][0]["state"], "done", "{jobs}");
    assert_eq!(jobs["jobs"][0]["tables"][0]["table"], "e2e.t", "{jobs}");
    let s = get(admin, "/status").await;
    assert_eq!(s["repairs"]["requests"]["remigrations_requested"], 1, "{s}");
    assert_eq!(
        s["migration"]["tables"]["e2e.t"]["phase"], "backfilled",
        "{s}"
    );

    // Validation finds nothing different, and the proxy hears so per table.
    let spec = config
        .with_job("{\"tables\": [\"e2e\"]}")
        .unwrap()
        .job_spec();
    let report = ferry_migrator::validate(spec, ValidateOptions::default(), Arc::new(LogObserver))
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    for v in &report.tables {
        assert_eq!((v.keys, v.remaining), (0, 0), "{v:?}");
    }
    assert_eq!(
        report.tables.iter().map(|v| v.rows).sum::<u64>(),
        50 + 5 + 1
    );
    b.link.validated(&report);
    let s = until("both tables validated in /status", || async {
        let s = get(admin, "/status").await;
        let tables = &s["migration"]["tables"];
        (tables["e2e.t"]["phase"] == "validated" && tables["e2e.other"]["phase"] == "validated")
            .then_some(s)
    })
    .await;
    assert_eq!(s["migration"]["tables"]["e2e.t"]["rows_checked"], 50, "{s}");
    assert_eq!(s["migration"]["tables"]["e2e.t"]["mismatches"], 0, "{s}");
    assert_eq!(
        s["migration"]["tables"]["e2e.other"]["rows_checked"], 6,
        "{s}"
    );

    b.link
        .finish(Duration::from_secs(5), Duration::from_secs(5))
        .await;
    drop((client, o, t));
    proxy.shutdown().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(&job_dir);
}
