//! Where a cluster's answer goes: the other half of a request's life.
//!
//! ```text
//!  read ─────► primary ──────────► Forward ──────────────► client (stream restored)
//!  dual read ► primary ──────────► ForwardMirrored ─┬────► client
//!            ► secondary ────────► Mirror ──────────┴────► compare, count mismatches
//!  write ────► origin ─┐
//!            ► target ─┴─────────► Join (second answer decides) ──► client
//!  internal ─► either ───────────► Reply (oneshot: handshake, PREPARE, system tables)
//! ```
//!
//! A completion runs on the backend connection's reader task (or the sweeper, for timeouts), so
//! it never blocks on anything but room in the client's bounded outbox.
//!
//! When one cluster answers a dual write's EXECUTE or BATCH with UNPREPARED while the other
//! applied it, the client must not see the UNPREPARED: its driver would prepare and retry, and
//! the cluster that applied the write would apply it twice (a counter incremented twice, a list
//! appended twice). The join hands that half to its [`Reprepare`] instead, which prepares the
//! statements again on that cluster alone (on a task of its own: the reader task must keep
//! reading) and sends the half once more; its answer completes the join as usual. One attempt
//! per request. The join holds the two halves as sent for it (the backend sends encode them from
//! there, so a write copies nothing for the rare re-prepare), and builds the [`Retry`] only
//! when it is needed. Mirrored reads do the same for the secondary's half, rather than counting a
//! failure for every read until something else prepares the statement again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_cql::envelope::Envelope;
use ferry_cql::protocol::{Opcode, ProtocolVersion, flags};
use ferry_cql::response::ResultBody;
use ferry_cql::response::error::ErrorResponse;
use ferry_cql::{Compression, message::Response};
use tokio::sync::oneshot;

use crate::error::{BackendError, RequestKind};
use crate::frame::{OutSender, Outbox, Outgoing};
use crate::metrics::{DualReadCounters, DualReadFamilies, Metrics, RequestClass, TableMap};
use crate::prepared::PreparedEntry;
use crate::repairs::KeySource;
use crate::settings::{ClusterId, TargetFailurePolicy};

/// Largest body the proxy decompresses to look inside (compare, events, errors).
pub(crate) const MAX_INSPECT_BODY: usize = 256 * 1024 * 1024;

/// The client's side of a session: its outbox and protocol version. Shared: every request's
/// [`Reply`] holds one, and cloning an `Arc` is one atomic increment where a sender's clone
/// is two (its count and its `Arc`).
///
/// The session's sink is held by the session and by its live replies only (events get a sink
/// of their own), so its reference count tells the requests in flight at no cost per request.
#[derive(Debug, Clone)]
pub(crate) struct ClientSink(Arc<SinkParts>);

#[derive(Debug)]
pub(crate) struct SinkParts {
    tx: OutSender,
    /// Where the session's dual writes are counted and their target failures recorded: here,
    /// so a write's [`Join`] needs no references of its own.
    outcomes: Outcomes,
    /// The session's way to prepare statements again, set once the session exists: found here
    /// by the rare request that needs it, so requests keep no reference to it.
    reprepare: std::sync::OnceLock<Arc<dyn Reprepare>>,
    version: ProtocolVersion,
    /// v3/v4 body compression the client negotiated; errors the proxy builds itself go out
    /// uncompressed (allowed: the flag is per envelope).
    compression: Option<Compression>,
}

impl std::ops::Deref for ClientSink {
    type Target = SinkParts;

    fn deref(&self) -> &SinkParts {
        &self.0
    }
}

/// Where a dual write's outcome goes: the failure counts, and the record of target failures
/// for repair.
#[derive(Debug, Clone)]
pub(crate) struct Outcomes {
    pub failures: Arc<dyn TargetFailureSink>,
    pub metrics: Arc<Metrics>,
}

impl ClientSink {
    pub(crate) fn new(
        tx: OutSender,
        version: ProtocolVersion,
        compression: Option<Compression>,
        outcomes: Outcomes,
    ) -> Self {
        Self(Arc::new(SinkParts {
            tx,
            outcomes,
            reprepare: std::sync::OnceLock::new(),
            version,
            compression,
        }))
    }

