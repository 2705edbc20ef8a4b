//! Integration tests of `ferry-migrator` against two in-process `ferry sim` clusters. Each test
//! gets its own 127.0.N.x net (origin .1, target .2), keyspace and job directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity,
    reason = "tests"
)]

mod api;
mod counters;
mod faults;
mod fidelity;
mod harness;
mod raw;
mod repair;
mod resume;
mod schema;
mod tls;
mod validate;
