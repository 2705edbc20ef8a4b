//! Whole messages: an envelope's opcode and body decoded to a typed [`Request`] or [`Response`],
//! and back.
//!
//! This is the full-decode path (simulator, tests, tools). The proxy's hot path stays on
//! [`Envelope`] and looks inside a body only when routing needs it.
//!
//! Bytes after a fully decoded message are ignored, as the spec tells implementors to do so that
//! optional extensions can be added without a new protocol version.

use bytes::{Bytes, BytesMut};

use crate::envelope::{BodyExtensions, Envelope};
use crate::protocol::{Direction, Opcode, ProtocolVersion, flags};
use crate::request::{AuthResponse, Batch, Execute, Options, Prepare, Query, Register, Startup};
use crate::response::{
    AuthChallenge, AuthSuccess, Authenticate, ErrorResponse, Event, Ready, ResultBody, Supported,
};
use crate::wire::{DecodeError, EncodeError};

/// An envelope's body could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    #[error("{opcode:?} body is still compressed: decompress the envelope first")]
    Compressed { opcode: Opcode },
    #[error("{opcode:?} is not a {direction:?} opcode")]
    WrongDirection {
        opcode: Opcode,
        direction: Direction,
    },
    #[error("{opcode:?} body: {source}")]
    Body { opcode: Opcode, source: DecodeError },
}

fn body_error(opcode: Opcode) -> impl Fn(DecodeError) -> MessageError {
    move |source| MessageError::Body { opcode, source }
}

/// Checks an envelope can be decoded as a message going in `direction`, and splits off its body
/// extensions.
fn open(env: &Envelope, direction: Direction) -> Result<(BodyExtensions, Bytes), MessageError> {
    let opcode = env.header.opcode;
    if env.header.has_flag(flags::COMPRESSION) {
        return Err(MessageError::Compressed { opcode });
    }
    if opcode.direction() != direction || env.header.direction != direction {
        return Err(MessageError::WrongDirection { opcode, direction });
    }
    BodyExtensions::decode(&env.header, &env.body).map_err(body_error(opcode))
}

/// Builds an envelope around an encoded message, setting the extension flags; `extra_flags`
/// (e.g. a request's TRACING or USE_BETA) are added as given.
fn seal(
    version: ProtocolVersion,
    direction: Direction,
    stream: i16,
    opcode: Opcode,
    extra_flags: u8,
    ext: &BodyExtensions,
    write: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<Envelope, EncodeError> {
    let mut body = BytesMut::new();
    ext.encode(direction, &mut body)?;
    write(&mut body)?;
    let flags = extra_flags | ext.flags(direction);
    Ok(Envelope::new(
        version,
        direction,
        flags,
        stream,
        opcode,
        body.freeze(),
    ))
}

/// A request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Startup(Startup),
    Options(Options),
    Query(Query),
    Prepare(Prepare),
    Execute(Execute),
    Batch(Batch),
    Register(Register),
    AuthResponse(AuthResponse),
}

impl Request {
    pub fn opcode(&self) -> Opcode {
        match self {
            Self::Startup(_) => Opcode::Startup,
            Self::Options(_) => Opcode::Options,
            Self::Query(_) => Opcode::Query,
            Self::Prepare(_) => Opcode::Prepare,
            Self::Execute(_) => Opcode::Execute,
            Self::Batch(_) => Opcode::Batch,
            Self::Register(_) => Opcode::Register,
            Self::AuthResponse(_) => Opcode::AuthResponse,
        }
    }

