//! The demo's sample application: its schema (compound partition keys, clustering order,
//! collections, TTLs, a counter table) and the historical data loaded on origin before the
//! proxy starts, with writetimes a day in the past as a long-running application's would be.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scylla::client::session::Session;
use scylla::errors::{ExecutionError, PrepareError};
use scylla::value::Counter;
use tokio::task::JoinSet;

pub(crate) const KEYSPACE: &str = "ferry_demo";

/// The schema, created on origin and on target (as an operator creates it on target before
/// dual writes start, so the application's writes succeed on both from the first one).
pub(crate) const DDL: &[&str] = &[
    "CREATE KEYSPACE IF NOT EXISTS ferry_demo WITH replication = \
     {'class': 'SimpleStrategy', 'replication_factor': 1}",
    // Collections: a set and a map.
    "CREATE TABLE IF NOT EXISTS ferry_demo.users (id bigint PRIMARY KEY, name text, email text, \
     tags set<text>, prefs map<text, text>)",
    // A compound partition key and a clustering column in descending order.
    "CREATE TABLE IF NOT EXISTS ferry_demo.events (tenant int, day int, seq bigint, kind text, \
     payload text, PRIMARY KEY ((tenant, day), seq)) WITH CLUSTERING ORDER BY (seq DESC)",
    // Every row written with a TTL.
    "CREATE TABLE IF NOT EXISTS ferry_demo.sessions (sid text PRIMARY KEY, user_id bigint, \
     data blob)",
    // Lists, clustered by position.
    "CREATE TABLE IF NOT EXISTS ferry_demo.playlists (user_id bigint, position int, song text, \
     artists list<text>, PRIMARY KEY (user_id, position))",
    "CREATE TABLE IF NOT EXISTS ferry_demo.page_views (page text PRIMARY KEY, views counter)",
];

/// The tables, in the order the migrator copies them.
pub(crate) const TABLES: &[&str] = &["users", "events", "sessions", "playlists", "page_views"];

/// Partitions of `events`: 50 tenants × 20 days.
pub(crate) const EVENT_TENANTS: i32 = 50;
pub(crate) const EVENT_DAYS: i32 = 20;
/// Songs per playlist.
pub(crate) const PLAYLIST_LEN: u64 = 10;
/// TTL of sessions: a week, so none expires during the demo and validation compares them.
pub(crate) const SESSION_TTL: i32 = 7 * 24 * 3600;
/// Statements loading at once.
const LOADERS: usize = 64;

#[derive(Debug, Clone, Copy)]
enum Table {
    Users,
    Events,
    Sessions,
    Playlists,
    PageViews,
}

/// How many historical rows each table gets out of `--rows`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub(crate) users: u64,
    pub(crate) events: u64,
    pub(crate) sessions: u64,
    pub(crate) playlists: u64,
    pub(crate) page_views: u64,
}

impl Sizes {
    /// 35% users, 35% events, 15% sessions, 10% playlist rows, 5% counters; at least one each.
    pub(crate) fn of(rows: u64) -> Self {
        let part = |pct: u64| (rows * pct / 100).max(1);
        Self {
            users: part(35),
            events: part(35),
            sessions: part(15),
            playlists: part(10).max(PLAYLIST_LEN),
            page_views: part(5),
        }
    }

    /// Which table the `i`th historical row belongs to, and its index there.
    fn locate(&self, i: u64) -> (Table, u64) {
        let mut k = i;
        for (table, size) in [
            (Table::Users, self.users),
            (Table::Events, self.events),
            (Table::Sessions, self.sessions),
            (Table::Playlists, self.playlists),
        ] {
            if k < size {
                return (table, k);
            }
            k -= size;
        }
        (Table::PageViews, k)
    }

    pub(crate) fn total(&self) -> u64 {
        self.users + self.events + self.sessions + self.playlists + self.page_views
    }
}

/// Why the schema or the historical data could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LoadError {
    #[error("{what}: {source}")]
    Execute {
        what: String,
        source: ExecutionError,
    },
    #[error("preparing {statement}: {source}")]
    Prepare {
        statement: &'static str,
        source: PrepareError,
    },
    #[error("a loader task failed: {0}")]
    Task(String),
}

/// Creates the schema through `session`.
pub(crate) async fn create_schema(session: &Session) -> Result<(), LoadError> {
    for ddl in DDL {
        session
            .query_unpaged(*ddl, &[])
            .await
            .map_err(|source| LoadError::Execute {
                what: ddl.split('(').next().unwrap_or(ddl).trim().to_owned(),
                source,
            })?;
    }
    Ok(())
}

pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

pub(crate) fn event_key(i: u64) -> (i32, i32, i64) {
    let tenant = i32::try_from(i % EVENT_TENANTS as u64).unwrap_or(0);
    let day = i32::try_from((i / EVENT_TENANTS as u64) % EVENT_DAYS as u64).unwrap_or(0);
    (tenant, day, i64::try_from(i).unwrap_or(i64::MAX))
}

