//! The migrator's throughput between two `ferry sim` clusters, side by side in one run with
//! `cqlsh COPY TO` + `COPY FROM` of the same table and with the target sim's raw write rate at
//! the same concurrency. Numbers and method: `migrator/BENCHMARKS.md`.
//!
//! # Layout
//! - `main`: argument parsing, pinning, the child sims, the phases in order, the summary table.
//! - `Sim`: one `ferry sim` child process (the release binary), pinned by `taskset`, killed
//!   when dropped.
//! - `Meter`: per-phase wall time, CPU time of each sim, of this process and of its waited-for
//!   children (cqlsh and its COPY workers), and the load average before and after.
//! - `Shape`: the two tables copied, `bench.kv` (one row per partition) and `bench.ckv`
//!   (clustered, 100 rows per partition).
//! - phases: `load` (origin, prepared INSERTs with distinct writetimes), `raw_writes` and
//!   `raw_batches` (target, prepared INSERT … USING TIMESTAMP, the same concurrency), then per
//!   table `copies`: `migrate` (the library's `run` with a fresh job directory) and cqlsh (COPY
//!   TO a CSV file, then COPY FROM it into a second table on target); each copy is checked by
//!   counting target's rows, and the migrator's also by comparing sampled values and
//!   writetimes.
//!
//! Run: `cargo build --profile bench -p ferry && cargo bench -p ferry-migrator --bench copy
//! [-- --rows N --concurrency N --scan-parallelism N --page-size N --ranges N --net N
//! --skip-cqlsh --skip-clustered --ferry PATH]`. Not part of `cargo test`.

/// The same allocator as the `ferry` binary, which runs `ferry migrate`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_migrator::{ClusterSpec, Event, JobSpec, Observer, Phase, RangeCount, TableSelector};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::batch::{Batch, BatchType};

type BoxError = Box<dyn Error + Send + Sync>;

/// Origin sim and this process (loader, raw writer, migrator, cqlsh) share CPU 0; the target
/// sim, which every phase measured here writes to, has CPU 1. The VM has two.
const ORIGIN_CPU: &str = "0";
const TARGET_CPU: &str = "1";
const CLIENT_CPU: &str = "0";

/// Bytes of `v` per row; with the 4-byte int key a row is [`ROW_BYTES`] of data.
const VALUE_LEN: usize = 100;
const ROW_BYTES: u64 = 4 + VALUE_LEN as u64;

/// Rows whose value and writetime are compared between origin and target after the copy.
const SAMPLES: u64 = 2_000;

/// Writetime of key 0 at load; key k gets `BASE_WRITETIME + k`, so each row's is distinct.
const BASE_WRITETIME: i64 = 1_700_000_000_000_000;

/// A table the copy phases run on: `bench.kv` (one row per partition) and `bench.ckv`
/// (clustered, [`ROWS_PER_PARTITION`] rows per partition), as real tables are.
#[derive(Debug, Clone, Copy)]
struct Shape {
    table: &'static str,
    /// Column definitions and primary key, for CREATE TABLE.
    columns: &'static str,
    /// The partition key column.
    pk: &'static str,
    /// Primary key columns as COPY and INSERT list them.
    keys: &'static str,
    /// Rows per partition: row `i` has key `(i / n, i % n)` when clustered, `i` otherwise.
    rows_per_partition: u64,
}

/// Rows per partition of the clustered table.
const ROWS_PER_PARTITION: u64 = 100;

const KV: Shape = Shape {
    table: "kv",
    columns: "k int PRIMARY KEY, v text",
    pk: "k",
    keys: "k",
    rows_per_partition: 1,
};

const CKV: Shape = Shape {
    table: "ckv",
    columns: "pk int, ck int, v text, PRIMARY KEY (pk, ck)",
    pk: "pk",
    keys: "pk, ck",
    rows_per_partition: ROWS_PER_PARTITION,
};

impl Shape {
    fn clustered(&self) -> bool {
        self.rows_per_partition > 1
    }

    /// The key of row `i` (its clustering key 0 when not clustered).
    fn key(&self, i: u64) -> (i32, i32) {
        let n = self.rows_per_partition;
        ((i / n) as i32, (i % n) as i32)
    }

    /// `?` for each key column.
    fn key_markers(&self) -> &'static str {
        if self.clustered() { "?, ?" } else { "?" }
    }
}

