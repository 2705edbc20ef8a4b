//! A raw TCP client: version negotiation edge cases, malformed input, panics, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use ferry_cql::ProtocolVersion;
use ferry_cql::envelope::{BodyExtensions, Envelope, EnvelopeDecoder};
use ferry_cql::message::{Request, Response};
use ferry_cql::protocol::{Consistency, Opcode};
use ferry_cql::request::{Options, Query, QueryParameters, Startup};
use ferry_cql::response::{ErrorKind, ResultBody};
use ferry_sim::server::{ClusterConfig, FaultAction, RequestMatcher, faults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{config, start};

const V4: ProtocolVersion = ProtocolVersion::V4;

struct Raw {
    socket: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            socket: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, request: Request, stream: i16) {
        let env = request
            .to_envelope(V4, stream, 0, &BodyExtensions::default())
            .unwrap();
        let mut out = Vec::new();
        env.write_to(&mut out);
        self.socket.write_all(&out).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.unwrap();
    }

    /// The next envelope, or `None` when the server closed the connection.
    async fn recv(&mut self) -> Option<Envelope> {
        let decoder = EnvelopeDecoder::default();
        loop {
            if let Some(env) = decoder.decode(&mut self.buf).unwrap() {
                return Some(env);
            }
            let n =
                tokio::time::timeout(Duration::from_secs(10), self.socket.read_buf(&mut self.buf))
                    .await
                    .expect("server answered within 10 s")
                    .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    async fn recv_response(&mut self) -> (i16, Response) {
        let env = self.recv().await.expect("a response");
        let (_, response) = Response::from_envelope(&env).unwrap();
        (env.stream(), response)
    }

    async fn startup(&mut self) {
        self.send(Request::Startup(Startup::new("3.0.0", None)), 0)
            .await;
        let (_, r) = self.recv_response().await;
        assert!(matches!(r, Response::Ready(_)), "{r:?}");
    }

    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), self.socket.read_to_end(&mut rest)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    }
}

fn query(text: &str) -> Request {
    Request::Query(Query::new(text, QueryParameters::default()))
}

fn protocol_error(r: &Response) -> &str {
    match r {
        Response::Error(e) if e.kind == ErrorKind::ProtocolError => &e.message,
        other => panic!("expected PROTOCOL_ERROR, got {other:?}"),
    }
}

#[tokio::test]
async fn unsupported_versions_get_cassandras_refusal_and_header() {
    let cluster = start(config(1)).await;
    let addr = cluster.addresses()[0];
    let expected = |v: u8| {
        format!(
            "Invalid or unsupported protocol version ({v}); supported versions are (3/v3, 4/v4, 5/v5)"
        )
    };
    // v6 (and DSE's 0x42 that the Python driver starts with): answered in v5, then closed.
    for version in [6u8, 0x42, 0x47] {
        let mut c = Raw::connect(addr).await;
        c.send_raw(&[version, 0, 0, 7, Opcode::Options as u8, 0, 0, 0, 0])
            .await;
        let env = c.recv().await.unwrap();
        assert_eq!(env.header.version, ProtocolVersion::V5);
        assert_eq!(env.stream(), 7);
        let (_, r) = Response::from_envelope(&env).unwrap();
        assert_eq!(protocol_error(&r), expected(version));
        assert!(c.closed().await);
    }
    // An HTTP client.
    let mut c = Raw::connect(addr).await;
    c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (_, r) = c.recv_response().await;
    assert_eq!(protocol_error(&r), expected(b'G'));
    // v2: answered with a v2 header (8 bytes, one-byte stream).
    let mut c = Raw::connect(addr).await;
    c.send_raw(&[0x02, 0, 9, Opcode::Options as u8, 0, 0, 0, 0])
        .await;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.socket.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply[..4], &[0x82, 0, 9, 0]);
    let body = &reply[8..];
    assert_eq!(&body[..4], &0x000Ai32.to_be_bytes());
    assert_eq!(&body[6..], expected(2).as_bytes());
    cluster.shutdown().await;
}