pub(crate) fn user_row(id: u64) -> (String, String, Vec<String>, BTreeMap<String, String>) {
    let tags = (0..id % 4).map(|t| format!("tag{t}")).collect();
    let prefs = BTreeMap::from([
        (
            "lang".to_owned(),
            ["en", "fr", "de"][(id % 3) as usize].to_owned(),
        ),
        (
            "theme".to_owned(),
            if id.is_multiple_of(2) {
                "dark"
            } else {
                "light"
            }
            .to_owned(),
        ),
    ]);
    (
        format!("user {id}"),
        format!("user{id}@example.com"),
        tags,
        prefs,
    )
}

const INSERT_USER: &str = "INSERT INTO ferry_demo.users (id, name, email, tags, prefs) \
                           VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?";
const INSERT_EVENT: &str = "INSERT INTO ferry_demo.events (tenant, day, seq, kind, payload) \
                            VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?";
const INSERT_SESSION: &str = "INSERT INTO ferry_demo.sessions (sid, user_id, data) \
                              VALUES (?, ?, ?) USING TTL ? AND TIMESTAMP ?";
const INSERT_PLAYLIST: &str = "INSERT INTO ferry_demo.playlists (user_id, position, song, \
                               artists) VALUES (?, ?, ?, ?) USING TIMESTAMP ?";
const ADD_VIEWS: &str = "UPDATE ferry_demo.page_views SET views = views + ? WHERE page = ?";

/// Loads the historical rows on origin; `done` counts rows written, for a progress line.
pub(crate) async fn load(
    session: Arc<Session>,
    sizes: Sizes,
    done: Arc<AtomicU64>,
) -> Result<(), LoadError> {
    let prepare = |statement: &'static str| {
        let session = session.clone();
        async move {
            session
                .prepare(statement)
                .await
                .map_err(|source| LoadError::Prepare { statement, source })
        }
    };
    let users = prepare(INSERT_USER).await?;
    let events = prepare(INSERT_EVENT).await?;
    let sessions = prepare(INSERT_SESSION).await?;
    let playlists = prepare(INSERT_PLAYLIST).await?;
    let views = prepare(ADD_VIEWS).await?;
    // A day ago: the application's data predates the migration.
    let base = now_micros() - 86_400_000_000;
    let total = sizes.total();
    let mut tasks = JoinSet::new();
    for worker in 0..LOADERS as u64 {
        let (session, done) = (session.clone(), done.clone());
        let (users, events, sessions, playlists, views) = (
            users.clone(),
            events.clone(),
            sessions.clone(),
            playlists.clone(),
            views.clone(),
        );
        tasks.spawn(async move {
            let mut i = worker;
            while i < total {
                let ts = base + i64::try_from(i).unwrap_or(0);
                let (table, k) = sizes.locate(i);
                let result = match table {
                    Table::Users => {
                        let (name, email, tags, prefs) = user_row(k);
                        let id = i64::try_from(k).unwrap_or(0);
                        session
                            .execute_unpaged(&users, (id, name, email, tags, prefs, ts))
                            .await
                    }
                    Table::Events => {
                        let (tenant, day, seq) = event_key(k);
                        let kind = ["click", "view", "buy"][(k % 3) as usize];
                        let payload = format!("{{\"n\": {k}}}");
                        session
                            .execute_unpaged(&events, (tenant, day, seq, kind, payload, ts))
                            .await
                    }
                    Table::Sessions => {
                        let token = format!("s{k:08}");
                        let user = i64::try_from(k % sizes.users).unwrap_or(0);
                        let data = k.to_be_bytes().to_vec();
                        session
                            .execute_unpaged(&sessions, (token, user, data, SESSION_TTL, ts))
                            .await
                    }
                    Table::Playlists => {
                        let user = i64::try_from(k / PLAYLIST_LEN).unwrap_or(0);
                        let position = i32::try_from(k % PLAYLIST_LEN).unwrap_or(0);
                        let artists: Vec<String> =
                            (0..=k % 3).map(|a| format!("artist {}", k + a)).collect();
                        let song = format!("song {k}");
                        session
                            .execute_unpaged(&playlists, (user, position, song, artists, ts))
                            .await
                    }
                    Table::PageViews => {
                        let amount = Counter(i64::try_from(k % 100 + 1).unwrap_or(1));
                        session
                            .execute_unpaged(&views, (amount, format!("/page/{k}")))
                            .await
                    }
                };
                result.map_err(|source| LoadError::Execute {
                    what: format!("historical row {i}"),
                    source,
                })?;
                done.fetch_add(1, Ordering::Relaxed);
                i += LOADERS as u64;
            }
            Ok::<(), LoadError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| LoadError::Task(e.to_string()))??;
    }
    Ok(())
}

/// Rows per second, for the report.
pub(crate) fn rate(rows: u64, took: Duration) -> f64 {
    let secs = took.as_secs_f64();
    if secs > 0.0 { rows as f64 / secs } else { 0.0 }
}
