//! One client connection: handshake, authentication, protocol state, and the dispatch of
//! statement-carrying requests to the [`Handler`], each on its own task.
//!
//! # Life of one request
//!
//! ```text
//!  socket ──► FrameReader ──► Inbound::Envelope ──► Session::run (one task per connection)
//!             (envelope or      │  decompressed       │ version check, state check
//!              v5 segments)     │                     ├─ OPTIONS/STARTUP/AUTH_RESPONSE/REGISTER:
//!                               │                     │    answered inline (handshake order)
//!                               │                     └─ QUERY/PREPARE/EXECUTE/BATCH:
//!                               │                          take an in-flight permit, spawn ──┐
//!                               ▼                                                           │
//!             Malformed ──► ERROR PROTOCOL_ERROR on its stream (close only if fatal)       │
//!                                                                                           ▼
//!   request task: fault rules (delay / error / close / reset) ─► Handler::handle (polled
//!   under catch_unwind: a panic becomes SERVER_ERROR) ─► SetKeyspace/Prepared bookkeeping
//!   ─► encode on the request's stream ─► bounded queue ─► writer task (batches, compresses
//!   or segments) ─► socket
//! ```
//!
//! Requests of one connection run concurrently and answer in completion order; the writer is
//! the only one touching the socket's write side. Events from the cluster bus go through the
//! same queue on stream -1.

use std::any::Any;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use ferry_cql::compression::Compression;
use ferry_cql::envelope::{BodyExtensions, Envelope};
use ferry_cql::message::{Request, Response};
use ferry_cql::protocol::{Opcode, ProtocolVersion, flags};
use ferry_cql::request::{AuthResponse, BatchStatement, Startup};
use ferry_cql::response::authenticate::PASSWORD_AUTHENTICATOR;
use ferry_cql::response::error::ErrorCode;
use ferry_cql::response::event::EventType;
use ferry_cql::response::{
    AuthSuccess, Authenticate, ErrorKind, ErrorResponse, Event, Ready, ResultBody, Supported,
};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::connection::{
    FrameReader, Framing, Inbound, Outgoing, ReplyVersion, legacy_error, run_writer, split,
};
use super::faults::FaultAction;
use super::node::{ConnCommand, NodeShared};
use super::tls::{HANDSHAKE_TIMEOUT, SharedTcp};
use super::{Handler, RequestContext};

/// CQL version advertised in SUPPORTED (Cassandra 5.0's `QueryProcessor.CQL_VERSION`).
pub const CQL_VERSION: &str = "3.4.7";
/// Versions advertised in SUPPORTED. Cassandra 5.0 also lists "6/v6-beta", which this server
/// does not speak.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["3/v3", "4/v4", "5/v5"];
/// How long a closing connection may take to flush what is already queued.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(2);

/// Where the connection is in its handshake (Cassandra's `ServerConnection.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Uninitialized,
    Authenticating,
    Ready,
}

/// Connection state that request tasks read and update.
#[derive(Debug, Default)]
struct Shared {
    /// The keyspace of the last successful USE; snapshotted into each request's context.
    keyspace: Mutex<Option<String>>,
    /// Event types this connection REGISTERed for.
    registered: Mutex<Vec<EventType>>,
}

/// How the read loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Client hung up, I/O failed, fatal protocol error, or fault-injected close: abandon
    /// in-flight requests, flush what is queued, close.
    Close,
    /// Fault-injected reset: abandon everything, close with RST.
    Reset,
    /// Shutdown: let in-flight requests finish until the deadline.
    Drain(Instant),
}

pub(crate) struct Session<H: Handler> {
    node: Arc<NodeShared<H>>,
    conn_id: u64,
    peer: SocketAddr,
    stream: Arc<TcpStream>,
    commands: watch::Receiver<ConnCommand>,
    command_tx: Arc<watch::Sender<ConnCommand>>,
    tx: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
    in_flight: Arc<Semaphore>,
    /// Set to abandon in-flight requests: they answer with an error at once.
    abort: watch::Sender<bool>,
    phase: Phase,
    version: Option<ProtocolVersion>,
    user: Option<String>,
    /// Set once the connection REGISTERed; the forwarder task then reads `shared.registered`.
    events_started: bool,
}

