//! Planning: cut a table's Murmur3 token ring into ranges, sized from origin's
//! `system.size_estimates` or a fixed count, and keep the plan in the job directory so a rerun
//! scans exactly the same ranges (estimates change between runs; checkpoints name ranges by
//! number).

use std::io::Write;
use std::path::Path;

use scylla::client::session::Session;

use crate::error::{JobFileError, PlanError};
use crate::job::{MAX_RANGES, RangeCount};
use crate::progress::TableName;

/// The smallest Murmur3 token. Cassandra never gives a partition this token (it maps it to
/// the largest), so `(MIN, MAX]` is the whole ring.
pub const MIN_TOKEN: i64 = i64::MIN;
pub const MAX_TOKEN: i64 = i64::MAX;

/// The tokens `(start, end]`, as `token(pk) > start AND token(pk) <= end` selects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRange {
    pub start: i64,
    pub end: i64,
}

impl TokenRange {
    /// Splits at the midpoint; `None` when too narrow to split.
    pub fn halves(self) -> Option<(Self, Self)> {
        let width = i128::from(self.end) - i128::from(self.start);
        if width < 2 {
            return None;
        }
        let mid = (i128::from(self.start) + width / 2) as i64;
        Some((
            Self {
                start: self.start,
                end: mid,
            },
            Self {
                start: mid,
                end: self.end,
            },
        ))
    }
}

/// The whole ring in `n` contiguous ranges of (nearly) equal width, in token order.
pub fn split_ring(n: u32) -> Vec<TokenRange> {
    let n = n.clamp(1, MAX_RANGES);
    let lo = i128::from(MIN_TOKEN);
    let width = i128::from(MAX_TOKEN) - lo;
    let bound = |i: u32| -> i64 {
        if i == n {
            MAX_TOKEN
        } else {
            (lo + width * i128::from(i) / i128::from(n)) as i64
        }
    };
    (0..n)
        .map(|i| TokenRange {
            start: bound(i),
            end: bound(i + 1),
        })
        .collect()
}

/// The table's partition count estimated from the coordinator's `system.size_estimates`:
/// the node lists its own ranges only, so its count is scaled by the share of the ring they
/// cover. `None` when the table has no estimates (new or empty).
pub async fn estimate_partitions(
    session: &Session,
    table: &TableName,
) -> Result<Option<u64>, PlanError> {
    let fail = |e: String| PlanError::SizeEstimates {
        table: table.to_string(),
        error: e,
    };
    let result = session
        .query_unpaged(
            "SELECT range_start, range_end, partitions_count FROM system.size_estimates \
             WHERE keyspace_name = ? AND table_name = ?",
            (&table.keyspace, &table.table),
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
    let rows = result.into_rows_result().map_err(|e| fail(e.to_string()))?;
    let mut covered: u128 = 0;
    let mut partitions: u128 = 0;
    for row in rows
        .rows::<(String, String, Option<i64>)>()
        .map_err(|e| fail(e.to_string()))?
    {
        let (start, end, count) = row.map_err(|e| fail(e.to_string()))?;
        let (Ok(s), Ok(e)) = (start.parse::<i64>(), end.parse::<i64>()) else {
            return Err(fail(format!("range ({start}, {end}] is not two tokens")));
        };
        // A wrapping range (end <= start) covers the ring's end and start.
        let width = (i128::from(e) - i128::from(s)).rem_euclid(1i128 << 64);
        covered += width as u128;
        partitions += u128::from(count.unwrap_or(0).max(0) as u64);
    }
    if covered == 0 || partitions == 0 {
        return Ok(None);
    }
    let total = partitions * (1u128 << 64) / covered;
    Ok(Some(u64::try_from(total).unwrap_or(u64::MAX)))
}

/// How many ranges to cut: fixed, or enough for `partitions_per_range` each, and never fewer
/// than four per scan worker (so the workers stay busy until the end).
pub fn range_count(count: RangeCount, estimate: Option<u64>, scan_parallelism: usize) -> u32 {
    let floor = u32::try_from(scan_parallelism.saturating_mul(4)).unwrap_or(MAX_RANGES);
    match count {
        RangeCount::Fixed(n) => n,
        RangeCount::Auto {
            partitions_per_range,
        } => {
            let wanted = estimate.unwrap_or(0).div_ceil(partitions_per_range.max(1));
            u32::try_from(wanted)
                .unwrap_or(MAX_RANGES)
                .max(floor)
                .min(MAX_RANGES)
        }
    }
}

const PLAN_HEADER: &str = "ferry-plan v1";

/// The plan stored at `path`, or `make()`'s, stored there first (write to a temporary file,
/// fsync, rename: a crash leaves either no plan or a whole one).
pub fn load_or_store(
    path: &Path,
    make: impl FnOnce() -> Vec<TokenRange>,
) -> Result<Vec<TokenRange>, PlanError> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse_plan(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(JobFileError::new("cannot read plan", path, e).into()),
    }
    let ranges = make();
    let mut text = format!("{PLAN_HEADER} {}\n", ranges.len());
    for r in &ranges {
        text.push_str(&format!("{} {}\n", r.start, r.end));
    }
    write_atomically(path, text.as_bytes())?;
    Ok(ranges)
}

