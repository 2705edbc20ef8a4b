//! ERROR (spec v4 §4.2.1 and §9, v5 §9): `[int]` code, `[string]` message, then fields that
//! depend on the code.
//!
//! Versions differ in three places, all handled here:
//! - Read_failure / Write_failure carry `<numfailures>` (`[int]`) in v3/v4 and `<reasonmap>` (an
//!   `[int]` n then n × (`[inetaddr]`, `[short]` failure code)) in v5. See [`Failures`].
//! - Write_timeout carries a trailing `[short]` `<contentions>` in v5 when the write type is CAS.
//! - The v3 spec has no Read_failure, Function_failure, Write_failure, CDC_WRITE_FAILURE or
//!   CAS_WRITE_UNKNOWN (Cassandra downgrades them for v3 clients). Their layouts cannot clash with
//!   anything in v3, so they are read and written with the v4 layout there too.
//!
//! Unknown codes decode to [`ErrorKind::Other`], which keeps every byte after the message, so a
//! proxy can forward an error from a newer server byte-identically.

use std::fmt;
use std::net::IpAddr;

use bytes::BufMut;

use crate::protocol::{Consistency, ProtocolVersion, read_consistency, write_consistency};
use crate::wire::{
    DecodeError, EncodeError, read_byte, read_inetaddr, read_int, read_raw, read_short,
    read_short_bytes, read_string, read_string_list, write_byte, write_inetaddr, write_int,
    write_short, write_short_bytes, write_string, write_string_list,
};

/// Error codes (spec v5 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorCode {
    ServerError = 0x0000,
    ProtocolError = 0x000A,
    AuthenticationError = 0x0100,
    Unavailable = 0x1000,
    Overloaded = 0x1001,
    IsBootstrapping = 0x1002,
    TruncateError = 0x1003,
    WriteTimeout = 0x1100,
    ReadTimeout = 0x1200,
    ReadFailure = 0x1300,
    FunctionFailure = 0x1400,
    WriteFailure = 0x1500,
    CdcWriteFailure = 0x1600,
    CasWriteUnknown = 0x1700,
    SyntaxError = 0x2000,
    Unauthorized = 0x2100,
    Invalid = 0x2200,
    ConfigError = 0x2300,
    AlreadyExists = 0x2400,
    Unprepared = 0x2500,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        Self::ServerError,
        Self::ProtocolError,
        Self::AuthenticationError,
        Self::Unavailable,
        Self::Overloaded,
        Self::IsBootstrapping,
        Self::TruncateError,
        Self::WriteTimeout,
        Self::ReadTimeout,
        Self::ReadFailure,
        Self::FunctionFailure,
        Self::WriteFailure,
        Self::CdcWriteFailure,
        Self::CasWriteUnknown,
        Self::SyntaxError,
        Self::Unauthorized,
        Self::Invalid,
        Self::ConfigError,
        Self::AlreadyExists,
        Self::Unprepared,
    ];

    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The spec's name for the code, for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::ServerError => "server_error",
            Self::ProtocolError => "protocol_error",
            Self::AuthenticationError => "authentication_error",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::IsBootstrapping => "is_bootstrapping",
            Self::TruncateError => "truncate_error",
            Self::WriteTimeout => "write_timeout",
            Self::ReadTimeout => "read_timeout",
            Self::ReadFailure => "read_failure",
            Self::FunctionFailure => "function_failure",
            Self::WriteFailure => "write_failure",
            Self::CdcWriteFailure => "cdc_write_failure",
            Self::CasWriteUnknown => "cas_write_unknown",
            Self::SyntaxError => "syntax_error",
            Self::Unauthorized => "unauthorized",
            Self::Invalid => "invalid",
            Self::ConfigError => "config_error",
            Self::AlreadyExists => "already_exists",
            Self::Unprepared => "unprepared",
        }
    }
}

/// An `[int]` error code that the spec does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code 0x{0:04x}")]
pub struct UnknownErrorCode(pub i32);

impl TryFrom<i32> for ErrorCode {
    type Error = UnknownErrorCode;

    fn try_from(v: i32) -> Result<Self, UnknownErrorCode> {
        Self::ALL
            .into_iter()
            .find(|c| *c as i32 == v)
            .ok_or(UnknownErrorCode(v))
    }
}

/// Write type names (spec v5 §9, Write_timeout), named once.
pub mod write_type_names {
    pub const SIMPLE: &str = "SIMPLE";
    pub const BATCH: &str = "BATCH";
    pub const UNLOGGED_BATCH: &str = "UNLOGGED_BATCH";
    pub const COUNTER: &str = "COUNTER";
    pub const BATCH_LOG: &str = "BATCH_LOG";
    pub const CAS: &str = "CAS";
    pub const VIEW: &str = "VIEW";
    pub const CDC: &str = "CDC";
}

/// The kind of write that timed out or failed; retry policies decide on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WriteType {
    Simple,
    /// A logged batch whose batch log write succeeded.
    Batch,
    UnloggedBatch,
    Counter,
    /// The write to the batch log itself.
    BatchLog,
    /// A lightweight transaction (Paxos) write.
    Cas,
    View,
    Cdc,
    /// A name this crate does not know, kept so re-encoding is lossless.
    Other(String),
}

