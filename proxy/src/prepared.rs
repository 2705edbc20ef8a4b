//! Prepared statements the proxy has seen: the client knows each by origin's id; EXECUTE and
//! BATCH need the target's id, and routing needs to know what the statement does.
//!
//! Bounded: the least recently used entry goes when the cache is full. A client executing an
//! evicted statement gets UNPREPARED and re-prepares, exactly as with a Cassandra node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::repairs::KeyColumns;
use crate::rewrite::FunctionPlan;
use crate::route::Destination;

/// What the proxy remembers of one prepared statement.
#[derive(Debug)]
pub(crate) struct PreparedEntry {
    /// The statement text, for virtual tables (answered by the proxy) and logs.
    pub text: Arc<str>,
    pub destination: Destination,
    /// `keyspace.table`, for per-table metrics and dual-read comparison.
    pub table: Option<Arc<str>>,
    /// Origin's id, which is what the client uses.
    pub origin_id: Bytes,
    /// Target's id; `None` for statements the proxy answers itself.
    pub target_id: Option<Bytes>,
    pub target_result_metadata_id: Option<Bytes>,
    /// Bind markers the proxy put where `now()` and friends were, filled at each EXECUTE.
    pub plan: Option<FunctionPlan>,
    /// The keyspace unqualified names resolved in when the statement was prepared (v5's
    /// PREPARE keyspace, else the session's): the proxy prepares the statement again in it
    /// when a cluster forgets it.
    pub keyspace: Option<Arc<str>>,
    /// Where the partition key sits among the bound values (data writes, v4+), so a write the
    /// target fails can be repaired by partition.
    pub key_columns: Option<Arc<KeyColumns>>,
    /// Logical clock of the last use, for eviction.
    last_used: AtomicU64,
}

impl PreparedEntry {
    pub(crate) fn new(
        text: Arc<str>,
        destination: Destination,
        table: Option<Arc<str>>,
        origin_id: Bytes,
        target_id: Option<Bytes>,
        target_result_metadata_id: Option<Bytes>,
    ) -> Self {
        Self {
            text,
            destination,
            table,
            origin_id,
            target_id,
            target_result_metadata_id,
            plan: None,
            keyspace: None,
            key_columns: None,
            last_used: AtomicU64::new(0),
        }
    }

    /// The same statement under target's new ids, after the proxy prepared it there again.
    pub(crate) fn with_target(
        &self,
        target_id: Bytes,
        target_result_metadata_id: Option<Bytes>,
    ) -> Self {
        Self {
            text: self.text.clone(),
            destination: self.destination,
            table: self.table.clone(),
            origin_id: self.origin_id.clone(),
            target_id: Some(target_id),
            target_result_metadata_id,
            plan: self.plan.clone(),
            keyspace: self.keyspace.clone(),
            key_columns: self.key_columns.clone(),
            last_used: AtomicU64::new(0),
        }
    }
}

/// How many statements a session keeps at hand ([`Recent`]).
const RECENT: usize = 16;

/// The statements one session executed lately, valid while the proxy-wide cache has not
/// changed (see [`PreparedCache::get_recent`]).
#[derive(Debug, Default)]
pub(crate) struct Recent {
    generation: u64,
    entries: Vec<Arc<PreparedEntry>>,
}

/// The proxy-wide cache, keyed by origin's id.
#[derive(Debug)]
pub(crate) struct PreparedCache {
    capacity: usize,
    clock: AtomicU64,
    /// Bumped by every change of `entries`: sessions' [`Recent`] statements are good while it
    /// stands.
    generation: AtomicU64,
    entries: RwLock<HashMap<Bytes, Arc<PreparedEntry>, IdHashState>>,
    misses: AtomicU64,
}

/// Hashes prepared ids (digests chosen by the cluster) with a multiply-fold keyed per process:
/// SipHash cost more than the rest of the lookup on every EXECUTE, and the random key still
/// keeps a client from choosing statements whose ids collide.
#[derive(Debug, Clone)]
struct IdHashState {
    key: u64,
}

impl IdHashState {
    fn new() -> Self {
        use std::hash::BuildHasher;
        Self {
            key: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1,
        }
    }
}

impl std::hash::BuildHasher for IdHashState {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.key)
    }
}

#[derive(Debug)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word))
                .wrapping_mul(MUL)
                .rotate_left(29);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(MUL).rotate_left(29);
        }
    }

    fn finish(&self) -> u64 {
        // The last multiply's high bits are mixed down: hashbrown takes its bucket from the low
        // bits and its tag from the top seven.
        let h = self.0.wrapping_mul(self.0 >> 32 | 1) ^ self.0;
        h ^ (h >> 31)
    }
}

