//! `ferry sim` as a user runs it: it prints where it listens, answers the native protocol, stops
//! cleanly on SIGTERM, and refuses bad configuration with exit code 64.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use ferry_cql::ProtocolVersion;
use ferry_cql::envelope::{BodyExtensions, DEFAULT_MAX_BODY_LEN, Envelope, HEADER_LEN};
use ferry_cql::message::{Request, Response};
use ferry_cql::request::Options;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

#[test]
fn sim_listens_answers_and_stops_on_sigterm() {
    let mut child = Command::new(FERRY)
        .args(["sim", "--nodes", "2", "--listen", "127.0.3.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(addr) = line.split("listening on ").nth(1) {
            addrs.push(addr.trim().parse().unwrap());
        }
        if line.contains("Ctrl-C") {
            break;
        }
    }
    assert_eq!(addrs.len(), 2, "one line per node");
    assert_eq!(addrs[1].ip().to_string(), "127.0.3.2");

    // OPTIONS → SUPPORTED on the first node.
    let mut sock = TcpStream::connect(addrs[0]).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let env = Request::Options(Options)
        .to_envelope(ProtocolVersion::V4, 3, 0, &BodyExtensions::default())
        .unwrap();
    let mut out = Vec::new();
    env.write_to(&mut out);
    sock.write_all(&out).unwrap();
    let mut header = [0u8; HEADER_LEN];
    sock.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).unwrap();
    let mut whole = header.to_vec();
    whole.extend(body);
    let env = Envelope::parse(&mut Bytes::from(whole), DEFAULT_MAX_BODY_LEN)
        .unwrap()
        .unwrap();
    assert_eq!(env.stream(), 3);
    let (_, resp) = Response::from_envelope(&env).unwrap();
    assert!(matches!(resp, Response::Supported(_)), "{resp:?}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn bad_configuration_exits_64_listing_every_problem() {
    let out = Command::new(FERRY)
        .args(["sim", "--nodes", "0", "--vnodes", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert!(
        stderr.matches("  - ").count() >= 2,
        "every problem is listed: {stderr}"
    );
}

#[test]
fn malformed_user_is_a_usage_error() {
    let out = Command::new(FERRY)
        .args(["sim", "--auth", "nocolon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("USER:PASSWORD"));
}

/// One HTTP/1.1 request with `Connection: close`; the whole response as text.
fn http(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn sim_serves_the_admin_api() {
    let mut child = Command::new(FERRY)
        .args(["sim", "--listen", "127.0.6.10:0", "--admin", "127.0.6.10:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut node, mut admin) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(addr) = line.split("listening on ").nth(1) {
            node = Some(addr.trim().parse::<SocketAddr>().unwrap());
        }
        if let Some(addr) = line.strip_prefix("ferry sim: admin on ") {
            admin = Some(addr.trim().parse::<SocketAddr>().unwrap());
        }
        if line.contains("Ctrl-C") {
            break;
        }
    }
    let (node, admin) = (node.unwrap(), admin.unwrap());

    let health = http(admin, "GET", "/health");
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    assert!(health.contains(r#""status":"ok""#), "{health}");
    let stopped = http(admin, "POST", "/nodes/0/stop");
    assert!(stopped.contains(r#""up":false"#), "{stopped}");
    let refused = TcpStream::connect(node).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let unknown = http(admin, "POST", "/nodes/5/stop");
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    assert!(child.wait().unwrap().success());
}