impl WriteType {
    pub fn from_name(name: &str) -> Self {
        use write_type_names as n;
        match name {
            n::SIMPLE => Self::Simple,
            n::BATCH => Self::Batch,
            n::UNLOGGED_BATCH => Self::UnloggedBatch,
            n::COUNTER => Self::Counter,
            n::BATCH_LOG => Self::BatchLog,
            n::CAS => Self::Cas,
            n::VIEW => Self::View,
            n::CDC => Self::Cdc,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        use write_type_names as n;
        match self {
            Self::Simple => n::SIMPLE,
            Self::Batch => n::BATCH,
            Self::UnloggedBatch => n::UNLOGGED_BATCH,
            Self::Counter => n::COUNTER,
            Self::BatchLog => n::BATCH_LOG,
            Self::Cas => n::CAS,
            Self::View => n::VIEW,
            Self::Cdc => n::CDC,
            Self::Other(name) => name,
        }
    }
}

/// Which replicas failed, in the form the protocol version carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Failures {
    /// v3/v4 `<numfailures>`: only how many replicas failed.
    Count(i32),
    /// v5 `<reasonmap>`: each failed replica and its failure reason code (Cassandra's
    /// `RequestFailureReason`: 0 unknown, 1 too many tombstones, …), in wire order.
    ByEndpoint(Vec<(IpAddr, u16)>),
}

impl Failures {
    /// How many replicas failed, in either form.
    pub fn count(&self) -> i32 {
        match self {
            Self::Count(n) => *n,
            Self::ByEndpoint(m) => i32::try_from(m.len()).unwrap_or(i32::MAX),
        }
    }
}

/// The code and the fields that follow the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    ServerError,
    ProtocolError,
    AuthenticationError,
    /// Not enough replicas alive to even try (`alive < required`).
    Unavailable {
        consistency: Consistency,
        required: i32,
        alive: i32,
    },
    Overloaded,
    IsBootstrapping,
    TruncateError,
    /// `contentions` is present exactly when the version is v5 and the write type is CAS.
    WriteTimeout {
        consistency: Consistency,
        received: i32,
        block_for: i32,
        write_type: WriteType,
        contentions: Option<u16>,
    },
    /// `data_present`: whether the replica asked for data (not a digest) answered. Decoded as
    /// byte != 0 and written as 0/1.
    ReadTimeout {
        consistency: Consistency,
        received: i32,
        block_for: i32,
        data_present: bool,
    },
    ReadFailure {
        consistency: Consistency,
        received: i32,
        block_for: i32,
        failures: Failures,
        data_present: bool,
    },
    FunctionFailure {
        keyspace: String,
        function: String,
        arg_types: Vec<String>,
    },
    WriteFailure {
        consistency: Consistency,
        received: i32,
        block_for: i32,
        failures: Failures,
        write_type: WriteType,
    },
    CdcWriteFailure,
    /// A contended LWT may or may not have been applied.
    CasWriteUnknown {
        consistency: Consistency,
        received: i32,
        block_for: i32,
    },
    SyntaxError,
    Unauthorized,
    Invalid,
    ConfigError,
    /// `table` is empty when a keyspace already exists.
    AlreadyExists {
        keyspace: String,
        table: String,
    },
    /// The prepared statement id the node does not know; the client re-prepares.
    Unprepared {
        id: Vec<u8>,
    },
    /// A code this crate does not know, with every byte after the message kept as is, so it
    /// re-encodes byte-identically. (Built by hand with a known code, it would decode back as
    /// that code's typed kind.)
    Other {
        code: i32,
        rest: Vec<u8>,
    },
}

impl ErrorKind {
    /// The known code, or `None` for [`ErrorKind::Other`].
    pub fn code(&self) -> Option<ErrorCode> {
        self.known_code().ok()
    }

    /// The `[int]` code on the wire, known or not.
    pub fn raw_code(&self) -> i32 {
        self.known_code().map_or_else(|raw| raw, ErrorCode::as_i32)
    }

    fn known_code(&self) -> Result<ErrorCode, i32> {
        Ok(match self {
            Self::ServerError => ErrorCode::ServerError,
            Self::ProtocolError => ErrorCode::ProtocolError,
            Self::AuthenticationError => ErrorCode::AuthenticationError,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::Overloaded => ErrorCode::Overloaded,
            Self::IsBootstrapping => ErrorCode::IsBootstrapping,
            Self::TruncateError => ErrorCode::TruncateError,
            Self::WriteTimeout { .. } => ErrorCode::WriteTimeout,
            Self::ReadTimeout { .. } => ErrorCode::ReadTimeout,
            Self::ReadFailure { .. } => ErrorCode::ReadFailure,
            Self::FunctionFailure { .. } => ErrorCode::FunctionFailure,
            Self::WriteFailure { .. } => ErrorCode::WriteFailure,
            Self::CdcWriteFailure => ErrorCode::CdcWriteFailure,
            Self::CasWriteUnknown { .. } => ErrorCode::CasWriteUnknown,
            Self::SyntaxError => ErrorCode::SyntaxError,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::Invalid => ErrorCode::Invalid,
            Self::ConfigError => ErrorCode::ConfigError,
            Self::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Self::Unprepared { .. } => ErrorCode::Unprepared,
            Self::Other { code, .. } => return Err(*code),
        })
    }
}

/// The ERROR response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorResponse {
    pub kind: ErrorKind,
    /// The server's human-readable explanation, shown to the application as is.
    pub message: String,
}

