//! `ferry migrate` as a user runs it: killed with SIGKILL mid-table and run again, it ends with
//! target identical to origin (no list element twice); bad arguments exit with 64.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use scylla::client::session::Session;
use scylla::value::{CqlValue, Row};

mod common;

use common::{session, sim};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Every row with each column's value and writetime, sorted.
async fn contents(s: &Session) -> Vec<String> {
    let rows = s
        .query_unpaged(
            "SELECT k, c, v, writetime(v), l, writetime(l), s, writetime(s) FROM cli.t",
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut out: Vec<String> = rows
        .rows::<Row>()
        .unwrap()
        .map(|r| {
            let cols: Vec<Option<CqlValue>> = r.unwrap().columns;
            format!("{cols:?}")
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_table_and_rerun_ends_identical() {
    let origin = sim("127.0.78.1").await;
    let target = sim("127.0.78.2").await;
    let o = session(origin.addresses()[0]).await;
    for s in [
        "CREATE KEYSPACE cli WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE cli.t (k int, c int, s int static, v text, l list<int>, PRIMARY KEY (k, c))",
    ] {
        o.query_unpaged(s, ()).await.unwrap();
    }
    for k in 0..40 {
        o.query_unpaged(
            format!("UPDATE cli.t USING TIMESTAMP 50 SET s = {k} WHERE k = {k}"),
            (),
        )
        .await
        .unwrap();
        for c in 0..3 {
            o.query_unpaged(
                format!(
                    "INSERT INTO cli.t (k, c, v, l) VALUES ({k}, {c}, 'v{k}', [{c}, 1]) \
                     USING TIMESTAMP {}",
                    100 + c
                ),
                (),
            )
            .await
            .unwrap();
            o.query_unpaged(
                format!("UPDATE cli.t USING TIMESTAMP 500 SET l = l + [1, {k}] WHERE k = {k} AND c = {c}"),
                (),
            )
            .await
            .unwrap();
        }
    }
    let job_dir = std::env::temp_dir().join(format!("ferry-migrate-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&job_dir);
    let args = |limit: Option<&str>| {
        let mut a = vec![
            "migrate".to_owned(),
            "--origin".to_owned(),
            origin.addresses()[0].to_string(),
            "--target".to_owned(),
            target.addresses()[0].to_string(),
            "--tables".to_owned(),
            "cli.t".to_owned(),
            "--job-dir".to_owned(),
            job_dir.display().to_string(),
            "--ranges".to_owned(),
            "4".to_owned(),
            "--page-size".to_owned(),
            "4".to_owned(),
        ];
        if let Some(l) = limit {
            a.extend(["--rows-per-second".to_owned(), l.to_owned()]);
        }
        a
    };
    let mut child = Command::new(FERRY)
        // 10 rows/s: 10 rows at once, then 11 s for the other 110, so the process is still
        // mid-table when a loaded machine gets to kill it.
        .args(args(Some("10")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let progress = job_dir.join("cli.t.progress");
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if std::fs::read_to_string(&progress)
            .unwrap_or_default()
            .lines()
            .count()
            >= 3
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ferry migrate ended early"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t = session(target.addresses()[0]).await;
    let expected = contents(&o).await;
    let partial = contents(&t).await;
    assert!(
        !partial.is_empty() && partial != expected,
        "stopped mid-table"
    );

    let out = Command::new(FERRY).args(args(None)).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("cli.t: DONE (4/4 ranges"), "{stdout}");
    assert_eq!(contents(&t).await, expected);
    assert_eq!(expected.len(), 120);
    let _ = std::fs::remove_dir_all(&job_dir);
    origin.shutdown().await;
    target.shutdown().await;
}

#[test]
fn bad_arguments_exit_64_listing_every_problem() {
    let out = Command::new(FERRY)
        .args([
            "migrate",
            "--origin",
            "127.0.79.1:9042",
            "--target",
            "127.0.79.2:9042",
            "--tables",
            "a b",
            "--concurrency",
            "0",
            "--replication",
            "ks",
            "--update-proxy",
            "p:1",
            "--update-proxy",
            "p:notaport",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("table selector \"a b\""), "{err}");
    assert!(
        err.contains("concurrency must be 1..=4096 (got 0)"),
        "{err}"
    );
    assert!(
        err.contains("replication (from --replication): \"ks\": expected KS="),
        "{err}"
    );
    assert!(
        err.contains("update.proxies (from --update-proxy)"),
        "{err}"
    );
    // TLS files for the Update channel that cannot be read: a configuration problem too.
    let out = Command::new(FERRY)
        .args([
            "validate",
            "--origin",
            "127.0.79.1:9042",
            "--target",
            "127.0.79.2:9042",
            "--tables",
            "ks",
            "--update-proxy",
            "127.0.79.3",
        ])
        .env(
            "FERRY_MIGRATOR_UPDATE_TLS_CA_PATH",
            "/nonexistent/update-ca.pem",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("update.tls") && err.contains("/nonexistent/update-ca.pem"),
        "{err}"
    );
    // A flag clap itself rejects is a usage error too.
    let out = Command::new(FERRY)
        .args(["migrate", "--origin", "x:1", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_bad_config_file_exits_64_listing_every_problem() {
    let dir = std::env::temp_dir().join(format!("ferry-migrate-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("migrator.yaml");
    std::fs::write(
        &file,
        "origin:\n  contact_points: [127.0.101.1]\n  usrname: me\n\
         target: {contact_points: ['127.0.101.2:0']}\ntables: [ks.t]\npage_size: -1\n",
    )
    .unwrap();
    let out = Command::new(FERRY)
        .args(["migrate", "--config"])
        .arg(&file)
        .args(["--retries", "lots"])
        .env("FERRY_MIGRATOR_CONCURRENCY", "0")
        .env("FERRY_MIGRATOR_LOG_FORMT", "json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    for expected in [
        "bad migrator configuration (6 problems)",
        "origin.usrname (line 3): unknown setting (did you mean origin.username?)",
        "target.contact_points (line 4): \"127.0.101.2:0\": \"0\" is not a port",
        "page_size (line 6): \"-1\" is not a whole number",
        "retries (from --retries): \"lots\" is not a whole number",
        "FERRY_MIGRATOR_LOG_FORMT: unknown setting (did you mean FERRY_MIGRATOR_LOG_FORMAT?)",
        "job: concurrency must be 1..=4096 (got 0)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // The example configuration is valid as shipped.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/config/migrator.yaml"
    );
    let out = Command::new(FERRY)
        .args(["migrate", "--config", example, "--job-dir"])
        .arg(dir.join("job"))
        .args([
            "--origin",
            "127.0.101.1:1",
            "--target",
            "127.0.101.2:1",
            "--admin",
            "127.0.101.3:0",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // It gets as far as connecting (nothing listens there): exit 1, not 64.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect to origin"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
