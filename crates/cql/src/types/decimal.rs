//! Arbitrary-precision numbers: `varint` (spec 6.24 of v5) and `decimal` (6.6).
//!
//! Kept as two's-complement bytes rather than a bignum: the codec only moves them between the
//! wire and literals, and a proxy should not pay for arithmetic it never does.

use std::fmt;

/// A `varint`: minimal two's-complement big-endian bytes (zero is `00`).
///
/// Minimal means no redundant leading `00`/`ff` sign byte, as Java's `BigInteger.toByteArray`
/// produces; every constructor normalizes, so equal numbers compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CqlVarint(Vec<u8>);

impl CqlVarint {
    /// Normalizes any two's-complement big-endian encoding; an empty slice is zero.
    pub fn from_signed_bytes_be(bytes: &[u8]) -> Self {
        let mut start = 0;
        // A leading 00 (ff) is redundant when the next byte already has a clear (set) sign bit.
        while start + 1 < bytes.len() {
            let (b, next) = (bytes[start], bytes[start + 1]);
            if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        if bytes.is_empty() {
            Self(vec![0])
        } else {
            Self(bytes[start..].to_vec())
        }
    }

    /// The minimal two's-complement big-endian bytes, as they travel on the wire.
    pub fn as_signed_bytes_be(&self) -> &[u8] {
        &self.0
    }

    pub fn is_negative(&self) -> bool {
        self.0[0] & 0x80 != 0
    }

    /// The value when it fits 128 bits.
    pub fn to_i128(&self) -> Option<i128> {
        if self.0.len() > 16 {
            return None;
        }
        let fill = if self.is_negative() { 0xff } else { 0x00 };
        let mut be = [fill; 16];
        be[16 - self.0.len()..].copy_from_slice(&self.0);
        Some(i128::from_be_bytes(be))
    }

    /// The value when it fits 64 bits.
    pub fn to_i64(&self) -> Option<i64> {
        self.to_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// Decimal digits of the magnitude (no sign), by repeated division by 10^9 over base-256 limbs.
    fn magnitude_digits(&self) -> String {
        let mut mag = self.0.clone();
        if self.is_negative() {
            // Two's-complement negate: invert then add one.
            for b in &mut mag {
                *b = !*b;
            }
            for b in mag.iter_mut().rev() {
                let (v, carry) = b.overflowing_add(1);
                *b = v;
                if !carry {
                    break;
                }
            }
        }
        let mut chunks = Vec::new();
        while mag.iter().any(|&b| b != 0) {
            let mut rem: u64 = 0;
            for b in &mut mag {
                let cur = (rem << 8) | u64::from(*b);
                *b = (cur / 1_000_000_000) as u8;
                rem = cur % 1_000_000_000;
            }
            chunks.push(rem as u32);
        }
        let Some((last, rest)) = chunks.split_last() else {
            return "0".to_owned();
        };
        let mut s = last.to_string();
        for c in rest.iter().rev() {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

impl From<i64> for CqlVarint {
    fn from(v: i64) -> Self {
        Self::from_signed_bytes_be(&v.to_be_bytes())
    }
}

impl From<i128> for CqlVarint {
    fn from(v: i128) -> Self {
        Self::from_signed_bytes_be(&v.to_be_bytes())
    }
}

impl fmt::Display for CqlVarint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_negative() {
            f.write_str("-")?;
        }
        f.write_str(&self.magnitude_digits())
    }
}

/// A `decimal`: `unscaled * 10^-scale`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CqlDecimal {
    pub scale: i32,
    pub unscaled: CqlVarint,
}

/// Scales beyond this render in exponent form, so a literal never carries thousands of zeros.
const MAX_PLAIN_SCALE: i64 = 64;

impl fmt::Display for CqlDecimal {
    /// Renders a CQL literal that Java's `BigDecimal(String)` parses back to the same unscaled
    /// value *and* scale: `123.45`, `0.005`, `5E+3`, `5E-100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.magnitude_digits();
        let sign = if self.unscaled.is_negative() { "-" } else { "" };
        let scale = i64::from(self.scale);
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        if scale > 0 && scale <= MAX_PLAIN_SCALE {
            let scale = scale as usize;
            let padded = if digits.len() <= scale {
                format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
            } else {
                digits
            };
            let (int, frac) = padded.split_at(padded.len() - scale);
            return write!(f, "{sign}{int}.{frac}");
        }
        // BigDecimal("dE+n") has scale -n.
        let exp = -scale;
        if exp >= 0 {
            write!(f, "{sign}{digits}E+{exp}")
        } else {
            write!(f, "{sign}{digits}E{exp}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_spec_examples_are_minimal() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x00, 0x80]),
            (129, &[0x00, 0x81]),
            (-1, &[0xff]),
            (-128, &[0x80]),
            (-129, &[0xff, 0x7f]),
        ];
        for &(v, bytes) in cases {
            let n = CqlVarint::from(v);
            assert_eq!(n.as_signed_bytes_be(), bytes, "{v}");
            assert_eq!(n.to_i64(), Some(v));
            assert_eq!(n.to_string(), v.to_string());
        }
        assert_eq!(
            CqlVarint::from_signed_bytes_be(&[0, 0, 1]).as_signed_bytes_be(),
            [1]
        );
        assert_eq!(
            CqlVarint::from_signed_bytes_be(&[0xff, 0xff, 0x80]).as_signed_bytes_be(),
            [0x80]
        );
        assert_eq!(
            CqlVarint::from_signed_bytes_be(&[]).as_signed_bytes_be(),
            [0]
        );
    }

    #[test]
    fn varint_wide_values_print_exactly() {
        for v in [
            i128::MIN,
            i128::MAX,
            -1_000_000_000_000_000_000_000,
            999_999_999,
        ] {
            let n = CqlVarint::from(v);
            assert_eq!(n.to_string(), v.to_string());
            assert_eq!(n.to_i128(), Some(v));
        }
        assert_eq!(CqlVarint::from(i128::MAX).to_i64(), None);
        // 2^128: too wide for i128.
        let big = CqlVarint::from_signed_bytes_be(&[
            0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(big.to_i128(), None);
        assert_eq!(big.to_string(), "340282366920938463463374607431768211456");
    }

    #[test]
    fn decimal_renders_with_its_scale() {
        let d = |unscaled: i64, scale| CqlDecimal {
            scale,
            unscaled: unscaled.into(),
        };
        assert_eq!(d(12345, 2).to_string(), "123.45");
        assert_eq!(d(-5, 3).to_string(), "-0.005");
        assert_eq!(d(7, 0).to_string(), "7");
        assert_eq!(d(5, -3).to_string(), "5E+3");
        assert_eq!(d(5, 100).to_string(), "5E-100");
        assert_eq!(d(100, 1).to_string(), "10.0");
    }
}
