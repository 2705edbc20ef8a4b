//! `ferry migrate`: config (`--config FILE`, `FERRY_MIGRATOR_…` env, flags on top) → a job,
//! run with progress bars on a terminal (text or JSON logs otherwise), optionally serving the
//! admin API while it runs; or `--serve`, which waits for jobs posted over HTTP.
//!
//! Exit codes: 0 (every table DONE), 1 (a table FAILED or CANCELLED, or the job could not
//! start), 64 (bad configuration, every problem listed).
//!
//! `--serve` decisions: the API listens on `admin.listen` (default 127.0.0.1:14101), runs one
//! job at a time, and the process stays up until Ctrl-C / SIGTERM, which cancels a running job
//! at its next checkpoint. Without `--serve`, the API is served only when `--admin ADDR` (or
//! `admin.listen`) is given, so several one-shot runs on one machine do not fight over a port.
// The flags' doc comments are `--help` text, where `[key]` names the config key a flag
// overrides; they are not rustdoc links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use ferry_migrator::api::{Api, Jobs};
use ferry_migrator::config::{LogFormat, MigratorConfig};
use ferry_migrator::metrics::Metrics;
use ferry_migrator::progress::Fanout;
use ferry_migrator::update::Purpose;
use ferry_migrator::{LogObserver, Observer, Phase};
use ferry_service::http::AdminServer;

use crate::EXIT_BAD_CONFIG;
use crate::bars::Bars;

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) job: JobArgs,
    /// Wait for jobs posted to the admin API (`POST /jobs`) instead of running one.
    #[arg(long)]
    serve: bool,
    /// Serve the admin API (jobs, /metrics, health) on this address [admin.listen].
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
}

/// The configuration of a job: `ferry migrate` and `ferry validate` share it. Every flag is
/// optional and overrides the config key in brackets (values are parsed as the config parses
/// them, so one list names every problem).
#[derive(Debug, Args)]
pub(crate) struct JobArgs {
    /// YAML configuration file (see deploy/config/migrator.yaml); `FERRY_MIGRATOR_…`
    /// environment variables override it, flags override both.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Origin contact points, HOST[:PORT][,…] [origin.contact_points].
    #[arg(long)]
    origin: Option<String>,
    /// Target contact points [target.contact_points].
    #[arg(long)]
    target: Option<String>,
    /// Tables in migration order: KS, KS.TABLE or patterns with * and ? [tables].
    #[arg(long)]
    tables: Option<String>,
    /// Tables to leave out [exclude].
    #[arg(long)]
    exclude: Option<String>,
    /// Plan, checkpoints and applied DDL; rerunning with the same directory resumes [job_dir].
    #[arg(long)]
    job_dir: Option<String>,
    /// Token ranges per table, or auto [ranges].
    #[arg(long)]
    ranges: Option<String>,
    /// With ranges auto: partitions per range [partitions_per_range].
    #[arg(long)]
    partitions_per_range: Option<String>,
    /// Row writes in flight on target [concurrency].
    #[arg(long)]
    concurrency: Option<String>,
    /// Ranges of one table scanned at once [scan_parallelism].
    #[arg(long)]
    scan_parallelism: Option<String>,
    /// Tables migrated at once [table_parallelism].
    #[arg(long)]
    table_parallelism: Option<String>,
    /// Rows per scan page [page_size].
    #[arg(long)]
    page_size: Option<String>,
    /// Limit on rows written per second [rows_per_second].
    #[arg(long)]
    rows_per_second: Option<String>,
    /// Limit on bytes written per second [bytes_per_second].
    #[arg(long)]
    bytes_per_second: Option<String>,
    /// Retries of a failing write or scan page [retries].
    #[arg(long)]
    retries: Option<String>,
    /// Writetime (µs) for primary-key-only rows; use the time dual writes started
    /// [floor_timestamp].
    #[arg(long)]
    floor_timestamp: Option<String>,
    /// Copy counter tables by adding origin − target to each counter [counters].
    #[arg(long)]
    counters: bool,
    /// Replication of a keyspace created on target, KS={'class': …} (repeatable)
    /// [replication].
    #[arg(long, value_name = "KS=MAP")]
    replication: Vec<String>,
    /// Per-request timeout in milliseconds, both clusters [<cluster>.request_timeout].
    #[arg(long)]
    request_timeout_ms: Option<String>,
    #[arg(long)]
    origin_user: Option<String>,
    #[arg(long)]
    origin_password: Option<String>,
    #[arg(long)]
    target_user: Option<String>,
    #[arg(long)]
    target_password: Option<String>,
    /// Datacenter to prefer on origin [origin.local_dc].
    #[arg(long)]
    origin_dc: Option<String>,
    /// Datacenter to prefer on target [target.local_dc].
    #[arg(long)]
    target_dc: Option<String>,
    /// error, warn, info, debug, trace [log.level].
    #[arg(long)]
    log_level: Option<String>,
    /// auto (bars on a terminal), text or json [log.format].
    #[arg(long)]
    log_format: Option<String>,
    /// Same as --log-format json.
    #[arg(long, hide = true)]
    log_json: bool,
    /// A proxy's Update address HOST[:PORT] to report to and take requests from
    /// (repeatable; replaces the list) [update.proxies].
    #[arg(long, value_name = "ADDR")]
    update_proxy: Vec<String>,
}

