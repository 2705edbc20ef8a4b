//! Classifier cost on the proxy's hot path: every QUERY/PREPARE/BATCH text goes through
//! `classify` once.

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_cql::statement::{Tokenizer, classify};
use std::hint::black_box;

/// The ~200-byte INSERT the target (< 300 ns, no allocation) is stated for.
const INSERT: &str = "INSERT INTO shop.orders (order_id, customer_id, placed_at, status, total_cents, note) VALUES (5b6962dd-3f90-4c93-8f61-eabfb4a03ef1, 42, '2026-11-21 10:00:00+0000', 'PAID', 129900, 'gift wrap') USING TTL 86400;";

const SELECT: &str = "SELECT status, total_cents FROM shop.orders WHERE order_id = ?";

const BATCH: &str = "BEGIN BATCH \
    INSERT INTO shop.orders (order_id, status) VALUES (?, 'NEW'); \
    UPDATE shop.customers SET order_count = 3 WHERE customer_id = ?; \
    DELETE FROM shop.carts WHERE customer_id = ?; \
    APPLY BATCH";

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    for (name, text) in [
        ("insert_200b", INSERT),
        ("select_marker", SELECT),
        ("batch_3", BATCH),
    ] {
        group.bench_function(name, |b| b.iter(|| classify(black_box(text))));
    }
    group.finish();
    c.bench_function("tokenize/insert_200b", |b| {
        b.iter(|| Tokenizer::new(black_box(INSERT)).count())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
