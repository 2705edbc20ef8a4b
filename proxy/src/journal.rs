//! The repair journal (`repair_journal`): what the repair log and the Update link hold for the
//! migrator, kept in an append-only file so a proxy restart does not forget it.
//!
//! ```text
//!  RepairLog::target_write_failed ─► Journal::write(Failure) ─► try_send (bounded queue)
//!        queue full ─► overflow counted; the table marked dirty (a Dirty record later)
//!  RepairLog::settle_*  ─► Repaired / TableRepaired     UpdateLink::remigrate ─► Remigrate
//!  UpdateLink: re-migration acknowledged ─► Remigrated
//!                    ▼
//!  writer thread: one JSON line per record ─► flush + fdatasync at most every second, and on
//!                 close ─► compacted when the file passes its bound
//!  Journal::open (start): replay ─► Pending (failures back to the RepairLog, re-migrations
//!                 back to waiting) ─► compact: temp file + rename ─► append from there
//! ```
//!
//! **Format**: JSON lines, one [`Record`] each, tagged by `r`. Each failure and re-migration
//! carries a sequence number (`seq`, from [`crate::repairs::RepairLog::next_seq`]);
//! settlements name the seqs they settle, or a table and the last seq a re-migration covers
//! (`upto`: a table copied again covers every earlier write to it).
//!
//! **Never blocking the client**: a write is answered without waiting for the disk. When the
//! queue is full the record is lost but not the fact: its table goes into a small map (one
//! entry per table) that the writer turns into a `Dirty` record, replayed as a failure without a
//! key, so the table is re-migrated. A lost settlement costs only a repeated repair.
//!
//! **Durability**: the writer flushes and `fdatasync`s at most once a second (and on close), so a
//! crash of the machine loses at most the last second of records; a crash of the process alone
//! loses only what was still queued.
//!
//! **Bounds**: the queue holds [`QUEUE`] records; the file is compacted (rewritten with only
//! what is pending) at start and whenever it grows past [`COMPACT_AT`] and twice its size after
//! the last compaction; compaction keeps the newest `MAX_RECENT` failures with their keys and
//! folds older ones into per-table counts, as the repair log itself does.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::repairs::MAX_RECENT;

/// Records queued for the writer; past it they are counted as overflow. 64k records is a few
/// seconds of a failing target at full load, far more than one second's flush needs.
pub(crate) const QUEUE: usize = 65_536;
/// How often written records reach the disk.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The size past which the file is compacted while running (and twice its compacted size).
pub(crate) const COMPACT_AT: u64 = 64 << 20;
/// Tables marked dirty on overflow, at most: the repair log tracks about as many.
const MAX_DIRTY: usize = 4 * crate::metrics::MAX_TABLES;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub(crate) enum Record {
    /// A best-effort write the target failed (`at_ms`: Unix milliseconds).
    Failure {
        seq: u64,
        table: Option<String>,
        key: Option<Vec<String>>,
        reason: String,
        at_ms: u64,
    },
    /// `n` failures of `table` whose keys are not kept: their records were lost to a full
    /// queue, or compaction folded them. Replayed without keys, so the table is re-migrated.
    Dirty { seq: u64, table: String, n: u64 },
    /// Failures the migrator acknowledged (or refused for good), by seq.
    Repaired { seqs: Vec<u64> },
    /// `table`'s failures up to seq `upto` are dealt with: a re-migration acknowledged, or
    /// nothing can name them.
    TableRepaired { table: String, upto: u64 },
    /// A re-migration of `table` (`keyspace.table`) asked for: waiting or sent.
    Remigrate {
        seq: u64,
        table: String,
        reason: String,
    },
    /// The re-migrations of `table` up to seq `upto` were acknowledged (or refused for good).
    Remigrated { table: String, upto: u64 },
}

impl Record {
    /// The table whose repair is lost if this record is, with its seq.
    fn dirties(&self) -> Option<(&str, u64)> {
        match self {
            Self::Failure { seq, table, .. } => Some((
                table.as_deref().unwrap_or(crate::repairs::UNKNOWN_TABLE),
                *seq,
            )),
            Self::Remigrate { seq, table, .. } => Some((table, *seq)),
            _ => None,
        }
    }
}

/// A journaled failure still pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JournaledFailure {
    pub seq: u64,
    pub table: Option<String>,
    pub key: Option<Vec<String>>,
    pub reason: String,
    pub at_ms: u64,
}

