//! The proxy's end of the Update channel, against a fake migrator made from
//! `ferry_update::Channel::dial`: reported state in `/status` and `/metrics`, dual reads only on
//! backfilled tables, repair requests for best-effort target failures, re-migration after ALTER
//! TABLE, the cutover gate on `PUT /primary`, and several workers at once (each table's
//! requests to its worker; the expected ones waited for; a worker away holds no repairs of
//! the others), and the repair journal across a restart. Addresses 127.0.80–81.x,
//! 127.0.130–134.x, 127.0.190.x, 127.0.200–203.x, 127.0.210–212.x and 127.0.220.x,
//! 127.0.223.x.

use std::net::SocketAddr;
use std::time::Duration;

use ferry_cql::protocol::Opcode;
use ferry_proxy::settings::{ReadMode, TargetFailurePolicy};
use ferry_sim::server::faults;
use ferry_sim::server::{FaultAction, RequestMatcher};
use ferry_update::{
    Channel, ChannelConfig, Delivery, Event, Events, Message, PartitionKey, Purpose, Refusal, Role,
    TableName,
};
use scylla::client::session::Session;
use serde_json::Value;

use crate::admin::http;
use crate::harness::{Env, env_with, scylla};

/// Long enough for anything on loopback, on a loaded CI machine too; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

async fn env(net: u8, adjust: impl FnOnce(&mut ferry_proxy::config::ProxyConfig)) -> Env {
    env_with(net, |c| {
        let mut update = ferry_proxy::config::UpdateConfig::default();
        update.listen = format!("127.0.{net}.3:0").parse().unwrap();
        c.update = Some(update);
        adjust(c);
    })
    .await
}

/// A migrator that only speaks the channel.
async fn migrator(proxy: SocketAddr) -> (Channel, Events) {
    peer(proxy, Purpose::Migrate).await
}

/// A fake migrator of `purpose`, connected; every one has the same name, as `ferry migrate`
/// and `ferry validate` do.
async fn peer(proxy: SocketAddr, purpose: Purpose) -> (Channel, Events) {
    let mut config = ChannelConfig::new(Role::Migrator, "fake-migrator");
    config.purpose = purpose;
    let (channel, mut events) = Channel::dial(config, proxy.to_string(), None).unwrap();
    loop {
        match tokio::time::timeout(PATIENCE, events.recv()).await.unwrap() {
            Some(Event::Connected(_)) => return (channel, events),
            Some(_) => {}
            None => panic!("the channel closed before connecting"),
        }
    }
}

/// Sends `messages` and waits until the proxy acknowledged them (it applies before it acks).
async fn report(channel: &Channel, messages: impl IntoIterator<Item = Message>) {
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
}

/// The next request from the proxy, unanswered.
async fn request(events: &mut Events) -> Delivery {
    loop {
        match tokio::time::timeout(PATIENCE, events.recv()).await.unwrap() {
            Some(Event::Message(d)) => return d,
            Some(_) => {}
            None => panic!("the channel closed"),
        }
    }
}

fn table(name: &str) -> TableName {
    TableName::new("ks", name)
}