const WHAT_CODE: &str = "error code";
const WHAT_MESSAGE: &str = "error message";
const WHAT_FIELDS: &str = "error fields";
const WHAT_REASONMAP: &str = "error reasonmap";

/// Smallest reasonmap entry: `[inetaddr]` of an IPv4 address (5) plus the `[short]` code (2).
const MIN_REASONMAP_ENTRY: usize = 7;

impl ErrorResponse {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn server_error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ServerError, message)
    }

    pub fn protocol_error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ProtocolError, message)
    }

    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Overloaded, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// The answer to an EXECUTE (or BATCH) naming a prepared id the node does not know.
    pub fn unprepared(id: impl Into<Vec<u8>>) -> Self {
        let id = id.into();
        // Cassandra's wording (`QueryProcessor`), which operators search logs for.
        let message = format!(
            "Prepared query with ID {} not found (either the query was not prepared on this host \
             (maybe the host has been restarted?) or you have prepared too many queries and it has \
             been evicted from the internal cache)",
            Hex(&id)
        );
        Self::new(ErrorKind::Unprepared { id }, message)
    }

    /// The known code, or `None` for a code this crate does not know ([`ErrorKind::Other`]).
    pub fn code(&self) -> Option<ErrorCode> {
        self.kind.code()
    }

    /// The `[int]` code on the wire, known or not.
    pub fn raw_code(&self) -> i32 {
        self.kind.raw_code()
    }

    /// The `[int]` code at the front of an ERROR body, without decoding the rest: what a proxy
    /// needs to count errors or spot UNPREPARED on the hot path.
    pub fn peek_code(body: &[u8]) -> Result<i32, DecodeError> {
        read_int(&mut &body[..], WHAT_CODE)
    }

    /// The unknown prepared id of an UNPREPARED body, borrowed from `body`; `None` for any other
    /// code. Lets a proxy map the id back to its own without allocating.
    pub fn peek_unprepared_id(body: &[u8]) -> Result<Option<&[u8]>, DecodeError> {
        let mut buf = body;
        if read_int(&mut buf, WHAT_CODE)? != ErrorCode::Unprepared.as_i32() {
            return Ok(None);
        }
        read_string(&mut buf, WHAT_MESSAGE)?;
        read_short_bytes(&mut buf, WHAT_FIELDS).map(Some)
    }

    /// Reads the body from the front of `buf`; the caller checks that nothing is left. For an
    /// unknown code the rest of `buf` is taken as [`ErrorKind::Other`]'s `rest`, so pass exactly
    /// the body.
    pub fn decode(buf: &mut &[u8], version: ProtocolVersion) -> Result<Self, DecodeError> {
        let raw = read_int(buf, WHAT_CODE)?;
        let message = read_string(buf, WHAT_MESSAGE)?.to_owned();
        let Ok(code) = ErrorCode::try_from(raw) else {
            let rest = read_raw(buf, buf.len(), WHAT_FIELDS)?.to_vec();
            return Ok(Self {
                kind: ErrorKind::Other { code: raw, rest },
                message,
            });
        };
        let kind = match code {
            ErrorCode::ServerError => ErrorKind::ServerError,
            ErrorCode::ProtocolError => ErrorKind::ProtocolError,
            ErrorCode::AuthenticationError => ErrorKind::AuthenticationError,
            ErrorCode::Unavailable => ErrorKind::Unavailable {
                consistency: read_consistency(buf)?,
                required: read_int(buf, WHAT_FIELDS)?,
                alive: read_int(buf, WHAT_FIELDS)?,
            },
            ErrorCode::Overloaded => ErrorKind::Overloaded,
            ErrorCode::IsBootstrapping => ErrorKind::IsBootstrapping,
            ErrorCode::TruncateError => ErrorKind::TruncateError,
            ErrorCode::WriteTimeout => {
                let consistency = read_consistency(buf)?;
                let received = read_int(buf, WHAT_FIELDS)?;
                let block_for = read_int(buf, WHAT_FIELDS)?;
                let write_type = WriteType::from_name(read_string(buf, WHAT_FIELDS)?);
                let contentions = if has_contentions(version, &write_type) {
                    Some(read_short(buf, WHAT_FIELDS)?)
                } else {
                    None
                };
                ErrorKind::WriteTimeout {
                    consistency,
                    received,
                    block_for,
                    write_type,
                    contentions,
                }
            }
            ErrorCode::ReadTimeout => ErrorKind::ReadTimeout {
                consistency: read_consistency(buf)?,
                received: read_int(buf, WHAT_FIELDS)?,
                block_for: read_int(buf, WHAT_FIELDS)?,
                data_present: read_byte(buf, WHAT_FIELDS)? != 0,
            },
            ErrorCode::ReadFailure => ErrorKind::ReadFailure {
                consistency: read_consistency(buf)?,
                received: read_int(buf, WHAT_FIELDS)?,
                block_for: read_int(buf, WHAT_FIELDS)?,
                failures: read_failures(buf, version)?,
                data_present: read_byte(buf, WHAT_FIELDS)? != 0,
            },
            ErrorCode::FunctionFailure => ErrorKind::FunctionFailure {
                keyspace: read_string(buf, WHAT_FIELDS)?.to_owned(),
                function: read_string(buf, WHAT_FIELDS)?.to_owned(),
                arg_types: read_string_list(buf, WHAT_FIELDS)?,
            },
            ErrorCode::WriteFailure => ErrorKind::WriteFailure {
                consistency: read_consistency(buf)?,
                received: read_int(buf, WHAT_FIELDS)?,
                block_for: read_int(buf, WHAT_FIELDS)?,
                failures: read_failures(buf, version)?,
                write_type: WriteType::from_name(read_string(buf, WHAT_FIELDS)?),
            },
            ErrorCode::CdcWriteFailure => ErrorKind::CdcWriteFailure,
            ErrorCode::CasWriteUnknown => ErrorKind::CasWriteUnknown {
                consistency: read_consistency(buf)?,
                received: read_int(buf, WHAT_FIELDS)?,
                block_for: read_int(buf, WHAT_FIELDS)?,
            },
            ErrorCode::SyntaxError => ErrorKind::SyntaxError,
            ErrorCode::Unauthorized => ErrorKind::Unauthorized,
            ErrorCode::Invalid => ErrorKind::Invalid,
            ErrorCode::ConfigError => ErrorKind::ConfigError,
            ErrorCode::AlreadyExists => ErrorKind::AlreadyExists {
                keyspace: read_string(buf, WHAT_FIELDS)?.to_owned(),
                table: read_string(buf, WHAT_FIELDS)?.to_owned(),
            },
            ErrorCode::Unprepared => ErrorKind::Unprepared {
                id: read_short_bytes(buf, WHAT_FIELDS)?.to_vec(),
            },
        };
        Ok(Self { kind, message })
    }

    /// Writes the body. Fails when the fields cannot be expressed in `version`: a v5 failure
    /// without its reasonmap, or a v5 CAS write timeout without its contentions. Going the other
    /// way loses nothing the older version can carry (a reasonmap becomes its count, contentions
    /// are dropped), as Cassandra itself does for older clients.
    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_int(buf, self.raw_code());
        write_string(buf, &self.message, WHAT_MESSAGE)?;
        match &self.kind {
            ErrorKind::ServerError
            | ErrorKind::ProtocolError
            | ErrorKind::AuthenticationError
            | ErrorKind::Overloaded
            | ErrorKind::IsBootstrapping
            | ErrorKind::TruncateError
            | ErrorKind::CdcWriteFailure
            | ErrorKind::SyntaxError
            | ErrorKind::Unauthorized
            | ErrorKind::Invalid
            | ErrorKind::ConfigError => {}
            ErrorKind::Unavailable {
                consistency,
                required,
                alive,
            } => {
                write_consistency(buf, *consistency);
                write_int(buf, *required);
                write_int(buf, *alive);
            }
            ErrorKind::WriteTimeout {
                consistency,
                received,
                block_for,
                write_type,
                contentions,
            } => {
                write_consistency(buf, *consistency);
                write_int(buf, *received);
                write_int(buf, *block_for);
                write_string(buf, write_type.name(), WHAT_FIELDS)?;
                if has_contentions(version, write_type) {
                    let n = contentions.ok_or_else(|| EncodeError::Invalid {
                        what: WHAT_FIELDS,
                        reason: format!("{version} CAS write timeout needs <contentions>"),
                    })?;
                    write_short(buf, n);
                }
            }
            ErrorKind::ReadTimeout {
                consistency,
                received,
                block_for,
                data_present,
            } => {
                write_consistency(buf, *consistency);
                write_int(buf, *received);
                write_int(buf, *block_for);
                write_byte(buf, u8::from(*data_present));
            }
            ErrorKind::ReadFailure {
                consistency,
                received,
                block_for,
                failures,
                data_present,
            } => {
                write_consistency(buf, *consistency);
                write_int(buf, *received);
                write_int(buf, *block_for);
                write_failures(buf, failures, version)?;
                write_byte(buf, u8::from(*data_present));
            }
            ErrorKind::FunctionFailure {
                keyspace,
                function,
                arg_types,
            } => {
                write_string(buf, keyspace, WHAT_FIELDS)?;
                write_string(buf, function, WHAT_FIELDS)?;
                write_string_list(buf, arg_types, WHAT_FIELDS)?;
            }
            ErrorKind::WriteFailure {
                consistency,
                received,
                block_for,
                failures,
                write_type,
            } => {
                write_consistency(buf, *consistency);
                write_int(buf, *received);
                write_int(buf, *block_for);
                write_failures(buf, failures, version)?;
                write_string(buf, write_type.name(), WHAT_FIELDS)?;
            }
            ErrorKind::CasWriteUnknown {
                consistency,
                received,
                block_for,
            } => {
                write_consistency(buf, *consistency);
                write_int(buf, *received);
                write_int(buf, *block_for);
            }
            ErrorKind::AlreadyExists { keyspace, table } => {
                write_string(buf, keyspace, WHAT_FIELDS)?;
                write_string(buf, table, WHAT_FIELDS)?;
            }
            ErrorKind::Unprepared { id } => write_short_bytes(buf, id, WHAT_FIELDS)?,
            ErrorKind::Other { rest, .. } => buf.put_slice(rest),
        }
        Ok(())
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code() {
            Some(c) => write!(f, "{} (0x{:04x}): {}", c.name(), c.as_i32(), self.message),
            None => write!(f, "error 0x{:04x}: {}", self.raw_code(), self.message),
        }
    }
}

