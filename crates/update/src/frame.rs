//! Bytes ⇄ frames, pure: a 4-byte big-endian length, then that many bytes of one JSON object
//! tagged by `kind`.
//!
//! ```text
//!  ┌──────────────┬──────────────────────────────────────────────────────────────┐
//!  │ length (u32) │ {"kind":"data","id":7,"message":{"type":"table_started",…}}  │
//!  └──────────────┴──────────────────────────────────────────────────────────────┘
//! ```
//!
//! `hello`, `accept` and `refuse` are frozen: every protocol version sends and reads them the
//! same way, so two builds that speak no common version still tell each other why they part.
//! The length is checked against the limit before anything is buffered, so a peer cannot make
//! us hold more than one frame's limit.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::message::{Message, Purpose, Refusal, Role};

/// Bytes before each frame's body.
pub(crate) const LENGTH_PREFIX: usize = 4;

/// What a peer says first, both ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The newest protocol version this end speaks.
    pub(crate) protocol_version: u16,
    /// The oldest it still speaks.
    pub(crate) min_protocol_version: u16,
    pub(crate) role: Role,
    /// The instance name from the configuration (`proxy-1`, `migrator`).
    pub(crate) name: String,
    /// Random per process start: message ids count from 1 again after a restart, and the
    /// receiver keeps its duplicate filter per (instance, id).
    pub(crate) instance: u64,
    /// A migrator's purpose; absent (`migrate`) from older builds and from a proxy. Not a new
    /// protocol version: an older peer ignores it and sees the migrator it always saw.
    #[serde(default, skip_serializing_if = "Purpose::is_migrate")]
    pub(crate) purpose: Purpose,
}

/// One frame of the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Frame {
    Hello(Hello),
    /// The peer's hello is acceptable; messages may flow.
    Accept,
    /// The peer's hello is not acceptable (version, role, a channel already taken); the sender
    /// closes the connection after this.
    Refuse {
        reason: String,
    },
    Data {
        id: u64,
        message: Message,
    },
    Ack {
        id: u64,
    },
    Nack {
        id: u64,
        reason: String,
        /// Absent (`never`) from older peers, and not written for `never`.
        #[serde(default, skip_serializing_if = "Refusal::is_never")]
        refusal: Refusal,
    },
    /// Sent when nothing else was for a while, so a dead peer is noticed.
    Heartbeat,
}

/// A frame that cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is not a valid Update frame: {reason}")]
    Malformed { len: usize, reason: String },
    /// A data frame whose id is readable but whose message is not (a message type or field
    /// this build does not know): answered with a `Nack`, the connection stays.
    #[error("message {id} ({len} bytes) cannot be decoded: {reason}")]
    BadMessage { id: u64, len: usize, reason: String },
}

/// The length of the whole frame at the front of `buf` (prefix included) when all of it has
/// arrived, `Ok(None)` when more bytes are needed.
pub(crate) fn complete_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX) else {
        return Ok(None);
    };
    let mut len = [0u8; LENGTH_PREFIX];
    len.copy_from_slice(prefix);
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok((buf.len() >= LENGTH_PREFIX + len).then_some(LENGTH_PREFIX + len))
}

/// Decodes one frame's body (the bytes after the length).
pub(crate) fn decode(body: &[u8]) -> Result<Frame, FrameError> {
    serde_json::from_slice(body).map_err(|e| {
        // Only the id and kind, to answer a message we cannot read with a Nack.
        #[derive(Deserialize)]
        struct Head {
            kind: String,
            id: Option<u64>,
        }
        match serde_json::from_slice::<Head>(body) {
            Ok(Head { kind, id: Some(id) }) if kind == "data" => FrameError::BadMessage {
                id,
                len: body.len(),
                reason: e.to_string(),
            },
            _ => FrameError::Malformed {
                len: body.len(),
                reason: e.to_string(),
            },
        }
    })
}

/// A data frame from a borrowed message: the queue keeps the message and its encoding.
#[derive(Serialize)]
#[serde(tag = "kind", rename = "data")]
struct DataRef<'a> {
    id: u64,
    message: &'a Message,
}

/// Encodes a data frame with its length prefix.
pub(crate) fn encode_data(id: u64, message: &Message, max: usize) -> Result<Bytes, FrameError> {
    encode(&DataRef { id, message }, max)
}

