//! `ferry proxy` measured against a bare TCP relay: the same driver load (prepared point reads
//! and writes, few connections, many requests in flight) sent straight to a sim, through haproxy
//! in TCP mode (one thread), through the proxy (origin and target sims), and through a second
//! proxy with shared backend connections (`share_backend_connections`). Reports throughput,
//! p50/p99 latency and the relay's or the proxy's CPU time per request from `/proc/<pid>/stat`,
//! and the proxy's memory per idle client connection. Numbers and method: `proxy/BENCHMARKS.md`.
//!
//! # Layout
//! - `main`: options; pins itself to the load CPU, finds or builds the `ferry` binary, starts
//!   the processes, runs the phases, prints the summary against the targets.
//! - `Procs`: the child processes — two `ferry sim`s and the load client on CPU 0, haproxy or
//!   `ferry proxy` alone on CPU 1 — each stopped when dropped.
//! - `run_phase`: one load (reads or writes, fixed rate or unthrottled) against one endpoint;
//!   `Phase` is what it measured.
//! - `idle_cost`: RSS of the relay or the proxy with N idle client connections vs without, and
//!   the CPU time they cost while they stay idle.
//! - `summary`: the targets, met or not.
//!
//! Run: `cargo bench -p ferry-proxy --bench proxy [-- --rate N --secs N --concurrency N
//! --connections N --idle N --only direct,relay,proxy,shared --ops read,write --modes fixed,max
//! --ferry PATH --requests N --proxy-prefix 'valgrind --tool=callgrind']`. Not part of `cargo test`.

use std::collections::HashMap;
use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferry_cql::message::Request;
use ferry_cql::protocol::{Opcode, ProtocolVersion};
use ferry_cql::request::Startup;
use scylla::client::PoolSize;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;

type BoxError = Box<dyn Error + Send + Sync>;

/// The relay or proxy under test runs alone on this CPU; the sims and the load client share
/// [`LOAD_CPU`]. The VM has two.
const MIDDLE_CPU: &str = "1";
const LOAD_CPU: &str = "0";

/// A 100-byte value for every write.
/// The warm-up's requests when phases are counted in requests (`--requests`).
const WARMUP_REQUESTS: u64 = 2000;

const VALUE: &str = "ferry-proxy-bench-value-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-012345";

#[derive(Debug, Clone)]
struct Options {
    /// First three octets of the loopback addresses: .1 origin, .2 target, .3 haproxy, .4 proxy,
    /// .5 the proxy with shared backend connections.
    net: [u8; 3],
    port: u16,
    /// The fixed-rate load, requests per second.
    rate: u64,
    /// Length of each measured phase.
    secs: u64,
    /// Requests per measured phase instead of `secs` (and a warm-up of [`WARMUP_REQUESTS`]):
    /// a fixed amount of work, for instruction counts of a proxy run under a profiler.
    requests: Option<u64>,
    /// A command the proxy runs under (`valgrind --tool=callgrind ...`); split on spaces.
    proxy_prefix: Vec<String>,
    /// Requests in flight (unthrottled), and the most in flight at the fixed rate.
    concurrency: usize,
    /// Driver connections per endpoint.
    connections: usize,
    /// Rows loaded before the phases; reads and writes pick keys among them.
    rows: u64,
    /// Idle client connections for the memory measurement (0 skips it).
    idle: usize,
    only: Vec<Endpoint>,
    ops: Vec<Op>,
    modes: Vec<Mode>,
    /// The `ferry` binary; unset: built with `cargo build --profile bench -p ferry`.
    ferry: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            net: [127, 0, 77],
            port: 19042,
            rate: 5000,
            secs: 15,
            requests: None,
            proxy_prefix: Vec::new(),
            concurrency: 256,
            connections: 2,
            rows: 10_000,
            idle: 500,
            only: vec![
                Endpoint::Direct,
                Endpoint::Relay,
                Endpoint::Proxy,
                Endpoint::Shared,
            ],
            ops: vec![Op::Read, Op::Write],
            modes: vec![Mode::Fixed, Mode::Max],
            ferry: std::env::var_os("FERRY_BIN").map(PathBuf::from),
        }
    }
}

