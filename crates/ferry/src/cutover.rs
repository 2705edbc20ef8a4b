//! `ferry cutover`: switches the primary (or the read mode) on **every** proxy instance given,
//! or on none.
//!
//! ```text
//!  1. GET /primary (/read-mode) on every instance ─ one unreachable ─► exit 1, nothing switched
//!  2. to target, without --force: GET /status on every instance; any cutover blocker
//!     (a table not validated with 0 mismatches) ─► exit 1 with the reasons, nothing switched
//!  3. PUT on each instance in turn ─ one refuses or fails ─► PUT the previous value back on
//!     those already switched (rollback), exit 1
//! ```
//!
//! Step 2 makes a refusal cheap and complete (every instance's reason at once); step 3's
//! rollback covers what can still change between the check and the switch (a migrator report,
//! an instance going away). A rollback that itself fails is printed with the instance, so the
//! operator knows exactly which instances to fix by hand.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::admin_client::{AdminClient, CallError};
use crate::status::proxies;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Primary {
    Origin,
    Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReadModeArg {
    PrimaryOnly,
    DualAsync,
}

#[derive(Debug, Args)]
pub(crate) struct CutoverArgs {
    /// A proxy instance's admin address, HOST or HOST:PORT (port 14001 when left out); repeatable:
    /// every instance is switched, or none.
    #[arg(long, value_name = "ADDR", required = true)]
    proxy: Vec<String>,
    /// The cluster that serves reads from now on (or give --read-mode).
    #[arg(
        long,
        value_enum,
        conflicts_with = "read_mode",
        required_unless_present = "read_mode"
    )]
    primary: Option<Primary>,
    /// Whether reads are also sent to the secondary and compared.
    #[arg(long, value_enum)]
    read_mode: Option<ReadModeArg>,
    /// Switch the primary to target even while tables are not validated.
    #[arg(long)]
    force: bool,
    /// Bearer token (the proxies' admin.bearer_token).
    #[arg(long, value_name = "T")]
    token: Option<String>,
}

/// What is switched: the endpoint, its JSON key and the value.
#[derive(Debug, Clone)]
pub(crate) struct Switch {
    path: &'static str,
    key: &'static str,
    value: &'static str,
    force: bool,
}

impl Switch {
    pub(crate) fn primary(target: bool, force: bool) -> Self {
        Self {
            path: "/primary",
            key: "primary",
            value: if target { "target" } else { "origin" },
            force,
        }
    }

    pub(crate) fn read_mode(dual: bool) -> Self {
        Self {
            path: "/read-mode",
            key: "read_mode",
            value: if dual { "dual-async" } else { "primary-only" },
            force: false,
        }
    }

    fn towards_target(&self) -> bool {
        self.key == "primary" && self.value == "target"
    }
}

/// Why a cutover did not happen (or was undone).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CutoverError {
    #[error("{0}")]
    Unreachable(CallError),
    #[error("{addr}: GET {path} answered HTTP {status}: {reason}")]
    Read {
        addr: SocketAddr,
        path: &'static str,
        status: u16,
        reason: String,
    },
    #[error("{addr}: refused: {reason}")]
    Blocked { addr: SocketAddr, reason: String },
    #[error(
        "{addr}: PUT {path} answered HTTP {status}: {reason} ({switched} instance(s) switched \
         before it were rolled back)"
    )]
    Refused {
        addr: SocketAddr,
        path: &'static str,
        status: u16,
        reason: String,
        switched: usize,
    },
    #[error("{addr}: ROLLBACK FAILED, still {value}: {reason}")]
    RollbackFailed {
        addr: SocketAddr,
        value: &'static str,
        reason: String,
    },
}

