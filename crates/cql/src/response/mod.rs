//! Response bodies (spec section 4.2), one module per opcode. Each type reads its body with
//! `decode(&mut &[u8], ProtocolVersion)` and writes it with `encode(&mut impl BufMut,
//! ProtocolVersion)`; the envelope layer checks that nothing is left over.
//!
//! # Layout
//! - [`error`]: ERROR, every error code with its extra fields, across v3/v4/v5.
//! - [`ready`]: READY, the empty "go ahead" (also the answer to REGISTER).
//! - [`authenticate`]: AUTHENTICATE, the server's authenticator class.
//! - [`supported`]: SUPPORTED, the answer to OPTIONS.
//! - [`auth_challenge`]: AUTH_CHALLENGE, a server SASL token.
//! - [`auth_success`]: AUTH_SUCCESS, the last server SASL token.
//! - [`event`]: EVENT, server pushes (topology, status, schema) and the event type names.
//! - [`result`]: RESULT: Void, Rows (zero-copy cells), Set_keyspace, Prepared, Schema_change.
//! - [`schema_change`]: the SCHEMA_CHANGE payload shared by EVENT and RESULT kind Schema_change.

pub mod auth_challenge;
pub mod auth_success;
pub mod authenticate;
pub mod error;
pub mod event;
pub mod ready;
pub mod result;
pub mod schema_change;
pub mod supported;

pub use auth_challenge::AuthChallenge;
pub use auth_success::AuthSuccess;
pub use authenticate::Authenticate;
pub use error::{ErrorCode, ErrorKind, ErrorResponse, Failures, WriteType};
pub use event::{Event, EventType};
pub use ready::Ready;
pub use result::ResultBody;
pub use schema_change::{ChangeType, SchemaChange, SchemaTarget};
pub use supported::Supported;
