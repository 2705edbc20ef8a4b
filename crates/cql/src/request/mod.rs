//! Request bodies (spec section 4.1), one module per opcode. Each type reads its body with
//! `decode(&mut &[u8], ProtocolVersion)` and writes it with `encode(&mut impl BufMut,
//! ProtocolVersion)`; the envelope layer checks that nothing is left over.
//!
//! # Layout
//! - [`startup`]: STARTUP, the connection's options (CQL version, compression, driver name …).
//! - [`options`]: OPTIONS, the empty "what do you support?" request.
//! - [`register`]: REGISTER, the event types a connection subscribes to.
//! - [`auth_response`]: AUTH_RESPONSE, the client's SASL token.

pub mod auth_response;
pub mod options;
pub mod register;
pub mod startup;

pub use auth_response::AuthResponse;
pub use options::Options;
pub use register::Register;
pub use startup::Startup;
