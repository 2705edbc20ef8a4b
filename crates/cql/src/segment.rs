//! v5 segments: the outer framing that carries envelopes once a v5 connection is set up
//! (spec v5 section 2; Cassandra's `FrameEncoderCrc`/`FrameEncoderLZ4` define the bits).
//!
//! ```text
//! uncompressed: | 17b payload len | 1b self-contained | 6b pad | CRC24 (3 B) | payload | CRC32 (4 B) |
//! LZ4:          | 17b compressed len | 17b uncompressed len | 1b self-contained | 5b pad |
//!               | CRC24 (3 B) | compressed payload | CRC32 of compressed payload (4 B) |
//! ```
//!
//! Headers and trailers are little-endian. The CRC24 covers the 3 (or 5) header bytes; the CRC32
//! covers the payload as sent, seeded with the bytes `FA 2D 55 CA`. A compressed segment whose
//! uncompressed length is 0 carries its payload uncompressed (LZ4 did not help).
//!
//! A **self-contained** segment holds one or more whole envelopes; an envelope larger than one
//! segment's payload is split over consecutive segments that are not self-contained.
//! [`SegmentWriter`] packs envelopes into segments, [`EnvelopeReassembler`] takes them apart.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::envelope::{Envelope, EnvelopeHeader, HEADER_LEN, HeaderError};

/// The most payload bytes one segment carries: 2^17 - 1.
pub const MAX_PAYLOAD_LEN: usize = (1 << 17) - 1;
const CRC_LEN: usize = 4;
const PLAIN_HEADER_LEN: usize = 6;
const LZ4_HEADER_LEN: usize = 8;
const CRC24_INIT: u32 = 0x87_5060;
const CRC24_POLY: u32 = 0x197_4F0B;
const CRC32_SEED: [u8; 4] = [0xFA, 0x2D, 0x55, 0xCA];

/// Cassandra's CRC24 over the low `len` bytes of `bytes`, least significant byte first.
pub fn crc24(mut bytes: u64, len: usize) -> u32 {
    let mut crc = CRC24_INIT;
    for _ in 0..len {
        crc ^= ((bytes & 0xff) as u32) << 16;
        bytes >>= 8;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= CRC24_POLY;
            }
        }
    }
    crc & 0xff_ffff
}

/// CRC32 of a segment payload, seeded as Cassandra seeds it.
pub fn crc32(payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&CRC32_SEED);
    h.update(payload);
    h.finalize()
}

/// A decoded segment: its (decompressed) payload and whether it holds whole envelopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub self_contained: bool,
    pub payload: Bytes,
}

/// A segment could not be decoded or envelopes could not be taken out of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The header is corrupt, so the stream cannot be resynchronised: close the connection.
    #[error("segment header CRC24 mismatch: read 0x{read:06x}, computed 0x{computed:06x}")]
    HeaderCrc { read: u32, computed: u32 },
    /// The payload is corrupt; the header was intact, so the segment was skipped and the stream
    /// stays in sync.
    #[error("segment payload CRC32 mismatch: read 0x{read:08x}, computed 0x{computed:08x}")]
    PayloadCrc { read: u32, computed: u32 },
    #[error("segment payload of {length} bytes exceeds the maximum {max}")]
    PayloadTooLong { length: usize, max: usize },
    #[error("LZ4 segment payload is corrupt: {0}")]
    Decompress(String),
    #[error("envelope inside a segment: {0}")]
    Envelope(#[from] HeaderError),
    #[error(
        "self-contained segment ends inside an envelope: {remaining} bytes left, {needed} needed"
    )]
    TruncatedEnvelope { remaining: usize, needed: usize },
    #[error(
        "a self-contained segment arrived while {missing} bytes of a split envelope were missing"
    )]
    InterruptedEnvelope { missing: usize },
    #[error("a split envelope's continuation is longer than the envelope: {extra} bytes too many")]
    OverlongContinuation { extra: usize },
}