impl JobArgs {
    /// `--floor-timestamp` when given and well-formed.
    pub(crate) fn floor_flag(&self) -> Option<i64> {
        self.floor_timestamp.as_deref()?.trim().parse().ok()
    }

    /// (config key, value, flag) for every flag given.
    fn flags(&self) -> Vec<(&'static str, String, &'static str)> {
        let mut out = Vec::new();
        let mut one = |key, value: &Option<String>, flag| {
            if let Some(v) = value {
                out.push((key, v.clone(), flag));
            }
        };
        one("origin.contact_points", &self.origin, "--origin");
        one("target.contact_points", &self.target, "--target");
        one("tables", &self.tables, "--tables");
        one("exclude", &self.exclude, "--exclude");
        one("job_dir", &self.job_dir, "--job-dir");
        one("ranges", &self.ranges, "--ranges");
        one(
            "partitions_per_range",
            &self.partitions_per_range,
            "--partitions-per-range",
        );
        one("concurrency", &self.concurrency, "--concurrency");
        one(
            "scan_parallelism",
            &self.scan_parallelism,
            "--scan-parallelism",
        );
        one(
            "table_parallelism",
            &self.table_parallelism,
            "--table-parallelism",
        );
        one("page_size", &self.page_size, "--page-size");
        one(
            "rows_per_second",
            &self.rows_per_second,
            "--rows-per-second",
        );
        one(
            "bytes_per_second",
            &self.bytes_per_second,
            "--bytes-per-second",
        );
        one("retries", &self.retries, "--retries");
        one(
            "floor_timestamp",
            &self.floor_timestamp,
            "--floor-timestamp",
        );
        one("origin.username", &self.origin_user, "--origin-user");
        one(
            "origin.password",
            &self.origin_password,
            "--origin-password",
        );
        one("target.username", &self.target_user, "--target-user");
        one(
            "target.password",
            &self.target_password,
            "--target-password",
        );
        one("origin.local_dc", &self.origin_dc, "--origin-dc");
        one("target.local_dc", &self.target_dc, "--target-dc");
        one("log.level", &self.log_level, "--log-level");
        one("log.format", &self.log_format, "--log-format");
        let timeout = self.request_timeout_ms.as_ref().map(|ms| format!("{ms}ms"));
        one("origin.request_timeout", &timeout, "--request-timeout-ms");
        one("target.request_timeout", &timeout, "--request-timeout-ms");
        if self.counters {
            out.push(("counters", "true".to_owned(), "--counters"));
        }
        if self.log_json {
            out.push(("log.format", "json".to_owned(), "--log-json"));
        }
        if !self.replication.is_empty() {
            out.push(("replication", self.replication.join(";"), "--replication"));
        }
        if !self.update_proxy.is_empty() {
            out.push((
                "update.proxies",
                self.update_proxy.join(","),
                "--update-proxy",
            ));
        }
        out
    }

