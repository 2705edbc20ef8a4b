//! The Update channel end to end over loopback sockets: delivery both ways with answers,
//! redelivery across cut connections, duplicates, either side first, version and role
//! refusals (against hand-written peers too, so the wire format is checked), the bounded
//! queue, a lane per migrate peer (bounded, handed back when the peer stays away), one
//! validate peer, and mutual TLS. Each test has its own
//! 127.0.12x.0/24 (or 127.0.20x.0/24) net.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod relay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferry_update::{
    Channel, ChannelConfig, ClientTls, ClientTlsFiles, Delivery, Event, Events, Message,
    PartitionKey, Peer, Purpose, Refusal, Role, SendError, ServerTls, ServerTlsFiles, TableName,
    TlsError,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use relay::{Mode, Relay};

/// Only a guard against a hung test; nothing here is expected to take more than moments.
const HANG: Duration = Duration::from_secs(60);

fn addr(net: u8, host: u8) -> SocketAddr {
    format!("127.0.{net}.{host}:14100").parse().unwrap()
}

fn config(role: Role, name: &str) -> ChannelConfig {
    let mut c = ChannelConfig::new(role, name);
    c.backoff_initial = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(100);
    c
}

fn table(i: usize) -> TableName {
    TableName::new("ks", format!("t{i}"))
}

async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(HANG, events.recv())
        .await
        .expect("an event")
        .expect("the channel is open")
}

async fn next_message(events: &mut Events) -> Delivery {
    loop {
        if let Event::Message(d) = next_event(events).await {
            return d;
        }
    }
}

async fn connected(events: &mut Events) -> Peer {
    loop {
        if let Event::Connected(peer) = next_event(events).await {
            return peer;
        }
    }
}

async fn flushed(channel: &Channel) {
    tokio::time::timeout(HANG, channel.flushed())
        .await
        .expect("every message answered");
}

#[tokio::test]
async fn messages_flow_both_ways_and_are_answered() {
    let (proxy, mut pev) = Channel::listen(config(Role::Proxy, "proxy-1"), addr(121, 1), None)
        .await
        .unwrap();
    let (migrator, mut mev) = Channel::dial(
        config(Role::Migrator, "migrator"),
        proxy.local_addr().unwrap().to_string(),
        None,
    )
    .unwrap();
    let peer = connected(&mut pev).await;
    assert_eq!(
        (peer.name.as_str(), peer.role),
        ("migrator", Role::Migrator)
    );
    assert_eq!(peer.protocol_version, ferry_update::PROTOCOL_VERSION);
    assert_eq!(peer.instance, migrator.instance());
    assert_eq!(connected(&mut mev).await.name, "proxy-1");
    assert_eq!(proxy.status().peer, Some(peer));

    let sent = [
        Message::JobStarted {
            job: "job-1".into(),
            tables: vec![table(1), table(2)],
        },
        Message::TableStarted { table: table(1) },
        Message::TableProgress {
            table: table(1),
            ranges_done: 4,
            ranges_total: 16,
            rows: 1000,
        },
        Message::TableBackfilled {
            table: table(1),
            rows: 4000,
        },
    ];
    let mut ids = Vec::new();
    for m in &sent {
        ids.push(migrator.send(m.clone()).unwrap());
    }
    assert_eq!(ids, [1, 2, 3, 4]);
    for (m, id) in sent.iter().zip(&ids) {
        let d = next_message(&mut pev).await;
        assert_eq!((d.message(), d.id()), (m, *id));
        d.ack();
    }

    let remigrate = Message::Remigrate {
        table: table(2),
        reason: "ALTER TABLE ks.t2 ADD c int".into(),
    };
    let repair = Message::RepairPartitions {
        table: table(9),
        partitions: vec![PartitionKey::new(["'a'", "1"])],
    };
    proxy.send(remigrate.clone()).unwrap();
    let repair_id = proxy.send(repair.clone()).unwrap();
    let d = next_message(&mut mev).await;
    assert_eq!(d.message(), &remigrate);
    drop(d); // unanswered = acknowledged
    let d = next_message(&mut mev).await;
    assert_eq!(d.message(), &repair);
    d.nack("ks.t9 is not in this job");
    loop {
        if let Event::Nacked {
            id,
            message,
            reason,
            refusal,
            peer,
        } = next_event(&mut pev).await
        {
            assert_eq!(
                (id, message, reason.as_str(), refusal),
                (
                    repair_id,
                    repair,
                    "ks.t9 is not in this job",
                    Refusal::Never
                )
            );
            assert_eq!(peer, "migrator", "the peer that refused it");
            break;
        }
    }
    // "Not now" reaches the sender as such: it may offer the message to the next peer.
    let remigrate_id = proxy.send(remigrate.clone()).unwrap();
    next_message(&mut mev)
        .await
        .refuse("no job running", Refusal::NotNow);
    loop {
        if let Event::Nacked {
            id,
            refusal,
            reason,
            ..
        } = next_event(&mut pev).await
        {
            assert_eq!(
                (id, refusal, reason.as_str()),
                (remigrate_id, Refusal::NotNow, "no job running")
            );
            break;
        }
    }
    flushed(&migrator).await;
    flushed(&proxy).await;

    // A message of the other role is refused before it is queued.
    let e = proxy
        .send(Message::TableStarted { table: table(1) })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "table_started is sent by a migrator, and this end of the Update channel is a proxy"
    );
    let (m, p) = (migrator.status(), proxy.status());
    assert_eq!((m.acked_total, m.nacked_total, m.queued), (4, 0, 0));
    assert_eq!((p.acked_total, p.nacked_total, p.queued), (1, 2, 0));
    assert_eq!((p.received_total, m.received_total), (4, 3));
    assert_eq!((p.duplicates_total, m.duplicates_total), (0, 0));
    migrator.close().await;
    proxy.close().await;
}

