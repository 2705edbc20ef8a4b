//! What a migration job is: which clusters, which tables in which order, and how hard to push
//! ([`JobSpec`]); and where each table stands ([`Phase`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ferry_service::tls::ClusterTlsConfig;

/// How to reach one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterSpec {
    /// `host:port` contact points; the driver discovers the other nodes from them.
    pub contact_points: Vec<String>,
    /// PasswordAuthenticator credentials, when the cluster requires them.
    pub credentials: Option<(String, String)>,
    /// The datacenter to prefer (scans and writes stay in it when set).
    pub local_dc: Option<String>,
    /// The driver's client-side limit per request; a scan page or write past it counts as a
    /// timeout and is retried.
    pub request_timeout: Duration,
    /// TLS to every node; `None` is plain TCP. Node certificates are checked against each node's
    /// IP address (the driver dials the addresses nodes advertise) unless `server_name` is set.
    pub tls: Option<ClusterTlsConfig>,
}

impl ClusterSpec {
    /// A cluster reached through `contact_points`, without credentials or DC preference.
    pub fn new(contact_points: Vec<String>) -> Self {
        Self {
            contact_points,
            credentials: None,
            local_dc: None,
            request_timeout: Duration::from_secs(12),
            tls: None,
        }
    }
}

/// One entry of a table allow- or deny-list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableSelector {
    /// Every table of a keyspace (`ks`).
    Keyspace(String),
    /// One table (`ks.table`).
    Table { keyspace: String, table: String },
    /// `*` / `?` glob patterns on the keyspace and the table name (`ks.user_*`, `*.events`).
    Pattern { keyspace: String, table: String },
}

impl TableSelector {
    /// Parses `ks`, `ks.table` or a pattern with `*` / `?` in either part.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (ks, table) = match s.split_once('.') {
            Some((k, t)) => (k, Some(t)),
            None => (s, None),
        };
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*' || c == '?')
        };
        if !valid(ks) || table.is_some_and(|t| !valid(t)) {
            return Err(format!(
                "table selector {s:?}: expected KEYSPACE, KEYSPACE.TABLE or a pattern with * and ?"
            ));
        }
        let glob = |p: &str| p.contains(['*', '?']);
        Ok(match table {
            None if glob(ks) => Self::Pattern {
                keyspace: ks.to_owned(),
                table: "*".to_owned(),
            },
            None => Self::Keyspace(ks.to_owned()),
            Some(t) if glob(ks) || glob(t) => Self::Pattern {
                keyspace: ks.to_owned(),
                table: t.to_owned(),
            },
            Some(t) => Self::Table {
                keyspace: ks.to_owned(),
                table: t.to_owned(),
            },
        })
    }

    /// Whether `keyspace.table` is selected.
    pub fn matches(&self, keyspace: &str, table: &str) -> bool {
        match self {
            Self::Keyspace(k) => k == keyspace,
            Self::Table {
                keyspace: k,
                table: t,
            } => k == keyspace && t == table,
            Self::Pattern {
                keyspace: k,
                table: t,
            } => glob_match(k, keyspace) && glob_match(t, table),
        }
    }

    /// The keyspace when the selector names exactly one (patterns may name several).
    pub fn keyspace(&self) -> Option<&str> {
        match self {
            Self::Keyspace(k) | Self::Table { keyspace: k, .. } => Some(k),
            Self::Pattern { keyspace, .. } if !keyspace.contains(['*', '?']) => Some(keyspace),
            Self::Pattern { .. } => None,
        }
    }
}

impl fmt::Display for TableSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keyspace(k) => write!(f, "{k}"),
            Self::Table { keyspace, table } | Self::Pattern { keyspace, table } => {
                write!(f, "{keyspace}.{table}")
            }
        }
    }
}

/// `*` matches any run of characters, `?` one character.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// How many token ranges a table's ring is cut into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeCount {
    /// Exactly this many.
    Fixed(u32),
    /// From origin's `system.size_estimates`: about this many partitions per range (at least
    /// enough ranges to keep every scan worker busy).
    Auto { partitions_per_range: u64 },
}

/// What to do with counter tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CountersMode {
    /// A selected counter table fails with a reason naming the `counters` option: counters
    /// cannot be written with timestamps, so copying them must be asked for.
    Refuse,
    /// Add `origin − target` to each target counter cell.
    ApplyDifference,
}

