//! One client connection: the handshake, then the request loop.
//!
//! ```text
//!  client ─► FrameReader ─► handshake: OPTIONS (answered from both clusters' SUPPORTED)
//!                                      STARTUP ─► connect origin + target with the client's
//!                                                 version and options ─► READY / AUTHENTICATE
//!                                      AUTH_RESPONSE ─► the cluster that takes the client's
//!                                                 credentials; the proxy logs into the other
//!           ─► request loop: QUERY / EXECUTE / BATCH ─► route ─► backend.send(completion)
//!                            PREPARE, virtual tables ─► a task per request (round trips)
//!  client ◄─ outbox ◄── completions (stream ids restored) ◄── backend reader tasks
//! ```
//!
//! Requests parsed from one read form a batch: they are queued in the backends' outboxes and
//! written when the batch ends, by this task (`frame::Outbox`). With
//! `share_backend_connections`, a batch of QUERY/EXECUTE/BATCH goes over the shared pair of the
//! session's shape instead, once it is open and until the session sends `USE` (`pool`). After
//! that pair dies, the session's next batch boundary joins the shape's fresh one (opening it
//! if none, unless the shape is backing off after a failed open).
//!
//! The loop never waits for an answer: requests on one connection run concurrently and their
//! answers go back in whatever order the clusters produce them.
//!
//! A session ends by draining — on shutdown, or when either backend connection dies (what was in
//! flight on it has already failed with a SERVER_ERROR): new requests get OVERLOADED, the rest
//! finish, then the client connection closes and the driver reconnects to fresh backends.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use ferry_cql::Compression;
use ferry_cql::envelope::{BodyExtensions, Envelope};
use ferry_cql::message::Response;
use ferry_cql::protocol::{Direction, Opcode, ProtocolVersion, flags};
use ferry_cql::request::{
    AuthResponse, Batch, Execute, Prepare, Query, QueryParameters, Startup, Values,
};
use ferry_cql::response::result::ResultBody;
use ferry_cql::response::{ErrorKind, ErrorResponse};
use ferry_cql::statement::classify::{NonDeterministicCall, StatementKind, classify};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::completion::{
    AfterSuccess, ClientSink, Completion, EventRoute, Join, Mirror, Reply, Reprepare, Retry,
    Statements, error_envelope, plain_body,
};
use crate::error::{BackendError, RequestKind};
use crate::frame::{
    FrameReader, Framing, Holding, Inbound, OutSender, Outbox, Outgoing, Stream, legacy_error,
    run_writer,
};
use crate::pool::{self, Login, Shape};
use crate::prepared::{PreparedEntry, Recent};
use crate::proxy::Context;
use crate::repairs::{KeyColumns, KeySource};
use crate::rewrite::{self, BatchIdError, FunctionPlan, SystemValueSource, ValueSource};
use crate::route::{self, Destination, VirtualTable, WriteKind};
use crate::settings::{ClusterId, ReadMode, TargetFailurePolicy};
use crate::topology::{REAL_LOCAL_QUERY, RealNode};

/// Largest request body accepted from a client (Cassandra's `native_transport_max_frame_size`
/// default is 16 MiB; 256 MiB is the protocol's own limit).
const MAX_REQUEST_BODY: usize = 256 * 1024 * 1024;
/// PROTOCOL_ERROR's code.
const PROTOCOL_ERROR: i32 = 0x000A;

/// Serves one client connection until it closes.
pub(crate) async fn serve(ctx: Arc<Context>, stream: Stream) {
    let local_addr = stream.local_addr().unwrap_or(ctx.config.listen);
    let (read, write) = stream.split();
    let tx = Outbox::open(&write);
    let writer = tokio::spawn(run_writer(write, tx.outbox().clone()));
    let mut reader = FrameReader::new(read, Direction::Request, MAX_REQUEST_BODY);
    // Boxed: the handshake's future (both backend connects at once) is several KiB, and
    // inline it would stay part of the task's allocation for the connection's whole life.
    let handshake = Box::pin(handshake(&ctx, &mut reader, &tx, local_addr));
    if let Some((session, member)) = handshake.await {
        let session = Arc::new(session);
        let resender = Resender {
            session: Arc::downgrade(&session),
            version: session.version,
        };
        session.sink.set_reprepare(Arc::new(resender));
        session.run(&mut reader, member).await;
    }
    drop(tx);
    // Let the writer flush what is queued (a last error, say) before the socket closes.
    let _ = writer.await;
}

/// How a batch of requests (what one read brought) goes out.
#[derive(Clone, Copy)]
struct Via<'a> {
    /// The shared pair, or `None` for the session's own.
    pair: Option<&'a [Backend; 2]>,
    /// When the batch was read: its requests' send time (one clock reading per batch).
    read_at: std::time::Instant,
}

impl<'a> Via<'a> {
    /// The session's own connections.
    fn own(self) -> Self {
        Self { pair: None, ..self }
    }
}

/// What the handshake ends with: the session, and its part in the pool of shared pairs when
/// it shares (owned by the request loop, which alone changes it).
type Started = (Session, Option<pool::Member>);

struct Session {
    ctx: Arc<Context>,
    sink: ClientSink,
    version: ProtocolVersion,
    /// v3/v4 body compression; v5 compresses segments instead.
    compression: Option<Compression>,
    backends: [Backend; 2],
    /// The keyspace of the last USE, to route unqualified names (`SELECT * FROM local`).
    keyspace: Mutex<Option<Arc<str>>>,
    /// This end of the client's connection: advertised when the proxy listens on 0.0.0.0.
    local_addr: SocketAddr,
    /// Set by a `USE`: the keyspace lives on the session's own connections, so every request
    /// after it goes there.
    pinned: AtomicBool,
}

async fn handshake(
    ctx: &Arc<Context>,
    reader: &mut FrameReader,
    tx: &OutSender,
    local_addr: SocketAddr,
) -> Option<Started> {
    loop {
        let env = next_envelope(reader, tx).await?;
        let version = env.header.version;
        let sink = ClientSink::new(tx.clone(), version, None, ctx.outcomes());
        if !ctx.versions.contains(&version) {
            let message = ctx.unsupported_version_message(version.as_u8());
            sink.error(env.stream(), ErrorResponse::protocol_error(message))
                .await;
            return None;
        }
        match env.header.opcode {
            Opcode::Options => {
                sink.respond(env.stream(), &Response::Supported(ctx.supported.clone()))
                    .await;
            }
            Opcode::Startup => return startup(ctx, reader, tx, env, local_addr).await,
            other => {
                let message = format!("Unexpected message {other:?}, expecting STARTUP or OPTIONS");
                sink.error(env.stream(), ErrorResponse::protocol_error(message))
                    .await;
            }
        }
    }
}