/// The migrator starts first and queues; the first connection is cut in the middle of a
/// frame. Every message arrives once, in order, and the cut ones were written again.
#[tokio::test]
async fn a_connection_cut_mid_frame_loses_and_repeats_nothing() {
    const N: usize = 300;
    let (migrator, _mev) = Channel::dial(
        config(Role::Migrator, "migrator"),
        addr(122, 2).to_string(),
        None,
    )
    .unwrap();
    for i in 0..N {
        migrator
            .send(Message::TableStarted { table: table(i) })
            .unwrap();
    }
    let (proxy, mut pev) = Channel::listen(config(Role::Proxy, "proxy"), addr(122, 1), None)
        .await
        .unwrap();
    let relay = Relay::start(
        addr(122, 2),
        addr(122, 1),
        vec![Mode::CutAfter { bytes: 2500 }],
    )
    .await;
    let (mut got, mut last_id, mut disconnects) = (Vec::new(), 0, 0);
    while got.len() < N {
        match next_event(&mut pev).await {
            Event::Message(d) => {
                assert!(d.id() > last_id, "ids grow: {} after {last_id}", d.id());
                last_id = d.id();
                let Message::TableStarted { table } = d.message() else {
                    panic!("{:?}", d.message())
                };
                got.push(table.clone());
            }
            // The proxy notices the cut as a frame cut short, a closed socket or a failed
            // write of an acknowledgement, depending on what it was doing.
            Event::Disconnected { .. } => disconnects += 1,
            _ => {}
        }
    }
    assert_eq!(got, (0..N).map(table).collect::<Vec<_>>());
    flushed(&migrator).await;
    assert!(disconnects >= 1);
    assert!(relay.accepted() >= 2);
    let s = migrator.status();
    assert_eq!(s.acked_total, N as u64);
    assert!(
        s.written_total > N as u64,
        "messages in flight at the cut were written again: {s:?}"
    );
    assert_eq!(proxy.status().received_total, N as u64);
}

/// The proxy's acknowledgements never reach the migrator, then the connection drops: the
/// migrator sends everything again, the proxy answers without delivering anything twice.
#[tokio::test]
async fn redeliveries_after_lost_acks_are_answered_not_delivered() {
    let quiet = |role, name| {
        let mut c = config(role, name);
        // No heartbeat or idle close during the test: the cut below is the only one.
        c.heartbeat = Duration::from_secs(600);
        c.idle_timeout = Duration::from_secs(1200);
        c
    };
    let (proxy, mut pev) = Channel::listen(quiet(Role::Proxy, "proxy"), addr(123, 1), None)
        .await
        .unwrap();
    let relay = Relay::start(
        addr(123, 2),
        addr(123, 1),
        vec![Mode::HoldReplies { frames: 2 }],
    )
    .await;
    let (migrator, _mev) = Channel::dial(
        quiet(Role::Migrator, "migrator"),
        relay.addr.to_string(),
        None,
    )
    .unwrap();
    for i in 0..10 {
        migrator
            .send(Message::TableStarted { table: table(i) })
            .unwrap();
    }
    for i in 0..10 {
        let d = next_message(&mut pev).await;
        assert_eq!(d.message(), &Message::TableStarted { table: table(i) });
        d.ack();
    }
    let s = migrator.status();
    assert_eq!((s.acked_total, s.queued, s.in_flight), (0, 10, 10));

    relay.cut();
    flushed(&migrator).await;
    assert_eq!(migrator.status().acked_total, 10);
    let p = proxy.status();
    assert_eq!((p.received_total, p.duplicates_total), (10, 10));
    // Nothing was delivered twice: the next delivery is the next message.
    migrator
        .send(Message::TableStarted { table: table(10) })
        .unwrap();
    assert_eq!(
        next_message(&mut pev).await.message(),
        &Message::TableStarted { table: table(10) }
    );
}

