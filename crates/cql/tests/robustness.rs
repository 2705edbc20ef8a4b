//! A million hostile inputs through every decoder: none may panic, hang or allocate without
//! bound. Half are random bytes behind a plausible header, half are valid envelopes with a few
//! bytes flipped, which reach much deeper into the body decoders than pure noise does.
//!
//! A fixed-seed xorshift generator keeps a failure reproducible (the panic message names the
//! iteration).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use bytes::{Bytes, BytesMut};
use ferry_cql::envelope::{BodyExtensions, Envelope, EnvelopeDecoder};
use ferry_cql::message::{Request, Response};
use ferry_cql::protocol::{Direction, Opcode, ProtocolVersion};
use ferry_cql::request::{
    Batch, BatchChild, BatchStatement, BatchType, Query, QueryParameters, Value, Values,
};
use ferry_cql::segment::{EnvelopeReassembler, SegmentCodec};
use ferry_cql::types::{ColumnType, decode_value, read_column_type};
use ferry_cql::{Compression, Consistency};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Valid envelopes of several kinds to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let ext = BodyExtensions::default();
    let mut out = Vec::new();
    let query = Request::Query(Query::new(
        "INSERT INTO ks.t (a, b) VALUES (?, ?)",
        QueryParameters {
            consistency: Consistency::Quorum,
            values: Values::Positional(vec![Value::Set(Bytes::from_static(b"abcd")), Value::Null]),
            page_size: Some(100),
            paging_state: Some(Bytes::from_static(b"state")),
            default_timestamp: Some(1),
            ..Default::default()
        },
    ));
    let batch = Request::Batch(Batch {
        batch_type: BatchType::Logged,
        children: vec![
            BatchChild {
                statement: BatchStatement::Query("X".into()),
                values: Values::None,
            },
            BatchChild {
                statement: BatchStatement::Prepared(Bytes::from_static(b"id")),
                values: Values::Positional(vec![Value::Unset]),
            },
        ],
        consistency: Consistency::One,
        serial_consistency: None,
        default_timestamp: Some(5),
        keyspace: None,
        now_in_seconds: None,
    });
    for v in ProtocolVersion::ALL {
        for msg in [&query, &batch] {
            let env = msg.to_envelope(v, 1, 0, &ext).unwrap();
            let mut w = Vec::new();
            env.write_to(&mut w);
            out.push(w);
        }
    }
    out
}

const TYPES: &[&[u8]] = &[
    &[0x00, 0x20, 0x00, 0x09],                         // list<int>
    &[0x00, 0x21, 0x00, 0x0d, 0x00, 0x02],             // map<text, bigint>
    &[0x00, 0x31, 0x00, 0x02, 0x00, 0x09, 0x00, 0x15], // tuple<int, duration>
];

/// Returns how many envelopes decoded as a whole request or response.
fn exercise(raw: &[u8]) -> usize {
    let mut decoded = 0;
    let decoder = EnvelopeDecoder::new(1 << 20);
    let mut buf = BytesMut::from(raw);
    while let Ok(Some(env)) = decoder.decode(&mut buf) {
        decoded += usize::from(Request::from_envelope(&env).is_ok());
        decoded += usize::from(Response::from_envelope(&env).is_ok());
        // Decode the body under every opcode and version, not just the one in the header.
        for op in [
            Opcode::Query,
            Opcode::Execute,
            Opcode::Batch,
            Opcode::Result,
            Opcode::Error,
            Opcode::Event,
        ] {
            for v in ProtocolVersion::ALL {
                let _ = Request::decode_body(op, &env.body, v);
                let _ = Response::decode_body(op, &env.body, v);
            }
        }
    }
    let _ = Compression::Snappy.decompress(raw, 1 << 20);
    let _ = Compression::Lz4.decompress(raw, 1 << 20);
    for lz4 in [false, true] {
        let mut b = BytesMut::from(raw);
        let mut re = EnvelopeReassembler::new(1 << 20);
        let mut out = Vec::new();
        while let Ok(Some(seg)) = SegmentCodec::new(lz4).decode(&mut b) {
            if re.push(seg, &mut out).is_err() {
                break;
            }
        }
    }
    let _ = read_column_type(&mut &raw[..], ProtocolVersion::V5);
    for ty in TYPES {
        if let Ok(t) = read_column_type(&mut &ty[..], ProtocolVersion::V5) {
            let _ = decode_value(&t, raw);
        }
    }
    let _ = decode_value(&ColumnType::Decimal, raw);
    let _ = ferry_cql::statement::classify(&String::from_utf8_lossy(raw));
    decoded
}

#[test]
fn a_million_hostile_inputs_never_panic() {
    let seeds = seeds();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut decoded = 0;
    for i in 0..1_000_000u32 {
        let raw = if i % 2 == 0 {
            // A plausible header (right version and opcode ranges) then noise.
            let body_len = rng.below(64);
            let mut h = vec![
                [0x03u8, 0x04, 0x05, 0x83, 0x84, 0x85][rng.below(6)],
                rng.next() as u8,
                0,
                rng.next() as u8,
                rng.below(0x11) as u8,
            ];
            let announced = if rng.below(8) == 0 {
                rng.next() as u32
            } else {
                body_len as u32
            };
            h.extend_from_slice(&announced.to_be_bytes());
            h.extend(rng.bytes(body_len));
            h
        } else {
            let mut s = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(s.len());
                s[at] = rng.next() as u8;
            }
            if rng.below(4) == 0 {
                s.truncate(rng.below(s.len()));
            }
            s
        };
        match std::panic::catch_unwind(|| exercise(&raw)) {
            Ok(n) => decoded += n,
            Err(_) => panic!("iteration {i} panicked on input {raw:02x?}"),
        }
    }
    // The inputs must reach the body decoders, not only bounce off the header checks: a good
    // share of mutated envelopes still decode (a flipped byte inside a value is still valid).
    assert!(
        decoded > 50_000,
        "only {decoded} inputs decoded as whole messages"
    );
}

#[test]
fn envelope_directions_are_enforced() {
    let env = Envelope::new(
        ProtocolVersion::V4,
        Direction::Response,
        0,
        0,
        Opcode::Query,
        Bytes::new(),
    );
    assert!(Request::from_envelope(&env).is_err());
}
