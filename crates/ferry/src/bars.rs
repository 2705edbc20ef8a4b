//! Progress bars for `ferry migrate` on a terminal: one per table (ranges done of planned,
//! rows, rows/s, ETA) and one for the job, drawn by `indicatif`; an [`Observer`] of the core's
//! events like the metrics and the API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use ferry_migrator::{Event, Observer, Phase, TableName};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

const TEMPLATE: &str = "{prefix:>28} [{bar:30}] {pos}/{len} ranges  {msg}  ETA {eta}";

struct TableBar {
    bar: ProgressBar,
    rows: u64,
    started: Instant,
}

/// The bars of one job.
pub(crate) struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    tables: Mutex<HashMap<TableName, TableBar>>,
    rows: Mutex<(u64, Instant)>,
}

impl std::fmt::Debug for Bars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bars")
    }
}

fn style() -> ProgressStyle {
    // The template is a constant: a mistake shows in the first manual run, not at a user's.
    ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn rate(rows: u64, since: Instant) -> String {
    let secs = since.elapsed().as_secs_f64();
    let per_sec = if secs > 0.0 { rows as f64 / secs } else { 0.0 };
    format!("{rows} rows  {per_sec:.0} rows/s")
}

impl Bars {
    pub(crate) fn new() -> Self {
        Self::with(MultiProgress::new())
    }

    /// Bars drawn with `multi`'s others (`ferry demo` keeps its workload line below them).
    pub(crate) fn with(multi: MultiProgress) -> Self {
        let overall = multi.add(ProgressBar::new(0).with_style(style()));
        overall.set_prefix("all tables");
        Self {
            multi,
            overall,
            tables: Mutex::new(HashMap::new()),
            rows: Mutex::new((0, Instant::now())),
        }
    }
}

impl Observer for Bars {
    fn event(&self, event: &Event) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::RangesPlanned {
                table,
                total,
                already_done,
            } => {
                let bar = self
                    .multi
                    .insert_before(&self.overall, ProgressBar::new(u64::from(*total)));
                bar.set_style(style());
                bar.set_prefix(table.to_string());
                bar.set_position(u64::from(*already_done));
                bar.reset_eta();
                self.overall.inc_length(u64::from(*total));
                self.overall.inc(u64::from(*already_done));
                tables.insert(
                    table.clone(),
                    TableBar {
                        bar,
                        rows: 0,
                        started: Instant::now(),
                    },
                );
            }
            Event::Written { table, rows, .. } => {
                if let Some(t) = tables.get_mut(table) {
                    t.rows += rows;
                    t.bar.set_message(rate(t.rows, t.started));
                }
                let mut all = self.rows.lock().unwrap_or_else(|p| p.into_inner());
                all.0 += rows;
                self.overall.set_message(rate(all.0, all.1));
            }
            Event::RangeDone { table, .. } => {
                if let Some(t) = tables.get(table) {
                    t.bar.inc(1);
                }
                self.overall.inc(1);
            }
            Event::Phase { table, phase } => {
                if let Some(t) = tables.get(table) {
                    match phase {
                        Phase::Done => t
                            .bar
                            .finish_with_message(format!("{}  DONE", rate(t.rows, t.started))),
                        Phase::Failed(_) | Phase::Cancelled => {
                            t.bar.abandon_with_message(format!("{phase}"));
                        }
                        _ => {}
                    }
                }
            }
            Event::Warning { table, message } => {
                let _ = self.multi.println(format!("warning: {table}: {message}"));
            }
            _ => {}
        }
    }
}