#[tokio::test]
async fn malformed_input_gets_protocol_errors_and_spares_other_connections() {
    let cluster = start(ClusterConfig {
        max_body_len: 1024,
        ..config(1)
    })
    .await;
    let addr = cluster.addresses()[0];
    let mut other = Raw::connect(addr).await;
    other.startup().await;

    let mut c = Raw::connect(addr).await;
    // Before STARTUP.
    c.send(query("SELECT 1"), 3).await;
    let (stream, r) = c.recv_response().await;
    assert_eq!(stream, 3);
    assert_eq!(
        protocol_error(&r),
        "Unexpected message QUERY, expecting STARTUP or OPTIONS"
    );
    c.startup().await;
    // Unknown opcode 0x04 with a body: refused on its stream, body skipped.
    c.send_raw(&[0x04, 0, 0, 4, 0x04, 0, 0, 0, 3, 1, 2, 3])
        .await;
    let (stream, r) = c.recv_response().await;
    assert_eq!((stream, protocol_error(&r)), (4, "Unknown opcode 4"));
    // Oversized body: refused from the header, the body is skipped as it arrives.
    let mut big = vec![0x04, 0, 0, 5, Opcode::Query as u8];
    big.extend_from_slice(&2000u32.to_be_bytes());
    big.extend(std::iter::repeat_n(0xAB, 2000));
    c.send_raw(&big).await;
    let (stream, r) = c.recv_response().await;
    assert_eq!(stream, 5);
    assert_eq!(
        protocol_error(&r),
        "Request is too big: length 2009 exceeds maximum allowed length 1024."
    );
    // Undecodable body.
    c.send_raw(&[0x04, 0, 0, 6, Opcode::Query as u8, 0, 0, 0, 2, 0xff, 0xff])
        .await;
    let (stream, r) = c.recv_response().await;
    assert_eq!(stream, 6);
    assert!(
        protocol_error(&r).starts_with("Error decoding the request"),
        "{r:?}"
    );
    // Another version on the same connection.
    c.send_raw(&[0x03, 0, 0, 8, Opcode::Options as u8, 0, 0, 0, 0])
        .await;
    let (_, r) = c.recv_response().await;
    assert_eq!(
        protocol_error(&r),
        "Invalid message version. Got 3/v3 but previous messages on this connection had version 4/v4"
    );
    // A second STARTUP.
    c.send(Request::Startup(Startup::new("3.0.0", None)), 9)
        .await;
    let (_, r) = c.recv_response().await;
    assert_eq!(
        protocol_error(&r),
        "Unexpected message STARTUP, the connection is already initialized"
    );
    // The connection still works, and so does the other one.
    c.send(Request::Options(Options), 10).await;
    assert!(matches!(
        c.recv_response().await,
        (10, Response::Supported(_))
    ));
    other.send(query("SELECT * FROM ks.t"), 1).await;
    assert!(matches!(
        other.recv_response().await,
        (1, Response::Result(ResultBody::Rows(_)))
    ));
    cluster.shutdown().await;
}

