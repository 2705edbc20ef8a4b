//! Cassandra's `Murmur3Partitioner`: the token of a partition key.
//!
//! The token is the first 64-bit half of `MurmurHash.hash3_x64_128(key, seed 0)` over the
//! serialized partition key, as a signed long, with `Long.MIN_VALUE` (the partitioner's
//! minimum, never a real key's token) moved to `Long.MAX_VALUE`.
//!
//! Cassandra's implementation is *not* the reference MurmurHash3: the 16-byte blocks read
//! bytes unsigned, but the tail reads them through Java's signed `byte`, so a tail byte
//! `>= 0x80` is sign-extended before it is shifted in. Drivers copied that, and so do we:
//! tokens must match a real cluster's byte for byte, or token-aware routing and range scans
//! disagree with Cassandra.

use ferry_cql::types::{ColumnType, CqlValue, encode_value};
use ferry_cql::wire::EncodeError;

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

/// The largest serialized partition key component (its length is a `[short]`).
pub const MAX_KEY_COMPONENT_LEN: usize = u16::MAX as usize;

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

/// Java's `(long) byteValue`: sign-extends.
fn signed(b: u8) -> u64 {
    b as i8 as i64 as u64
}

/// `MurmurHash.hash3_x64_128(key, 0, len, seed)` exactly as Cassandra computes it, both
/// halves as Java longs.
pub fn hash3_x64_128(key: &[u8], seed: u64) -> (i64, i64) {
    let mut h1 = seed;
    let mut h2 = seed;
    let mut blocks = key.chunks_exact(16);
    for block in &mut blocks {
        let (lo, hi) = block.split_at(8);
        let mut a = [0u8; 8];
        a.copy_from_slice(lo);
        let mut b = [0u8; 8];
        b.copy_from_slice(hi);
        h1 ^= mix_k1(u64::from_le_bytes(a));
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(u64::from_le_bytes(b));
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    if tail.len() > 8 {
        let k2 = tail[8..]
            .iter()
            .enumerate()
            .fold(0u64, |k, (i, &b)| k ^ (signed(b) << (8 * i)));
        h2 ^= mix_k2(k2);
    }
    if !tail.is_empty() {
        let k1 = tail[..tail.len().min(8)]
            .iter()
            .enumerate()
            .fold(0u64, |k, (i, &b)| k ^ (signed(b) << (8 * i)));
        h1 ^= mix_k1(k1);
    }
    let len = key.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1 as i64, h2 as i64)
}

/// The `Murmur3Partitioner` token of a serialized partition key.
pub fn token(serialized_key: &[u8]) -> i64 {
    match hash3_x64_128(serialized_key, 0).0 {
        i64::MIN => i64::MAX,
        t => t,
    }
}

/// Serializes already-encoded key components: one component is its bytes; several are
/// `[short len][bytes][0x00]` each (Cassandra's `CompositeType` with end-of-component 0).
/// Fails when a component exceeds [`MAX_KEY_COMPONENT_LEN`].
pub fn serialize_key_components<B: AsRef<[u8]>>(components: &[B]) -> Result<Vec<u8>, KeyError> {
    if let [one] = components {
        let one = one.as_ref();
        if one.len() > MAX_KEY_COMPONENT_LEN {
            return Err(KeyError::TooLong { len: one.len() });
        }
        return Ok(one.to_vec());
    }
    let total = components.iter().map(|c| c.as_ref().len() + 3).sum();
    let mut out = Vec::with_capacity(total);
    for c in components {
        let c = c.as_ref();
        let len = u16::try_from(c.len()).map_err(|_| KeyError::TooLong { len: c.len() })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(c);
        out.push(0);
    }
    Ok(out)
}

/// Splits a serialized key back into its `n` components (the inverse of
/// [`serialize_key_components`]); `None` when the bytes are not such a key.
pub fn split_key_components(key: &[u8], n: usize) -> Option<Vec<&[u8]>> {
    if n == 1 {
        return Some(vec![key]);
    }
    let mut out = Vec::with_capacity(n);
    let mut rest = key;
    for _ in 0..n {
        let (len, after) = rest.split_first_chunk::<2>()?;
        let len = u16::from_be_bytes(*len) as usize;
        if after.len() < len + 1 {
            return None;
        }
        out.push(&after[..len]);
        rest = &after[len + 1..];
    }
    rest.is_empty().then_some(out)
}