impl<H: Handler> Session<H> {
    /// Serves one accepted connection until it ends.
    pub(crate) async fn serve(
        node: Arc<NodeShared<H>>,
        conn_id: u64,
        socket: TcpStream,
        peer: SocketAddr,
        commands: watch::Receiver<ConnCommand>,
        command_tx: Arc<watch::Sender<ConnCommand>>,
    ) {
        // Responses are small and latency matters more than packet count.
        let _ = socket.set_nodelay(true);
        let stream = Arc::new(socket);
        let tls = match &node.tls {
            Some(acceptor) => {
                let handshake = acceptor.accept(SharedTcp(stream.clone()));
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(tls)) => Some(tls),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                        return;
                    }
                }
            }
            None => None,
        };
        let (read, write) = split(&stream, tls);
        let (tx, rx) = mpsc::channel(node.config.write_queue);
        let writer = tokio::spawn(run_writer(write, rx).in_current_span());
        let in_flight = Arc::new(Semaphore::new(node.config.max_in_flight));
        let (abort, _) = watch::channel(false);
        let mut session = Session {
            node,
            conn_id,
            peer,
            stream: stream.clone(),
            commands,
            command_tx,
            tx,
            shared: Arc::default(),
            in_flight,
            abort,
            phase: Phase::Uninitialized,
            version: None,
            user: None,
            events_started: false,
        };
        let mut reader = FrameReader::new(read, session.node.config.max_body_len);
        let end = session.read_loop(&mut reader).await;
        session.finish(end, writer).await;
    }

    async fn read_loop(&mut self, reader: &mut FrameReader) -> End {
        loop {
            let item = tokio::select! {
                biased;
                end = wait_command(&mut self.commands) => return end,
                item = reader.next() => item,
            };
            let item = match item {
                Ok(Some(item)) => item,
                Ok(None) => return End::Close,
                Err(e) => {
                    tracing::debug!(error = %e, "connection read failed");
                    return End::Close;
                }
            };
            match item {
                Inbound::Malformed {
                    stream,
                    reply,
                    message,
                    fatal,
                } => {
                    tracing::debug!(stream, %message, fatal, "malformed input");
                    self.send_protocol_error(stream, reply, &message).await;
                    if fatal {
                        return End::Close;
                    }
                }
                Inbound::Envelope(env) => {
                    if let Some(end) = self.on_envelope(env, reader).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Handles one request envelope; `Some` ends the connection.
    async fn on_envelope(&mut self, env: Envelope, reader: &mut FrameReader) -> Option<End> {
        let header = env.header;
        let stream = header.stream;
        let reply_version = self.version.unwrap_or(header.version);
        if let Some(v) = self.version
            && v != header.version
        {
            let msg = format!(
                "Invalid message version. Got {} but previous messages on this connection had version {}",
                version_name(header.version),
                version_name(v)
            );
            self.send_error(reply_version, stream, ErrorResponse::protocol_error(msg))
                .await;
            return None;
        }
        if let Some(msg) = self.unexpected(header.opcode) {
            self.send_error(reply_version, stream, ErrorResponse::protocol_error(msg))
                .await;
            return None;
        }
        let (extensions, request) = match Request::from_envelope(&env) {
            Ok(r) => r,
            Err(e) => {
                self.send_error(
                    reply_version,
                    stream,
                    ErrorResponse::protocol_error(format!("Error decoding the request: {e}")),
                )
                .await;
                return None;
            }
        };
        match request {
            Request::Options(_) => {
                let supported =
                    Supported::new(&[CQL_VERSION], &["snappy", "lz4"], &PROTOCOL_VERSIONS);
                self.send(reply_version, stream, &Response::Supported(supported))
                    .await;
            }
            Request::Startup(startup) => {
                self.on_startup(header.version, stream, &startup, reader)
                    .await
            }
            Request::AuthResponse(auth) => {
                self.on_auth_response(reply_version, stream, &auth).await
            }
            Request::Register(register) => {
                {
                    let mut types = self
                        .shared
                        .registered
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    for t in register.events {
                        if !types.contains(&t) {
                            types.push(t);
                        }
                    }
                }
                if !self.events_started {
                    self.events_started = true;
                    tokio::spawn(
                        forward_events(
                            self.node.events.subscribe(),
                            self.shared.clone(),
                            self.tx.clone(),
                            reply_version,
                        )
                        .in_current_span(),
                    );
                }
                self.send(reply_version, stream, &Response::Ready(Ready))
                    .await;
            }
            request @ (Request::Query(_)
            | Request::Prepare(_)
            | Request::Execute(_)
            | Request::Batch(_)) => {
                let permit = tokio::select! {
                    biased;
                    end = wait_command(&mut self.commands) => return Some(end),
                    permit = self.in_flight.clone().acquire_owned() => permit.ok()?,
                };
                let keyspace = self
                    .shared
                    .keyspace
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let ctx = RequestContext {
                    node: self.node.info.clone(),
                    cluster: self.node.topology.clone(),
                    version: reply_version,
                    stream,
                    keyspace,
                    user: self.user.clone(),
                    extensions,
                    tracing: header.has_flag(flags::TRACING),
                    events: self.node.events.clone(),
                    connection_id: self.conn_id,
                    client: self.peer,
                };
                let task = RequestTask {
                    node: self.node.clone(),
                    shared: self.shared.clone(),
                    tx: self.tx.clone(),
                    abort: self.abort.subscribe(),
                    command_tx: self.command_tx.clone(),
                };
                let span = tracing::debug_span!("request", stream, opcode = ?header.opcode);
                // The task is the request's own future, nothing around it: every byte of it is
                // allocated per request (see `RequestTask::run`).
                tokio::spawn(task.run(Box::new((ctx, request)), permit).instrument(span));
            }
        }
        None
    }

    /// Cassandra's refusal for an opcode the handshake phase does not allow.
    fn unexpected(&self, opcode: Opcode) -> Option<String> {
        match self.phase {
            Phase::Uninitialized if !matches!(opcode, Opcode::Startup | Opcode::Options) => {
                Some(format!(
                    "Unexpected message {}, expecting STARTUP or OPTIONS",
                    opcode_name(opcode)
                ))
            }
            Phase::Authenticating if opcode != Opcode::AuthResponse => Some(format!(
                "Unexpected message {}, expecting SASL_RESPONSE",
                opcode_name(opcode)
            )),
            Phase::Ready if opcode == Opcode::Startup => {
                Some("Unexpected message STARTUP, the connection is already initialized".to_owned())
            }
            Phase::Ready if opcode == Opcode::AuthResponse => Some(
                "Unexpected message AUTH_RESPONSE, the connection is already authenticated"
                    .to_owned(),
            ),
            _ => None,
        }
    }

    async fn on_startup(
        &mut self,
        version: ProtocolVersion,
        stream: i16,
        startup: &Startup,
        reader: &mut FrameReader,
    ) {
        let compression = match check_startup(startup, version) {
            Ok(c) => c,
            Err(msg) => {
                self.send_error(version, stream, ErrorResponse::protocol_error(msg))
                    .await;
                return;
            }
        };
        self.version = Some(version);
        let response = if self.node.config.auth_enabled() {
            self.phase = Phase::Authenticating;
            Response::Authenticate(Authenticate::new(PASSWORD_AUTHENTICATOR))
        } else {
            self.phase = Phase::Ready;
            Response::Ready(Ready)
        };
        // The answer to STARTUP goes out in the old framing; everything after in the new one.
        self.send(version, stream, &response).await;
        let framing = if version.uses_segments() {
            Framing::Segments {
                lz4: compression == Some(Compression::Lz4),
            }
        } else {
            Framing::Envelopes(compression)
        };
        reader.set_framing(framing);
        let _ = self.tx.send(Outgoing::Switch(framing)).await;
    }

    async fn on_auth_response(
        &mut self,
        version: ProtocolVersion,
        stream: i16,
        auth: &AuthResponse,
    ) {
        match authenticate(&self.node.config.users, auth.token.as_deref()) {
            Ok(user) => {
                tracing::debug!(user, "authenticated");
                self.user = Some(user);
                self.phase = Phase::Ready;
                self.send(
                    version,
                    stream,
                    &Response::AuthSuccess(AuthSuccess::new(None)),
                )
                .await;
            }
            Err(msg) => {
                self.send_error(
                    version,
                    stream,
                    ErrorResponse::new(ErrorKind::AuthenticationError, msg),
                )
                .await;
            }
        }
    }

    async fn send(&self, version: ProtocolVersion, stream: i16, response: &Response) {
        match response.to_envelope(version, stream, &BodyExtensions::default()) {
            Ok(env) => {
                let _ = self.tx.send(Outgoing::Envelope(env)).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode a response"),
        }
    }

    async fn send_error(&self, version: ProtocolVersion, stream: i16, error: ErrorResponse) {
        self.send(version, stream, &Response::Error(error)).await;
    }

    async fn send_protocol_error(&self, stream: i16, reply: Option<ReplyVersion>, message: &str) {
        // Once the connection has a version, every answer uses it (Cassandra's channel version).
        let reply = match (self.version, reply) {
            (_, Some(ReplyVersion::Legacy(v))) => ReplyVersion::Legacy(v),
            (Some(v), _) => ReplyVersion::Known(v),
            (None, Some(r)) => r,
            (None, None) => ReplyVersion::Known(ProtocolVersion::HIGHEST),
        };
        match reply {
            ReplyVersion::Known(v) => {
                self.send_error(v, stream, ErrorResponse::protocol_error(message))
                    .await;
            }
            ReplyVersion::Legacy(v) => {
                let raw = legacy_error(v, stream, ErrorCode::ProtocolError.as_i32(), message);
                let _ = self.tx.send(Outgoing::Raw(raw)).await;
            }
        }
    }

    /// Ends the connection as `end` says, and waits for everything it started.
    async fn finish(self, end: End, mut writer: tokio::task::JoinHandle<std::io::Result<()>>) {
        let all = self.node.config.max_in_flight as u32;
        if let End::Drain(deadline) = end {
            let drained = tokio::time::timeout_at(deadline, self.in_flight.acquire_many(all)).await;
            if drained.is_err() {
                tracing::debug!("grace period over: answering the remaining requests with errors");
            }
        }
        // Whatever is still running answers with an error now.
        self.abort.send_replace(true);
        let _ = self.in_flight.acquire_many(all).await;
        let Session { stream, tx, .. } = self;
        drop(tx);
        if end == End::Reset {
            writer.abort();
            let _ = (&mut writer).await;
            // Linger 0 turns the close into an RST.
            #[allow(deprecated, reason = "a zero linger never blocks on close")]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
            return;
        }
        // Event forwarders hold queue senders too; they notice the closing socket when they
        // next send, so the writer is bounded by time rather than by them.
        match tokio::time::timeout(FLUSH_ON_CLOSE, &mut writer).await {
            Ok(_) => {}
            Err(_) => writer.abort(),
        }
        drop(stream);
    }
}

/// Waits for a command that ends the connection (close, reset, drain).
async fn wait_command(commands: &mut watch::Receiver<ConnCommand>) -> End {
    loop {
        match *commands.borrow_and_update() {
            ConnCommand::Run => {}
            ConnCommand::Close => return End::Close,
            ConnCommand::Reset => return End::Reset,
            ConnCommand::Drain(deadline) => return End::Drain(deadline),
        }
        if commands.changed().await.is_err() {
            // The node dropped the sender: it is gone, so close.
            return End::Close;
        }
    }
}

/// One statement-carrying request on its own task.
struct RequestTask<H: Handler> {
    node: Arc<NodeShared<H>>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Outgoing>,
    abort: watch::Receiver<bool>,
    command_tx: Arc<watch::Sender<ConnCommand>>,
}

impl<H: Handler> RequestTask<H> {
    /// Answers one request, holding its in-flight `permit` until done.
    ///
    /// Size matters here: this future is the per-request task allocation. Above glibc's
    /// small-bin sizes (~1 KiB), freed task cells leave holes that long-lived store values
    /// split, and the loaded simulator's resident memory grew by about a task cell per
    /// write; so the rarely large parts (fault handling, the handler) are boxed too.
    /// `incoming` comes boxed because an async fn keeps its arguments twice in its state (as
    /// arguments and as locals): boxed, the copy is 8 bytes.
    async fn run(self, incoming: Box<(RequestContext, Request)>, permit: OwnedSemaphorePermit) {
        let _permit = permit;
        let (ctx, request) = *incoming;
        let version = ctx.version;
        let stream = ctx.stream;
        let opcode = request.opcode();
        let verdict = if self.node.faults.is_empty() {
            Default::default()
        } else {
            let texts = self.statement_texts(&request);
            let refs: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
            let consistency = match &request {
                Request::Query(q) => Some(q.params.consistency),
                Request::Execute(e) => Some(e.params.consistency),
                Request::Batch(b) => Some(b.consistency),
                _ => None,
            };
            self.node
                .faults
                .check(opcode, consistency, &refs, ctx.keyspace.as_deref())
        };
        let prepared_text = match &request {
            Request::Prepare(p) => Some(Arc::<str>::from(p.query.as_str())),
            _ => None,
        };
        let handler = self.node.handler.clone();
        let work = Box::pin(async {
            if let Some(delay) = verdict.delay {
                tokio::time::sleep(delay).await;
            }
            match verdict.outcome {
                Some(FaultAction::Error(e)) => Some(Response::Error(e)),
                Some(FaultAction::CloseConnection) => {
                    self.command_tx.send_replace(ConnCommand::Close);
                    None
                }
                Some(FaultAction::ResetConnection) => {
                    self.command_tx.send_replace(ConnCommand::Reset);
                    None
                }
                Some(_) | None => {
                    // Polled in place under catch_unwind: a panicking handler costs one
                    // SERVER_ERROR, not the connection, without a second task (and its
                    // allocation) per request; dropped, so cancelled, if the request is
                    // abandoned.
                    let mut job = std::pin::pin!(handler.handle(&ctx, request));
                    let outcome = std::future::poll_fn(|cx| {
                        match std::panic::catch_unwind(AssertUnwindSafe(|| job.as_mut().poll(cx))) {
                            Ok(Poll::Ready(response)) => Poll::Ready(Ok(response)),
                            Ok(Poll::Pending) => Poll::Pending,
                            Err(panic) => Poll::Ready(Err(panic_message(panic.as_ref()))),
                        }
                    })
                    .await;
                    Some(match outcome {
                        Ok(response) => response,
                        Err(message) => {
                            tracing::error!(%message, "handler panicked");
                            Response::Error(ErrorResponse::server_error(format!(
                                "java.lang.RuntimeException: request handler failed: {message}"
                            )))
                        }
                    })
                }
            }
        });
        let mut abort = self.abort.clone();
        let response = tokio::select! {
            r = work => r,
            _ = abort.wait_for(|a| *a) => Some(abandoned()),
        };
        let Some(response) = response else {
            return;
        };
        match &response {
            Response::Result(ResultBody::SetKeyspace(ks)) => {
                *self
                    .shared
                    .keyspace
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(ks.clone());
            }
            Response::Result(ResultBody::Prepared(p)) => {
                if let Some(text) = prepared_text {
                    self.node.remember_prepared(p.id.clone(), text);
                }
            }
            _ => {}
        }
        let env = match response.to_envelope(version, stream, &BodyExtensions::default()) {
            Ok(env) => env,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the handler's response");
                let err = Response::Error(ErrorResponse::server_error(format!(
                    "Cannot encode the response: {e}"
                )));
                match err.to_envelope(version, stream, &BodyExtensions::default()) {
                    Ok(env) => env,
                    Err(_) => return,
                }
            }
        };
        let _ = self.tx.send(Outgoing::Envelope(env)).await;
    }

    /// The statement text of each statement in the request, for fault matching. EXECUTE looks
    /// up what this node saw prepared under the id.
    fn statement_texts(&self, request: &Request) -> Vec<Option<Arc<str>>> {
        match request {
            Request::Query(q) => vec![Some(Arc::from(q.query.as_str()))],
            Request::Prepare(p) => vec![Some(Arc::from(p.query.as_str()))],
            Request::Execute(e) => vec![self.node.prepared_text(&e.id)],
            Request::Batch(b) => b
                .children
                .iter()
                .map(|c| match &c.statement {
                    BatchStatement::Query(q) => Some(Arc::from(q.as_str())),
                    BatchStatement::Prepared(id) => self.node.prepared_text(id),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A panic payload as text (`panic!` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn abandoned() -> Response {
    Response::Error(ErrorResponse::server_error(
        "Request abandoned: the node is shutting down or the connection is closing",
    ))
}

/// Pushes cluster events of the registered types to the connection until it closes.
async fn forward_events(
    mut rx: broadcast::Receiver<Event>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Outgoing>,
    version: ProtocolVersion,
) {
    loop {
        let event = tokio::select! {
            _ = tx.closed() => return,
            e = rx.recv() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "connection fell behind the event bus");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let wanted = shared
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&event.event_type());
        if !wanted {
            continue;
        }
        match Response::Event(event).to_envelope(version, -1, &BodyExtensions::default()) {
            Ok(env) => {
                if tx.send(Outgoing::Envelope(env)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode an event"),
        }
    }
}

/// Validates STARTUP options as Cassandra's `StartupMessage.execute` does; returns the
/// compression asked for.
fn check_startup(
    startup: &Startup,
    version: ProtocolVersion,
) -> Result<Option<Compression>, String> {
    let Some(cql) = startup.cql_version() else {
        return Err("Missing value CQL_VERSION in STARTUP message".to_owned());
    };
    let major = cql.split('.').next().and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 3 => {}
        Some(_) => {
            return Err(format!(
                "CQL version {cql} is not supported by the binary protocol (supported version are >= 3.0.0)"
            ));
        }
        None => return Err(format!("Invalid version value: {cql}")),
    }
    let Some(name) = startup.compression() else {
        return Ok(None);
    };
    let unknown = || {
        format!(
            "Unknown compression algorithm: {}",
            name.to_ascii_lowercase()
        )
    };
    let algorithm: Compression = name.parse().map_err(|_| unknown())?;
    if !algorithm.supported_in(version) {
        return Err(unknown());
    }
    Ok(Some(algorithm))
}

/// Checks a SASL PLAIN token (`[authzid] NUL user NUL password`) against `users`, with
/// PasswordAuthenticator's messages; returns the user name.
fn authenticate(users: &[(String, String)], token: Option<&[u8]>) -> Result<String, String> {
    let token = token.unwrap_or_default();
    // Split from the end, as Cassandra's PlainTextSaslAuthenticator does.
    let mut parts = token.rsplitn(3, |b| *b == 0);
    let password = parts.next().filter(|p| !p.is_empty());
    let user = parts.next().filter(|u| !u.is_empty());
    let Some(user) = user else {
        return Err("Authentication ID must not be null".to_owned());
    };
    let Some(password) = password else {
        return Err("Password must not be null".to_owned());
    };
    let user = String::from_utf8_lossy(user).into_owned();
    let ok = users
        .iter()
        .any(|(u, p)| *u == user && p.as_bytes() == password);
    if ok {
        Ok(user)
    } else {
        Err(format!(
            "Provided username {user} and/or password are incorrect"
        ))
    }
}

/// Cassandra's `Message.Type` names, used in its protocol error messages.
fn opcode_name(opcode: Opcode) -> &'static str {
    match opcode {
        Opcode::Error => "ERROR",
        Opcode::Startup => "STARTUP",
        Opcode::Ready => "READY",
        Opcode::Authenticate => "AUTHENTICATE",
        Opcode::Options => "OPTIONS",
        Opcode::Supported => "SUPPORTED",
        Opcode::Query => "QUERY",
        Opcode::Result => "RESULT",
        Opcode::Prepare => "PREPARE",
        Opcode::Execute => "EXECUTE",
        Opcode::Register => "REGISTER",
        Opcode::Event => "EVENT",
        Opcode::Batch => "BATCH",
        Opcode::AuthChallenge => "AUTH_CHALLENGE",
        Opcode::AuthResponse => "AUTH_RESPONSE",
        Opcode::AuthSuccess => "AUTH_SUCCESS",
    }
}

/// Cassandra's `ProtocolVersion.toString`, e.g. "4/v4".
fn version_name(v: ProtocolVersion) -> String {
    format!("{}/v{}", v.as_u8(), v.as_u8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Vec<(String, String)> {
        vec![("cassandra".to_owned(), "cassandra".to_owned())]
    }

    #[test]
    fn sasl_plain_with_and_without_authzid() {
        assert_eq!(
            authenticate(&users(), Some(b"\0cassandra\0cassandra")),
            Ok("cassandra".to_owned())
        );
        assert_eq!(
            authenticate(&users(), Some(b"zid\0cassandra\0cassandra")),
            Ok("cassandra".to_owned())
        );
        assert_eq!(
            authenticate(&users(), Some(b"\0cassandra\0nope")),
            Err("Provided username cassandra and/or password are incorrect".to_owned())
        );
        assert_eq!(
            authenticate(&users(), Some(b"\0cassandra\0")),
            Err("Password must not be null".to_owned())
        );
        assert_eq!(
            authenticate(&users(), None),
            Err("Authentication ID must not be null".to_owned())
        );
    }

    #[test]
    fn startup_checks_follow_cassandra() {
        let v4 = ProtocolVersion::V4;
        assert_eq!(check_startup(&Startup::new("3.0.0", None), v4), Ok(None));
        assert_eq!(
            check_startup(&Startup::new("3.4.7", Some("snappy")), v4),
            Ok(Some(Compression::Snappy))
        );
        assert_eq!(
            check_startup(&Startup::new("3.0.0", Some("snappy")), ProtocolVersion::V5),
            Err("Unknown compression algorithm: snappy".to_owned())
        );
        assert!(check_startup(&Startup::new("2.0.0", None), v4).is_err());
        let mut s = Startup::new("3.0.0", None);
        s.remove("CQL_VERSION");
        assert_eq!(
            check_startup(&s, v4),
            Err("Missing value CQL_VERSION in STARTUP message".to_owned())
        );
    }
}