impl Options {
    fn addr(&self, host: u8) -> SocketAddr {
        let [a, b, c] = self.net;
        SocketAddr::from(([a, b, c, host], self.port))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Direct,
    Relay,
    Proxy,
    /// A second `ferry proxy` with `share_backend_connections: true`.
    Shared,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Relay => "haproxy",
            Self::Proxy => "ferry proxy",
            Self::Shared => "ferry proxy, shared",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `Options::rate` requests per second, paced.
    Fixed,
    /// `Options::concurrency` requests always in flight.
    Max,
}

fn list<T>(v: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, BoxError> {
    v.split(',')
        .map(|s| parse(s.trim()).ok_or_else(|| format!("unknown value {s:?}").into()))
        .collect()
}

fn parse_args(args: &[String]) -> Result<Options, BoxError> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--net" => {
                let v = value()?;
                let octets: Vec<u8> = v.split('.').map(str::parse).collect::<Result<_, _>>()?;
                o.net = octets
                    .try_into()
                    .map_err(|_| format!("--net takes three octets, got {v:?}"))?;
            }
            "--port" => o.port = value()?.parse()?,
            "--rate" => o.rate = value()?.parse()?,
            "--secs" => o.secs = value()?.parse()?,
            "--requests" => o.requests = Some(value()?.parse()?),
            "--proxy-prefix" => {
                o.proxy_prefix = value()?.split_whitespace().map(str::to_owned).collect();
            }
            "--concurrency" => o.concurrency = value()?.parse()?,
            "--connections" => o.connections = value()?.parse()?,
            "--rows" => o.rows = value()?.parse()?,
            "--idle" => o.idle = value()?.parse()?,
            "--ferry" => o.ferry = Some(value()?.into()),
            "--only" => {
                o.only = list(&value()?, |s| match s {
                    "direct" => Some(Endpoint::Direct),
                    "relay" | "haproxy" => Some(Endpoint::Relay),
                    "proxy" => Some(Endpoint::Proxy),
                    "shared" => Some(Endpoint::Shared),
                    _ => None,
                })?;
            }
            "--ops" => {
                o.ops = list(&value()?, |s| match s {
                    "read" => Some(Op::Read),
                    "write" => Some(Op::Write),
                    _ => None,
                })?;
            }
            "--modes" => {
                o.modes = list(&value()?, |s| match s {
                    "fixed" => Some(Mode::Fixed),
                    "max" => Some(Mode::Max),
                    _ => None,
                })?;
            }
            // cargo bench passes `--bench` (and a filter, when given) to every bench binary.
            _ => {}
        }
    }
    if o.rate == 0 || o.secs == 0 || o.concurrency == 0 || o.connections == 0 || o.rows == 0 {
        return Err(format!(
            "rate, secs, concurrency, connections and rows must be positive: {o:?}"
        )
        .into());
    }
    if o.rows > i32::MAX as u64 {
        return Err(format!("rows must be at most {}", i32::MAX).into());
    }
    Ok(o)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = parse_args(&args)?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Before any other thread exists, so the runtime's threads inherit the mask.
    let pinned = pin(std::process::id(), LOAD_CPU);
    let ferry = match &o.ferry {
        Some(p) => p.clone(),
        None => build_ferry()?,
    };
    println!("ferry-proxy bench: ferry binary {}", ferry.display());
    println!(
        "machine: {} CPUs, {}; load average at start: {}",
        cpus,
        cpu_model(),
        load_average()
    );
    if !pinned {
        println!(
            "WARNING: taskset failed: nothing is pinned, CPU and latency figures are not comparable"
        );
    }
    println!("options: {o:?}");
    let dir = std::env::temp_dir().join(format!("ferry-proxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(&o, &ferry, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(o: &Options, ferry: &Path, dir: &Path) -> Result<(), BoxError> {
    let mut procs = Procs::default();
    let origin = procs.start_sim(ferry, o.addr(1), "origin", dir)?;
    let target = procs.start_sim(ferry, o.addr(2), "target", dir)?;
    let relay_pid = if o.only.contains(&Endpoint::Relay) {
        let pid = procs.start_haproxy(o, dir).await?;
        if pid.is_none() {
            println!(
                "haproxy: NOT INSTALLED — the relay rows are missing; `apt-get install -y haproxy` and rerun"
            );
        }
        pid
    } else {
        None
    };
    let proxy_pid = if o.only.contains(&Endpoint::Proxy) {
        Some(procs.start_proxy(ferry, o, dir, false)?)
    } else {
        None
    };
    let shared_pid = if o.only.contains(&Endpoint::Shared) {
        Some(procs.start_proxy(ferry, o, dir, true)?)
    } else {
        None
    };
    let sims = [origin, target];
    setup(o).await?;

    let hz = ticks_per_sec();
    let mut phases = Vec::new();
    for endpoint in o.only.iter().copied() {
        let (addr, behind, middle) = match endpoint {
            Endpoint::Direct => (o.addr(1), o.addr(1), None),
            Endpoint::Relay => match relay_pid {
                Some(pid) => (o.addr(3), o.addr(1), Some(pid)),
                None => continue,
            },
            // The proxy advertises itself (one instance at `listen`).
            Endpoint::Proxy => (o.addr(4), o.addr(4), proxy_pid),
            Endpoint::Shared => (o.addr(5), o.addr(5), shared_pid),
        };
        let session = Arc::new(connect(addr, behind, o.connections).await?);
        for op in o.ops.iter().copied() {
            let stmt = prepare(&session, op).await?;
            // Warm-up: connections, the prepared cache, allocator pools.
            let warmup = Length::new(Duration::from_secs(2), o.requests.map(|_| WARMUP_REQUESTS));
            load(&session, &stmt, op, Mode::Max, o, warmup).await?;
            for mode in o.modes.iter().copied() {
                let phase =
                    run_phase(&session, &stmt, endpoint, op, mode, o, middle, &sims, hz).await?;
                println!("{}", phase.line());
                phases.push(phase);
            }
        }
    }
    let mut idle = Vec::new();
    if o.idle > 0 {
        for (endpoint, pid, addr) in [
            (Endpoint::Relay, relay_pid, o.addr(3)),
            (Endpoint::Proxy, proxy_pid, o.addr(4)),
            (Endpoint::Shared, shared_pid, o.addr(5)),
        ] {
            if let Some(pid) = pid {
                let cost = idle_cost(addr, pid, o.idle).await?;
                let per =
                    cost.rss_after.saturating_sub(cost.rss_before) as f64 * 1024.0 / o.idle as f64;
                println!(
                    "idle connections, {}: RSS {} KiB without, {} KiB with {} idle clients: {:.1} KiB each; \
                     CPU while they stay idle: {:.2} ms/s ({:.2} µs/s each)",
                    endpoint.name(),
                    cost.rss_before,
                    cost.rss_after,
                    o.idle,
                    per / 1024.0,
                    cost.cpu_ms_per_sec,
                    cost.cpu_ms_per_sec * 1000.0 / o.idle as f64
                );
                idle.push((endpoint, per));
            }
        }
    }
    println!("load average at end: {}", load_average());
    println!();
    println!("{}", summary(&phases, &idle));
    for pid in [proxy_pid, shared_pid].into_iter().flatten() {
        // A clean exit, so a profiler the proxy runs under writes its output.
        procs.terminate(pid).await;
    }
    drop(procs);
    Ok(())
}

/// Restricts thread `tid` (a pid for the main thread) to `cpu` with `taskset`; false when that
/// is not possible here.
fn pin(tid: u32, cpu: &str) -> bool {
    Command::new("taskset")
        .args(["-p", "-c", cpu, &tid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the `ferry` binary with the profile benches use (so dependencies are shared with
/// this bench's build) and returns its path from cargo's JSON messages.
fn build_ferry() -> Result<PathBuf, BoxError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?;
    println!(
        "building ferry: cargo build --profile bench -p ferry --bin ferry (set FERRY_BIN or --ferry to skip)"
    );
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--profile",
            "bench",
            "-p",
            "ferry",
            "--bin",
            "ferry",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("cargo build -p ferry failed: {}", out.status).into());
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == "ferry"
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(exe.into());
        }
    }
    Err("cargo build did not report the ferry executable".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// `getconf CLK_TCK`, the unit of `/proc/<pid>/stat` times.
fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `/proc/<pid>/stat`'s user + system time of every thread, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, BoxError> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// `/proc/<pid>/stat`'s (user, system) time of every thread, in clock ticks: what the process
/// spent in its own code and in the kernel (its syscalls, and the loopback TCP they drive).
fn cpu_split(pid: u32) -> Result<(u64, u64), BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    match (f.get(11), f.get(12)) {
        (Some(u), Some(s)) => Ok((u.parse()?, s.parse()?)),
        _ => Err(format!("short /proc/{pid}/stat: {stat:?}").into()),
    }
}

/// CPU time of every thread of `pid` in nanoseconds, from `/proc/<pid>/task/*/schedstat`:
/// exact, where `/proc/<pid>/stat` counts clock ticks (too coarse for an idle process).
fn cpu_nanos(pid: u32) -> Result<u64, BoxError> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread that ended between the listing and the read is simply not counted.
        if let Ok(stat) = std::fs::read_to_string(&path) {
            total += stat
                .split_whitespace()
                .next()
                .ok_or_else(|| format!("empty {}", path.display()))?
                .parse::<u64>()?;
        }
    }
    Ok(total)
}

