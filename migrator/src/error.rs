//! Errors, one enum per operation.

use std::path::PathBuf;
use std::sync::Arc;

use crate::schema::Difference;

/// Reading origin's schema or changing target's.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    #[error("schema query {cql:?} failed: {error}")]
    Query { cql: String, error: String },
    #[error("DDL {cql:?} failed on target: {error}")]
    Ddl { cql: String, error: String },
    #[error("table {0} does not exist on origin")]
    NoSuchTable(String),
    #[error("table {0} does not exist on target")]
    MissingOnTarget(String),
    #[error("table {table}: column {column} has kind {kind:?}, which the migrator does not know")]
    UnknownColumnKind {
        table: String,
        column: String,
        kind: String,
    },
    #[error("target's {table} is incompatible with origin's ({} differences): {}", differences.len(), list(differences))]
    Incompatible {
        table: String,
        differences: Vec<Difference>,
    },
}

fn list(ds: &[Difference]) -> String {
    ds.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reading or writing a file of the job directory.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
#[non_exhaustive]
pub struct JobFileError {
    /// What was being done ("cannot append to", "line 3 of" …).
    pub what: String,
    pub path: PathBuf,
    pub source: Arc<std::io::Error>,
}

impl JobFileError {
    pub(crate) fn new(what: impl Into<String>, path: &std::path::Path, e: std::io::Error) -> Self {
        Self {
            what: what.into(),
            path: path.to_path_buf(),
            source: Arc::new(e),
        }
    }
}

/// Planning a table's token ranges.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("reading size estimates of {table} failed: {error}")]
    SizeEstimates { table: String, error: String },
    #[error(transparent)]
    File(#[from] JobFileError),
    #[error("plan file {} is corrupt at line {line}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Copying one token range.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// A scan page or a write kept failing with retryable errors.
    #[error(
        "range #{range} ({start}, {end}] failed {attempts} times in a row at token > {position}: {last_error}"
    )]
    Exhausted {
        range: u32,
        start: i64,
        end: i64,
        position: i64,
        attempts: u32,
        last_error: String,
    },
    /// An error that retrying cannot fix (invalid statement, type mismatch …).
    #[error("range #{range} ({start}, {end}]: {error}")]
    Fatal {
        range: u32,
        start: i64,
        end: i64,
        error: String,
    },
    #[error(transparent)]
    Checkpoint(#[from] JobFileError),
    /// The job was cancelled; the range's checkpoints say where a rerun continues.
    #[error("range #{range}: cancelled")]
    Cancelled { range: u32 },
}

/// Why a table ended FAILED.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error(transparent)]
    File(#[from] JobFileError),
    #[error(
        "{0} is a counter table: counters cannot keep their timestamps, so they are copied only in the explicit counters mode (--counters)"
    )]
    CountersRefused(String),
    #[error("validation: {done} of {total} ranges are recorded as done")]
    Incomplete { done: u32, total: u32 },
}

/// Why a job could not run at all.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    #[error(transparent)]
    Invalid(#[from] crate::job::InvalidJob),
    #[error("cannot connect to {cluster} ({contact_points}): {error}")]
    Connect {
        cluster: &'static str,
        contact_points: String,
        error: String,
    },
    #[error("TLS to {cluster} cannot be set up: {error}")]
    Tls {
        cluster: &'static str,
        error: String,
    },
    #[error("selecting tables on origin: {0}")]
    Select(SchemaError),
    #[error("no table on origin matches the selection ({0})")]
    NothingSelected(String),
    #[error(transparent)]
    File(#[from] JobFileError),
}