    /// Requests of the session that holds this sink waiting for their answer (its live
    /// [`Reply`]s): the limit on a shared backend connection, where stream ids are not the
    /// client's alone, and what a draining session waits for. An answer read in a batch is
    /// queued at the end of the batch, after its reply is gone: a draining session also waits
    /// for the backend's `delivering` count.
    pub(crate) fn in_flight(&self) -> usize {
        Arc::strong_count(&self.0) - 1
    }

    /// Sets how the session prepares statements again (once; later calls change nothing).
    pub(crate) fn set_reprepare(&self, reprepare: Arc<dyn Reprepare>) {
        let _ = self.reprepare.set(reprepare);
    }

    pub(crate) fn reprepare(&self) -> Option<Arc<dyn Reprepare>> {
        self.reprepare.get().cloned()
    }

    pub(crate) fn sender(&self) -> OutSender {
        self.tx.clone()
    }

    /// The client's outbox, for batching.
    pub(crate) fn outbox(&self) -> &std::sync::Arc<Outbox> {
        self.tx.outbox()
    }

    /// Queues an envelope for the client; a client that is gone is not an error here (its
    /// session is ending).
    pub(crate) async fn send(&self, env: Envelope) {
        let _ = self.tx.send(Outgoing::Envelope(env)).await;
    }

    /// Queues an envelope for the client without waiting for room: for answers completed on a
    /// backend's reader task, which waits for room between read batches instead.
    pub(crate) fn send_now(&self, env: Envelope) {
        let _ = self.tx.send_now(Outgoing::Envelope(env));
    }

    pub(crate) async fn send_outgoing(&self, item: Outgoing) {
        let _ = self.tx.send(item).await;
    }

    /// Answers `stream` with a response the proxy builds.
    pub(crate) async fn respond(&self, stream: i16, response: &Response) {
        self.send(self.encode(stream, response)).await;
    }

    pub(crate) async fn error(&self, stream: i16, error: ErrorResponse) {
        self.respond(stream, &Response::Error(error)).await;
    }

    /// [`ClientSink::error`] without waiting for room (see [`ClientSink::send_now`]).
    pub(crate) fn error_now(&self, stream: i16, error: ErrorResponse) {
        self.send_now(self.encode(stream, &Response::Error(error)));
    }

    fn encode(&self, stream: i16, response: &Response) -> Envelope {
        response_envelope(self.version, stream, response)
    }
}

/// `response` as an envelope for the client on `stream`; a SERVER_ERROR saying why when it
/// cannot be encoded.
pub(crate) fn response_envelope(
    version: ProtocolVersion,
    stream: i16,
    response: &Response,
) -> Envelope {
    response
        .to_envelope(version, stream, &Default::default())
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot encode a response for the client");
            let message = format!("ferry proxy: cannot encode the response: {e}");
            let mut env = error_envelope(version, message);
            env.set_stream(stream);
            env
        })
}

/// Who waits for a request's answer, and how to phrase a failure for them.
#[derive(Debug)]
pub(crate) struct Reply {
    pub sink: ClientSink,
    pub stream: i16,
    pub kind: RequestKind,
    /// The prepared statements the request names: an UNPREPARED naming target's id for one is
    /// rewritten to name the client's (origin's) id, so the driver re-prepares the statement it
    /// knows.
    pub unprepared: Statements,
}

/// The prepared statements a request names; no allocation for the usual one.
#[derive(Debug, Default, Clone)]
pub(crate) enum Statements {
    #[default]
    None,
    One(Arc<PreparedEntry>),
    Many(Vec<Arc<PreparedEntry>>),
}

impl Statements {
    /// `entries` kept without an allocation when there is one.
    pub(crate) fn from_slice(entries: &[Arc<PreparedEntry>]) -> Self {
        match entries {
            [] => Self::None,
            [one] => Self::One(one.clone()),
            many => Self::Many(many.to_vec()),
        }
    }

