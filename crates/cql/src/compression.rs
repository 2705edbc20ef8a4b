//! Body compression for protocol v3 and v4 (spec v4 section 5). v5 compresses whole segments
//! instead (see [`crate::segment`]).
//!
//! - LZ4: `[int]` uncompressed length (big-endian) followed by one LZ4 block.
//! - Snappy: one raw Snappy block (its own varint length header).
//!
//! Decompression checks the announced uncompressed length against the caller's cap *before*
//! allocating, so a 20-byte envelope cannot make us reserve gigabytes.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::envelope::Envelope;
use crate::protocol::{Opcode, ProtocolVersion, flags};

/// A compression algorithm named in STARTUP's `COMPRESSION` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Lz4,
    Snappy,
}

impl Compression {
    /// The STARTUP option value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lz4 => "lz4",
            Self::Snappy => "snappy",
        }
    }

    /// Whether this algorithm can be used with `version`: v5 supports only LZ4 (on segments).
    pub fn supported_in(self, version: ProtocolVersion) -> bool {
        version < ProtocolVersion::V5 || self == Self::Lz4
    }

    /// Compresses a v3/v4 envelope body.
    pub fn compress(self, body: &[u8]) -> Result<Vec<u8>, CompressionError> {
        match self {
            Self::Lz4 => {
                let len = i32::try_from(body.len()).map_err(|_| CompressionError::TooLong {
                    length: body.len() as u64,
                    max: i32::MAX as usize,
                })?;
                let mut out =
                    Vec::with_capacity(4 + lz4_flex::block::get_maximum_output_size(body.len()));
                out.extend_from_slice(&len.to_be_bytes());
                let start = out.len();
                out.resize(out.capacity(), 0);
                let n = lz4_flex::block::compress_into(body, &mut out[start..]).map_err(|e| {
                    CompressionError::Corrupt {
                        algorithm: self,
                        reason: e.to_string(),
                    }
                })?;
                out.truncate(start + n);
                Ok(out)
            }
            Self::Snappy => snap::raw::Encoder::new().compress_vec(body).map_err(|e| {
                CompressionError::Corrupt {
                    algorithm: self,
                    reason: e.to_string(),
                }
            }),
        }
    }

    /// Decompresses a v3/v4 envelope body whose uncompressed size may not exceed `max_len`.
    pub fn decompress(self, body: &[u8], max_len: usize) -> Result<Vec<u8>, CompressionError> {
        match self {
            Self::Lz4 => {
                let Some((len, block)) = body.split_first_chunk::<4>() else {
                    return Err(CompressionError::Corrupt {
                        algorithm: self,
                        reason: format!(
                            "{} bytes cannot hold the 4-byte length prefix",
                            body.len()
                        ),
                    });
                };
                let len = i32::from_be_bytes(*len);
                let len = usize::try_from(len).map_err(|_| CompressionError::Corrupt {
                    algorithm: self,
                    reason: format!("negative uncompressed length {len}"),
                })?;
                if len > max_len {
                    return Err(CompressionError::TooLong {
                        length: len as u64,
                        max: max_len,
                    });
                }
                let mut out = vec![0; len];
                let n = lz4_flex::block::decompress_into(block, &mut out).map_err(|e| {
                    CompressionError::Corrupt {
                        algorithm: self,
                        reason: e.to_string(),
                    }
                })?;
                if n != len {
                    return Err(CompressionError::Corrupt {
                        algorithm: self,
                        reason: format!("announced {len} bytes, decompressed {n}"),
                    });
                }
                Ok(out)
            }
            Self::Snappy => {
                let len =
                    snap::raw::decompress_len(body).map_err(|e| CompressionError::Corrupt {
                        algorithm: self,
                        reason: e.to_string(),
                    })?;
                if len > max_len {
                    return Err(CompressionError::TooLong {
                        length: len as u64,
                        max: max_len,
                    });
                }
                snap::raw::Decoder::new().decompress_vec(body).map_err(|e| {
                    CompressionError::Corrupt {
                        algorithm: self,
                        reason: e.to_string(),
                    }
                })
            }
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `COMPRESSION` value this crate does not implement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression algorithm {0:?} (supported: lz4, snappy)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("lz4") {
            Ok(Self::Lz4)
        } else if s.eq_ignore_ascii_case("snappy") {
            Ok(Self::Snappy)
        } else {
            Err(UnknownCompression(s.to_owned()))
        }
    }
}

