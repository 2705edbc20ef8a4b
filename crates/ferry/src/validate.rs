//! `ferry validate`: the same cluster and table flags as `ferry migrate`, plus repair and
//! report options; counts per table and kind on stdout, the differing keys in JSONL files.
//! Exit code 0 (every table compared, nothing left different), 1 (differences remain, or a
//! table could not be compared) or 64 (bad arguments).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use ferry_migrator::config::MigratorConfig;
use ferry_migrator::update::Purpose;
use ferry_migrator::{DiffKind, JobError, LogObserver, ValidateOptions};

use crate::EXIT_BAD_CONFIG;
use crate::migrate::JobArgs;

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) job: JobArgs,
    /// Rewrite origin's cells on target for every difference, with their writetime and TTL.
    #[arg(long)]
    repair: bool,
    /// With --repair: delete rows only target has, with a tombstone just below the floor
    /// timestamp (--floor-timestamp: the start of dual writes), so no dual write is deleted.
    #[arg(long)]
    delete_extra: bool,
    /// One JSONL file of differing keys for every table (default:
    /// JOB_DIR/validate/KS.TABLE.jsonl).
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Differing keys listed per table; the counts are always complete.
    #[arg(long, default_value_t = 10_000)]
    max_keys: usize,
    /// Remaining TTLs this many seconds apart count as equal.
    #[arg(long, default_value_t = 5)]
    ttl_tolerance_seconds: u64,
}

impl ValidateArgs {
    /// The configuration, or every problem (printed; exit 64): the job's and, so that one run
    /// lists everything, the validation options' (those that need the floor timestamp only
    /// when it was given as a flag).
    pub(crate) fn load(&self) -> Result<MigratorConfig, ExitCode> {
        self.job
            .load_with("ferry validate", &[], true)
            .inspect_err(|_| {
                let floor = self.job.floor_flag().unwrap_or(1);
                for p in self.options().problems(floor) {
                    eprintln!("  - {p}");
                }
            })
    }

    fn options(&self) -> ValidateOptions {
        let mut options = ValidateOptions::default();
        options.repair = self.repair;
        options.delete_extra = self.delete_extra;
        options.report = self.report.clone();
        options.max_keys = self.max_keys;
        options.ttl_tolerance = Duration::from_secs(self.ttl_tolerance_seconds);
        options
    }
}

pub(crate) async fn run(args: ValidateArgs, config: MigratorConfig) -> ExitCode {
    let bad = |problems: Vec<String>| {
        eprintln!("ferry validate: invalid arguments:");
        for p in problems {
            eprintln!("  - {p}");
        }
        ExitCode::from(EXIT_BAD_CONFIG)
    };
    let options = args.options();
    let problems = options.problems(config.floor_timestamp);
    if !problems.is_empty() {
        return bad(problems);
    }
    let spec = config.job_spec();
    // The proxies hear each table's result (their cutover check waits for it). As a `validate`
    // peer it connects beside a serving migrator without displacing it, and gets no requests
    // (an older proxy may still send some: repairs are carried out, re-migrations refused).
    let link = match ferry_migrator::update::Link::start(
        &config,
        Purpose::Validate,
        false,
        Arc::new(LogObserver),
    ) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("ferry validate: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Some(link) = &link {
        link.answer(None);
    }
    let outcome = ferry_migrator::validate(spec, options, Arc::new(LogObserver)).await;
    if let (Some(link), Ok(report)) = (&link, &outcome) {
        link.validated(report);
    }
    if let Some(link) = link {
        link.finish(
            ferry_migrator::update::REPAIR_GRACE,
            ferry_migrator::update::FLUSH_GRACE,
        )
        .await;
    }
    let report = match outcome {
        Ok(r) => r,
        Err(JobError::Invalid(e)) => return bad(e.problems),
        Err(e) => {
            eprintln!("ferry validate: {e}");
            return ExitCode::FAILURE;
        }
    };
    for t in &report.tables {
        let kinds: Vec<String> = DiffKind::ALL
            .iter()
            .map(|k| format!("{k} {}", t.differences.get(*k)))
            .collect();
        let mut line = format!(
            "{}: {} keys compared, {} differ ({}), {} cleared by the re-check",
            t.table,
            t.rows,
            t.keys,
            kinds.join(", "),
            t.cleared
        );
        if args.repair {
            line.push_str(&format!(
                "; repaired {}, remaining {}",
                t.repaired, t.remaining
            ));
        }
        if t.listed > 0 {
            line.push_str(&format!(
                "; keys in {} ({} lines)",
                t.keys_file.display(),
                t.listed
            ));
        }
        if let Some(e) = &t.error {
            line.push_str(&format!("; INCOMPLETE: {e}"));
        }
        println!("{line}");
    }
    let unclean = report.tables.iter().filter(|t| !t.is_clean()).count();
    if unclean == 0 {
        println!(
            "ferry validate: {} tables equal on origin and target",
            report.tables.len()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "ferry validate: {unclean} of {} tables differ or could not be compared",
            report.tables.len()
        );
        ExitCode::FAILURE
    }
}
