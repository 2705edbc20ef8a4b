//! Codec benchmarks: the proxy's hot path (header decode + stream-id rewrite), full decodes of a
//! QUERY and a 100-row RESULT, and v5 segments. Inputs are described in BENCHMARKS.md and match
//! the ones used to measure `cassandra-protocol`.

#![allow(
    clippy::unwrap_used,
    reason = "a benchmark input that fails to build should stop the run"
)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ferry_cql::envelope::BodyExtensions;
use ferry_cql::envelope::{DEFAULT_MAX_BODY_LEN, EnvelopeHeader, rewrite_stream_id};
use ferry_cql::message::{Request, Response};
use ferry_cql::request::{Query, QueryParameters, Value, Values};
use ferry_cql::response::ResultBody;
use ferry_cql::response::result::{ColumnSpec, Rows, RowsMetadata};
use ferry_cql::segment::SegmentCodec;
use ferry_cql::types::ColumnType;
use ferry_cql::{Consistency, Envelope, EnvelopeDecoder, ProtocolVersion};

fn query_envelope() -> Envelope {
    let q = Query::new(
        "SELECT id, name, value FROM ks.tbl WHERE id = ?",
        QueryParameters {
            consistency: Consistency::LocalQuorum,
            values: Values::Positional(vec![Value::Set(Bytes::copy_from_slice(
                &42i32.to_be_bytes(),
            ))]),
            page_size: Some(5000),
            default_timestamp: Some(1_700_000_000_000_000),
            ..Default::default()
        },
    );
    Request::Query(q)
        .to_envelope(ProtocolVersion::V4, 7, 0, &BodyExtensions::default())
        .unwrap()
}

fn rows_envelope() -> Envelope {
    let cols = vec![
        ColumnSpec::new("ks", "tbl", "id", ColumnType::Int),
        ColumnSpec::new("ks", "tbl", "name", ColumnType::Varchar),
        ColumnSpec::new("ks", "tbl", "value", ColumnType::Bigint),
    ];
    let cells: Vec<[Vec<u8>; 3]> = (0..100i64)
        .map(|i| {
            [
                (i as i32).to_be_bytes().to_vec(),
                format!("name-{i:08}").into_bytes(),
                (i * 1000).to_be_bytes().to_vec(),
            ]
        })
        .collect();
    let rows = Rows::from_rows(
        RowsMetadata::new(cols),
        cells.iter().map(|r| r.iter().map(|c| Some(c.as_slice()))),
    )
    .unwrap();
    Response::Result(ResultBody::Rows(rows))
        .to_envelope(ProtocolVersion::V4, 7, &BodyExtensions::default())
        .unwrap()
}

fn wire(env: &Envelope) -> Vec<u8> {
    let mut out = Vec::new();
    env.write_to(&mut out);
    out
}

fn hot_path(c: &mut Criterion) {
    let raw = wire(&query_envelope());
    let mut g = c.benchmark_group("hot_path");
    g.bench_function("header_decode_and_stream_rewrite", |b| {
        b.iter(|| {
            let mut h = EnvelopeHeader::decode(black_box(&raw), DEFAULT_MAX_BODY_LEN)
                .unwrap()
                .unwrap();
            h.stream = black_box(1234);
            black_box(h.encode())
        })
    });
    g.bench_function("stream_rewrite_in_place", |b| {
        let mut buf = raw.clone();
        b.iter(|| rewrite_stream_id(black_box(&mut buf), black_box(99)))
    });
    let decoder = EnvelopeDecoder::default();
    g.bench_function("envelope_split_from_read_buffer", |b| {
        b.iter_batched(
            || BytesMut::from(&raw[..]),
            |mut buf| black_box(decoder.decode(&mut buf).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn full_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("full_decode");
    let q = wire(&query_envelope());
    g.bench_function("query_v4", |b| {
        b.iter(|| {
            let mut buf = Bytes::from(black_box(q.clone()));
            let env = Envelope::parse(&mut buf, DEFAULT_MAX_BODY_LEN)
                .unwrap()
                .unwrap();
            black_box(Request::from_envelope(&env).unwrap())
        })
    });
    let q_env = query_envelope();
    g.bench_function("query_v4_body_only", |b| {
        b.iter(|| black_box(Request::from_envelope(black_box(&q_env)).unwrap()))
    });
    let r_env = rows_envelope();
    g.throughput(Throughput::Elements(100));
    g.bench_function("result_100_rows_cells_located", |b| {
        b.iter(|| black_box(Response::from_envelope(black_box(&r_env)).unwrap()))
    });
    g.bench_function("result_100_rows_typed_values", |b| {
        b.iter(|| {
            let (_, resp) = Response::from_envelope(black_box(&r_env)).unwrap();
            let Response::Result(ResultBody::Rows(rows)) = resp else {
                unreachable!()
            };
            for i in 0..rows.rows_count() {
                black_box(rows.typed_row(i).unwrap());
            }
        })
    });
    g.finish();
}

fn segments(c: &mut Criterion) {
    let payload: Vec<u8> = (0..1024u32).map(|i| (i % 7 + i / 64) as u8).collect();
    let mut g = c.benchmark_group("segment_1kib");
    g.throughput(Throughput::Bytes(1024));
    for (name, lz4) in [("plain", false), ("lz4", true)] {
        let codec = SegmentCodec::new(lz4);
        let mut out = BytesMut::with_capacity(4096);
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| {
                out.clear();
                codec.encode(black_box(&payload), true, &mut out).unwrap();
            })
        });
        let mut encoded = BytesMut::new();
        codec.encode(&payload, true, &mut encoded).unwrap();
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter_batched(
                || encoded.clone(),
                |mut buf| black_box(codec.decode(&mut buf).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, hot_path, full_decode, segments);
criterion_main!(benches);