    /// The configuration with `extra` flags on top, or every problem (printed as `command`'s;
    /// exit 64). `need_tables`: the command works on the tables named here.
    pub(crate) fn load_with(
        &self,
        command: &str,
        extra: &[(&'static str, String, &'static str)],
        need_tables: bool,
    ) -> Result<MigratorConfig, ExitCode> {
        let mut flags = self.flags();
        flags.extend_from_slice(extra);
        let mut config = MigratorConfig::from_process(self.config.as_deref(), &flags);
        if let Ok(c) = &config
            && need_tables
            && c.tables.is_empty()
        {
            config = Err(ferry_service::ConfigErrors::new(
                "migrator",
                vec![ferry_service::ConfigProblem::Refused {
                    name: "tables".to_owned(),
                    reason: "no tables selected (--tables or the tables key)".to_owned(),
                }],
            ));
        }
        config.map_err(|e| {
            eprintln!("{command}: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        })
    }
}

impl MigrateArgs {
    /// The configuration, or every problem (printed; exit 64).
    pub(crate) fn load(&self) -> Result<MigratorConfig, ExitCode> {
        let admin: Vec<_> = self
            .admin
            .iter()
            .map(|a| ("admin.listen", a.clone(), "--admin"))
            .collect();
        // A one-shot job needs its tables; a server gets them with each posted job.
        self.job.load_with("ferry migrate", &admin, !self.serve)
    }

    pub(crate) fn serve(&self) -> bool {
        self.serve
    }
}

/// Whether progress bars draw (a terminal on stdout, format auto).
pub(crate) fn bars_on(config: &MigratorConfig) -> bool {
    config.log_format == LogFormat::Auto && std::io::stdout().is_terminal()
}

pub(crate) async fn run(args: MigrateArgs, config: MigratorConfig) -> ExitCode {
    let metrics = Arc::new(Metrics::new());
    let display: Arc<dyn Observer> = if bars_on(&config) {
        Arc::new(Bars::new())
    } else {
        Arc::new(LogObserver)
    };
    let link = match ferry_migrator::update::Link::start(
        &config,
        Purpose::Migrate,
        args.serve(),
        Arc::new(Fanout(vec![metrics.clone(), Arc::new(LogObserver)])),
    ) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("ferry migrate: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let display: Arc<dyn Observer> = match &link {
        Some(link) => Arc::new(Fanout(vec![
            display,
            link.reporter(config.job_dir.display().to_string()),
        ])),
        None => display,
    };
    let jobs = Arc::new(Jobs::new(metrics.clone(), display));
    if let Some(link) = &link {
        link.answer(Some(jobs.clone()));
    }
    let listen = match (args.serve(), config.admin.listen) {
        (_, Some(addr)) => Some(addr),
        (true, None) => Some(ferry_migrator::config::DEFAULT_ADMIN_LISTEN),
        (false, None) => None,
    };
    let server = match listen {
        Some(addr) => {
            let api = Arc::new(Api::new(jobs.clone(), metrics, config.clone()));
            match AdminServer::start(addr, api).await {
                Ok(s) => {
                    tracing::info!(addr = %s.addr(), "migrator admin API listening");
                    Some(s)
                }
                Err(e) => {
                    eprintln!("ferry migrate: cannot listen on {addr} (admin.listen): {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let code = if args.serve() {
        crate::wait_for_signal().await;
        if let Some(id) = jobs.running() {
            let _ = jobs.cancel(&id);
            let _ = jobs.wait(&id).await;
        }
        ExitCode::SUCCESS
    } else {
        one_job(&jobs, &config).await
    };
    if let Some(link) = link {
        link.finish(
            ferry_migrator::update::REPAIR_GRACE,
            ferry_migrator::update::FLUSH_GRACE,
        )
        .await;
    }
    if let Some(s) = server {
        s.stop().await;
    }
    code
}

async fn one_job(jobs: &Jobs, config: &MigratorConfig) -> ExitCode {
    let id = match jobs.start(config.job_spec()) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("ferry migrate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = tokio::select! {
        o = jobs.wait(&id) => o,
        () = crate::wait_for_signal() => {
            eprintln!("ferry migrate: stopping at the next checkpoint (a rerun resumes)");
            let _ = jobs.cancel(&id);
            jobs.wait(&id).await
        }
    };
    let report = match outcome {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            eprintln!("ferry migrate: {e}");
            return ExitCode::FAILURE;
        }
        None => return ExitCode::FAILURE,
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
        .filter(|t| t.phase != Phase::Done)
        .count();
    if failed == 0 {
        println!("ferry migrate: {} tables done", report.tables.len());
        ExitCode::SUCCESS
    } else {
        println!(
            "ferry migrate: {failed} of {} tables not done",
            report.tables.len()
        );
        ExitCode::FAILURE
    }
}
