//! Envelopes: the 9-byte header plus a body kept as [`Bytes`] (spec section 2).
//!
//! ```text
//!   0         8        16        24        32         40
//!   +---------+---------+---------+---------+---------+
//!   | version |  flags  |      stream       | opcode  |
//!   +---------+---------+---------+---------+---------+
//!   |                length                 |  body …
//!   +---------+---------+---------+---------+
//! ```
//!
//! The proxy's hot path parses only the header: the body stays an untouched `Bytes` slice of the
//! read buffer, the stream id can be rewritten, and [`Envelope::header_bytes`] re-emits the header
//! so header and body go out with a vectored write and no copy.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::{Direction, Opcode, ProtocolVersion, RESPONSE_BIT, flags};
use crate::wire::{self, DecodeError};

/// Length of the envelope header in v3, v4 and v5.
pub const HEADER_LEN: usize = 9;

/// Cassandra's default `native_transport_max_frame_size` cap on a body: 256 MiB.
pub const DEFAULT_MAX_BODY_LEN: usize = 256 * 1024 * 1024;

/// A decoded envelope header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnvelopeHeader {
    pub version: ProtocolVersion,
    pub direction: Direction,
    /// Raw flag bits ([`flags`]); unknown bits are kept so a proxy forwards them unchanged.
    pub flags: u8,
    /// Negative ids are server-initiated (EVENT uses -1).
    pub stream: i16,
    pub opcode: Opcode,
    /// Body length in bytes.
    pub length: u32,
}

/// A header that cannot be accepted. Each variant keeps what a server needs to answer it with a
/// proper ERROR on the right stream (the raw version byte and the stream id where readable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The version byte (direction bit stripped) is not 3, 4 or 5. `stream` is read with the
    /// layout of v3+ and is only meaningful when the peer speaks v3 or later.
    #[error("unsupported protocol version {version} (supported: 3, 4, 5)")]
    UnsupportedVersion {
        version: u8,
        direction: Direction,
        stream: i16,
    },
    #[error("unknown opcode 0x{opcode:02x} on stream {stream}")]
    UnknownOpcode {
        opcode: u8,
        stream: i16,
        version: ProtocolVersion,
    },
    #[error("body length {length} exceeds the maximum {max} on stream {stream}")]
    BodyTooLong {
        length: u64,
        max: usize,
        stream: i16,
        version: ProtocolVersion,
    },
}

impl EnvelopeHeader {
    /// Decodes a header from the start of `buf`; `Ok(None)` if fewer than 9 bytes are there.
    /// The body is not examined.
    #[inline]
    pub fn decode(buf: &[u8], max_body_len: usize) -> Result<Option<Self>, HeaderError> {
        let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let direction = if h[0] & RESPONSE_BIT != 0 {
            Direction::Response
        } else {
            Direction::Request
        };
        let stream = i16::from_be_bytes([h[2], h[3]]);
        let raw_version = h[0] & !RESPONSE_BIT;
        let version = ProtocolVersion::try_from(raw_version).map_err(|_| {
            HeaderError::UnsupportedVersion {
                version: raw_version,
                direction,
                stream,
            }
        })?;
        let opcode = Opcode::try_from(h[4]).map_err(|_| HeaderError::UnknownOpcode {
            opcode: h[4],
            stream,
            version,
        })?;
        let length = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        if length as usize > max_body_len {
            return Err(HeaderError::BodyTooLong {
                length: length.into(),
                max: max_body_len,
                stream,
                version,
            });
        }
        Ok(Some(Self {
            version,
            direction,
            flags: h[1],
            stream,
            opcode,
            length,
        }))
    }