/// Switches every instance or none; returns each instance's previous value. Lines of progress
/// go to `say`.
pub(crate) async fn switch_all(
    addrs: &[SocketAddr],
    token: Option<&str>,
    switch: &Switch,
    mut say: impl FnMut(String),
) -> Result<Vec<String>, Vec<CutoverError>> {
    let clients: Vec<AdminClient> = addrs
        .iter()
        .map(|a| AdminClient::new(*a, token.map(str::to_owned)))
        .collect();
    // 1. Every instance answers, and what it has now (for the rollback).
    let mut previous = Vec::new();
    let mut errors = Vec::new();
    for c in &clients {
        match c.get(switch.path).await {
            Ok(a) if a.status == 200 => {
                let v = a.json();
                previous.push(v.get(switch.key).and_then(Value::as_str).map(str::to_owned));
            }
            Ok(a) => errors.push(CutoverError::Read {
                addr: c.addr,
                path: switch.path,
                status: a.status,
                reason: a.reason(),
            }),
            Err(e) => errors.push(CutoverError::Unreachable(e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // 2. Towards target: every instance's blockers at once.
    if switch.towards_target() && !switch.force {
        for c in &clients {
            match c.get("/status").await {
                Ok(a) if a.status == 200 => {
                    let lines = |pointer: &str| -> Vec<String> {
                        a.json()
                            .pointer(pointer)
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|b| b.as_str().map(str::to_owned))
                            .collect()
                    };
                    // Expected workers that have not reported (a proxy with
                    // update.expect_migrators), then tables.
                    let workers = lines("/migration/missing_migrators");
                    let blockers = lines("/migration/cutover_blockers");
                    if !workers.is_empty() || !blockers.is_empty() {
                        let why = ferry_proxy::cutover_refusal(&workers, &blockers);
                        errors.push(CutoverError::Blocked {
                            addr: c.addr,
                            reason: format!("{why}; wait for the migrator, or add --force"),
                        });
                    }
                }
                Ok(a) => errors.push(CutoverError::Read {
                    addr: c.addr,
                    path: "/status",
                    status: a.status,
                    reason: a.reason(),
                }),
                Err(e) => errors.push(CutoverError::Unreachable(e)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
    }
    // 3. Switch one by one; undo on the first failure.
    let path = if switch.force {
        format!("{}?force=true", switch.path)
    } else {
        switch.path.to_owned()
    };
    let body = json!({ switch.key: switch.value });
    for (i, c) in clients.iter().enumerate() {
        let failure = match c.put(&path, &body).await {
            Ok(a) if a.status == 200 => {
                say(format!(
                    "{}: {} {} (was {})",
                    c.addr,
                    switch.key.replace('_', " "),
                    switch.value,
                    previous[i].as_deref().unwrap_or("?")
                ));
                continue;
            }
            Ok(a) => CutoverError::Refused {
                addr: c.addr,
                path: switch.path,
                status: a.status,
                reason: a.reason(),
                switched: i,
            },
            Err(e) => CutoverError::Unreachable(e),
        };
        let mut errors = vec![failure];
        for (done, prev) in clients[..i].iter().zip(&previous) {
            let Some(prev) = prev else { continue };
            // Restoring what was there before is never a new risk, so it is forced.
            let undo = format!("{}?force=true", switch.path);
            match done.put(&undo, &json!({ switch.key: prev })).await {
                Ok(a) if a.status == 200 => {
                    say(format!("{}: rolled back to {prev}", done.addr));
                }
                Ok(a) => errors.push(CutoverError::RollbackFailed {
                    addr: done.addr,
                    value: switch.value,
                    reason: format!("HTTP {}: {}", a.status, a.reason()),
                }),
                Err(e) => errors.push(CutoverError::RollbackFailed {
                    addr: done.addr,
                    value: switch.value,
                    reason: e.to_string(),
                }),
            }
        }
        return Err(errors);
    }
    Ok(previous
        .into_iter()
        .map(|p| p.unwrap_or_else(|| "?".to_owned()))
        .collect())
}

pub(crate) async fn run(args: CutoverArgs) -> ExitCode {
    let addrs = match proxies(&args.proxy) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let switch = match (args.primary, args.read_mode) {
        (Some(p), _) => Switch::primary(p == Primary::Target, args.force),
        (None, Some(m)) => Switch::read_mode(m == ReadModeArg::DualAsync),
        // clap requires one of them.
        (None, None) => return ExitCode::from(crate::EXIT_BAD_CONFIG),
    };
    match switch_all(&addrs, args.token.as_deref(), &switch, |l| {
        println!("ferry cutover: {l}")
    })
    .await
    {
        Ok(_) => {
            println!(
                "ferry cutover: {} {} on all {} instance(s)",
                switch.key.replace('_', " "),
                switch.value,
                addrs.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("ferry cutover: {e}");
            }
            if errors
                .iter()
                .any(|e| matches!(e, CutoverError::RollbackFailed { .. }))
            {
                eprintln!(
                    "ferry cutover: instances are NOT all alike: fix the ones marked ROLLBACK \
                     FAILED by hand (ferry status shows each)"
                );
            } else {
                eprintln!("ferry cutover: nothing switched");
            }
            ExitCode::FAILURE
        }
    }
}