#[tokio::test]
async fn supported_lists_what_cassandra_5_lists() {
    let cluster = start(config(1)).await;
    let mut c = Raw::connect(cluster.addresses()[0]).await;
    c.send(Request::Options(Options), 1).await;
    let (_, r) = c.recv_response().await;
    let Response::Supported(s) = r else {
        panic!("{r:?}")
    };
    assert_eq!(s.cql_versions(), ["3.4.7"]);
    assert_eq!(s.compression(), ["snappy", "lz4"]);
    assert_eq!(s.protocol_versions(), ["3/v3", "4/v4", "5/v5"]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn handler_panic_is_a_server_error_and_requests_overlap() {
    let cluster = start(config(1)).await;
    let mut c = Raw::connect(cluster.addresses()[0]).await;
    c.startup().await;
    c.send(query("SELECT slow FROM ks.t"), 1).await;
    c.send(query("SELECT panic"), 2).await;
    c.send(query("SELECT fast FROM ks.t"), 3).await;
    // The slow request is held until released: the two after it are answered meanwhile.
    let mut order = Vec::new();
    for _ in 0..2 {
        let (stream, r) = c.recv_response().await;
        if stream == 2 {
            assert!(
                matches!(&r, Response::Error(e) if e.kind == ErrorKind::ServerError),
                "{r:?}"
            );
        }
        order.push(stream);
    }
    order.sort_unstable();
    assert_eq!(order, [2, 3], "answered while the slow request is held");
    cluster.handler().release_slow();
    let (stream, r) = c.recv_response().await;
    assert_eq!(stream, 1);
    assert!(matches!(r, Response::Result(ResultBody::Rows(_))), "{r:?}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn injected_errors_delays_and_closes() {
    let cluster = start(config(1)).await;
    let node = cluster.node(0);
    node.faults().add(
        RequestMatcher::any().table("ks", "w"),
        FaultAction::Error(faults::write_timeout(
            Consistency::Quorum,
            2,
            ferry_cql::response::WriteType::Simple,
        )),
    );
    node.faults().add(
        RequestMatcher::any().text_contains("drop me"),
        FaultAction::CloseConnection,
    );
    let mut c = Raw::connect(cluster.addresses()[0]).await;
    c.startup().await;
    c.send(query("USE ks"), 1).await;
    assert!(matches!(
        c.recv_response().await.1,
        Response::Result(ResultBody::SetKeyspace(_))
    ));
    c.send(query("INSERT INTO w (a) VALUES (1)"), 2).await;
    let (_, r) = c.recv_response().await;
    match r {
        Response::Error(e) => {
            assert!(
                matches!(e.kind, ErrorKind::WriteTimeout { block_for: 2, .. }),
                "{e:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    c.send(query("SELECT 'drop me'"), 3).await;
    assert!(c.recv().await.is_none(), "closed without an answer");
    cluster.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_answers_the_rest_with_errors() {
    // A grace far beyond the test: the held request ends when released, not by the clock.
    let cluster = start(ClusterConfig {
        shutdown_grace: Duration::from_secs(60),
        ..config(1)
    })
    .await;
    let addr = cluster.addresses()[0];
    let mut c = Raw::connect(addr).await;
    c.startup().await;
    c.send(query("SELECT slow FROM ks.t"), 1).await;
    cluster.handler().slow_started(1).await;
    // Released only once shutdown has begun (the node refuses new connections).
    let release = async {
        for _ in 0..3000 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                cluster.handler().release_slow();
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the node kept accepting during shutdown");
    };
    tokio::join!(cluster.shutdown(), release);
    assert!(matches!(
        c.recv_response().await,
        (1, Response::Result(ResultBody::Rows(_)))
    ));
    assert!(c.recv().await.is_none());

    // No grace: the held request (never released) gets an error.
    let cluster = start(ClusterConfig {
        shutdown_grace: Duration::ZERO,
        ..config(1)
    })
    .await;
    let mut c = Raw::connect(cluster.addresses()[0]).await;
    c.startup().await;
    c.send(query("SELECT slow FROM ks.t"), 1).await;
    cluster.handler().slow_started(1).await;
    cluster.shutdown().await;
    let (stream, r) = c.recv_response().await;
    assert_eq!(stream, 1);
    assert!(
        matches!(&r, Response::Error(e) if e.kind == ErrorKind::ServerError),
        "{r:?}"
    );
}

#[tokio::test]
async fn events_reach_registered_connections_on_every_node() {
    use ferry_cql::request::Register;
    use ferry_cql::response::event::EventType;
    let cluster = start(config(2)).await;
    let mut listener = Raw::connect(cluster.addresses()[1]).await;
    listener.startup().await;
    listener
        .send(
            Request::Register(Register::new([
                EventType::SchemaChange,
                EventType::StatusChange,
            ])),
            1,
        )
        .await;
    assert!(matches!(
        listener.recv_response().await,
        (1, Response::Ready(_))
    ));
    let mut unregistered = Raw::connect(cluster.addresses()[1]).await;
    unregistered.startup().await;

    let mut c = Raw::connect(cluster.addresses()[0]).await;
    c.startup().await;
    c.send(query("CREATE KEYSPACE k1 WITH replication = {}"), 2)
        .await;
    assert!(matches!(
        c.recv_response().await,
        (2, Response::Result(ResultBody::SchemaChange(_)))
    ));
    let (stream, event) = listener.recv_response().await;
    assert_eq!(stream, -1);
    assert!(
        matches!(
            event,
            Response::Event(ferry_cql::response::Event::SchemaChange(_))
        ),
        "{event:?}"
    );

    cluster.node(0).stop().await;
    let (_, event) = listener.recv_response().await;
    match event {
        Response::Event(ferry_cql::response::Event::StatusChange { change, node }) => {
            assert_eq!(change, ferry_cql::response::event::StatusChangeType::Down);
            assert_eq!(node, cluster.addresses()[0]);
        }
        other => panic!("{other:?}"),
    }
    // The unregistered connection got nothing: its next answer is the one it asks for.
    unregistered.send(Request::Options(Options), 5).await;
    assert!(matches!(
        unregistered.recv_response().await,
        (5, Response::Supported(_))
    ));
    cluster.shutdown().await;
}