/// What a journal holds that is not settled.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Failures, oldest first (the newest [`MAX_RECENT`] after [`Pending::bounded`]).
    pub failures: Vec<JournaledFailure>,
    /// Failures without a kept key, per table: (newest seq, count).
    pub dirty: BTreeMap<String, (u64, u64)>,
    /// Re-migrations waiting or unacknowledged, per table: (seq, reason), oldest first.
    pub remigrations: Vec<(String, u64, String)>,
    /// The largest seq seen: new ones continue after it.
    pub last_seq: u64,
    /// Lines that could not be read (a torn last line after a crash).
    pub skipped: usize,
}

impl Pending {
    /// Reads a journal's text, settling as it goes.
    pub(crate) fn replay(reader: impl BufRead) -> io::Result<Self> {
        let mut failures: BTreeMap<u64, JournaledFailure> = BTreeMap::new();
        let mut dirty: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        let mut table_upto: HashMap<String, u64> = HashMap::new();
        let mut remig: HashMap<String, (u64, String)> = HashMap::new();
        let mut remig_upto: HashMap<String, u64> = HashMap::new();
        let mut last_seq = 0;
        let mut skipped = 0;
        for line in reader.split(b'\n') {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(record) = serde_json::from_slice::<Record>(&line) else {
                skipped += 1;
                continue;
            };
            match record {
                Record::Failure {
                    seq,
                    table,
                    key,
                    reason,
                    at_ms,
                } => {
                    last_seq = last_seq.max(seq);
                    failures.insert(
                        seq,
                        JournaledFailure {
                            seq,
                            table,
                            key,
                            reason,
                            at_ms,
                        },
                    );
                }
                Record::Dirty { seq, table, n } => {
                    last_seq = last_seq.max(seq);
                    dirty.entry(table).or_default().push((seq, n));
                }
                Record::Repaired { seqs } => {
                    for s in seqs {
                        failures.remove(&s);
                    }
                }
                Record::TableRepaired { table, upto } => {
                    last_seq = last_seq.max(upto);
                    let u = table_upto.entry(table).or_default();
                    *u = (*u).max(upto);
                }
                Record::Remigrate { seq, table, reason } => {
                    last_seq = last_seq.max(seq);
                    let e = remig.entry(table).or_insert((seq, String::new()));
                    if seq >= e.0 {
                        *e = (seq, reason);
                    }
                }
                Record::Remigrated { table, upto } => {
                    last_seq = last_seq.max(upto);
                    let u = remig_upto.entry(table).or_default();
                    *u = (*u).max(upto);
                }
            }
        }
        // Applied at the end: a record lost to a full queue comes back as Dirty later in the
        // file than the settlement that covers it.
        let covered = |table: &str, seq: u64| table_upto.get(table).is_some_and(|u| seq <= *u);
        let failures = failures
            .into_values()
            .filter(|f| {
                let t = f.table.as_deref().unwrap_or(crate::repairs::UNKNOWN_TABLE);
                !covered(t, f.seq)
            })
            .collect();
        let mut folded = BTreeMap::new();
        for (table, parts) in dirty {
            for (seq, n) in parts {
                if !covered(&table, seq) {
                    let e: &mut (u64, u64) = folded.entry(table.clone()).or_default();
                    *e = (e.0.max(seq), e.1 + n);
                }
            }
        }
        let mut remigrations: Vec<(String, u64, String)> = remig
            .into_iter()
            .filter(|(t, (seq, _))| remig_upto.get(t).is_none_or(|u| seq > u))
            .map(|(t, (seq, reason))| (t, seq, reason))
            .collect();
        remigrations.sort_by_key(|r| r.1);
        Ok(Self {
            failures,
            dirty: folded,
            remigrations,
            last_seq,
            skipped,
        })
    }

    /// Keeps the newest [`MAX_RECENT`] failures; older ones become per-table counts.
    pub(crate) fn bounded(mut self) -> Self {
        let excess = self.failures.len().saturating_sub(MAX_RECENT);
        for f in self.failures.drain(..excess) {
            let table = f
                .table
                .unwrap_or_else(|| crate::repairs::UNKNOWN_TABLE.to_owned());
            let e = self.dirty.entry(table).or_default();
            *e = (e.0.max(f.seq), e.1 + 1);
        }
        self
    }

