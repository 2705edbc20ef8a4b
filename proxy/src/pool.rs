//! Backend connections shared by client sessions whose handshakes are identical
//! (`share_backend_connections`).
//!
//! A client connection's own pair of backend connections carries one client's requests, so
//! every batch of requests costs a write per cluster per client. Sessions with the same
//! [`Shape`] — protocol version, STARTUP body (options, compression), what each cluster was
//! logged in with, and the two nodes — can send their requests over one shared pair instead:
//! batches of several sessions that run in one scheduler pass leave in one write, and their
//! answers arrive in one read.
//!
//! What stays on a session's own pair (opened by its handshake, kept for its lifetime):
//! - the handshake itself, PREPARE and re-prepares (prepared ids are per node, and the shape
//!   pins both pairs to the same nodes);
//! - `USE`, and every request after it: the keyspace is connection state. A session that
//!   sends `USE` leaves the shared pair for good;
//! - `REGISTER`: events reach the session that asked, on the connection it asked on.
//!
//! A shared connection that dies fails what was in flight on it (each client gets an error,
//! as with its own connection) and is not used again; its members go on over their own pairs,
//! and the next session of the shape opens a fresh pair. The last member leaving closes the
//! pair.
//!
//! **Layout**: [`Shape`] and [`Login`] (the key), [`Pool`] (shape → [`Entry`], weakly held),
//! [`Entry`] (what members hold: the pair once open), `open` (replays the handshake).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use ferry_cql::Compression;
use ferry_cql::envelope::{BodyExtensions, Envelope};
use ferry_cql::message::Request;
use ferry_cql::protocol::{Direction, Opcode, ProtocolVersion};
use ferry_cql::request::{AuthResponse, Startup};

use crate::backend::{Backend, BackendOptions, MAX_STREAMS};
use crate::completion::EventRoute;
use crate::proxy::Context;

/// How a cluster took a session's login.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Login {
    /// It asked for none.
    None,
    /// The proxy's own credentials (`origin`/`target` `username`/`password`).
    Proxy,
    /// The client's one AUTH_RESPONSE (its body, uncompressed), answered by AUTH_SUCCESS.
    /// Kept only while sessions of the shape live; never logged.
    Client(Bytes),
}

/// What makes two sessions' backend connections interchangeable.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    pub version: ProtocolVersion,
    /// The connection's compression (v3/v4 bodies, v5 segments).
    pub compression: Option<Compression>,
    /// The client's STARTUP options that change what a cluster does ([`shape_options`]).
    pub options: Vec<(String, String)>,
    /// The nodes of the session's own pair, by [`ClusterId::index`].
    pub addrs: [SocketAddr; 2],
    pub logins: [Login; 2],
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No credentials in logs.
        f.debug_struct("Shape")
            .field("version", &self.version)
            .field("compression", &self.compression)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// STARTUP options that only describe the client (shown in Cassandra's
/// `system_views.clients`): a shared connection carries its first member's. Drivers make them
/// differ per session (`SESSION_ID`, `CLIENT_ID`) and per connection (the Rust driver's
/// `DRIVER_CONFIG` on its control connection), which would keep every session apart.
const DESCRIPTIVE_OPTIONS: [&str; 7] = [
    "DRIVER_NAME",
    "DRIVER_VERSION",
    "DRIVER_CONFIG",
    "CLIENT_ID",
    "SESSION_ID",
    "APPLICATION_NAME",
    "APPLICATION_VERSION",
];

/// The options of `startup` that decide how a cluster treats the connection (`CQL_VERSION`,
/// `COMPRESSION`, `NO_COMPACT`, `THROW_ON_OVERLOAD`, extensions, anything unknown), sorted:
/// drivers send them from hash maps, in an order that differs between connections.
pub(crate) fn shape_options(startup: &Startup) -> Vec<(String, String)> {
    let mut options: Vec<_> = startup
        .options
        .iter()
        .filter(|(k, _)| !DESCRIPTIVE_OPTIONS.contains(&k.to_ascii_uppercase().as_str()))
        .cloned()
        .collect();
    options.sort_unstable();
    options
}

/// The open shared pairs, by shape.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    entries: Mutex<HashMap<Shape, Weak<Entry>>>,
}

