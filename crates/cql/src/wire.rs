//! Wire primitives of the native protocol (spec section 3, "Notations").
//!
//! Readers take `&mut &[u8]` and advance it; they borrow from the input and never allocate unless
//! they return an owned type (`String`, `Vec`). Callers that own the body as [`Bytes`](bytes::Bytes) turn a
//! borrowed slice into a zero-copy `Bytes` with [`Bytes::slice_ref`](bytes::Bytes::slice_ref). Writers append to a
//! [`BufMut`] and fail only where the protocol's length prefix cannot hold the value.
//!
//! Every reader checks the remaining length before it touches a byte: "too short" is an error
//! here, because a body is always complete by the time it is parsed (the envelope layer is the one
//! that says "need more bytes").

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::BufMut;

/// A body or value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{what}: needed {needed} bytes, {remaining} remain")]
    TooShort {
        what: &'static str,
        needed: usize,
        remaining: usize,
    },
    #[error("{what}: negative length {len}")]
    NegativeLength { what: &'static str, len: i64 },
    #[error("{what}: invalid UTF-8")]
    InvalidUtf8 { what: &'static str },
    #[error("{what}: invalid value {value}")]
    InvalidValue { what: &'static str, value: i64 },
    #[error("{what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what}: {extra} bytes left over after decoding")]
    TrailingBytes { what: &'static str, extra: usize },
}

/// A value does not fit the protocol's length prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{what}: length {len} exceeds the maximum {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

/// A `[value]`: bytes, null (-1) or, from protocol v4 on, "not set" (-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawValue<'a> {
    Null,
    Unset,
    Bytes(&'a [u8]),
}

/// Takes exactly `n` bytes.
#[inline]
pub fn read_raw<'a>(
    buf: &mut &'a [u8],
    n: usize,
    what: &'static str,
) -> Result<&'a [u8], DecodeError> {
    if buf.len() < n {
        return Err(DecodeError::TooShort {
            what,
            needed: n,
            remaining: buf.len(),
        });
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

#[inline]
fn read_array<const N: usize>(buf: &mut &[u8], what: &'static str) -> Result<[u8; N], DecodeError> {
    let raw = read_raw(buf, N, what)?;
    let mut out = [0u8; N];
    out.copy_from_slice(raw);
    Ok(out)
}

#[inline]
pub fn read_byte(buf: &mut &[u8], what: &'static str) -> Result<u8, DecodeError> {
    Ok(read_array::<1>(buf, what)?[0])
}

#[inline]
pub fn write_byte(buf: &mut impl BufMut, v: u8) {
    buf.put_u8(v);
}

/// `[short]`: unsigned 16-bit.
#[inline]
pub fn read_short(buf: &mut &[u8], what: &'static str) -> Result<u16, DecodeError> {
    Ok(u16::from_be_bytes(read_array(buf, what)?))
}

#[inline]
pub fn write_short(buf: &mut impl BufMut, v: u16) {
    buf.put_u16(v);
}

/// `[int]`: signed 32-bit.
#[inline]
pub fn read_int(buf: &mut &[u8], what: &'static str) -> Result<i32, DecodeError> {
    Ok(i32::from_be_bytes(read_array(buf, what)?))
}

#[inline]
pub fn write_int(buf: &mut impl BufMut, v: i32) {
    buf.put_i32(v);
}

/// `[long]`: signed 64-bit.
#[inline]
pub fn read_long(buf: &mut &[u8], what: &'static str) -> Result<i64, DecodeError> {
    Ok(i64::from_be_bytes(read_array(buf, what)?))
}

#[inline]
pub fn write_long(buf: &mut impl BufMut, v: i64) {
    buf.put_i64(v);
}

fn non_negative(len: i32, what: &'static str) -> Result<usize, DecodeError> {
    usize::try_from(len).map_err(|_| DecodeError::NegativeLength {
        what,
        len: len.into(),
    })
}

fn utf8<'a>(raw: &'a [u8], what: &'static str) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { what })
}

fn short_len(len: usize, what: &'static str) -> Result<u16, EncodeError> {
    u16::try_from(len).map_err(|_| EncodeError::TooLong {
        what,
        len,
        max: u16::MAX as usize,
    })
}

fn int_len(len: usize, what: &'static str) -> Result<i32, EncodeError> {
    i32::try_from(len).map_err(|_| EncodeError::TooLong {
        what,
        len,
        max: i32::MAX as usize,
    })
}

/// `[string]`: `[short]` length then UTF-8.
#[inline]
pub fn read_string<'a>(buf: &mut &'a [u8], what: &'static str) -> Result<&'a str, DecodeError> {
    let len = read_short(buf, what)?;
    utf8(read_raw(buf, len.into(), what)?, what)
}

pub fn write_string(buf: &mut impl BufMut, s: &str, what: &'static str) -> Result<(), EncodeError> {
    buf.put_u16(short_len(s.len(), what)?);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// `[long string]`: `[int]` length then UTF-8.
#[inline]
pub fn read_long_string<'a>(
    buf: &mut &'a [u8],
    what: &'static str,
) -> Result<&'a str, DecodeError> {
    let len = non_negative(read_int(buf, what)?, what)?;
    utf8(read_raw(buf, len, what)?, what)
}

pub fn write_long_string(
    buf: &mut impl BufMut,
    s: &str,
    what: &'static str,
) -> Result<(), EncodeError> {
    buf.put_i32(int_len(s.len(), what)?);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// `[uuid]`: 16 bytes.
#[inline]
pub fn read_uuid(buf: &mut &[u8], what: &'static str) -> Result<[u8; 16], DecodeError> {
    read_array(buf, what)
}

#[inline]
pub fn write_uuid(buf: &mut impl BufMut, uuid: &[u8; 16]) {
    buf.put_slice(uuid);
}

/// `[string list]`: `[short]` n then n `[string]`.
pub fn read_string_list(buf: &mut &[u8], what: &'static str) -> Result<Vec<String>, DecodeError> {
    let n = read_short(buf, what)?;
    // Each string takes at least its 2-byte length: cap the pre-allocation by what can be there.
    let mut out = Vec::with_capacity(usize::from(n).min(buf.len() / 2));
    for _ in 0..n {
        out.push(read_string(buf, what)?.to_owned());
    }
    Ok(out)
}

pub fn write_string_list<S: AsRef<str>>(
    buf: &mut impl BufMut,
    list: &[S],
    what: &'static str,
) -> Result<(), EncodeError> {
    buf.put_u16(short_len(list.len(), what)?);
    for s in list {
        write_string(buf, s.as_ref(), what)?;
    }
    Ok(())
}

/// `[bytes]`: `[int]` n then n bytes; n < 0 is null.
#[inline]
pub fn read_bytes<'a>(
    buf: &mut &'a [u8],
    what: &'static str,
) -> Result<Option<&'a [u8]>, DecodeError> {
    let len = read_int(buf, what)?;
    if len < 0 {
        return Ok(None);
    }
    read_raw(buf, len as usize, what).map(Some)
}

