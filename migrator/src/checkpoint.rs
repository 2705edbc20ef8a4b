//! Resume: an append-only, fsynced log per table of what is written on target.
//!
//! Lines are `done R` (range R is complete) and `at R T` (in range R every partition with a
//! token below T is complete; resume with `token(pk) > T - 1`). A line is appended only after
//! the writes it describes were acknowledged, and the file is fsynced before the scan goes
//! on, so after `kill -9` the log never claims more than target has. A torn last line (the
//! process died mid-append) is dropped and cut off when the log is reopened.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::JobFileError;

/// What a previous run finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub done: BTreeSet<u32>,
    /// Range → the token from which the range must be scanned again (inclusive).
    pub resume_from: BTreeMap<u32, i64>,
}

/// The open log of one table.
#[derive(Debug, Clone)]
pub struct CheckpointLog {
    path: PathBuf,
    /// Appends from the range workers, one at a time.
    file: Arc<Mutex<File>>,
}

impl CheckpointLog {
    /// Opens (creating) the log at `path` and reads what it records.
    pub fn open(path: &Path) -> Result<(Self, Progress), JobFileError> {
        let err = |what: &str, e| JobFileError::new(what, path, e);
        let text = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err("cannot read checkpoint log", e)),
        };
        // Only whole lines count: the bytes after the last newline are a torn append.
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut progress = Progress::default();
        for (i, line) in String::from_utf8_lossy(&text[..whole]).lines().enumerate() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["done", r] => {
                    let r = parse(path, i, r)?;
                    progress.done.insert(r);
                    progress.resume_from.remove(&r);
                }
                ["at", r, t] => {
                    let r = parse(path, i, r)?;
                    let t = parse(path, i, t)?;
                    if !progress.done.contains(&r) {
                        progress.resume_from.insert(r, t);
                    }
                }
                _ => {
                    return Err(err(
                        &format!("line {} is not a checkpoint ({line:?}) in", i + 1),
                        std::io::Error::from(std::io::ErrorKind::InvalidData),
                    ));
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| err("cannot open checkpoint log", e))?;
        if whole < text.len() {
            file.set_len(whole as u64)
                .map_err(|e| err("cannot cut the torn line of", e))?;
        }
        Ok((
            Self {
                path: path.to_path_buf(),
                file: Arc::new(Mutex::new(file)),
            },
            progress,
        ))
    }

    /// Records that range `range` is complete.
    pub async fn range_done(&self, range: u32) -> Result<(), JobFileError> {
        self.append(format!("done {range}\n")).await
    }

    /// Records that every partition of `range` with a token below `token` is written.
    pub async fn resume_point(&self, range: u32, token: i64) -> Result<(), JobFileError> {
        self.append(format!("at {range} {token}\n")).await
    }

    async fn append(&self, line: String) -> Result<(), JobFileError> {
        let file = self.file.clone();
        let path = self.path.clone();
        // fsync blocks for milliseconds: off the async workers.
        let joined = tokio::task::spawn_blocking(move || {
            let mut f = file
                .lock()
                .map_err(|_| std::io::Error::other("checkpoint lock poisoned"))?;
            f.write_all(line.as_bytes())?;
            f.sync_data()
        })
        .await;
        match joined {
            Ok(r) => r.map_err(|e| JobFileError::new("cannot append to", &path, e)),
            Err(e) => Err(JobFileError::new(
                "cannot append to",
                &path,
                std::io::Error::other(e.to_string()),
            )),
        }
    }
}

fn parse<T: std::str::FromStr>(path: &Path, line: usize, s: &str) -> Result<T, JobFileError> {
    s.parse().map_err(|_| {
        JobFileError::new(
            format!("line {}: {s:?} is not a number in", line + 1),
            path,
            std::io::Error::from(std::io::ErrorKind::InvalidData),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_reopen_and_torn_lines_are_cut() {
        let dir = std::env::temp_dir().join(format!("ferry-ckpt-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("t.progress");
        let _ = std::fs::remove_file(&path);
        let (log, p) = CheckpointLog::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p, Progress::default());
        log.resume_point(3, -17)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        log.resume_point(4, 5)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        log.range_done(4).await.unwrap_or_else(|e| panic!("{e}"));
        drop(log);
        // A crash in the middle of an append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(b"done 3").unwrap_or_else(|e| panic!("{e}"));
        drop(f);
        let (log, p) = CheckpointLog::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.done, BTreeSet::from([4]));
        assert_eq!(p.resume_from, BTreeMap::from([(3, -17)]));
        log.range_done(5).await.unwrap_or_else(|e| panic!("{e}"));
        drop(log);
        let (_, p) = CheckpointLog::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.done, BTreeSet::from([4, 5]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
