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

/// The proxy-wide cache, keyed by origin's id.
#[derive(Debug)]
pub(crate) struct PreparedCache {
    capacity: usize,
    clock: AtomicU64,
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
            entries: RwLock::new(HashMap::with_hasher(IdHashState::new())),
            misses: AtomicU64::new(0),
        }
    }

    /// Looks a statement up by the id the client sent (a read lock and an atomic store: this is
    /// on every EXECUTE).
    pub(crate) fn get(&self, id: &[u8]) -> Option<Arc<PreparedEntry>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let found = entries.get(id).cloned();
        drop(entries);
        match &found {
            Some(e) => e.last_used.store(
                self.clock.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            ),
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
        }
        found
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
    fn re_preparing_replaces_without_evicting() {
        let cache = PreparedCache::new(1);
        cache.insert(entry(1));
        cache.insert(entry(1));
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&[1]).is_some());
    }
}