    pub(crate) fn as_slice(&self) -> &[Arc<PreparedEntry>] {
        match self {
            Self::None => &[],
            Self::One(entry) => std::slice::from_ref(entry),
            Self::Many(entries) => entries,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// The client's id of the statement target knows as `target_id`.
    fn client_id(&self, target_id: &[u8]) -> Option<&Bytes> {
        self.as_slice()
            .iter()
            .find(|e| e.target_id.as_deref() == Some(target_id))
            .map(|e| &e.origin_id)
    }
}

impl Reply {
    pub(crate) fn new(sink: ClientSink, stream: i16, kind: RequestKind) -> Self {
        Self {
            sink,
            stream,
            kind,
            unprepared: Statements::None,
        }
    }

    /// Sends a cluster's answer (or the error standing for its failure) to the client; into
    /// `staged` when the answer was read in a batch.
    fn deliver(self, result: Result<Envelope, BackendError>, staged: Option<&mut Staged>) {
        match result {
            Ok(mut env) => {
                if env.header.opcode == Opcode::Error
                    && !self.unprepared.is_empty()
                    && let Some(translated) = self.translate_unprepared(&env)
                {
                    env = translated;
                }
                env.set_stream(self.stream);
                match staged {
                    Some(staged) => staged.push(self.sink.outbox(), env),
                    None => self.sink.send_now(env),
                }
            }
            Err(e) => {
                let response = e.to_response(self.kind);
                self.sink.error_now(self.stream, response);
            }
        }
    }

    /// What sends `sent` again to the cluster that forgot the request's statements.
    fn retry(&self, sent: &[Envelope; 2]) -> Option<Retry> {
        Some(Retry {
            via: self.sink.reprepare()?,
            sent: sent.clone(),
            prepared: self.unprepared.clone(),
        })
    }

    fn translate_unprepared(&self, env: &Envelope) -> Option<Envelope> {
        let body = plain_body(env, self.sink.compression).ok()?;
        let body = strip_extensions(env, body)?;
        let id = ErrorResponse::peek_unprepared_id(&body).ok()??;
        let client_id = self.unprepared.client_id(id)?;
        let response = Response::Error(ErrorResponse::unprepared(client_id.to_vec()));
        response
            .to_envelope(self.sink.version, self.stream, &Default::default())
            .ok()
    }
}

/// How a backend connection's events reach the client.
#[derive(Debug, Clone)]
pub(crate) enum EventRoute {
    Drop,
    /// Only SCHEMA_CHANGE: topology and status events describe the real cluster, which the
    /// proxy hides behind its own topology.
    SchemaChanges(ClientSink),
}

impl EventRoute {
    pub(crate) fn deliver(&self, env: Envelope, compression: Option<Compression>) {
        let Self::SchemaChanges(sink) = self else {
            return;
        };
        if env.header.opcode != Opcode::Event {
            return;
        }
        let Ok(body) = plain_body(&env, compression) else {
            return;
        };
        if crate::backend::event_type(&body) == Some("SCHEMA_CHANGE") {
            sink.send_now(env);
        }
    }
}

/// What to do with a backend's answer.
#[derive(Debug)]
pub(crate) enum Completion {
    /// The proxy itself waits (handshake, PREPARE, system tables).
    Reply(oneshot::Sender<Result<Envelope, BackendError>>),
    /// The answer goes straight to the client.
    Forward(Reply),
    /// To the client, and a copy to the comparison with the secondary's answer.
    ForwardMirrored(Reply, Arc<Mirror>, ClusterId),
    /// The secondary's half of a dual read: compared, never sent to the client.
    Mirror(Arc<Mirror>, ClusterId),
    /// One cluster's half of a dual write.
    Join(Arc<Join>, ClusterId),
    /// Nobody waits (heartbeats).
    Discard,
}

impl Completion {
    /// The `kind` label of the request; `None` for heartbeats, which are not counted.
    pub(crate) fn class(&self) -> Option<RequestClass> {
        match self {
            Self::Reply(_) => Some(RequestClass::Other),
            Self::Forward(reply) | Self::ForwardMirrored(reply, ..) => Some(reply.kind.into()),
            Self::Mirror(..) => Some(RequestClass::Read),
            Self::Join(join, _) => Some(join.class),
            Self::Discard => None,
        }
    }

    /// Hands the answer over. `elapsed` is the cluster's latency (zero when it never answered).
    pub(crate) fn complete(self, result: Result<Envelope, BackendError>, elapsed: Duration) {
        self.complete_in(result, elapsed, None);
    }

    /// [`Completion::complete`] for an answer read in a batch: a client's answer is collected
    /// in `staged`.
    pub(crate) fn complete_in(
        self,
        result: Result<Envelope, BackendError>,
        elapsed: Duration,
        staged: Option<&mut Staged>,
    ) {
        let _ = elapsed;
        match self {
            Self::Reply(tx) => {
                let _ = tx.send(result);
            }
            Self::Forward(reply) => reply.deliver(result, staged),
            Self::ForwardMirrored(reply, mirror, cluster) => {
                let again = mirror.record(cluster, result.clone());
                reply.deliver(result, staged);
                if let Some((retry, cluster)) = again {
                    retry.resend(cluster, Self::Mirror(mirror, cluster));
                }
            }
            Self::Mirror(mirror, cluster) => {
                if let Some((retry, cluster)) = mirror.record(cluster, result) {
                    retry.resend(cluster, Self::Mirror(mirror, cluster));
                }
            }
            Self::Join(join, cluster) => match join.record(cluster, result) {
                Some(Joined::Decided(reply, result)) => reply.deliver(result, staged),
                Some(Joined::Again(retry, cluster)) => {
                    retry.resend(cluster, Self::Join(join, cluster));
                }
                None => {}
            },
            Self::Discard => {}
        }
    }
}

/// Answers a backend's reader completed in one read batch, by client: each client's are queued
/// under one lock of its outbox at the end of the batch (not one lock per answer), and its
/// outbox is held from its first answer until then, so its writer is not woken per answer and
/// the batch leaves in one write. One client for a session's own connections; several for a
/// connection shared by sessions.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// The outboxes answered in this batch, each held, with their answers.
    groups: Vec<(Arc<Outbox>, Vec<Envelope>)>,
    /// Emptied vectors of earlier batches, for the next groups (no allocation per batch).
    spare: Vec<Vec<Envelope>>,
    /// The outboxes the last flushed batch answered: where the reader waits for room.
    last: Vec<Arc<Outbox>>,
}

impl Staged {
    /// Collects `env` for `outbox`.
    pub(crate) fn push(&mut self, outbox: &Arc<Outbox>, env: Envelope) {
        // The latest group first: a batch's answers mostly go to one client.
        if let Some((_, envelopes)) = self
            .groups
            .iter_mut()
            .rev()
            .find(|(o, _)| Arc::ptr_eq(o, outbox))
        {
            envelopes.push(env);
            return;
        }
        outbox.hold();
        let mut envelopes = self.spare.pop().unwrap_or_default();
        envelopes.push(env);
        self.groups.push((outbox.clone(), envelopes));
    }

