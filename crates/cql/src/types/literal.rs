//! CQL literals for values: what the proxy splices in place of `now()`, what the migrator
//! writes into statements, and what a cqlsh-like display prints.
//!
//! Each form is one Cassandra parses back to the same bytes: text in single quotes (`''` for
//! a quote), blobs as `0x…`, uuids bare, timestamps as integer milliseconds, inet/date/time
//! quoted, durations in unit form (`1mo2d3ns`), `NaN`/`Infinity`, collections `[…]` `{…}`
//! `{k: v}`, tuples `(…)`, UDTs `{field: v}`.
//!
//! Known gaps: [`CqlValue::Empty`] has no typed CQL literal and renders as `''` (right for
//! string-like receivers only); an IPv4-mapped IPv6 address is read back by Cassandra (Java's
//! `InetAddress`) as the IPv4 address.

use std::fmt::Write as _;

use super::value::CqlValue;

/// An identifier as CQL must spell it: bare when it is lowercase and not reserved (unquoted
/// identifiers are case-folded), double-quoted with `""` escaping otherwise.
pub(crate) fn quote_identifier(name: &str) -> String {
    crate::statement::keywords::quote_identifier(name)
}

impl CqlValue {
    /// This value as a CQL literal.
    pub fn to_cql_literal(&self) -> String {
        let mut s = String::new();
        self.write_cql_literal(&mut s);
        s
    }

    /// Appends this value's CQL literal to `out`.
    pub fn write_cql_literal(&self, out: &mut String) {
        match self {
            Self::Ascii(s) | Self::Text(s) => push_quoted(out, s),
            Self::Bigint(n) | Self::Counter(n) | Self::Timestamp(n) => {
                let _ = write!(out, "{n}");
            }
            Self::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Self::Smallint(n) => {
                let _ = write!(out, "{n}");
            }
            Self::Tinyint(n) => {
                let _ = write!(out, "{n}");
            }
            Self::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Blob(b) | Self::Custom(b) => push_blob(out, b),
            Self::Decimal(d) => {
                let _ = write!(out, "{d}");
            }
            Self::Varint(n) => {
                let _ = write!(out, "{n}");
            }
            Self::Double(x) => push_float(out, &format!("{x:?}")),
            Self::Float(x) => push_float(out, &format!("{x:?}")),
            Self::Uuid(u) | Self::Timeuuid(u) => push_uuid(out, u),
            Self::Inet(ip) => {
                let _ = write!(out, "'{ip}'");
            }
            Self::Date(d) => push_date(out, *d),
            Self::Time(ns) => push_time(out, *ns),
            Self::Duration(d) => {
                let _ = write!(out, "{d}");
            }
            Self::List(es) | Self::Vector(es) => {
                push_seq(out, '[', ']', es.iter(), |out, e| e.write_cql_literal(out))
            }
            Self::Set(es) => push_seq(out, '{', '}', es.iter(), |out, e| e.write_cql_literal(out)),
            Self::Map(pairs) => push_seq(out, '{', '}', pairs.iter(), |out, (k, v)| {
                k.write_cql_literal(out);
                out.push_str(": ");
                v.write_cql_literal(out);
            }),
            Self::Tuple(es) => push_seq(out, '(', ')', es.iter(), |out, e| {
                push_nullable(out, e.as_ref())
            }),
            Self::Udt { fields, .. } => push_seq(out, '{', '}', fields.iter(), |out, (name, v)| {
                out.push_str(&quote_identifier(name));
                out.push_str(": ");
                push_nullable(out, v.as_ref());
            }),
            Self::Empty => out.push_str("''"),
        }
    }
}

fn push_nullable(out: &mut String, v: Option<&CqlValue>) {
    match v {
        Some(v) => v.write_cql_literal(out),
        None => out.push_str("null"),
    }
}

fn push_seq<T>(
    out: &mut String,
    open: char,
    close: char,
    items: impl Iterator<Item = T>,
    mut each: impl FnMut(&mut String, T),
) {
    out.push(open);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        each(out, item);
    }
    out.push(close);
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
}

fn push_blob(out: &mut String, b: &[u8]) {
    out.push_str("0x");
    for byte in b {
        let _ = write!(out, "{byte:02x}");
    }
}

/// `debug` is Rust's `{:?}` of the float: the shortest text that parses back to the same value,
/// and its finite forms (`1.5`, `1e-7`, `-0.0`) are all CQL float or integer literals.
fn push_float(out: &mut String, debug: &str) {
    out.push_str(match debug {
        "inf" => "Infinity",
        "-inf" => "-Infinity",
        other => other, // includes "NaN", spelled as CQL spells it
    });
}

fn push_uuid(out: &mut String, u: &[u8; 16]) {
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}");
    }
}

/// Days since the Unix epoch to a proleptic Gregorian (year, month, day), by Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The Unix epoch's day number in a `date`.
const DATE_EPOCH: i64 = 1 << 31;

/// `'YYYY-MM-DD'` for years 1 to 9999; outside that, Cassandra's other accepted form, the raw
/// unsigned day number as a string.
fn push_date(out: &mut String, d: u32) {
    let (y, m, day) = civil_from_days(i64::from(d) - DATE_EPOCH);
    if (1..=9999).contains(&y) {
        let _ = write!(out, "'{y:04}-{m:02}-{day:02}'");
    } else {
        let _ = write!(out, "'{d}'");
    }
}