/// v5 added `<contentions>` after the write type of CAS write timeouts.
fn has_contentions(version: ProtocolVersion, write_type: &WriteType) -> bool {
    version >= ProtocolVersion::V5 && *write_type == WriteType::Cas
}

fn read_failures(buf: &mut &[u8], version: ProtocolVersion) -> Result<Failures, DecodeError> {
    let n = read_int(buf, WHAT_REASONMAP)?;
    if version < ProtocolVersion::V5 {
        return Ok(Failures::Count(n));
    }
    let n = usize::try_from(n).map_err(|_| DecodeError::NegativeLength {
        what: WHAT_REASONMAP,
        len: n.into(),
    })?;
    let mut map = Vec::with_capacity(n.min(buf.len() / MIN_REASONMAP_ENTRY));
    for _ in 0..n {
        let endpoint = read_inetaddr(buf, WHAT_REASONMAP)?;
        map.push((endpoint, read_short(buf, WHAT_REASONMAP)?));
    }
    Ok(Failures::ByEndpoint(map))
}

fn write_failures(
    buf: &mut impl BufMut,
    failures: &Failures,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    match (failures, version >= ProtocolVersion::V5) {
        (Failures::Count(n), false) => write_int(buf, *n),
        (Failures::ByEndpoint(map), false) => write_int(buf, failures_len(map.len())?),
        (Failures::ByEndpoint(map), true) => {
            write_int(buf, failures_len(map.len())?);
            for (endpoint, reason) in map {
                write_inetaddr(buf, *endpoint);
                write_short(buf, *reason);
            }
        }
        (Failures::Count(n), true) => {
            return Err(EncodeError::Invalid {
                what: WHAT_REASONMAP,
                reason: format!(
                    "{version} needs a <reasonmap>, only a count of {n} failures is known"
                ),
            });
        }
    }
    Ok(())
}