    /// Queues what was collected, without waiting for room (see [`Outbox::push_now`]), and
    /// releases each outbox (which writes it); a client that is gone is not an error here.
    pub(crate) fn flush(&mut self) {
        self.last.clear();
        for (outbox, mut envelopes) in self.groups.drain(..) {
            let _ = outbox.push_now_all(&mut envelopes);
            outbox.release();
            envelopes.clear();
            self.spare.push(envelopes);
            self.last.push(outbox);
        }
    }

    /// Waits until every client the last batch answered has room in its outbox: a client that
    /// does not read stops the reader here, between batches (the bound plus one batch).
    pub(crate) async fn room(&mut self) {
        for outbox in self.last.drain(..) {
            outbox.room().await;
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Never leave an outbox held: its writer would not be woken.
        self.flush();
    }
}

/// Sends one cluster's half of a request again after preparing its statements there again
/// (see the module docs). Implemented by the session, which knows the statements, the
/// connections and the cache.
pub(crate) trait Reprepare: std::fmt::Debug + Send + Sync {
    /// Prepares `retry`'s statements again on `cluster` and resends its half there; the
    /// answer — or the failure to prepare — completes `then`. Returns at once (the work runs on
    /// its own task).
    fn resend(&self, retry: Retry, cluster: ClusterId, then: Completion);
}

/// What a request needs to go again to one cluster: kept by every dual write and dual read
/// that names prepared statements, so it allocates nothing (the session's [`Reprepare`] is
/// shared by all of them).
#[derive(Debug, Clone)]
pub(crate) struct Retry {
    pub(crate) via: Arc<dyn Reprepare>,
    /// The request as each cluster got it, by [`ClusterId::index`].
    pub(crate) sent: [Envelope; 2],
    /// One per prepared statement or BATCH child, so possibly repeated.
    pub(crate) prepared: Statements,
}

impl Retry {
    fn resend(self, cluster: ClusterId, then: Completion) {
        let via = self.via.clone();
        via.resend(self, cluster, then);
    }
}

/// What a join does once both answers are in.
#[derive(Debug)]
enum Joined {
    /// The client's answer.
    Decided(Reply, Result<Envelope, BackendError>),
    /// One cluster forgot the statement the other applied: that half goes again.
    Again(Retry, ClusterId),
}

/// A write sent to both clusters; the second answer decides what the client gets.
#[derive(Debug)]
pub(crate) struct Join {
    primary: ClusterId,
    policy: TargetFailurePolicy,
    /// The request's kind, for metrics (the reply itself is taken when both answers are in).
    class: RequestClass,
    /// `keyspace.table` when the write names one, so a failure recorded for repair says where.
    table: Option<Arc<str>>,
    /// Where the written partition's key is read from, should the target fail the write.
    key: Option<KeySource>,
    /// The halves as sent, for the one re-prepare attempt (the reply names the statements);
    /// `None` for writes without prepared statements. The sends encode them from here, so
    /// they are not copied.
    sent: Option<[Envelope; 2]>,
    state: Mutex<JoinState>,
}

#[derive(Debug)]
struct JoinState {
    reply: Option<Reply>,
    results: [Option<Result<Envelope, BackendError>>; 2],
    /// The cluster whose half was sent again: a second UNPREPARED from it is a failure, and
    /// there is no third attempt.
    resent: Option<ClusterId>,
    /// Runs once the client's answer is a success (an ALTER TABLE asking for re-migration).
    after: Option<AfterSuccess>,
}

/// What a dual write does once it succeeded; rare (DDL), so a boxed closure.
pub(crate) struct AfterSuccess(pub Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for AfterSuccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterSuccess")
    }
}

/// Where `best-effort` records a write the target failed, for repair.
pub(crate) trait TargetFailureSink: std::fmt::Debug + Send + Sync {
    fn target_write_failed(
        &self,
        table: Option<&Arc<str>>,
        key: Option<ferry_update::PartitionKey>,
        reason: &str,
    );
}

/// The cluster that alone answered UNPREPARED while the other succeeded: the one half to
/// prepare and send again. `None` when both forgot (nothing was applied: the driver prepares
/// again) or the other failed too (the client gets an error either way).
fn forgot_alone(
    results: &[Option<Result<Envelope, BackendError>>; 2],
    compression: Option<Compression>,
) -> Option<ClusterId> {
    let [Some(origin), Some(target)] = results else {
        return None;
    };
    match (succeeded(origin), succeeded(target)) {
        (true, false) if is_unprepared(target, compression) => Some(ClusterId::Target),
        (false, true) if is_unprepared(origin, compression) => Some(ClusterId::Origin),
        _ => None,
    }
}

impl Join {
    /// `sent` (the halves, kept when the reply names prepared statements) goes again to a
    /// cluster that forgot them.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, each part named there"
    )]
    pub(crate) fn new(
        reply: Reply,
        primary: ClusterId,
        policy: TargetFailurePolicy,
        table: Option<Arc<str>>,
        key: Option<KeySource>,
        sent: Option<[Envelope; 2]>,
        after: Option<AfterSuccess>,
    ) -> Arc<Self> {
        Arc::new(Self {
            primary,
            policy,
            class: reply.kind.into(),
            table,
            key,
            sent,
            state: Mutex::new(JoinState {
                reply: Some(reply),
                results: [None, None],
                resent: None,
                after,
            }),
        })
    }

    /// The halves as each cluster gets them, when the join keeps them for a re-prepare.
    pub(crate) fn sent(&self) -> Option<&[Envelope; 2]> {
        self.sent.as_ref()
    }

    /// Stores one answer; once both are in, says what happens next.
    fn record(&self, cluster: ClusterId, result: Result<Envelope, BackendError>) -> Option<Joined> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.results[cluster.index()] = Some(result);
        if state.results.iter().any(Option::is_none) {
            return None;
        }
        let compression = state.reply.as_ref()?.sink.compression;
        if state.resent.is_none()
            && let Some(sent) = &self.sent
            && let Some(forgot) = forgot_alone(&state.results, compression)
            && let Some(retry) = state.reply.as_ref().and_then(|r| r.retry(sent))
        {
            state.results[forgot.index()] = None;
            state.resent = Some(forgot);
            return Some(Joined::Again(retry, forgot));
        }
        let reply = state.reply.take()?;
        let resent = state.resent;
        let after = state.after.take();
        let [origin, target] = std::mem::take(&mut state.results);
        let (mut origin, mut target) = (origin?, target?);
        drop(state);
        if let Some(cluster) = resent {
            // Prepared a moment ago and forgotten again: passed on, the UNPREPARED would make
            // the driver retry, and the other cluster apply the write twice.
            let result = match cluster {
                ClusterId::Origin => &mut origin,
                ClusterId::Target => &mut target,
            };
            if is_unprepared(result, compression) {
                let message = format!(
                    "ferry proxy: {cluster} answered UNPREPARED again after the proxy prepared \
                     the statement there again"
                );
                *result = Ok(error_envelope(reply.sink.version, message));
            }
        }
        let outcomes = &reply.sink.outcomes;
        // Counted in `failed_writes_total{failed_on}`.
        outcomes
            .metrics
            .failed_write(!succeeded(&origin), !succeeded(&target));
        let decided = self.decide(origin, target, compression, &*outcomes.failures);
        if let Some(after) = after
            && succeeded(&decided)
        {
            (after.0)();
        }
        Some(Joined::Decided(reply, decided))
    }

    fn decide(
        &self,
        origin: Result<Envelope, BackendError>,
        target: Result<Envelope, BackendError>,
        compression: Option<Compression>,
        failures: &dyn TargetFailureSink,
    ) -> Result<Envelope, BackendError> {
        let (primary, secondary) = match self.primary {
            ClusterId::Origin => (origin, target),
            ClusterId::Target => (target, origin),
        };
        match (succeeded(&primary), succeeded(&secondary)) {
            (true, false) => {
                let secondary_is_target = self.primary == ClusterId::Origin;
                // An UNPREPARED the proxy could not prepare again itself goes on even in
                // `best-effort`: swallowed, the driver would never re-prepare, and every later
                // execution would miss the target.
                if secondary_is_target
                    && self.policy == TargetFailurePolicy::BestEffort
                    && !is_unprepared(&secondary, compression)
                {
                    let key = self.key.as_ref().and_then(KeySource::key);
                    failures.target_write_failed(self.table.as_ref(), key, &describe(&secondary));
                    primary
                } else {
                    secondary
                }
            }
            // Both succeeded, the primary failed, or both failed: the primary's answer.
            _ => primary,
        }
    }
}