#[derive(Debug, Clone)]
struct Options {
    rows: u64,
    /// Writes in flight: the migrator's `concurrency` and the raw writer's.
    concurrency: usize,
    scan_parallelism: usize,
    page_size: i32,
    /// Token ranges; `None`: the migrator plans from size estimates.
    ranges: Option<u32>,
    /// Origin listens on 127.0.`net`.1, target on .2 (ports picked by the sims).
    net: u8,
    skip_cqlsh: bool,
    /// Skips the clustered table's load and copies.
    skip_clustered: bool,
    /// The `ferry` binary; default: next to this bench's directory (`target/release/ferry`).
    ferry: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        let job = JobSpec::new(
            ClusterSpec::new(Vec::new()),
            ClusterSpec::new(Vec::new()),
            Vec::new(),
        );
        Self {
            rows: 1_000_000,
            concurrency: job.concurrency,
            scan_parallelism: job.scan_parallelism,
            page_size: job.page_size,
            ranges: None,
            net: 71,
            skip_cqlsh: false,
            skip_clustered: false,
            ferry: None,
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
            "--rows" => o.rows = value()?.parse()?,
            "--concurrency" => o.concurrency = value()?.parse()?,
            "--scan-parallelism" => o.scan_parallelism = value()?.parse()?,
            "--page-size" => o.page_size = value()?.parse()?,
            "--ranges" => o.ranges = Some(value()?.parse()?),
            "--net" => o.net = value()?.parse()?,
            "--skip-cqlsh" => o.skip_cqlsh = true,
            "--skip-clustered" => o.skip_clustered = true,
            "--ferry" => o.ferry = Some(value()?.into()),
            // cargo bench passes `--bench` (and a filter, when given) to every bench binary.
            _ => {}
        }
    }
    if o.rows == 0 || o.rows > i32::MAX as u64 || o.concurrency == 0 {
        return Err(format!(
            "rows must be 1..={}, concurrency at least 1 (got {o:?})",
            i32::MAX
        )
        .into());
    }
    Ok(o)
}

fn main() -> Result<(), BoxError> {
    let o = parse_args(&std::env::args().skip(1).collect::<Vec<_>>())?;
    let ferry = match &o.ferry {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|deps| deps.parent())
            .map(|release| release.join("ferry"))
            .ok_or("cannot locate target/release from the bench's path")?,
    };
    if !ferry.exists() {
        return Err(format!(
            "{} is missing: build it first (cargo build --profile bench -p ferry) or pass --ferry PATH",
            ferry.display()
        )
        .into());
    }
    // Before any other thread exists, so the runtime's threads inherit the mask.
    let pinned = pin(std::process::id(), CLIENT_CPU);
    let origin = Sim::start(&ferry, &format!("127.0.{}.1", o.net), ORIGIN_CPU, pinned)?;
    let target = Sim::start(&ferry, &format!("127.0.{}.2", o.net), TARGET_CPU, pinned)?;
    println!(
        "migrator copy bench: origin sim pid {} on {}, target sim pid {} on {}; {}",
        origin.pid(),
        origin.addr,
        target.pid(),
        target.addr,
        if pinned {
            format!(
                "origin sim on CPU {ORIGIN_CPU}, target sim on CPU {TARGET_CPU}, this process (loader, raw writer, migrator, cqlsh) on CPU {CLIENT_CPU}"
            )
        } else {
            "NOT pinned (taskset failed)".to_owned()
        }
    );
    println!("options: {o:?}");
    // Like `ferry migrate` pinned to one CPU: a multi-thread runtime sized by the CPU mask.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(phases(&o, &origin, &target))
}

async fn phases(o: &Options, origin: &Sim, target: &Sim) -> Result<(), BoxError> {
    let os = Arc::new(session(origin.addr).await?);
    let ts = Arc::new(session(target.addr).await?);
    let mut results = Vec::new();

    os.query_unpaged(
        "CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        &[],
    )
    .await?;
    let m = Meter::start(origin, target)?;
    load(&os, o, KV).await?;
    results.push(m.stop("load origin bench.kv (prepared INSERT, not a copy)", o.rows)?);

    let m = Meter::start(origin, target)?;
    raw_writes(&ts, o).await?;
    results.push(m.stop(
        &format!(
            "raw writes to target (prepared INSERT … USING TIMESTAMP, {} in flight)",
            o.concurrency
        ),
        o.rows,
    )?);

    let m = Meter::start(origin, target)?;
    raw_batches(&ts, o).await?;
    results.push(m.stop(
        &format!(
            "raw batched writes to target (unlogged batches of {RAW_BATCH} INSERTs … USING TIMESTAMP, {} in flight)",
            o.concurrency
        ),
        o.rows,
    )?);

    copies(o, origin, target, &os, &ts, KV, &mut results).await?;
    if !o.skip_clustered {
        let m = Meter::start(origin, target)?;
        load(&os, o, CKV).await?;
        results.push(m.stop(
            "load origin bench.ckv (prepared INSERT, not a copy)",
            o.rows,
        )?);
        copies(o, origin, target, &os, &ts, CKV, &mut results).await?;
    }
    print_table(&results);
    summary(&results);
    Ok(())
}