/// Resident set in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status").into())
}

/// The child processes, killed when dropped (also on an early error).
#[derive(Default)]
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Procs {
    /// Sends SIGTERM to `pid` and waits up to a minute for it to exit (the drop kills it
    /// otherwise).
    async fn terminate(&mut self, pid: u32) {
        let Some(child) = self.0.iter_mut().find(|c| c.id() == pid) else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            return;
        }
        for _ in 0..600 {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `program args` pinned to `cpu`, stderr to `log`; returns the pid and its stdout.
    fn spawn(
        &mut self,
        cpu: &str,
        program: &Path,
        args: &[&str],
        log: &Path,
    ) -> Result<(u32, BufReader<std::process::ChildStdout>), BoxError> {
        let mut child = Command::new("taskset")
            .args(["-c", cpu])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("child has no stdout")?;
        // taskset execs the program, so the pid is the program's own.
        let pid = child.id();
        self.0.push(child);
        Ok((pid, BufReader::new(stdout)))
    }

    /// Waits for a line starting with `ready` on `stdout`, then drains the rest in a thread.
    fn wait_ready(
        mut stdout: BufReader<std::process::ChildStdout>,
        ready: &str,
        log: &Path,
    ) -> Result<(), BoxError> {
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("the child exited before {ready:?}: {log}").into());
            }
            if line.starts_with(ready) {
                break;
            }
        }
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        Ok(())
    }

    fn start_sim(
        &mut self,
        ferry: &Path,
        addr: SocketAddr,
        name: &str,
        dir: &Path,
    ) -> Result<u32, BoxError> {
        let log = dir.join(format!("{name}.log"));
        let (pid, stdout) = self.spawn(
            LOAD_CPU,
            ferry,
            &["sim", "--listen", &addr.to_string()],
            &log,
        )?;
        Self::wait_ready(stdout, "ferry sim: node 0 listening on", &log)?;
        println!("{name} sim: pid {pid} on {addr}, pinned to CPU {LOAD_CPU}");
        Ok(pid)
    }

    /// haproxy in TCP mode, one thread, relaying to origin; `None` when it is not installed.
    async fn start_haproxy(&mut self, o: &Options, dir: &Path) -> Result<Option<u32>, BoxError> {
        let Some(haproxy) = [
            "/usr/sbin/haproxy",
            "/usr/bin/haproxy",
            "/usr/local/sbin/haproxy",
        ]
        .iter()
        .map(Path::new)
        .find(|p| p.exists()) else {
            return Ok(None);
        };
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  nbthread 1\n  maxconn 4000\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 5m\n  timeout server 5m\n\
                 listen cql\n  bind {}\n  server origin {}\n",
                o.addr(3),
                o.addr(1)
            ),
        )?;
        let log = dir.join("haproxy.log");
        let config = config.to_string_lossy().into_owned();
        let (pid, stdout) = self.spawn(MIDDLE_CPU, haproxy, &["-db", "-f", &config], &log)?;
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        wait_listening(o.addr(3), &log).await?;
        let version = Command::new(haproxy)
            .arg("-v")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "haproxy: pid {pid} on {} → origin, TCP mode, nbthread 1, pinned to CPU {MIDDLE_CPU} ({version})",
            o.addr(3)
        );
        Ok(Some(pid))
    }

    fn start_proxy(
        &mut self,
        ferry: &Path,
        o: &Options,
        dir: &Path,
        shared: bool,
    ) -> Result<u32, BoxError> {
        let (name, host) = if shared {
            ("proxy-shared", 5)
        } else {
            ("proxy", 4)
        };
        let config = dir.join(format!("{name}.yaml"));
        let admin = SocketAddr::new(o.addr(host).ip(), 14001);
        // Defaults everywhere else: dual writes with injected timestamps, reads from origin,
        // one proxy instance in the virtual topology (at `listen`).
        std::fs::write(
            &config,
            format!(
                "listen: {listen}\n\
                 origin:\n  contact_points: [\"{origin}\"]\n\
                 target:\n  contact_points: [\"{target}\"]\n\
                 admin:\n  listen: {admin}\n\
                 share_backend_connections: {shared}\n\
                 log:\n  level: warn\n",
                listen = o.addr(host),
                origin = o.addr(1),
                target = o.addr(2),
            ),
        )?;
        let log = dir.join(format!("{name}.log"));
        let config = config.to_string_lossy().into_owned();
        let ferry_path = ferry.to_string_lossy();
        let mut args: Vec<&str> = o.proxy_prefix.iter().skip(1).map(String::as_str).collect();
        let program = match o.proxy_prefix.first() {
            Some(p) => {
                args.push(&ferry_path);
                Path::new(p)
            }
            None => ferry,
        };
        args.extend(["proxy", "--config", &config]);
        let (pid, stdout) = self.spawn(MIDDLE_CPU, program, &args, &log)?;
        Self::wait_ready(stdout, "ferry proxy: listening on", &log)?;
        println!(
            "ferry {name}: pid {pid} on {} (origin {}, target {}), pinned to CPU {MIDDLE_CPU}",
            o.addr(host),
            o.addr(1),
            o.addr(2)
        );
        Ok(pid)
    }
}