/// The proxy starts first and queues requests with no migrator anywhere.
#[tokio::test]
async fn the_proxy_may_start_first_and_queue() {
    let (proxy, _pev) = Channel::listen(config(Role::Proxy, "proxy"), addr(124, 1), None)
        .await
        .unwrap();
    let requests = [
        Message::ReorderTables {
            remaining: vec![table(3), table(1)],
        },
        Message::Remigrate {
            table: table(1),
            reason: "schema changed".into(),
        },
    ];
    for r in &requests {
        proxy.send(r.clone()).unwrap();
    }
    let s = proxy.status();
    assert_eq!((s.peer, s.queued), (None, 2));
    let (_migrator, mut mev) = Channel::dial(
        config(Role::Migrator, "migrator"),
        addr(124, 1).to_string(),
        None,
    )
    .unwrap();
    for r in &requests {
        let d = next_message(&mut mev).await;
        assert_eq!(d.message(), r);
    }
    flushed(&proxy).await;
}

/// A full queue drops its oldest progress, coalesces progress per table, and refuses other
/// messages rather than dropping them; what it kept arrives once the proxy is up.
#[tokio::test]
async fn the_queue_is_bounded_and_keeps_requests_and_phases() {
    let mut c = config(Role::Migrator, "migrator");
    c.max_queued = 3;
    let (migrator, _mev) = Channel::dial(c, addr(127, 1).to_string(), None).unwrap();
    let progress = |t: usize, rows: u64| Message::TableProgress {
        table: table(t),
        ranges_done: 1,
        ranges_total: 2,
        rows,
    };
    let started = |t: usize| Message::TableStarted { table: table(t) };
    migrator.send(progress(1, 10)).unwrap();
    migrator.send(started(5)).unwrap();
    migrator.send(progress(2, 10)).unwrap();
    migrator.send(progress(1, 20)).unwrap(); // replaces progress(1, 10)
    migrator.send(started(6)).unwrap(); // drops progress(2, 10)
    migrator.send(started(7)).unwrap(); // drops progress(1, 20)
    let e = migrator
        .send(Message::TableFailed {
            table: table(8),
            reason: "x".into(),
        })
        .unwrap_err();
    assert_eq!(
        e,
        SendError::QueueFull {
            kind: "table_failed",
            queued: 3,
            max: 3
        }
    );
    let s = migrator.status();
    assert_eq!(
        (s.queued, s.queued_total, s.coalesced_total, s.dropped_total),
        (3, 6, 1, 2)
    );

    let (_proxy, mut pev) = Channel::listen(config(Role::Proxy, "proxy"), addr(127, 1), None)
        .await
        .unwrap();
    for m in [started(5), started(6), started(7)] {
        assert_eq!(next_message(&mut pev).await.message(), &m);
    }
    flushed(&migrator).await;
}

// ---------------------------------------------------------------------------------------------
// Hand-written peers: the wire format as documented, and refusals seen from the other side.
// ---------------------------------------------------------------------------------------------

async fn write_json(s: &mut TcpStream, v: &Value) {
    let body = serde_json::to_vec(v).unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&body).await.unwrap();
}

/// The next frame, `None` at the end of the stream.
async fn read_json(s: &mut TcpStream) -> Option<Value> {
    let mut len = [0u8; 4];
    tokio::time::timeout(HANG, s.read_exact(&mut len))
        .await
        .unwrap()
        .ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    Some(serde_json::from_slice(&body).unwrap())
}

fn hello(role: &str, name: &str, min: u16, max: u16, instance: u64) -> Value {
    json!({"kind": "hello", "protocol_version": max, "min_protocol_version": min,
           "role": role, "name": name, "instance": instance})
}

/// Connects as a migrator by hand and completes the handshake.
async fn fake_migrator(to: SocketAddr, name: &str, instance: u64) -> TcpStream {
    let mut s = TcpStream::connect(to).await.unwrap();
    let theirs = read_json(&mut s).await.unwrap();
    assert_eq!(theirs["kind"], "hello");
    write_json(&mut s, &hello("migrator", name, 1, 1, instance)).await;
    assert_eq!(read_json(&mut s).await.unwrap(), json!({"kind": "accept"}));
    write_json(&mut s, &json!({"kind": "accept"})).await;
    s
}

async fn refused(events: &mut Events) -> (String, bool) {
    loop {
        if let Event::Refused { reason, by_peer } = next_event(events).await {
            return (reason, by_peer);
        }
    }
}