async fn status(admin: SocketAddr) -> Value {
    let (code, text) = http(admin, "GET", "/status", None, "").await;
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// `f` of each element of the JSON array `v` (a `/status` list), to compare as tuples.
fn rows<'a, T>(v: &'a Value, f: impl Fn(&'a Value) -> T) -> Vec<T> {
    let items = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    items.iter().map(f).collect()
}

/// Two tables of one row type, for the tests that need a second table.
const T_AND_U: [&str; 2] = [
    "CREATE TABLE ks.t (k int PRIMARY KEY, v text)",
    "CREATE TABLE ks.u (k int PRIMARY KEY, v text)",
];

/// The proxy of [`env`], a driver session through it, and keyspace `ks` with `tables` (their
/// CREATE TABLE statements) made through the proxy, so on both clusters.
async fn env_with_tables(
    net: u8,
    adjust: impl FnOnce(&mut ferry_proxy::config::ProxyConfig),
    tables: &[&str],
) -> (Env, Session) {
    let env = env(net, adjust).await;
    let client = scylla(env.proxy.local_addr()).await;
    client
        .query_unpaged(
            "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            &[],
        )
        .await
        .unwrap();
    for t in tables {
        client.query_unpaged(*t, &[]).await.unwrap();
    }
    (env, client)
}

async fn compared(env: &Env, table: &str) -> u64 {
    env.proxy.dual_read_counts(table).0
}

/// Waits until `table` has `n` compared dual reads.
async fn until_compared(env: &Env, table: &str, n: u64) {
    tokio::time::timeout(PATIENCE, async {
        while compared(env, table).await < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{table} never reached {n} compared reads"));
}

/// Waits until no request is in flight to either cluster (`ferry_proxy_inflight_requests`
/// 0), so that every comparison the reads answered so far could cause is counted. Not "a later
/// comparison is counted": the sim answers a connection's requests in completion order, so
/// comparisons may be counted out of order. What the proxy guarantees: a dual read takes the
/// stream ids of both halves in one pass of its session loop, before the batch's writes (the
/// client's answer included) go out; a stream id counts in the gauge until after its
/// completion ran — for a mirrored half, after its comparison was counted (the backend reader
/// takes a batch's freed ids off the gauge after delivering them). So once a read was answered,
/// the gauges read 0 only after any comparison of it.
async fn until_settled(admin: SocketAddr) {
    let mut last = String::new();
    let settled = tokio::time::timeout(PATIENCE, async {
        loop {
            let (code, text) = http(admin, "GET", "/metrics", None, "").await;
            assert_eq!(code, 200, "{text}");
            let zero = ["origin", "target"].map(|c| {
                text.contains(&format!(
                    "ferry_proxy_inflight_requests{{cluster=\"{c}\"}} 0\n"
                ))
            });
            if zero == [true, true] {
                return;
            }
            last = text
                .lines()
                .filter(|l| l.starts_with("ferry_proxy_inflight_requests{"))
                .collect::<Vec<_>>()
                .join(", ");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "requests still in flight after {PATIENCE:?}: {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_state_shows_and_dual_reads_wait_for_backfill() {
    let (env, client) = env_with_tables(130, |c| c.read_mode = ReadMode::DualAsync, &T_AND_U).await;
    let admin = env.proxy.admin_addr();
    client
        .query_unpaged("INSERT INTO ks.t (k, v) VALUES (1, 'a')", &[])
        .await
        .unwrap();
    let read_t = "SELECT v FROM ks.t WHERE k = 1";
    let read_u = "SELECT v FROM ks.u WHERE k = 1";

    // No migrator has reported: every read is mirrored, as without the channel.
    client.query_unpaged(read_t, &[]).await.unwrap();
    until_compared(&env, "ks.t", 1).await;
    let s = status(admin).await;
    assert_eq!(s["migration"]["reported"], false, "{s}");
    assert!(
        s["migration"]["update_channel"]["migrator"].is_null(),
        "{s}"
    );

    let (m, _events) = migrator(env.proxy.update_addr().unwrap()).await;
    report(
        &m,
        [
            Message::JobStarted {
                job: "job-1".into(),
                tables: vec![table("t"), table("u")],
            },
            Message::TableStarted { table: table("t") },
            Message::TableProgress {
                table: table("t"),
                ranges_done: 3,
                ranges_total: 8,
                rows: 30,
            },
        ],
    )
    .await;
    let s = status(admin).await;
    let migration = &s["migration"];
    assert_eq!(migration["reported"], true);
    assert_eq!(
        migration["update_channel"]["migrator"]["name"],
        "fake-migrator"
    );
    assert_eq!(migration["job"]["name"], "job-1");
    assert_eq!(migration["job"]["tables"], 2);
    let t = &migration["tables"]["ks.t"];
    assert_eq!(t["phase"], "backfilling", "{s}");
    assert_eq!(
        (t["ranges_done"].as_u64(), t["ranges_total"].as_u64()),
        (Some(3), Some(8))
    );
    assert_eq!(t["rows"], 30);
    assert_eq!(t["dual_reads"], false);
    assert_eq!(migration["tables"]["ks.u"]["phase"], "pending");
    let (_, metrics) = http(admin, "GET", "/metrics", None, "").await;
    for line in [
        "ferry_proxy_migration_table_phase{table=\"ks.t\"} 1",
        "ferry_proxy_migration_table_phase{table=\"ks.u\"} 0",
        "ferry_proxy_migration_ranges_done{table=\"ks.t\"} 3",
        "ferry_proxy_migration_ranges{table=\"ks.t\"} 8",
        "ferry_proxy_migrator_connected 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Backfilling: not compared (nor ks.u, pending), which `until_settled` makes checkable.
    client.query_unpaged(read_t, &[]).await.unwrap();
    report(
        &m,
        [Message::TableBackfilled {
            table: table("t"),
            rows: 80,
        }],
    )
    .await;
    client.query_unpaged(read_u, &[]).await.unwrap();
    client.query_unpaged(read_t, &[]).await.unwrap();
    until_compared(&env, "ks.t", 2).await;
    until_settled(admin).await;
    assert_eq!(
        compared(&env, "ks.t").await,
        2,
        "only the read after TableBackfilled"
    );
    assert_eq!(compared(&env, "ks.u").await, 0, "ks.u is not backfilled");
    let s = status(admin).await;
    let t = &s["migration"]["tables"]["ks.t"];
    assert_eq!(
        (t["phase"].as_str(), t["dual_reads"].as_bool()),
        (Some("backfilled"), Some(true))
    );
    assert_eq!(t["ranges_done"], 8);

    drop(client);
    m.close().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_effort_target_failures_become_repair_requests() {
    let (env, client) = env_with_tables(
        131,
        |c| c.target_failure_policy = TargetFailurePolicy::BestEffort,
        &["CREATE TABLE ks.p (a text, b int, c int, v text, PRIMARY KEY ((a, b), c))"],
    )
    .await;
    let admin = env.proxy.admin_addr();
    let insert = client
        .prepare("INSERT INTO ks.p (c, v, b, a) VALUES (?, ?, ?, ?)")
        .await
        .unwrap();
    let target_faults = env.target.node(0).faults();
    let rule = target_faults.add(
        RequestMatcher::any().opcode(Opcode::Execute),
        FaultAction::Error(faults::overloaded()),
    );
    client
        .execute_unpaged(&insert, (1, "x", 7, "it's"))
        .await
        .unwrap();
    client
        .execute_unpaged(&insert, (2, "y", 7, "it's"))
        .await
        .unwrap();
    assert_eq!(env.proxy.repairs().pending(), 2);
    // Repairs go out once a migrator is connected.
    let (m, mut events) = migrator(env.proxy.update_addr().unwrap()).await;

    // One request for the partition both writes went to, its key in partition-key order.
    let delivery = request(&mut events).await;
    assert_eq!(
        delivery.message(),
        &Message::RepairPartitions {
            table: table("p"),
            partitions: vec![PartitionKey::new(["'it''s'", "7"])],
        }
    );
    // Unanswered, the failures stay pending.
    let s = status(admin).await;
    assert_eq!(s["repairs"]["pending"], 2, "{s}");
    assert_eq!(s["repairs"]["requests"]["awaiting_ack"], 2, "{s}");
    delivery.ack();
    tokio::time::timeout(PATIENCE, async {
        while env.proxy.repairs().pending() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("acknowledged repairs leave the pending count");
    assert_eq!(
        status(admin).await["repairs"]["requests"]["partitions_requested"],
        1
    );

    // A write sent as QUERY text has no known key: the table goes for re-migration.
    target_faults.remove(rule);
    target_faults.add(
        RequestMatcher::any().text_contains("'no key'"),
        FaultAction::Error(faults::overloaded()),
    );
    client
        .query_unpaged(
            "INSERT INTO ks.p (a, b, c, v) VALUES ('q', 1, 1, 'no key')",
            &[],
        )
        .await
        .unwrap();
    let delivery = request(&mut events).await;
    match delivery.message() {
        Message::Remigrate { table: t, reason } => {
            assert_eq!(t, &table("p"));
            assert!(
                reason.starts_with("1 target write failures whose partition keys"),
                "{reason}"
            );
        }
        other => panic!("expected Remigrate, got {other:?}"),
    }
    delivery.ack();

    drop(client);
    m.close().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_through_the_proxy_asks_for_remigration() {
    let (env, client) = env_with_tables(132, |_| {}, &T_AND_U[..1]).await;
    // Before a migrator connects: queued, delivered once it does.
    client
        .query_unpaged("ALTER TABLE ks.t ADD w int", &[])
        .await
        .unwrap();
    let (m, mut events) = migrator(env.proxy.update_addr().unwrap()).await;
    let delivery = request(&mut events).await;
    assert_eq!(
        delivery.message(),
        &Message::Remigrate {
            table: table("t"),
            reason: "ALTER TABLE through the proxy".into(),
        }
    );
    delivery.ack();
    // A failed ALTER asks for nothing; the next request is the next successful one.
    assert!(
        client
            .query_unpaged("ALTER TABLE ks.missing ADD w int", &[])
            .await
            .is_err()
    );
    client.query_unpaged("USE ks", &[]).await.unwrap();
    client
        .query_unpaged("ALTER TABLE t ADD x int", &[])
        .await
        .unwrap();
    let delivery = request(&mut events).await;
    assert_eq!(
        delivery.message(),
        &Message::Remigrate {
            table: table("t"),
            reason: "ALTER TABLE through the proxy".into(),
        }
    );
    drop(delivery);
    drop(client);
    m.close().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_target_waits_for_validated_tables() {
    let env = env(133, |_| {}).await;
    let admin = env.proxy.admin_addr();
    let put = move |path: &'static str, primary: &'static str| async move {
        http(
            admin,
            "PUT",
            path,
            None,
            &format!("{{\"primary\": \"{primary}\"}}"),
        )
        .await
    };
    // No migrator has reported: nothing is known to wait for.
    assert_eq!(put("/primary", "target").await.0, 200);
    assert_eq!(put("/primary", "origin").await.0, 200);

    let (m, _events) = migrator(env.proxy.update_addr().unwrap()).await;
    report(
        &m,
        [
            Message::JobStarted {
                job: "j".into(),
                tables: vec![table("a"), table("b")],
            },
            Message::TableBackfilled {
                table: table("a"),
                rows: 5,
            },
            Message::TableValidated {
                table: table("a"),
                rows_checked: 5,
                mismatches: 0,
            },
            Message::TableBackfilled {
                table: table("b"),
                rows: 5,
            },
        ],
    )
    .await;
    let (code, text) = put("/primary", "target").await;
    assert_eq!(code, 409, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        error["error"],
        "not switching the primary to target: 1 table(s) not validated with 0 mismatches: \
         ks.b backfilled; wait for the migrator, or add ?force=true"
    );
    assert_eq!(env.proxy.live().primary().name(), "origin");
    assert_eq!(put("/primary?force=true", "target").await.0, 200);
    assert_eq!(
        put("/primary", "origin").await.0,
        200,
        "going back is never refused"
    );

    report(
        &m,
        [Message::TableValidated {
            table: table("b"),
            rows_checked: 5,
            mismatches: 0,
        }],
    )
    .await;
    let (code, text) = put("/primary", "target").await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(env.proxy.live().primary().name(), "target");
    m.close().await;
    env.stop().await;
}

/// The proxy's `/status` of its Update channel.
async fn channel_status(admin: SocketAddr) -> Value {
    status(admin).await["migration"]["update_channel"].clone()
}

/// Waits until the channel's status satisfies `done`.
async fn until_channel(admin: SocketAddr, what: &str, done: impl Fn(&Value) -> bool) {
    until_status(admin, what, |s| done(&s["migration"]["update_channel"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remigration_refused_as_not_now_waits_for_the_next_migrator() {
    let (env, client) = env_with_tables(190, |_| {}, &T_AND_U).await;
    let admin = env.proxy.admin_addr();
    let alter = |t: &'static str| {
        let client = &client;
        async move {
            client
                .query_unpaged(format!("ALTER TABLE ks.{t} ADD w int"), &[])
                .await
                .unwrap();
        }
    };
    // A peer that cannot take it now (`ferry validate`, a one-shot migrator whose job ended).
    alter("t").await;
    let (first, mut events) = migrator(env.proxy.update_addr().unwrap()).await;
    let d = request(&mut events).await;
    assert!(matches!(d.message(), Message::Remigrate { table: t, .. } if *t == table("t")));
    d.refuse(
        "this process runs no migration jobs (ferry validate)",
        Refusal::NotNow,
    );
    until_channel(admin, "listed as waiting", |c| {
        c["remigrations_waiting"] == serde_json::json!(["ks.t"])
    })
    .await;
    // One that can never be done is dropped, not kept.
    alter("u").await;
    let d = request(&mut events).await;
    assert!(matches!(d.message(), Message::Remigrate { table: t, .. } if *t == table("u")));
    d.refuse("ks.u does not exist on origin", Refusal::Never);
    until_channel(admin, "both refusals counted", |c| c["nacked_total"] == 2).await;
    assert_eq!(
        channel_status(admin).await["remigrations_waiting"],
        serde_json::json!(["ks.t"])
    );
    first.close().await;
    drop(events);

    // The next migrator gets the waiting one, and only it.
    let (second, mut events) = migrator(env.proxy.update_addr().unwrap()).await;
    let d = request(&mut events).await;
    assert_eq!(
        d.message(),
        &Message::Remigrate {
            table: table("t"),
            reason: "ALTER TABLE through the proxy".into(),
        }
    );
    d.ack();
    // Nothing else was sent (ks.u would stay unanswered: queued would not reach 0).
    until_channel(admin, "taken and answered", |c| {
        c["remigrations_waiting"] == serde_json::json!([]) && c["queued"] == 0
    })
    .await;
    drop(client);
    second.close().await;
    env.stop().await;
}

/// Waits until `/status` satisfies `done`.
async fn until_status(admin: SocketAddr, what: &str, done: impl Fn(&Value) -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !done(&status(admin).await) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if waited.is_err() {
        panic!("never {what}: {}", status(admin).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_refused_as_not_now_stays_pending_for_the_next_migrator() {
    let (env, client) = env_with_tables(
        200,
        |c| c.target_failure_policy = TargetFailurePolicy::BestEffort,
        &["CREATE TABLE ks.r (k int PRIMARY KEY, v text)"],
    )
    .await;
    let admin = env.proxy.admin_addr();
    let insert = client
        .prepare("INSERT INTO ks.r (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    env.target.node(0).faults().add(
        RequestMatcher::any().opcode(Opcode::Execute),
        FaultAction::Error(faults::overloaded()),
    );
    for (k, v) in [(1, "a"), (1, "b"), (2, "c")] {
        client.execute_unpaged(&insert, (k, v)).await.unwrap();
    }
    assert_eq!(env.proxy.repairs().pending(), 3);
    let expected = Message::RepairPartitions {
        table: table("r"),
        partitions: vec![PartitionKey::new(["1"]), PartitionKey::new(["2"])],
    };

    // A migrator that cannot repair now (exiting, origin out of its reach).
    let (first, mut events) = migrator(env.proxy.update_addr().unwrap()).await;
    let d = request(&mut events).await;
    assert_eq!(d.message(), &expected);
    d.refuse("the migrator is exiting", Refusal::NotNow);
    until_status(admin, "counted as refused not now", |s| {
        s["repairs"]["requests"]["refused_not_now"] == 1
    })
    .await;
    let s = status(admin).await;
    let requests = &s["repairs"]["requests"];
    assert_eq!(s["repairs"]["pending"], 3, "{s}");
    assert_eq!(s["repairs"]["tables"]["ks.r"]["pending"], 3, "{s}");
    assert_eq!(requests["held"], true, "{s}");
    assert_eq!(requests["refused"], 0, "{s}");
    assert_eq!(requests["awaiting_ack"], 0, "{s}");
    let (_, metrics) = http(admin, "GET", "/metrics", None, "").await;
    assert!(
        metrics.contains("ferry_proxy_repairs_pending 3"),
        "{metrics}"
    );
    first.close().await;
    drop(events);

    // The next migrator gets the same partitions; its acknowledgement settles all three.
    let (second, mut events) = migrator(env.proxy.update_addr().unwrap()).await;
    let d = request(&mut events).await;
    assert_eq!(d.message(), &expected);
    assert_eq!(status(admin).await["repairs"]["requests"]["held"], false);
    d.ack();
    until_status(admin, "settled", |s| s["repairs"]["pending"] == 0).await;
    let s = status(admin).await;
    assert_eq!(s["repairs"]["requests"]["partitions_requested"], 4, "{s}");
    assert_eq!(s["repairs"]["requests"]["refused_not_now"], 1, "{s}");
    drop(client);
    second.close().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validate_run_reports_beside_the_migrator_without_displacing_it() {
    let (env, client) = env_with_tables(202, |_| {}, &T_AND_U[..1]).await;
    let admin = env.proxy.admin_addr();
    let (m, mut mev) = migrator(env.proxy.update_addr().unwrap()).await;
    report(
        &m,
        [
            Message::JobStarted {
                job: "job-1".into(),
                tables: vec![table("t")],
            },
            Message::TableBackfilled {
                table: table("t"),
                rows: 5,
            },
        ],
    )
    .await;

    let (v, _vev) = peer(env.proxy.update_addr().unwrap(), Purpose::Validate).await;
    until_channel(admin, "showing both peers", |c| {
        c["migrator"]["name"] == "fake-migrator" && c["validator"]["name"] == "fake-migrator"
    })
    .await;
    // Its results count for the cutover; a job report from it is refused.
    report(
        &v,
        [Message::TableValidated {
            table: table("t"),
            rows_checked: 5,
            mismatches: 0,
        }],
    )
    .await;
    assert_eq!(
        status(admin).await["migration"]["tables"]["ks.t"]["phase"],
        "validated"
    );
    v.send(Message::JobStarted {
        job: "validate".into(),
        tables: vec![],
    })
    .unwrap();
    tokio::time::timeout(PATIENCE, v.flushed()).await.unwrap();
    assert_eq!(v.status().nacked_total, 1);
    assert_eq!(status(admin).await["migration"]["job"]["name"], "job-1");

    // Requests go to the migrator, which was never displaced.
    client
        .query_unpaged("ALTER TABLE ks.t ADD w int", &[])
        .await
        .unwrap();
    let d = request(&mut mev).await;
    assert!(matches!(d.message(), Message::Remigrate { table: t, .. } if *t == table("t")));
    d.ack();
    until_channel(admin, "the re-migration answered", |c| c["queued"] == 0).await;
    assert_eq!(
        m.status().connects_total,
        1,
        "the migrator never reconnected"
    );
    assert_eq!(
        v.status().received_total,
        0,
        "nothing was sent to the validate peer"
    );
    let (_, metrics) = http(admin, "GET", "/metrics", None, "").await;
    assert!(
        metrics.contains("ferry_proxy_migrator_connected 1"),
        "{metrics}"
    );

    // The validate run ends; the migrator stays.
    v.close().await;
    until_channel(admin, "the validator gone", |c| c["validator"].is_null()).await;
    assert_eq!(
        channel_status(admin).await["migrator"]["name"],
        "fake-migrator"
    );
    let (_, metrics) = http(admin, "GET", "/metrics", None, "").await;
    assert!(
        metrics.contains("ferry_proxy_migrator_connected 1"),
        "{metrics}"
    );
    drop(client);
    m.close().await;
    env.stop().await;
}

/// A fake `ferry migrate` worker named `name`, connected.
async fn worker(proxy: SocketAddr, name: &str) -> (Channel, Events) {
    let config = ChannelConfig::new(Role::Migrator, name);
    let (channel, mut events) = Channel::dial(config, proxy.to_string(), None).unwrap();
    loop {
        match tokio::time::timeout(PATIENCE, events.recv()).await.unwrap() {
            Some(Event::Connected(_)) => return (channel, events),
            Some(_) => {}
            None => panic!("the channel closed before connecting"),
        }
    }
}

/// Two workers of one job, each with its own tables (an indexed Job's pods): both listed in
/// `/status` with their jobs, a table's re-migration and repairs go to the worker that
/// reported it, and the cutover waits for the tables of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_each_get_their_tables_requests_and_the_cutover_waits_for_both() {
    let (env, client) = env_with_tables(
        203,
        |c| c.target_failure_policy = TargetFailurePolicy::BestEffort,
        &T_AND_U,
    )
    .await;
    let admin = env.proxy.admin_addr();
    let update = env.proxy.update_addr().unwrap();
    let (a, mut aev) = worker(update, "worker-0").await;
    let (b, mut bev) = worker(update, "worker-1").await;
    let job = |t: &str| Message::JobStarted {
        job: "shop".into(),
        tables: vec![table(t)],
    };
    let backfilled = |t: &str| Message::TableBackfilled {
        table: table(t),
        rows: 1,
    };
    report(&a, [job("t"), backfilled("t")]).await;
    report(&b, [job("u")]).await;
    let s = status(admin).await;
    let listed = rows(&s["migration"]["update_channel"]["migrators"], |m| {
        (
            m["name"].as_str(),
            m["connected"].as_bool(),
            m["tables"].as_u64(),
        )
    });
    assert_eq!(
        listed,
        [
            (Some("worker-0"), Some(true), Some(1)),
            (Some("worker-1"), Some(true), Some(1))
        ],
        "{s}"
    );
    let jobs = rows(&s["migration"]["jobs"], |j| {
        (j["migrator"].as_str(), j["tables"].as_u64())
    });
    assert_eq!(
        jobs,
        [(Some("worker-0"), Some(1)), (Some("worker-1"), Some(1))],
        "{s}"
    );
    // Each worker's Connected was handled before its reports were acknowledged.
    let (_, metrics) = http(admin, "GET", "/metrics", None, "").await;
    for line in [
        "ferry_proxy_migrator_connected 1",
        "ferry_proxy_migrators_connected 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    // Each table's re-migration to its own worker, whichever was altered first.
    for (t, events) in [("u", &mut bev), ("t", &mut aev)] {
        client
            .query_unpaged(format!("ALTER TABLE ks.{t} ADD w int"), &[])
            .await
            .unwrap();
        let d = request(events).await;
        assert!(
            matches!(d.message(), Message::Remigrate { table: x, .. } if *x == table(t)),
            "{t}: {:?}",
            d.message()
        );
        d.ack();
    }
    // A failed target write on ks.u: the repair goes to worker-1.
    let insert = client
        .prepare("INSERT INTO ks.u (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    env.target.node(0).faults().add(
        RequestMatcher::any().opcode(Opcode::Execute),
        FaultAction::Error(faults::overloaded()),
    );
    client.execute_unpaged(&insert, (7, "x")).await.unwrap();
    let d = request(&mut bev).await;
    assert_eq!(
        d.message(),
        &Message::RepairPartitions {
            table: table("u"),
            partitions: vec![PartitionKey::new(["7"])],
        }
    );
    d.ack();
    until_status(admin, "the repair settled", |s| {
        s["repairs"]["pending"] == 0
    })
    .await;
    env.target.node(0).faults().clear();

    // worker-0 is done and validated; worker-1's table holds the cutover.
    let validated = |t: &str| Message::TableValidated {
        table: table(t),
        rows_checked: 1,
        mismatches: 0,
    };
    report(
        &a,
        [
            validated("t"),
            Message::JobFinished {
                job: "shop".into(),
                tables_done: 1,
                tables_failed: 0,
            },
        ],
    )
    .await;
    let put = || http(admin, "PUT", "/primary", None, r#"{"primary": "target"}"#);
    let (code, text) = put().await;
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("ks.u pending"), "{text}");
    report(&b, [backfilled("u"), validated("u")]).await;
    let (code, text) = put().await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(a.status().connects_total, 1, "worker-0 was never displaced");
    assert_eq!(b.status().connects_total, 1, "worker-1 was never displaced");
    drop(client);
    a.close().await;
    until_metrics(
        admin,
        &[
            "ferry_proxy_migrator_connected 1",
            "ferry_proxy_migrators_connected 1",
        ],
    )
    .await;
    b.close().await;
    until_metrics(
        admin,
        &[
            "ferry_proxy_migrator_connected 0",
            "ferry_proxy_migrators_connected 0",
        ],
    )
    .await;
    env.stop().await;
}

/// Waits until `/metrics` has each of `lines`.
async fn until_metrics(admin: SocketAddr, lines: &[&str]) {
    let has = |metrics: &str| lines.iter().all(|want| metrics.lines().any(|l| l == *want));
    let waited = tokio::time::timeout(PATIENCE, async {
        while !has(&http(admin, "GET", "/metrics", None, "").await.1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if waited.is_err() {
        let (_, metrics) = http(admin, "GET", "/metrics", None, "").await;
        panic!("never {lines:?} in\n{metrics}");
    }
}

/// `update.expect_migrators`: the cutover waits for every named worker, the ones that never
/// connected included, and `/status` lists those as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cutover_waits_for_every_expected_worker() {
    let env = env(210, |c| {
        if let Some(u) = c.update.as_mut() {
            u.expect_migrators = vec!["migrator-0".into(), "migrator-1".into()];
        }
    })
    .await;
    let admin = env.proxy.admin_addr();
    let update = env.proxy.update_addr().unwrap();
    let put = || http(admin, "PUT", "/primary", None, r#"{"primary": "target"}"#);
    let refused = |text: &str| -> String {
        let error: Value = serde_json::from_str(text).unwrap();
        error["error"].as_str().unwrap().to_owned()
    };
    let listed = |s: &Value| -> Vec<(String, bool, bool)> {
        s["migration"]["update_channel"]["migrators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["connected"].as_bool().unwrap(),
                    m["never_connected"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    // Nothing reported yet: without the setting this would be allowed.
    let (code, text) = put().await;
    assert_eq!(code, 409, "{text}");
    assert_eq!(
        refused(&text),
        "not switching the primary to target: 2 expected migrate worker(s) have not reported: \
         migrator-0 never connected, migrator-1 never connected; wait for the migrator, or add \
         ?force=true"
    );
    let s = status(admin).await;
    assert_eq!(
        listed(&s),
        [
            ("migrator-0".into(), false, true),
            ("migrator-1".into(), false, true)
        ],
        "{s}"
    );

    let (a, _aev) = worker(update, "migrator-0").await;
    report(
        &a,
        [
            Message::JobStarted {
                job: "shop".into(),
                tables: vec![table("t")],
            },
            Message::TableBackfilled {
                table: table("t"),
                rows: 1,
            },
            Message::TableValidated {
                table: table("t"),
                rows_checked: 1,
                mismatches: 0,
            },
        ],
    )
    .await;
    let (code, text) = put().await;
    assert_eq!(code, 409, "{text}");
    assert!(
        refused(&text).contains(": migrator-1 never connected; wait"),
        "{text}"
    );
    // Connected and silent so far: still missing, named as such.
    let (b, _bev) = worker(update, "migrator-1").await;
    until_status(admin, "migrator-1 connected", |s| {
        s["migration"]["missing_migrators"]
            == serde_json::json!(["migrator-1 connected, no job reported yet"])
    })
    .await;
    let s = status(admin).await;
    assert_eq!(
        listed(&s),
        [
            ("migrator-0".into(), true, false),
            ("migrator-1".into(), true, false)
        ],
        "{s}"
    );
    report(
        &b,
        [Message::JobStarted {
            job: "shop".into(),
            tables: vec![table("u")],
        }],
    )
    .await;
    let (code, text) = put().await;
    assert_eq!(code, 409, "{text}");
    assert_eq!(
        refused(&text),
        "not switching the primary to target: 1 table(s) not validated with 0 mismatches: \
         ks.u pending; wait for the migrator, or add ?force=true"
    );
    report(
        &b,
        [
            Message::TableBackfilled {
                table: table("u"),
                rows: 1,
            },
            Message::TableValidated {
                table: table("u"),
                rows_checked: 1,
                mismatches: 0,
            },
        ],
    )
    .await;
    let (code, text) = put().await;
    assert_eq!(code, 200, "{text}");
    a.close().await;
    b.close().await;
    env.stop().await;
}

/// A worker that ends with a re-migration unanswered: once its lane is dropped
/// (`update.peer_linger`), the request goes at once to the worker still connected, not to the
/// next one to connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remigration_handed_back_goes_to_a_connected_worker_at_once() {
    let (env, client) = env_with_tables(
        211,
        |c| {
            if let Some(u) = c.update.as_mut() {
                u.peer_linger = Duration::from_millis(200);
            }
        },
        &T_AND_U,
    )
    .await;
    let admin = env.proxy.admin_addr();
    let update = env.proxy.update_addr().unwrap();
    let (a, mut aev) = worker(update, "worker-0").await;
    let (b, mut bev) = worker(update, "worker-1").await;
    let job = |t: &str| Message::JobStarted {
        job: "shop".into(),
        tables: vec![table(t)],
    };
    report(&a, [job("t")]).await;
    report(&b, [job("u")]).await;
    client
        .query_unpaged("ALTER TABLE ks.t ADD w int", &[])
        .await
        .unwrap();
    // To ks.t's worker, which ends without answering: the request stays in its lane.
    let d = request(&mut aev).await;
    assert!(
        matches!(d.message(), Message::Remigrate { table: x, .. } if *x == table("t")),
        "{:?}",
        d.message()
    );
    a.close().await;
    drop(d);
    let d = request(&mut bev).await;
    assert_eq!(
        d.message(),
        &Message::Remigrate {
            table: table("t"),
            reason: "ALTER TABLE through the proxy".into(),
        }
    );
    d.ack();
    until_channel(admin, "handed back, taken and answered", |c| {
        c["nacked_total"] == 1
            && c["queued"] == 0
            && c["remigrations_waiting"] == serde_json::json!([])
    })
    .await;
    drop(client);
    b.close().await;
    env.stop().await;
}

/// A worker that goes away with a repair unanswered holds no repair round of the others: a
/// later failure on another worker's table goes out while the first one's lane keeps its
/// request (`update.peer_linger` far away), and the first one, back, gets its request again,
/// once. Nothing is sent twice (`partitions_requested` counts each key once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_away_with_a_repair_unanswered_holds_no_round_of_the_others() {
    let (env, client) = env_with_tables(
        220,
        |c| {
            c.target_failure_policy = TargetFailurePolicy::BestEffort;
            if let Some(u) = c.update.as_mut() {
                u.peer_linger = Duration::from_secs(3600);
            }
        },
        &T_AND_U,
    )
    .await;
    let admin = env.proxy.admin_addr();
    let update = env.proxy.update_addr().unwrap();
    let (a, mut aev) = worker(update, "worker-0").await;
    let (b, mut bev) = worker(update, "worker-1").await;
    let job = |t: &str| Message::JobStarted {
        job: "shop".into(),
        tables: vec![table(t)],
    };
    report(&a, [job("t")]).await;
    report(&b, [job("u")]).await;
    env.target.node(0).faults().add(
        RequestMatcher::any().opcode(Opcode::Execute),
        FaultAction::Error(faults::overloaded()),
    );
    let repair = |t: &str, k: &str| Message::RepairPartitions {
        table: table(t),
        partitions: vec![PartitionKey::new([k])],
    };

    // ks.t's repair goes to worker-0, which goes away without answering.
    let insert_t = client
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    client.execute_unpaged(&insert_t, (1, "x")).await.unwrap();
    let d = request(&mut aev).await;
    assert_eq!(d.message(), &repair("t", "1"));
    a.close().await;
    drop((d, aev));
    until_channel(admin, "worker-0 away", |c| {
        rows(&c["migrators"], |m| {
            (m["name"].clone(), m["connected"].clone())
        }) == [
            (Value::from("worker-0"), Value::from(false)),
            (Value::from("worker-1"), Value::from(true)),
        ]
    })
    .await;

    // ks.u's repair goes to worker-1 meanwhile and settles; ks.t's waits for worker-0.
    let insert_u = client
        .prepare("INSERT INTO ks.u (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    client.execute_unpaged(&insert_u, (2, "y")).await.unwrap();
    let d = request(&mut bev).await;
    assert_eq!(d.message(), &repair("u", "2"));
    d.ack();
    until_status(admin, "ks.u settled", |s| {
        s["repairs"]["tables"]["ks.u"]["pending"] == 0
    })
    .await;
    let s = status(admin).await;
    assert_eq!(s["repairs"]["tables"]["ks.t"]["pending"], 1, "{s}");
    assert_eq!(s["repairs"]["requests"]["awaiting_ack"], 1, "{s}");

    // worker-0 again (a new process, the same name): its request once more, from its lane.
    let (a, mut aev) = worker(update, "worker-0").await;
    let d = request(&mut aev).await;
    assert_eq!(d.message(), &repair("t", "1"));
    d.ack();
    until_status(admin, "everything settled", |s| {
        s["repairs"]["pending"] == 0 && s["repairs"]["requests"]["awaiting_ack"] == 0
    })
    .await;
    until_channel(admin, "every request answered", |c| c["queued"] == 0).await;
    let s = status(admin).await;
    assert_eq!(s["repairs"]["requests"]["partitions_requested"], 2, "{s}");
    // Every request the proxy sent was answered, so every one is in the events already.
    for (name, events) in [("worker-0", &mut aev), ("worker-1", &mut bev)] {
        while let Some(event) = events.try_recv() {
            assert!(
                !matches!(event, Event::Message(_)),
                "{name} got a request twice: {event:?}"
            );
        }
    }
    env.target.node(0).faults().clear();
    drop(client);
    a.close().await;
    b.close().await;
    env.stop().await;
}

/// A worker that goes away with a repair unanswered and stays away past `update.peer_linger`:
/// its request comes back as "not now" and goes to the worker still connected, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_handed_back_goes_out_again_once() {
    let (env, client) = env_with_tables(
        223,
        |c| {
            c.target_failure_policy = TargetFailurePolicy::BestEffort;
            if let Some(u) = c.update.as_mut() {
                u.peer_linger = Duration::from_millis(200);
            }
        },
        &T_AND_U,
    )
    .await;
    let admin = env.proxy.admin_addr();
    let update = env.proxy.update_addr().unwrap();
    let (a, mut aev) = worker(update, "worker-0").await;
    let (b, mut bev) = worker(update, "worker-1").await;
    report(
        &a,
        [Message::JobStarted {
            job: "shop".into(),
            tables: vec![table("t")],
        }],
    )
    .await;
    env.target.node(0).faults().add(
        RequestMatcher::any().opcode(Opcode::Execute),
        FaultAction::Error(faults::overloaded()),
    );
    let insert = client
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    client.execute_unpaged(&insert, (1, "x")).await.unwrap();
    let repair = Message::RepairPartitions {
        table: table("t"),
        partitions: vec![PartitionKey::new(["1"])],
    };
    let d = request(&mut aev).await;
    assert_eq!(d.message(), &repair);
    a.close().await;
    drop((d, aev));

    let d = request(&mut bev).await;
    assert_eq!(d.message(), &repair);
    d.ack();
    until_status(admin, "settled", |s| {
        s["repairs"]["pending"] == 0
            && s["repairs"]["requests"]["awaiting_ack"] == 0
            && s["migration"]["update_channel"]["queued"] == 0
    })
    .await;
    let s = status(admin).await;
    assert_eq!(s["repairs"]["requests"]["partitions_requested"], 2, "{s}");
    assert_eq!(s["repairs"]["requests"]["refused_not_now"], 1, "{s}");
    while let Some(event) = bev.try_recv() {
        assert!(
            !matches!(event, Event::Message(_)),
            "a request went out twice: {event:?}"
        );
    }
    env.target.node(0).faults().clear();
    drop(client);
    b.close().await;
    env.stop().await;
}

/// A fresh directory for one test's repair journal.
fn journal_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-proxy-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_and_remigrations_survive_a_proxy_restart_in_the_journal() {
    let journal = journal_dir("restart").join("repairs.jsonl");
    let adjust = |c: &mut ferry_proxy::config::ProxyConfig| {
        c.target_failure_policy = TargetFailurePolicy::BestEffort;
        c.repair_journal = Some(journal.clone());
    };
    let (env, client) = env_with_tables(
        80,
        adjust,
        &["CREATE TABLE ks.p (a text, b int, c int, v text, PRIMARY KEY ((a, b), c))"],
    )
    .await;
    let insert = client
        .prepare("INSERT INTO ks.p (c, v, b, a) VALUES (?, ?, ?, ?)")
        .await
        .unwrap();
    let target_faults = env.target.node(0).faults();
    target_faults.add(
        RequestMatcher::any().opcode(Opcode::Execute),
        FaultAction::Error(faults::overloaded()),
    );
    target_faults.add(
        RequestMatcher::any().text_contains("'no key'"),
        FaultAction::Error(faults::overloaded()),
    );
    client
        .execute_unpaged(&insert, (1, "x", 7, "a"))
        .await
        .unwrap();
    client
        .execute_unpaged(&insert, (2, "y", 8, "b"))
        .await
        .unwrap();
    client
        .query_unpaged(
            "INSERT INTO ks.p (a, b, c, v) VALUES ('q', 1, 1, 'no key')",
            &[],
        )
        .await
        .unwrap();
    // A re-migration waiting: no migrator has connected yet.
    client
        .query_unpaged("ALTER TABLE ks.p ADD w int", &[])
        .await
        .unwrap();
    assert_eq!(env.proxy.repairs().pending(), 3);
    drop(client);

    // Stopped before any migrator connected; a new proxy on the same journal.
    let Env {
        origin,
        target,
        proxy,
    } = env;
    proxy.shutdown().await;
    let start = || {
        let mut config =
            crate::harness::proxy_config(80, origin.addresses()[0], target.addresses()[0]);
        let mut update = ferry_proxy::config::UpdateConfig::default();
        update.listen = "127.0.80.3:0".parse().unwrap();
        config.update = Some(update);
        adjust(&mut config);
        ferry_proxy::Proxy::start(config)
    };
    let proxy = start().await.unwrap();
    let admin = proxy.admin_addr();
    // The replayed counts show before any migrator connects.
    let s = status(admin).await;
    assert_eq!(s["repairs"]["pending"], 3, "{s}");
    assert_eq!(s["repairs"]["tables"]["ks.p"]["pending"], 3, "{s}");
    assert_eq!(
        s["repairs"]["journal"]["path"],
        journal.display().to_string(),
        "{s}"
    );
    assert_eq!(
        channel_status(admin).await["remigrations_waiting"],
        serde_json::json!(["ks.p"])
    );
    until_metrics(admin, &["ferry_proxy_repairs_pending 3"]).await;

    let (m, mut events) = migrator(proxy.update_addr().unwrap()).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = request(&mut events).await;
        got.push(d.message().clone());
        d.ack();
    }
    // The waiting re-migration (sent on connect) and the repairs (the next round), in either
    // order: keys in partition-key order, the keyless failure as a re-migration.
    assert!(
        got.contains(&Message::Remigrate {
            table: table("p"),
            reason: "ALTER TABLE through the proxy".into(),
        }),
        "{got:?}"
    );
    assert!(
        got.contains(&Message::RepairPartitions {
            table: table("p"),
            partitions: vec![
                PartitionKey::new(["'a'", "7"]),
                PartitionKey::new(["'b'", "8"])
            ],
        }),
        "{got:?}"
    );
    assert!(
        got.iter().any(|m| matches!(m, Message::Remigrate { table: t, reason }
            if *t == table("p") && reason.starts_with("1 target write failures whose partition keys"))),
        "{got:?}"
    );
    until_status(admin, "settled", |s| s["repairs"]["pending"] == 0).await;
    m.close().await;
    drop(events);
    proxy.shutdown().await;

    // Acknowledged before the stop: a third start has nothing left to ask for.
    let proxy = start().await.unwrap();
    let admin = proxy.admin_addr();
    assert_eq!(status(admin).await["repairs"]["pending"], 0);
    assert_eq!(
        channel_status(admin).await["remigrations_waiting"],
        serde_json::json!([])
    );
    proxy.shutdown().await;
    origin.shutdown().await;
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_repair_journal_stops_the_start_naming_it() {
    let dir = journal_dir("unusable");
    let mut config = crate::harness::proxy_config(
        81,
        "127.0.81.1:9042".parse().unwrap(),
        "127.0.81.2:9042".parse().unwrap(),
    );
    // A directory where the file should be: unreadable as a journal. No cluster is probed.
    config.repair_journal = Some(dir.clone());
    let e = ferry_proxy::Proxy::start(config).await.unwrap_err();
    assert!(matches!(e, ferry_proxy::StartError::Journal(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("repair_journal {}: cannot read it", dir.display())),
        "{text}"
    );
}