/// One shape's shared pair, held by its member sessions: dropped (closing the pair) with the
/// last of them.
#[derive(Debug)]
pub(crate) struct Entry {
    shape: Shape,
    /// The first member's STARTUP body, replayed to open the pair.
    startup: Bytes,
    pool: Weak<Pool>,
    /// Set once, when the pair is open.
    pair: OnceLock<[Backend; 2]>,
    /// Opening failed: members stay on their own pairs; the next session of the shape makes
    /// a new entry and tries again.
    failed: AtomicBool,
}

impl Pool {
    /// The entry `session` joins for `shape`: the live one, or a new one (then `true`: the
    /// caller opens it with [`open`]).
    pub(crate) fn join(self: &Arc<Self>, shape: Shape, startup: &Bytes) -> (Arc<Entry>, bool) {
        // Dropped after the guard: when its last member left meanwhile, this is the last
        // reference to the replaced entry, whose drop takes the lock.
        let stale: Option<Arc<Entry>>;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&shape).and_then(Weak::upgrade) {
            Some(entry) if entry.usable() => return (entry, false),
            other => stale = other,
        }
        let entry = Arc::new(Entry {
            shape: shape.clone(),
            startup: startup.clone(),
            pool: Arc::downgrade(self),
            pair: OnceLock::new(),
            failed: AtomicBool::new(false),
        });
        entries.insert(shape, Arc::downgrade(&entry));
        drop(entries);
        drop(stale);
        (entry, true)
    }

    /// Shapes with a live entry.
    #[cfg(test)]
    fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.values().filter(|e| e.strong_count() > 0).count()
    }
}

impl Entry {
    /// The pair, while it is open.
    pub(crate) fn pair(&self) -> Option<&[Backend; 2]> {
        self.pair
            .get()
            .filter(|pair| pair.iter().all(Backend::is_open))
    }