#[tokio::test]
async fn a_version_the_peer_does_not_speak_is_refused_clearly_on_both_sides() {
    // A newer migrator (2..=3) meets this proxy (1..=1).
    let (proxy, mut pev) = Channel::listen(config(Role::Proxy, "proxy-1"), addr(125, 1), None)
        .await
        .unwrap();
    let mut s = TcpStream::connect(addr(125, 1)).await.unwrap();
    let theirs = read_json(&mut s).await.unwrap();
    assert_eq!(
        theirs,
        hello("proxy", "proxy-1", 1, 1, proxy.instance()),
        "the proxy's hello, as documented"
    );
    write_json(&mut s, &hello("migrator", "m-next", 2, 3, 7)).await;
    let expected = "no common Update protocol version: migrator m-next speaks 2..=3, this end \
                    speaks 1..=1; run proxy and migrator builds whose versions overlap";
    assert_eq!(
        read_json(&mut s).await.unwrap(),
        json!({"kind": "refuse", "reason": expected})
    );
    assert_eq!(read_json(&mut s).await, None, "then the proxy closes");
    assert_eq!(refused(&mut pev).await, (expected.to_owned(), false));
    assert_eq!(
        (proxy.status().refusals_total, proxy.status().connects_total),
        (1, 0)
    );

    // This migrator meets a proxy of version 9 that refuses it in turn.
    let fake_proxy = TcpListener::bind(addr(125, 2)).await.unwrap();
    let mut c = config(Role::Migrator, "migrator");
    c.backoff_initial = Duration::from_millis(1);
    c.backoff_max = Duration::from_secs(3600);
    let (_migrator, mut mev) = Channel::dial(c, addr(125, 2).to_string(), None).unwrap();
    let (mut s, _) = fake_proxy.accept().await.unwrap();
    let theirs = read_json(&mut s).await.unwrap();
    assert_eq!(
        (theirs["role"].clone(), theirs["protocol_version"].clone()),
        (json!("migrator"), json!(1))
    );
    write_json(&mut s, &hello("proxy", "p9", 9, 9, 1)).await;
    let refusal = read_json(&mut s).await.unwrap();
    let expected = "no common Update protocol version: proxy p9 speaks 9..=9, this end speaks \
                    1..=1; run proxy and migrator builds whose versions overlap";
    assert_eq!(refusal, json!({"kind": "refuse", "reason": expected}));
    assert_eq!(read_json(&mut s).await, None);
    assert_eq!(refused(&mut mev).await, (expected.to_owned(), false));
    // Not retried in a tight loop: the next attempt waits the longest backoff (an hour
    // here), where a failure of any other kind would retry after a millisecond.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), fake_proxy.accept())
            .await
            .is_err(),
        "no reconnect right after a refusal"
    );
}