pub fn write_bytes(
    buf: &mut impl BufMut,
    v: Option<&[u8]>,
    what: &'static str,
) -> Result<(), EncodeError> {
    match v {
        None => buf.put_i32(-1),
        Some(b) => {
            buf.put_i32(int_len(b.len(), what)?);
            buf.put_slice(b);
        }
    }
    Ok(())
}

/// `[value]`: like `[bytes]`, with -2 meaning "not set". Other negative lengths are invalid.
#[inline]
pub fn read_value<'a>(buf: &mut &'a [u8], what: &'static str) -> Result<RawValue<'a>, DecodeError> {
    match read_int(buf, what)? {
        -1 => Ok(RawValue::Null),
        -2 => Ok(RawValue::Unset),
        len if len < 0 => Err(DecodeError::NegativeLength {
            what,
            len: len.into(),
        }),
        len => read_raw(buf, len as usize, what).map(RawValue::Bytes),
    }
}

pub fn write_value(
    buf: &mut impl BufMut,
    v: RawValue<'_>,
    what: &'static str,
) -> Result<(), EncodeError> {
    match v {
        RawValue::Null => buf.put_i32(-1),
        RawValue::Unset => buf.put_i32(-2),
        RawValue::Bytes(b) => {
            buf.put_i32(int_len(b.len(), what)?);
            buf.put_slice(b);
        }
    }
    Ok(())
}

/// `[short bytes]`: `[short]` n then n bytes.
#[inline]
pub fn read_short_bytes<'a>(
    buf: &mut &'a [u8],
    what: &'static str,
) -> Result<&'a [u8], DecodeError> {
    let len = read_short(buf, what)?;
    read_raw(buf, len.into(), what)
}

pub fn write_short_bytes(
    buf: &mut impl BufMut,
    b: &[u8],
    what: &'static str,
) -> Result<(), EncodeError> {
    buf.put_u16(short_len(b.len(), what)?);
    buf.put_slice(b);
    Ok(())
}

