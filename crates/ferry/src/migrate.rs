//! `ferry migrate`: flags → [`JobSpec`], run, a summary per table, exit code 0 (every table
//! DONE), 1 (a table FAILED or the job could not start) or 64 (bad arguments).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use ferry_migrator::{
    ClusterSpec, CountersMode, JobError, JobSpec, LogObserver, Phase, RangeCount, TableSelector,
};

use crate::EXIT_BAD_CONFIG;

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) job: JobArgs,
}

/// The clusters, tables and limits of a job: `ferry migrate` and `ferry validate` share them.
#[derive(Debug, Args)]
pub(crate) struct JobArgs {
    /// Origin contact points, HOST:PORT[,…].
    #[arg(long, value_delimiter = ',', required = true)]
    origin: Vec<String>,
    /// Target contact points, HOST:PORT[,…].
    #[arg(long, value_delimiter = ',', required = true)]
    target: Vec<String>,
    /// Tables in migration order: KS, KS.TABLE or patterns with * and ? (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    tables: Vec<String>,
    /// Tables to leave out (same forms as --tables).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Plan, checkpoints and applied DDL; rerunning with the same directory resumes.
    #[arg(long, default_value = "ferry-job")]
    job_dir: PathBuf,
    /// Token ranges per table (default: from origin's size estimates).
    #[arg(long)]
    ranges: Option<u32>,
    /// With size estimates: partitions per range.
    #[arg(long, default_value_t = 50_000)]
    partitions_per_range: u64,
    /// Row writes in flight on target.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Ranges of one table scanned at once.
    #[arg(long, default_value_t = 4)]
    scan_parallelism: usize,
    /// Tables migrated at once.
    #[arg(long, default_value_t = 1)]
    table_parallelism: usize,
    /// Rows per scan page.
    #[arg(long, default_value_t = 1_000)]
    page_size: i32,
    /// Limit on rows written per second.
    #[arg(long)]
    rows_per_second: Option<u64>,
    /// Limit on bytes written per second.
    #[arg(long)]
    bytes_per_second: Option<u64>,
    /// Retries of a failing write or scan page.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Writetime (µs since the epoch) for primary-key-only rows; use the time dual writes
    /// started (`ferry validate --delete-extra` deletes below it).
    #[arg(long, default_value_t = 0)]
    pub(crate) floor_timestamp: i64,
    /// Copy (or repair) counter tables by adding origin − target to each counter.
    #[arg(long)]
    counters: bool,
    /// Replication of a keyspace created on target, KS={'class': …} (repeatable).
    #[arg(long, value_name = "KS=MAP")]
    replication: Vec<String>,
    /// Per-request timeout in milliseconds (scan pages and writes).
    #[arg(long, default_value_t = 12_000)]
    request_timeout_ms: u64,
    #[arg(long)]
    origin_user: Option<String>,
    #[arg(long)]
    origin_password: Option<String>,
    #[arg(long)]
    target_user: Option<String>,
    #[arg(long)]
    target_password: Option<String>,
    /// Datacenter to prefer on origin.
    #[arg(long)]
    origin_dc: Option<String>,
    /// Datacenter to prefer on target.
    #[arg(long)]
    target_dc: Option<String>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    pub(crate) log_level: String,
    /// Logs as JSON objects, one per line.
    #[arg(long)]
    pub(crate) log_json: bool,
}

impl JobArgs {
    /// The job, or every problem with the flags.
    pub(crate) fn spec(self) -> Result<JobSpec, Vec<String>> {
        let mut problems = Vec::new();
        let cluster = |name: &str,
                       contact_points: Vec<String>,
                       user: Option<String>,
                       password: Option<String>,
                       dc: Option<String>,
                       problems: &mut Vec<String>| {
            let mut c = ClusterSpec::new(contact_points);
            c.local_dc = dc;
            c.request_timeout = Duration::from_millis(self.request_timeout_ms);
            match (user, password) {
                (Some(u), Some(p)) => c.credentials = Some((u, p)),
                (None, None) => {}
                _ => problems.push(format!("--{name}-user and --{name}-password go together")),
            }
            c
        };
        let origin = cluster(
            "origin",
            self.origin,
            self.origin_user,
            self.origin_password,
            self.origin_dc,
            &mut problems,
        );
        let target = cluster(
            "target",
            self.target,
            self.target_user,
            self.target_password,
            self.target_dc,
            &mut problems,
        );
        let mut selectors = |list: Vec<String>| -> Vec<TableSelector> {
            list.iter()
                .filter(|s| !s.trim().is_empty())
                .filter_map(|s| TableSelector::parse(s).map_err(|e| problems.push(e)).ok())
                .collect()
        };
        let tables = selectors(self.tables);
        let exclude = selectors(self.exclude);
        let mut spec = JobSpec::new(origin, target, tables);
        spec.exclude = exclude;
        spec.job_dir = self.job_dir;
        spec.ranges = match self.ranges {
            Some(n) => RangeCount::Fixed(n),
            None => RangeCount::Auto {
                partitions_per_range: self.partitions_per_range,
            },
        };
        spec.concurrency = self.concurrency;
        spec.scan_parallelism = self.scan_parallelism;
        spec.table_parallelism = self.table_parallelism;
        spec.page_size = self.page_size;
        spec.max_rows_per_second = self.rows_per_second;
        spec.max_bytes_per_second = self.bytes_per_second;
        spec.retries = self.retries;
        spec.floor_timestamp = self.floor_timestamp;
        if self.counters {
            spec.counters = CountersMode::ApplyDifference;
        }
        for r in self.replication {
            match r.split_once('=') {
                Some((ks, map)) if !ks.is_empty() && map.trim_start().starts_with('{') => {
                    spec.replication.insert(ks.to_owned(), map.to_owned());
                }
                _ => problems.push(format!("--replication {r:?}: expected KS={{'class': …}}")),
            }
        }
        if let Err(e) = spec.validate() {
            problems.extend(e.problems);
        }
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(problems)
        }
    }
}

pub(crate) async fn run(args: MigrateArgs) -> ExitCode {
    let spec = match args.job.spec() {
        Ok(s) => s,
        Err(problems) => {
            eprintln!("ferry migrate: invalid arguments:");
            for p in problems {
                eprintln!("  - {p}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let report = match ferry_migrator::run(spec, Arc::new(LogObserver)).await {
        Ok(r) => r,
        Err(JobError::Invalid(e)) => {
            eprintln!("ferry migrate: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        Err(e) => {
            eprintln!("ferry migrate: {e}");
            return ExitCode::FAILURE;
        }
    };
    for t in &report.tables {
        println!(
            "{}: {} ({}/{} ranges, {} rows, {} bytes this run)",
            t.table, t.phase, t.ranges_done, t.ranges_total, t.rows, t.bytes
        );
    }
    let failed = report
        .tables
        .iter()
        .filter(|t| matches!(t.phase, Phase::Failed(_)))
        .count();
    if failed == 0 {
        println!("ferry migrate: {} tables done", report.tables.len());
        ExitCode::SUCCESS
    } else {
        println!(
            "ferry migrate: {failed} of {} tables failed",
            report.tables.len()
        );
        ExitCode::FAILURE
    }
}