/// Compressing or decompressing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressionError {
    #[error("uncompressed length {length} exceeds the maximum {max}")]
    TooLong { length: u64, max: usize },
    #[error("{algorithm} data is corrupt: {reason}")]
    Corrupt {
        algorithm: Compression,
        reason: String,
    },
}

impl Envelope {
    /// Returns the envelope with its body decompressed and the compression flag cleared; an
    /// envelope without the flag is returned as it is.
    pub fn decompressed(
        self,
        algorithm: Compression,
        max_len: usize,
    ) -> Result<Self, CompressionError> {
        if !self.header.has_flag(flags::COMPRESSION) {
            return Ok(self);
        }
        let body = Bytes::from(algorithm.decompress(&self.body, max_len)?);
        let mut header = self.header;
        header.flags &= !flags::COMPRESSION;
        header.length = body.len() as u32;
        Ok(Self { header, body })
    }

    /// Returns the envelope with its body compressed and the flag set. STARTUP and OPTIONS go
    /// out uncompressed (compression is not negotiated yet), and so do empty bodies, which
    /// drivers also leave alone.
    pub fn compressed(self, algorithm: Compression) -> Result<Self, CompressionError> {
        if self.header.has_flag(flags::COMPRESSION)
            || self.body.is_empty()
            || matches!(self.header.opcode, Opcode::Startup | Opcode::Options)
        {
            return Ok(self);
        }
        let body = Bytes::from(algorithm.compress(&self.body)?);
        let mut header = self.header;
        header.flags |= flags::COMPRESSION;
        header.length = u32::try_from(body.len()).map_err(|_| CompressionError::TooLong {
            length: body.len() as u64,
            max: u32::MAX as usize,
        })?;
        Ok(Self { header, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Direction;
    use proptest::prelude::*;

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!("LZ4".parse(), Ok(Compression::Lz4));
        assert_eq!("snappy".parse(), Ok(Compression::Snappy));
        assert!(
            "zstd"
                .parse::<Compression>()
                .unwrap_err()
                .to_string()
                .contains("zstd")
        );
        assert!(!Compression::Snappy.supported_in(ProtocolVersion::V5));
    }

    #[test]
    fn lz4_body_starts_with_big_endian_length() {
        let body = b"SELECT * FROM system.local WHERE key = 'local'".repeat(4);
        let c = Compression::Lz4.compress(&body).unwrap();
        assert_eq!(&c[..4], &(body.len() as i32).to_be_bytes());
        assert_eq!(Compression::Lz4.decompress(&c, 1 << 20).unwrap(), body);
    }

    #[test]
    fn decompression_refuses_bombs_before_allocating() {
        let mut bomb = i32::MAX.to_be_bytes().to_vec();
        bomb.push(0);
        assert_eq!(
            Compression::Lz4.decompress(&bomb, 1024),
            Err(CompressionError::TooLong {
                length: i32::MAX as u64,
                max: 1024
            })
        );
        let big = Compression::Snappy.compress(&vec![0u8; 4096]).unwrap();
        assert!(matches!(
            Compression::Snappy.decompress(&big, 1024),
            Err(CompressionError::TooLong {
                length: 4096,
                max: 1024
            })
        ));
    }

    #[test]
    fn envelope_compression_sets_and_clears_the_flag() {
        let env = Envelope::new(
            ProtocolVersion::V4,
            Direction::Request,
            0,
            3,
            Opcode::Query,
            Bytes::from(vec![b'a'; 1000]),
        );
        for algo in [Compression::Lz4, Compression::Snappy] {
            let c = env.clone().compressed(algo).unwrap();
            assert!(c.header.has_flag(flags::COMPRESSION));
            assert!(c.body.len() < 100);
            assert_eq!(c.header.length as usize, c.body.len());
            assert_eq!(c.decompressed(algo, 1 << 20).unwrap(), env);
        }
        let startup = Envelope::new(
            ProtocolVersion::V4,
            Direction::Request,
            0,
            0,
            Opcode::Startup,
            Bytes::from_static(b"xyz"),
        );
        assert_eq!(
            startup.clone().compressed(Compression::Lz4).unwrap(),
            startup
        );
    }

    proptest! {
        #[test]
        fn roundtrip_any_body(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
            for algo in [Compression::Lz4, Compression::Snappy] {
                let c = algo.compress(&body).unwrap();
                prop_assert_eq!(algo.decompress(&c, body.len()).unwrap(), body.clone());
            }
        }

        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            for algo in [Compression::Lz4, Compression::Snappy] {
                let _ = algo.decompress(&body, 1 << 16);
            }
        }
    }
}