/// `[unsigned vint]`: the count of leading 1 bits in the first byte is the count of extra bytes;
/// the first byte's remaining bits are the value's high bits (Cassandra's `VIntCoding`).
pub fn read_unsigned_vint(buf: &mut &[u8], what: &'static str) -> Result<u64, DecodeError> {
    let first = read_byte(buf, what)?;
    let extra = first.leading_ones() as usize;
    if extra == 0 {
        return Ok(u64::from(first));
    }
    let rest = read_raw(buf, extra, what)?;
    // With 8 extra bytes the first byte carries no value bits.
    let mut v = if extra >= 8 {
        0
    } else {
        u64::from(first & (0xff >> extra))
    };
    for &b in rest {
        v = (v << 8) | u64::from(b);
    }
    Ok(v)
}

pub fn write_unsigned_vint(buf: &mut impl BufMut, v: u64) {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    // Each extra byte adds 8 bits but costs one bit of the first byte: 7 value bits per byte.
    let extra = if bits <= 7 {
        0
    } else {
        ((bits - 1) / 7).min(8)
    };
    if extra == 0 {
        buf.put_u8(v as u8);
        return;
    }
    let mut tmp = [0u8; 9];
    let be = v.to_be_bytes();
    tmp[1..=extra].copy_from_slice(&be[8 - extra..]);
    let high = if extra >= 8 {
        0
    } else {
        (v >> (8 * extra)) as u8
    };
    tmp[0] = (0xffu16 << (8 - extra)) as u8 | high;
    buf.put_slice(&tmp[..=extra]);
}

/// `[vint]`: zigzag-encoded signed variant of `[unsigned vint]`.
pub fn read_vint(buf: &mut &[u8], what: &'static str) -> Result<i64, DecodeError> {
    let u = read_unsigned_vint(buf, what)?;
    Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
}

pub fn write_vint(buf: &mut impl BufMut, v: i64) {
    write_unsigned_vint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// `[inetaddr]`: one byte of size (4 or 16) then the address.
pub fn read_inetaddr(buf: &mut &[u8], what: &'static str) -> Result<IpAddr, DecodeError> {
    match read_byte(buf, what)? {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(read_array::<4>(buf, what)?))),
        16 => Ok(IpAddr::V6(Ipv6Addr::from(read_array::<16>(buf, what)?))),
        n => Err(DecodeError::InvalidValue {
            what,
            value: n.into(),
        }),
    }
}

pub fn write_inetaddr(buf: &mut impl BufMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            buf.put_u8(4);
            buf.put_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            buf.put_u8(16);
            buf.put_slice(&a.octets());
        }
    }
}

/// `[inet]`: `[inetaddr]` then an `[int]` port.
pub fn read_inet(buf: &mut &[u8], what: &'static str) -> Result<SocketAddr, DecodeError> {
    let ip = read_inetaddr(buf, what)?;
    let port = read_int(buf, what)?;
    let port = u16::try_from(port).map_err(|_| DecodeError::InvalidValue {
        what,
        value: port.into(),
    })?;
    Ok(SocketAddr::new(ip, port))
}

pub fn write_inet(buf: &mut impl BufMut, addr: SocketAddr) {
    write_inetaddr(buf, addr.ip());
    buf.put_i32(i32::from(addr.port()));
}