/// Polls until something accepts connections on `addr` (haproxy prints nothing when ready).
async fn wait_listening(addr: SocketAddr, log: &Path) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("nothing listens on {addr} after 10 s: {log}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A driver session to `addr`. `behind` is the node the driver learns from `system.local` when
/// `addr` is a relay (the sim's own address), translated back to `addr`.
async fn connect(
    addr: SocketAddr,
    behind: SocketAddr,
    connections: usize,
) -> Result<Session, BoxError> {
    let size = std::num::NonZeroUsize::new(connections).ok_or("connections must be positive")?;
    let translate: HashMap<SocketAddr, SocketAddr> = [(behind, addr)].into();
    let session = SessionBuilder::new()
        .known_node_addr(addr)
        .address_translator(Arc::new(translate))
        .pool_size(PoolSize::PerHost(size))
        .fetch_schema_metadata(false)
        .build()
        .await?;
    // Every request must go through `addr`: the driver must see one node, at `addr` or at
    // `behind` (which it translates to `addr` when it connects; the node keeps its own address).
    let nodes: Vec<SocketAddr> = session
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .map(|n| SocketAddr::new(n.address.ip(), n.address.port()))
        .collect();
    if nodes != [addr] && nodes != [behind] {
        return Err(format!("the driver sees nodes {nodes:?} through {addr}, expected one").into());
    }
    Ok(session)
}

/// The table on both sims, `rows` rows loaded on both.
async fn setup(o: &Options) -> Result<(), BoxError> {
    for addr in [o.addr(1), o.addr(2)] {
        let session = connect(addr, addr, 1).await?;
        session
            .query_unpaged(
                "CREATE KEYSPACE IF NOT EXISTS bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
                &[],
            )
            .await?;
        session
            .query_unpaged(
                "CREATE TABLE IF NOT EXISTS bench.kv (k int PRIMARY KEY, v text)",
                &[],
            )
            .await?;
        let session = Arc::new(session);
        let insert = prepare(&session, Op::Write).await?;
        let next = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..64 {
            let (session, insert, next) = (session.clone(), insert.clone(), next.clone());
            let rows = o.rows;
            workers.push(tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= rows {
                        return Ok::<_, BoxError>(());
                    }
                    session.execute_unpaged(&insert, (k as i32, VALUE)).await?;
                }
            }));
        }
        for w in workers {
            w.await??;
        }
    }
    Ok(())
}