/// Everything a migration job needs. Built by the CLI (and later the config file / HTTP API);
/// [`JobSpec::validate`] lists every problem at once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobSpec {
    pub origin: ClusterSpec,
    pub target: ClusterSpec,
    /// Allow-list, in the order the tables are migrated (a keyspace or pattern expands to its
    /// tables in name order).
    pub tables: Vec<TableSelector>,
    /// Deny-list: tables matching any entry are left out even when the allow-list names them.
    pub exclude: Vec<TableSelector>,
    /// Tables migrated at the same time.
    pub table_parallelism: usize,
    /// Token ranges of one table scanned at the same time.
    pub scan_parallelism: usize,
    pub ranges: RangeCount,
    /// Write requests in flight on target at once, over all tables: one row's writes, or a
    /// batch of rows without lists (at most 10 partitions and 4 KiB, see [`crate::writer`]).
    pub concurrency: usize,
    /// Rows per scan page.
    pub page_size: i32,
    /// Global limit on rows written per second (`None`: unlimited).
    pub max_rows_per_second: Option<u64>,
    /// Global limit on bytes (cell values) written per second (`None`: unlimited).
    pub max_bytes_per_second: Option<u64>,
    /// How often a failing write, or a failing scan page, is retried before giving up.
    pub retries: u32,
    /// First retry pause; doubles per attempt up to [`MAX_BACKOFF`].
    pub retry_backoff: Duration,
    /// Writetime (µs) for what has none: rows without regular cells (primary key only).
    pub floor_timestamp: i64,
    pub counters: CountersMode,
    /// Replication for keyspaces created on target, as a CQL map literal per keyspace
    /// (`{'class': 'NetworkTopologyStrategy', 'dc1': 3}`); default: origin's replication.
    pub replication: BTreeMap<String, String>,
    /// Where the plan, checkpoints and applied DDL live; a rerun with the same directory
    /// resumes.
    pub job_dir: PathBuf,
    /// Prepared write statements kept per table (one per column set shape).
    pub statement_cache: usize,
}

/// Longest pause between two retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Largest accepted `concurrency` (each in-flight write holds a row in memory).
pub const MAX_CONCURRENCY: usize = 4096;
/// Largest accepted range count: the plan and checkpoint files stay small.
pub const MAX_RANGES: u32 = 1 << 20;

impl JobSpec {
    /// A job with the defaults: ranges from size estimates, 64 writes in flight, no rate limit,
    /// 5 retries, floor timestamp 0 (see [`crate`] docs), counters refused.
    pub fn new(origin: ClusterSpec, target: ClusterSpec, tables: Vec<TableSelector>) -> Self {
        Self {
            origin,
            target,
            tables,
            exclude: Vec::new(),
            table_parallelism: 1,
            scan_parallelism: 4,
            ranges: RangeCount::Auto {
                partitions_per_range: 50_000,
            },
            concurrency: 64,
            page_size: 1_000,
            max_rows_per_second: None,
            max_bytes_per_second: None,
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            floor_timestamp: 0,
            counters: CountersMode::Refuse,
            replication: BTreeMap::new(),
            job_dir: PathBuf::from("ferry-job"),
            statement_cache: 256,
        }
    }