    /// Open, or still opening: worth joining.
    fn usable(&self) -> bool {
        match self.pair.get() {
            Some(pair) => pair.iter().all(Backend::is_open),
            None => !self.failed.load(Ordering::Acquire),
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut entries = pool.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Only this entry's own record: a newer entry of the shape may have replaced it.
        if entries
            .get(&self.shape)
            .is_some_and(|e| e.strong_count() == 0)
        {
            entries.remove(&self.shape);
        }
    }
}

/// Opens `entry`'s pair by replaying its shape's handshake on `own`'s nodes with `own`'s
/// settings (one stream id table per connection, as large as the protocol allows). Members
/// use their own pairs until it is open; a failure is logged and leaves them there.
pub(crate) async fn open(ctx: Arc<Context>, entry: Weak<Entry>, own: [BackendOptions; 2]) {
    let Some((shape, startup)) = entry
        .upgrade()
        .map(|e| (e.shape.clone(), e.startup.clone()))
    else {
        return;
    };
    let opened = tokio::join!(
        connect(&ctx, &shape, &startup, own[0].clone()),
        connect(&ctx, &shape, &startup, own[1].clone()),
    );
    let Some(entry) = entry.upgrade() else {
        // Every member left meanwhile: the pair closes with this scope.
        return;
    };
    match opened {
        (Ok(origin), Ok(target)) => {
            let gone = [origin.gone(), target.gone()];
            if entry.pair.set([origin, target]).is_ok() {
                ctx.metrics.shared_pair_opened();
                let metrics = ctx.metrics.clone();
                tokio::spawn(async move {
                    // Counted while both connections live: the last member leaving closes
                    // them, as does a failure.
                    let [origin, target] = gone;
                    tokio::select! {
                        () = origin => {}
                        () = target => {}
                    }
                    metrics.shared_pair_closed();
                });
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot open shared backend connections; clients keep their own");
            entry.failed.store(true, Ordering::Release);
        }
    }
}

/// One shared connection: STARTUP as the client sent it, then the shape's login.
async fn connect(
    ctx: &Context,
    shape: &Shape,
    startup: &Bytes,
    mut opts: BackendOptions,
) -> Result<Backend, String> {
    let cluster = opts.cluster;
    opts.max_in_flight = MAX_STREAMS;
    opts.shared = true;
    let (backend, answer) = Backend::connect(opts, startup.clone(), EventRoute::Drop, None)
        .await
        .map_err(|e| e.to_string())?;
    let login = &shape.logins[cluster.index()];
    let request = match (answer.header.opcode, login) {
        (Opcode::Ready, Login::None) => return Ok(backend),
        (Opcode::Authenticate, Login::Proxy) => {
            let config = ctx.config.cluster(cluster);
            let (Some(user), Some(password)) = (&config.username, &config.password) else {
                return Err(format!(
                    "{cluster} asks for credentials the proxy does not have"
                ));
            };
            Request::AuthResponse(AuthResponse::plain(user, password.expose()))
                .to_envelope(shape.version, 0, 0, &BodyExtensions::default())
                .map_err(|e| e.to_string())?
        }
        (Opcode::Authenticate, Login::Client(body)) => Envelope::new(
            shape.version,
            Direction::Request,
            0,
            0,
            Opcode::AuthResponse,
            body.clone(),
        ),
        (opcode, _) => {
            return Err(format!(
                "{cluster} answered STARTUP with {opcode:?}, not as it did for the client"
            ));
        }
    };
    let answer: Envelope = backend.request(request).await.map_err(|e| e.to_string())?;
    match answer.header.opcode {
        Opcode::AuthSuccess => Ok(backend),
        opcode => Err(format!("{cluster} answered the login with {opcode:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(token: &'static [u8]) -> Shape {
        Shape {
            version: ProtocolVersion::V4,
            compression: None,
            options: vec![("CQL_VERSION".into(), "3.0.0".into())],
            addrs: [
                "127.0.0.1:9042".parse().unwrap(),
                "127.0.0.2:9042".parse().unwrap(),
            ],
            logins: [Login::Proxy, Login::Client(Bytes::from_static(token))],
        }
    }

    #[test]
    fn sessions_of_one_shape_join_one_entry_until_the_last_leaves() {
        let pool = Arc::new(Pool::default());
        let (a, first) = pool.join(shape(b"alice"), &Bytes::new());
        let (b, second) = pool.join(shape(b"alice"), &Bytes::new());
        assert!(
            first && !second,
            "the first joiner opens, the second waits for it"
        );
        assert!(Arc::ptr_eq(&a, &b));
        let (c, third) = pool.join(shape(b"bob"), &Bytes::new());
        assert!(
            third && !Arc::ptr_eq(&a, &c),
            "other credentials, other entry"
        );
        assert_eq!(pool.len(), 2);
        drop((a, b));
        assert_eq!(pool.len(), 1);
        drop(c);
        assert!(
            pool.entries.lock().unwrap().is_empty(),
            "no record outlives its entry"
        );
    }

    #[test]
    fn a_failed_entry_is_replaced_for_the_next_session_and_its_members_keep_it() {
        let pool = Arc::new(Pool::default());
        let (a, _) = pool.join(shape(b"alice"), &Bytes::new());
        a.failed.store(true, Ordering::Release);
        let (b, opens) = pool.join(shape(b"alice"), &Bytes::new());
        assert!(opens && !Arc::ptr_eq(&a, &b));
        assert!(a.pair().is_none() && b.pair().is_none());
        drop(a);
        assert_eq!(
            pool.len(),
            1,
            "dropping the old entry keeps the new one's record"
        );
        drop(b);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn options_that_only_describe_the_client_do_not_keep_sessions_apart() {
        let startup = |options: &[(&str, &str)]| Startup {
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let control = startup(&[
            ("DRIVER_NAME", "d"),
            ("CQL_VERSION", "3.0.0"),
            ("SESSION_ID", "1"),
            ("DRIVER_CONFIG", "{}"),
        ]);
        let pool = startup(&[("SESSION_ID", "2"), ("CQL_VERSION", "3.0.0")]);
        assert_eq!(shape_options(&control), shape_options(&pool));
        let compressed = startup(&[("CQL_VERSION", "3.0.0"), ("COMPRESSION", "lz4")]);
        let reordered = startup(&[("COMPRESSION", "lz4"), ("CQL_VERSION", "3.0.0")]);
        assert_eq!(shape_options(&compressed), shape_options(&reordered));
        assert_ne!(shape_options(&compressed), shape_options(&pool));
        let unknown = startup(&[("CQL_VERSION", "3.0.0"), ("THROW_ON_OVERLOAD", "true")]);
        assert_ne!(shape_options(&unknown), shape_options(&pool));
    }

    #[test]
    fn shapes_never_show_credentials() {
        let shown = format!("{:?}", shape(b"s3cret"));
        assert!(
            !shown.contains("s3cret") && !shown.contains("115"),
            "{shown}"
        );
    }
}