fn failures_len(len: usize) -> Result<i32, EncodeError> {
    i32::try_from(len).map_err(|_| EncodeError::TooLong {
        what: WHAT_REASONMAP,
        len,
        max: i32::MAX as usize,
    })
}

/// Lowercase hex for ids in messages, as Cassandra prints them.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(msg: &ErrorResponse, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out, version).unwrap();
        let mut s = out.as_slice();
        assert_eq!(
            &ErrorResponse::decode(&mut s, version).unwrap(),
            msg,
            "{version}"
        );
        assert!(s.is_empty(), "{} bytes left", s.len());
        out
    }

    fn golden(body: &[u8], version: ProtocolVersion, expected: &ErrorResponse) {
        let mut s = body;
        assert_eq!(&ErrorResponse::decode(&mut s, version).unwrap(), expected);
        assert!(s.is_empty(), "{} bytes left", s.len());
        assert_eq!(roundtrip(expected, version), body);
    }

    /// One sample of every code, with the fields `version` carries.
    fn samples(version: ProtocolVersion) -> Vec<ErrorKind> {
        let v5 = version >= ProtocolVersion::V5;
        let failures = if v5 {
            Failures::ByEndpoint(vec![
                ("10.0.0.1".parse().unwrap(), 1),
                ("::2".parse().unwrap(), 0),
            ])
        } else {
            Failures::Count(2)
        };
        let cl = Consistency::LocalQuorum;
        vec![
            ErrorKind::ServerError,
            ErrorKind::ProtocolError,
            ErrorKind::AuthenticationError,
            ErrorKind::Unavailable {
                consistency: cl,
                required: 2,
                alive: 1,
            },
            ErrorKind::Overloaded,
            ErrorKind::IsBootstrapping,
            ErrorKind::TruncateError,
            ErrorKind::WriteTimeout {
                consistency: cl,
                received: 1,
                block_for: 2,
                write_type: WriteType::Cas,
                contentions: v5.then_some(3),
            },
            ErrorKind::ReadTimeout {
                consistency: cl,
                received: 1,
                block_for: 2,
                data_present: true,
            },
            ErrorKind::ReadFailure {
                consistency: cl,
                received: 0,
                block_for: 2,
                failures: failures.clone(),
                data_present: false,
            },
            ErrorKind::FunctionFailure {
                keyspace: "ks".into(),
                function: "f".into(),
                arg_types: vec!["int".into(), "text".into()],
            },
            ErrorKind::WriteFailure {
                consistency: cl,
                received: 0,
                block_for: 2,
                failures,
                write_type: WriteType::UnloggedBatch,
            },
            ErrorKind::CdcWriteFailure,
            ErrorKind::CasWriteUnknown {
                consistency: Consistency::Serial,
                received: 1,
                block_for: 2,
            },
            ErrorKind::SyntaxError,
            ErrorKind::Unauthorized,
            ErrorKind::Invalid,
            ErrorKind::ConfigError,
            ErrorKind::AlreadyExists {
                keyspace: "ks".into(),
                table: String::new(),
            },
            ErrorKind::Unprepared { id: vec![0xab; 16] },
            ErrorKind::Other {
                code: 0x7777,
                rest: vec![1, 2, 3],
            },
        ]
    }

    #[test]
    fn every_code_roundtrips_in_every_version() {
        for v in ProtocolVersion::ALL {
            let samples = samples(v);
            let mut codes: Vec<ErrorCode> = samples.iter().filter_map(ErrorKind::code).collect();
            codes.dedup();
            assert_eq!(
                codes,
                ErrorCode::ALL,
                "the samples cover every code once, in order"
            );
            for kind in samples {
                roundtrip(&ErrorResponse::new(kind, "boom"), v);
            }
        }
    }

    #[test]
    fn error_codes_roundtrip_and_unknown_names_the_value() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::try_from(c.as_i32()), Ok(c));
        }
        assert_eq!(ErrorCode::try_from(0x1800), Err(UnknownErrorCode(0x1800)));
        assert_eq!(
            UnknownErrorCode(0x1800).to_string(),
            "unknown error code 0x1800"
        );
    }

    #[test]
    fn golden_unavailable_v4() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x00, 0x10, 0x00,       // [int] code 0x1000 Unavailable (spec v4 §9)
            0x00, 0x02, b'n', b'o',       // [string] message "no"
            0x00, 0x04,                   // <cl> [consistency] QUORUM
            0x00, 0x00, 0x00, 0x03,       // <required> [int] 3
            0x00, 0x00, 0x00, 0x01,       // <alive> [int] 1
        ];
        let expected = ErrorResponse::new(
            ErrorKind::Unavailable {
                consistency: Consistency::Quorum,
                required: 3,
                alive: 1,
            },
            "no",
        );
        golden(body, ProtocolVersion::V4, &expected);
        assert_eq!(expected.to_string(), "unavailable (0x1000): no");
    }

    #[test]
    fn golden_read_failure_v5_reasonmap() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x00, 0x13, 0x00,       // [int] code 0x1300 Read_failure (spec v5 §9)
            0x00, 0x01, b'x',             // [string] message "x"
            0x00, 0x01,                   // <cl> [consistency] ONE
            0x00, 0x00, 0x00, 0x00,       // <received> [int] 0
            0x00, 0x00, 0x00, 0x01,       // <blockfor> [int] 1
            0x00, 0x00, 0x00, 0x02,       // <reasonmap> [int] n = 2 entries
            0x04, 127, 0, 0, 2,           //   <endpoint> [inetaddr] size 4, 127.0.0.2
            0x00, 0x01,                   //   <failurecode> [short] 1 (READ_TOO_MANY_TOMBSTONES)
            0x10,                         //   <endpoint> [inetaddr] size 16
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, // ::3
            0x00, 0x00,                   //   <failurecode> [short] 0 (UNKNOWN)
            0x01,                         // <data_present> [byte] 1
        ];
        let expected = ErrorResponse::new(
            ErrorKind::ReadFailure {
                consistency: Consistency::One,
                received: 0,
                block_for: 1,
                failures: Failures::ByEndpoint(vec![
                    ("127.0.0.2".parse().unwrap(), 1),
                    ("::3".parse().unwrap(), 0),
                ]),
                data_present: true,
            },
            "x",
        );
        golden(body, ProtocolVersion::V5, &expected);
    }

    #[test]
    fn golden_read_failure_v4_numfailures() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x00, 0x13, 0x00,       // [int] code 0x1300 Read_failure (spec v4 §9)
            0x00, 0x00,                   // [string] empty message
            0x00, 0x06,                   // <cl> [consistency] LOCAL_QUORUM
            0x00, 0x00, 0x00, 0x01,       // <received> [int] 1
            0x00, 0x00, 0x00, 0x02,       // <blockfor> [int] 2
            0x00, 0x00, 0x00, 0x01,       // <numfailures> [int] 1
            0x00,                         // <data_present> [byte] 0
        ];
        let expected = ErrorResponse::new(
            ErrorKind::ReadFailure {
                consistency: Consistency::LocalQuorum,
                received: 1,
                block_for: 2,
                failures: Failures::Count(1),
                data_present: false,
            },
            "",
        );
        golden(body, ProtocolVersion::V4, &expected);
        golden(body, ProtocolVersion::V3, &expected);
    }

    #[test]
    fn golden_write_timeout_v5_cas_contentions() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x00, 0x11, 0x00,       // [int] code 0x1100 Write_timeout (spec v5 §9)
            0x00, 0x01, b't',             // [string] message "t"
            0x00, 0x08,                   // <cl> [consistency] SERIAL
            0x00, 0x00, 0x00, 0x01,       // <received> [int] 1
            0x00, 0x00, 0x00, 0x02,       // <blockfor> [int] 2
            0x00, 0x03, b'C', b'A', b'S', // <writeType> [string] "CAS"
            0x00, 0x05,                   // <contentions> [short] 5 (v5, CAS only)
        ];
        let expected = ErrorResponse::new(
            ErrorKind::WriteTimeout {
                consistency: Consistency::Serial,
                received: 1,
                block_for: 2,
                write_type: WriteType::Cas,
                contentions: Some(5),
            },
            "t",
        );
        golden(body, ProtocolVersion::V5, &expected);

        // The same body without <contentions> is a complete v4 body.
        let v4 = &body[..body.len() - 2];
        let expected_v4 = ErrorResponse::new(
            ErrorKind::WriteTimeout {
                consistency: Consistency::Serial,
                received: 1,
                block_for: 2,
                write_type: WriteType::Cas,
                contentions: None,
            },
            "t",
        );
        golden(v4, ProtocolVersion::V4, &expected_v4);
    }

    #[test]
    fn golden_unprepared() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x00, 0x25, 0x00,       // [int] code 0x2500 Unprepared (spec v4 §9)
            0x00, 0x03, b'g', b'o', b'n', // [string] message "gon" (3 bytes)
            0x00, 0x04,                   // [short bytes] length 4
            0xde, 0xad, 0xbe, 0xef,       //   the unknown prepared id
        ];
        let expected = ErrorResponse::new(
            ErrorKind::Unprepared {
                id: vec![0xde, 0xad, 0xbe, 0xef],
            },
            "gon",
        );
        for v in ProtocolVersion::ALL {
            golden(body, v, &expected);
        }
        assert_eq!(ErrorResponse::peek_code(body), Ok(0x2500));
        assert_eq!(
            ErrorResponse::peek_unprepared_id(body),
            Ok(Some(&body[11..]))
        );
        assert_eq!(
            ErrorResponse::peek_unprepared_id(&[0, 0, 0x22, 0, 0, 0]),
            Ok(None)
        );
        assert!(ErrorResponse::peek_unprepared_id(&body[..12]).is_err());
        let made = ErrorResponse::unprepared([0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(made.code(), Some(ErrorCode::Unprepared));
        assert!(made.message.contains("deadbeef"), "{}", made.message);
    }

    #[test]
    fn golden_unknown_code_keeps_the_rest() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x00, 0x00, 0x30, 0x00,       // [int] code 0x3000, not in any spec version
            0x00, 0x01, b'?',             // [string] message "?" (every code has one, §4.2.1)
            0x01, 0x02, 0x03,             // fields this crate cannot interpret, kept raw
        ];
        let expected = ErrorResponse::new(
            ErrorKind::Other {
                code: 0x3000,
                rest: vec![1, 2, 3],
            },
            "?",
        );
        golden(body, ProtocolVersion::V5, &expected);
        assert_eq!(expected.code(), None);
        assert_eq!(expected.raw_code(), 0x3000);
        assert_eq!(expected.to_string(), "error 0x3000: ?");
    }

    #[test]
    fn constructors_set_the_code() {
        assert_eq!(
            ErrorResponse::server_error("a").code(),
            Some(ErrorCode::ServerError)
        );
        assert_eq!(
            ErrorResponse::protocol_error("a").code(),
            Some(ErrorCode::ProtocolError)
        );
        assert_eq!(
            ErrorResponse::overloaded("a").code(),
            Some(ErrorCode::Overloaded)
        );
        assert_eq!(ErrorResponse::invalid("a").raw_code(), 0x2200);
    }

    #[test]
    fn older_versions_get_what_they_can_carry() {
        let failures = Failures::ByEndpoint(vec![("10.0.0.1".parse().unwrap(), 3)]);
        let v5 = ErrorResponse::new(
            ErrorKind::WriteFailure {
                consistency: Consistency::One,
                received: 0,
                block_for: 1,
                failures,
                write_type: WriteType::Simple,
            },
            "",
        );
        let mut out = Vec::new();
        v5.encode(&mut out, ProtocolVersion::V4).unwrap();
        let back = ErrorResponse::decode(&mut out.as_slice(), ProtocolVersion::V4).unwrap();
        assert!(matches!(
            back.kind,
            ErrorKind::WriteFailure {
                failures: Failures::Count(1),
                ..
            }
        ));

        // Without the reasonmap or the contentions v5 cannot be written.
        let count_only = ErrorResponse {
            kind: back.kind,
            message: String::new(),
        };
        assert!(matches!(
            count_only.encode(&mut Vec::new(), ProtocolVersion::V5),
            Err(EncodeError::Invalid { .. })
        ));
        let no_contentions = ErrorResponse::new(
            ErrorKind::WriteTimeout {
                consistency: Consistency::Serial,
                received: 0,
                block_for: 1,
                write_type: WriteType::Cas,
                contentions: None,
            },
            "",
        );
        let err = no_contentions
            .encode(&mut Vec::new(), ProtocolVersion::V5)
            .unwrap_err();
        assert!(err.to_string().contains("contentions"), "{err}");
    }

    #[test]
    fn bad_fields_are_errors_that_name_them() {
        // A v5 reasonmap with a negative count.
        let mut body = Vec::new();
        write_int(&mut body, ErrorCode::ReadFailure.as_i32());
        write_string(&mut body, "", "m").unwrap();
        write_consistency(&mut body, Consistency::One);
        write_int(&mut body, 0);
        write_int(&mut body, 1);
        write_int(&mut body, -1);
        assert_eq!(
            ErrorResponse::decode(&mut body.as_slice(), ProtocolVersion::V5),
            Err(DecodeError::NegativeLength {
                what: WHAT_REASONMAP,
                len: -1
            })
        );
        // An unknown consistency.
        let mut body = Vec::new();
        write_int(&mut body, ErrorCode::Unavailable.as_i32());
        write_string(&mut body, "", "m").unwrap();
        write_short(&mut body, 0x0042);
        assert_eq!(
            ErrorResponse::decode(&mut body.as_slice(), ProtocolVersion::V4),
            Err(DecodeError::InvalidValue {
                what: "consistency",
                value: 0x42
            })
        );
    }

    #[test]
    fn write_types_roundtrip_and_unknown_is_kept() {
        for w in [
            WriteType::Simple,
            WriteType::Batch,
            WriteType::UnloggedBatch,
            WriteType::Counter,
            WriteType::BatchLog,
            WriteType::Cas,
            WriteType::View,
            WriteType::Cdc,
        ] {
            assert_eq!(WriteType::from_name(w.name()), w);
        }
        assert_eq!(
            WriteType::from_name("PAXOS_V3"),
            WriteType::Other("PAXOS_V3".into())
        );
    }

    fn arb_consistency() -> impl Strategy<Value = Consistency> {
        (0u16..=0x0A).prop_map(|c| Consistency::try_from(c).unwrap())
    }

    fn arb_write_type() -> impl Strategy<Value = WriteType> {
        prop_oneof![
            Just(WriteType::Simple),
            Just(WriteType::Batch),
            Just(WriteType::UnloggedBatch),
            Just(WriteType::Counter),
            Just(WriteType::BatchLog),
            Just(WriteType::Cas),
            Just(WriteType::View),
            Just(WriteType::Cdc),
            "[a-z]{0,8}".prop_map(WriteType::Other),
        ]
    }

    fn arb_failures(version: ProtocolVersion) -> BoxedStrategy<Failures> {
        if version >= ProtocolVersion::V5 {
            let ip = prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ];
            proptest::collection::vec((ip, any::<u16>()), 0..4)
                .prop_map(Failures::ByEndpoint)
                .boxed()
        } else {
            any::<i32>().prop_map(Failures::Count).boxed()
        }
    }

    /// Random errors that `version` can carry exactly.
    fn arb_error(version: ProtocolVersion) -> impl Strategy<Value = ErrorResponse> {
        let s = || "\\PC{0,12}";
        let fieldless = proptest::sample::select(vec![
            ErrorKind::ServerError,
            ErrorKind::ProtocolError,
            ErrorKind::AuthenticationError,
            ErrorKind::Overloaded,
            ErrorKind::IsBootstrapping,
            ErrorKind::TruncateError,
            ErrorKind::CdcWriteFailure,
            ErrorKind::SyntaxError,
            ErrorKind::Unauthorized,
            ErrorKind::Invalid,
            ErrorKind::ConfigError,
        ]);
        let counts = || (arb_consistency(), any::<i32>(), any::<i32>());
        let kind = prop_oneof![
            fieldless,
            counts().prop_map(|(consistency, required, alive)| ErrorKind::Unavailable {
                consistency,
                required,
                alive
            }),
            (counts(), arb_write_type(), any::<u16>()).prop_map(
                move |((consistency, received, block_for), write_type, n)| {
                    let contentions = has_contentions(version, &write_type).then_some(n);
                    ErrorKind::WriteTimeout {
                        consistency,
                        received,
                        block_for,
                        write_type,
                        contentions,
                    }
                }
            ),
            (counts(), any::<bool>()).prop_map(
                |((consistency, received, block_for), data_present)| {
                    ErrorKind::ReadTimeout {
                        consistency,
                        received,
                        block_for,
                        data_present,
                    }
                }
            ),
            (counts(), arb_failures(version), any::<bool>()).prop_map(
                |((consistency, received, block_for), failures, data_present)| {
                    ErrorKind::ReadFailure {
                        consistency,
                        received,
                        block_for,
                        failures,
                        data_present,
                    }
                }
            ),
            (s(), s(), proptest::collection::vec(s(), 0..3)).prop_map(
                |(keyspace, function, arg_types)| {
                    ErrorKind::FunctionFailure {
                        keyspace,
                        function,
                        arg_types,
                    }
                }
            ),
            (counts(), arb_failures(version), arb_write_type()).prop_map(
                |((consistency, received, block_for), failures, write_type)| {
                    ErrorKind::WriteFailure {
                        consistency,
                        received,
                        block_for,
                        failures,
                        write_type,
                    }
                }
            ),
            counts().prop_map(
                |(consistency, received, block_for)| ErrorKind::CasWriteUnknown {
                    consistency,
                    received,
                    block_for
                }
            ),
            (s(), s()).prop_map(|(keyspace, table)| ErrorKind::AlreadyExists { keyspace, table }),
            proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(|id| ErrorKind::Unprepared { id }),
            (
                any::<i32>()
                    .prop_filter("unknown codes only", |c| ErrorCode::try_from(*c).is_err()),
                proptest::collection::vec(any::<u8>(), 0..20)
            )
                .prop_map(|(code, rest)| ErrorKind::Other { code, rest }),
        ];
        (kind, s()).prop_map(|(kind, message)| ErrorResponse { kind, message })
    }

    fn arb_version_and_error() -> impl Strategy<Value = (ProtocolVersion, ErrorResponse)> {
        proptest::sample::select(ProtocolVersion::ALL.to_vec())
            .prop_flat_map(|v| (Just(v), arb_error(v)))
    }

    proptest! {
        #[test]
        fn random_errors_roundtrip((v, msg) in arb_version_and_error()) {
            roundtrip(&msg, v);
        }

        #[test]
        fn decoding_random_bytes_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..96),
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            let _ = ErrorResponse::decode(&mut data.as_slice(), v);
        }

        #[test]
        fn decoding_random_fields_after_a_known_code_never_panics(
            code in proptest::sample::select(ErrorCode::ALL.to_vec()),
            fields in proptest::collection::vec(any::<u8>(), 0..64),
            v in proptest::sample::select(ProtocolVersion::ALL.to_vec()),
        ) {
            let mut body = Vec::new();
            write_int(&mut body, code.as_i32());
            write_string(&mut body, "m", "m").unwrap();
            body.extend_from_slice(&fields);
            let _ = ErrorResponse::decode(&mut body.as_slice(), v);
        }
    }
}