    /// The records that say what is pending, for a compacted file.
    fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .dirty
            .iter()
            .map(|(table, (seq, n))| Record::Dirty {
                seq: *seq,
                table: table.clone(),
                n: *n,
            })
            .collect();
        out.extend(self.failures.iter().map(|f| Record::Failure {
            seq: f.seq,
            table: f.table.clone(),
            key: f.key.clone(),
            reason: f.reason.clone(),
            at_ms: f.at_ms,
        }));
        out.extend(
            self.remigrations
                .iter()
                .map(|(table, seq, reason)| Record::Remigrate {
                    seq: *seq,
                    table: table.clone(),
                    reason: reason.clone(),
                }),
        );
        out
    }
}

/// Why the journal could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("repair_journal {path}: cannot read it: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("repair_journal {path}: cannot write it (or its directory): {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "repair_journal {path}: another process holds {lock}; every proxy instance needs its own \
         journal"
    )]
    Locked { path: PathBuf, lock: PathBuf },
}

enum Command {
    Record(Record),
    Stop,
}

/// Counts for `/status`.
#[derive(Debug, Default)]
pub(crate) struct JournalCounts {
    /// Records the full queue turned away (their tables marked dirty).
    pub overflow: AtomicU64,
    /// Writes, flushes or compactions that failed while running (logged).
    pub write_errors: AtomicU64,
}

/// The open journal: a queue to its writer thread.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    tx: SyncSender<Command>,
    /// Tables whose records the full queue turned away: (newest seq, count).
    dirty: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    counts: Arc<JournalCounts>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// `<path>.lock`, locked while open: two processes appending to one journal would settle
    /// each other's records. A separate file, as compaction replaces the journal's.
    lock: Mutex<Option<File>>,
}

impl Journal {
    /// Replays `path` (absent: empty), compacts it and starts the writer; also returns what
    /// was pending.
    pub(crate) fn open(path: &Path) -> Result<(Self, Pending), JournalError> {
        Self::open_with(path, QUEUE)
    }

