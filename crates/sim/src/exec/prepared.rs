//! Prepared statements: ids computed as Cassandra computes them (drivers compare them with their
//! own caches and across nodes), and a bounded per-node cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_cql::response::result::ColumnSpec;
use md5::{Digest, Md5};

/// A statement id: MD5 of the query string, prefixed with the client's keyspace when the query
/// is not fully qualified (Cassandra 4+ `QueryProcessor.computeId`), so the same text prepared
/// in two keyspaces gets two ids.
pub fn statement_id(query: &str, client_keyspace: Option<&str>) -> [u8; 16] {
    let mut md = Md5::new();
    if let Some(ks) = client_keyspace {
        md.update(ks.as_bytes());
    }
    md.update(query.as_bytes());
    md.finalize().into()
}

/// The v5 result metadata id: MD5 over each result column's name and marshal type, as Cassandra's
/// `ResultMetadata.computeResultMetadataId` does. A client holding an old id learns from EXECUTE
/// that the result columns changed (e.g. after `ALTER TABLE … ADD`).
pub fn result_metadata_id(columns: &[ColumnSpec]) -> [u8; 16] {
    let mut md = Md5::new();
    for c in columns {
        md.update(c.name.as_bytes());
        md.update([0]);
        md.update(c.ty.marshal_class_name().as_bytes());
        md.update([0, 0]);
    }
    md.finalize().into()
}

/// A node's prepared statements, bounded: beyond `capacity` entries the least recently used is
/// evicted (a client then gets UNPREPARED and re-prepares, as with Cassandra's cache).
#[derive(Debug)]
pub struct PreparedCache<T> {
    capacity: usize,
    inner: Mutex<CacheInner<T>>,
}

#[derive(Debug)]
struct CacheInner<T> {
    entries: HashMap<[u8; 16], (Arc<T>, u64)>,
    /// Monotonic use counter; the entry with the smallest stamp is evicted first.
    clock: u64,
}

impl<T> PreparedCache<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(CacheInner {
                entries: HashMap::new(),
                clock: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner<T>> {
        // A panic while holding the lock cannot leave the map half-updated (each operation is one
        // insert/remove), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &[u8]) -> Option<Arc<T>> {
        let id: [u8; 16] = id.try_into().ok()?;
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(&id)?;
        entry.1 = now;
        Some(entry.0.clone())
    }

    pub fn insert(&self, id: [u8; 16], statement: Arc<T>) {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&id) {
            // O(n) eviction: the cache is small and preparing is rare next to executing.
            if let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(id, (statement, now));
    }

    /// Forgets every statement (fault injection: "clear the node's prepared cache").
    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_cql::types::ColumnType;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn statement_ids_are_md5_of_keyspace_and_query() {
        // MD5("") and MD5("ksSELECT 1") computed independently with `md5sum`.
        assert_eq!(
            hex(&statement_id("", None)),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            statement_id("SELECT 1", Some("ks")),
            statement_id("ksSELECT 1", None)
        );
        assert_ne!(
            statement_id("SELECT 1", Some("ks")),
            statement_id("SELECT 1", Some("other"))
        );
    }

    #[test]
    fn result_metadata_id_depends_on_names_and_types() {
        let a = [ColumnSpec::new("ks", "t", "v", ColumnType::Int)];
        let b = [ColumnSpec::new("ks", "t", "v", ColumnType::Bigint)];
        let c = [ColumnSpec::new("other", "t2", "v", ColumnType::Int)];
        assert_ne!(result_metadata_id(&a), result_metadata_id(&b));
        assert_eq!(
            result_metadata_id(&a),
            result_metadata_id(&c),
            "keyspace and table do not count"
        );
        assert_eq!(
            hex(&result_metadata_id(&[])),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn cache_is_bounded_and_evicts_the_least_recently_used() {
        let cache = PreparedCache::new(2);
        cache.insert([1; 16], Arc::new("a"));
        cache.insert([2; 16], Arc::new("b"));
        assert!(cache.get(&[1; 16]).is_some());
        cache.insert([3; 16], Arc::new("c"));
        assert!(cache.get(&[2; 16]).is_none(), "2 was least recently used");
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&[9, 9]).is_none(),
            "a malformed id is simply unknown"
        );
        cache.clear();
        assert!(cache.is_empty());
    }
}