/// A SERVER_ERROR the proxy answers for a cluster, as if the cluster had sent it.
pub(crate) fn error_envelope(version: ProtocolVersion, message: String) -> Envelope {
    let error = Response::Error(ErrorResponse::server_error(message));
    error
        .to_envelope(version, 0, &Default::default())
        .unwrap_or_else(|_| {
            // Only an over-long message fails to encode: SERVER_ERROR (code 0), empty message.
            Envelope::new(
                version,
                ferry_cql::protocol::Direction::Response,
                0,
                0,
                Opcode::Error,
                Bytes::from_static(&[0, 0, 0, 0, 0, 0]),
            )
        })
}

fn succeeded(result: &Result<Envelope, BackendError>) -> bool {
    matches!(result, Ok(env) if env.header.opcode != Opcode::Error)
}

/// Whether a cluster answered UNPREPARED.
fn is_unprepared(
    result: &Result<Envelope, BackendError>,
    compression: Option<Compression>,
) -> bool {
    let Ok(env) = result else {
        return false;
    };
    env.header.opcode == Opcode::Error
        && plain_body(env, compression)
            .ok()
            .and_then(|body| strip_extensions(env, body))
            .is_some_and(|body| matches!(ErrorResponse::peek_unprepared_id(&body), Ok(Some(_))))
}

