//! What can go wrong executing a statement, and the CQL ERROR each case becomes. A user mistake
//! is never a server error: drivers retry or report each code differently.

use ferry_cql::response::{ErrorKind, ErrorResponse};

use crate::cql::{ParseError, ValueError};

use super::virtual_table::VirtualQueryError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// 0x2000: the text does not parse.
    #[error("{0}")]
    Syntax(String),
    /// 0x2200: well-formed but invalid (unknown table, wrong type, bad restriction …).
    #[error("{0}")]
    Invalid(String),
    /// 0x2400: CREATE of something that exists; `table` is empty for a keyspace.
    #[error("{message}")]
    AlreadyExists {
        keyspace: String,
        table: String,
        message: String,
    },
    /// 0x2300: a configuration problem, e.g. an unsupported replication strategy.
    #[error("{0}")]
    Config(String),
    /// 0x2100: the user may not do this.
    #[error("{0}")]
    Unauthorized(String),
    /// 0x0000: a bug in the simulator, not the user's fault.
    #[error("{0}")]
    Server(String),
}

impl ExecError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub fn to_response(&self) -> ErrorResponse {
        let message = self.to_string();
        let kind = match self {
            Self::Syntax(_) => ErrorKind::SyntaxError,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::AlreadyExists {
                keyspace, table, ..
            } => ErrorKind::AlreadyExists {
                keyspace: keyspace.clone(),
                table: table.clone(),
            },
            Self::Config(_) => ErrorKind::ConfigError,
            Self::Unauthorized(_) => ErrorKind::Unauthorized,
            Self::Server(_) => ErrorKind::ServerError,
        };
        ErrorResponse::new(kind, message)
    }
}

impl From<ParseError> for ExecError {
    fn from(e: ParseError) -> Self {
        if e.is_syntax() {
            Self::Syntax(e.to_string())
        } else {
            Self::Invalid(e.to_string())
        }
    }
}

impl From<ValueError> for ExecError {
    fn from(e: ValueError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl From<VirtualQueryError> for ExecError {
    fn from(e: VirtualQueryError) -> Self {
        match e {
            VirtualQueryError::UndefinedColumn { .. } => Self::Invalid(e.to_string()),
            other => Self::Server(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_cql::response::ErrorCode;

    #[test]
    fn parse_errors_become_syntax_or_invalid() {
        let syntax = crate::cql::parse("SELEC * FROM t").unwrap_err();
        assert_eq!(
            ExecError::from(syntax).to_response().code(),
            Some(ErrorCode::SyntaxError)
        );
        let e = ExecError::AlreadyExists {
            keyspace: "ks".into(),
            table: String::new(),
            message: "Keyspace ks already exists".into(),
        };
        let r = e.to_response();
        assert_eq!(r.code(), Some(ErrorCode::AlreadyExists));
        assert_eq!(r.message, "Keyspace ks already exists");
    }
}