impl PreparedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            entries: RwLock::new(HashMap::with_hasher(IdHashState::new())),
            misses: AtomicU64::new(0),
        }
    }

    /// Looks a statement up by the id the client sent (a read lock, and a plain store when the
    /// entry's stamp is behind: this is on every EXECUTE).
    pub(crate) fn get(&self, id: &[u8]) -> Option<Arc<PreparedEntry>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let found = entries.get(id).cloned();
        drop(entries);
        match &found {
            Some(e) => self.touch(e),
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
        }
        found
    }

    /// [`PreparedCache::get`] through a session's recent statements: no lock and no reference
    /// count while the statement is among them and the cache has not changed since.
    pub(crate) fn get_recent<'r>(
        &self,
        recent: &'r mut Recent,
        id: &[u8],
    ) -> Option<&'r Arc<PreparedEntry>> {
        let generation = self.generation.load(Ordering::Acquire);
        if recent.generation != generation {
            // Something was prepared, replaced or evicted: what this session holds may be stale.
            recent.entries.clear();
            recent.generation = generation;
        }
        match recent.entries.iter().position(|e| e.origin_id == id) {
            Some(i) => {
                self.touch(&recent.entries[i]);
                Some(&recent.entries[i])
            }
            None => {
                let entry = self.get(id)?;
                if recent.entries.len() >= RECENT {
                    recent.entries.swap_remove(0);
                }
                recent.entries.push(entry);
                recent.entries.last()
            }
        }
    }

    /// Stamps a use of `entry` for eviction. The clock ticks per insert, not per use:
    /// statements used since the last PREPARE share a stamp, which is all eviction needs, and
    /// an execution writes nothing every connection shares unless its stamp is behind.
    fn touch(&self, entry: &PreparedEntry) {
        let now = self.clock.load(Ordering::Relaxed);
        if entry.last_used.load(Ordering::Relaxed) != now {
            entry.last_used.store(now, Ordering::Relaxed);
        }
    }

    pub(crate) fn insert(&self, entry: PreparedEntry) -> Arc<PreparedEntry> {
        entry.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let entry = Arc::new(entry);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&entry.origin_id) {
            // O(n) only when full and a new statement arrives: prepares are rare next to
            // executions, and this keeps `get` lock-light.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(entry.origin_id.clone(), entry.clone());
        // Under the lock: a session that sees the new generation finds the new entry.
        self.generation.fetch_add(1, Ordering::Release);
        entry
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u8) -> PreparedEntry {
        PreparedEntry::new(
            "SELECT 1".into(),
            Destination::Primary,
            None,
            Bytes::from(vec![id]),
            Some(Bytes::from(vec![id, id])),
            None,
        )
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let cache = PreparedCache::new(2);
        cache.insert(entry(1));
        cache.insert(entry(2));
        assert!(cache.get(&[1]).is_some());
        cache.insert(entry(3));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[2]).is_none(), "2 was the least recently used");
        assert!(cache.get(&[1]).is_some());
        assert_eq!(
            cache.get(&[3]).map(|e| e.target_id.clone()),
            Some(Some(Bytes::from_static(&[3, 3])))
        );
        assert_eq!(cache.misses(), 1);
    }

    #[test]
    fn a_sessions_recent_statements_follow_every_change_of_the_cache() {
        let cache = PreparedCache::new(2);
        let mut recent = Recent::default();
        assert!(cache.get_recent(&mut recent, &[1]).is_none());
        cache.insert(entry(1));
        let first = cache.get_recent(&mut recent, &[1]).unwrap().clone();
        let again = cache.get_recent(&mut recent, &[1]).unwrap();
        assert!(Arc::ptr_eq(&first, again), "kept at hand");
        // Target's id changes when the proxy prepares the statement there again.
        let replaced = cache.insert(first.with_target(Bytes::from_static(&[9]), None));
        let found = cache.get_recent(&mut recent, &[1]).unwrap();
        assert!(
            Arc::ptr_eq(&replaced, found),
            "the replaced entry is not served"
        );
        // Uses through `recent` count for eviction.
        cache.insert(entry(2));
        cache.get_recent(&mut recent, &[1]).unwrap();
        cache.insert(entry(3));
        assert!(cache.get(&[2]).is_none(), "2 was the least recently used");
        cache.get_recent(&mut recent, &[2]);
        assert!(
            cache.get_recent(&mut recent, &[1]).is_some()
                && cache.get_recent(&mut recent, &[3]).is_some()
        );
        // Evicted: gone from `recent` too.
        cache.insert(entry(4));
        let held = [1, 3, 4].map(|id| cache.get_recent(&mut recent, &[id]).is_some());
        assert_eq!(held.iter().filter(|h| **h).count(), 2, "{held:?}");
    }

    #[test]
    fn re_preparing_replaces_without_evicting() {
        let cache = PreparedCache::new(1);
        cache.insert(entry(1));
        cache.insert(entry(1));
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&[1]).is_some());
    }
}
