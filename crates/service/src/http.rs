//! The admin HTTP/1 server every service runs (the proxy's, the migrator's, `ferry sim`'s):
//! binding, the accept loop with a connection limit, a header timeout and graceful stop; and the
//! pieces every endpoint needs (JSON and text responses, the `{"error", "status"}` body,
//! bounded request bodies, bearer tokens).
//!
//! ```text
//!  accept ─► permit (MAX_CONNECTIONS; over it, clients wait in the backlog, unread)
//!         ─► hyper http1 connection (header read timeout) ─► Handler::handle
//!  stop   ─► no more accepts ─► each connection finishes its request (SHUTDOWN_GRACE)
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Admin connections served at once; more wait in the listen backlog. Prometheus, a probe and
/// an operator need a handful.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its request head within this, so idle clients cannot hold a slot.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long requests in progress may take to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest pause after repeated accept errors (e.g. out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A response with its whole body in memory (admin answers are small).
pub type Reply = Response<Full<Bytes>>;

/// Answers requests; every outcome, error or not, is a response.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Reply> + Send;
}

/// Serves `handler` on `listener` until `shutdown` completes; then stops accepting, lets
/// requests in progress finish within [`SHUTDOWN_GRACE`], and returns.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(1);
    tokio::pin!(shutdown);
    loop {
        let accept = async {
            // A permit first, so connections over the limit wait in the backlog, unread.
            let permit = limit.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            (permit, accepted) = accept => {
                // The semaphore is never closed.
                let Ok(permit) = permit else { break };
                match accepted {
                    Ok((stream, peer)) => {
                        backoff = Duration::from_millis(1);
                        let handler = handler.clone();
                        let mut stop = stop_rx.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |req| {
                                let handler = handler.clone();
                                async move { Ok::<_, Infallible>(handler.handle(req).await) }
                            });
                            let conn = http1::Builder::new()
                                .timer(TokioTimer::new())
                                .header_read_timeout(HEADER_READ_TIMEOUT)
                                .serve_connection(TokioIo::new(stream), service);
                            tokio::pin!(conn);
                            let result = tokio::select! {
                                r = conn.as_mut() => r,
                                // The only change ever sent is the stop.
                                _ = stop.changed() => {
                                    conn.as_mut().graceful_shutdown();
                                    tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut())
                                        .await
                                        .unwrap_or(Ok(()))
                                }
                            };
                            if let Err(e) = result {
                                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, ?backoff, "admin accept failed, backing off");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    }
                }
            }
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    while connections.join_next().await.is_some() {}
}

/// A running admin server, stopped with [`AdminServer::stop`].
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Binds `listen` and serves `handler` until [`AdminServer::stop`].
    pub async fn start<H: Handler>(listen: SocketAddr, handler: Arc<H>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, handler, async move {
            // Sender dropped or stop sent: either way, stop.
            let _ = stop_rx.changed().await;
        }));
        tracing::info!(%addr, "admin HTTP listening");
        Ok(Self { addr, stop, task })
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and lets requests in progress finish (within a grace period).
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// `body` as JSON with a trailing newline (curl-friendly).
pub fn json_response(status: StatusCode, body: &Value) -> Reply {
    // Serializing a `Value` cannot fail (its map keys are strings).
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The body every refusal gets: `{"error": message, "status": N}`.
pub fn error_response(status: StatusCode, message: &str) -> Reply {
    json_response(
        status,
        &json!({"error": message, "status": status.as_u16()}),
    )
}

/// Plain text (`/health/liveness`).
pub fn text_response(status: StatusCode, text: &'static str) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Prometheus' text exposition format.
pub fn metrics_response(text: impl Into<Bytes>) -> Reply {
    let mut resp = Response::new(Full::new(text.into()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    Read(String),
}

/// The whole body, refused past `limit` bytes (without reading further).
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// Why a bearer token check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("no `Authorization: Bearer <token>` header")]
    Missing,
    #[error("the bearer token does not match")]
    Wrong,
}

/// Checks `Authorization: Bearer <token>` against `expected`.
pub fn check_bearer<B>(req: &Request<B>, expected: &str) -> Result<(), TokenError> {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or(TokenError::Missing)?;
    if same_secret(given.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(TokenError::Wrong)
    }
}

/// Compares without stopping at the first difference, so response times do not reveal how
/// much of a guessed token was right.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn bearer_tokens() {
        let req = |h: Option<&str>| {
            let mut b = Request::builder();
            if let Some(h) = h {
                b = b.header(AUTHORIZATION, h);
            }
            b.body(()).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(check_bearer(&req(None), "t"), Err(TokenError::Missing));
        assert_eq!(
            check_bearer(&req(Some("Basic t")), "t"),
            Err(TokenError::Missing)
        );
        assert_eq!(
            check_bearer(&req(Some("Bearer x")), "t"),
            Err(TokenError::Wrong)
        );
        assert_eq!(check_bearer(&req(Some("bearer t ")), "t"), Ok(()));
    }
}