/// The migrator's copy of `shape`'s table, then (unless skipped) cqlsh's, each checked.
async fn copies(
    o: &Options,
    origin: &Sim,
    target: &Sim,
    os: &Session,
    ts: &Session,
    shape: Shape,
    results: &mut Vec<PhaseResult>,
) -> Result<(), BoxError> {
    let table = format!("bench.{}", shape.table);
    let m = Meter::start(origin, target)?;
    let bytes = migrate(o, origin, target, &table).await?;
    let mut copied = m.stop(
        &format!(
            "ferry-migrator ({table} → {table}, {} in flight)",
            o.concurrency
        ),
        o.rows,
    )?;
    copied.note = format!("migrator counted {bytes} bytes");
    results.push(copied);
    check_copy(os, ts, shape, &table, o.rows, true).await?;
    if o.skip_cqlsh {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ferry-migrator-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join(format!("{}.csv", shape.table));
    let columns = format!("{}, v", shape.keys);
    let m = Meter::start(origin, target)?;
    cqlsh(
        origin.addr,
        &format!("COPY {table} ({columns}) TO '{}'", csv.display()),
    )?;
    let to = m.stop(&format!("cqlsh COPY TO ({table} → CSV)"), o.rows)?;
    let copy = format!("{table}_cqlsh");
    ts.query_unpaged(format!("CREATE TABLE {copy} ({})", shape.columns), &[])
        .await?;
    let m = Meter::start(origin, target)?;
    cqlsh(
        target.addr,
        &format!("COPY {copy} ({columns}) FROM '{}'", csv.display()),
    )?;
    let from = m.stop(&format!("cqlsh COPY FROM (CSV → target {copy})"), o.rows)?;
    let _ = std::fs::remove_dir_all(&dir);
    check_copy(os, ts, shape, &copy, o.rows, false).await?;
    let both = to.then(&from, &format!("cqlsh COPY TO + COPY FROM ({table})"));
    results.extend([to, from, both]);
    Ok(())
}

async fn session(addr: SocketAddr) -> Result<Session, BoxError> {
    Ok(SessionBuilder::new()
        .known_node_addr(addr)
        .fetch_schema_metadata(false)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await?)
}

/// The row of key `k`: a distinct 100-byte value.
fn value_of(k: i32) -> String {
    format!("{k:0>VALUE_LEN$}")
}

/// Creates `shape`'s table on origin and writes `o.rows` rows, row `i` with writetime
/// `BASE_WRITETIME + i`.
async fn load(s: &Arc<Session>, o: &Options, shape: Shape) -> Result<(), BoxError> {
    s.query_unpaged(
        format!("CREATE TABLE bench.{} ({})", shape.table, shape.columns),
        &[],
    )
    .await?;
    let insert = s
        .prepare(format!(
            "INSERT INTO bench.{} ({}, v) VALUES ({}, ?) USING TIMESTAMP ?",
            shape.table,
            shape.keys,
            shape.key_markers()
        ))
        .await?;
    // Loading is not measured against anything: 256 in flight, as the sim's own bench.
    run_ops(s, o.rows, 256, move |s, i| {
        let insert = insert.clone();
        async move {
            let (pk, ck) = shape.key(i);
            let (v, t) = (value_of(i as i32), BASE_WRITETIME + i as i64);
            if shape.clustered() {
                s.execute_unpaged(&insert, (pk, ck, v, t)).await?;
            } else {
                s.execute_unpaged(&insert, (pk, v, t)).await?;
            }
            Ok(())
        }
    })
    .await
}

/// What a copy must cost at least: the same rows written to target by prepared INSERTs with
/// their writetime, at the migrator's concurrency, with nothing to read.
async fn raw_writes(s: &Arc<Session>, o: &Options) -> Result<(), BoxError> {
    s.query_unpaged(
        "CREATE KEYSPACE raw WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        &[],
    )
    .await?;
    s.query_unpaged("CREATE TABLE raw.kv (k int PRIMARY KEY, v text)", &[])
        .await?;
    let insert = s
        .prepare("INSERT INTO raw.kv (k, v) VALUES (?, ?) USING TIMESTAMP ?")
        .await?;
    run_ops(s, o.rows, o.concurrency, move |s, i| {
        let insert = insert.clone();
        async move {
            let k = i as i32;
            s.execute_unpaged(&insert, (k, value_of(k), BASE_WRITETIME + i as i64))
                .await?;
            Ok(())
        }
    })
    .await
}

/// Rows per batch of the raw batched writes: the migrator's most partitions per batch.
const RAW_BATCH: u64 = ferry_migrator::writer::MAX_BATCH_PARTITIONS as u64;

/// The same as [`raw_writes`] in unlogged batches of [`RAW_BATCH`] consecutive keys (one
/// partition each), as the migrator sends rows without lists.
async fn raw_batches(s: &Arc<Session>, o: &Options) -> Result<(), BoxError> {
    s.query_unpaged(
        "CREATE TABLE raw.kv_batched (k int PRIMARY KEY, v text)",
        &[],
    )
    .await?;
    let insert = s
        .prepare("INSERT INTO raw.kv_batched (k, v) VALUES (?, ?) USING TIMESTAMP ?")
        .await?;
    let mut batch = Batch::new(BatchType::Unlogged);
    for _ in 0..RAW_BATCH {
        batch.append_statement(insert.clone());
    }
    let batch = Arc::new(batch);
    let batches = o.rows.div_ceil(RAW_BATCH);
    let rows = o.rows;
    run_ops(s, batches, o.concurrency, move |s, b| {
        let batch = batch.clone();
        async move {
            let keys = b * RAW_BATCH..((b + 1) * RAW_BATCH).min(rows);
            let values: Vec<(i32, String, i64)> = keys
                .map(|i| (i as i32, value_of(i as i32), BASE_WRITETIME + i as i64))
                .collect();
            if values.len() as u64 == RAW_BATCH {
                s.batch(&batch, &values).await?;
            } else {
                // The last, short batch.
                let mut short = Batch::new(BatchType::Unlogged);
                for _ in 0..values.len() {
                    short.append_statement(batch.statements[0].clone());
                }
                s.batch(&short, &values).await?;
            }
            Ok(())
        }
    })
    .await
}

/// Counts the migrator's retries; the bench prints them.
#[derive(Default)]
struct Quiet {
    retries: AtomicU64,
}

impl Observer for Quiet {
    fn event(&self, e: &Event) {
        if let Event::Retry { .. } = e {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs the migrator on `table` with a fresh job directory; returns the bytes it counted.
async fn migrate(o: &Options, origin: &Sim, target: &Sim, table: &str) -> Result<u64, BoxError> {
    let job_dir =
        std::env::temp_dir().join(format!("ferry-migrator-bench-job-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&job_dir);
    let mut spec = JobSpec::new(
        ClusterSpec::new(vec![origin.addr.to_string()]),
        ClusterSpec::new(vec![target.addr.to_string()]),
        vec![TableSelector::parse(table)?],
    );
    spec.job_dir = job_dir.clone();
    spec.concurrency = o.concurrency;
    spec.scan_parallelism = o.scan_parallelism;
    spec.page_size = o.page_size;
    if let Some(n) = o.ranges {
        spec.ranges = RangeCount::Fixed(n);
    }
    let observer = Arc::new(Quiet::default());
    let report = ferry_migrator::run(spec, observer.clone()).await?;
    let _ = std::fs::remove_dir_all(&job_dir);
    let t = report.tables.first().ok_or("no table report")?;
    let retries = observer.retries.load(Ordering::Relaxed);
    println!(
        "migrator: {} ranges, {} rows, {} bytes, {retries} retries, {}",
        t.ranges_total, t.rows, t.bytes, t.phase
    );
    if t.phase != Phase::Done || t.rows != o.rows {
        return Err(format!(
            "the migration ended {} with {} of {} rows",
            t.phase, t.rows, o.rows
        )
        .into());
    }
    Ok(t.bytes)
}

/// Target's `table` holds exactly `rows` rows; with `writetimes`, sampled rows also have
/// origin's value and writetime.
async fn check_copy(
    origin: &Session,
    target: &Session,
    shape: Shape,
    table: &str,
    rows: u64,
    writetimes: bool,
) -> Result<(), BoxError> {
    let mut count = target
        .prepare(format!(
            "SELECT {pk} FROM {table} WHERE token({pk}) > ? AND token({pk}) <= ?",
            pk = shape.pk
        ))
        .await?;
    count.set_page_size(5_000);
    let mut state = PagingState::start();
    let mut n = 0u64;
    loop {
        let (r, next) = target
            .execute_single_page(&count, (i64::MIN, i64::MAX), state)
            .await?;
        n += r.into_rows_result()?.rows_num() as u64;
        match next {
            PagingStateResponse::HasMorePages { state: s } => state = s,
            PagingStateResponse::NoMorePages => break,
        }
    }
    if n != rows {
        return Err(format!("target's {table} has {n} rows, origin {rows}").into());
    }
    if writetimes {
        let read = if shape.clustered() {
            format!("SELECT v, writetime(v) FROM {table} WHERE pk = ? AND ck = ?")
        } else {
            format!("SELECT v, writetime(v) FROM {table} WHERE k = ?")
        };
        let (ro, rt) = (
            origin.prepare(read.as_str()).await?,
            target.prepare(read.as_str()).await?,
        );
        for i in 0..SAMPLES.min(rows) {
            let k = shape.key(mix(i) % rows);
            let o = read_row(origin, &ro, shape, k).await?;
            let t = read_row(target, &rt, shape, k).await?;
            if o != t {
                return Err(format!("key {k:?}: origin has {o:?}, target {t:?}").into());
            }
        }
    }
    println!(
        "checked {table}: {n} rows on target{}",
        if writetimes {
            format!(
                ", {} sampled rows with origin's value and writetime",
                SAMPLES.min(rows)
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The value and writetime of the row with key `k` (its clustering key unused when not
/// clustered).
async fn read_row(
    s: &Session,
    read: &scylla::statement::prepared::PreparedStatement,
    shape: Shape,
    k: (i32, i32),
) -> Result<(String, i64), BoxError> {
    let r = if shape.clustered() {
        s.execute_unpaged(read, k).await?
    } else {
        s.execute_unpaged(read, (k.0,)).await?
    };
    Ok(r.into_rows_result()?.single_row()?)
}

/// Runs cqlsh with `statement` against `addr`, fails unless it succeeds.
fn cqlsh(addr: SocketAddr, statement: &str) -> Result<(), BoxError> {
    let out = Command::new("cqlsh")
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(["--request-timeout", "60", "-e", statement])
        .output()
        .map_err(|e| format!("cannot run cqlsh (pip install -r .ci/requirements.txt): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // COPY reports its own rate on its last lines ("N rows exported/imported … in S seconds").
    for line in stdout.lines().rev().take(3) {
        if !line.trim().is_empty() {
            println!("cqlsh: {}", line.trim());
        }
    }
    if !out.status.success() || stderr.contains("Error") || stderr.contains("Failed") {
        return Err(format!(
            "cqlsh -e {statement:?} failed ({}):\n{stdout}\n{stderr}",
            out.status
        )
        .into());
    }
    Ok(())
}

/// splitmix64's finalizer: spreads consecutive `i` over the key space.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs `op(session, i)` for `i` in `0..n` with `concurrency` requests in flight.
async fn run_ops<F, Fut>(
    session: &Arc<Session>,
    n: u64,
    concurrency: usize,
    op: F,
) -> Result<(), BoxError>
where
    F: Fn(Arc<Session>, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (next, session, op) = (next.clone(), session.clone(), op.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, BoxError>(());
                }
                op(session.clone(), i).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// One `ferry sim` node in a child process.
struct Sim {
    child: Child,
    addr: SocketAddr,
}

impl Sim {
    fn start(ferry: &std::path::Path, ip: &str, cpu: &str, pin: bool) -> Result<Self, BoxError> {
        let mut cmd = if pin {
            // taskset execs ferry: the child's pid is the sim's.
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(ferry);
            c
        } else {
            Command::new(ferry)
        };
        let mut child = cmd
            .args(["sim", "--listen", &format!("{ip}:0")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("the sim has no stdout")?;
        let mut sim = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line?;
            if let Some(addr) = line.strip_prefix("ferry sim: node 0 listening on ") {
                sim.addr = addr.trim().parse()?;
                break;
            }
        }
        if sim.addr.port() == 0 {
            return Err(format!("ferry sim on {ip} did not start").into());
        }
        // Keep reading its stdout so the sim never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(sim)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // In-memory: nothing to lose by killing it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// `/proc/<pid>/stat`'s (utime + stime, cutime + cstime) in clock ticks: the process's own
/// threads, and its children that ended and were waited for.
fn cpu_ticks(pid: u32) -> Result<(u64, u64), BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    match f.as_slice() {
        [u, s, cu, cs] => Ok((u + s, cu + cs)),
        _ => Err(format!("short /proc/{pid}/stat: {stat:?}").into()),
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

/// The 1-minute load average.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU and wall time of one phase.
struct Meter {
    pids: (u32, u32),
    start: Instant,
    /// Ticks of origin, target, this process, its waited-for children.
    ticks: [u64; 4],
    load: f64,
}

impl Meter {
    fn start(origin: &Sim, target: &Sim) -> Result<Self, BoxError> {
        let pids = (origin.pid(), target.pid());
        Ok(Self {
            pids,
            ticks: Self::ticks(pids)?,
            start: Instant::now(),
            load: loadavg(),
        })
    }

    fn ticks(pids: (u32, u32)) -> Result<[u64; 4], BoxError> {
        let (o, _) = cpu_ticks(pids.0)?;
        let (t, _) = cpu_ticks(pids.1)?;
        let (me, children) = cpu_ticks(std::process::id())?;
        Ok([o, t, me, children])
    }

    fn stop(&self, what: &str, rows: u64) -> Result<PhaseResult, BoxError> {
        let secs = self.start.elapsed().as_secs_f64();
        let now = Self::ticks(self.pids)?;
        let hz = ticks_per_sec();
        let cpu: Vec<f64> = now
            .iter()
            .zip(&self.ticks)
            .map(|(n, s)| n.saturating_sub(*s) as f64 / hz)
            .collect();
        Ok(PhaseResult {
            what: what.to_owned(),
            rows,
            secs,
            cpu_secs: [cpu[0], cpu[1], cpu[2] + cpu[3]],
            load: (self.load, loadavg()),
            note: String::new(),
        })
    }
}

/// One line of the summary.
struct PhaseResult {
    what: String,
    rows: u64,
    secs: f64,
    /// CPU seconds of origin sim, target sim, client (this process, or cqlsh and its workers).
    cpu_secs: [f64; 3],
    load: (f64, f64),
    note: String,
}

impl PhaseResult {
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.secs
    }

    /// Two phases one after the other, as one.
    fn then(&self, next: &Self, what: &str) -> Self {
        Self {
            what: what.to_owned(),
            rows: self.rows,
            secs: self.secs + next.secs,
            cpu_secs: [0, 1, 2].map(|i| self.cpu_secs[i] + next.cpu_secs[i]),
            load: (self.load.0, next.load.1),
            note: String::new(),
        }
    }
}

fn print_table(results: &[PhaseResult]) {
    println!();
    println!(
        "| phase | rows | seconds | rows/s | MB/s | CPU-s origin sim / target sim / client | load avg before → after |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.1} / {:.1} / {:.1} | {:.2} → {:.2} |",
            r.what,
            r.rows,
            r.secs,
            r.rows_per_sec(),
            r.rows_per_sec() * ROW_BYTES as f64 / 1e6,
            r.cpu_secs[0],
            r.cpu_secs[1],
            r.cpu_secs[2],
            r.load.0,
            r.load.1
        );
        if !r.note.is_empty() {
            println!("|  ↳ {} | | | | | | |", r.note);
        }
    }
    println!("(MB/s: {ROW_BYTES} bytes of key and value per row, 10^6 bytes per MB)");
}

fn summary(results: &[PhaseResult]) {
    let find = |prefix: &str| results.iter().find(|r| r.what.starts_with(prefix));
    let Some(raw) = find("raw writes") else {
        return;
    };
    for table in ["bench.kv", "bench.ckv"] {
        let Some(mig) = find(&format!("ferry-migrator ({table} ")) else {
            continue;
        };
        println!();
        println!(
            "{table}: migrator / raw writes: {:.0}% of the raw (single-row INSERT) write rate (target ≥ 70%)",
            100.0 * mig.rows_per_sec() / raw.rows_per_sec()
        );
        if let Some(b) = find("raw batched") {
            println!(
                "{table}: migrator / raw batched writes: {:.0}% of the raw batched write rate",
                100.0 * mig.rows_per_sec() / b.rows_per_sec()
            );
        }
        if let Some(cq) = find(&format!("cqlsh COPY TO + COPY FROM ({table})")) {
            println!(
                "{table}: migrator / cqlsh: {:.1}× cqlsh's rows/s (target ≥ 5×)",
                mig.rows_per_sec() / cq.rows_per_sec()
            );
        }
    }
}
