//! End-to-end tests of `ferry proxy` in front of two `ferry sim` clusters, with real drivers.
//! Each test gets its own loopback addresses (127.0.20+n.x), so tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod admin;
mod cqlsh;
mod failures;
mod harness;
mod limits;
mod prepared;
mod python_driver;
mod raw;
mod scylla_driver;
mod shared;
mod tls;
mod topology;
mod update;