    fn open_with(path: &Path, queue: usize) -> Result<(Self, Pending), JournalError> {
        let read = |source| JournalError::Read {
            path: path.to_owned(),
            source,
        };
        let write = |source| JournalError::Write {
            path: path.to_owned(),
            source,
        };
        let lock_path = with_suffix(path, ".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(write)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    path: path.to_owned(),
                    lock: lock_path,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(write(e)),
        }
        let pending = match File::open(path) {
            Ok(f) => Pending::replay(BufReader::new(f)).map_err(read)?.bounded(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Pending::default(),
            Err(e) => return Err(read(e)),
        };
        if pending.skipped > 0 {
            tracing::warn!(
                path = %path.display(),
                lines = pending.skipped,
                "repair journal: skipped unreadable lines (a record torn by a crash); the rest is replayed"
            );
        }
        let file = compact(path, &pending).map_err(write)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, rx) = sync_channel(queue);
        let dirty = Arc::new(Mutex::default());
        let counts = Arc::new(JournalCounts::default());
        let writer = Writer {
            path: path.to_owned(),
            out: BufWriter::new(file),
            size,
            compacted: size,
            unsynced: false,
            dirty: Arc::clone(&dirty),
            counts: Arc::clone(&counts),
        };
        let handle = std::thread::Builder::new()
            .name("repair-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(write)?;
        Ok((
            Self {
                path: path.to_owned(),
                tx,
                dirty,
                counts,
                writer: Mutex::new(Some(handle)),
                lock: Mutex::new(Some(lock)),
            },
            pending,
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn counts(&self) -> &JournalCounts {
        &self.counts
    }

    /// Queues `record`; never waits. A full queue keeps only the fact that its table is dirty.
    pub(crate) fn write(&self, record: Record) {
        match self.tx.try_send(Command::Record(record)) {
            Ok(()) => {}
            Err(
                TrySendError::Full(Command::Record(r))
                | TrySendError::Disconnected(Command::Record(r)),
            ) => {
                self.counts.overflow.fetch_add(1, Ordering::Relaxed);
                if let Some((table, seq)) = r.dirties() {
                    let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
                    if dirty.len() < MAX_DIRTY || dirty.contains_key(table) {
                        let e = dirty.entry(table.to_owned()).or_default();
                        *e = (e.0.max(seq), e.1 + 1);
                    } else {
                        tracing::warn!(%table, "repair journal: too many dirty tables; this one is not recorded");
                    }
                }
            }
            Err(_) => {}
        }
    }

    /// Writes what is queued, syncs, and stops the writer (graceful shutdown).
    pub(crate) fn close(&self) {
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            // Blocking: the writer drains the queue before it reads the stop.
            let _ = self.tx.send(Command::Stop);
            let _ = handle.join();
        }
        // Closing the file releases the lock, so a new log may open the journal.
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Writes `pending` to a temp file beside `path`, syncs it, renames it over `path`, and opens
/// the result for appending.
fn compact(path: &Path, pending: &Pending) -> io::Result<File> {
    let tmp = with_suffix(path, ".tmp");
    {
        let mut out = BufWriter::new(File::create(&tmp)?);
        for r in pending.records() {
            serde_json::to_writer(&mut out, &r)?;
            out.write_all(b"\n")?;
        }
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename itself reaches the disk with the directory; not every platform can sync one.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    OpenOptions::new().append(true).open(path)
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    /// Size right after the last compaction: compaction waits for twice that.
    compacted: u64,
    unsynced: bool,
    dirty: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    counts: Arc<JournalCounts>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Command>) {
        let mut last_sync = Instant::now();
        loop {
            let wait = FLUSH_INTERVAL.saturating_sub(last_sync.elapsed());
            let stop = match rx.recv_timeout(wait) {
                Ok(Command::Record(r)) => {
                    self.append(&r);
                    false
                }
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => true,
                Err(RecvTimeoutError::Timeout) => false,
            };
            self.write_dirty();
            if stop || last_sync.elapsed() >= FLUSH_INTERVAL {
                self.sync();
                last_sync = Instant::now();
                if self.size > COMPACT_AT.max(2 * self.compacted) {
                    self.compact();
                }
            }
            if stop {
                return;
            }
        }
    }

    fn append(&mut self, record: &Record) {
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                self.failed("encode", &e);
                return;
            }
        };
        line.push(b'\n');
        match self.out.write_all(&line) {
            Ok(()) => {
                self.size += line.len() as u64;
                self.unsynced = true;
            }
            Err(e) => self.failed("write", &e),
        }
    }

    fn write_dirty(&mut self) {
        let dirty: Vec<(String, (u64, u64))> = self
            .dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (table, (seq, n)) in dirty {
            self.append(&Record::Dirty { seq, table, n });
        }
    }

    fn sync(&mut self) {
        if !self.unsynced {
            return;
        }
        let result = self
            .out
            .flush()
            .and_then(|()| self.out.get_ref().sync_data());
        match result {
            Ok(()) => self.unsynced = false,
            Err(e) => self.failed("sync", &e),
        }
    }

    fn compact(&mut self) {
        let result = File::open(&self.path)
            .and_then(|f| Pending::replay(BufReader::new(f)))
            .and_then(|p| compact(&self.path, &p.bounded()));
        match result {
            Ok(file) => {
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.compacted = self.size;
                self.out = BufWriter::new(file);
                tracing::info!(path = %self.path.display(), bytes = self.size, "repair journal compacted");
            }
            Err(e) => {
                // Still appending to the old file: nothing is lost, it only grows.
                self.compacted = self.size;
                self.failed("compact", &e);
            }
        }
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        let n = self.counts.write_errors.fetch_add(1, Ordering::Relaxed);
        // The first of a run of failures (a full disk fails every write) is enough to act on.
        if n.is_power_of_two() || n == 0 {
            tracing::error!(path = %self.path.display(), error = %e, failures = n + 1, "repair journal: cannot {what}; repairs are kept in memory only until it works again");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn failure(seq: u64, table: &str, key: Option<&str>) -> Record {
        Record::Failure {
            seq,
            table: Some(table.into()),
            key: key.map(|k| vec![k.to_owned()]),
            reason: "overloaded".into(),
            at_ms: 1,
        }
    }

    fn replay(records: &[Record]) -> Pending {
        let mut text = Vec::new();
        for r in records {
            serde_json::to_writer(&mut text, r).unwrap();
            text.push(b'\n');
        }
        Pending::replay(&text[..]).unwrap()
    }

    #[test]
    fn settlements_by_seq_and_by_table_watermark() {
        let p = replay(&[
            failure(1, "ks.t", Some("1")),
            failure(2, "ks.t", Some("2")),
            failure(3, "ks.u", None),
            Record::Repaired { seqs: vec![1] },
            Record::TableRepaired {
                table: "ks.u".into(),
                upto: 3,
            },
            failure(4, "ks.u", None),
            // Lost to a full queue before the table's re-migration: covered by it.
            Record::Dirty {
                seq: 3,
                table: "ks.u".into(),
                n: 1,
            },
            Record::Dirty {
                seq: 5,
                table: "ks.v".into(),
                n: 2,
            },
            Record::Remigrate {
                seq: 6,
                table: "ks.t".into(),
                reason: "ALTER".into(),
            },
            Record::Remigrate {
                seq: 7,
                table: "ks.w".into(),
                reason: "ALTER".into(),
            },
            Record::Remigrated {
                table: "ks.w".into(),
                upto: 7,
            },
        ]);
        let seqs: Vec<u64> = p.failures.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, [2, 4]);
        assert_eq!(p.dirty, BTreeMap::from([("ks.v".to_owned(), (5, 2))]));
        assert_eq!(p.remigrations, [("ks.t".to_owned(), 6, "ALTER".to_owned())]);
        assert_eq!(p.last_seq, 7);
        assert_eq!(p.skipped, 0);
    }

    #[test]
    fn compaction_keeps_only_what_is_pending() {
        let dir = test_dir("compact");
        let path = dir.join("journal");
        {
            let (j, p) = Journal::open(&path).unwrap();
            assert_eq!(p, Pending::default());
            for s in 1..=100 {
                j.write(failure(s, "ks.t", Some(&s.to_string())));
            }
            j.write(Record::Repaired {
                seqs: (1..=99).collect(),
            });
            j.close();
        }
        let before = std::fs::metadata(&path).unwrap().len();
        let (j, p) = Journal::open(&path).unwrap();
        assert_eq!(p.failures.len(), 1);
        assert_eq!(p.failures[0].key, Some(vec!["100".to_owned()]));
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after < before / 50, "{after} of {before}");
        drop(j);
        assert!(!dir.join("journal.tmp").exists());
    }

    #[test]
    fn a_full_queue_marks_the_table_dirty() {
        let dir = test_dir("overflow");
        let path = dir.join("journal");
        let (j, _) = Journal::open_with(&path, 1).unwrap();
        // Far faster than the writer encodes and writes them one at a time: some are turned
        // away (the writer would have to take each before the next is offered).
        for s in 1..=20_000 {
            j.write(failure(s, "ks.t", Some("k")));
        }
        let overflow = j.counts().overflow.load(Ordering::Relaxed);
        j.close();
        let (_, p) = Journal::open(&path).unwrap();
        let kept = p.failures.len() as u64;
        let dirty = p.dirty.get("ks.t").map_or(0, |d| d.1);
        assert!(overflow > 0, "the writer kept up with 20,000 records");
        assert_eq!(kept + dirty, 20_000, "kept {kept}, dirty {dirty}");
    }

    #[test]
    fn bounded_folds_the_oldest_into_counts() {
        let p = Pending {
            failures: (1..=MAX_RECENT as u64 + 3)
                .map(|seq| JournaledFailure {
                    seq,
                    table: Some("ks.t".into()),
                    key: None,
                    reason: String::new(),
                    at_ms: 0,
                })
                .collect(),
            ..Pending::default()
        }
        .bounded();
        assert_eq!(p.failures.len(), MAX_RECENT);
        assert_eq!(p.failures[0].seq, 4);
        assert_eq!(p.dirty["ks.t"], (3, 3));
    }

    #[test]
    fn a_journal_open_in_one_log_is_refused_to_another() {
        let dir = test_dir("locked");
        let path = dir.join("journal");
        let (first, _) = Journal::open(&path).unwrap();
        let e = Journal::open(&path).unwrap_err();
        assert!(matches!(e, JournalError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("journal.lock"), "{e}");
        first.close();
        assert!(Journal::open(&path).is_ok());
    }

    #[test]
    fn an_unwritable_path_is_an_error_that_names_it() {
        let dir = test_dir("unwritable");
        let path = dir.join("no-such-dir").join("journal");
        let e = Journal::open(&path).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("no-such-dir/journal"), "{text}");
        assert!(text.starts_with("repair_journal "), "{text}");
        // A directory where the file should be cannot be read as one.
        let file = dir.join("dir");
        std::fs::create_dir_all(&file).unwrap();
        let e = Journal::open(&file).unwrap_err();
        assert!(matches!(e, JournalError::Read { .. }), "{e}");
    }

    /// A fresh directory under the target dir's temp area for one test.
    pub(crate) fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferry-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
