//! `ferry status`: one screen over every proxy instance's `/status` and the migrator's newest
//! job (`GET /jobs`), or the same as one JSON document with `--json`.
//!
//! Exit code 0 when every instance answered, 1 when one could not be reached or refused (each
//! gets a line saying why; the others are still shown), 64 for bad arguments.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use crate::EXIT_BAD_CONFIG;
use crate::admin_client::{AdminClient, admin_addr};

/// DESIGN.md's admin ports.
pub(crate) const PROXY_ADMIN_PORT: u16 = 14001;
pub(crate) const MIGRATOR_ADMIN_PORT: u16 = 14101;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// A proxy instance's admin address, HOST or HOST:PORT (port 14001 when left out); repeatable.
    #[arg(long, value_name = "ADDR", required = true)]
    proxy: Vec<String>,
    /// The migrator's admin address, HOST or HOST:PORT (port 14101 when left out).
    #[arg(long, value_name = "ADDR")]
    migrator: Option<String>,
    /// Bearer token (admin.bearer_token); GETs do not need one, it is sent when given.
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// Print one JSON document instead of the screen.
    #[arg(long)]
    json: bool,
}

/// One instance's answer or why there is none.
type Fetched = Result<Value, String>;

/// Parses every `--proxy`, or prints each problem.
pub(crate) fn proxies(given: &[String]) -> Result<Vec<SocketAddr>, ExitCode> {
    let mut out = Vec::new();
    let mut bad = false;
    for p in given {
        match admin_addr(p, PROXY_ADMIN_PORT) {
            Ok(a) => out.push(a),
            Err(e) => {
                eprintln!("--proxy {p}: {e}");
                bad = true;
            }
        }
    }
    if bad {
        Err(ExitCode::from(EXIT_BAD_CONFIG))
    } else {
        Ok(out)
    }
}

