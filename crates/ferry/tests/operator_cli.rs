//! `ferry status` and `ferry cutover` as an operator runs them, against real proxies in front of
//! two sims; the migrator's reports come from a fake migrator speaking the Update channel.
//! Two real `ferry migrate --serve` workers report to one proxy, and to it again after it
//! restarts. Addresses 127.0.151.x – 127.0.155.x, 127.0.203.x, 127.0.212.x and 127.0.222.x.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ferry_proxy::Proxy;
use ferry_proxy::config::{ContactPoint, ProxyConfig, UpdateConfig};
use ferry_proxy::settings::{ClusterId, ReadMode};
use ferry_service::value::Secret;
use ferry_sim::exec::Executor;
use ferry_sim::server::Cluster;
use ferry_update::{Channel, ChannelConfig, Event, Message, Role, TableName};
use serde_json::Value;
use tokio::net::TcpStream;

mod common;

use common::{cql, http, session, sim};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
/// Long enough for anything on loopback; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

struct Env {
    origin: Cluster<Executor>,
    target: Cluster<Executor>,
    proxies: Vec<Proxy>,
}

/// Origin on 127.0.`net`.1, target on .2, proxy instance i on .(3 + i); `token[i]` is that
/// instance's admin bearer token.
async fn env(net: u8, tokens: &[Option<&str>]) -> Env {
    let origin = sim(&format!("127.0.{net}.1")).await;
    let target = sim(&format!("127.0.{net}.2")).await;
    let mut proxies = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let ip = format!("127.0.{net}.{}", 3 + i);
        let mut config = ProxyConfig::default();
        config.listen = format!("{ip}:0").parse().unwrap();
        config.admin.listen = format!("{ip}:0").parse().unwrap();
        config.admin.bearer_token = token.map(Secret::new);
        config.origin.contact_points = vec![ContactPoint::from(origin.addresses()[0])];
        config.target.contact_points = vec![ContactPoint::from(target.addresses()[0])];
        let mut update = UpdateConfig::default();
        update.listen = format!("{ip}:0").parse().unwrap();
        config.update = Some(update);
        proxies.push(Proxy::start(config).await.unwrap());
    }
    Env {
        origin,
        target,
        proxies,
    }
}

impl Env {
    fn admin(&self, i: usize) -> String {
        self.proxies[i].admin_addr().to_string()
    }

    fn primaries(&self) -> Vec<ClusterId> {
        self.proxies.iter().map(|p| p.live().primary()).collect()
    }

    async fn stop(self) {
        for p in self.proxies {
            p.shutdown().await;
        }
        self.origin.shutdown().await;
        self.target.shutdown().await;
    }
}

/// Runs `ferry ARGS` off the async threads (the proxies answer meanwhile).
async fn ferry(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(FERRY).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A migrator that reports `messages` to the proxy at `update` and waits for their acks.
async fn report(update: SocketAddr, messages: Vec<Message>) -> Channel {
    let (channel, mut events) = Channel::dial(
        ChannelConfig::new(Role::Migrator, "test-migrator"),
        update.to_string(),
        None,
    )
    .unwrap();
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.recv().await {
                Some(Event::Connected(_)) => break,
                Some(_) => {}
                None => panic!("the channel closed before connecting"),
            }
        }
    })
    .await
    .unwrap();
    for m in messages {
        channel.send(m).unwrap();
    }
    tokio::time::timeout(PATIENCE, channel.flushed())
        .await
        .unwrap();
    assert_eq!(
        channel.status().nacked_total,
        0,
        "the proxy refused a report"
    );
    // Events keep flowing to nobody; the channel only needs to stay open.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    channel
}