/// `[string map]`: `[short]` n then n (`[string]` key, `[string]` value) pairs.
pub fn read_string_map(
    buf: &mut &[u8],
    what: &'static str,
) -> Result<HashMap<String, String>, DecodeError> {
    let n = read_short(buf, what)?;
    let mut out = HashMap::with_capacity(usize::from(n).min(buf.len() / 4));
    for _ in 0..n {
        let k = read_string(buf, what)?;
        let v = read_string(buf, what)?;
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

/// Writes a string map in the iteration order given, so callers that need stable bytes pass an
/// ordered collection.
pub fn write_string_map<'a>(
    buf: &mut impl BufMut,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    what: &'static str,
) -> Result<(), EncodeError> {
    buf.put_u16(short_len(entries.len(), what)?);
    for (k, v) in entries {
        write_string(buf, k, what)?;
        write_string(buf, v, what)?;
    }
    Ok(())
}

/// `[string multimap]`: `[short]` n then n (`[string]` key, `[string list]` values) pairs.
pub fn read_string_multimap(
    buf: &mut &[u8],
    what: &'static str,
) -> Result<Vec<(String, Vec<String>)>, DecodeError> {
    let n = read_short(buf, what)?;
    let mut out = Vec::with_capacity(usize::from(n).min(buf.len() / 4));
    for _ in 0..n {
        let k = read_string(buf, what)?.to_owned();
        out.push((k, read_string_list(buf, what)?));
    }
    Ok(out)
}

pub fn write_string_multimap<K: AsRef<str>, V: AsRef<str>>(
    buf: &mut impl BufMut,
    entries: &[(K, Vec<V>)],
    what: &'static str,
) -> Result<(), EncodeError> {
    buf.put_u16(short_len(entries.len(), what)?);
    for (k, vs) in entries {
        write_string(buf, k.as_ref(), what)?;
        write_string_list(buf, vs, what)?;
    }
    Ok(())
}

/// The entries of a `[bytes map]`, borrowed from the input, in wire order.
pub type BytesMap<'a> = Vec<(&'a str, Option<&'a [u8]>)>;

/// `[bytes map]`: `[short]` n then n (`[string]` key, `[bytes]` value) pairs. Used for custom
/// payloads; order is kept so a proxy can forward it byte-identically.
pub fn read_bytes_map<'a>(
    buf: &mut &'a [u8],
    what: &'static str,
) -> Result<BytesMap<'a>, DecodeError> {
    let n = read_short(buf, what)?;
    let mut out = Vec::with_capacity(usize::from(n).min(buf.len() / 6));
    for _ in 0..n {
        let k = read_string(buf, what)?;
        out.push((k, read_bytes(buf, what)?));
    }
    Ok(out)
}

pub fn write_bytes_map<'a>(
    buf: &mut impl BufMut,
    entries: impl ExactSizeIterator<Item = (&'a str, Option<&'a [u8]>)>,
    what: &'static str,
) -> Result<(), EncodeError> {
    buf.put_u16(short_len(entries.len(), what)?);
    for (k, v) in entries {
        write_string(buf, k, what)?;
        write_bytes(buf, v, what)?;
    }
    Ok(())
}