/// Encodes a frame with its length prefix.
pub(crate) fn encode(frame: &impl Serialize, max: usize) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::with_capacity(128);
    out.put_u32(0);
    let mut writer = out.writer();
    serde_json::to_writer(&mut writer, frame).map_err(|e| FrameError::Malformed {
        len: 0,
        reason: e.to_string(),
    })?;
    let mut out = writer.into_inner();
    let len = out.len() - LENGTH_PREFIX;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let len_bytes = u32::try_from(len)
        .map_err(|_| FrameError::TooLarge { len, max })?
        .to_be_bytes();
    out[..LENGTH_PREFIX].copy_from_slice(&len_bytes);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::TableName;

    const MAX: usize = 1 << 20;

    fn roundtrip(frame: Frame) {
        let bytes = encode(&frame, MAX).unwrap();
        let len = complete_len(&bytes, MAX).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(decode(&bytes[LENGTH_PREFIX..]).unwrap(), frame);
    }

    #[test]
    fn every_frame_roundtrips() {
        roundtrip(Frame::Hello(Hello {
            protocol_version: 1,
            min_protocol_version: 1,
            role: Role::Migrator,
            name: "m".into(),
            instance: u64::MAX,
            purpose: Purpose::Validate,
        }));
        roundtrip(Frame::Accept);
        roundtrip(Frame::Refuse {
            reason: "no".into(),
        });
        roundtrip(Frame::Data {
            id: 7,
            message: Message::TableStarted {
                table: TableName::new("ks", "t"),
            },
        });
        roundtrip(Frame::Ack { id: 7 });
        roundtrip(Frame::Nack {
            id: 7,
            reason: "unknown table".into(),
            refusal: Refusal::Never,
        });
        roundtrip(Frame::Nack {
            id: 8,
            reason: "no job".into(),
            refusal: Refusal::NotNow,
        });
        roundtrip(Frame::Heartbeat);
    }

    /// The frozen frames, byte for byte: a change here breaks every older peer.
    #[test]
    fn hello_accept_refuse_are_frozen() {
        let hello = Frame::Hello(Hello {
            protocol_version: 2,
            min_protocol_version: 1,
            role: Role::Proxy,
            name: "p".into(),
            instance: 9,
            purpose: Purpose::Migrate,
        });
        let frozen = r#"{"kind":"hello","protocol_version":2,"min_protocol_version":1,"role":"proxy","name":"p","instance":9}"#;
        assert_eq!(serde_json::to_string(&hello).unwrap(), frozen);
        assert_eq!(decode(frozen.as_bytes()).unwrap(), hello, "absent: migrate");
        // A validate migrator's hello adds one field, which older builds ignore.
        let Frame::Hello(mut validate) = hello else {
            unreachable!()
        };
        validate.purpose = Purpose::Validate;
        assert_eq!(
            serde_json::to_string(&Frame::Hello(validate)).unwrap(),
            r#"{"kind":"hello","protocol_version":2,"min_protocol_version":1,"role":"proxy","name":"p","instance":9,"purpose":"validate"}"#
        );
        assert_eq!(
            serde_json::to_string(&Frame::Accept).unwrap(),
            r#"{"kind":"accept"}"#
        );
        assert_eq!(
            serde_json::to_string(&Frame::Refuse { reason: "r".into() }).unwrap(),
            r#"{"kind":"refuse","reason":"r"}"#
        );
    }

    #[test]
    fn borrowed_data_frames_encode_like_owned_ones() {
        let message = Message::TableStarted {
            table: TableName::new("ks", "t"),
        };
        assert_eq!(
            encode_data(3, &message, MAX).unwrap(),
            encode(&Frame::Data { id: 3, message }, MAX).unwrap()
        );
    }

    #[test]
    fn partial_frames_need_more_bytes() {
        let bytes = encode(&Frame::Heartbeat, MAX).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(complete_len(&bytes[..cut], MAX).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn oversized_frames_are_refused_from_the_length_alone() {
        let mut buf = BytesMut::new();
        buf.put_u32(MAX as u32 + 1);
        assert_eq!(
            complete_len(&buf, MAX).unwrap_err(),
            FrameError::TooLarge {
                len: MAX + 1,
                max: MAX
            }
        );
        buf.clear();
        buf.put_u32(u32::MAX);
        assert!(matches!(
            complete_len(&buf, MAX),
            Err(FrameError::TooLarge { .. })
        ));
        let big = Frame::Refuse {
            reason: "x".repeat(100),
        };
        let e = encode(&big, 50).unwrap_err();
        assert!(
            e.to_string().contains("larger than the limit of 50 bytes"),
            "{e}"
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"\xff\xfe",
            b"{\"kind\":\"teleport\"}",
            b"{\"kind\":\"ack\"}",
            b"{\"kind\":\"ack\",\"id\":-1}",
            b"{\"kind\":\"data\"}",
            b"{\"kind\":\"hello\",\"protocol_version\":70000}",
        ] {
            let e = decode(body).unwrap_err();
            assert!(matches!(e, FrameError::Malformed { .. }), "{body:?}: {e}");
        }
    }

    #[test]
    fn an_unknown_message_keeps_its_id_for_the_nack() {
        let e =
            decode(br#"{"kind":"data","id":12,"message":{"type":"launch_rockets"}}"#).unwrap_err();
        match e {
            FrameError::BadMessage { id, reason, .. } => {
                assert_eq!(id, 12);
                assert!(reason.contains("launch_rockets"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix and bit flip of a real frame.
        let bytes = encode(
            &Frame::Data {
                id: 1,
                message: Message::Remigrate {
                    table: TableName::new("ks", "t"),
                    reason: "é".into(),
                },
            },
            MAX,
        )
        .unwrap();
        let body = &bytes[LENGTH_PREFIX..];
        for i in 0..body.len() {
            for bit in 0..8 {
                let mut b = body.to_vec();
                b[i] ^= 1 << bit;
                let _ = decode(&b);
            }
            let _ = decode(&body[..i]);
        }
    }
}