async fn prepare(session: &Session, op: Op) -> Result<PreparedStatement, BoxError> {
    let text = match op {
        Op::Read => "SELECT v FROM bench.kv WHERE k = ?",
        Op::Write => "INSERT INTO bench.kv (k, v) VALUES (?, ?)",
    };
    Ok(session.prepare(text).await?)
}

/// splitmix64's finalizer: spreads consecutive `i` over the key space.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How long a load runs: a time, or a number of requests.
#[derive(Debug, Clone, Copy)]
struct Length {
    time: Duration,
    /// Stop after this many requests instead (the time limit is then a day).
    requests: Option<u64>,
}

impl Length {
    fn new(time: Duration, requests: Option<u64>) -> Self {
        Self { time, requests }
    }
}

/// Runs `op` for `length` in `mode`; returns (requests, wall seconds, latencies in ns).
async fn load(
    session: &Arc<Session>,
    stmt: &PreparedStatement,
    op: Op,
    mode: Mode,
    o: &Options,
    length: Length,
) -> Result<(u64, f64, Vec<u64>), BoxError> {
    let next = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let limit = length.requests.unwrap_or(u64::MAX);
    let end = start
        + match length.requests {
            Some(_) => Duration::from_secs(86_400),
            None => length.time,
        };
    let (rows, rate) = (o.rows, o.rate);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..o.concurrency {
        let (session, stmt, next) = (session.clone(), stmt.clone(), next.clone());
        workers.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    return Ok(lat);
                }
                if mode == Mode::Fixed {
                    // Request i is due at start + i/rate: paced, not sent as fast as answers
                    // come back.
                    let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                    if due >= end {
                        return Ok::<_, BoxError>(lat);
                    }
                    tokio::time::sleep_until(due).await;
                } else if tokio::time::Instant::now() >= end {
                    return Ok(lat);
                }
                let k = (mix(i) % rows) as i32;
                let t = Instant::now();
                match op {
                    Op::Read => {
                        let r = session
                            .execute_unpaged(&stmt, (k,))
                            .await?
                            .into_rows_result()?;
                        if r.rows_num() != 1 {
                            return Err(format!(
                                "SELECT of key {k} returned {} rows",
                                r.rows_num()
                            )
                            .into());
                        }
                    }
                    Op::Write => {
                        session.execute_unpaged(&stmt, (k, VALUE)).await?;
                    }
                }
                lat.push(t.elapsed().as_nanos() as u64);
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = workers.join_next().await {
        all.extend(r??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((all.len() as u64, secs, all))
}

/// What one phase measured.
#[derive(Debug, Clone)]
struct Phase {
    endpoint: Endpoint,
    op: Op,
    mode: Mode,
    requests: u64,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
    /// The relay's or proxy's CPU time per request; `None` for direct.
    middle_us_per_req: Option<f64>,
    middle_cpu_pct: Option<f64>,
    /// The share of that CPU time spent in user space (the rest is the kernel's).
    middle_user_pct: Option<f64>,
    sims_cpu_pct: f64,
    client_cpu_pct: f64,
    load: String,
}

impl Phase {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    fn line(&self) -> String {
        let middle = match (self.middle_us_per_req, self.middle_cpu_pct) {
            (Some(us), Some(pct)) => format!(
                "{us:.2} µs CPU/request ({}% user; {pct:.0}% of its core)",
                self.middle_user_pct
                    .map_or("?".to_owned(), |u| format!("{u:.0}"))
            ),
            _ => "—".to_owned(),
        };
        format!(
            "{:<11} {:<5} {:<5}: {:>7} requests in {:.1} s = {:>6.0}/s; p50 {:.0} µs, p99 {:.0} µs; middle {middle}; sims {:.0}%, client {:.0}%; load {}",
            self.endpoint.name(),
            op_name(self.op),
            mode_name(self.mode),
            self.requests,
            self.secs,
            self.throughput(),
            self.p50_us,
            self.p99_us,
            self.sims_cpu_pct,
            self.client_cpu_pct,
            self.load
        )
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Read => "read",
        Op::Write => "write",
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Fixed => "fixed",
        Mode::Max => "max",
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    session: &Arc<Session>,
    stmt: &PreparedStatement,
    endpoint: Endpoint,
    op: Op,
    mode: Mode,
    o: &Options,
    middle: Option<u32>,
    sims: &[u32; 2],
    hz: f64,
) -> Result<Phase, BoxError> {
    let load_avg = load_average();
    let me = std::process::id();
    let ticks = |pid: Option<u32>| pid.map(cpu_split).transpose();
    let (m0, s0, c0) = (
        ticks(middle)?,
        cpu_ticks(sims[0])? + cpu_ticks(sims[1])?,
        cpu_ticks(me)?,
    );
    let (requests, secs, mut lat) = load(
        session,
        stmt,
        op,
        mode,
        o,
        Length::new(Duration::from_secs(o.secs), o.requests),
    )
    .await?;
    let (m1, s1, c1) = (
        ticks(middle)?,
        cpu_ticks(sims[0])? + cpu_ticks(sims[1])?,
        cpu_ticks(me)?,
    );
    lat.sort_unstable();
    let pct = |p: f64| {
        let i = ((lat.len().saturating_sub(1)) as f64 * p).round() as usize;
        lat.get(i).map_or(0.0, |&ns| ns as f64 / 1000.0)
    };
    let cpu_secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz;
    let middle = m0
        .zip(m1)
        .map(|((u0, s0), (u1, s1))| (u1.saturating_sub(u0), s1.saturating_sub(s0)));
    let middle_secs = middle.map(|(u, s)| (u + s) as f64 / hz);
    let middle_user_pct = middle
        .filter(|(u, s)| u + s > 0)
        .map(|(u, s)| 100.0 * u as f64 / (u + s) as f64);
    Ok(Phase {
        endpoint,
        op,
        mode,
        requests,
        secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        middle_us_per_req: middle_secs.map(|s| s * 1e6 / requests.max(1) as f64),
        middle_cpu_pct: middle_secs.map(|s| 100.0 * s / secs),
        middle_user_pct,
        sims_cpu_pct: 100.0 * cpu_secs(s0, s1) / secs,
        client_cpu_pct: 100.0 * cpu_secs(c0, c1) / secs,
        load: load_avg,
    })
}

/// How long the idle connections are held for the CPU they cost.
const IDLE_CPU_WINDOW: Duration = Duration::from_secs(5);

/// What `n` idle client connections cost a relay or the proxy.
struct IdleCost {
    /// RSS in KiB before and with them.
    rss_before: u64,
    rss_after: u64,
    /// CPU time over [`IDLE_CPU_WINDOW`] with them open, in ms per second.
    cpu_ms_per_sec: f64,
}

/// Opens `n` client connections to `addr` (STARTUP answered READY, then nothing) and measures
/// what they cost `pid`: RSS before and with them, and CPU time while they stay idle.
async fn idle_cost(addr: SocketAddr, pid: u32, n: usize) -> Result<IdleCost, BoxError> {
    let settle = Duration::from_millis(500);
    tokio::time::sleep(settle).await;
    let before = rss_kib(pid)?;
    let mut startup = BytesMut::new();
    Request::Startup(Startup::new("3.0.0", None))
        .to_envelope(ProtocolVersion::V4, 0, 0, &Default::default())?
        .write_to(&mut startup);
    let startup = startup.freeze();
    let conns = tokio::task::spawn_blocking(move || -> Result<Vec<TcpStream>, BoxError> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = TcpStream::connect(addr)?;
            s.write_all(&startup)?;
            let mut header = [0u8; 9];
            s.read_exact(&mut header)?;
            let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
            let mut body = vec![0u8; len];
            s.read_exact(&mut body)?;
            if header[4] != Opcode::Ready as u8 {
                return Err(format!("STARTUP answered with opcode {:#04x}", header[4]).into());
            }
            conns.push(s);
        }
        Ok(conns)
    })
    .await??;
    tokio::time::sleep(settle).await;
    let after = rss_kib(pid)?;
    let cpu0 = cpu_nanos(pid)?;
    tokio::time::sleep(IDLE_CPU_WINDOW).await;
    let cpu = cpu_nanos(pid)?.saturating_sub(cpu0);
    drop(conns);
    Ok(IdleCost {
        rss_before: before,
        rss_after: after,
        cpu_ms_per_sec: cpu as f64 / 1e6 / IDLE_CPU_WINDOW.as_secs_f64(),
    })
}

/// The targets, each with the numbers it was judged on.
fn summary(phases: &[Phase], idle: &[(Endpoint, f64)]) -> String {
    let find = |e: Endpoint, op: Op, mode: Mode| {
        phases
            .iter()
            .find(|p| p.endpoint == e && p.op == op && p.mode == mode)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| endpoint | op | load | throughput | p50 | p99 | CPU µs/request (relay or proxy) | of it user | its core | sims' core | client |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for p in phases {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0}/s | {:.0} µs | {:.0} µs | {} | {} | {} | {:.0}% | {:.0}% |",
            p.endpoint.name(),
            op_name(p.op),
            mode_name(p.mode),
            p.throughput(),
            p.p50_us,
            p.p99_us,
            p.middle_us_per_req
                .map_or("—".to_owned(), |v| format!("{v:.2}")),
            p.middle_user_pct
                .map_or("—".to_owned(), |v| format!("{v:.0}%")),
            p.middle_cpu_pct
                .map_or("—".to_owned(), |v| format!("{v:.0}%")),
            p.sims_cpu_pct,
            p.client_cpu_pct,
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| target | measured | status |");
    let _ = writeln!(out, "|---|---|---|");
    let mut cpu_target = |what: &str, op: Op, mode: Mode, max: f64| {
        for proxy in [Endpoint::Proxy, Endpoint::Shared] {
            let (Some(relay), Some(us)) = (
                find(Endpoint::Relay, op, mode).and_then(|p| p.middle_us_per_req),
                find(proxy, op, mode).and_then(|p| p.middle_us_per_req),
            ) else {
                continue;
            };
            let ratio = us / relay;
            let _ = writeln!(
                out,
                "| {what} ≤ {max}× relay ({}) | {us:.2} / {relay:.2} µs = {ratio:.2}× | {} |",
                proxy.name(),
                if ratio <= max { "met" } else { "NOT MET" }
            );
        }
    };
    cpu_target("reads, fixed rate: CPU/request", Op::Read, Mode::Fixed, 0.9);
    cpu_target("reads, unthrottled: CPU/request", Op::Read, Mode::Max, 0.65);
    cpu_target(
        "dual writes, fixed rate: CPU/request",
        Op::Write,
        Mode::Fixed,
        1.6,
    );
    cpu_target(
        "dual writes, unthrottled: CPU/request",
        Op::Write,
        Mode::Max,
        1.6,
    );
    for (op, max) in [(Op::Read, 20.0), (Op::Write, 60.0)] {
        let what = format!("{}: added p50 at the fixed rate", op_name(op));
        let p50 = |e| find(e, op, Mode::Fixed).map(|p| p.p50_us);
        let (Some(direct), Some(relay), Some(proxy)) = (
            p50(Endpoint::Direct),
            p50(Endpoint::Relay),
            p50(Endpoint::Proxy),
        ) else {
            let _ = writeln!(out, "| {what} | not measured | — |");
            continue;
        };
        let (relay_added, proxy_added) = (relay - direct, proxy - direct);
        let _ = writeln!(
            out,
            "| {what} ≤ relay's + {max} µs | proxy +{proxy_added:.0} µs, relay +{relay_added:.0} µs (direct {direct:.0} µs) | {} |",
            if proxy_added <= relay_added + max {
                "met"
            } else {
                "NOT MET"
            }
        );
    }
    match idle.iter().find(|(e, _)| *e == Endpoint::Proxy) {
        Some((_, bytes)) => {
            let _ = writeln!(
                out,
                "| idle client connection < 16 KiB | {:.1} KiB (relay: {}) | {} |",
                bytes / 1024.0,
                idle.iter()
                    .find(|(e, _)| *e == Endpoint::Relay)
                    .map_or("—".to_owned(), |(_, b)| format!("{:.1} KiB", b / 1024.0)),
                if *bytes < 16.0 * 1024.0 {
                    "met"
                } else {
                    "NOT MET"
                }
            );
        }
        None => {
            let _ = writeln!(
                out,
                "| idle client connection < 16 KiB | not measured | — |"
            );
        }
    }
    out
}