/// Fails when a fully parsed body has bytes left over.
pub fn expect_end(buf: &[u8], what: &'static str) -> Result<(), DecodeError> {
    if buf.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes {
            what,
            extra: buf.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip<T: PartialEq + std::fmt::Debug>(
        v: T,
        write: impl Fn(&mut Vec<u8>, &T),
        read: impl Fn(&mut &[u8]) -> Result<T, DecodeError>,
    ) {
        let mut out = Vec::new();
        write(&mut out, &v);
        let mut slice = out.as_slice();
        assert_eq!(read(&mut slice).unwrap(), v);
        assert!(slice.is_empty(), "reader left {} bytes", slice.len());
    }

    #[test]
    fn short_and_int_and_long_roundtrip() {
        roundtrip(0xbeefu16, |b, v| write_short(b, *v), |b| read_short(b, "s"));
        roundtrip(-7i32, |b, v| write_int(b, *v), |b| read_int(b, "i"));
        roundtrip(i64::MIN, |b, v| write_long(b, *v), |b| read_long(b, "l"));
    }

    #[test]
    fn strings_roundtrip_and_reject_bad_utf8() {
        roundtrip(
            "héllo".to_owned(),
            |b, v| write_string(b, v, "s").unwrap(),
            |b| read_string(b, "s").map(str::to_owned),
        );
        roundtrip(
            "x".repeat(70_000),
            |b, v| write_long_string(b, v, "ls").unwrap(),
            |b| read_long_string(b, "ls").map(str::to_owned),
        );
        let mut bad: &[u8] = &[0, 2, 0xff, 0xfe];
        assert_eq!(
            read_string(&mut bad, "s"),
            Err(DecodeError::InvalidUtf8 { what: "s" })
        );
        let long = "x".repeat(70_000);
        assert!(matches!(
            write_string(&mut Vec::new(), &long, "s"),
            Err(EncodeError::TooLong { len: 70_000, .. })
        ));
    }

    #[test]
    fn too_short_names_the_numbers() {
        let mut buf: &[u8] = &[0, 5, b'a'];
        assert_eq!(
            read_string(&mut buf, "keyspace"),
            Err(DecodeError::TooShort {
                what: "keyspace",
                needed: 5,
                remaining: 1
            })
        );
    }

    #[test]
    fn value_distinguishes_null_unset_and_rejects_other_negatives() {
        for v in [
            RawValue::Null,
            RawValue::Unset,
            RawValue::Bytes(b"abc"),
            RawValue::Bytes(b""),
        ] {
            let mut out = Vec::new();
            write_value(&mut out, v, "v").unwrap();
            let mut s = out.as_slice();
            assert_eq!(read_value(&mut s, "v").unwrap(), v);
        }
        let mut bad: &[u8] = &(-3i32).to_be_bytes();
        assert!(matches!(
            read_value(&mut bad, "v"),
            Err(DecodeError::NegativeLength { len: -3, .. })
        ));
    }

    #[test]
    fn bytes_and_short_bytes_roundtrip() {
        roundtrip(
            Some(vec![1u8, 2, 3]),
            |b, v| write_bytes(b, v.as_deref(), "b").unwrap(),
            |b| read_bytes(b, "b").map(|o| o.map(<[u8]>::to_vec)),
        );
        roundtrip(
            None,
            |b, v: &Option<Vec<u8>>| write_bytes(b, v.as_deref(), "b").unwrap(),
            |b| read_bytes(b, "b").map(|o| o.map(<[u8]>::to_vec)),
        );
        roundtrip(
            vec![9u8; 300],
            |b, v| write_short_bytes(b, v, "sb").unwrap(),
            |b| read_short_bytes(b, "sb").map(<[u8]>::to_vec),
        );
    }

    #[test]
    fn inet_roundtrip_both_families() {
        for a in ["127.0.0.1:9042", "[::1]:19042"] {
            let addr: SocketAddr = a.parse().unwrap();
            roundtrip(addr, |b, v| write_inet(b, *v), |b| read_inet(b, "inet"));
        }
        let mut bad: &[u8] = &[5, 1, 2, 3, 4, 5];
        assert!(matches!(
            read_inetaddr(&mut bad, "ip"),
            Err(DecodeError::InvalidValue { value: 5, .. })
        ));
    }

    #[test]
    fn maps_and_lists_roundtrip() {
        roundtrip(
            vec!["a".to_owned(), "bc".to_owned()],
            |b, v| write_string_list(b, v, "l").unwrap(),
            |b| read_string_list(b, "l"),
        );
        let mm = vec![(
            "COMPRESSION".to_owned(),
            vec!["lz4".to_owned(), "snappy".to_owned()],
        )];
        roundtrip(
            mm,
            |b, v| write_string_multimap(b, v, "mm").unwrap(),
            |b| read_string_multimap(b, "mm"),
        );
        let mut out = Vec::new();
        write_string_map(&mut out, [("CQL_VERSION", "3.0.0")].into_iter(), "m").unwrap();
        let m = read_string_map(&mut out.as_slice(), "m").unwrap();
        assert_eq!(m["CQL_VERSION"], "3.0.0");
        let mut out = Vec::new();
        write_bytes_map(
            &mut out,
            [("k", Some(&b"v"[..])), ("n", None)].into_iter(),
            "bm",
        )
        .unwrap();
        assert_eq!(
            read_bytes_map(&mut out.as_slice(), "bm").unwrap(),
            vec![("k", Some(&b"v"[..])), ("n", None)]
        );
    }

    #[test]
    fn vint_known_encodings() {
        // Values and bytes follow Cassandra's VIntCoding: 1 byte up to 127, 2 bytes up to 2^14-1.
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x80]),
            (16_383, &[0xbf, 0xff]),
            (16_384, &[0xc0, 0x40, 0x00]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ];
        for &(v, bytes) in cases {
            let mut out = Vec::new();
            write_unsigned_vint(&mut out, v);
            assert_eq!(out, bytes, "encoding {v}");
            assert_eq!(read_unsigned_vint(&mut &bytes[..], "v").unwrap(), v);
        }
        let mut out = Vec::new();
        write_vint(&mut out, -1);
        assert_eq!(out, [0x01]);
    }

    proptest! {
        #[test]
        fn unsigned_vint_roundtrips(v in any::<u64>()) {
            roundtrip(v, |b, v| write_unsigned_vint(b, *v), |b| read_unsigned_vint(b, "v"));
        }

        #[test]
        fn vint_roundtrips(v in any::<i64>()) {
            roundtrip(v, |b, v| write_vint(b, *v), |b| read_vint(b, "v"));
        }

        #[test]
        fn readers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut s = data.as_slice();
            let _ = read_string_multimap(&mut s, "x");
            let mut s = data.as_slice();
            let _ = read_bytes_map(&mut s, "x");
            let mut s = data.as_slice();
            let _ = read_unsigned_vint(&mut s, "x");
            let mut s = data.as_slice();
            let _ = read_inet(&mut s, "x");
        }
    }
}
