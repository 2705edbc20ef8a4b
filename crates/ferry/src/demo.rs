//! `ferry demo`: a whole zero-downtime migration on this machine, finishing by itself.
//!
//! ```text
//!  [1] origin and target sims ─► [2] schema on both, historical rows on origin
//!  ─► [3] proxy in front (dual-async reads) ─► [4] workload through the proxy (live line)
//!  ─► [5] migrate (bars) ─► [6] validate while the workload runs
//!  ─► [7] cutover: primary target, then reads primary-only; the workload runs until target
//!      served 100 reads; per-cluster read counts
//!  ─► [8] workload stopped, report (exit 1 unless every table copied and 0 differences)
//! ```
//!
//! **In-process**, not child processes: the sims, the proxy and the migrator are the same
//! library calls `ferry sim|proxy|migrate|validate` make (`Cluster::start`, `Proxy::start`,
//! `Jobs`, `validate`), on real loopback sockets with free ports. One process is one thing to
//! stop (Ctrl-C shuts every component down in order), needs no port hand-over through stdout,
//! and cannot leave orphans behind; what an operator runs for real is printed as they go.
//!
//! **Mismatches** are validation's: keys still different after its re-check. The proxy's own
//! dual-read counts are shown beside them, not judged: without a migrator reporting over the
//! Update channel the proxy compares every read, including rows not copied yet, and a read
//! racing a write sees two instants.
//!
//! # Layout
//! - `sample`: the schema and the historical data.
//! - `workload`: the live application.
//! - this module: the phases, the live line and the report.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use ferry_migrator::api::{Api, Jobs};
use ferry_migrator::config::MigratorConfig;
use ferry_migrator::metrics::Metrics;
use ferry_migrator::progress::Fanout;
use ferry_migrator::update::Purpose;
use ferry_migrator::{LogObserver, Observer, Phase, ValidateOptions};
use ferry_proxy::Proxy;
use ferry_proxy::config::{ContactPoint, ProxyConfig, UpdateConfig};
use ferry_proxy::settings::ReadMode;
use ferry_service::http::AdminServer;
use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use serde_json::Value;

use crate::admin_client::AdminClient;
use crate::bars::Bars;
use crate::cutover::{Switch, switch_all};

mod sample;
mod workload;

use sample::Sizes;
use workload::{Snapshot, Workload};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Historical rows loaded on origin before the migration, over five tables.
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
    /// How long the workload runs alone before the migration, and again after the cutover,
    /// there until target served at least 100 reads however long that takes (250ms, 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = ferry_service::value::duration)]
    duration: Duration,
    /// Workload operations per second through the proxy.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Leave the clusters, the proxy and the migrator API up after the report, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    /// Address every component listens on, each on a free port.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Log level of the components (their logs go to stderr).
    #[arg(long, default_value = "warn", value_parser = ["error", "warn", "info", "debug"])]
    log_level: String,
}

impl DemoArgs {
    pub(crate) fn log_level(&self) -> &str {
        &self.log_level
    }
}

/// Everything started, so that every path out stops it.
struct Components {
    origin: Cluster<Executor>,
    target: Cluster<Executor>,
    proxy: Option<Proxy>,
    migrator_api: Option<AdminServer>,
    /// The migrator's Update channel to the proxy.
    link: Option<Arc<ferry_migrator::update::Link>>,
    workload: Option<Workload>,
    job_dir: PathBuf,
}

impl Components {
    async fn shutdown(mut self) {
        if let Some(w) = self.workload.take() {
            w.stop().await;
        }
        if let Some(api) = self.migrator_api.take() {
            api.stop().await;
        }
        if let Some(link) = self.link.take() {
            link.finish(Duration::from_secs(2), Duration::from_secs(2))
                .await;
        }
        if let Some(proxy) = self.proxy.take() {
            proxy.shutdown().await;
        }
        self.origin.shutdown().await;
        self.target.shutdown().await;
    }
}

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum DemoError {
    #[error("cannot start the {which} cluster on {addr}: {reason}")]
    Sim {
        which: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("cannot connect to {what} at {addr}: {reason}")]
    Connect {
        what: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("loading the sample data: {0}")]
    Load(#[from] Box<sample::LoadError>),
    #[error("cannot start the proxy: {0}")]
    Proxy(String),
    #[error("cannot start the workload: {0}")]
    Workload(String),
    #[error("the migrator's configuration: {0}")]
    Config(String),
    #[error("cannot serve the migrator API on {addr}: {reason}")]
    MigratorApi { addr: SocketAddr, reason: String },
    #[error("the migration job: {0}")]
    Job(String),
    #[error("validation could not run: {0}")]
    Validate(String),
    #[error("the cutover was refused: {0}")]
    Cutover(String),
    #[error("the proxy's admin API: {0}")]
    Admin(String),
    #[error(
        "target served {served} reads in the {waited:.1?} after the cutover, {awaited} awaited; \
         the workload is stuck or failing"
    )]
    NoReadsAfterCutover {
        served: u64,
        awaited: u64,
        waited: Duration,
    },
}