/// Encodes and decodes single segments, with or without LZ4.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentCodec {
    /// Whether the connection negotiated LZ4 (the only compression v5 has).
    pub lz4: bool,
}

impl SegmentCodec {
    pub fn new(lz4: bool) -> Self {
        Self { lz4 }
    }

    fn header_len(self) -> usize {
        if self.lz4 {
            LZ4_HEADER_LEN
        } else {
            PLAIN_HEADER_LEN
        }
    }

    /// Splits one segment off `src`. `Ok(None)` (nothing consumed) until it is complete. On a
    /// payload CRC error the segment is consumed, so the caller may report it and go on.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Segment>, SegmentError> {
        let header_len = self.header_len();
        if src.len() < header_len {
            return Ok(None);
        }
        let mut raw = [0u8; 8];
        raw[..header_len].copy_from_slice(&src[..header_len]);
        let header = u64::from_le_bytes(raw);
        let (content_bytes, crc_shift) = if self.lz4 { (5, 40) } else { (3, 24) };
        let read_crc = ((header >> crc_shift) & 0xff_ffff) as u32;
        let computed = crc24(header, content_bytes);
        if read_crc != computed {
            return Err(SegmentError::HeaderCrc {
                read: read_crc,
                computed,
            });
        }
        let wire_len = (header & 0x1_ffff) as usize;
        let (uncompressed_len, self_contained) = if self.lz4 {
            (
                ((header >> 17) & 0x1_ffff) as usize,
                header & (1 << 34) != 0,
            )
        } else {
            (0, header & (1 << 17) != 0)
        };
        let total = header_len + wire_len + CRC_LEN;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let mut seg = src.split_to(total).freeze();
        seg.advance(header_len);
        let payload = seg.split_to(wire_len);
        let read = seg.get_u32_le();
        let computed = crc32(&payload);
        if read != computed {
            return Err(SegmentError::PayloadCrc { read, computed });
        }
        let payload = if uncompressed_len == 0 {
            payload
        } else {
            let mut out = vec![0; uncompressed_len];
            let n = lz4_flex::block::decompress_into(&payload, &mut out)
                .map_err(|e| SegmentError::Decompress(e.to_string()))?;
            if n != uncompressed_len {
                return Err(SegmentError::Decompress(format!(
                    "announced {uncompressed_len} bytes, decompressed {n}"
                )));
            }
            Bytes::from(out)
        };
        Ok(Some(Segment {
            self_contained,
            payload,
        }))
    }

    /// Appends one segment carrying `payload` to `dst`.
    pub fn encode(
        &self,
        payload: &[u8],
        self_contained: bool,
        dst: &mut BytesMut,
    ) -> Result<(), SegmentError> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(SegmentError::PayloadTooLong {
                length: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        let sc = u64::from(self_contained);
        if !self.lz4 {
            let header = payload.len() as u64 | (sc << 17);
            let header = header | (u64::from(crc24(header, 3)) << 24);
            dst.reserve(PLAIN_HEADER_LEN + payload.len() + CRC_LEN);
            dst.put_slice(&header.to_le_bytes()[..PLAIN_HEADER_LEN]);
            dst.put_slice(payload);
            dst.put_u32_le(crc32(payload));
            return Ok(());
        }
        // Compress straight into `dst` after a header slot; fall back to the raw payload when LZ4
        // does not make it smaller, which the receiver sees as uncompressed length 0.
        let start = dst.len();
        let bound = lz4_flex::block::get_maximum_output_size(payload.len());
        dst.resize(start + LZ4_HEADER_LEN + bound, 0);
        let body_start = start + LZ4_HEADER_LEN;
        let compressed = lz4_flex::block::compress_into(payload, &mut dst[body_start..])
            .map_err(|e| SegmentError::Decompress(e.to_string()))?;
        let (wire_len, uncompressed_len) = if compressed < payload.len() {
            (compressed, payload.len())
        } else {
            dst[body_start..body_start + payload.len()].copy_from_slice(payload);
            (payload.len(), 0)
        };
        dst.truncate(body_start + wire_len);
        let header = wire_len as u64 | ((uncompressed_len as u64) << 17) | (sc << 34);
        let header = header | (u64::from(crc24(header, 5)) << 40);
        dst[start..body_start].copy_from_slice(&header.to_le_bytes());
        let crc = crc32(&dst[body_start..]);
        dst.put_u32_le(crc);
        Ok(())
    }
}