/// Serializes typed partition key values, in partition key order.
pub fn serialize_partition_key(components: &[(ColumnType, CqlValue)]) -> Result<Vec<u8>, KeyError> {
    let encoded = components
        .iter()
        .map(|(t, v)| {
            let mut b = Vec::new();
            encode_value(t, v, &mut b).map(|()| b)
        })
        .collect::<Result<Vec<_>, _>>()?;
    serialize_key_components(&encoded)
}

/// Why a partition key could not be serialized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Cassandra's wording for an oversized key component.
    #[error("Key length of {len} is longer than maximum of {MAX_KEY_COMPONENT_LEN}")]
    TooLong { len: usize },
    #[error("Invalid partition key value: {0}")]
    Encode(#[from] EncodeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int_token(v: i32) -> i64 {
        token(&v.to_be_bytes())
    }

    #[test]
    fn int_keys_match_cassandra() {
        // apache/cassandra-dtest replication_test.py, `murmur3_hashes` ("pre-computed murmur 3
        // hashes" of int keys 1..20, used to predict replicas on a real cluster); 1, 2 and 3
        // also appear as per-line token comments in apache/cassandra's SAI vector tests and
        // cqlshlib's test_cqlsh_parsing (`SELECT token(num) ... where num=1`).
        let known = [
            (1, -4069959284402364209),
            (2, -3248873570005575792),
            (3, 9010454139840013625),
            (4, -2729420104000364805),
            (5, -7509452495886106294),
            (6, 2705480034054113608),
            (7, 1634052884888577606),
            (8, -3799847372828181882),
            (9, 3728482343045213994),
            (10, -6715243485458697746),
            (12, 8582886034424406875),
            (20, 1388667306199997068),
        ];
        for (k, t) in known {
            assert_eq!(int_token(k), t, "int {k}");
        }
    }

    #[test]
    fn tail_bytes_are_sign_extended_like_cassandra() {
        // DataStax python-driver tests/unit/test_metadata.py, `_verify_hash`: the driver's
        // murmur3 must equal Cassandra's, including bytes >= 0x80 in the tail.
        assert_eq!(token(b"123"), -7468325962851647638);
        assert_eq!(
            token(&b"\x00\xff\x10\xfa\x99".repeat(10)),
            5837342703291459765
        );
        assert_eq!(token(&[0xfe; 8]), -8927430733708461935);
        assert_eq!(token(&[0x10; 8]), 1446172840243228796);
        assert_eq!(token(b"9223372036854775807"), 7162290910810015547);
    }

    #[test]
    fn empty_key_and_minimum_token() {
        assert_eq!(hash3_x64_128(b"", 0), (0, 0));
        assert_eq!(token(b""), 0);
    }

    #[test]
    fn composite_keys_roundtrip() {
        let key = serialize_partition_key(&[
            (ColumnType::Varchar, CqlValue::Text("hello".into())),
            (ColumnType::Int, CqlValue::Int(42)),
        ])
        .unwrap();
        assert_eq!(
            key,
            [0, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 4, 0, 0, 0, 42, 0]
        );
        let parts = split_key_components(&key, 2).unwrap();
        assert_eq!(parts, [&b"hello"[..], &[0, 0, 0, 42][..]]);
        assert!(split_key_components(&key, 3).is_none());
        assert!(split_key_components(&key[..5], 2).is_none());
        let single = serialize_partition_key(&[(ColumnType::Int, CqlValue::Int(1))]).unwrap();
        assert_eq!(token(&single), -4069959284402364209);
    }

    #[test]
    fn oversized_components_are_errors() {
        let big = vec![0u8; 70_000];
        let err = serialize_key_components(&[&big]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Key length of 70000 is longer than maximum of 65535"
        );
        assert!(serialize_key_components(&[&big[..10], &big]).is_err());
    }
}