    /// The 9 header bytes.
    #[inline]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let dir = match self.direction {
            Direction::Request => 0,
            Direction::Response => RESPONSE_BIT,
        };
        let s = self.stream.to_be_bytes();
        let l = self.length.to_be_bytes();
        [
            self.version as u8 | dir,
            self.flags,
            s[0],
            s[1],
            self.opcode as u8,
            l[0],
            l[1],
            l[2],
            l[3],
        ]
    }

    pub fn has_flag(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Rewrites the stream id of an encoded envelope in place, without parsing anything else.
#[inline]
pub fn rewrite_stream_id(envelope: &mut [u8], stream: i16) {
    if let Some(s) = envelope.get_mut(2..4) {
        s.copy_from_slice(&stream.to_be_bytes());
    }
}

/// A header and its (possibly compressed) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub header: EnvelopeHeader,
    pub body: Bytes,
}

impl Envelope {
    /// Builds an envelope, setting the header's length from the body.
    pub fn new(
        version: ProtocolVersion,
        direction: Direction,
        flags: u8,
        stream: i16,
        opcode: Opcode,
        body: Bytes,
    ) -> Self {
        let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
        Self {
            header: EnvelopeHeader {
                version,
                direction,
                flags,
                stream,
                opcode,
                length,
            },
            body,
        }
    }

    #[inline]
    pub fn stream(&self) -> i16 {
        self.header.stream
    }

    #[inline]
    pub fn set_stream(&mut self, stream: i16) {
        self.header.stream = stream;
    }

    /// The header bytes to send in front of [`Envelope::body`].
    #[inline]
    pub fn header_bytes(&self) -> [u8; HEADER_LEN] {
        self.header.encode()
    }

    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends header and body to `dst` (one copy of the body; use [`Envelope::header_bytes`]
    /// and a vectored write to avoid it).
    pub fn write_to(&self, dst: &mut impl BufMut) {
        dst.put_slice(&self.header_bytes());
        dst.put_slice(&self.body);
    }

    /// Parses one whole envelope from the front of `src`, zero-copy: the body shares `src`'s
    /// memory. `Ok(None)` (and `src` untouched) when the envelope is not complete yet.
    #[inline]
    pub fn parse(src: &mut Bytes, max_body_len: usize) -> Result<Option<Self>, HeaderError> {
        let Some(header) = EnvelopeHeader::decode(src, max_body_len)? else {
            return Ok(None);
        };
        let total = HEADER_LEN + header.length as usize;
        if src.len() < total {
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(header.length as usize);
        Ok(Some(Self { header, body }))
    }
}

/// Splits whole envelopes off a connection's read buffer.
///
/// The body of each envelope is frozen out of the buffer without a copy. When a header announces a
/// body longer than the buffer holds, the decoder reserves room for it so the socket reads land in
/// one allocation.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeDecoder {
    /// Bodies longer than this are refused from the header alone, before anything is buffered.
    pub max_body_len: usize,
}

impl Default for EnvelopeDecoder {
    fn default() -> Self {
        Self {
            max_body_len: DEFAULT_MAX_BODY_LEN,
        }
    }
}

impl EnvelopeDecoder {
    pub fn new(max_body_len: usize) -> Self {
        Self { max_body_len }
    }

    #[inline]
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Envelope>, HeaderError> {
        let Some(header) = EnvelopeHeader::decode(src, self.max_body_len)? else {
            return Ok(None);
        };
        let total = HEADER_LEN + header.length as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let mut whole = src.split_to(total);
        let body = whole.split_off(HEADER_LEN).freeze();
        Ok(Some(Envelope { header, body }))
    }
}

/// What may precede the message in a body, by header flag (spec 2.2 and section 4):
/// `[<tracing_id>][<warnings>][<custom_payload>]<message>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyExtensions {
    /// Present on responses to traced requests.
    pub tracing_id: Option<[u8; 16]>,
    /// Server warnings on a response.
    pub warnings: Vec<String>,
    /// Custom payload, in wire order so forwarding keeps bytes identical.
    pub custom_payload: Option<Vec<(String, Option<Bytes>)>>,
}

