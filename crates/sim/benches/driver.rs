//! The simulator measured through the Rust `scylla` driver: prepared point INSERTs and SELECTs
//! (ops/s, p50/p99/p999 latency), a full token-range scan split and paged as a migrator does it,
//! and the resident memory of the loaded rows. Numbers and method: `crates/sim/BENCHMARKS.md`.
//!
//! # Layout
//! - `main`: argument parsing; `serve` (the child) or `drive` (the parent).
//! - `serve`: the simulator alone in a child process — one node, a current-thread Tokio runtime,
//!   pinned to CPU 0 by `taskset` — so its CPU time and RSS are its own.
//! - `drive`: pins itself to CPU 1, starts the child, creates `bench.kv (k int, v text)` and runs
//!   the phases: load (INSERT) → memory → point SELECTs → scan.
//! - `Latencies`: per-operation latencies and their percentiles.
//!
//! Run: `cargo bench -p ferry-sim --bench driver [-- --rows N --selects N --concurrency N
//! --scan-ranges N --scan-parallel N --page-size N --addr IP:PORT]`. Not part of `cargo test`.

/// The same allocator as the `ferry` binary (see BENCHMARKS.md, "Memory").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::error::Error;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;

type BoxError = Box<dyn Error + Send + Sync>;

/// The sim's CPU; the driver takes [`DRIVER_CPU`]. The VM has two.
const SIM_CPU: &str = "0";
const DRIVER_CPU: &str = "1";

/// What the child prints once it listens, followed by its address.
const READY: &str = "ferry-sim-bench ready";

#[derive(Debug, Clone)]
struct Options {
    addr: SocketAddr,
    /// Rows loaded by the INSERT phase (keys `0..rows`), then read and scanned.
    rows: u64,
    /// Point SELECTs by random key.
    selects: u64,
    /// Requests in flight on the one driver session.
    concurrency: usize,
    /// Token ranges the ring is split into for the scan.
    scan_ranges: u64,
    /// Ranges scanned at once.
    scan_parallel: usize,
    page_size: i32,
    /// A sim already listening on `addr` with this pid (e.g. under valgrind for a profile):
    /// no child is started and nothing is pinned.
    external_pid: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 8, 1], 19042)),
            rows: 1_000_000,
            selects: 1_000_000,
            concurrency: 256,
            scan_ranges: 64,
            scan_parallel: 4,
            page_size: 5000,
            external_pid: None,
        }
    }
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
            "--addr" => o.addr = value()?.parse()?,
            "--rows" => o.rows = value()?.parse()?,
            "--selects" => o.selects = value()?.parse()?,
            "--concurrency" => o.concurrency = value()?.parse()?,
            "--scan-ranges" => o.scan_ranges = value()?.parse()?,
            "--scan-parallel" => o.scan_parallel = value()?.parse()?,
            "--page-size" => o.page_size = value()?.parse()?,
            "--external-pid" => o.external_pid = Some(value()?.parse()?),
            // cargo bench passes `--bench` (and a filter, when given) to every bench binary.
            _ => {}
        }
    }
    if o.rows == 0 || o.rows > i32::MAX as u64 || o.concurrency == 0 || o.scan_parallel == 0 {
        return Err(format!(
            "rows must be 1..={}, concurrency and scan-parallel at least 1 (got {o:?})",
            i32::MAX
        )
        .into());
    }
    if o.scan_ranges == 0 || o.page_size <= 0 {
        return Err(format!("scan-ranges and page-size must be positive (got {o:?})").into());
    }
    Ok(o)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let addr = args.get(1).ok_or("serve needs an address")?.parse()?;
        return serve(addr);
    }
    drive(parse_args(&args)?)
}

/// The child: one node on `addr`, one current-thread runtime, until stdin closes.
fn serve(addr: SocketAddr) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = ClusterConfig {
            listen: addr,
            ..ClusterConfig::default()
        };
        let cluster = Cluster::start(config, Arc::new(Executor::default())).await?;
        println!("{READY} {}", cluster.addresses()[0]);
        // The parent holds our stdin; EOF means it is done (or died), so the child never outlives it.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = tx.send(());
        });
        let _ = rx.await;
        cluster.shutdown().await;
        Ok(())
    })
}

/// Restricts thread `tid` (a pid for the main thread) to `cpu` with `taskset`; false when that
/// is not possible here (no `taskset`, or fewer CPUs).
fn pin(tid: u32, cpu: &str) -> bool {
    Command::new("taskset")
        .args(["-p", "-c", cpu, &tid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The child's resident set in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status").into())
}

/// `/proc/<pid>/stat`'s user + system time of every thread, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    match (f.get(11), f.get(12)) {
        (Some(u), Some(s)) => Ok(u.parse::<u64>()? + s.parse::<u64>()?),
        _ => Err(format!("short /proc/{pid}/stat: {stat:?}").into()),
    }
}

/// CPU use of the sim and of this process over one phase.
struct CpuMeter {
    sim_pid: u32,
    ticks_per_sec: f64,
    start: (u64, u64, Instant),
}