async fn fetch(client: &AdminClient, path: &str) -> Fetched {
    match client.get(path).await {
        Ok(a) if a.status == 200 => {
            serde_json::from_str(&a.body).map_err(|e| format!("GET {path}: not JSON: {e}"))
        }
        Ok(a) => Err(format!("GET {path}: HTTP {}: {}", a.status, a.reason())),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) async fn run(args: StatusArgs) -> ExitCode {
    let proxies = match proxies(&args.proxy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let migrator = match &args.migrator {
        None => None,
        Some(m) => match admin_addr(m, MIGRATOR_ADMIN_PORT) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("--migrator {m}: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
    };
    let mut fetches = Vec::new();
    for addr in &proxies {
        let client = AdminClient::new(*addr, args.token.clone());
        fetches.push(async move { (client.addr, fetch(&client, "/status").await) });
    }
    let proxy_states = futures_join(fetches).await;
    let job = match migrator {
        Some(addr) => {
            let client = AdminClient::new(addr, args.token.clone());
            Some((addr, fetch(&client, "/jobs").await))
        }
        None => None,
    };
    let failed = proxy_states.iter().any(|(_, s)| s.is_err())
        || job.as_ref().is_some_and(|(_, j)| j.is_err());
    if args.json {
        println!("{}", to_json(&proxy_states, job.as_ref()));
    } else {
        print!("{}", render(&proxy_states, job.as_ref()));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs the requests at once, keeping their order.
async fn futures_join<F, T>(futures: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn to_json(proxies: &[(SocketAddr, Fetched)], job: Option<&(SocketAddr, Fetched)>) -> Value {
    let one = |addr: &SocketAddr, f: &Fetched| match f {
        Ok(v) => json!({"addr": addr.to_string(), "status": v}),
        Err(e) => json!({"addr": addr.to_string(), "error": e}),
    };
    json!({
        "proxies": proxies.iter().map(|(a, f)| one(a, f)).collect::<Vec<_>>(),
        "migrator": job.map(|(a, f)| match f {
            Ok(v) => json!({"addr": a.to_string(), "job": newest_job(v)}),
            Err(e) => json!({"addr": a.to_string(), "error": e}),
        }),
    })
}

fn newest_job(jobs: &Value) -> Value {
    jobs.get("jobs")
        .and_then(Value::as_array)
        .and_then(|j| j.last())
        .cloned()
        .unwrap_or(Value::Null)
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
}

/// One worker of `/status`'s `migrators`: connected or away, with what waits for it.
fn migrator_line(m: &Value) -> String {
    let flag = |key: &str| m.get(key).and_then(Value::as_bool) == Some(true);
    let mut line = if flag("connected") {
        format!("migrator {} from {}", s(m, "name"), s(m, "addr"))
    } else if flag("never_connected") {
        format!("migrator {} expected, never connected", s(m, "name"))
    } else {
        format!("migrator {} away", s(m, "name"))
    };
    let _ = write!(line, ", {} tables", n(m, "tables"));
    if n(m, "queued") > 0 {
        let _ = write!(line, ", {} requests queued", n(m, "queued"));
    }
    if m.get("repairs_held").and_then(Value::as_bool) == Some(true) {
        line.push_str(", repairs held");
    }
    line
}

/// The screen.
pub(crate) fn render(
    proxies: &[(SocketAddr, Fetched)],
    job: Option<&(SocketAddr, Fetched)>,
) -> String {
    let mut out = String::new();
    for (addr, state) in proxies {
        let st = match state {
            Ok(st) => st,
            Err(e) => {
                let _ = writeln!(out, "proxy {addr}: UNREACHABLE: {e}\n");
                continue;
            }
        };
        let dual = st.get("dual_reads").cloned().unwrap_or_default();
        let repairs = st.get("repairs").cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "proxy {addr}: primary {}, read mode {}, health {}, {} client connections, \
             target failures {}",
            s(st, "primary"),
            s(st, "read_mode"),
            s(st, "health"),
            n(st, "client_connections"),
            s(st, "target_failure_policy"),
        );
        let _ = writeln!(
            out,
            "  dual reads: {} compared, {} mismatches, {} secondary failures; repairs: {} pending",
            n(&dual, "compared"),
            n(&dual, "mismatches"),
            n(&dual, "secondary_failures"),
            n(&repairs, "pending"),
        );
        let migration = st.get("migration").cloned().unwrap_or_default();
        let channel = migration.get("update_channel").filter(|c| !c.is_null());
        match channel {
            None => {
                let _ = writeln!(out, "  update channel: off");
            }
            Some(c) => {
                let workers: Vec<String> = c
                    .get("migrators")
                    .and_then(Value::as_array)
                    .map(|all| all.iter().map(migrator_line).collect())
                    .unwrap_or_default();
                let mut peer = if workers.is_empty() {
                    c.get("migrator")
                        .filter(|m| !m.is_null())
                        .map_or("no migrator connected".to_owned(), |m| {
                            format!("migrator {} from {}", s(m, "name"), s(m, "addr"))
                        })
                } else {
                    workers.join("; ")
                };
                if let Some(v) = c.get("validator").filter(|v| !v.is_null()) {
                    peer.push_str(&format!(
                        "; validate run {} from {}",
                        s(v, "name"),
                        s(v, "addr")
                    ));
                }
                let _ = writeln!(out, "  update channel: {} ({peer})", s(c, "listen"));
                let waiting: Vec<&str> = c
                    .get("remigrations_waiting")
                    .and_then(Value::as_array)
                    .map(|w| w.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !waiting.is_empty() {
                    let _ = writeln!(
                        out,
                        "  re-migrations waiting for a migrator that can take them: {}",
                        waiting.join(", ")
                    );
                }
            }
        }
        // Every worker's job; a proxy before several workers has the one `job`.
        let jobs: Vec<Value> = match migration.get("jobs").and_then(Value::as_array) {
            Some(all) => all.clone(),
            None => migration.get("job").into_iter().cloned().collect(),
        };
        for j in jobs.iter().filter(|j| !j.is_null()) {
            let fin = if j.get("finished").and_then(Value::as_bool) == Some(true) {
                format!(
                    "finished: {} done, {} failed",
                    n(j, "tables_done"),
                    n(j, "tables_failed")
                )
            } else {
                "running".to_owned()
            };
            let by = j
                .get("migrator")
                .and_then(Value::as_str)
                .map(|m| format!(" (migrator {m})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  migration job {}{by}: {} tables, {fin}",
                s(j, "name"),
                n(j, "tables")
            );
        }
        let tables = migration
            .get("tables")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let dual_tables = dual.get("tables").and_then(Value::as_object);
        let repair_tables = repairs.get("tables").and_then(Value::as_object);
        let mut names: Vec<&String> = tables.keys().collect();
        for t in dual_tables.into_iter().chain(repair_tables) {
            names.extend(t.keys());
        }
        names.sort();
        names.dedup();
        if !names.is_empty() {
            let _ = writeln!(
                out,
                "  {:<32} {:<12} {:>15} {:>10} {:>12} {:>10} {:>8}",
                "table", "phase", "ranges", "rows", "dual reads", "mismatch", "repairs"
            );
        }
        for name in names {
            let m = tables.get(name).cloned().unwrap_or_default();
            let d = dual_tables
                .and_then(|t| t.get(name))
                .cloned()
                .unwrap_or_default();
            let r = repair_tables
                .and_then(|t| t.get(name))
                .cloned()
                .unwrap_or_default();
            let phase = if m.is_null() { "-" } else { s(&m, "phase") };
            let ranges = if m.is_null() {
                "-".to_owned()
            } else {
                let total = n(&m, "ranges_total");
                let done = n(&m, "ranges_done");
                let pct = if total == 0 {
                    0.0
                } else {
                    done as f64 * 100.0 / total as f64
                };
                format!("{done}/{total} {pct:>3.0}%")
            };
            // Mismatches: what validation found, plus what dual reads saw.
            let _ = writeln!(
                out,
                "  {:<32} {:<12} {:>15} {:>10} {:>12} {:>10} {:>8}",
                name,
                phase,
                ranges,
                n(&m, "rows"),
                n(&d, "compared"),
                n(&m, "mismatches") + n(&d, "mismatches"),
                n(&r, "total"),
            );
            if let Some(reason) = m.get("reason").and_then(Value::as_str) {
                let _ = writeln!(out, "    failed: {reason}");
            }
            if phase == "backfilled" && m.get("replayed").and_then(Value::as_bool) == Some(true) {
                let _ = writeln!(
                    out,
                    "    reported again after the proxy restarted, which forgot validations: \
                     run ferry validate"
                );
            }
        }
        if let Some(missing) = migration.get("missing_migrators").and_then(Value::as_array)
            && !missing.is_empty()
        {
            let names: Vec<&str> = missing.iter().filter_map(Value::as_str).collect();
            let _ = writeln!(
                out,
                "  cutover to target refused until expected workers report: {}",
                names.join(", ")
            );
        }
        if let Some(blockers) = migration.get("cutover_blockers").and_then(Value::as_array)
            && !blockers.is_empty()
        {
            let _ = writeln!(
                out,
                "  cutover to target refused until validated: {} table(s)",
                blockers.len()
            );
        }
        out.push('\n');
    }
    if let Some((addr, fetched)) = job {
        match fetched {
            Err(e) => {
                let _ = writeln!(out, "migrator {addr}: UNREACHABLE: {e}");
            }
            Ok(jobs) => {
                let j = newest_job(jobs);
                if j.is_null() {
                    let _ = writeln!(out, "migrator {addr}: no job yet");
                } else {
                    let _ = writeln!(
                        out,
                        "migrator {addr}: job {} {}: {}/{} tables, {}/{} ranges ({}%), {} rows, \
                         {} errors and warnings",
                        s(&j, "id"),
                        s(&j, "state"),
                        n(&j, "tables_completed"),
                        n(&j, "tables_total"),
                        n(&j, "ranges_done"),
                        n(&j, "ranges_total"),
                        j.get("percentage").and_then(Value::as_f64).unwrap_or(0.0),
                        n(&j, "rows"),
                        n(&j, "error_count"),
                    );
                    for t in j
                        .get("tables")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let _ = writeln!(
                            out,
                            "  {:<32} {:<12} {:>7}/{:<7} ranges {:>10} rows",
                            s(t, "table"),
                            s(t, "phase"),
                            n(t, "ranges_done"),
                            n(t, "ranges_total"),
                            n(t, "rows"),
                        );
                        if let Some(reason) = t.get("reason").and_then(Value::as_str) {
                            let _ = writeln!(out, "    failed: {reason}");
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_screen_names_every_field_and_unreachable_instances() {
        let status = json!({
            "primary": "origin", "read_mode": "dual-async", "health": "UP",
            "client_connections": 3, "target_failure_policy": "strict",
            "dual_reads": {"compared": 10, "mismatches": 1, "secondary_failures": 0,
                "tables": {"ks.a": {"compared": 10, "mismatches": 1, "secondary_failures": 0}}},
            "repairs": {"pending": 2, "tables": {"ks.a": {"pending": 2, "total": 5}}},
            "migration": {"update_channel": {"listen": "127.0.0.1:14100", "migrator": null,
                    "remigrations_waiting": ["ks.b", "ks.c"]},
                "job": null, "cutover_blockers": ["ks.a"],
                "tables": {"ks.a": {"phase": "backfilling", "ranges_done": 1, "ranges_total": 4,
                    "rows": 77, "mismatches": 0, "reason": null},
                    "ks.z": {"phase": "backfilled", "ranges_done": 4, "ranges_total": 4,
                    "rows": 9, "mismatches": 0, "reason": null, "replayed": true}}},
        });
        let mut two = status.clone();
        two["migration"]["update_channel"]["migrators"] = json!([
            {"name": "migrator-0", "connected": true, "addr": "10.0.0.5:40000", "queued": 0,
             "tables": 1, "repairs_held": false},
            {"name": "migrator-1", "connected": false, "addr": null, "queued": 2,
             "tables": 3, "repairs_held": true},
            {"name": "migrator-2", "connected": false, "never_connected": true, "addr": null,
             "queued": 0, "tables": 0, "repairs_held": false}]);
        two["migration"]["missing_migrators"] = json!(["migrator-2 never connected"]);
        two["migration"]["jobs"] = json!([
            {"migrator": "migrator-0", "name": "shop", "tables": 1, "finished": true,
             "tables_done": 1, "tables_failed": 0},
            {"migrator": "migrator-1", "name": "shop", "tables": 3, "finished": false}]);
        let workers = render(
            &[(
                "127.0.0.1:14001".parse().unwrap_or_else(|e| panic!("{e}")),
                Ok(two),
            )],
            None,
        );
        for expected in [
            "(migrator migrator-0 from 10.0.0.5:40000, 1 tables; migrator migrator-1 away, 3 \
             tables, 2 requests queued, repairs held; migrator migrator-2 expected, never \
             connected, 0 tables)",
            "cutover to target refused until expected workers report: migrator-2 never connected",
            "migration job shop (migrator migrator-0): 1 tables, finished: 1 done, 0 failed",
            "migration job shop (migrator migrator-1): 3 tables, running",
        ] {
            assert!(workers.contains(expected), "{expected:?} not in\n{workers}");
        }
        let down: SocketAddr = "127.0.0.1:9".parse().unwrap_or_else(|e| panic!("{e}"));
        let up: SocketAddr = "127.0.0.1:14001".parse().unwrap_or_else(|e| panic!("{e}"));
        let screen = render(
            &[(up, Ok(status)), (down, Err("connection refused".into()))],
            None,
        );
        for expected in [
            "primary origin",
            "read mode dual-async",
            "3 client connections",
            "backfilling",
            "1/4  25%",
            "77",
            "2 pending",
            "refused until validated: 1 table",
            "update channel: 127.0.0.1:14100 (no migrator connected)",
            "re-migrations waiting for a migrator that can take them: ks.b, ks.c",
            "proxy 127.0.0.1:9: UNREACHABLE: connection refused",
            "ks.z                             backfilled          4/4 100%",
            "0        0\n    reported again after the proxy restarted, which forgot validations: \
             run ferry validate\n  cutover",
        ] {
            assert!(screen.contains(expected), "{expected:?} not in\n{screen}");
        }
    }
}