/// Packs outgoing envelopes into segments: small envelopes share self-contained segments, an
/// envelope larger than a segment is split over several that are not self-contained.
#[derive(Debug, Default)]
pub struct SegmentWriter {
    codec: SegmentCodec,
    /// Whole envelopes waiting to fill a self-contained segment.
    pending: BytesMut,
}

impl SegmentWriter {
    pub fn new(codec: SegmentCodec) -> Self {
        Self {
            codec,
            pending: BytesMut::new(),
        }
    }

    /// Queues one envelope, writing any segment that fills up to `dst`.
    pub fn push(&mut self, envelope: &Envelope, dst: &mut BytesMut) -> Result<(), SegmentError> {
        self.push_parts(&envelope.header_bytes(), &envelope.body, dst)
    }

    /// [`SegmentWriter::push`] for an envelope given as its encoded header and its body (a
    /// caller that sends one envelope under another stream id patches only the header).
    pub fn push_parts(
        &mut self,
        header: &[u8; HEADER_LEN],
        body: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), SegmentError> {
        let len = HEADER_LEN + body.len();
        if len > MAX_PAYLOAD_LEN {
            self.flush(dst)?;
            let mut whole = BytesMut::with_capacity(len);
            whole.extend_from_slice(header);
            whole.extend_from_slice(body);
            for chunk in whole.chunks(MAX_PAYLOAD_LEN) {
                self.codec.encode(chunk, false, dst)?;
            }
            return Ok(());
        }
        if self.pending.len() + len > MAX_PAYLOAD_LEN {
            self.flush(dst)?;
        }
        self.pending.extend_from_slice(header);
        self.pending.extend_from_slice(body);
        Ok(())
    }

    /// Writes the pending envelopes as one self-contained segment.
    pub fn flush(&mut self, dst: &mut BytesMut) -> Result<(), SegmentError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.codec.encode(&self.pending, true, dst);
        self.pending.clear();
        result
    }
}

/// Takes envelopes out of incoming segments, joining envelopes that were split.
#[derive(Debug)]
pub struct EnvelopeReassembler {
    max_body_len: usize,
    /// The bytes received so far of an envelope split over segments.
    partial: BytesMut,
    /// Its full length (header + body), known from its first segment.
    partial_total: usize,
}

impl EnvelopeReassembler {
    pub fn new(max_body_len: usize) -> Self {
        Self {
            max_body_len,
            partial: BytesMut::new(),
            partial_total: 0,
        }
    }

    /// Whether part of a split envelope is still missing.
    pub fn in_progress(&self) -> bool {
        self.partial_total != 0
    }