fn describe(result: &Result<Envelope, BackendError>) -> String {
    match result {
        Ok(env) => format!("{:?} answer", env.header.opcode),
        Err(e) => e.to_string(),
    }
}

/// Counts of dual-read comparisons, per `keyspace.table` (bounded: see [`TableMap`]), kept here
/// for `/status` and mirrored into per-table counters for `/metrics`.
#[derive(Debug)]
pub(crate) struct MirrorStats {
    tables: Mutex<TableMap<MirrorEntry>>,
    families: DualReadFamilies,
}

#[derive(Debug)]
struct MirrorEntry {
    counts: MirrorCounts,
    counters: Option<DualReadCounters>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MirrorCounts {
    pub compared: u64,
    pub mismatches: u64,
    /// The secondary failed or answered an error while the primary answered rows.
    pub secondary_failures: u64,
}

impl MirrorStats {
    pub(crate) fn new(families: DualReadFamilies) -> Self {
        Self {
            tables: Mutex::default(),
            families,
        }
    }

    /// `table`'s counts; zero for a table never compared or counted under `other`.
    pub(crate) fn counts(&self, table: &str) -> MirrorCounts {
        let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        tables.get(table).map(|e| e.counts).unwrap_or_default()
    }

    /// Every table's counts, by name.
    pub(crate) fn tables(&self) -> Vec<(Arc<str>, MirrorCounts)> {
        let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = tables.iter().map(|(t, e)| (t.clone(), e.counts)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(crate) fn total(&self) -> MirrorCounts {
        let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        tables
            .iter()
            .map(|(_, e)| e.counts)
            .fold(MirrorCounts::default(), |acc, c| MirrorCounts {
                compared: acc.compared + c.compared,
                mismatches: acc.mismatches + c.mismatches,
                secondary_failures: acc.secondary_failures + c.secondary_failures,
            })
    }

    fn add(&self, table: &Arc<str>, f: impl FnOnce(&mut MirrorCounts)) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tables.entry(table, |name| MirrorEntry {
            counts: MirrorCounts::default(),
            counters: self.families.for_table(name),
        });
        let before = entry.counts;
        f(&mut entry.counts);
        if let Some(c) = &entry.counters {
            let after = entry.counts;
            c.compared.inc_by(after.compared - before.compared);
            c.mismatches.inc_by(after.mismatches - before.mismatches);
            c.secondary_failures
                .inc_by(after.secondary_failures - before.secondary_failures);
        }
    }
}

/// A read sent to both clusters; the answers are compared once both are in.
#[derive(Debug)]
pub(crate) struct Mirror {
    table: Arc<str>,
    primary: ClusterId,
    version: ProtocolVersion,
    compression: Option<Compression>,
    stats: Arc<MirrorStats>,
    state: Mutex<MirrorState>,
}

#[derive(Debug)]
struct MirrorState {
    results: [Option<Result<Envelope, BackendError>>; 2],
    /// Taken by the one attempt to prepare again on the secondary; `None` for QUERY reads.
    retry: Option<Retry>,
}

impl Mirror {
    pub(crate) fn new(
        table: Arc<str>,
        primary: ClusterId,
        version: ProtocolVersion,
        compression: Option<Compression>,
        stats: Arc<MirrorStats>,
        retry: Option<Retry>,
    ) -> Arc<Self> {
        Arc::new(Self {
            table,
            primary,
            version,
            compression,
            stats,
            state: Mutex::new(MirrorState {
                results: [None, None],
                retry,
            }),
        })
    }

