//! `cqlsh` (PyPI `cqlsh` 6.2.2) through the proxy: DDL, writes that reach both clusters, reads,
//! and `DESCRIBE KEYSPACE` (driver schema metadata read through the proxy).

use std::net::SocketAddr;

use crate::failures::keys;
use crate::harness::env;

async fn cqlsh(addr: SocketAddr, statements: &str) -> String {
    let out = tokio::process::Command::new("cqlsh")
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        // The defaults (5 s to connect, 10 s per request) are short on a loaded machine.
        .args(["--connect-timeout", "30", "--request-timeout", "30"])
        .args(["-e", statements])
        .output()
        .await
        .expect("cqlsh is installed (pip install cqlsh)");
    // cqlsh prints a version-mismatch banner on stdout; it is not part of the output.
    let stdout: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("WARNING: cqlsh was built against"))
        .map(|l| format!("{l}\n"))
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("cqlsh was built against"))
        .collect();
    assert!(
        out.status.success() && errors.is_empty(),
        "cqlsh -e {statements:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cqlsh_works_through_the_proxy() {
    let env = env(55).await;
    let proxy = env.proxy.local_addr();
    cqlsh(
        proxy,
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
         CREATE TABLE ks.t (k int PRIMARY KEY, v text);
         INSERT INTO ks.t (k, v) VALUES (1, 'one');
         INSERT INTO ks.t (k, v) VALUES (2, 'two');",
    )
    .await;
    let select = cqlsh(proxy, "SELECT k, v FROM ks.t WHERE k = 2").await;
    assert!(select.contains(" 2 | two"), "{select}");
    assert!(select.contains("(1 rows)"), "{select}");
    let describe = cqlsh(proxy, "DESCRIBE KEYSPACE ks").await;
    assert!(
        describe.contains("CREATE KEYSPACE ks WITH replication"),
        "{describe}"
    );
    assert!(describe.contains("CREATE TABLE ks.t ("), "{describe}");
    assert!(describe.contains("PRIMARY KEY (k)"), "{describe}");
    assert_eq!(keys(env.origin.addresses()[0]).await, [1, 2]);
    assert_eq!(keys(env.target.addresses()[0]).await, [1, 2]);
    env.stop().await;
}
