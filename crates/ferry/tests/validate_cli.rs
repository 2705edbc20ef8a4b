//! `ferry validate` as a user runs it: exit 0 when equal, 1 with differences (listed in the
//! JSONL file), 0 again after `--repair --delete-extra`; 64 on bad arguments.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::process::{Command, Output};

mod common;

use common::{cql, session, sim};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_the_keys_file() {
    let origin = sim("127.0.92.1").await;
    let target = sim("127.0.92.2").await;
    let (o, t) = (
        session(origin.addresses()[0]).await,
        session(target.addresses()[0]).await,
    );
    for s in [&o, &t] {
        cql(
            s,
            &[
                "CREATE KEYSPACE vcli WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
                "CREATE TABLE vcli.t (k text PRIMARY KEY, v int)",
            ],
        )
        .await;
        for k in 0..30 {
            cql(
                s,
                &[&format!(
                    "INSERT INTO vcli.t (k, v) VALUES ('k{k}', {k}) USING TIMESTAMP 100"
                )],
            )
            .await;
        }
    }
    let job_dir = std::env::temp_dir().join(format!("ferry-validate-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&job_dir);
    let run = |extra: &[&str]| -> Output {
        let mut args = vec![
            "validate".to_owned(),
            "--origin".to_owned(),
            origin.addresses()[0].to_string(),
            "--target".to_owned(),
            target.addresses()[0].to_string(),
            "--tables".to_owned(),
            "vcli".to_owned(),
            "--job-dir".to_owned(),
            job_dir.display().to_string(),
            "--ranges".to_owned(),
            "4".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Command::new(FERRY).args(args).output().unwrap()
    };
    let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();

    let equal = run(&[]);
    assert_eq!(equal.status.code(), Some(0), "{}", stdout(&equal));
    assert!(
        stdout(&equal).contains("vcli.t: 30 keys compared, 0 differ"),
        "{}",
        stdout(&equal)
    );

    cql(
        &o,
        &["INSERT INTO vcli.t (k, v) VALUES ('only-origin', 1) USING TIMESTAMP 100"],
    )
    .await;
    cql(
        &t,
        &["INSERT INTO vcli.t (k, v) VALUES ('it''s extra', 2) USING TIMESTAMP 100"],
    )
    .await;
    let differ = run(&[]);
    assert_eq!(differ.status.code(), Some(1), "{}", stdout(&differ));
    assert!(
        stdout(&differ).contains(
            "vcli.t: 32 keys compared, 2 differ (missing 1, extra 1, value 0, writetime 0, ttl 0)"
        ),
        "{}",
        stdout(&differ)
    );
    let file = job_dir.join("validate").join("vcli.t.jsonl");
    let mut lines: Vec<(String, String)> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["table"], "vcli.t");
            assert_eq!(
                v["origin_writetime"]["v"]
                    .as_i64()
                    .or(v["target_writetime"]["v"].as_i64()),
                Some(100)
            );
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["key"]["k"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            ("extra".to_owned(), "'it''s extra'".to_owned()),
            ("missing".to_owned(), "'only-origin'".to_owned()),
        ]
    );

    // One file for every table with --report.
    let report = job_dir.join("all.jsonl");
    let again = run(&["--report", report.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&report).unwrap().lines().count(), 2);

    let repaired = run(&["--repair", "--delete-extra", "--floor-timestamp", "1000000"]);
    assert_eq!(repaired.status.code(), Some(0), "{}", stdout(&repaired));
    assert!(
        stdout(&repaired).contains("repaired 2, remaining 0"),
        "{}",
        stdout(&repaired)
    );
    let after = run(&[]);
    assert_eq!(after.status.code(), Some(0), "{}", stdout(&after));
    assert!(stdout(&after).contains("vcli.t: 31 keys compared, 0 differ"));

    let _ = std::fs::remove_dir_all(&job_dir);
    origin.shutdown().await;
    target.shutdown().await;
}

#[test]
fn bad_arguments_exit_64_listing_every_problem() {
    let out = Command::new(FERRY)
        .args([
            "validate",
            "--origin",
            "127.0.93.1:9042",
            "--target",
            "127.0.93.2:9042",
            "--tables",
            "ks.t",
            "--concurrency",
            "0",
            "--delete-extra",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("concurrency must be 1..=4096 (got 0)"),
        "{err}"
    );
    assert!(err.contains("--delete-extra needs --repair"), "{err}");
    // With a valid job, the floor timestamp --delete-extra needs is checked too.
    let out = Command::new(FERRY)
        .args([
            "validate",
            "--origin",
            "127.0.93.1:9042",
            "--target",
            "127.0.93.2:9042",
            "--tables",
            "ks.t",
            "--repair",
            "--delete-extra",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--delete-extra needs --floor-timestamp"),
        "{err}"
    );
    let out = Command::new(FERRY)
        .args(["validate", "--origin", "x:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