    /// Every problem with the spec, or `Ok`.
    pub fn validate(&self) -> Result<(), InvalidJob> {
        let mut problems = Vec::new();
        for (name, c) in [("origin", &self.origin), ("target", &self.target)] {
            if c.contact_points.is_empty() {
                problems.push(format!("{name}: no contact points"));
            }
            if c.request_timeout.is_zero() {
                problems.push(format!("{name}: request timeout must be above 0"));
            }
        }
        if self.tables.is_empty() {
            problems.push("no tables selected".to_owned());
        }
        let range = |n: usize, what: &str, max: usize, problems: &mut Vec<String>| {
            if n == 0 || n > max {
                problems.push(format!("{what} must be 1..={max} (got {n})"));
            }
        };
        range(
            self.table_parallelism,
            "table parallelism",
            64,
            &mut problems,
        );
        range(
            self.scan_parallelism,
            "scan parallelism",
            1024,
            &mut problems,
        );
        range(
            self.concurrency,
            "concurrency",
            MAX_CONCURRENCY,
            &mut problems,
        );
        range(
            self.statement_cache,
            "statement cache",
            65_536,
            &mut problems,
        );
        if !(1..=100_000).contains(&self.page_size) {
            problems.push(format!(
                "page size must be 1..=100000 (got {})",
                self.page_size
            ));
        }
        match self.ranges {
            RangeCount::Fixed(n) if n == 0 || n > MAX_RANGES => {
                problems.push(format!("range count must be 1..={MAX_RANGES} (got {n})"));
            }
            RangeCount::Auto {
                partitions_per_range: 0,
            } => problems.push("partitions per range must be above 0".to_owned()),
            _ => {}
        }
        if self.max_rows_per_second == Some(0) {
            problems.push("rows/s limit must be above 0 (leave it out for no limit)".to_owned());
        }
        if self.max_bytes_per_second == Some(0) {
            problems.push("bytes/s limit must be above 0 (leave it out for no limit)".to_owned());
        }
        if self.retries > 100 {
            problems.push(format!("retries must be 0..=100 (got {})", self.retries));
        }
        if self.floor_timestamp < 0 {
            problems.push(format!(
                "floor timestamp must be >= 0 µs (got {})",
                self.floor_timestamp
            ));
        }
        if self.job_dir.as_os_str().is_empty() {
            problems.push("job directory must not be empty".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidJob { problems })
        }
    }

    /// The pause before retry number `attempt` (1-based): doubling, capped.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.retry_backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

/// Why a [`JobSpec`] cannot run: every problem found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid job ({} problems): {}", problems.len(), problems.join("; "))]
#[non_exhaustive]
pub struct InvalidJob {
    pub problems: Vec<String>,
}

/// Where a table is in its migration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Reading origin's schema, creating or checking target's.
    Schema,
    /// Copying the data range by range.
    Backfill,
    /// Checking that every range of the plan was copied.
    Validating,
    Done,
    /// Stopped by [`crate::Cancel`] at a checkpoint; a rerun resumes.
    Cancelled,
    /// Stopped, with the reason (the range that kept failing, the schema differences …).
    Failed(String),
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Schema => f.write_str("SCHEMA"),
            Self::Backfill => f.write_str("BACKFILL"),
            Self::Validating => f.write_str("VALIDATING"),
            Self::Done => f.write_str("DONE"),
            Self::Cancelled => f.write_str("CANCELLED"),
            Self::Failed(reason) => write!(f, "FAILED({reason})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match() {
        let t = TableSelector::parse("ks.users").unwrap_or_else(|e| panic!("{e}"));
        assert!(t.matches("ks", "users"));
        assert!(!t.matches("ks", "users2"));
        let k = TableSelector::parse("ks").unwrap_or_else(|e| panic!("{e}"));
        assert!(k.matches("ks", "anything"));
        assert!(!k.matches("ks2", "anything"));
        let p = TableSelector::parse("k?.user_*").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.matches("ks", "user_events"));
        assert!(p.matches("kx", "user_"));
        assert!(!p.matches("ks", "users"));
        assert!(!p.matches("kss", "user_a"));
        assert_eq!(p.keyspace(), None);
        assert!(TableSelector::parse("ks.").is_err());
        assert!(TableSelector::parse("a b").is_err());
    }

    #[test]
    fn glob_backtracks() {
        assert!(glob_match("*a*b", "xxaxxab"));
        assert!(!glob_match("*a*b", "xxaxxa"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
    }

    #[test]
    fn validate_lists_every_problem() {
        let mut spec = JobSpec::new(ClusterSpec::new(vec![]), ClusterSpec::new(vec![]), vec![]);
        spec.concurrency = 0;
        spec.page_size = 0;
        let e = spec.validate().err().map(|e| e.problems.len());
        assert_eq!(e, Some(5));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let spec = JobSpec::new(ClusterSpec::new(vec![]), ClusterSpec::new(vec![]), vec![]);
        assert_eq!(spec.backoff(1), Duration::from_millis(100));
        assert_eq!(spec.backoff(3), Duration::from_millis(400));
        assert_eq!(spec.backoff(30), MAX_BACKOFF);
    }
}
