//! A minimal HTTP/1.1 client for the proxies' and the migrator's admin APIs, as `ferry status`,
//! `ferry cutover` and `ferry demo` call them: one request per connection (`Connection: close`),
//! the answer read to its end, bounded in size and time.
//!
//! Why not hyper's client: the admin traffic is a handful of small requests to known servers,
//! usually on loopback; this stays within the features the workspace already compiles.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer read: a `/status` of many tables is a few hundred KiB.
const MAX_RESPONSE: usize = 8 * 1024 * 1024;
/// Connect plus request plus answer; admin endpoints answer from memory.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CallError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{method} {path} on {addr}: {source}")]
    Io {
        method: &'static str,
        path: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{method} {path} on {addr}: no answer within {}s", TIMEOUT.as_secs())]
    Timeout {
        method: &'static str,
        path: String,
        addr: SocketAddr,
    },
    #[error("{method} {path} on {addr}: answer larger than {MAX_RESPONSE} bytes")]
    TooLarge {
        method: &'static str,
        path: String,
        addr: SocketAddr,
    },
    #[error("{method} {path} on {addr}: not an HTTP/1 answer ({detail})")]
    Malformed {
        method: &'static str,
        path: String,
        addr: SocketAddr,
        detail: String,
    },
}

/// One admin server: its address and the bearer token PUTs and POSTs need.
#[derive(Debug, Clone)]
pub(crate) struct AdminClient {
    pub(crate) addr: SocketAddr,
    token: Option<String>,
}

/// An HTTP answer: status code and body text.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Answer {
    /// The body as JSON (`Value::Null` when it is not).
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The `error` field of a refusal, or the body itself.
    pub(crate) fn reason(&self) -> String {
        match self.json().get("error").and_then(Value::as_str) {
            Some(e) => e.to_owned(),
            None => self.body.trim().to_owned(),
        }
    }
}

impl AdminClient {
    pub(crate) fn new(addr: SocketAddr, token: Option<String>) -> Self {
        Self { addr, token }
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Answer, CallError> {
        self.call("GET", path, None).await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> Result<Answer, CallError> {
        self.call("PUT", path, Some(body.to_string())).await
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, CallError> {
        let addr = self.addr;
        match tokio::time::timeout(TIMEOUT, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout {
                method,
                path: path.to_owned(),
                addr,
            }),
        }
    }

    async fn exchange(
        &self,
        method: &'static str,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, CallError> {
        let addr = self.addr;
        let io = |source| CallError::Io {
            method,
            path: path.to_owned(),
            addr,
            source,
        };
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|source| CallError::Connect { addr, source })?;
        let body = body.unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        let limit = u64::try_from(MAX_RESPONSE + 1).unwrap_or(u64::MAX);
        (&mut stream)
            .take(limit)
            .read_to_end(&mut raw)
            .await
            .map_err(io)?;
        if raw.len() > MAX_RESPONSE {
            return Err(CallError::TooLarge {
                method,
                path: path.to_owned(),
                addr,
            });
        }
        parse(&raw).map_err(|detail| CallError::Malformed {
            method,
            path: path.to_owned(),
            addr,
            detail,
        })
    }
}

/// Status line, headers, body (whole, or chunked as hyper may send it).
fn parse(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without its end")?;
        let size_text = String::from_utf8_lossy(&body[..end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            return Err(format!("chunk of {size} bytes, {} left", body.len()));
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// Parses an admin address: `HOST:PORT`, or a bare host/IP that takes `default_port`.
pub(crate) fn admin_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let text = text.trim();
    let text = text
        .strip_prefix("http://")
        .unwrap_or(text)
        .trim_end_matches('/');
    let with_port = if text.parse::<SocketAddr>().is_ok() || has_port(text) {
        text.to_owned()
    } else if text.contains(':') && !text.starts_with('[') {
        // A bare IPv6 address.
        format!("[{text}]:{default_port}")
    } else {
        format!("{text}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

fn has_port(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_and_chunked_answers() {
        let a =
            parse(b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\n\r\n{}").unwrap_or_else(|e| {
                panic!("{e}");
            });
        assert_eq!((a.status, a.body.as_str()), (409, "{}"));
        let a = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.status, a.body.as_str()), (200, "abcde"));
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn addresses_take_the_default_port() {
        let a = |t| admin_addr(t, 14001).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a("127.0.0.1").to_string(), "127.0.0.1:14001");
        assert_eq!(a("127.0.0.1:9").to_string(), "127.0.0.1:9");
        assert_eq!(a("http://127.0.0.1:9/").to_string(), "127.0.0.1:9");
        assert_eq!(a("::1").to_string(), "[::1]:14001");
        assert_eq!(a("[::1]:7").to_string(), "[::1]:7");
    }

    #[test]
    fn refusals_give_their_reason() {
        let a = Answer {
            status: 409,
            body: r#"{"error": "not validated", "status": 409}"#.to_owned(),
        };
        assert_eq!(a.reason(), "not validated");
    }
}