fn table(name: &str) -> TableName {
    TableName::new("shop", name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_field_and_names_an_unreachable_instance() {
    let env = env(151, &[None]).await;
    env.proxies[0].live().set_read_mode(ReadMode::DualAsync);
    let update = env.proxies[0].update_addr().unwrap();
    let _migrator = report(
        update,
        vec![
            Message::JobStarted {
                job: "job-1".into(),
                tables: vec![table("orders"), table("carts")],
            },
            Message::TableStarted {
                table: table("orders"),
            },
            Message::TableProgress {
                table: table("orders"),
                ranges_done: 3,
                ranges_total: 12,
                rows: 4242,
            },
        ],
    )
    .await;

    let out = ferry(args(&["status", "--proxy", &env.admin(0)])).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "primary origin",
        "read mode dual-async",
        "client connections",
        "dual reads: 0 compared, 0 mismatches",
        "repairs: 0 pending",
        "migrator test-migrator",
        "migration job job-1 (migrator test-migrator): 2 tables, running",
        "shop.orders",
        "backfilling",
        "3/12  25%",
        "4242",
        "shop.carts",
        "pending",
        "cutover to target refused until validated: 2 table(s)",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }

    let json = ferry(args(&["status", "--json", "--proxy", &env.admin(0)])).await;
    assert!(json.status.success());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["proxies"][0]["status"]["migration"]["tables"]["shop.orders"]["rows"],
        4242
    );

    // A second instance that does not answer: its line says so, the exit code too.
    let out = ferry(args(&[
        "status",
        "--proxy",
        &env.admin(0),
        "--proxy",
        "127.0.151.9:1",
        "--migrator",
        "127.0.151.9:2",
    ]))
    .await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("primary origin"), "{stdout}");
    assert!(
        stdout.contains("proxy 127.0.151.9:1: UNREACHABLE: cannot connect"),
        "{stdout}"
    );
    assert!(
        stdout.contains("migrator 127.0.151.9:2: UNREACHABLE"),
        "{stdout}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_switches_refuses_while_unvalidated_and_force_overrides() {
    let env = env(152, &[None]).await;
    let admin = env.admin(0);
    // No migrator has reported: nothing to wait for.
    let out = ferry(args(&["cutover", "--proxy", &admin, "--primary", "target"])).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("primary target (was origin)"), "{stdout}");
    assert_eq!(env.primaries(), [ClusterId::Target]);
    // The way back is never refused.
    let out = ferry(args(&["cutover", "--proxy", &admin, "--primary", "origin"])).await;
    assert!(out.status.success());
    assert_eq!(env.primaries(), [ClusterId::Origin]);
    let out = ferry(args(&[
        "cutover",
        "--proxy",
        &admin,
        "--read-mode",
        "dual-async",
    ]))
    .await;
    assert!(out.status.success());
    assert_eq!(env.proxies[0].live().read_mode(), ReadMode::DualAsync);

    // A job the proxy knows is not validated yet.
    let update = env.proxies[0].update_addr().unwrap();
    let _migrator = report(
        update,
        vec![Message::JobStarted {
            job: "job-2".into(),
            tables: vec![table("orders")],
        }],
    )
    .await;
    let out = ferry(args(&["cutover", "--proxy", &admin, "--primary", "target"])).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("not validated") && stderr.contains("shop.orders"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing switched"), "{stderr}");
    assert_eq!(env.primaries(), [ClusterId::Origin]);

    let out = ferry(args(&[
        "cutover",
        "--proxy",
        &admin,
        "--primary",
        "target",
        "--force",
    ]))
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(env.primaries(), [ClusterId::Target]);

    // Neither or both of --primary / --read-mode is a usage error.
    let out = ferry(args(&["cutover", "--proxy", &admin])).await;
    assert_eq!(out.status.code(), Some(64));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_switches_every_instance_or_none() {
    let env = env(153, &[None, None, None]).await;
    let all = |extra: &[&str]| {
        let mut a = vec!["cutover".to_owned()];
        for i in 0..3 {
            a.push("--proxy".into());
            a.push(env.admin(i));
        }
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };
    let out = ferry(all(&["--primary", "target"])).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("on all 3 instance(s)"), "{stdout}");
    assert_eq!(env.primaries(), [ClusterId::Target; 3]);
    let out = ferry(all(&["--primary", "origin"])).await;
    assert!(out.status.success());
    assert_eq!(env.primaries(), [ClusterId::Origin; 3]);

    // Only the last instance heard of an unvalidated table: none switches.
    let update = env.proxies[2].update_addr().unwrap();
    let _migrator = report(
        update,
        vec![Message::JobStarted {
            job: "job-3".into(),
            tables: vec![table("carts")],
        }],
    )
    .await;
    let out = ferry(all(&["--primary", "target"])).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&env.admin(2)), "{stderr}");
    assert_eq!(env.primaries(), [ClusterId::Origin; 3]);

    // An unreachable instance: none switches either.
    let mut with_dead = all(&["--primary", "target", "--force"]);
    with_dead.extend(args(&["--proxy", "127.0.153.9:1"]));
    let out = ferry(with_dead).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.153.9:1"), "{stderr}");
    assert_eq!(env.primaries(), [ClusterId::Origin; 3]);

    let out = ferry(all(&["--primary", "target", "--force"])).await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(env.primaries(), [ClusterId::Target; 3]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_switch_rolls_back_the_instances_already_switched() {
    // The second instance wants a token the first does not: reading works on both (GETs need
    // none), the second PUT is refused after the first one succeeded.
    let env = env(154, &[None, Some("s3cret")]).await;
    let out = ferry(args(&[
        "cutover",
        "--proxy",
        &env.admin(0),
        "--proxy",
        &env.admin(1),
        "--primary",
        "target",
        "--token",
        "wrong",
    ]))
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("primary target (was origin)"), "{stdout}");
    assert!(
        stdout.contains(&format!("{}: rolled back to origin", env.admin(0))),
        "{stdout}"
    );
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("rolled back"),
        "{stderr}"
    );
    assert_eq!(env.primaries(), [ClusterId::Origin; 2]);

    let out = ferry(args(&[
        "cutover",
        "--proxy",
        &env.admin(0),
        "--proxy",
        &env.admin(1),
        "--primary",
        "target",
        "--token",
        "s3cret",
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(env.primaries(), [ClusterId::Target; 2]);
    env.stop().await;
}

/// `ferry validate` reports to a proxy whose serving migrator stays connected: its results
/// count for the cutover, and the migrator is never displaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_beside_a_serving_migrator() {
    let env = env(203, &[None]).await;
    for cluster in [&env.origin, &env.target] {
        let s = session(cluster.addresses()[0]).await;
        cql(
            &s,
            &[
                "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
                "CREATE TABLE shop.orders (k int PRIMARY KEY, v text)",
                "INSERT INTO shop.orders (k, v) VALUES (1, 'a') USING TIMESTAMP 100",
                "INSERT INTO shop.orders (k, v) VALUES (2, 'b') USING TIMESTAMP 100",
            ],
        )
        .await;
    }
    let update = env.proxies[0].update_addr().unwrap();
    let migrator = report(
        update,
        vec![
            Message::JobStarted {
                job: "job-1".into(),
                tables: vec![table("orders")],
            },
            Message::TableBackfilled {
                table: table("orders"),
                rows: 2,
            },
        ],
    )
    .await;

    let job_dir =
        std::env::temp_dir().join(format!("ferry-operator-validate-{}", std::process::id()));
    let out = ferry(args(&[
        "validate",
        "--origin",
        &env.origin.addresses()[0].to_string(),
        "--target",
        &env.target.addresses()[0].to_string(),
        "--tables",
        "shop",
        "--job-dir",
        &job_dir.display().to_string(),
        "--update-proxy",
        &update.to_string(),
    ]))
    .await;
    let _ = std::fs::remove_dir_all(&job_dir);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    let json = ferry(args(&["status", "--json", "--proxy", &env.admin(0)])).await;
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let migration = &v["proxies"][0]["status"]["migration"];
    assert_eq!(
        migration["tables"]["shop.orders"]["phase"], "validated",
        "{v}"
    );
    assert_eq!(migration["tables"]["shop.orders"]["rows_checked"], 2, "{v}");
    let channel = &migration["update_channel"];
    assert_eq!(channel["migrator"]["name"], "test-migrator", "{v}");
    assert_eq!(
        channel["connects_total"], 2,
        "the migrator and the validate run: {v}"
    );
    assert_eq!(migrator.status().connects_total, 1, "never displaced");
    assert!(migrator.status().peer.is_some());

    let out = ferry(args(&[
        "cutover",
        "--proxy",
        &env.admin(0),
        "--primary",
        "target",
    ]))
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    migrator.close().await;
    env.stop().await;
}

/// A `ferry migrate --serve` worker, killed when the test ends however it ends.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Two real `ferry migrate --serve` workers (an indexed Job's pods), each with its own
/// `update.name` and tables, report to one proxy at once: `/status` and `ferry status` list
/// both and their jobs, and `PUT /primary` (through `ferry cutover`) is refused until the
/// tables of both are validated, then accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serving_workers_report_to_one_proxy_and_the_cutover_waits_for_both() {
    // Two processes copying on a loaded machine: generous, only a hang reaches it.
    const WAIT: Duration = Duration::from_secs(120);
    let env = env(212, &[None]).await;
    for cluster in [&env.origin, &env.target] {
        let s = session(cluster.addresses()[0]).await;
        cql(
            &s,
            &[
                "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
                "CREATE TABLE shop.a (k int PRIMARY KEY, v text)",
                "CREATE TABLE shop.b (k int PRIMARY KEY, v text)",
            ],
        )
        .await;
    }
    let o = session(env.origin.addresses()[0]).await;
    for k in 0..20 {
        cql(
            &o,
            &[
                &format!("INSERT INTO shop.a (k, v) VALUES ({k}, 'a{k}')"),
                &format!("INSERT INTO shop.b (k, v) VALUES ({k}, 'b{k}')"),
            ],
        )
        .await;
    }
    let update = env.proxies[0].update_addr().unwrap().to_string();
    let origin = env.origin.addresses()[0].to_string();
    let target = env.target.addresses()[0].to_string();
    let dir = std::env::temp_dir().join(format!("ferry-two-workers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let start = |name: &str, admin: &str, dir: &Path| {
        serving_worker(name, admin, &origin, &target, &update, dir)
    };
    let workers = [
        (
            start("migrator-0", "127.0.212.5:14101", &dir),
            "127.0.212.5:14101",
            "shop.a",
        ),
        (
            start("migrator-1", "127.0.212.6:14101", &dir),
            "127.0.212.6:14101",
            "shop.b",
        ),
    ];
    let logs = || {
        workers
            .iter()
            .map(|(w, ..)| w.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    // Each worker's job, posted to its admin API once it listens.
    for (worker, admin, table) in &workers {
        let body = format!("{{\"tables\": [\"{table}\"]}}");
        let posted = tokio::time::timeout(WAIT, async {
            loop {
                if TcpStream::connect(admin).await.is_ok() {
                    return http("POST", admin, "/jobs", &body).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{admin} never listened:\n{}", worker.log()));
        assert_eq!(posted.0, 201, "{}\n{}", posted.1, worker.log());
    }

    let admin = env.admin(0);
    let status = || async {
        serde_json::from_str::<Value>(&http("GET", &admin, "/status", "").await.unwrap().1).unwrap()
    };
    let both = |s: &Value| {
        let m = &s["migration"];
        let connected = m["update_channel"]["migrators"]
            .as_array()
            .is_some_and(|l| l.len() == 2 && l.iter().all(|w| w["connected"] == true));
        connected
            && m["jobs"].as_array().is_some_and(|j| j.len() == 2)
            && ["shop.a", "shop.b"]
                .iter()
                .all(|t| m["tables"][t]["phase"] == "backfilled")
    };
    let waited = tokio::time::timeout(WAIT, async {
        while !both(&status().await) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if waited.is_err() {
        panic!("never both backfilled: {}\n{}", status().await, logs());
    }
    let s = status().await;
    let names = |list: &Value, key: &str| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| m[key].as_str().unwrap().to_owned())
            .collect()
    };
    let migration = &s["migration"];
    assert_eq!(
        names(&migration["update_channel"]["migrators"], "name"),
        ["migrator-0", "migrator-1"],
        "{s}"
    );
    assert_eq!(
        names(&migration["jobs"], "migrator"),
        ["migrator-0", "migrator-1"],
        "{s}"
    );
    let screen = ferry(args(&["status", "--proxy", &admin])).await;
    let (stdout, _) = text(&screen);
    for worker in ["migrator-0", "migrator-1"] {
        assert!(
            stdout.contains(&format!("migrator {worker} from ")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("(migrator {worker})")), "{stdout}");
    }

    let cutover = || ferry(args(&["cutover", "--proxy", &admin, "--primary", "target"]));
    let validate = |table: &'static str| {
        let job_dir = dir.join(format!("validate-{table}"));
        ferry(vec![
            "validate".into(),
            "--origin".into(),
            origin.clone(),
            "--target".into(),
            target.clone(),
            "--tables".into(),
            table.into(),
            "--job-dir".into(),
            job_dir.display().to_string(),
            "--update-proxy".into(),
            update.clone(),
        ])
    };
    let out = cutover().await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // One worker's table validated: the other's still holds the cutover.
    let out = validate("shop.a").await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = cutover().await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        format!("{stdout}{stderr}")
            .contains("1 table(s) not validated with 0 mismatches: shop.b backfilled"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(env.proxies[0].live().primary(), ClusterId::Origin);
    let out = validate("shop.b").await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = cutover().await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(env.proxies[0].live().primary(), ClusterId::Target);
    drop(workers);
    let _ = std::fs::remove_dir_all(&dir);
    env.stop().await;
}

/// A restarted proxy (a new process on the same Update port, as a rolling update makes) learns
/// the state of two serving workers again from their replays: `/status` lists both workers,
/// their jobs and their tables backfilled, the expected workers are no longer missing, and the
/// validations the first process had are gone, so the cutover waits for `ferry validate`
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_learns_the_workers_state_again() {
    // Two processes copying on a loaded machine: generous, only a hang reaches it.
    const WAIT: Duration = Duration::from_secs(120);
    let origin = sim("127.0.222.1").await;
    let target = sim("127.0.222.2").await;
    for cluster in [&origin, &target] {
        let s = session(cluster.addresses()[0]).await;
        cql(
            &s,
            &[
                "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
                "CREATE TABLE shop.a (k int PRIMARY KEY, v text)",
                "CREATE TABLE shop.b (k int PRIMARY KEY, v text)",
            ],
        )
        .await;
    }
    let o = session(origin.addresses()[0]).await;
    for k in 0..10 {
        cql(
            &o,
            &[
                &format!("INSERT INTO shop.a (k, v) VALUES ({k}, 'a{k}')"),
                &format!("INSERT INTO shop.b (k, v) VALUES ({k}, 'b{k}')"),
            ],
        )
        .await;
    }
    let update: SocketAddr = "127.0.222.3:14100".parse().unwrap();
    let config = {
        let mut config = ProxyConfig::default();
        config.listen = "127.0.222.3:0".parse().unwrap();
        config.admin.listen = "127.0.222.3:0".parse().unwrap();
        config.origin.contact_points = vec![ContactPoint::from(origin.addresses()[0])];
        config.target.contact_points = vec![ContactPoint::from(target.addresses()[0])];
        let mut u = UpdateConfig::default();
        u.listen = update;
        u.expect_migrators = vec!["migrator-0".into(), "migrator-1".into()];
        config.update = Some(u);
        config
    };
    // The port of a stopped proxy may take a moment to be free again.
    let start = || async {
        let mut last = None;
        let started = tokio::time::timeout(WAIT, async {
            loop {
                match Proxy::start(config.clone()).await {
                    Ok(p) => return p,
                    Err(e) => last = Some(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        started.unwrap_or_else(|_| panic!("the proxy never started: {last:?}"))
    };
    let proxy = start().await;
    let origin_addr = origin.addresses()[0].to_string();
    let target_addr = target.addresses()[0].to_string();
    let dir = std::env::temp_dir().join(format!("ferry-restarted-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let workers = [
        (
            serving_worker(
                "migrator-0",
                "127.0.222.5:14101",
                &origin_addr,
                &target_addr,
                &update.to_string(),
                &dir,
            ),
            "127.0.222.5:14101",
            "shop.a",
        ),
        (
            serving_worker(
                "migrator-1",
                "127.0.222.6:14101",
                &origin_addr,
                &target_addr,
                &update.to_string(),
                &dir,
            ),
            "127.0.222.6:14101",
            "shop.b",
        ),
    ];
    let logs = || {
        workers
            .iter()
            .map(|(w, ..)| w.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    for (worker, admin, table) in &workers {
        let body = format!("{{\"tables\": [\"{table}\"]}}");
        let posted = tokio::time::timeout(WAIT, async {
            loop {
                if TcpStream::connect(admin).await.is_ok() {
                    return http("POST", admin, "/jobs", &body).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{admin} never listened:\n{}", worker.log()));
        assert_eq!(posted.0, 201, "{}\n{}", posted.1, worker.log());
    }
    let status = |admin: String| async move {
        serde_json::from_str::<Value>(&http("GET", &admin, "/status", "").await.unwrap().1).unwrap()
    };
    // Both workers connected with their jobs, and both tables in `phase`.
    let until_both = |admin: String, phase: &'static str| {
        let logs = &logs;
        async move {
            let both = |s: &Value| {
                let m = &s["migration"];
                m["update_channel"]["migrators"]
                    .as_array()
                    .is_some_and(|l| l.len() == 2 && l.iter().all(|w| w["connected"] == true))
                    && m["jobs"].as_array().is_some_and(|j| j.len() == 2)
                    && ["shop.a", "shop.b"]
                        .iter()
                        .all(|t| m["tables"][t]["phase"] == phase)
            };
            let waited = tokio::time::timeout(WAIT, async {
                while !both(&status(admin.clone()).await) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
            if waited.is_err() {
                panic!("never both {phase}: {}\n{}", status(admin).await, logs());
            }
        }
    };
    let validate = |run: &str| {
        ferry(vec![
            "validate".into(),
            "--origin".into(),
            origin_addr.clone(),
            "--target".into(),
            target_addr.clone(),
            "--tables".into(),
            "shop".into(),
            "--job-dir".into(),
            dir.join(format!("validate-{run}")).display().to_string(),
            "--update-proxy".into(),
            update.to_string(),
        ])
    };
    let cutover = |admin: String| {
        ferry(vec![
            "cutover".into(),
            "--proxy".into(),
            admin,
            "--primary".into(),
            "target".into(),
        ])
    };

    let admin = proxy.admin_addr().to_string();
    until_both(admin.clone(), "backfilled").await;
    let out = validate("before").await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    until_both(admin.clone(), "validated").await;

    // The restart: a new process on the same Update port.
    proxy.shutdown().await;
    let proxy = start().await;
    let admin = proxy.admin_addr().to_string();
    until_both(admin.clone(), "backfilled").await;
    let s = status(admin.clone()).await;
    let m = &s["migration"];
    assert_eq!(m["missing_migrators"], serde_json::json!([]), "{s}");
    // Their jobs had ended before the restart; the workers still serve, and said so again.
    let jobs = m["jobs"].as_array().unwrap();
    assert!(jobs.iter().all(|j| j["finished"] == true), "{s}");
    for t in ["shop.a", "shop.b"] {
        assert_eq!(m["tables"][t]["replayed"], true, "{s}");
        assert_eq!(m["tables"][t]["rows"], 10, "{s}");
        assert_eq!(m["tables"][t]["dual_reads"], true, "{s}");
    }
    let screen = ferry(args(&["status", "--proxy", &admin])).await;
    let (stdout, _) = text(&screen);
    assert!(
        stdout.contains("reported again after the proxy restarted, which forgot validations"),
        "{stdout}"
    );
    let out = cutover(admin.clone()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains(
            "shop.a backfilled (reported again after this proxy restarted, which forgot \
             validations; run ferry validate)"
        ),
        "{stdout}\n{stderr}"
    );
    assert_eq!(proxy.live().primary(), ClusterId::Origin);
    let out = validate("after").await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = cutover(admin.clone()).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(proxy.live().primary(), ClusterId::Target);
    drop(workers);
    let _ = std::fs::remove_dir_all(&dir);
    proxy.shutdown().await;
    origin.shutdown().await;
    target.shutdown().await;
}

/// A `ferry migrate --serve` worker named `name` with its admin API on `admin`, reporting to
/// the proxy at `update`; its job directory and log under `dir`.
fn serving_worker(
    name: &str,
    admin: &str,
    origin: &str,
    target: &str,
    update: &str,
    dir: &Path,
) -> Worker {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(FERRY)
        .args([
            "migrate",
            "--serve",
            "--log-format",
            "text",
            "--admin",
            admin,
        ])
        .args(["--origin", origin, "--target", target])
        .args(["--update-proxy", update])
        .arg("--job-dir")
        .arg(dir.join(name))
        .env("FERRY_MIGRATOR_UPDATE_NAME", name)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    Worker { child, log }
}