impl CpuMeter {
    fn start(sim_pid: u32, ticks_per_sec: f64) -> Result<Self, BoxError> {
        Ok(Self {
            sim_pid,
            ticks_per_sec,
            start: (
                cpu_ticks(sim_pid)?,
                cpu_ticks(std::process::id())?,
                Instant::now(),
            ),
        })
    }

    /// (sim, driver) CPU time since `start`, in % of one core.
    fn stop(&self) -> Result<(f64, f64), BoxError> {
        let wall_ticks = self.start.2.elapsed().as_secs_f64() * self.ticks_per_sec;
        let sim = cpu_ticks(self.sim_pid)?.saturating_sub(self.start.0) as f64;
        let me = cpu_ticks(std::process::id())?.saturating_sub(self.start.1) as f64;
        Ok((100.0 * sim / wall_ticks, 100.0 * me / wall_ticks))
    }
}

/// `getconf CLK_TCK`, the unit of `/proc/<pid>/stat` times (100 on Linux unless told otherwise).
fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Stops the child when the parent is done, also when it returns early on an error.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Closing its stdin is the child's signal to shut down (within its 5 s grace period).
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

fn spawn_sim(addr: SocketAddr, pinned: bool) -> Result<(ChildGuard, SocketAddr), BoxError> {
    let exe = std::env::current_exe()?;
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", SIM_CPU]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    let mut child = cmd
        .args(["serve", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let guard = ChildGuard(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let listening = line
        .trim()
        .strip_prefix(READY)
        .ok_or_else(|| format!("the sim did not start: {line:?}"))?
        .trim()
        .parse()?;
    Ok((guard, listening))
}

fn drive(o: Options) -> Result<(), BoxError> {
    let (child, addr, sim_pid, pinned) = match o.external_pid {
        Some(pid) => (None, o.addr, pid, false),
        None => {
            // Before any other thread exists, so the runtime's threads inherit the mask.
            let pinned = pin(std::process::id(), DRIVER_CPU);
            let (child, addr) = spawn_sim(o.addr, pinned)?;
            let pid = child.0.id();
            (Some(child), addr, pid, pinned)
        }
    };
    println!(
        "ferry-sim driver bench: sim pid {sim_pid} on {addr}, {} (sim: 1 node, current-thread runtime)",
        if pinned {
            format!("sim pinned to CPU {SIM_CPU}, driver to CPU {DRIVER_CPU}")
        } else {
            "NOT pinned (external sim, or taskset failed)".to_owned()
        }
    );
    println!("options: {o:?}");
    // The driver on one core too: one worker thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = runtime.block_on(phases(&o, addr, sim_pid));
    drop(child);
    result
}

async fn phases(o: &Options, addr: SocketAddr, sim_pid: u32) -> Result<(), BoxError> {
    let session = Arc::new(
        SessionBuilder::new()
            .known_node_addr(addr)
            .fetch_schema_metadata(false)
            .build()
            .await?,
    );
    session
        .query_unpaged(
            "CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            &[],
        )
        .await?;
    session
        .query_unpaged("CREATE TABLE bench.kv (k int PRIMARY KEY, v text)", &[])
        .await?;
    let rss_empty = rss_kib(sim_pid)?;
    let hz = ticks_per_sec();

    let insert = session
        .prepare("INSERT INTO bench.kv (k, v) VALUES (?, ?)")
        .await?;
    let cpu = CpuMeter::start(sim_pid, hz)?;
    let (secs, lat) = run_ops(&session, o.rows, o.concurrency, {
        let insert = insert.clone();
        move |s, i| {
            let insert = insert.clone();
            async move {
                let k = i as i32;
                // 100 bytes, distinct per key, so no value is shared.
                let v = format!("{k:0>100}");
                s.execute_unpaged(&insert, (k, v)).await?;
                Ok(())
            }
        }
    })
    .await?;
    report(
        "INSERT (prepared, new keys)",
        o.rows,
        secs,
        &lat,
        cpu.stop()?,
    );

    let rss_loaded = rss_kib(sim_pid)?;
    println!(
        "memory: sim RSS {} MiB empty, {} MiB with {} rows: {} MiB for the rows ({} bytes/row)",
        rss_empty / 1024,
        rss_loaded / 1024,
        o.rows,
        rss_loaded.saturating_sub(rss_empty) / 1024,
        rss_loaded.saturating_sub(rss_empty) * 1024 / o.rows
    );

    let select = session
        .prepare("SELECT k, v FROM bench.kv WHERE k = ?")
        .await?;
    let rows = o.rows;
    let misses = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start(sim_pid, hz)?;
    let (secs, lat) = run_ops(&session, o.selects, o.concurrency, {
        let misses = misses.clone();
        move |s, i| {
            let select = select.clone();
            let misses = misses.clone();
            async move {
                // A fixed permutation-like spread over the loaded keys (splitmix64).
                let k = (mix(i) % rows) as i32;
                let r = s.execute_unpaged(&select, (k,)).await?.into_rows_result()?;
                if r.rows_num() != 1 {
                    misses.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        }
    })
    .await?;
    report(
        "SELECT by key (prepared)",
        o.selects,
        secs,
        &lat,
        cpu.stop()?,
    );
    let misses = misses.load(Ordering::Relaxed);
    if misses != 0 {
        return Err(format!("{misses} SELECTs did not return exactly one row").into());
    }

    let cpu = CpuMeter::start(sim_pid, hz)?;
    let (secs, scanned, pages) = scan(&session, o).await?;
    let (sim_cpu, driver_cpu) = cpu.stop()?;
    println!(
        "scan: {scanned} rows in {:.2} s = {:.0} rows/s ({} token ranges, {} at once, {pages} pages of {}); CPU sim {sim_cpu:.0}%, driver {driver_cpu:.0}%",
        secs,
        scanned as f64 / secs,
        o.scan_ranges,
        o.scan_parallel,
        o.page_size
    );
    if scanned != o.rows {
        return Err(format!("the scan returned {scanned} rows, expected {}", o.rows).into());
    }
    println!("sim RSS after the scan: {} MiB", rss_kib(sim_pid)? / 1024);
    Ok(())
}

/// splitmix64's finalizer: spreads consecutive `i` over the key space.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs `op(session, i)` for `i` in `0..n` with `concurrency` requests in flight; returns the
/// wall time and every operation's latency.
async fn run_ops<F, Fut>(
    session: &Arc<Session>,
    n: u64,
    concurrency: usize,
    op: F,
) -> Result<(f64, Latencies), BoxError>
where
    F: Fn(Arc<Session>, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (next, session, op) = (next.clone(), session.clone(), op.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity((n as usize / concurrency) + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, BoxError>(lat);
                }
                let t = Instant::now();
                op(session.clone(), i).await?;
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
        }));
    }
    let mut all = Vec::with_capacity(n as usize);
    for w in workers {
        all.extend(w.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((secs, Latencies::new(all)))
}

/// Operation latencies in µs, sorted.
struct Latencies(Vec<u32>);

impl Latencies {
    fn new(mut v: Vec<u32>) -> Self {
        v.sort_unstable();
        Self(v)
    }

    fn percentile(&self, p: f64) -> u32 {
        if self.0.is_empty() {
            return 0;
        }
        let i = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[i]
    }
}

fn report(what: &str, n: u64, secs: f64, lat: &Latencies, (sim_cpu, driver_cpu): (f64, f64)) {
    println!(
        "{what}: {n} ops in {secs:.2} s = {:.0} ops/s; latency p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs; CPU sim {sim_cpu:.0}%, driver {driver_cpu:.0}%",
        n as f64 / secs,
        lat.percentile(0.50),
        lat.percentile(0.99),
        lat.percentile(0.999),
        lat.percentile(1.0),
    );
}

/// The whole ring in `o.scan_ranges` ranges `(lo, hi]`, each paged to its end, `o.scan_parallel`
/// ranges at a time. Returns (seconds, rows, pages).
async fn scan(session: &Arc<Session>, o: &Options) -> Result<(f64, u64, u64), BoxError> {
    let mut stmt = session
        .prepare("SELECT k, v FROM bench.kv WHERE token(k) > ? AND token(k) <= ?")
        .await?;
    stmt.set_page_size(o.page_size);
    // Murmur3 never yields i64::MIN, so (MIN, MAX] is the whole ring.
    let width = (u64::MAX / o.scan_ranges) as i128;
    let bounds: Vec<(i64, i64)> = (0..o.scan_ranges)
        .map(|r| {
            let lo = i64::MIN as i128 + width * r as i128;
            let hi = if r + 1 == o.scan_ranges {
                i64::MAX as i128
            } else {
                lo + width
            };
            (lo as i64, hi as i64)
        })
        .collect();
    let bounds = Arc::new(bounds);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::with_capacity(o.scan_parallel);
    for _ in 0..o.scan_parallel {
        let (session, stmt, bounds, next) =
            (session.clone(), stmt.clone(), bounds.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut rows, mut pages) = (0u64, 0u64);
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&range) = bounds.get(r) else {
                    return Ok::<_, BoxError>((rows, pages));
                };
                let (n, p) = scan_range(&session, &stmt, range).await?;
                rows += n;
                pages += p;
            }
        }));
    }
    let (mut rows, mut pages) = (0, 0);
    for w in workers {
        let (r, p) = w.await??;
        rows += r;
        pages += p;
    }
    Ok((start.elapsed().as_secs_f64(), rows, pages))
}

async fn scan_range(
    session: &Session,
    stmt: &PreparedStatement,
    (lo, hi): (i64, i64),
) -> Result<(u64, u64), BoxError> {
    let (mut rows, mut pages) = (0u64, 0u64);
    let mut state = PagingState::start();
    loop {
        let (result, next) = session.execute_single_page(stmt, (lo, hi), state).await?;
        let result = result.into_rows_result()?;
        // Decode every row, as a migrator must.
        for row in result.rows::<(i32, &str)>()? {
            let (_, v) = row?;
            std::hint::black_box(v);
            rows += 1;
        }
        pages += 1;
        match next {
            PagingStateResponse::HasMorePages { state: s } => state = s,
            PagingStateResponse::NoMorePages => return Ok((rows, pages)),
        }
    }
}