impl BodyExtensions {
    /// Reads the extensions that the header's flags announce from the front of `body`, returning
    /// them and the message bytes after them. A request's tracing flag asks for tracing and adds
    /// nothing to the body; warnings exist only on responses.
    pub fn decode(header: &EnvelopeHeader, body: &Bytes) -> Result<(Self, Bytes), DecodeError> {
        let is_response = header.direction == Direction::Response;
        let needs_tracing = is_response && header.has_flag(flags::TRACING);
        let needs_warnings = is_response && header.has_flag(flags::WARNING);
        let needs_payload = header.has_flag(flags::CUSTOM_PAYLOAD);
        if !(needs_tracing || needs_warnings || needs_payload) {
            return Ok((Self::default(), body.clone()));
        }
        let mut buf: &[u8] = body;
        let mut ext = Self::default();
        if needs_tracing {
            ext.tracing_id = Some(wire::read_uuid(&mut buf, "tracing id")?);
        }
        if needs_warnings {
            ext.warnings = wire::read_string_list(&mut buf, "warnings")?;
        }
        if needs_payload {
            let entries = wire::read_bytes_map(&mut buf, "custom payload")?;
            ext.custom_payload = Some(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.map(|v| body.slice_ref(v))))
                    .collect(),
            );
        }
        let rest = body.slice_ref(buf);
        Ok((ext, rest))
    }

    /// The header flags these extensions need on a message going in `direction`.
    pub fn flags(&self, direction: Direction) -> u8 {
        let mut f = 0;
        if direction == Direction::Response {
            if self.tracing_id.is_some() {
                f |= flags::TRACING;
            }
            if !self.warnings.is_empty() {
                f |= flags::WARNING;
            }
        }
        if self.custom_payload.is_some() {
            f |= flags::CUSTOM_PAYLOAD;
        }
        f
    }

    /// Writes the extensions in wire order, as [`BodyExtensions::flags`] announces them.
    pub fn encode(
        &self,
        direction: Direction,
        buf: &mut impl BufMut,
    ) -> Result<(), wire::EncodeError> {
        if direction == Direction::Response {
            if let Some(id) = &self.tracing_id {
                wire::write_uuid(buf, id);
            }
            if !self.warnings.is_empty() {
                wire::write_string_list(buf, &self.warnings, "warnings")?;
            }
        }
        if let Some(payload) = &self.custom_payload {
            wire::write_bytes_map(
                buf,
                payload.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
                "custom payload",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v4 OPTIONS request on stream 0x0102, empty body (spec v4 §2: version 0x04, flags 0,
    /// stream [short], opcode 0x05, length 0).
    const OPTIONS_V4: [u8; 9] = [0x04, 0x00, 0x01, 0x02, 0x05, 0x00, 0x00, 0x00, 0x00];

    #[test]
    fn header_roundtrips_byte_identically() {
        let h = EnvelopeHeader::decode(&OPTIONS_V4, DEFAULT_MAX_BODY_LEN)
            .unwrap()
            .unwrap();
        assert_eq!(h.version, ProtocolVersion::V4);
        assert_eq!(h.direction, Direction::Request);
        assert_eq!(h.stream, 0x0102);
        assert_eq!(h.opcode, Opcode::Options);
        assert_eq!(h.encode(), OPTIONS_V4);
    }

    #[test]
    fn response_bit_and_negative_stream_and_beta_flag() {
        // v5 EVENT response: 0x85, flags USE_BETA, stream -1 (0xffff), opcode 0x0C, length 0.
        let raw = [0x85, 0x10, 0xff, 0xff, 0x0c, 0, 0, 0, 0];
        let h = EnvelopeHeader::decode(&raw, DEFAULT_MAX_BODY_LEN)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.direction, h.stream, h.opcode),
            (Direction::Response, -1, Opcode::Event)
        );
        assert!(h.has_flag(flags::USE_BETA));
        assert_eq!(h.encode(), raw);
    }

    #[test]
    fn short_input_needs_more_bytes() {
        for n in 0..HEADER_LEN {
            assert_eq!(EnvelopeHeader::decode(&OPTIONS_V4[..n], 100), Ok(None));
        }
    }

    #[test]
    fn bad_headers_name_the_numbers_and_the_stream() {
        let mut raw = OPTIONS_V4;
        raw[0] = 0x06;
        assert_eq!(
            EnvelopeHeader::decode(&raw, 100),
            Err(HeaderError::UnsupportedVersion {
                version: 6,
                direction: Direction::Request,
                stream: 0x0102
            })
        );
        let mut raw = OPTIONS_V4;
        raw[4] = 0x04;
        assert!(matches!(
            EnvelopeHeader::decode(&raw, 100),
            Err(HeaderError::UnknownOpcode {
                opcode: 0x04,
                stream: 0x0102,
                ..
            })
        ));
        let mut raw = OPTIONS_V4;
        raw[5..9].copy_from_slice(&101u32.to_be_bytes());
        let err = EnvelopeHeader::decode(&raw, 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "body length 101 exceeds the maximum 100 on stream 258"
        );
    }

    #[test]
    fn decoder_waits_for_the_whole_body_then_splits_without_copy() {
        let mut wire = BytesMut::new();
        let env = Envelope::new(
            ProtocolVersion::V4,
            Direction::Request,
            0,
            7,
            Opcode::Query,
            Bytes::from_static(b"0123456789"),
        );
        env.write_to(&mut wire);
        env.write_to(&mut wire);
        let whole = wire.clone();
        let dec = EnvelopeDecoder::default();
        let mut partial = BytesMut::from(&whole[..15]);
        assert_eq!(dec.decode(&mut partial).unwrap(), None);
        assert_eq!(partial.len(), 15, "nothing consumed while incomplete");
        assert_eq!(dec.decode(&mut wire).unwrap(), Some(env.clone()));
        assert_eq!(dec.decode(&mut wire).unwrap(), Some(env));
        assert!(wire.is_empty());
    }

    #[test]
    fn stream_rewrite_keeps_body_and_other_header_bytes() {
        let body = Bytes::from_static(b"payload");
        let mut env = Envelope::new(
            ProtocolVersion::V5,
            Direction::Response,
            flags::WARNING,
            1,
            Opcode::Result,
            body.clone(),
        );
        env.set_stream(-300);
        let mut out = Vec::new();
        env.write_to(&mut out);
        let mut raw = out.clone();
        rewrite_stream_id(&mut raw, 1);
        rewrite_stream_id(&mut raw, -300);
        assert_eq!(raw, out);
        let mut b = Bytes::from(out);
        let back = Envelope::parse(&mut b, DEFAULT_MAX_BODY_LEN)
            .unwrap()
            .unwrap();
        assert_eq!(back.stream(), -300);
        assert_eq!(back.body, body);
    }

    #[test]
    fn body_extensions_roundtrip_on_a_response() {
        let ext = BodyExtensions {
            tracing_id: Some([7; 16]),
            warnings: vec!["Aggregation query used without partition key".to_owned()],
            custom_payload: Some(vec![
                ("k".to_owned(), Some(Bytes::from_static(b"v"))),
                ("n".to_owned(), None),
            ]),
        };
        let mut body = BytesMut::new();
        ext.encode(Direction::Response, &mut body).unwrap();
        body.put_slice(b"MSG");
        let header = EnvelopeHeader {
            version: ProtocolVersion::V4,
            direction: Direction::Response,
            flags: ext.flags(Direction::Response),
            stream: 0,
            opcode: Opcode::Result,
            length: body.len() as u32,
        };
        let (back, rest) = BodyExtensions::decode(&header, &body.freeze()).unwrap();
        assert_eq!(back, ext);
        assert_eq!(&rest[..], b"MSG");
    }

    #[test]
    fn request_tracing_flag_adds_nothing_to_the_body() {
        let header = EnvelopeHeader {
            version: ProtocolVersion::V4,
            direction: Direction::Request,
            flags: flags::TRACING,
            stream: 0,
            opcode: Opcode::Query,
            length: 3,
        };
        let (ext, rest) = BodyExtensions::decode(&header, &Bytes::from_static(b"abc")).unwrap();
        assert_eq!(ext, BodyExtensions::default());
        assert_eq!(&rest[..], b"abc");
    }
}
