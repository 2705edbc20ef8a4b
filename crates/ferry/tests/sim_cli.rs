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