#[tokio::test]
async fn duplicates_undecodable_and_misdirected_messages() {
    let (_proxy, mut pev) = Channel::listen(config(Role::Proxy, "proxy"), addr(126, 1), None)
        .await
        .unwrap();
    let mut s = fake_migrator(addr(126, 1), "m", 41).await;
    let started = json!({"type": "table_started", "table": {"keyspace": "ks", "table": "t0"}});

    write_json(
        &mut s,
        &json!({"kind": "data", "id": 1, "message": started}),
    )
    .await;
    let d = next_message(&mut pev).await;
    assert_eq!(
        (d.id(), d.message()),
        (1, &Message::TableStarted { table: table(0) })
    );
    d.ack();
    assert_eq!(
        read_json(&mut s).await.unwrap(),
        json!({"kind": "ack", "id": 1})
    );

    // A redelivery: answered, not delivered.
    write_json(
        &mut s,
        &json!({"kind": "data", "id": 1, "message": started}),
    )
    .await;
    assert_eq!(
        read_json(&mut s).await.unwrap(),
        json!({"kind": "ack", "id": 1})
    );

    // A message type from a newer build: refused, the connection stays.
    write_json(
        &mut s,
        &json!({"kind": "data", "id": 2, "message": {"type": "table_compacted"}}),
    )
    .await;
    let nack = read_json(&mut s).await.unwrap();
    assert_eq!(
        (nack["kind"].clone(), nack["id"].clone()),
        (json!("nack"), json!(2))
    );
    let reason = nack["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.starts_with("cannot decode the message: unknown variant `table_compacted`"),
        "{reason}"
    );
    // Its redelivery gets the same refusal.
    write_json(
        &mut s,
        &json!({"kind": "data", "id": 2, "message": {"type": "table_compacted"}}),
    )
    .await;
    assert_eq!(read_json(&mut s).await.unwrap()["reason"], json!(reason));

    // A proxy's request from a migrator.
    let remigrate =
        json!({"type": "remigrate", "table": {"keyspace": "ks", "table": "t"}, "reason": "r"});
    write_json(
        &mut s,
        &json!({"kind": "data", "id": 3, "message": remigrate}),
    )
    .await;
    assert_eq!(
        read_json(&mut s).await.unwrap(),
        json!({"kind": "nack", "id": 3, "reason": "remigrate is sent by a proxy, not by a migrator"})
    );

    // The application's own refusal.
    write_json(
        &mut s,
        &json!({"kind": "data", "id": 4, "message": started}),
    )
    .await;
    let d = next_message(&mut pev).await;
    assert_eq!(
        d.id(),
        4,
        "ids 2 and 3 never reached the application, 1 only once"
    );
    d.nack("no");
    assert_eq!(
        read_json(&mut s).await.unwrap(),
        json!({"kind": "nack", "id": 4, "reason": "no"})
    );
    // "Not now" travels as an added field, which older peers ignore; a redelivery is
    // answered the same way.
    let not_now = json!({"kind": "nack", "id": 5, "reason": "later", "refusal": "not_now"});
    let five = json!({"kind": "data", "id": 5, "message": started});
    write_json(&mut s, &five).await;
    next_message(&mut pev)
        .await
        .refuse("later", Refusal::NotNow);
    assert_eq!(read_json(&mut s).await.unwrap(), not_now);
    write_json(&mut s, &five).await;
    assert_eq!(read_json(&mut s).await.unwrap(), not_now);

    // The same ids from a restarted migrator (another instance) are new messages.
    drop(s);
    let mut s = fake_migrator(addr(126, 1), "m", 42).await;
    write_json(
        &mut s,
        &json!({"kind": "data", "id": 1, "message": started}),
    )
    .await;
    let d = next_message(&mut pev).await;
    assert_eq!(d.id(), 1);
    drop(d);
    assert_eq!(
        read_json(&mut s).await.unwrap(),
        json!({"kind": "ack", "id": 1})
    );

    // An oversized frame: the length alone closes the connection.
    s.write_all(&(2u32 << 20).to_be_bytes()).await.unwrap();
    assert_eq!(read_json(&mut s).await, None);
    loop {
        if let Event::Disconnected { reason, .. } = next_event(&mut pev).await {
            assert_eq!(
                reason,
                "frame of 2097152 bytes is larger than the limit of 1048576 bytes"
            );
            break;
        }
    }
}

/// A peer that goes silent without closing (a machine that vanished) is dropped after the
/// idle timeout; until then it receives heartbeats.
#[tokio::test]
async fn a_silent_peer_is_dropped_after_the_idle_timeout() {
    let mut c = config(Role::Proxy, "proxy");
    c.heartbeat = Duration::from_millis(20);
    // 100 heartbeats' worth: the first heartbeat is due long before, even when a loaded
    // machine stalls the channel's task (a stall past the idle timeout would close it first).
    c.idle_timeout = Duration::from_secs(2);
    let (proxy, mut pev) = Channel::listen(c, addr(126, 2), None).await.unwrap();
    let mut s = fake_migrator(addr(126, 2), "m", 1).await;
    assert_eq!(
        read_json(&mut s).await.unwrap(),
        json!({"kind": "heartbeat"})
    );
    loop {
        if let Event::Disconnected { reason, .. } = next_event(&mut pev).await {
            assert_eq!(reason, "nothing received for 2s (idle_timeout)");
            break;
        }
    }
    while let Some(frame) = read_json(&mut s).await {
        assert_eq!(frame, json!({"kind": "heartbeat"}));
    }
    assert_eq!(proxy.status().peer, None);
}

/// The same migrate peer name reconnecting replaces its silent old connection (and finds
/// its lane); another name gets a lane of its own.
#[tokio::test]
async fn the_same_name_replaces_a_silent_connection() {
    let (proxy, mut pev) = Channel::listen(config(Role::Proxy, "proxy-1"), addr(129, 1), None)
        .await
        .unwrap();
    // A connection that went silent (its machine vanished) still holds its lane.
    let mut old = fake_migrator(addr(129, 1), "m1", 1).await;
    assert_eq!(connected(&mut pev).await.instance, 1);

    let (m2, _m2ev) =
        Channel::dial(config(Role::Migrator, "m2"), addr(129, 1).to_string(), None).unwrap();
    assert_eq!(connected(&mut pev).await.instance, m2.instance());

    let (m1, _m1ev) =
        Channel::dial(config(Role::Migrator, "m1"), addr(129, 1).to_string(), None).unwrap();
    let mut replaced = false;
    loop {
        match next_event(&mut pev).await {
            Event::Disconnected { peer, reason } => {
                assert_eq!(
                    (peer.instance, reason.as_str()),
                    (1, "replaced by a new connection of the same peer")
                );
                replaced = true;
            }
            Event::Connected(peer) => {
                assert_eq!(peer.instance, m1.instance());
                break;
            }
            _ => {}
        }
    }
    assert!(
        replaced,
        "the old connection ended before the new one took over"
    );
    assert_eq!(read_json(&mut old).await, None, "the old socket was closed");
    let peers: Vec<u64> = proxy.status().peers.iter().map(|p| p.instance).collect();
    assert_eq!(
        peers,
        [m1.instance(), m2.instance()],
        "by name, m2 untouched"
    );
}

