//! A bare CQL connection built on `ferry-cql`, for what drivers hide: the exact error code on a
//! stream, requests in flight side by side, events, and malformed input.

use std::net::SocketAddr;

use bytes::BytesMut;
use ferry_cql::envelope::{BodyExtensions, Envelope, EnvelopeDecoder};
use ferry_cql::message::{Request, Response};
use ferry_cql::protocol::{Opcode, ProtocolVersion};
use ferry_cql::request::{Query, QueryParameters, Startup};
use ferry_cql::response::error::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const V4: ProtocolVersion = ProtocolVersion::V4;

pub(crate) struct Raw {
    socket: TcpStream,
    buf: BytesMut,
    decoder: EnvelopeDecoder,
}

impl Raw {
    /// A TCP connection with nothing sent yet.
    pub(crate) async fn open(addr: SocketAddr) -> Self {
        Self {
            socket: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            decoder: EnvelopeDecoder::new(ferry_cql::envelope::DEFAULT_MAX_BODY_LEN),
        }
    }

    /// A v4 connection past STARTUP (no authentication).
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let mut raw = Self::open(addr).await;
        let answer = raw.startup().await;
        assert_eq!(answer.header.opcode, Opcode::Ready, "{answer:?}");
        raw
    }

    /// Sends STARTUP and returns the answer.
    pub(crate) async fn startup(&mut self) -> Envelope {
        let startup = Startup::new(ferry_cql::request::startup::DEFAULT_CQL_VERSION, None);
        self.send(0, &Request::Startup(startup)).await;
        self.recv().await.expect("an answer to STARTUP")
    }

    pub(crate) async fn send(&mut self, stream: i16, request: &Request) {
        let env = request
            .to_envelope(V4, stream, 0, &BodyExtensions::default())
            .unwrap();
        let mut out = BytesMut::new();
        env.write_to(&mut out);
        self.send_bytes(&out).await;
    }

    pub(crate) async fn send_query(&mut self, stream: i16, text: &str) {
        let query = Query::new(text, QueryParameters::default());
        self.send(stream, &Request::Query(query)).await;
    }

    pub(crate) async fn send_bytes(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.unwrap();
    }

    /// The next envelope; `None` once the proxy closed the connection.
    pub(crate) async fn recv(&mut self) -> Option<Envelope> {
        loop {
            if let Some(env) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(env);
            }
            match self.socket.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next answer (events skipped), decoded, with its stream.
    pub(crate) async fn recv_response(&mut self) -> (i16, Response) {
        loop {
            let env = self.recv().await.expect("the connection is open");
            if env.stream() >= 0 {
                return (env.stream(), decode(&env));
            }
        }
    }

    /// One request and its answer.
    pub(crate) async fn query(&mut self, text: &str) -> Response {
        self.send_query(1, text).await;
        let (stream, response) = self.recv_response().await;
        assert_eq!(stream, 1);
        response
    }
}

pub(crate) fn decode(env: &Envelope) -> Response {
    Response::from_envelope(env).unwrap().1
}

/// The error code of an ERROR answer; `None` for anything else.
pub(crate) fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(e) => e.code(),
        _ => None,
    }
}

pub(crate) fn is_rows(response: &Response) -> bool {
    matches!(
        response,
        Response::Result(ferry_cql::response::ResultBody::Rows(_))
    )
}