/// `'HH:MM:SS'` with a 9-digit fraction when there are nanoseconds. Out-of-range values (which
/// the codec never produces) print as raw nanoseconds so nothing is silently wrapped.
fn push_time(out: &mut String, ns: i64) {
    if !(0..super::value::NANOS_PER_DAY).contains(&ns) {
        let _ = write!(out, "{ns}");
        return;
    }
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let _ = write!(
        out,
        "'{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let _ = write!(out, ".{frac:09}");
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::super::decimal::{CqlDecimal, CqlVarint};
    use super::super::duration::CqlDuration;
    use super::*;

    fn lit(v: CqlValue) -> String {
        v.to_cql_literal()
    }

    #[test]
    fn scalars() {
        use CqlValue as V;
        assert_eq!(lit(V::Text("it's".into())), "'it''s'");
        assert_eq!(lit(V::Ascii(String::new())), "''");
        assert_eq!(lit(V::Blob(vec![0xca, 0xfe])), "0xcafe");
        assert_eq!(lit(V::Blob(vec![])), "0x");
        assert_eq!(lit(V::Boolean(false)), "false");
        assert_eq!(lit(V::Timestamp(-5)), "-5");
        assert_eq!(lit(V::Tinyint(-128)), "-128");
        let u = [
            0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17,
            0x40, 0x00,
        ];
        assert_eq!(lit(V::Uuid(u)), "123e4567-e89b-12d3-a456-426614174000");
        assert_eq!(lit(V::Inet("::1".parse().unwrap())), "'::1'");
        assert_eq!(lit(V::Varint(CqlVarint::from(-129i64))), "-129");
        assert_eq!(
            lit(V::Decimal(CqlDecimal {
                scale: 1,
                unscaled: 15i64.into()
            })),
            "1.5"
        );
        assert_eq!(
            lit(V::Duration(CqlDuration {
                months: 1,
                days: 2,
                nanos: 3
            })),
            "1mo2d3ns"
        );
        assert_eq!(lit(V::Custom(vec![1])), "0x01");
    }

    #[test]
    fn floats() {
        use CqlValue as V;
        assert_eq!(lit(V::Double(f64::NAN)), "NaN");
        assert_eq!(lit(V::Double(f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(lit(V::Float(f32::INFINITY)), "Infinity");
        assert_eq!(lit(V::Double(1.0)), "1.0");
        assert_eq!(lit(V::Double(1e-7)), "1e-7");
        assert_eq!(lit(V::Float(0.1)), "0.1");
        for x in [0.1f64, 1e300, -2.5e-300, 123_456.789] {
            assert_eq!(lit(V::Double(x)).parse::<f64>().unwrap(), x);
        }
    }

    #[test]
    fn dates_and_times() {
        use CqlValue as V;
        assert_eq!(lit(V::Date(1 << 31)), "'1970-01-01'");
        assert_eq!(lit(V::Date((1 << 31) - 1)), "'1969-12-31'");
        assert_eq!(lit(V::Date((1 << 31) + 19_723)), "'2024-01-01'");
        assert_eq!(lit(V::Date((1 << 31) + 11_016)), "'2000-02-29'");
        assert_eq!(lit(V::Date(0)), "'0'");
        assert_eq!(lit(V::Date(u32::MAX)), "'4294967295'");
        assert_eq!(lit(V::Time(0)), "'00:00:00'");
        assert_eq!(lit(V::Time(45_296_000_000_007)), "'12:34:56.000000007'");
    }

    #[test]
    fn collections_tuples_udts() {
        use CqlValue as V;
        assert_eq!(lit(V::List(vec![V::Int(1), V::Int(2)])), "[1, 2]");
        assert_eq!(lit(V::Set(vec![])), "{}");
        assert_eq!(
            lit(V::Map(vec![(V::Text("k".into()), V::Set(vec![V::Int(1)]))])),
            "{'k': {1}}"
        );
        assert_eq!(lit(V::Tuple(vec![Some(V::Int(1)), None])), "(1, null)");
        assert_eq!(
            lit(V::Vector(vec![V::Float(1.0), V::Float(2.5)])),
            "[1.0, 2.5]"
        );
        let udt = V::Udt {
            keyspace: "ks".into(),
            name: "t".into(),
            fields: vec![
                ("street".into(), Some(V::Text("x".into()))),
                ("Zip".into(), None),
                ("from".into(), Some(V::Int(1))),
                ("a\"b".into(), Some(V::Int(2))),
            ],
        };
        assert_eq!(
            lit(udt),
            "{street: 'x', \"Zip\": null, \"from\": 1, \"a\"\"b\": 2}"
        );
    }

    #[test]
    fn civil_dates_match_known_points() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
        // The spec's examples for date 0 and "2^32" (it means the largest, 2^32 - 1).
        assert_eq!(civil_from_days(-DATE_EPOCH), (-5_877_641, 6, 23));
        assert_eq!(civil_from_days(DATE_EPOCH - 1), (5_881_580, 7, 11));
    }
}