/// Reads target must have served after the cutover before the workload stops, so the report
/// always shows some. More than twice the workload's workers: each has at most one read in
/// flight at the switch (counted on target when it completes, mirrored or not), so most of
/// them were sent after it.
const MIN_TARGET_READS: u64 = 100;
const _: () = assert!(MIN_TARGET_READS > 2 * workload::WORKERS as u64);

/// How long, beyond `--duration`, the phase after the cutover waits for [`MIN_TARGET_READS`]:
/// a minute for a loaded machine, plus four times what those reads take at the nominal rate,
/// so that a low `--rate` is not cut short.
fn reads_after_cutover_deadline(rate: u32) -> Duration {
    let reads_per_second = f64::from(rate.max(1)) * workload::READ_SHARE;
    Duration::from_secs(60)
        + Duration::from_secs_f64(4.0 * MIN_TARGET_READS as f64 / reads_per_second)
}

/// The numbers of the final report.
impl From<sample::LoadError> for DemoError {
    fn from(e: sample::LoadError) -> Self {
        Self::Load(Box::new(e))
    }
}

#[derive(Debug, Default)]
struct Outcome {
    historical_rows: u64,
    load_rate: f64,
    rows_copied: u64,
    copy_secs: f64,
    tables_not_done: usize,
    keys_compared: u64,
    differences: u64,
    incomplete_tables: usize,
    dual_compared: u64,
    dual_mismatches: u64,
    dual_after_backfill: (u64, u64),
    reads_after_cutover: (u64, u64),
    writes_per_cluster: (u64, u64),
    workload: Snapshot,
    workload_errors: Vec<String>,
    addresses: Vec<(&'static str, String)>,
}

/// A line above the live bars on a terminal, on stdout otherwise.
macro_rules! say {
    ($live:expr, $($arg:tt)*) => {
        $live.say(format!($($arg)*))
    };
}

async fn session(what: &'static str, addr: SocketAddr) -> Result<Session, DemoError> {
    SessionBuilder::new()
        .known_node_addr(addr)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .map_err(|e| DemoError::Connect {
            what,
            addr,
            reason: e.to_string(),
        })
}

async fn sim(which: &'static str, ip: IpAddr) -> Result<Cluster<Executor>, DemoError> {
    let config = ClusterConfig {
        listen: SocketAddr::new(ip, 0),
        cluster_name: format!("ferry demo {which}"),
        ..ClusterConfig::default()
    };
    let addr = config.listen;
    Cluster::start(config, Arc::new(Executor::default()))
        .await
        .map_err(|e| DemoError::Sim {
            which,
            addr,
            reason: e.to_string(),
        })
}

pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    let started = Instant::now();
    println!(
        "ferry demo: a live migration on this machine: two clusters, the proxy, a workload, \
         the migrator; every component in this process, listening on {} (free ports)",
        args.bind
    );
    // Nothing draws yet: plain lines.
    println!("\n[1/8] starting the origin and target clusters (ferry sim, one node each)");
    let origin = match sim("origin", args.bind).await {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let target = match sim("target", args.bind).await {
        Ok(c) => c,
        Err(e) => {
            origin.shutdown().await;
            return fail(&e);
        }
    };
    println!("      origin  {}", origin.addresses()[0]);
    println!("      target  {}", target.addresses()[0]);
    let mut comps = Components {
        origin,
        target,
        proxy: None,
        migrator_api: None,
        link: None,
        workload: None,
        job_dir: std::env::temp_dir().join(format!("ferry-demo-{}", std::process::id())),
    };
    let outcome = tokio::select! {
        o = phases(&mut comps, &args) => Some(o),
        () = crate::wait_for_signal() => None,
    };
    let code = match outcome {
        None => {
            println!("\nferry demo: interrupted; stopping every component");
            ExitCode::FAILURE
        }
        Some(Err(e)) => fail(&e),
        Some(Ok(o)) => {
            let ok = report(&o, started.elapsed());
            if args.keep_running {
                keep_running(&comps, &o).await;
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    };
    let job_dir = comps.job_dir.clone();
    comps.shutdown().await;
    if code == ExitCode::SUCCESS {
        // Checkpoints and an empty validation report: nothing worth keeping.
        let _ = std::fs::remove_dir_all(&job_dir);
    } else if job_dir.exists() {
        println!(
            "ferry demo: job directory (plan, checkpoints, differing keys) kept in {}",
            job_dir.display()
        );
    }
    code
}

fn fail(e: &DemoError) -> ExitCode {
    eprintln!("\nferry demo: FAILED: {e}");
    ExitCode::FAILURE
}

/// The live line under the bars on a terminal, or nothing (a line per phase is printed).
struct LiveLine {
    multi: MultiProgress,
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl LiveLine {
    fn new() -> Self {
        let on = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if on {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Self {
            multi,
            bar: None,
            ticker: None,
        }
    }

    fn on(&self) -> bool {
        !self.multi.is_hidden()
    }

    /// Prints above the bars (printing around them would tear them).
    fn say(&self, line: String) {
        if !self.on() || self.multi.println(&line).is_err() {
            println!("{line}");
        }
    }

    fn phase(&self, n: u32, text: &str) {
        self.say(format!("\n[{n}/8] {text}"));
    }

    /// Starts refreshing the workload's numbers four times a second.
    fn follow(&mut self, counts: Arc<workload::Counts>) {
        if !self.on() {
            return;
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} workload {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let shown = bar.clone();
        self.ticker = Some(tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let s = counts.snapshot();
                let elapsed = last.0.elapsed().as_secs_f64();
                if elapsed >= 1.0 {
                    let rate = (s.ops() - last.1) as f64 / elapsed;
                    shown.set_prefix(format!("{rate:.0}"));
                    last = (Instant::now(), s.ops());
                }
                shown.set_message(format!("{}, {} ops/s", counts_line(&s), shown.prefix()));
                shown.tick();
            }
        }));
        self.bar = Some(bar);
    }

    fn stop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        // The finished bars stay on screen as drawn; hidden, they are not drawn again below
        // the report.
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
    }
}

fn counts_line(s: &Snapshot) -> String {
    format!(
        "{} inserts, {} updates, {} deletes, {} reads, {} errors",
        s.inserts, s.updates, s.deletes, s.reads, s.errors
    )
}

/// The workload's numbers as a phase's closing line (off a terminal, the only live sign).
fn workload_line(live: &LiveLine, w: &Workload) {
    if !live.on() {
        println!("      workload: {}", counts_line(&w.counts.snapshot()));
    }
}

async fn phases(comps: &mut Components, args: &DemoArgs) -> Result<Outcome, DemoError> {
    let mut out = Outcome::default();
    let mut live = LiveLine::new();
    let origin_addr = comps.origin.addresses()[0];
    let target_addr = comps.target.addresses()[0];
    out.addresses
        .push(("origin cluster (CQL)", origin_addr.to_string()));
    out.addresses
        .push(("target cluster (CQL)", target_addr.to_string()));

    // [2] The application's schema on both clusters, its history on origin.
    let sizes = Sizes::of(args.rows);
    live.phase(
        2,
        &format!(
            "creating keyspace {} on origin and target; loading {} historical rows on origin",
            sample::KEYSPACE,
            sizes.total()
        ),
    );
    let on_origin = Arc::new(session("origin", origin_addr).await?);
    sample::create_schema(&on_origin).await?;
    sample::create_schema(&session("target", target_addr).await?).await?;
    say!(
        live,
        "      tables: {} (set and map, compound partition key with clustering order, TTLs, \
         lists, counters)",
        sample::TABLES.join(", ")
    );
    let loaded = Arc::new(AtomicU64::new(0));
    let load_started = Instant::now();
    let load_bar = live.on().then(|| {
        let bar = live.multi.add(ProgressBar::new(sizes.total()));
        bar.set_style(
            ProgressStyle::with_template("      loading [{bar:30}] {pos}/{len} rows  {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let load = sample::load(on_origin.clone(), sizes, loaded.clone());
    tokio::pin!(load);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = &mut load => { r?; break; }
            _ = tick.tick() => {
                if let Some(b) = &load_bar {
                    b.set_position(loaded.load(Ordering::Relaxed));
                }
            }
        }
    }
    if let Some(b) = load_bar {
        b.finish_and_clear();
    }
    out.historical_rows = sizes.total();
    out.load_rate = sample::rate(sizes.total(), load_started.elapsed());
    say!(
        live,
        "      loaded {} rows in {:.1}s ({:.0} rows/s), writetimes a day ago, sessions with a \
         TTL of 7 days",
        sizes.total(),
        load_started.elapsed().as_secs_f64(),
        out.load_rate
    );

    // [3] The proxy.
    live.phase(
        3,
        "starting the proxy in front of both (ferry proxy): primary origin, reads dual-async",
    );
    let mut config = ProxyConfig::default();
    config.listen = SocketAddr::new(args.bind, 0);
    config.admin.listen = SocketAddr::new(args.bind, 0);
    config.origin.contact_points = vec![ContactPoint::from(origin_addr)];
    config.target.contact_points = vec![ContactPoint::from(target_addr)];
    config.read_mode = ReadMode::DualAsync;
    let mut update = UpdateConfig::default();
    update.listen = SocketAddr::new(args.bind, 0);
    config.update = Some(update);
    let proxy = Proxy::start(config)
        .await
        .map_err(|e| DemoError::Proxy(e.to_string()))?;
    let proxy_addr = proxy.local_addr();
    let admin = AdminClient::new(proxy.admin_addr(), None);
    let update_addr = proxy.update_addr();
    say!(
        live,
        "      CQL     {proxy_addr}   (applications and cqlsh connect here)"
    );
    say!(
        live,
        "      admin   http://{}   (/status, /metrics, /primary, /read-mode)",
        proxy.admin_addr()
    );
    out.addresses.push(("proxy (CQL)", proxy_addr.to_string()));
    out.addresses
        .push(("proxy admin", format!("http://{}", proxy.admin_addr())));
    if let Some(u) = update_addr {
        say!(
            live,
            "      update  {u}   (the Update channel migrators dial)"
        );
        out.addresses.push(("proxy Update channel", u.to_string()));
    }
    comps.proxy = Some(proxy);

    // [4] The application, through the proxy.
    live.phase(
        4,
        &format!(
            "starting the workload through the proxy ({} ops/s: inserts, updates, deletes, \
             reads; scylla driver); running alone for {}s",
            args.rate,
            args.duration.as_secs_f64()
        ),
    );
    let through_proxy = Arc::new(session("proxy", proxy_addr).await?);
    let work = Workload::start(through_proxy, sizes, args.rate)
        .await
        .map_err(|e| DemoError::Workload(e.to_string()))?;
    live.follow(work.counts.clone());
    tokio::time::sleep(args.duration).await;
    workload_line(&live, &work);
    comps.workload = Some(work);

    // [5] The backfill.
    live.phase(
        5,
        "migrating (ferry migrate): every cell copied with its writetime and TTL, counters by \
         difference",
    );
    let migrator_listen = SocketAddr::new(args.bind, 0);
    let flags: Vec<(&str, String, &str)> = vec![
        ("origin.contact_points", origin_addr.to_string(), "demo"),
        ("target.contact_points", target_addr.to_string(), "demo"),
        ("tables", sample::KEYSPACE.to_owned(), "demo"),
        ("counters", "true".to_owned(), "demo"),
        ("ranges", "16".to_owned(), "demo"),
        ("job_dir", comps.job_dir.display().to_string(), "demo"),
        ("admin.listen", migrator_listen.to_string(), "demo"),
    ];
    // The migrator reports its job to the proxy over the Update channel: the proxy compares
    // dual reads only for backfilled tables and allows the cutover once validation reported.
    let mut flags = flags;
    if let Some(u) = update_addr {
        flags.push(("update.proxies", u.to_string(), "demo"));
    }
    let mconfig = MigratorConfig::load(None, std::iter::empty::<(String, String)>(), &flags)
        .map_err(|e| DemoError::Config(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let display: Arc<dyn Observer> = if live.on() {
        Arc::new(Bars::with(live.multi.clone()))
    } else {
        Arc::new(LogObserver)
    };
    let link =
        ferry_migrator::update::Link::start(&mconfig, Purpose::Migrate, false, metrics.clone())
            .map_err(|e| DemoError::Config(e.to_string()))?;
    let display: Arc<dyn Observer> = match &link {
        Some(link) => Arc::new(Fanout(vec![display, link.reporter("ferry demo")])),
        None => display,
    };
    let jobs = Arc::new(Jobs::new(metrics.clone(), display));
    if let Some(link) = &link {
        link.answer(Some(jobs.clone()));
    }
    comps.link = link;
    let api = Arc::new(Api::new(jobs.clone(), metrics, mconfig.clone()));
    let server = AdminServer::start(migrator_listen, api)
        .await
        .map_err(|e| DemoError::MigratorApi {
            addr: migrator_listen,
            reason: e.to_string(),
        })?;
    say!(
        live,
        "      migrator admin http://{}   (GET /jobs; ferry status --migrator {})",
        server.addr(),
        server.addr()
    );
    out.addresses
        .push(("migrator admin", format!("http://{}", server.addr())));
    comps.migrator_api = Some(server);
    let copy_started = Instant::now();
    let id = jobs
        .start(mconfig.job_spec())
        .map_err(|e| DemoError::Job(e.to_string()))?;
    let report = match jobs.wait(&id).await {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(DemoError::Job(e)),
        None => return Err(DemoError::Job(format!("job {id} vanished"))),
    };
    out.copy_secs = copy_started.elapsed().as_secs_f64();
    for t in &report.tables {
        say!(
            live,
            "      {:<28} {:<10} {:>4}/{:<4} ranges {:>9} rows",
            t.table.to_string(),
            t.phase.to_string(),
            t.ranges_done,
            t.ranges_total,
            t.rows
        );
        out.rows_copied += t.rows;
    }
    out.tables_not_done = report
        .tables
        .iter()
        .filter(|t| t.phase != Phase::Done)
        .count();
    say!(
        live,
        "      copied {} rows in {:.1}s ({:.0} rows/s) while the workload ran",
        out.rows_copied,
        out.copy_secs,
        sample::rate(out.rows_copied, copy_started.elapsed())
    );
    workload_line(&live, comps.workload.as_ref().ok_or_else(no_workload)?);
    let at_backfill = dual_reads(&admin).await?;

    // [6] Validation with the workload still running.
    live.phase(
        6,
        "validating (ferry validate) while the workload runs: every cell's value, writetime and \
         TTL on both clusters",
    );
    let validation = ferry_migrator::validate(
        mconfig.job_spec(),
        ValidateOptions::default(),
        Arc::new(LogObserver),
    )
    .await
    .map_err(|e| DemoError::Validate(e.to_string()))?;
    for t in &validation.tables {
        let mut line = format!(
            "      {:<28} {:>9} keys compared, {} differ, {} cleared by the re-check",
            t.table.to_string(),
            t.rows,
            t.remaining,
            t.cleared
        );
        if let Some(e) = &t.error {
            line.push_str(&format!("; INCOMPLETE: {e}"));
            out.incomplete_tables += 1;
        }
        say!(live, "{line}");
        out.keys_compared += t.rows;
        out.differences += t.remaining;
    }
    if let Some(link) = &comps.link {
        // The proxy allows the cutover once it knows every table validated with 0 differences.
        link.validated(&validation);
        if tokio::time::timeout(Duration::from_secs(10), link.flushed())
            .await
            .is_err()
        {
            say!(
                live,
                "      the proxy has not acknowledged the validation results yet"
            );
        }
    }
    workload_line(&live, comps.workload.as_ref().ok_or_else(no_workload)?);

    // [7] Cutover, through the same code as `ferry cutover`.
    live.phase(
        7,
        "cutover (ferry cutover --primary target): reads now served by target; origin keeps \
         getting every write, ready as the way back",
    );
    let admins = [admin.addr];
    let say = |l: String| live.say(format!("      {l}"));
    switch_all(&admins, None, &Switch::primary(true, false), say)
        .await
        .map_err(|errors| DemoError::Cutover(joined(&errors)))?;
    // Dual reads off: from here, a read reaching origin would be one the proxy sent there.
    switch_all(&admins, None, &Switch::read_mode(false), say)
        .await
        .map_err(|errors| DemoError::Cutover(joined(&errors)))?;
    // Mirrored reads sent before the switch are counted when they complete: let them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cluster_requests(&admin).await?;
    let switched = Instant::now();
    tokio::time::sleep(args.duration).await;
    // However slow the machine, the workload goes on until target served MIN_TARGET_READS
    // reads: no window that a stalled workload could leave empty.
    let deadline = args.duration + reads_after_cutover_deadline(args.rate);
    let mut after = cluster_requests(&admin).await?;
    loop {
        let served = after.target_reads.saturating_sub(before.target_reads);
        if served >= MIN_TARGET_READS {
            break;
        }
        if switched.elapsed() >= deadline {
            return Err(DemoError::NoReadsAfterCutover {
                served,
                awaited: MIN_TARGET_READS,
                waited: switched.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = cluster_requests(&admin).await?;
    }
    out.reads_after_cutover = (
        after.origin_reads.saturating_sub(before.origin_reads),
        after.target_reads.saturating_sub(before.target_reads),
    );
    say!(
        live,
        "      reads in the {:.1}s after the cutover (proxy metric ferry_proxy_requests_total): \
         target {}, origin {}",
        switched.elapsed().as_secs_f64(),
        out.reads_after_cutover.1,
        out.reads_after_cutover.0
    );

    // [8] The end.
    live.phase(8, "stopping the workload");
    live.stop();
    let work = comps.workload.take().ok_or_else(no_workload)?;
    let first_errors = work
        .counts
        .first_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    out.workload = work.stop().await;
    out.workload_errors = first_errors;
    let end = dual_reads(&admin).await?;
    out.dual_compared = end.0;
    out.dual_mismatches = end.1;
    out.dual_after_backfill = (
        end.0.saturating_sub(at_backfill.0),
        end.1.saturating_sub(at_backfill.1),
    );
    let requests = cluster_requests(&admin).await?;
    out.writes_per_cluster = (requests.origin_writes, requests.target_writes);
    Ok(out)
}

fn no_workload() -> DemoError {
    DemoError::Workload("the workload is gone".to_owned())
}

fn joined(errors: &[crate::cutover::CutoverError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `(compared, mismatches)` of the proxy's dual reads so far.
async fn dual_reads(admin: &AdminClient) -> Result<(u64, u64), DemoError> {
    let a = admin
        .get("/status")
        .await
        .map_err(|e| DemoError::Admin(e.to_string()))?;
    if a.status != 200 {
        return Err(DemoError::Admin(format!(
            "GET /status: HTTP {}: {}",
            a.status,
            a.reason()
        )));
    }
    let v = a.json();
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Ok((n("/dual_reads/compared"), n("/dual_reads/mismatches")))
}

#[derive(Debug, Default)]
struct Requests {
    origin_reads: u64,
    target_reads: u64,
    origin_writes: u64,
    target_writes: u64,
}

async fn cluster_requests(admin: &AdminClient) -> Result<Requests, DemoError> {
    let a = admin
        .get("/metrics")
        .await
        .map_err(|e| DemoError::Admin(e.to_string()))?;
    if a.status != 200 {
        return Err(DemoError::Admin(format!(
            "GET /metrics: HTTP {}: {}",
            a.status,
            a.reason()
        )));
    }
    let get = |cluster: &str, kind: &str| requests_total(&a.body, cluster, kind);
    Ok(Requests {
        origin_reads: get("origin", "read"),
        target_reads: get("target", "read"),
        origin_writes: get("origin", "write"),
        target_writes: get("target", "write"),
    })
}

/// `ferry_proxy_requests_total{cluster, kind}` from Prometheus text.
fn requests_total(metrics: &str, cluster: &str, kind: &str) -> u64 {
    let cluster = format!("cluster=\"{cluster}\"");
    let kind = format!("kind=\"{kind}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("ferry_proxy_requests_total{"))
        .filter(|l| l.contains(&cluster) && l.contains(&kind))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Prints the report; whether the demo succeeded.
fn report(o: &Outcome, took: Duration) -> bool {
    let mismatches = o.differences;
    let ok = mismatches == 0 && o.tables_not_done == 0 && o.incomplete_tables == 0;
    println!("\n══ ferry demo: report ═══════════════════════════════════════════════════");
    println!(
        "  historical rows   {} on origin ({:.0} rows/s loaded)",
        o.historical_rows, o.load_rate
    );
    println!(
        "  rows copied       {} in {:.1}s = {:.0} rows/s{}",
        o.rows_copied,
        o.copy_secs,
        if o.copy_secs > 0.0 {
            o.rows_copied as f64 / o.copy_secs
        } else {
            0.0
        },
        if o.tables_not_done > 0 {
            format!("; {} table(s) NOT DONE", o.tables_not_done)
        } else {
            String::new()
        }
    );
    println!(
        "  dual writes       {} by the workload ({} inserts, {} updates, {} deletes); the proxy \
         sent {} writes to origin, {} to target",
        o.workload.writes(),
        o.workload.inserts,
        o.workload.updates,
        o.workload.deletes,
        o.writes_per_cluster.0,
        o.writes_per_cluster.1
    );
    println!(
        "  workload          {} reads, {} errors{}",
        o.workload.reads,
        o.workload.errors,
        if o.workload_errors.is_empty() {
            String::new()
        } else {
            format!(" (first: {})", o.workload_errors.join(" | "))
        }
    );
    println!(
        "  MISMATCHES        {mismatches} (validation: {} keys compared on both clusters{})",
        o.keys_compared,
        if o.incomplete_tables > 0 {
            format!(", {} table(s) INCOMPLETE", o.incomplete_tables)
        } else {
            String::new()
        }
    );
    println!(
        "  dual reads        {} compared by the proxy, {} differed; after the backfill {} \
         compared, {} differed (before it, rows not copied yet differ by design)",
        o.dual_compared, o.dual_mismatches, o.dual_after_backfill.0, o.dual_after_backfill.1
    );
    println!(
        "  after cutover     {} reads served by target (the workload ran until at least {}), \
         {} sent to origin",
        o.reads_after_cutover.1, MIN_TARGET_READS, o.reads_after_cutover.0
    );
    println!("  listened on:");
    for (what, addr) in &o.addresses {
        println!("    {what:<22} {addr}");
    }
    println!(
        "  took              {:.1}s; {}",
        took.as_secs_f64(),
        if ok {
            "migration complete, 0 mismatches"
        } else {
            "FAILED: see above"
        }
    );
    ok
}

async fn keep_running(comps: &Components, o: &Outcome) {
    let find = |what: &str| {
        o.addresses
            .iter()
            .find(|(w, _)| *w == what)
            .map_or("?".to_owned(), |(_, a)| a.clone())
    };
    let proxy: Option<SocketAddr> = comps.proxy.as_ref().map(Proxy::local_addr);
    println!("\nferry demo: everything stays up until Ctrl-C:");
    if let Some(p) = proxy {
        println!(
            "  cqlsh {} {}        # through the proxy (primary: target)",
            p.ip(),
            p.port()
        );
    }
    let origin = comps.origin.addresses()[0];
    let target = comps.target.addresses()[0];
    println!(
        "  cqlsh {} {}        # origin directly",
        origin.ip(),
        origin.port()
    );
    println!(
        "  cqlsh {} {}        # target directly",
        target.ip(),
        target.port()
    );
    println!(
        "  ferry status --proxy {} --migrator {}",
        find("proxy admin").trim_start_matches("http://"),
        find("migrator admin").trim_start_matches("http://")
    );
    println!(
        "  Prometheus/Grafana: scrape {}/metrics and {}/metrics",
        find("proxy admin"),
        find("migrator admin")
    );
    crate::wait_for_signal().await;
    println!("ferry demo: stopping");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_come_from_the_labelled_series() {
        let text = "# HELP ferry_proxy_requests_total x\n\
            ferry_proxy_requests_total{cluster=\"origin\",kind=\"read\"} 12\n\
            ferry_proxy_requests_total{cluster=\"target\",kind=\"read\"} 30\n\
            ferry_proxy_requests_total{cluster=\"target\",kind=\"write\"} 7\n\
            ferry_proxy_requests_total_other{cluster=\"target\",kind=\"read\"} 99\n";
        assert_eq!(requests_total(text, "origin", "read"), 12);
        assert_eq!(requests_total(text, "target", "read"), 30);
        assert_eq!(requests_total(text, "target", "write"), 7);
        assert_eq!(requests_total(text, "origin", "write"), 0);
    }

    #[test]
    fn every_table_gets_rows() {
        let s = Sizes::of(3);
        assert!(s.users > 0 && s.events > 0 && s.sessions > 0 && s.page_views > 0);
        assert_eq!(Sizes::of(100_000).total(), 100_000);
    }
}