    /// Stores one answer and compares once both are in; returns the half to send again when
    /// the secondary alone forgot the statement.
    fn record(
        &self,
        cluster: ClusterId,
        result: Result<Envelope, BackendError>,
    ) -> Option<(Retry, ClusterId)> {
        let both = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.results[cluster.index()] = Some(result);
            if state.results.iter().any(Option::is_none) {
                return None;
            }
            let secondary = self.primary.other();
            if state.retry.is_some()
                && forgot_alone(&state.results, self.compression) == Some(secondary)
                && let Some(retry) = state.retry.take()
            {
                state.results[secondary.index()] = None;
                return Some((retry, secondary));
            }
            std::mem::take(&mut state.results)
        };
        let [origin, target] = both;
        let (Some(origin), Some(target)) = (origin, target) else {
            return None;
        };
        let (primary, secondary) = match self.primary {
            ClusterId::Origin => (origin, target),
            ClusterId::Target => (target, origin),
        };
        let Ok(primary) = primary else {
            return None;
        };
        if primary.header.opcode != Opcode::Result {
            return None;
        }
        let Ok(secondary) = secondary else {
            self.stats.add(&self.table, |c| c.secondary_failures += 1);
            return None;
        };
        if secondary.header.opcode != Opcode::Result {
            self.stats.add(&self.table, |c| c.secondary_failures += 1);
            return None;
        }
        let same = self.same_rows(&primary, &secondary);
        self.stats.add(&self.table, |c| {
            c.compared += 1;
            if !same {
                c.mismatches += 1;
            }
        });
        if !same {
            tracing::debug!(table = %self.table, "dual read mismatch");
        }
        None
    }