/// Two workers of one job at once: each its own lane, requests to the one named, and a
/// worker's connection cut while a request is unanswered gets it again on reconnecting,
/// while the other worker carries on.
#[tokio::test]
async fn each_migrate_peer_has_its_own_lane() {
    let at = addr(202, 1);
    let (proxy, mut pev) = Channel::listen(config(Role::Proxy, "proxy-1"), at, None)
        .await
        .unwrap();
    // Worker a: hand-written, with the Hello of a build before purposes.
    let mut a = fake_migrator(at, "worker-a", 7).await;
    assert_eq!(connected(&mut pev).await.name, "worker-a");
    let (b, mut bev) =
        Channel::dial(config(Role::Migrator, "worker-b"), at.to_string(), None).unwrap();
    assert_eq!(connected(&mut pev).await.name, "worker-b");
    let status = proxy.status();
    let names: Vec<&str> = status.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["worker-a", "worker-b"]);
    assert_eq!(
        status.peer.as_ref().map(|p| p.name.as_str()),
        Some("worker-a")
    );

    let for_a = Message::Remigrate {
        table: table(1),
        reason: "a's table".into(),
    };
    let for_b = Message::Remigrate {
        table: table(2),
        reason: "b's table".into(),
    };
    let id_a = proxy.send_to("worker-a", for_a.clone()).unwrap();
    let id_b = proxy.send_to("worker-b", for_b.clone()).unwrap();
    assert_ne!(id_a, id_b, "one id counter for every lane");
    assert_eq!(
        proxy.send_to("worker-c", for_a.clone()),
        Err(SendError::NoPeer {
            kind: "remigrate",
            purpose: Purpose::Migrate,
            name: "worker-c".into()
        })
    );
    let d = next_message(&mut bev).await;
    assert_eq!(d.message(), &for_b);
    d.ack();
    let frame = read_json(&mut a).await.unwrap();
    assert_eq!(
        (frame["kind"].clone(), frame["id"].clone()),
        (json!("data"), json!(id_a))
    );
    assert_eq!(frame["message"]["reason"], "a's table");

    // a's connection is cut before it answers; b is not disturbed.
    drop(a);
    loop {
        if let Event::Disconnected { peer, .. } = next_event(&mut pev).await {
            assert_eq!(peer.name, "worker-a");
            break;
        }
    }
    let lanes = proxy.status().lanes;
    let a_lane = lanes
        .iter()
        .find(|l| l.name.as_deref() == Some("worker-a"))
        .unwrap();
    assert_eq!(
        (a_lane.peer.is_none(), a_lane.queued),
        (true, 1),
        "kept for a"
    );
    // `send` picks the connected worker.
    let any = Message::ReorderTables {
        remaining: vec![table(2)],
    };
    proxy.send(any.clone()).unwrap();
    let d = next_message(&mut bev).await;
    assert_eq!(d.message(), &any);
    d.ack();

    // The same worker (same instance) back: the unanswered request again.
    let mut a = fake_migrator(at, "worker-a", 7).await;
    let frame = read_json(&mut a).await.unwrap();
    assert_eq!(
        (frame["kind"].clone(), frame["id"].clone()),
        (json!("data"), json!(id_a))
    );
    write_json(&mut a, &json!({"kind": "ack", "id": id_a})).await;
    flushed(&proxy).await;
    assert_eq!(b.status().connects_total, 1, "b never reconnected");
    assert_eq!(proxy.status().peers.len(), 2);
}