    /// Feeds one segment; complete envelopes are appended to `out`.
    pub fn push(&mut self, segment: Segment, out: &mut Vec<Envelope>) -> Result<(), SegmentError> {
        if segment.self_contained {
            if self.in_progress() {
                return Err(SegmentError::InterruptedEnvelope {
                    missing: self.partial_total - self.partial.len(),
                });
            }
            let mut payload = segment.payload;
            while !payload.is_empty() {
                match Envelope::parse(&mut payload, self.max_body_len)? {
                    Some(env) => out.push(env),
                    None => {
                        let needed = EnvelopeHeader::decode(&payload, self.max_body_len)?
                            .map_or(HEADER_LEN, |h| HEADER_LEN + h.length as usize);
                        return Err(SegmentError::TruncatedEnvelope {
                            remaining: payload.len(),
                            needed,
                        });
                    }
                }
            }
            return Ok(());
        }
        if !self.in_progress() {
            // The first part must at least hold the header: segments are far larger than 9 bytes.
            let header = EnvelopeHeader::decode(&segment.payload, self.max_body_len)?.ok_or(
                SegmentError::TruncatedEnvelope {
                    remaining: segment.payload.len(),
                    needed: HEADER_LEN,
                },
            )?;
            self.partial_total = HEADER_LEN + header.length as usize;
            self.partial.reserve(self.partial_total);
        }
        self.partial.extend_from_slice(&segment.payload);
        if self.partial.len() > self.partial_total {
            let extra = self.partial.len() - self.partial_total;
            self.partial.clear();
            self.partial_total = 0;
            return Err(SegmentError::OverlongContinuation { extra });
        }
        if self.partial.len() == self.partial_total {
            let mut whole = std::mem::take(&mut self.partial).freeze();
            self.partial_total = 0;
            if let Some(env) = Envelope::parse(&mut whole, self.max_body_len)? {
                out.push(env);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::DEFAULT_MAX_BODY_LEN;
    use crate::protocol::{Direction, Opcode, ProtocolVersion};
    use proptest::prelude::*;

    fn env(stream: i16, body_len: usize) -> Envelope {
        let body: Vec<u8> = (0..body_len).map(|i| (i * 7 % 251) as u8).collect();
        Envelope::new(
            ProtocolVersion::V5,
            Direction::Request,
            0,
            stream,
            Opcode::Query,
            body.into(),
        )
    }

    #[test]
    fn uncompressed_header_golden() {
        // Payload "abc", self-contained: header bits = 3 | 1 << 17 = 0x020003, written
        // little-endian as 03 00 02, then its CRC24 (little-endian), then "abc", then the CRC32.
        let mut out = BytesMut::new();
        SegmentCodec::new(false)
            .encode(b"abc", true, &mut out)
            .unwrap();
        assert_eq!(&out[..3], &[0x03, 0x00, 0x02]);
        let crc = crc24(0x02_0003, 3);
        assert_eq!(&out[3..6], &crc.to_le_bytes()[..3]);
        assert_eq!(&out[6..9], b"abc");
        assert_eq!(&out[9..], &crc32(b"abc").to_le_bytes());
        let seg = SegmentCodec::new(false).decode(&mut out).unwrap().unwrap();
        assert_eq!(
            seg,
            Segment {
                self_contained: true,
                payload: Bytes::from_static(b"abc")
            }
        );
    }

    #[test]
    fn crc32_is_seeded() {
        // The seed makes the CRC of an empty payload differ from plain CRC32's 0.
        assert_ne!(crc32(b""), 0);
        assert_eq!(crc32(b""), crc32fast::hash(&CRC32_SEED));
    }

    #[test]
    fn decode_waits_for_complete_segment() {
        for lz4 in [false, true] {
            let codec = SegmentCodec::new(lz4);
            let mut full = BytesMut::new();
            codec.encode(&[42u8; 1000], true, &mut full).unwrap();
            for cut in 0..full.len() {
                let mut part = BytesMut::from(&full[..cut]);
                assert_eq!(codec.decode(&mut part).unwrap(), None, "cut at {cut}");
                assert_eq!(part.len(), cut);
            }
        }
    }

    #[test]
    fn corrupt_header_and_payload_are_told_apart() {
        for lz4 in [false, true] {
            let codec = SegmentCodec::new(lz4);
            let mut good = BytesMut::new();
            codec.encode(b"hello segment", true, &mut good).unwrap();
            let mut bad_header = good.clone();
            bad_header[0] ^= 1;
            assert!(matches!(
                codec.decode(&mut bad_header),
                Err(SegmentError::HeaderCrc { .. })
            ));
            let mut bad_payload = good.clone();
            let last = bad_payload.len() - 5;
            bad_payload[last] ^= 0x40;
            assert!(matches!(
                codec.decode(&mut bad_payload),
                Err(SegmentError::PayloadCrc { .. })
            ));
            assert!(
                bad_payload.is_empty(),
                "a payload CRC error consumes the segment"
            );
        }
    }

    #[test]
    fn lz4_falls_back_to_raw_when_it_does_not_help() {
        let codec = SegmentCodec::new(true);
        let mut out = BytesMut::new();
        codec.encode(&[1, 2, 3, 4], false, &mut out).unwrap();
        let header = u64::from_le_bytes(out[..8].try_into().unwrap());
        assert_eq!(
            (header >> 17) & 0x1_ffff,
            0,
            "uncompressed length 0 marks a raw payload"
        );
        let seg = codec.decode(&mut out).unwrap().unwrap();
        assert_eq!(&seg.payload[..], &[1, 2, 3, 4]);
        assert!(!seg.self_contained);
    }

    #[test]
    fn writer_and_reassembler_roundtrip_small_and_split_envelopes() {
        for lz4 in [false, true] {
            let codec = SegmentCodec::new(lz4);
            let envs = vec![
                env(1, 10),
                env(2, 0),
                env(3, 300_000),
                env(4, 70_000),
                env(5, 70_000),
            ];
            let mut writer = SegmentWriter::new(codec);
            let mut wire = BytesMut::new();
            for e in &envs {
                writer.push(e, &mut wire).unwrap();
            }
            writer.flush(&mut wire).unwrap();
            let mut re = EnvelopeReassembler::new(DEFAULT_MAX_BODY_LEN);
            let mut out = Vec::new();
            let mut segments = 0;
            while let Some(seg) = codec.decode(&mut wire).unwrap() {
                segments += 1;
                re.push(seg, &mut out).unwrap();
            }
            assert!(wire.is_empty());
            assert!(!re.in_progress());
            assert_eq!(out, envs);
            // 1 segment for envelopes 1-2, 3 for the 300 kB one, then 4 and 5 each fill one.
            assert_eq!(segments, 6, "lz4 = {lz4}");
        }
    }

    #[test]
    fn reassembler_rejects_truncated_and_interrupted_envelopes() {
        let mut re = EnvelopeReassembler::new(DEFAULT_MAX_BODY_LEN);
        let mut whole = BytesMut::new();
        env(1, 100).write_to(&mut whole);
        let cut = whole.split_to(50).freeze();
        let err = re.push(
            Segment {
                self_contained: true,
                payload: cut.clone(),
            },
            &mut Vec::new(),
        );
        assert!(matches!(
            err,
            Err(SegmentError::TruncatedEnvelope {
                remaining: 50,
                needed: 109
            })
        ));
        re.push(
            Segment {
                self_contained: false,
                payload: cut,
            },
            &mut Vec::new(),
        )
        .unwrap();
        let err = re.push(
            Segment {
                self_contained: true,
                payload: Bytes::new(),
            },
            &mut Vec::new(),
        );
        assert_eq!(err, Err(SegmentError::InterruptedEnvelope { missing: 59 }));
    }

    proptest! {
        #[test]
        fn segment_roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..2000), sc: bool, lz4: bool) {
            let codec = SegmentCodec::new(lz4);
            let mut out = BytesMut::new();
            codec.encode(&payload, sc, &mut out).unwrap();
            let seg = codec.decode(&mut out).unwrap().unwrap();
            prop_assert_eq!(seg.self_contained, sc);
            prop_assert_eq!(&seg.payload[..], &payload[..]);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), lz4: bool) {
            let codec = SegmentCodec::new(lz4);
            let mut buf = BytesMut::from(&data[..]);
            let mut re = EnvelopeReassembler::new(1 << 20);
            let mut out = Vec::new();
            while let Ok(Some(seg)) = codec.decode(&mut buf) {
                if re.push(seg, &mut out).is_err() {
                    break;
                }
            }
        }
    }
}