    /// Whether two RESULT answers hold the same rows (cell bytes; metadata and paging state may
    /// differ between clusters and do not count).
    fn same_rows(&self, a: &Envelope, b: &Envelope) -> bool {
        let rows = |env: &Envelope| -> Option<Vec<Vec<Option<Bytes>>>> {
            let body = plain_body(env, self.compression).ok()?;
            let body = strip_extensions(env, body)?;
            let decoded = ResultBody::decode(&mut &body[..], &body, self.version).ok()?;
            let ResultBody::Rows(rows) = decoded else {
                return Some(Vec::new());
            };
            let width = rows.columns_count();
            Some(
                (0..rows.rows_count())
                    .map(|r| (0..width).map(|c| rows.cell_bytes(r, c)).collect())
                    .collect(),
            )
        };
        match (rows(a), rows(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }
}

/// The body of an envelope as the spec lays it out, decompressed if needed.
pub(crate) fn plain_body(
    env: &Envelope,
    compression: Option<Compression>,
) -> Result<Bytes, String> {
    if !env.header.has_flag(flags::COMPRESSION) {
        return Ok(env.body.clone());
    }
    let Some(algorithm) = compression else {
        return Err("compressed body without negotiated compression".to_owned());
    };
    algorithm
        .decompress(&env.body, MAX_INSPECT_BODY)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// The body without tracing id, warnings and custom payload.
fn strip_extensions(env: &Envelope, body: Bytes) -> Option<Bytes> {
    let mut header = env.header;
    header.flags &= !flags::COMPRESSION;
    ferry_cql::envelope::BodyExtensions::decode(&header, &body)
        .ok()
        .map(|(_, rest)| rest)
}
