//! Protocol constants named in one place: versions, direction, header flags, opcodes and
//! consistency levels (spec sections 2 and 3).

use std::fmt;

/// The version byte's high bit: set on responses (spec 2.1).
pub const RESPONSE_BIT: u8 = 0x80;

/// Header flag bits (spec 2.2). v5 uses only `TRACING`, `CUSTOM_PAYLOAD`, `WARNING` and `BETA`:
/// compression moved to the segment layer.
pub mod flags {
    pub const COMPRESSION: u8 = 0x01;
    pub const TRACING: u8 = 0x02;
    pub const CUSTOM_PAYLOAD: u8 = 0x04;
    pub const WARNING: u8 = 0x08;
    pub const USE_BETA: u8 = 0x10;
}

/// A protocol version this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ProtocolVersion {
    V3 = 3,
    V4 = 4,
    V5 = 5,
}

impl ProtocolVersion {
    pub const ALL: [ProtocolVersion; 3] = [Self::V3, Self::V4, Self::V5];
    pub const HIGHEST: ProtocolVersion = Self::V5;

    /// Whether envelopes travel inside v5 segments once STARTUP/AUTH completes.
    pub fn uses_segments(self) -> bool {
        self >= Self::V5
    }

    /// `[value]` "not set" (-2) exists from v4 on.
    pub fn supports_unset(self) -> bool {
        self >= Self::V4
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", *self as u8)
    }
}

/// A version byte (direction bit stripped) that this crate does not speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported protocol version {0}")]
pub struct UnsupportedVersion(pub u8);

impl TryFrom<u8> for ProtocolVersion {
    type Error = UnsupportedVersion;

    fn try_from(v: u8) -> Result<Self, Self::Error> {
        match v {
            3 => Ok(Self::V3),
            4 => Ok(Self::V4),
            5 => Ok(Self::V5),
            other => Err(UnsupportedVersion(other)),
        }
    }
}

/// Which way an envelope travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Request,
    Response,
}

/// Envelope opcodes (spec 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Error = 0x00,
    Startup = 0x01,
    Ready = 0x02,
    Authenticate = 0x03,
    Options = 0x05,
    Supported = 0x06,
    Query = 0x07,
    Result = 0x08,
    Prepare = 0x09,
    Execute = 0x0A,
    Register = 0x0B,
    Event = 0x0C,
    Batch = 0x0D,
    AuthChallenge = 0x0E,
    AuthResponse = 0x0F,
    AuthSuccess = 0x10,
}

impl Opcode {
    /// The direction this opcode is sent in.
    pub fn direction(self) -> Direction {
        match self {
            Self::Startup
            | Self::Options
            | Self::Query
            | Self::Prepare
            | Self::Execute
            | Self::Register
            | Self::Batch
            | Self::AuthResponse => Direction::Request,
            _ => Direction::Response,
        }
    }
}

/// An opcode byte that names no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown opcode 0x{0:02x}")]
pub struct UnknownOpcode(pub u8);

impl TryFrom<u8> for Opcode {
    type Error = UnknownOpcode;

    fn try_from(v: u8) -> Result<Self, UnknownOpcode> {
        Ok(match v {
            0x00 => Self::Error,
            0x01 => Self::Startup,
            0x02 => Self::Ready,
            0x03 => Self::Authenticate,
            0x05 => Self::Options,
            0x06 => Self::Supported,
            0x07 => Self::Query,
            0x08 => Self::Result,
            0x09 => Self::Prepare,
            0x0A => Self::Execute,
            0x0B => Self::Register,
            0x0C => Self::Event,
            0x0D => Self::Batch,
            0x0E => Self::AuthChallenge,
            0x0F => Self::AuthResponse,
            0x10 => Self::AuthSuccess,
            other => return Err(UnknownOpcode(other)),
        })
    }
}

/// Consistency levels (spec 3, `[consistency]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Consistency {
    Any = 0x0000,
    One = 0x0001,
    Two = 0x0002,
    Three = 0x0003,
    Quorum = 0x0004,
    All = 0x0005,
    LocalQuorum = 0x0006,
    EachQuorum = 0x0007,
    Serial = 0x0008,
    LocalSerial = 0x0009,
    LocalOne = 0x000A,
}

impl Consistency {
    pub fn is_serial(self) -> bool {
        matches!(self, Self::Serial | Self::LocalSerial)
    }

    /// The name Cassandra uses in error messages and cqlsh.
    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "ANY",
            Self::One => "ONE",
            Self::Two => "TWO",
            Self::Three => "THREE",
            Self::Quorum => "QUORUM",
            Self::All => "ALL",
            Self::LocalQuorum => "LOCAL_QUORUM",
            Self::EachQuorum => "EACH_QUORUM",
            Self::Serial => "SERIAL",
            Self::LocalSerial => "LOCAL_SERIAL",
            Self::LocalOne => "LOCAL_ONE",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u16> for Consistency {
    type Error = crate::wire::DecodeError;

    fn try_from(v: u16) -> Result<Self, Self::Error> {
        Ok(match v {
            0x0000 => Self::Any,
            0x0001 => Self::One,
            0x0002 => Self::Two,
            0x0003 => Self::Three,
            0x0004 => Self::Quorum,
            0x0005 => Self::All,
            0x0006 => Self::LocalQuorum,
            0x0007 => Self::EachQuorum,
            0x0008 => Self::Serial,
            0x0009 => Self::LocalSerial,
            0x000A => Self::LocalOne,
            other => {
                return Err(crate::wire::DecodeError::InvalidValue {
                    what: "consistency",
                    value: other.into(),
                });
            }
        })
    }
}

pub fn read_consistency(buf: &mut &[u8]) -> Result<Consistency, crate::wire::DecodeError> {
    Consistency::try_from(crate::wire::read_short(buf, "consistency")?)
}

pub fn write_consistency(buf: &mut impl bytes::BufMut, c: Consistency) {
    buf.put_u16(c as u16);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_roundtrips_and_unknown_names_the_byte() {
        for b in 0u8..=0xff {
            match Opcode::try_from(b) {
                Ok(op) => assert_eq!(op as u8, b),
                Err(e) => {
                    assert_eq!(e, UnknownOpcode(b));
                    assert!(e.to_string().contains(&format!("0x{b:02x}")));
                }
            }
        }
        assert_eq!(
            Opcode::try_from(0x04),
            Err(UnknownOpcode(0x04)),
            "0x04 (CREDENTIALS) was removed in v2"
        );
    }

    #[test]
    fn versions_and_consistencies_roundtrip() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::try_from(v.as_u8()), Ok(v));
        }
        assert_eq!(ProtocolVersion::try_from(6), Err(UnsupportedVersion(6)));
        for c in 0u16..=0x0A {
            assert_eq!(Consistency::try_from(c).unwrap() as u16, c);
        }
        assert!(Consistency::try_from(0x0B).is_err());
    }
}
