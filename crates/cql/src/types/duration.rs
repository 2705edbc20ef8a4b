//! The `duration` type (spec 6.8 of v5): months, days and nanoseconds, each a `[vint]`.

use std::fmt;

use bytes::BufMut;

use crate::wire::{self, DecodeError};

/// A `duration`. Months and days are kept apart from nanoseconds because their length in time
/// depends on the calendar; Cassandra never normalizes one into another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CqlDuration {
    pub months: i32,
    pub days: i32,
    pub nanos: i64,
}

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;
const NANOS_PER_MINUTE: u64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u64 = 60 * NANOS_PER_MINUTE;

impl CqlDuration {
    /// Whether all three parts share a sign, as Cassandra requires (zero goes with either).
    pub fn has_consistent_sign(&self) -> bool {
        let any_neg = self.months < 0 || self.days < 0 || self.nanos < 0;
        let any_pos = self.months > 0 || self.days > 0 || self.nanos > 0;
        !(any_neg && any_pos)
    }

    /// Reads the three `[vint]`s of a whole value and checks ranges and signs.
    pub(crate) fn read(mut bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "duration";
        let months = wire::read_vint(&mut bytes, WHAT)?;
        let days = wire::read_vint(&mut bytes, WHAT)?;
        let nanos = wire::read_vint(&mut bytes, WHAT)?;
        wire::expect_end(bytes, WHAT)?;
        let months = i32::try_from(months).map_err(|_| DecodeError::InvalidValue {
            what: "duration months",
            value: months,
        })?;
        let days = i32::try_from(days).map_err(|_| DecodeError::InvalidValue {
            what: "duration days",
            value: days,
        })?;
        let d = Self {
            months,
            days,
            nanos,
        };
        if !d.has_consistent_sign() {
            return Err(DecodeError::Malformed {
                what: WHAT,
                reason: format!("mixed signs: {months} months, {days} days, {nanos} ns"),
            });
        }
        Ok(d)
    }

    pub(crate) fn write(&self, buf: &mut impl BufMut) {
        wire::write_vint(buf, self.months.into());
        wire::write_vint(buf, self.days.into());
        wire::write_vint(buf, self.nanos);
    }
}

impl fmt::Display for CqlDuration {
    /// Cassandra's duration literal: `1y2mo3d4h5m6s7ms8us9ns`, a leading `-` for negative ones
    /// and `0ns` for zero. Valid unquoted in CQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.months < 0 || self.days < 0 || self.nanos < 0 {
            f.write_str("-")?;
        }
        let months = self.months.unsigned_abs();
        let days = self.days.unsigned_abs();
        let mut nanos = self.nanos.unsigned_abs();
        let mut wrote = false;
        let mut part = |f: &mut fmt::Formatter<'_>, n: u64, unit: &str| -> fmt::Result {
            if n == 0 {
                return Ok(());
            }
            wrote = true;
            write!(f, "{n}{unit}")
        };
        part(f, u64::from(months / 12), "y")?;
        part(f, u64::from(months % 12), "mo")?;
        part(f, u64::from(days), "d")?;
        for (size, unit) in [
            (NANOS_PER_HOUR, "h"),
            (NANOS_PER_MINUTE, "m"),
            (NANOS_PER_SECOND, "s"),
            (NANOS_PER_MILLI, "ms"),
            (NANOS_PER_MICRO, "us"),
        ] {
            part(f, nanos / size, unit)?;
            nanos %= size;
        }
        part(f, nanos, "ns")?;
        if !wrote {
            f.write_str("0ns")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bytes_and_roundtrip() {
        // 1 month, 2 days, 3 ns: zigzag 2, 4, 6.
        let d = CqlDuration {
            months: 1,
            days: 2,
            nanos: 3,
        };
        let mut out = Vec::new();
        d.write(&mut out);
        assert_eq!(out, [0x02, 0x04, 0x06]);
        assert_eq!(CqlDuration::read(&out).unwrap(), d);
        let neg = CqlDuration {
            months: -1,
            days: 0,
            nanos: -1_000,
        };
        let mut out = Vec::new();
        neg.write(&mut out);
        assert_eq!(out, [0x01, 0x00, 0x87, 0xcf]);
        assert_eq!(CqlDuration::read(&out).unwrap(), neg);
    }

    #[test]
    fn rejects_mixed_signs_and_wide_months() {
        let mixed = [0x02, 0x01, 0x00]; // +1 month, -1 day
        assert!(matches!(
            CqlDuration::read(&mixed),
            Err(DecodeError::Malformed { .. })
        ));
        let mut wide = Vec::new();
        wire::write_vint(&mut wide, i64::from(i32::MAX) + 1);
        wide.extend_from_slice(&[0, 0]);
        assert!(matches!(
            CqlDuration::read(&wide),
            Err(DecodeError::InvalidValue { .. })
        ));
        assert!(matches!(
            CqlDuration::read(&[0, 0, 0, 0]),
            Err(DecodeError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn literal_form() {
        let d = |months, days, nanos| {
            CqlDuration {
                months,
                days,
                nanos,
            }
            .to_string()
        };
        assert_eq!(d(1, 2, 3), "1mo2d3ns");
        assert_eq!(d(14, 0, 3_723_000_000_001), "1y2mo1h2m3s1ns");
        assert_eq!(d(0, 0, 0), "0ns");
        assert_eq!(d(-1, -2, -1_500_000), "-1mo2d1ms500us");
        assert_eq!(
            d(i32::MIN, 0, i64::MIN),
            "-178956970y8mo2562047h47m16s854ms775us808ns"
        );
    }
}