    /// Decodes a message body (extensions already removed).
    pub fn decode_body(
        opcode: Opcode,
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, MessageError> {
        let buf = &mut &body[..];
        let e = body_error(opcode);
        Ok(match opcode {
            Opcode::Startup => Self::Startup(Startup::decode(buf, version).map_err(e)?),
            Opcode::Options => Self::Options(Options::decode(buf, version).map_err(e)?),
            Opcode::Query => Self::Query(Query::decode(buf, body, version).map_err(e)?),
            Opcode::Prepare => Self::Prepare(Prepare::decode(buf, version).map_err(e)?),
            Opcode::Execute => Self::Execute(Execute::decode(buf, body, version).map_err(e)?),
            Opcode::Batch => Self::Batch(Batch::decode(buf, body, version).map_err(e)?),
            Opcode::Register => Self::Register(Register::decode(buf, version).map_err(e)?),
            Opcode::AuthResponse => {
                Self::AuthResponse(AuthResponse::decode(buf, version).map_err(e)?)
            }
            other => {
                return Err(MessageError::WrongDirection {
                    opcode: other,
                    direction: Direction::Request,
                });
            }
        })
    }

    /// Decodes an (uncompressed) request envelope.
    pub fn from_envelope(env: &Envelope) -> Result<(BodyExtensions, Self), MessageError> {
        let (ext, body) = open(env, Direction::Request)?;
        let msg = Self::decode_body(env.header.opcode, &body, env.header.version)?;
        Ok((ext, msg))
    }

    pub fn encode_body(
        &self,
        buf: &mut BytesMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        match self {
            Self::Startup(m) => m.encode(buf, version),
            Self::Options(m) => m.encode(buf, version),
            Self::Query(m) => m.encode(buf, version),
            Self::Prepare(m) => m.encode(buf, version),
            Self::Execute(m) => m.encode(buf, version),
            Self::Batch(m) => m.encode(buf, version),
            Self::Register(m) => m.encode(buf, version),
            Self::AuthResponse(m) => m.encode(buf, version),
        }
    }

    /// Encodes the request as an envelope on `stream`.
    pub fn to_envelope(
        &self,
        version: ProtocolVersion,
        stream: i16,
        extra_flags: u8,
        ext: &BodyExtensions,
    ) -> Result<Envelope, EncodeError> {
        seal(
            version,
            Direction::Request,
            stream,
            self.opcode(),
            extra_flags,
            ext,
            |b| self.encode_body(b, version),
        )
    }
}

/// A response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Error(ErrorResponse),
    Ready(Ready),
    Authenticate(Authenticate),
    Supported(Supported),
    Result(ResultBody),
    Event(Event),
    AuthChallenge(AuthChallenge),
    AuthSuccess(AuthSuccess),
}

impl Response {
    pub fn opcode(&self) -> Opcode {
        match self {
            Self::Error(_) => Opcode::Error,
            Self::Ready(_) => Opcode::Ready,
            Self::Authenticate(_) => Opcode::Authenticate,
            Self::Supported(_) => Opcode::Supported,
            Self::Result(_) => Opcode::Result,
            Self::Event(_) => Opcode::Event,
            Self::AuthChallenge(_) => Opcode::AuthChallenge,
            Self::AuthSuccess(_) => Opcode::AuthSuccess,
        }
    }

    /// Decodes a message body (extensions already removed).
    pub fn decode_body(
        opcode: Opcode,
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, MessageError> {
        let buf = &mut &body[..];
        let e = body_error(opcode);
        Ok(match opcode {
            Opcode::Error => Self::Error(ErrorResponse::decode(buf, version).map_err(e)?),
            Opcode::Ready => Self::Ready(Ready::decode(buf, version).map_err(e)?),
            Opcode::Authenticate => {
                Self::Authenticate(Authenticate::decode(buf, version).map_err(e)?)
            }
            Opcode::Supported => Self::Supported(Supported::decode(buf, version).map_err(e)?),
            Opcode::Result => Self::Result(ResultBody::decode(buf, body, version).map_err(e)?),
            Opcode::Event => Self::Event(Event::decode(buf, version).map_err(e)?),
            Opcode::AuthChallenge => {
                Self::AuthChallenge(AuthChallenge::decode(buf, version).map_err(e)?)
            }
            Opcode::AuthSuccess => Self::AuthSuccess(AuthSuccess::decode(buf, version).map_err(e)?),
            other => {
                return Err(MessageError::WrongDirection {
                    opcode: other,
                    direction: Direction::Response,
                });
            }
        })
    }

    /// Decodes an (uncompressed) response envelope.
    pub fn from_envelope(env: &Envelope) -> Result<(BodyExtensions, Self), MessageError> {
        let (ext, body) = open(env, Direction::Response)?;
        let msg = Self::decode_body(env.header.opcode, &body, env.header.version)?;
        Ok((ext, msg))
    }

    pub fn encode_body(
        &self,
        buf: &mut BytesMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        match self {
            Self::Error(m) => m.encode(buf, version),
            Self::Ready(m) => m.encode(buf, version),
            Self::Authenticate(m) => m.encode(buf, version),
            Self::Supported(m) => m.encode(buf, version),
            Self::Result(m) => m.encode(buf, version),
            Self::Event(m) => m.encode(buf, version),
            Self::AuthChallenge(m) => m.encode(buf, version),
            Self::AuthSuccess(m) => m.encode(buf, version),
        }
    }

    /// Encodes the response as an envelope on `stream` (EVENTs go on stream -1).
    pub fn to_envelope(
        &self,
        version: ProtocolVersion,
        stream: i16,
        ext: &BodyExtensions,
    ) -> Result<Envelope, EncodeError> {
        seal(
            version,
            Direction::Response,
            stream,
            self.opcode(),
            0,
            ext,
            |b| self.encode_body(b, version),
        )
    }
}