fn parse_plan(path: &Path, text: &str) -> Result<Vec<TokenRange>, PlanError> {
    let corrupt = |line: usize, reason: String| PlanError::Corrupt {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let count: usize = header
        .strip_prefix(PLAN_HEADER)
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| corrupt(1, format!("expected \"{PLAN_HEADER} N\", got {header:?}")))?;
    let mut ranges = Vec::with_capacity(count.min(MAX_RANGES as usize));
    for (i, line) in lines.enumerate() {
        let mut parts = line.split(' ').map(str::parse::<i64>);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(Ok(start)), Some(Ok(end)), None) => ranges.push(TokenRange { start, end }),
            _ => return Err(corrupt(i + 2, format!("expected two tokens, got {line:?}"))),
        }
    }
    if ranges.len() != count {
        return Err(corrupt(
            count + 1,
            format!("header says {count} ranges, file has {}", ranges.len()),
        ));
    }
    Ok(ranges)
}

/// Writes `bytes` to `path` so that a crash leaves the old content or the new, never a mix.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), JobFileError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is synced.
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| JobFileError::new("cannot write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_split_is_contiguous_and_complete() {
        for n in [1, 2, 3, 7, 1000] {
            let r = split_ring(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!(r[0].start, MIN_TOKEN);
            assert_eq!(r[r.len() - 1].end, MAX_TOKEN);
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].start < w[0].end);
            }
        }
        assert_eq!(split_ring(2)[0].end, -1);
    }

    #[test]
    fn halves_split_in_order() {
        let (a, b) = TokenRange { start: 0, end: 10 }
            .halves()
            .unwrap_or_else(|| panic!("splittable"));
        assert_eq!((a.start, a.end, b.start, b.end), (0, 5, 5, 10));
        assert_eq!(TokenRange { start: 0, end: 1 }.halves(), None);
        let whole = TokenRange {
            start: MIN_TOKEN,
            end: MAX_TOKEN,
        };
        assert!(whole.halves().is_some());
    }

    #[test]
    fn counts() {
        let auto = RangeCount::Auto {
            partitions_per_range: 100,
        };
        assert_eq!(range_count(auto, Some(10_001), 2), 101);
        assert_eq!(range_count(auto, None, 2), 8);
        assert_eq!(range_count(RangeCount::Fixed(3), Some(1 << 40), 2), 3);
    }

    #[test]
    fn plan_roundtrip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("ferry-plan-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("t.plan");
        let _ = std::fs::remove_file(&path);
        let first = load_or_store(&path, || split_ring(5)).unwrap_or_else(|e| panic!("{e}"));
        // The stored plan wins over a new one.
        let again = load_or_store(&path, || split_ring(9)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, again);
        std::fs::write(&path, "ferry-plan v1 2\n1 2\n").unwrap_or_else(|e| panic!("{e}"));
        let e = load_or_store(&path, Vec::new).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("header says 2 ranges, file has 1")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