/// Past `max_peers` migrate lanes a new name is refused, with the reason on both sides;
/// once a worker leaves with nothing queued for it, its lane is free for the next.
#[tokio::test]
async fn migrate_peers_past_the_bound_are_refused() {
    let at = addr(203, 1);
    let mut c = config(Role::Proxy, "proxy-1");
    c.max_peers = 2;
    let (proxy, mut pev) = Channel::listen(c, at, None).await.unwrap();
    let (m1, _m1ev) = Channel::dial(config(Role::Migrator, "m1"), at.to_string(), None).unwrap();
    connected(&mut pev).await;
    let (_m2, _m2ev) = Channel::dial(config(Role::Migrator, "m2"), at.to_string(), None).unwrap();
    connected(&mut pev).await;
    let (m3, mut m3ev) = Channel::dial(config(Role::Migrator, "m3"), at.to_string(), None).unwrap();
    let expected = "proxy proxy-1 already serves 2 migrate peers, its limit, each connected \
                    or holding messages for its return; migrator m3 is not taken (raise the \
                    limit, a proxy's update.max_migrators, or run fewer workers)";
    assert_eq!(refused(&mut m3ev).await, (expected.to_owned(), true));
    assert_eq!(refused(&mut pev).await, (expected.to_owned(), false));
    assert_eq!(proxy.status().lanes.len(), 2);
    // A validate run is not a migrate peer: it still gets in.
    let mut v = config(Role::Migrator, "v");
    v.purpose = Purpose::Validate;
    let (_v, _vev) = Channel::dial(v, at.to_string(), None).unwrap();
    assert_eq!(connected(&mut pev).await.purpose, Purpose::Validate);

    // m1 ends with nothing queued for it: m3 (retrying) takes its lane.
    m1.close().await;
    let peer = connected(&mut pev).await;
    assert_eq!(peer.instance, m3.instance());
    let names: Vec<String> = proxy.status().peers.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["m2", "m3"]);
}

