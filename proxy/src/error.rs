//! What can go wrong between the proxy and a cluster, and the CQL ERROR the client gets for it.
//!
//! Every failure records which cluster it came from, so the same value drives the metric label
//! and the answer: a client never waits on silence, it gets a timeout, OVERLOADED or a server
//! error that names the cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_cql::Consistency;
use ferry_cql::response::error::{ErrorKind, ErrorResponse, WriteType};

use crate::settings::ClusterId;

/// A request that did not get a usable answer from one cluster.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("{cluster} ({addr}) did not answer within {timeout:?}")]
    Timeout {
        cluster: ClusterId,
        addr: SocketAddr,
        timeout: Duration,
    },
    #[error("the connection to {cluster} ({addr}) was lost: {reason}")]
    ConnectionLost {
        cluster: ClusterId,
        addr: SocketAddr,
        reason: Arc<str>,
    },
    #[error("all {limit} stream ids of the connection to {cluster} ({addr}) are in use")]
    StreamsExhausted {
        cluster: ClusterId,
        addr: SocketAddr,
        limit: usize,
    },
    #[error("cannot connect to {cluster} ({addr}): {reason}")]
    Connect {
        cluster: ClusterId,
        addr: SocketAddr,
        reason: Arc<str>,
    },
    #[error("cannot connect to {cluster}: no contact point resolved ({reason})")]
    NoContactPoint {
        cluster: ClusterId,
        reason: Arc<str>,
    },
}

impl BackendError {
    pub fn cluster(&self) -> ClusterId {
        match self {
            Self::Timeout { cluster, .. }
            | Self::ConnectionLost { cluster, .. }
            | Self::StreamsExhausted { cluster, .. }
            | Self::Connect { cluster, .. }
            | Self::NoContactPoint { cluster, .. } => *cluster,
        }
    }

    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::ConnectionLost { .. } => "connection_lost",
            Self::StreamsExhausted { .. } => "streams_exhausted",
            Self::Connect { .. } | Self::NoContactPoint { .. } => "connect",
        }
    }

    /// The ERROR the client gets for this failure of a request of `kind`.
    pub fn to_response(&self, kind: RequestKind) -> ErrorResponse {
        let message = format!("ferry proxy: {self}");
        match (self, kind) {
            (Self::Timeout { .. }, RequestKind::Read { consistency }) => ErrorResponse::new(
                ErrorKind::ReadTimeout {
                    consistency,
                    received: 0,
                    block_for: 1,
                    data_present: false,
                },
                message,
            ),
            (Self::Timeout { .. }, RequestKind::Write { consistency, batch }) => {
                ErrorResponse::new(
                    ErrorKind::WriteTimeout {
                        consistency,
                        received: 0,
                        block_for: 1,
                        write_type: if batch {
                            WriteType::Batch
                        } else {
                            WriteType::Simple
                        },
                        contentions: None,
                    },
                    message,
                )
            }
            // Drivers retry OVERLOADED on another node: right when this proxy instance is short
            // of stream ids or cannot reach a cluster at the moment.
            (
                Self::StreamsExhausted { .. } | Self::Connect { .. } | Self::NoContactPoint { .. },
                _,
            ) => ErrorResponse::overloaded(message),
            _ => ErrorResponse::server_error(message),
        }
    }
}

/// What a request does, as far as choosing its error answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read {
        consistency: Consistency,
    },
    Write {
        consistency: Consistency,
        batch: bool,
    },
    /// Handshake, PREPARE, DDL, USE, REGISTER: a timeout is a server error.
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_cql::response::error::ErrorCode;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9042))
    }

    #[test]
    fn each_failure_becomes_the_error_drivers_expect() {
        let timeout = BackendError::Timeout {
            cluster: ClusterId::Target,
            addr: addr(),
            timeout: Duration::from_secs(1),
        };
        let read = RequestKind::Read {
            consistency: Consistency::One,
        };
        let write = RequestKind::Write {
            consistency: Consistency::Quorum,
            batch: true,
        };
        assert_eq!(
            timeout.to_response(read).code(),
            Some(ErrorCode::ReadTimeout)
        );
        let w = timeout.to_response(write);
        assert!(matches!(
            w.kind,
            ErrorKind::WriteTimeout {
                consistency: Consistency::Quorum,
                write_type: WriteType::Batch,
                ..
            }
        ));
        assert!(w.message.contains("target"), "{}", w.message);
        let exhausted = BackendError::StreamsExhausted {
            cluster: ClusterId::Origin,
            addr: addr(),
            limit: 2048,
        };
        assert_eq!(
            exhausted.to_response(read).code(),
            Some(ErrorCode::Overloaded)
        );
        assert!(exhausted.to_string().contains("2048"));
        let lost = BackendError::ConnectionLost {
            cluster: ClusterId::Origin,
            addr: addr(),
            reason: "reset".into(),
        };
        assert_eq!(lost.to_response(write).code(), Some(ErrorCode::ServerError));
    }
}
