//! `ferry proxy` as a user runs it: bad configuration is listed with exit code 64; a good one
//! (environment only) starts in front of two sims, answers the native protocol, and stops
//! cleanly on SIGTERM.

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

mod common;

use common::sim;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

#[test]
fn bad_configuration_lists_every_problem_with_exit_64() {
    let out = Command::new(FERRY)
        .args(["proxy"])
        .env("FERRY_PROXY_REQUEST_TIMEOUT", "soon")
        .env("ZDM_PROXY_TOPOLOGY_NUM_TOKENS", "9999")
        .env_remove("FERRY_PROXY_ORIGIN_CONTACT_POINTS")
        .env_remove("ZDM_ORIGIN_CONTACT_POINTS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "request_timeout",
        "num_tokens",
        "origin.contact_points",
        "target.contact_points",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected} missing from:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_starts_from_the_environment_answers_and_stops_on_sigterm() {
    let origin = sim("127.0.12.1").await;
    let target = sim("127.0.12.2").await;
    let mut child = Command::new(FERRY)
        .args(["proxy"])
        .env("FERRY_PROXY_LISTEN", "127.0.12.3:0")
        .env("FERRY_PROXY_ADMIN_LISTEN", "127.0.12.3:0")
        .env(
            "FERRY_PROXY_ORIGIN_CONTACT_POINTS",
            origin.addresses()[0].to_string(),
        )
        // A zdm-proxy user's name for the same kind of setting.
        .env(
            "ZDM_TARGET_CONTACT_POINTS",
            target.addresses()[0].ip().to_string(),
        )
        .env("ZDM_TARGET_PORT", target.addresses()[0].port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read stdout to its end: a closed pipe would fail the proxy's later prints.
    let (found, listening) = std::sync::mpsc::channel::<SocketAddr>();
    let drain = std::thread::spawn(move || {
        let mut printed = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(addr) = line.split("listening on ").nth(1) {
                found.send(addr.trim().parse().unwrap()).unwrap();
            }
            printed.push(line);
        }
        printed
    });
    let addr = tokio::task::spawn_blocking(move || listening.recv().unwrap())
        .await
        .unwrap();

    let answer = tokio::task::spawn_blocking(move || options(addr))
        .await
        .unwrap();
    let Response::Supported(supported) = answer else {
        panic!("expected SUPPORTED, got {answer:?}");
    };
    assert!(
        supported.protocol_versions().iter().any(|v| v == "4/v4"),
        "{supported:?}"
    );

    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let printed = drain.join().unwrap();
    assert_eq!(
        printed.last().map(String::as_str),
        Some("ferry proxy: stopped"),
        "{printed:?}"
    );
    origin.shutdown().await;
    target.shutdown().await;
}

fn options(addr: SocketAddr) -> Response {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let env = Request::Options(Options)
        .to_envelope(ProtocolVersion::V4, 1, 0, &BodyExtensions::default())
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
    let mut bytes = Bytes::from(whole);
    let env = Envelope::parse(&mut bytes, DEFAULT_MAX_BODY_LEN)
        .unwrap()
        .unwrap();
    Response::from_envelope(&env).unwrap().1
}