/// A worker that does not come back within `peer_linger`: its lane is dropped and what it
/// had not answered is handed back to the application as "not now", to give to another.
#[tokio::test]
async fn a_lane_whose_peer_stays_away_hands_back_its_messages() {
    let at = addr(204, 1);
    let mut c = config(Role::Proxy, "proxy-1");
    c.peer_linger = Duration::from_millis(200);
    let (proxy, mut pev) = Channel::listen(c, at, None).await.unwrap();
    let mut gone = fake_migrator(at, "gone", 3).await;
    connected(&mut pev).await;
    let request = Message::RepairPartitions {
        table: table(4),
        partitions: vec![PartitionKey::new(["1"])],
    };
    let id = proxy.send_to("gone", request.clone()).unwrap();
    assert_eq!(read_json(&mut gone).await.unwrap()["id"], json!(id));
    drop(gone);
    loop {
        match next_event(&mut pev).await {
            Event::Nacked {
                id: nacked,
                message,
                reason,
                refusal,
                peer,
            } => {
                assert_eq!((nacked, &message, refusal), (id, &request, Refusal::NotNow));
                assert_eq!(peer, "gone", "the peer whose lane was dropped");
                assert_eq!(
                    reason,
                    "migrator gone did not come back within 200ms (peer_linger)"
                );
                break;
            }
            Event::Disconnected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let status = proxy.status();
    assert!(status.lanes.is_empty(), "{:?}", status.lanes);
    assert_eq!(
        (status.queued, status.oldest_queued, status.nacked_total),
        (0, None, 1)
    );
    assert_eq!(
        proxy.send_to("gone", request),
        Err(SendError::NoPeer {
            kind: "repair_partitions",
            purpose: Purpose::Migrate,
            name: "gone".into()
        })
    );
}

/// A `validate` migrator beside the `migrate` one: both stay connected, the proxy's messages
/// go to the `migrate` one only, and each purpose still admits one peer name.
#[tokio::test]
async fn a_validate_peer_connects_beside_the_migrate_one() {
    let at = addr(201, 1);
    let (proxy, mut pev) = Channel::listen(config(Role::Proxy, "proxy-1"), at, None)
        .await
        .unwrap();
    // The same name, as `ferry migrate` and `ferry validate` use.
    let (migrate, mut mev) = Channel::dial(
        config(Role::Migrator, "ferry-migrator"),
        at.to_string(),
        None,
    )
    .unwrap();
    assert_eq!(connected(&mut pev).await.purpose, Purpose::Migrate);
    let mut v = config(Role::Migrator, "ferry-migrator");
    v.purpose = Purpose::Validate;
    let (validate, mut vev) = Channel::dial(v, at.to_string(), None).unwrap();
    let peer = connected(&mut pev).await;
    assert_eq!(peer.purpose, Purpose::Validate);
    assert_eq!(peer.instance, validate.instance());
    assert!(
        peer.to_string()
            .starts_with("migrator ferry-migrator (validate) at ")
    );
    assert_eq!(connected(&mut vev).await.purpose, Purpose::Validate);

    let status = proxy.status();
    assert_eq!(status.peer.map(|p| p.instance), Some(migrate.instance()));
    assert_eq!(
        status
            .other_peers
            .iter()
            .map(|p| p.instance)
            .collect::<Vec<_>>(),
        vec![validate.instance()]
    );
    // Reports from both arrive, each named by its purpose.
    let validated = Message::TableValidated {
        table: table(1),
        rows_checked: 3,
        mismatches: 0,
    };
    validate.send(validated.clone()).unwrap();
    let d = next_message(&mut pev).await;
    assert_eq!(
        (d.peer().purpose, d.message()),
        (Purpose::Validate, &validated)
    );
    d.ack();
    flushed(&validate).await;
    // Requests go to the migrate peer.
    let remigrate = Message::Remigrate {
        table: table(1),
        reason: "r".into(),
    };
    proxy.send(remigrate.clone()).unwrap();
    let d = next_message(&mut mev).await;
    assert_eq!(d.message(), &remigrate);
    d.ack();
    flushed(&proxy).await;

    // Another validate run under another name waits for the first to go.
    let mut other = config(Role::Migrator, "other");
    other.purpose = Purpose::Validate;
    let (other, mut oev) = Channel::dial(other, at.to_string(), None).unwrap();
    let expected = "proxy proxy-1 already has migrator ferry-migrator connected for validate \
                    (one migrator per proxy for validate; give each instance its own name and \
                    listener)";
    assert_eq!(refused(&mut oev).await, (expected.to_owned(), true));
    other.close().await;
    validate.close().await;
    loop {
        if let Event::Disconnected { peer, .. } = next_event(&mut pev).await {
            assert_eq!(peer.purpose, Purpose::Validate);
            break;
        }
    }
    assert!(proxy.status().other_peers.is_empty());
    assert_eq!(
        proxy.status().peer.map(|p| p.instance),
        Some(migrate.instance()),
        "the migrate peer was never displaced"
    );
    assert_eq!(migrate.status().connects_total, 1);
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A throw-away CA and certificates, removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("ferry-update-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (file, names) in [
            ("proxy", vec!["127.0.128.1".to_owned()]),
            ("migrator", vec!["migrator".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
            std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn mutual_tls() {
    let pki = Pki::new("mtls");
    let mut server = ServerTlsFiles::new(pki.path("proxy.pem"), pki.path("proxy.key"));
    server.client_ca_path = Some(pki.path("ca.pem"));
    let server = ServerTls::load(&server).unwrap();
    let mut client = ClientTlsFiles::new(pki.path("ca.pem"));
    client.cert_path = Some(pki.path("migrator.pem"));
    client.key_path = Some(pki.path("migrator.key"));
    let client = ClientTls::load(&client).unwrap();

    let (proxy, mut pev) =
        Channel::listen(config(Role::Proxy, "proxy"), addr(128, 1), Some(server))
            .await
            .unwrap();
    let (migrator, mut mev) = Channel::dial(
        config(Role::Migrator, "migrator"),
        addr(128, 1).to_string(),
        Some(client),
    )
    .unwrap();
    migrator
        .send(Message::TableStarted { table: table(1) })
        .unwrap();
    assert_eq!(
        next_message(&mut pev).await.message(),
        &Message::TableStarted { table: table(1) }
    );
    proxy
        .send(Message::Remigrate {
            table: table(1),
            reason: "r".into(),
        })
        .unwrap();
    assert_eq!(next_message(&mut mev).await.id(), 1);
    flushed(&migrator).await;
    flushed(&proxy).await;

    // A plain-TCP peer gets no hello from a TLS listener: its bytes are not a TLS record.
    let mut plain = TcpStream::connect(addr(128, 1)).await.unwrap();
    write_json(&mut plain, &hello("migrator", "plain", 1, 1, 5)).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(HANG, plain.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(serde_json::from_slice::<Value>(buf.get(4..).unwrap_or_default()).is_err());
    assert_eq!(proxy.status().connects_total, 1);
}

#[test]
fn tls_files_are_checked_with_their_paths() {
    let pki = Pki::new("files");
    let missing = pki.path("nope.pem");
    let e = ServerTls::load(&ServerTlsFiles::new(&missing, pki.path("proxy.key"))).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "cannot read the certificate file {}",
            missing.display()
        )),
        "{e}"
    );
    let e = ServerTls::load(&ServerTlsFiles::new(
        pki.path("proxy.key"),
        pki.path("proxy.key"),
    ))
    .unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    let e = ServerTls::load(&ServerTlsFiles::new(
        pki.path("proxy.pem"),
        pki.path("migrator.key"),
    ))
    .unwrap_err();
    assert!(e.to_string().starts_with("certificate and key: "), "{e}");
    let mut client = ClientTlsFiles::new(pki.path("ca.pem"));
    client.cert_path = Some(pki.path("migrator.pem"));
    let e = ClientTls::load(&client).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a client certificate needs both cert_path and key_path; only cert_path is set"
    );
    let mut client = ClientTlsFiles::new(pki.path("ca.pem"));
    client.server_name = Some("not a name!".into());
    assert!(matches!(
        ClientTls::load(&client),
        Err(TlsError::ServerName { .. })
    ));
}