/// The next envelope from the client, answering malformed input on the way; `None` when the
/// connection is done.
async fn next_envelope(reader: &mut FrameReader, tx: &OutSender) -> Option<Envelope> {
    loop {
        match reader.next().await {
            Ok(Some(Inbound::Envelope(env))) => return Some(env),
            Ok(Some(malformed)) => {
                if answer_malformed(malformed, tx).await {
                    return None;
                }
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Answers input that cannot be read with a PROTOCOL_ERROR; returns whether the connection must
/// close.
async fn answer_malformed(item: Inbound, tx: &OutSender) -> bool {
    let Inbound::Malformed {
        stream,
        version,
        legacy,
        message,
        fatal,
    } = item
    else {
        return false;
    };
    if let Some(v) = legacy {
        let raw = legacy_error(v, stream, PROTOCOL_ERROR, &message);
        let _ = tx.send(Outgoing::Raw(raw)).await;
    } else {
        let version = version.unwrap_or(ProtocolVersion::HIGHEST);
        let error = Response::Error(ErrorResponse::protocol_error(message));
        let env = crate::completion::response_envelope(version, stream, &error);
        let _ = tx.send(Outgoing::Envelope(env)).await;
    }
    fatal
}

async fn startup(
    ctx: &Arc<Context>,
    reader: &mut FrameReader,
    tx: &OutSender,
    env: Envelope,
    local_addr: SocketAddr,
) -> Option<Started> {
    let version = env.header.version;
    let stream = env.stream();
    let startup_body = env.body.clone();
    let plain_sink = ClientSink::new(tx.clone(), version, None, ctx.outcomes());
    let options = match Startup::decode(&mut &env.body[..], version) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("Invalid STARTUP message: {e}");
            plain_sink
                .error(stream, ErrorResponse::protocol_error(message))
                .await;
            return None;
        }
    };
    let compression = match options.get("COMPRESSION").map(str::parse::<Compression>) {
        None => None,
        Some(Ok(c)) if ctx.compressions.contains(&c) && c.supported_in(version) => Some(c),
        Some(Ok(c)) => {
            let message = format!(
                "Unsupported compression {} for protocol {version:?}",
                c.name()
            );
            plain_sink
                .error(stream, ErrorResponse::protocol_error(message))
                .await;
            return None;
        }
        Some(Err(e)) => {
            plain_sink
                .error(stream, ErrorResponse::protocol_error(e.to_string()))
                .await;
            return None;
        }
    };
    let body_compression = compression.filter(|_| !version.uses_segments());
    let sink = ClientSink::new(tx.clone(), version, body_compression, ctx.outcomes());

    let connect = |cluster: ClusterId| {
        let opts = ctx.backend_options(cluster, version, compression);
        let events = match cluster {
            // A sink of its own: the session's counts its requests in flight.
            ClusterId::Origin => EventRoute::SchemaChanges(ClientSink::new(
                tx.clone(),
                version,
                body_compression,
                ctx.outcomes(),
            )),
            ClusterId::Target => EventRoute::Drop,
        };
        let body = env.body.clone();
        let answers = sink.outbox().clone();
        async move {
            match opts {
                Ok(opts) => Backend::connect(opts, body, events, Some(answers)).await,
                Err(e) => Err(e),
            }
        }
    };
    let (origin, target) = tokio::join!(connect(ClusterId::Origin), connect(ClusterId::Target));
    let ((origin, origin_answer), (target, target_answer)) = match (origin, target) {
        (Ok(o), Ok(t)) => (o, t),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot open the backend connections for a client");
            sink.error(
                stream,
                ErrorResponse::server_error(format!("ferry proxy: {e}")),
            )
            .await;
            return None;
        }
    };
    let answers = [origin_answer, target_answer];
    let switch = |sink: &ClientSink, reader: &mut FrameReader| {
        let framing = version.uses_segments().then_some(Framing::Segments {
            lz4: compression == Some(Compression::Lz4),
        });
        if let Some(f) = framing {
            reader.set_framing(f);
        }
        let sink = sink.clone();
        async move {
            if let Some(f) = framing {
                sink.send_outgoing(Outgoing::Switch(f)).await;
            }
        }
    };

    // A cluster that refuses STARTUP: its error is the answer.
    if let Some(refusal) = answers.iter().find(|a| a.header.opcode == Opcode::Error) {
        let mut refusal = refusal.clone();
        refusal.set_stream(stream);
        sink.send(refusal).await;
        return None;
    }
    let wants_auth = answers
        .iter()
        .map(|a| a.header.opcode == Opcode::Authenticate)
        .collect::<Vec<_>>();
    let session = Session {
        ctx: ctx.clone(),
        sink: sink.clone(),
        version,
        compression: body_compression,
        backends: [origin, target],
        keyspace: Mutex::new(None),
        local_addr,
        pinned: AtomicBool::new(false),
    };
    if !wants_auth[0] && !wants_auth[1] {
        let mut ready = answers[ClusterId::Origin.index()].clone();
        ready.set_stream(stream);
        sink.send(ready).await;
        switch(&sink, reader).await;
        return Some(session.join_pool(&options, &startup_body, [Login::None, Login::None]));
    }

    // Authentication: the client's credentials go to one cluster, the proxy's own to the other.
    let client_side = match (wants_auth[0], wants_auth[1]) {
        (true, true) if ctx.config.forward_client_credentials_to_origin => ClusterId::Origin,
        (true, true) | (false, true) => ClusterId::Target,
        _ => ClusterId::Origin,
    };
    let proxy_side = client_side.other();
    let proxy_login = if wants_auth[proxy_side.index()] {
        Some(session.proxy_login(proxy_side).await)
    } else {
        None
    };
    let mut challenge = answers[client_side.index()].clone();
    challenge.set_stream(stream);
    sink.send(challenge).await;
    switch(&sink, reader).await;

    // A login of one AUTH_RESPONSE can be replayed on a shared connection; a SASL exchange
    // with challenges cannot.
    let mut exchanges = 0;
    loop {
        let env = next_envelope(reader, tx).await?;
        let stream = env.stream();
        match env.header.opcode {
            Opcode::AuthResponse => {}
            Opcode::Options => {
                sink.respond(stream, &Response::Supported(ctx.supported.clone()))
                    .await;
                continue;
            }
            other => {
                let message = format!("Unexpected message {other:?} during authentication");
                sink.error(stream, ErrorResponse::protocol_error(message))
                    .await;
                continue;
            }
        }
        exchanges += 1;
        let login = plain_body(&env, body_compression).ok();
        let answer = match session.backends[client_side.index()].request(env).await {
            Ok(a) => a,
            Err(e) => {
                sink.error(stream, e.to_response(RequestKind::Other)).await;
                return None;
            }
        };
        match answer.header.opcode {
            Opcode::AuthSuccess => {
                if let Some(Err(reason)) = &proxy_login {
                    let message = format!(
                        "ferry proxy: {proxy_side} rejected the proxy's own credentials: {reason}"
                    );
                    tracing::warn!(cluster = %proxy_side, %reason, "proxy login failed");
                    let error = ErrorResponse::new(ErrorKind::AuthenticationError, message);
                    sink.error(stream, error).await;
                    return None;
                }
                let mut success = answer;
                success.set_stream(stream);
                sink.send(success).await;
                let (Some(login), 1) = (login, exchanges) else {
                    return Some((session, None));
                };
                let mut logins = [Login::None, Login::None];
                logins[client_side.index()] = Login::Client(login);
                if proxy_login.is_some() {
                    logins[proxy_side.index()] = Login::Proxy;
                }
                return Some(session.join_pool(&options, &startup_body, logins));
            }
            _ => {
                // AUTH_CHALLENGE continues the exchange; an ERROR (bad credentials) ends it,
                // and the client decides what to do with its connection.
                let mut answer = answer;
                answer.set_stream(stream);
                sink.send(answer).await;
            }
        }
    }
}

impl Session {
    /// The session, a member of the shared pair of its shape when sharing is on (opening the
    /// pair if it is the first).
    fn join_pool(self, startup: &Startup, startup_body: &Bytes, logins: [Login; 2]) -> Started {
        if !self.ctx.config.share_backend_connections {
            return (self, None);
        }
        let own = self.backends.each_ref().map(|b| b.options().clone());
        let shape = Shape {
            version: self.version,
            compression: own[0].compression,
            options: pool::shape_options(startup),
            addrs: own.each_ref().map(|o| o.addr),
            logins,
        };
        let joined = self.ctx.pool.join(shape, startup_body);
        if joined.opens {
            tokio::spawn(pool::open(
                self.ctx.clone(),
                Arc::downgrade(&joined.entry),
                own,
            ));
        }
        (self, Some(pool::Member::new(joined.entry)))
    }

    /// [`pool::Member::refresh`] at a batch boundary where the member had no open pair or
    /// had entries left behind (the cold path); then the pair the batch may go over.
    #[cold]
    fn refresh<'m>(
        &self,
        member: &'m mut Option<pool::Member>,
        pinned: bool,
    ) -> Option<&'m [Backend; 2]> {
        let member = member.as_mut()?;
        let idle = self.sink.in_flight() == 0;
        if let Some(entry) = member.refresh(&self.ctx.pool, pinned, idle) {
            let own = self.backends.each_ref().map(|b| b.options().clone());
            tokio::spawn(pool::open(self.ctx.clone(), entry, own));
        }
        member.via().filter(|_| !pinned)
    }

    /// The connection a request to `cluster` goes over.
    fn pick<'a>(&'a self, via: Via<'a>, cluster: ClusterId) -> &'a Backend {
        &via.pair.unwrap_or(&self.backends)[cluster.index()]
    }

    /// Logs into `cluster` with the proxy's configured credentials (SASL PLAIN).
    async fn proxy_login(&self, cluster: ClusterId) -> Result<(), String> {
        let config = self.ctx.config.cluster(cluster);
        let (Some(user), Some(password)) = (&config.username, &config.password) else {
            return Err(format!(
                "{cluster} requires authentication and no {cluster} username/password is configured"
            ));
        };
        let request = AuthResponse::plain(user, password.expose());
        let env = ferry_cql::message::Request::AuthResponse(request)
            .to_envelope(self.version, 0, 0, &BodyExtensions::default())
            .map_err(|e| e.to_string())?;
        let answer = self.backends[cluster.index()]
            .request(env)
            .await
            .map_err(|e| e.to_string())?;
        match answer.header.opcode {
            Opcode::AuthSuccess => Ok(()),
            _ => Err(match self.decode_response(&answer) {
                Ok(Response::Error(e)) => e.message,
                Ok(other) => format!("unexpected {:?}", other.opcode()),
                Err(e) => e,
            }),
        }
    }

    async fn run(self: &Arc<Self>, reader: &mut FrameReader, mut member: Option<pool::Member>) {
        // Made once: they are polled again on every request.
        let stopping = self.ctx.shutting_down();
        let lost = self.backend_lost();
        tokio::pin!(stopping, lost);
        let mut recent = Recent::default();
        loop {
            // Requests the handshake's last read brought along come first.
            let item = if let Some(item) = reader.buffered() {
                Ok(Some(item))
            } else {
                // In this order, without drawing a random number per wake-up: the rare
                // branches first, so a client that always has input cannot hide them.
                tokio::select! {
                biased;
                () = &mut stopping => {
                    let deadline = Instant::now() + self.ctx.config.shutdown_grace;
                    return self.drain(reader, "shutting down", deadline, &member).await;
                }
                cluster = &mut lost => {
                    // A session without one of its clusters cannot write: what was in flight
                    // on the lost connection has failed; let the rest finish (they time out at
                    // the latest), then close, so the driver reconnects and gets new backend
                    // connections — or a STARTUP error while the cluster stays down.
                    tracing::info!(%cluster, "backend connection lost; closing the client connection");
                    let deadline = Instant::now() + self.ctx.config.request_timeout;
                    let reason = format!("the connection to {cluster} was lost, reconnect");
                    return self.drain(reader, &reason, deadline, &member).await;
                }
                item = reader.next() => item,
                }
            };
            // A read batch starts: the requests found in this read are queued for the clusters
            // together and written when it ends, from this task (see `Outbox`). The member
            // changes only here, between batches; the open pair of a member that did not `USE`
            // is found without the pool's lock.
            let pinned = self.pinned.load(Ordering::Relaxed);
            let pair = match member
                .as_ref()
                .filter(|m| !pinned && m.left.is_empty())
                .and_then(pool::Member::via)
            {
                Some(pair) => Some(pair),
                None if member.is_some() => self.refresh(&mut member, pinned),
                None => None,
            };
            // One clock reading per batch: its requests' send time.
            let read_at = std::time::Instant::now();
            let mut via = Via { pair, read_at };
            let mut batch = self.hold(via);
            let mut item = item;
            loop {
                match item {
                    Ok(Some(Inbound::Envelope(env))) => {
                        if via.pair.is_some()
                            && self.sink.in_flight() >= self.ctx.config.max_in_flight_per_connection
                        {
                            // What the client's own connection says when its stream ids run
                            // out.
                            let message = format!(
                                "ferry proxy: {} requests of this connection are in flight",
                                self.sink.in_flight()
                            );
                            self.sink
                                .error(env.stream(), ErrorResponse::overloaded(message))
                                .await;
                        } else {
                            self.handle(env, via, &mut recent).await;
                            if via.pair.is_some() && self.pinned.load(Ordering::Relaxed) {
                                // A USE: the rest goes over the session's own connections.
                                via = via.own();
                                batch = self.hold(via);
                            }
                        }
                    }
                    Ok(Some(malformed)) => {
                        if answer_malformed(malformed, &self.sink_tx()).await {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => return,
                }
                // The end of a read batch: what it queued goes out now, before waiting.
                let Some(next) = reader.buffered() else {
                    break;
                };
                item = Ok(Some(next));
            }
            drop(batch);
        }
    }

    /// Holds the client's outbox and those of the connections `via` names through a batch of
    /// requests.
    fn hold<'a>(&'a self, via: Via<'a>) -> Holding<'a, 3> {
        let [origin, target] = via.pair.unwrap_or(&self.backends);
        Holding::hold([&**self.sink.outbox(), origin.outbox(), target.outbox()])
    }

    /// Which cluster's connection died first.
    async fn backend_lost(&self) -> ClusterId {
        let mut origin = std::pin::pin!(self.backend(ClusterId::Origin).closed());
        let mut target = std::pin::pin!(self.backend(ClusterId::Target).closed());
        std::future::poll_fn(|cx| {
            if origin.as_mut().poll(cx).is_ready() {
                Poll::Ready(ClusterId::Origin)
            } else if target.as_mut().poll(cx).is_ready() {
                Poll::Ready(ClusterId::Target)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// The end of a session (shutdown, a lost backend connection): new requests get OVERLOADED
    /// (drivers retry them on another proxy instance or connection) while what is in flight
    /// finishes, until `deadline`.
    async fn drain(
        &self,
        reader: &mut FrameReader,
        reason: &str,
        deadline: Instant,
        member: &Option<pool::Member>,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
        loop {
            tokio::select! {
                item = reader.next() => match item {
                    Ok(Some(Inbound::Envelope(env))) => {
                        let error = ErrorResponse::overloaded(format!("ferry proxy: {reason}"));
                        self.sink.error(env.stream(), error).await;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return,
                },
                _ = tick.tick() => {
                    if self.idle(member.as_ref()) {
                        return;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Nothing of this session in flight: no request waits for an answer, and no answer is
    /// on its way to the client's outbox — from its own pair, its shared one, or one it left
    /// (a rejoin moves on while the old pair's surviving connection still answers).
    fn idle(&self, member: Option<&pool::Member>) -> bool {
        self.sink.in_flight() == 0
            && self.backends.iter().all(|b| b.in_flight() == 0)
            && member.is_none_or(|m| m.delivering() == 0)
    }

    fn sink_tx(&self) -> OutSender {
        self.sink.sender()
    }

    fn backend(&self, cluster: ClusterId) -> &Backend {
        &self.backends[cluster.index()]
    }

    fn keyspace(&self) -> Option<Arc<str>> {
        self.keyspace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn handle(self: &Arc<Self>, env: Envelope, via: Via<'_>, recent: &mut Recent) {
        let stream = env.stream();
        match env.header.opcode {
            Opcode::Query => self.query(env, via).await,
            Opcode::Execute => self.execute(env, via, recent).await,
            Opcode::Batch => self.batch(env, via).await,
            Opcode::Prepare => {
                let session = self.clone();
                tokio::spawn(async move { session.prepare(env).await });
            }
            Opcode::Register => {
                // Events come from origin only: one copy of each SCHEMA_CHANGE.
                let reply = Reply::new(self.sink.clone(), stream, RequestKind::Other);
                self.backend(ClusterId::Origin)
                    .send(env, Completion::Forward(reply))
                    .await;
            }
            Opcode::Options => {
                let supported = Response::Supported(self.ctx.supported.clone());
                self.sink.respond(stream, &supported).await;
            }
            other => {
                let message = format!("Unexpected message {other:?} on an established connection");
                self.sink
                    .error(stream, ErrorResponse::protocol_error(message))
                    .await;
            }
        }
    }

    /// The request body as the spec lays it out: decompressed, extensions removed.
    fn request_body(&self, env: &Envelope) -> Result<Bytes, String> {
        self.request_body_ref(env).map(Cow::into_owned)
    }

    /// [`Session::request_body`], borrowed when it is the envelope's body as it came (the
    /// usual request): a clone of a handle on the shared read buffer is an atomic operation.
    fn request_body_ref<'e>(&self, env: &'e Envelope) -> Result<Cow<'e, Bytes>, String> {
        let plain = flags::COMPRESSION | flags::CUSTOM_PAYLOAD | flags::TRACING;
        if env.header.flags & plain == 0 {
            return Ok(Cow::Borrowed(&env.body));
        }
        let body = plain_body(env, self.compression)?;
        if env.header.flags & (flags::CUSTOM_PAYLOAD | flags::TRACING) == 0 {
            return Ok(Cow::Owned(body));
        }
        let mut header = env.header;
        header.flags &= !flags::COMPRESSION;
        BodyExtensions::decode(&header, &body)
            .map(|(_, rest)| Cow::Owned(rest))
            .map_err(|e| e.to_string())
    }

    async fn protocol_error(&self, stream: i16, what: &str, detail: impl std::fmt::Display) {
        let message = format!("Invalid {what} message: {detail}");
        self.sink
            .error(stream, ErrorResponse::protocol_error(message))
            .await;
    }

    async fn query(self: &Arc<Self>, env: Envelope, via: Via<'_>) {
        let stream = env.stream();
        let body = match self.request_body(&env) {
            Ok(b) => b,
            Err(e) => return self.protocol_error(stream, "QUERY", e).await,
        };
        let (text, params) = match route::peek_query(&body) {
            Ok(x) => x,
            Err(e) => return self.protocol_error(stream, "QUERY", e).await,
        };
        let peek = match route::peek_params(params, self.version) {
            Ok(p) => p,
            Err(e) => return self.protocol_error(stream, "QUERY", e).await,
        };
        let info = classify(text);
        let keyspace = self.keyspace();
        let destination = route::destination(&info, keyspace.as_deref());
        match destination {
            Destination::Virtual(table) => {
                let values = match Query::decode(&mut &body[..], &body, self.version) {
                    Ok(q) => q.params.values,
                    Err(e) => return self.protocol_error(stream, "QUERY", e).await,
                };
                let session = self.clone();
                let text = text.to_owned();
                tokio::spawn(
                    async move { session.answer_virtual(stream, table, &text, &values).await },
                );
            }
            Destination::Primary | Destination::System => {
                let kind = RequestKind::Read {
                    consistency: peek.consistency,
                };
                let mirror_table = (destination == Destination::Primary
                    && info.kind == StatementKind::Select
                    && !peek.has_paging_state())
                .then(|| route::table_name(&info, keyspace.as_deref()))
                .flatten();
                let reply = Reply::new(self.sink.clone(), stream, kind);
                let same = |env: &Envelope| Ok(env.clone());
                let mirror_table = mirror_table.as_ref();
                self.read(env, same, destination, reply, mirror_table, &[], via)
                    .await;
            }
            Destination::Both(write) => {
                let mut via = via;
                if write == WriteKind::Use {
                    if let Some(ks) = &info.keyspace {
                        *self.keyspace.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(ks.normalized().into());
                    }
                    self.pinned.store(true, Ordering::Relaxed);
                    via = via.own();
                }
                let kind = request_kind(write, peek.consistency);
                let env = if let WriteKind::Data { .. } = write {
                    let calls = if self.ctx.config.replace_cql_functions {
                        &info.nondeterministic[..]
                    } else {
                        &[]
                    };
                    match self.rewrite_query(&env, &body, calls) {
                        Ok(env) => env,
                        Err(e) => return self.protocol_error(stream, "QUERY", e).await,
                    }
                } else {
                    env
                };
                let reply = Reply::new(self.sink.clone(), stream, kind);
                let table = route::table_name(&info, keyspace.as_deref());
                let after = match (&table, info.kind) {
                    (Some(table), StatementKind::AlterTable) => self.remigrate_after(table),
                    _ => None,
                };
                self.dual_write(env.clone(), env, reply, table, None, after, via)
                    .await;
            }
        }
    }

    /// A data-writing QUERY as both clusters must get it: `now()` and friends evaluated once,
    /// and a client timestamp when it has none.
    fn rewrite_query(
        &self,
        env: &Envelope,
        body: &Bytes,
        calls: &[NonDeterministicCall<'_>],
    ) -> Result<Envelope, String> {
        let mut source = SystemValueSource;
        let mut current = None;
        if !calls.is_empty() {
            current = Some(
                rewrite::rewrite_query_body(self.version, body, calls, &mut source)
                    .map_err(|e| e.to_string())?,
            );
        }
        current = self
            .with_timestamp(Opcode::Query, current.as_ref().unwrap_or(body), &mut source)?
            .or(current);
        match current {
            Some(new_body) => self.rebuild(env, new_body),
            None => Ok(env.clone()),
        }
    }

    /// The body with the protocol's default timestamp set, when configured and missing.
    fn with_timestamp(
        &self,
        opcode: Opcode,
        body: &Bytes,
        source: &mut SystemValueSource,
    ) -> Result<Option<Bytes>, String> {
        if !self.ctx.config.inject_timestamps {
            return Ok(None);
        }
        rewrite::inject_default_timestamp(self.version, opcode, body, source.now_micros())
            .map_err(|e| e.to_string())
    }

    /// Sends a read to the primary (or the system-queries cluster), mirrored to the secondary in
    /// dual-async mode. `origin_env` is the request as origin must get it; `target_env` makes
    /// target's copy (an EXECUTE with target's prepared id), only when target gets one;
    /// `prepared` the statement an EXECUTE names, prepared again if the secondary forgot it.
    #[allow(clippy::too_many_arguments, reason = "private, two call sites")]
    async fn read(
        self: &Arc<Self>,
        origin_env: Envelope,
        target_env: impl FnOnce(&Envelope) -> Result<Envelope, String>,
        destination: Destination,
        mut reply: Reply,
        mirror_table: Option<&Arc<str>>,
        prepared: &[Arc<PreparedEntry>],
        via: Via<'_>,
    ) {
        let live = &self.ctx.live;
        let cluster = match destination {
            Destination::System => self.ctx.config.system_queries,
            _ => live.primary(),
        };
        if cluster == ClusterId::Target {
            // Target's UNPREPARED names target's id: the client must get its own. Origin's
            // names the client's id already, so reads from origin keep no statements.
            reply.unprepared = Statements::from_slice(prepared);
        }
        // The backfill check only for reads that would be mirrored: the hot path of
        // primary-only pays nothing.
        let mirror_table = mirror_table.filter(|table| {
            live.read_mode() == ReadMode::DualAsync && self.ctx.migration.mirrors(table)
        });
        let target_env = if cluster == ClusterId::Target || mirror_table.is_some() {
            match target_env(&origin_env) {
                Ok(env) => Some(env),
                Err(e) => {
                    let what = opcode_name(origin_env.header.opcode);
                    return self.protocol_error(reply.stream, what, e).await;
                }
            }
        } else {
            None
        };
        let mut envs = [Some(origin_env), target_env];
        let Some(env) = envs[cluster.index()].take() else {
            return;
        };
        match mirror_table {
            Some(table) => {
                let secondary = cluster.other();
                let Some(secondary_env) = envs[secondary.index()].take() else {
                    return;
                };
                let retry = match cluster {
                    ClusterId::Origin => self.resend(prepared, &env, &secondary_env),
                    ClusterId::Target => self.resend(prepared, &secondary_env, &env),
                };
                let mirror = Mirror::new(
                    table.clone(),
                    cluster,
                    self.version,
                    self.compression,
                    self.ctx.mirror_stats.clone(),
                    retry,
                );
                let completion = Completion::ForwardMirrored(reply, mirror.clone(), cluster);
                self.pick(via, cluster).send(env, completion).await;
                self.pick(via, secondary)
                    .send(secondary_env, Completion::Mirror(mirror, secondary))
                    .await;
            }
            _ => {
                let backend = self.pick(via, cluster);
                if let Some(full) = backend.enqueue(&env, Completion::Forward(reply), via.read_at) {
                    backend.send_full(full).await;
                }
            }
        }
    }

    /// Sends a write to both clusters, the secondary's copy at `secondary_consistency` when
    /// one is set. `table` (and `key`, when known) name what a failure recorded for repair
    /// concerns; the statements the reply names (`Reply::unprepared`) are prepared again where
    /// one cluster forgot them; `after` runs once the write succeeded.
    #[allow(clippy::too_many_arguments, reason = "private, three call sites")]
    async fn dual_write(
        self: &Arc<Self>,
        origin_env: Envelope,
        target_env: Envelope,
        reply: Reply,
        table: Option<Arc<str>>,
        key: Option<KeySource>,
        after: Option<AfterSuccess>,
        via: Via<'_>,
    ) {
        let primary = self.ctx.live.primary();
        let mut envs = [origin_env, target_env];
        if let Some(consistency) = self.ctx.config.secondary_consistency {
            let secondary = &mut envs[primary.other().index()];
            match self.at_consistency(secondary, consistency) {
                Ok(Some(env)) => *secondary = env,
                Ok(None) => {}
                Err(e) => {
                    let what = opcode_name(secondary.header.opcode);
                    return self.protocol_error(reply.stream, what, e).await;
                }
            }
        }
        // With prepared statements (the reply names them, to translate UNPREPARED) the join
        // keeps the halves for a re-prepare, and they are sent from there; otherwise from here.
        let (kept, own) = if reply.unprepared.is_empty() {
            (None, Some(envs))
        } else {
            (Some(envs), None)
        };
        let join = Join::new(
            reply,
            primary,
            self.ctx.config.target_failure_policy,
            table,
            key,
            kept,
            after,
        );
        // One of the two holds them (`kept` is `Some` exactly when `own` is `None`).
        let Some([origin_env, target_env]) = own.as_ref().or_else(|| join.sent()) else {
            return;
        };
        let origin = self.pick(via, ClusterId::Origin);
        let origin_half = Completion::Join(join.clone(), ClusterId::Origin);
        if let Some(full) = origin.enqueue(origin_env, origin_half, via.read_at) {
            origin.send_full(full).await;
        }
        let target = self.pick(via, ClusterId::Target);
        // A clone, not the join itself: `target_env` may be borrowed from it.
        let target_half = Completion::Join(join.clone(), ClusterId::Target);
        if let Some(full) = target.enqueue(target_env, target_half, via.read_at) {
            target.send_full(full).await;
        }
    }

    /// `env` (a QUERY, EXECUTE or BATCH) at `consistency`; `None` when it is at it already.
    fn at_consistency(
        &self,
        env: &Envelope,
        consistency: ferry_cql::Consistency,
    ) -> Result<Option<Envelope>, String> {
        let body = self.request_body(env)?;
        match rewrite::set_consistency(self.version, env.header.opcode, &body, consistency) {
            Ok(Some(body)) => self.rebuild(env, body).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// What asks the migrator to re-migrate `table` once its ALTER TABLE succeeded; `None`
    /// without an Update channel.
    fn remigrate_after(&self, table: &Arc<str>) -> Option<AfterSuccess> {
        let link = self.ctx.update.clone()?;
        let name = crate::migration::table_name(table)?;
        Some(AfterSuccess(Box::new(move || {
            link.remigrate(name, "ALTER TABLE through the proxy".to_owned());
        })))
    }

    /// What sends one half of a request again after preparing its statements again, when the
    /// request names any. `origin_env`/`target_env` are the request as each cluster gets it.
    fn resend(
        self: &Arc<Self>,
        prepared: &[Arc<PreparedEntry>],
        origin_env: &Envelope,
        target_env: &Envelope,
    ) -> Option<Retry> {
        let (via, prepared) = self.retry_via(prepared)?;
        Some(Retry {
            via,
            sent: [origin_env.clone(), target_env.clone()],
            prepared,
        })
    }

    /// What a [`Retry`] of a request naming `prepared` needs besides its halves; `None` when
    /// it names none.
    fn retry_via(
        &self,
        prepared: &[Arc<PreparedEntry>],
    ) -> Option<(Arc<dyn Reprepare>, Statements)> {
        if prepared.is_empty() {
            return None;
        }
        Some((self.sink.reprepare()?, Statements::from_slice(prepared)))
    }

    async fn unprepared(&self, stream: i16, id: &[u8]) {
        self.sink
            .error(stream, ErrorResponse::unprepared(id.to_vec()))
            .await;
    }

    async fn execute(self: &Arc<Self>, env: Envelope, via: Via<'_>, recent: &mut Recent) {
        let stream = env.stream();
        let body = match self.request_body_ref(&env) {
            Ok(b) => b,
            Err(e) => return self.protocol_error(stream, "EXECUTE", e).await,
        };
        let (id, params) = match route::peek_execute(&body, self.version) {
            Ok(x) => (x.id, x.params),
            Err(e) => return self.protocol_error(stream, "EXECUTE", e).await,
        };
        let peek = match route::peek_params(params, self.version) {
            Ok(p) => p,
            Err(e) => return self.protocol_error(stream, "EXECUTE", e).await,
        };
        let Some(entry) = self.ctx.prepared.get_recent(recent, id) else {
            return self.unprepared(stream, id).await;
        };
        let mut via = via;
        if entry.destination == Destination::Both(WriteKind::Use) {
            // A prepared USE sets the keyspace of the connection it runs on, as a QUERY does.
            self.pinned.store(true, Ordering::Relaxed);
            via = via.own();
        }
        if let Destination::Virtual(table) = entry.destination {
            let values = match Execute::decode(&mut &body[..], &body, self.version) {
                Ok(e) => e.params.values,
                Err(e) => return self.protocol_error(stream, "EXECUTE", e).await,
            };
            let session = self.clone();
            let text = entry.text.clone();
            tokio::spawn(async move {
                session.answer_virtual(stream, table, &text, &values).await;
            });
            return;
        }
        let Some(target_id) = entry.target_id.as_ref() else {
            return self.unprepared(stream, id).await;
        };
        let rmid = entry.target_result_metadata_id.as_deref();
        let write = match entry.destination {
            Destination::Both(write) => write,
            destination => {
                // A read: what it needs of the body is read; target's copy, built only when target
                // gets one, takes the body from the request it is given.
                drop(body);
                let target_copy = |env: &Envelope| {
                    let body = self.request_body_ref(env)?;
                    rewrite::replace_execute_id(self.version, &body, target_id, rmid)
                        .map_err(|e| e.to_string())
                        .and_then(|b| self.rebuild(env, b))
                };
                // Borrowed: cloned only when the read is mirrored.
                let mirror = (destination == Destination::Primary && !peek.has_paging_state())
                    .then_some(entry.table.as_ref())
                    .flatten();
                let kind = RequestKind::Read {
                    consistency: peek.consistency,
                };
                let reply = Reply::new(self.sink.clone(), stream, kind);
                let prepared = std::slice::from_ref(entry);
                return self
                    .read(env, target_copy, destination, reply, mirror, prepared, via)
                    .await;
            }
        };
        // A data write's rewrite may build target's copy along with origin's. Origin's body is
        // kept for a `best-effort` repair record's key.
        let best_effort = self.ctx.config.target_failure_policy == TargetFailurePolicy::BestEffort;
        let (env, body, target_built) =
            if let Destination::Both(WriteKind::Data { .. }) = entry.destination {
                let plan = entry.plan.as_ref();
                match self.rewrite_execute(&env, &body, plan, (target_id, rmid), best_effort) {
                    Ok(rewritten) => rewritten,
                    Err(e) => return self.protocol_error(stream, "EXECUTE", e).await,
                }
            } else {
                let body = body.into_owned();
                (env, Some(body), None)
            };
        let target_env = match (target_built, &body) {
            (Some(env), _) => Ok(env),
            // Target's copy names target's id.
            (None, Some(body)) => rewrite::replace_execute_id(self.version, body, target_id, rmid)
                .map_err(|e| e.to_string())
                .and_then(|b| self.rebuild(&env, b)),
            // `rewrite_execute` returns a body whenever it built no copy for target.
            (None, None) => Err("no body to build target's request from".to_owned()),
        };
        let target_env = match target_env {
            Ok(e) => e,
            Err(e) => return self.protocol_error(stream, "EXECUTE", e).await,
        };
        let mut reply = Reply::new(
            self.sink.clone(),
            stream,
            request_kind(write, peek.consistency),
        );
        reply.unprepared = Statements::One(entry.clone());
        // What names a write the target failed: recorded for repair in `best-effort` only.
        let (table, key) = match body.filter(|_| best_effort) {
            Some(body) => {
                let key = entry.key_columns.clone().map(|columns| KeySource {
                    columns,
                    body,
                    version: self.version,
                });
                (entry.table.clone(), key)
            }
            None => (None, None),
        };
        self.dual_write(env, target_env, reply, table, key, None, via)
            .await
    }

    /// A data-writing EXECUTE as both clusters must get it: generated values for the markers
    /// the proxy put in place of `now()` and friends, and a client timestamp when it has none.
    /// Returns origin's request and body, and target's request (naming `target`'s ids: the
    /// prepared id and v5's result metadata id) when the timestamp was all that changed — the
    /// usual write, whose two bodies are then built in one go. Origin's body is returned
    /// then only when `keep_body` (a clone of a new body is an allocation and atomics).
    fn rewrite_execute(
        &self,
        env: &Envelope,
        body: &Bytes,
        plan: Option<&FunctionPlan>,
        target: (&[u8], Option<&[u8]>),
        keep_body: bool,
    ) -> Result<(Envelope, Option<Bytes>, Option<Envelope>), String> {
        let mut source = SystemValueSource;
        let mut current = None;
        let plan = plan.filter(|p| !p.is_empty());
        if plan.is_none() && self.ctx.config.inject_timestamps {
            let (target_id, rmid) = target;
            let both = rewrite::inject_default_timestamp_both(
                self.version,
                body,
                source.now_micros(),
                target_id,
                rmid,
            )
            .map_err(|e| e.to_string())?;
            return match both {
                Some((origin, target)) => {
                    let kept = keep_body.then(|| origin.clone());
                    Ok((
                        self.rebuild(env, origin)?,
                        kept,
                        Some(self.rebuild(env, target)?),
                    ))
                }
                None => Ok((env.clone(), Some(body.clone()), None)),
            };
        }
        if let Some(plan) = plan {
            current = Some(
                rewrite::insert_generated_values(self.version, body, plan, &mut source)
                    .map_err(|e| e.to_string())?,
            );
        }
        current = self
            .with_timestamp(
                Opcode::Execute,
                current.as_ref().unwrap_or(body),
                &mut source,
            )?
            .or(current);
        match current {
            Some(new_body) => Ok((self.rebuild(env, new_body.clone())?, Some(new_body), None)),
            None => Ok((env.clone(), Some(body.clone()), None)),
        }
    }

    /// A copy of `env` with a new (uncompressed) body, compressed again if the client's was.
    fn rebuild(&self, env: &Envelope, body: Bytes) -> Result<Envelope, String> {
        let header_flags = env.header.flags & !(flags::COMPRESSION | flags::CUSTOM_PAYLOAD);
        let rebuilt = Envelope::new(
            env.header.version,
            Direction::Request,
            header_flags & !flags::TRACING | (env.header.flags & flags::TRACING),
            env.stream(),
            env.header.opcode,
            body,
        );
        match self.compression {
            Some(c) if env.header.has_flag(flags::COMPRESSION) => {
                rebuilt.compressed(c).map_err(|e| e.to_string())
            }
            _ => Ok(rebuilt),
        }
    }

    async fn batch(self: &Arc<Self>, env: Envelope, via: Via<'_>) {
        let stream = env.stream();
        let body = match self.request_body(&env) {
            Ok(b) => b,
            Err(e) => return self.protocol_error(stream, "BATCH", e).await,
        };
        let consistency = match batch_consistency(&body, self.version) {
            Ok(c) => c,
            Err(e) => return self.protocol_error(stream, "BATCH", e).await,
        };
        let mut reply = Reply::new(
            self.sink.clone(),
            stream,
            RequestKind::Write {
                consistency,
                batch: true,
            },
        );
        // Every prepared child must be known here: its target id, and its function plan.
        let ids = match rewrite::batch_prepared_ids(self.version, &body) {
            Ok(ids) => ids,
            Err(e) => return self.protocol_error(stream, "BATCH", e).await,
        };
        let mut entries = Vec::with_capacity(ids.len());
        for (_, id) in &ids {
            match self.ctx.prepared.get(id) {
                Some(entry) if entry.target_id.is_some() => entries.push(entry),
                _ => return self.unprepared(stream, id).await,
            }
        }
        let find = |id: &[u8]| entries.iter().find(|e| e.origin_id.as_ref() == id).cloned();
        // The table a failure is recorded under: known when every child is a prepared
        // statement on the same table (`<type><n: short>` opens the body).
        let children = body
            .get(1..3)
            .map(|n| usize::from(u16::from_be_bytes([n[0], n[1]])));
        let table = match entries.first().and_then(|e| e.table.clone()) {
            Some(t)
                if children == Some(entries.len())
                    && entries.iter().all(|e| e.table.as_ref() == Some(&t)) =>
            {
                Some(t)
            }
            _ => None,
        };
        let mut source = SystemValueSource;
        let rewritten = if self.ctx.config.replace_cql_functions {
            rewrite::rewrite_batch(
                self.version,
                &body,
                |id| find(id).and_then(|e| e.plan.clone()),
                &mut source,
            )
        } else {
            Ok(None)
        };
        let rewritten = match rewritten {
            Ok(r) => r,
            Err(e) => return self.protocol_error(stream, "BATCH", e).await,
        };
        let stamped = match self.with_timestamp(
            Opcode::Batch,
            rewritten.as_ref().unwrap_or(&body),
            &mut source,
        ) {
            Ok(s) => s,
            Err(e) => return self.protocol_error(stream, "BATCH", e).await,
        };
        let (env, body) = match stamped.or(rewritten) {
            Some(new_body) => match self.rebuild(&env, new_body.clone()) {
                Ok(env) => (env, new_body),
                Err(e) => return self.protocol_error(stream, "BATCH", e).await,
            },
            None => (env, body),
        };
        let target_env = if entries.is_empty() {
            env.clone()
        } else {
            reply.unprepared = Statements::Many(entries.clone());
            let target_body = rewrite::replace_batch_ids(self.version, &body, |id| {
                find(id).and_then(|e| e.target_id.clone())
            });
            match target_body {
                Ok(b) => match self.rebuild(&env, b) {
                    Ok(e) => e,
                    Err(e) => return self.protocol_error(stream, "BATCH", e).await,
                },
                Err(BatchIdError::UnknownId { id, .. }) => {
                    return self.unprepared(stream, &id).await;
                }
                Err(e) => return self.protocol_error(stream, "BATCH", e).await,
            }
        };
        self.dual_write(env, target_env, reply, table, None, None, via)
            .await;
    }

    async fn prepare(self: Arc<Self>, env: Envelope) {
        let stream = env.stream();
        let body = match self.request_body(&env) {
            Ok(b) => b,
            Err(e) => return self.protocol_error(stream, "PREPARE", e).await,
        };
        let text = match route::peek_query(&body) {
            Ok((t, _)) => t,
            Err(e) => return self.protocol_error(stream, "PREPARE", e).await,
        };
        let info = classify(text);
        // v5 may name the keyspace in the PREPARE itself; it beats the session's.
        let keyspace = Prepare::decode(&mut &body[..], self.version)
            .ok()
            .and_then(|p| p.keyspace)
            .map(Arc::from)
            .or_else(|| self.keyspace());
        let destination = route::destination(&info, keyspace.as_deref());
        let table = route::table_name(&info, keyspace.as_deref());
        let text: Arc<str> = text.into();

        if let Destination::Virtual(_) = destination {
            // The proxy answers executions itself; the system-queries cluster describes the
            // bind variables.
            let cluster = self.ctx.config.system_queries;
            let answer = self.backend(cluster).request(env).await;
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    return self
                        .sink
                        .error(stream, e.to_response(RequestKind::Other))
                        .await;
                }
            };
            if let Ok(Response::Result(ResultBody::Prepared(p))) = self.decode_response(&answer) {
                self.ctx.prepared.insert(PreparedEntry::new(
                    text,
                    destination,
                    table,
                    p.id,
                    None,
                    None,
                ));
            }
            let mut answer = answer;
            answer.set_stream(stream);
            return self.sink.send(answer).await;
        }

        let mut plan = None;
        let env = match destination {
            Destination::Both(WriteKind::Data { .. })
                if self.ctx.config.replace_cql_functions && !info.nondeterministic.is_empty() =>
            {
                match rewrite::rewrite_prepare_body(self.version, &body, &info)
                    .map_err(|e| e.to_string())
                    .and_then(|(b, p)| Ok((self.rebuild(&env, b)?, p)))
                {
                    Ok((env, p)) => {
                        plan = Some(p);
                        env
                    }
                    Err(e) => return self.protocol_error(stream, "PREPARE", e).await,
                }
            }
            _ => env,
        };
        let (origin, target) = tokio::join!(
            self.backend(ClusterId::Origin).request(env.clone()),
            self.backend(ClusterId::Target).request(env)
        );
        let prepared = |r: &Result<Envelope, BackendError>| match r {
            Ok(a) if a.header.opcode == Opcode::Result => match self.decode_response(a) {
                Ok(Response::Result(ResultBody::Prepared(p))) => Some(p),
                _ => None,
            },
            _ => None,
        };
        match (prepared(&origin), prepared(&target)) {
            (Some(o), Some(t)) => {
                let mut entry = PreparedEntry::new(
                    text,
                    destination,
                    table,
                    o.id,
                    Some(t.id),
                    t.result_metadata_id,
                );
                let Ok(answer) = origin else { return };
                // The client binds only its own markers: the injected ones leave the metadata.
                let answer = match &plan {
                    Some(plan) => match self.strip_variables(&answer, plan) {
                        Ok(a) => a,
                        Err(e) => {
                            let error = ErrorResponse::server_error(format!("ferry proxy: {e}"));
                            return self.sink.error(stream, error).await;
                        }
                    },
                    None => answer,
                };
                if let Destination::Both(WriteKind::Data { .. }) = destination {
                    entry.key_columns = KeyColumns::from_metadata(&o.metadata);
                }
                entry.plan = plan;
                entry.keyspace = keyspace;
                self.ctx.prepared.insert(entry);
                let mut answer = answer;
                answer.set_stream(stream);
                self.sink.send(answer).await;
            }
            (o, _) => {
                // Origin's failure first; else target's.
                let failed = if o.is_none() { origin } else { target };
                match failed {
                    Ok(mut answer) => {
                        answer.set_stream(stream);
                        self.sink.send(answer).await;
                    }
                    Err(e) => {
                        self.sink
                            .error(stream, e.to_response(RequestKind::Other))
                            .await
                    }
                }
            }
        }
    }

    fn strip_variables(&self, answer: &Envelope, plan: &FunctionPlan) -> Result<Envelope, String> {
        let body = plain_body(answer, self.compression)?;
        let stripped = rewrite::strip_injected_variables(self.version, &body, plan)
            .map_err(|e| e.to_string())?;
        let mut header_flags = answer.header.flags & !flags::COMPRESSION;
        header_flags &= !(flags::WARNING | flags::CUSTOM_PAYLOAD | flags::TRACING);
        let plain = Envelope::new(
            answer.header.version,
            Direction::Response,
            header_flags,
            answer.stream(),
            answer.header.opcode,
            stripped,
        );
        match self.compression {
            Some(c) if answer.header.has_flag(flags::COMPRESSION) => {
                plain.compressed(c).map_err(|e| e.to_string())
            }
            _ => Ok(plain),
        }
    }

    fn decode_response(&self, env: &Envelope) -> Result<Response, String> {
        let body = plain_body(env, self.compression)?;
        let mut plain = Envelope::new(
            env.header.version,
            Direction::Response,
            env.header.flags & !flags::COMPRESSION,
            env.stream(),
            env.header.opcode,
            body,
        );
        plain.header.length = plain.body.len() as u32;
        Response::from_envelope(&plain)
            .map(|(_, r)| r)
            .map_err(|e| e.to_string())
    }

    /// Answers a SELECT on `system.local`/`peers`/`peers_v2` from the proxy's topology, with
    /// the real cluster's current `system.local` for what it copies.
    async fn answer_virtual(&self, stream: i16, table: VirtualTable, text: &str, values: &Values) {
        let real = match self.real_local().await {
            Ok(r) => r,
            Err(message) => {
                return self
                    .sink
                    .error(
                        stream,
                        ErrorResponse::server_error(format!("ferry proxy: {message}")),
                    )
                    .await;
            }
        };
        match self
            .ctx
            .topology
            .answer(table, text, values, &real, self.local_addr)
        {
            Ok(rows) => {
                let response = Response::Result(ResultBody::Rows(rows));
                self.sink.respond(stream, &response).await;
            }
            Err(error) => self.sink.error(stream, error).await,
        }
    }

    async fn real_local(&self) -> Result<RealNode, String> {
        let cluster = self.ctx.config.system_queries;
        let query = Query::new(REAL_LOCAL_QUERY, QueryParameters::default());
        let env = ferry_cql::message::Request::Query(query)
            .to_envelope(self.version, 0, 0, &BodyExtensions::default())
            .map_err(|e| e.to_string())?;
        let answer = self
            .backend(cluster)
            .request(env)
            .await
            .map_err(|e| e.to_string())?;
        match self.decode_response(&answer)? {
            Response::Result(ResultBody::Rows(rows)) => RealNode::from_rows(&rows),
            Response::Error(e) => Err(format!("{cluster} system.local: {}", e.message)),
            other => Err(format!(
                "{cluster} system.local: unexpected {:?}",
                other.opcode()
            )),
        }
    }
}

/// The session's [`Reprepare`]: prepares the statements of a request's half again on the one
/// cluster that forgot them and sends that cluster its half once more (the `completion` module
/// docs say why).
#[derive(Debug)]
struct Resender {
    /// Weak: a join sits in the session's own backend slots, and a client that is gone needs
    /// nothing resent.
    session: Weak<Session>,
    version: ProtocolVersion,
}

/// A cluster's answer standing for the resent half when preparing again failed.
type Failed = Result<Envelope, BackendError>;

impl Reprepare for Resender {
    fn resend(&self, retry: Retry, cluster: ClusterId, then: Completion) {
        let (session, version) = (self.session.clone(), self.version);
        tokio::spawn(async move {
            let Some(session) = session.upgrade() else {
                let gone = "ferry proxy: the client connection closed".to_owned();
                return then.complete(Ok(error_envelope(version, gone)), Duration::ZERO);
            };
            match again(retry, &session, cluster).await {
                Ok(env) => session.backend(cluster).send(env, then).await,
                Err(failed) => then.complete(failed, Duration::ZERO),
            }
        });
    }
}

/// Prepares every distinct statement of `retry` on `cluster` again; returns the half to send
/// there, with target's new ids spliced in.
async fn again(retry: Retry, session: &Session, cluster: ClusterId) -> Result<Envelope, Failed> {
    let version = session.version;
    let fail = |message: String| Ok(error_envelope(version, format!("ferry proxy: {message}")));
    // (target id in the request as sent, target's new id, its v5 result metadata id)
    let mut renamed: Vec<(Bytes, Bytes, Option<Bytes>)> = Vec::new();
    let mut distinct = 0;
    let prepared = retry.prepared.as_slice();
    for (i, entry) in prepared.iter().enumerate() {
        if prepared[..i].iter().any(|e| e.origin_id == entry.origin_id) {
            continue;
        }
        distinct += 1;
        let fresh = session.prepare_again(cluster, entry).await?;
        match (cluster, &entry.target_id) {
            (ClusterId::Origin, _) if fresh.id != entry.origin_id => {
                return Err(fail(format!(
                    "origin prepared {:?} again under id {:02x?}, not the client's {:02x?}",
                    entry.text,
                    &fresh.id[..],
                    &entry.origin_id[..]
                )));
            }
            (ClusterId::Origin, _) => {}
            (ClusterId::Target, Some(old)) => {
                let rmid = fresh.result_metadata_id.filter(|_| version.uses_segments());
                session
                    .ctx
                    .prepared
                    .insert(entry.with_target(fresh.id.clone(), rmid.clone()));
                renamed.push((old.clone(), fresh.id, rmid));
            }
            (ClusterId::Target, None) => {
                return Err(fail(format!("{:?} has no target id", entry.text)));
            }
        }
    }
    tracing::info!(%cluster, statements = distinct, "prepared again after UNPREPARED");
    let sent = &retry.sent[cluster.index()];
    if renamed.is_empty() {
        return Ok(sent.clone());
    }
    let body = session.request_body(sent).map_err(fail)?;
    let body = match sent.header.opcode {
        Opcode::Execute => {
            let (_, id, rmid) = &renamed[0];
            rewrite::replace_execute_id(version, &body, id, rmid.as_deref())
                .map_err(|e| e.to_string())
        }
        _ => rewrite::replace_batch_ids(version, &body, |id| {
            renamed
                .iter()
                .find(|(old, ..)| old.as_ref() == id)
                .map(|(_, new, _)| new.clone())
        })
        .map_err(|e| e.to_string()),
    };
    body.and_then(|b| session.rebuild(sent, b)).map_err(fail)
}

impl Session {
    /// Sends `entry`'s PREPARE to `cluster` again, as the proxy sent it the first time (the
    /// same text, `now()` and friends replaced by the same markers, the same keyspace).
    async fn prepare_again(
        &self,
        cluster: ClusterId,
        entry: &PreparedEntry,
    ) -> Result<ferry_cql::response::result::Prepared, Failed> {
        let fail = |message: String| {
            Err(Ok(error_envelope(
                self.version,
                format!(
                    "ferry proxy: cannot prepare {:?} again on {cluster}: {message}",
                    entry.text
                ),
            )))
        };
        let info = classify(&entry.text);
        let mut prepare = Prepare::new(entry.text.as_ref());
        let session_keyspace = self.keyspace();
        if entry.keyspace.is_some() && entry.keyspace != session_keyspace {
            if self.version.uses_segments() {
                prepare.keyspace = entry.keyspace.as_deref().map(str::to_owned);
            } else if info.keyspace.is_none() {
                // Before v5 a PREPARE resolves names in the connection's keyspace only.
                return fail(format!(
                    "it was prepared in keyspace {:?} and this connection now uses {:?}",
                    entry.keyspace, session_keyspace
                ));
            }
        }
        let mut body = bytes::BytesMut::new();
        if let Err(e) =
            ferry_cql::message::Request::Prepare(prepare).encode_body(&mut body, self.version)
        {
            return fail(e.to_string());
        }
        let mut body = body.freeze();
        if entry.plan.is_some() {
            match rewrite::rewrite_prepare_body(self.version, &body, &info) {
                Ok((rewritten, _)) => body = rewritten,
                Err(e) => return fail(e.to_string()),
            }
        }
        let env = Envelope::new(
            self.version,
            Direction::Request,
            0,
            0,
            Opcode::Prepare,
            body,
        );
        let answer = self.backend(cluster).request(env).await.map_err(Err)?;
        match self.decode_response(&answer) {
            Ok(Response::Result(ResultBody::Prepared(p))) => Ok(p),
            // The cluster's own refusal (the table is gone, …) is its answer to the request.
            _ if answer.header.opcode == Opcode::Error => Err(Ok(answer)),
            Ok(other) => fail(format!("it answered {:?}", other.opcode())),
            Err(e) => fail(e),
        }
    }
}

fn opcode_name(opcode: Opcode) -> &'static str {
    match opcode {
        Opcode::Query => "QUERY",
        Opcode::Execute => "EXECUTE",
        Opcode::Batch => "BATCH",
        _ => "request",
    }
}

/// A BATCH's consistency: after the children, which must be walked to find it.
fn batch_consistency(
    body: &Bytes,
    version: ProtocolVersion,
) -> Result<ferry_cql::Consistency, String> {
    Batch::decode(&mut &body[..], body, version)
        .map(|b| b.consistency)
        .map_err(|e| e.to_string())
}

fn request_kind(write: WriteKind, consistency: ferry_cql::Consistency) -> RequestKind {
    match write {
        WriteKind::Data { batch, .. } => RequestKind::Write { consistency, batch },
        WriteKind::Use | WriteKind::Other => RequestKind::Other,
    }
}
