"""Cassandra semantics, checked through the Python cassandra-driver against a running cluster.

Usage: semantics.py HOST PORT PROTOCOL_VERSION [--compression lz4] [--auth USER:PASS] [--nodes N]
Each check gets its own keyspace. Prints one line per check and a closing `N passed, M failed`;
exits non-zero if any failed.
"""

import argparse
import datetime
import decimal
import ipaddress
import sys
import time
import traceback
import uuid

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster
from cassandra.query import BatchStatement, BatchType, SimpleStatement
from cassandra.util import Date, Duration, Time

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def fresh_keyspace(session, name):
    session.execute(f"DROP KEYSPACE IF EXISTS {name}")
    session.execute(
        f"CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    session.set_keyspace(name)


def one(session, query, params=None):
    rows = list(session.execute(query, params))
    assert len(rows) == 1, f"{query}: expected one row, got {rows}"
    return rows[0]


@check
def ddl_and_driver_metadata(s, cluster):
    fresh_keyspace(s, "sem_ddl")
    s.execute("CREATE TYPE address (street text, zip int)")
    s.execute(
        "CREATE TABLE orders (customer int, region text, placed timestamp, note text, addr frozen<address>,"
        " total bigint static, PRIMARY KEY ((customer, region), placed)) WITH CLUSTERING ORDER BY (placed DESC)"
        " AND default_time_to_live = 0 AND comment = 'orders'"
    )
    s.execute("CREATE TABLE IF NOT EXISTS orders (x int PRIMARY KEY)")  # no-op, no error
    cluster.refresh_schema_metadata()
    table = cluster.metadata.keyspaces["sem_ddl"].tables["orders"]
    assert [c.name for c in table.partition_key] == ["customer", "region"], table.partition_key
    assert [c.name for c in table.clustering_key] == ["placed"]
    assert table.columns["total"].is_static
    assert table.clustering_key[0].is_reversed
    assert "address" in cluster.metadata.keyspaces["sem_ddl"].user_types
    s.execute("ALTER TABLE orders ADD extra list<int>")
    cluster.refresh_schema_metadata()
    assert "extra" in cluster.metadata.keyspaces["sem_ddl"].tables["orders"].columns
    try:
        s.execute("CREATE TABLE orders (x int PRIMARY KEY)")
        raise AssertionError("creating an existing table must fail")
    except Exception as e:
        assert type(e).__name__ == "AlreadyExists", repr(e)
    s.execute("DROP TABLE orders")
    s.execute("DROP KEYSPACE sem_ddl")


@check
def every_type_roundtrips(s, cluster):
    fresh_keyspace(s, "sem_types")
    s.execute(
        "CREATE TABLE t (k int PRIMARY KEY, a ascii, b bigint, bl blob, bo boolean, d decimal, db double,"
        " f float, i inet, si smallint, ti tinyint, tx text, ts timestamp, u uuid, tu timeuuid, vi varint,"
        " dt date, tm time, du duration, l list<int>, st set<text>, m map<text, int>,"
        " tp tuple<int, text>, fl frozen<list<int>>, v vector<float, 3>)"
    )
    values = (
        1, "abc", -(2**40), b"\x00\xff", True, decimal.Decimal("123.456"), 1.5, 0.25,
        ipaddress.ip_address("10.1.2.3"), -2, 3, "héllo", datetime.datetime(2026, 11, 21, 10, 0, 0, 123000),
        uuid.UUID("5b6962dd-3f90-4c93-8f61-eabfb4a03ef1"), uuid.uuid1(), 2**70, Date(20000), Time(3600 * 10**9 + 5),
        Duration(1, 2, 3), [1, 2, 3], {"a", "b"}, {"k": 9}, (1, "x"), [4, 5], [0.5, 1.5, 2.5],
    )
    cols = "k, a, b, bl, bo, d, db, f, i, si, ti, tx, ts, u, tu, vi, dt, tm, du, l, st, m, tp, fl, v"
    ps = s.prepare(f"INSERT INTO t ({cols}) VALUES ({', '.join('?' * len(values))})")
    s.execute(ps, values)
    row = one(s, f"SELECT {cols} FROM t WHERE k = 1")
    got = tuple(row)
    for name, want, have in zip(cols.split(", "), values, got):
        if name == "i":
            want = str(want)
            have = str(have)
        if name in ("st",):
            have = set(have)
        if name in ("m",):
            have = dict(have)
        if name in ("l", "fl", "v"):
            have = list(have)
        assert want == have, f"{name}: wrote {want!r}, read {have!r}"
    # Literals too, not only bound values.
    s.execute("INSERT INTO t (k, tx, l, m, ts) VALUES (2, 'it''s', [1, 2], {'a': 1}, '2026-11-21 10:00:00+0000')")
    row = one(s, "SELECT tx, l, m, ts FROM t WHERE k = 2")
    assert row.tx == "it's" and list(row.l) == [1, 2] and dict(row.m) == {"a": 1}, row
    assert row.ts == datetime.datetime(2026, 11, 21, 10, 0), row.ts


@check
def writetime_and_ttl_read_back(s, cluster):
    fresh_keyspace(s, "sem_wt")
    s.execute("CREATE TABLE t (k int PRIMARY KEY, v text, w text)")
    s.execute("INSERT INTO t (k, v) VALUES (1, 'a') USING TIMESTAMP 1000 AND TTL 3600")
    row = one(s, "SELECT writetime(v), ttl(v), writetime(w) FROM t WHERE k = 1")
    assert row[0] == 1000, row
    assert 3590 <= row[1] <= 3600, row
    assert row[2] is None, row
    s.execute("UPDATE t USING TIMESTAMP 2000 SET w = 'b' WHERE k = 1")
    row = one(s, "SELECT writetime(w), ttl(w) FROM t WHERE k = 1")
    assert row[0] == 2000 and row[1] is None, row


@check
def last_write_wins_in_both_arrival_orders(s, cluster):
    fresh_keyspace(s, "sem_lww")
    s.execute("CREATE TABLE t (k int PRIMARY KEY, v text)")
    s.execute("INSERT INTO t (k, v) VALUES (1, 'new') USING TIMESTAMP 20")
    s.execute("INSERT INTO t (k, v) VALUES (1, 'old') USING TIMESTAMP 10")
    assert one(s, "SELECT v FROM t WHERE k = 1").v == "new"
    s.execute("INSERT INTO t (k, v) VALUES (2, 'old') USING TIMESTAMP 10")
    s.execute("INSERT INTO t (k, v) VALUES (2, 'new') USING TIMESTAMP 20")
    assert one(s, "SELECT v FROM t WHERE k = 2").v == "new"


@check
def tombstones_shadow_older_data_only(s, cluster):
    fresh_keyspace(s, "sem_tomb")
    s.execute("CREATE TABLE t (k int, c int, v text, PRIMARY KEY (k, c))")
    s.execute("DELETE FROM t USING TIMESTAMP 50 WHERE k = 1 AND c = 1")
    s.execute("INSERT INTO t (k, c, v) VALUES (1, 1, 'older') USING TIMESTAMP 40")
    assert list(s.execute("SELECT * FROM t WHERE k = 1 AND c = 1")) == [], "older insert is shadowed"
    s.execute("INSERT INTO t (k, c, v) VALUES (1, 1, 'newer') USING TIMESTAMP 60")
    assert one(s, "SELECT v FROM t WHERE k = 1 AND c = 1").v == "newer"
    # Partition and range deletes.
    for c in range(5):
        s.execute("INSERT INTO t (k, c, v) VALUES (2, %s, 'x') USING TIMESTAMP 10", (c,))
    s.execute("DELETE FROM t USING TIMESTAMP 20 WHERE k = 2 AND c >= 1 AND c < 3")
    assert [r.c for r in s.execute("SELECT c FROM t WHERE k = 2")] == [0, 3, 4]
    s.execute("DELETE FROM t USING TIMESTAMP 30 WHERE k = 2")
    assert list(s.execute("SELECT * FROM t WHERE k = 2")) == []


@check
def rows_vanish_without_live_cells(s, cluster):
    fresh_keyspace(s, "sem_marker")
    s.execute("CREATE TABLE t (k int PRIMARY KEY, v text)")
    s.execute("INSERT INTO t (k, v) VALUES (1, 'a')")
    s.execute("UPDATE t SET v = 'b' WHERE k = 2")
    s.execute("DELETE v FROM t WHERE k = 1")
    s.execute("DELETE v FROM t WHERE k = 2")
    # INSERT left a row marker, UPDATE did not.
    assert [tuple(r) for r in s.execute("SELECT k, v FROM t")] == [(1, None)]


@check
def ttl_expiry(s, cluster):
    fresh_keyspace(s, "sem_ttl")
    s.execute("CREATE TABLE t (k int PRIMARY KEY, v text, w text)")
    s.execute("INSERT INTO t (k, v) VALUES (1, 'a') USING TTL 1")
    s.execute("UPDATE t USING TTL 1 SET w = 'b' WHERE k = 2")
    s.execute("INSERT INTO t (k, v) VALUES (3, 'c')")
    s.execute("UPDATE t USING TTL 1 SET w = 'd' WHERE k = 3")
    time.sleep(2.1)
    assert list(s.execute("SELECT * FROM t WHERE k = 1")) == []
    assert list(s.execute("SELECT * FROM t WHERE k = 2")) == []
    row = one(s, "SELECT v, w FROM t WHERE k = 3")
    assert row.v == "c" and row.w is None, row


@check
def collection_operations(s, cluster):
    fresh_keyspace(s, "sem_coll")
    s.execute("CREATE TABLE t (k int PRIMARY KEY, l list<int>, st set<text>, m map<text, int>)")
    s.execute("INSERT INTO t (k, l, st, m) VALUES (1, [1, 2], {'a'}, {'x': 1})")
    s.execute("UPDATE t SET l = l + [3] WHERE k = 1")
    s.execute("UPDATE t SET l = [0] + l WHERE k = 1")
    s.execute("UPDATE t SET l[1] = 10 WHERE k = 1")
    s.execute("UPDATE t SET st = st + {'b', 'c'}, m['y'] = 2 WHERE k = 1")
    s.execute("UPDATE t SET st = st - {'a'}, m = m - {'x'} WHERE k = 1")
    s.execute("DELETE l[0] FROM t WHERE k = 1")
    row = one(s, "SELECT l, st, m FROM t WHERE k = 1")
    assert list(row.l) == [10, 2, 3], row.l
    assert set(row.st) == {"b", "c"}, row.st
    assert dict(row.m) == {"y": 2}, row.m
    # Per-element writetimes (Cassandra 5.0 returns a list for non-frozen collections). On row 1
    # an element written at ts 7 would be shadowed by the collection tombstone INSERT wrote at
    # its own timestamp - 1, so use a fresh row.
    s.execute("UPDATE t USING TIMESTAMP 7 SET st = st + {'z'} WHERE k = 9")
    s.execute("UPDATE t USING TIMESTAMP 8 SET st = st + {'y'} WHERE k = 9")
    wt = one(s, "SELECT writetime(st) FROM t WHERE k = 9")[0]
    assert list(wt) == [8, 7], wt  # elements in set order: 'y' then 'z'
    s.execute("UPDATE t USING TIMESTAMP 7 SET st = st + {'old'} WHERE k = 1")
    assert "old" not in set(one(s, "SELECT st FROM t WHERE k = 1").st), "shadowed by the collection tombstone"
    # Overwriting a collection replaces it (tombstone at ts-1).
    s.execute("UPDATE t SET l = [42] WHERE k = 1")
    assert list(one(s, "SELECT l FROM t WHERE k = 1").l) == [42]


@check
def counters(s, cluster):
    fresh_keyspace(s, "sem_ctr")
    s.execute("CREATE TABLE c (k int PRIMARY KEY, n counter)")
    s.execute("UPDATE c SET n = n + 5 WHERE k = 1")
    s.execute("UPDATE c SET n = n - 2 WHERE k = 1")
    b = BatchStatement(batch_type=BatchType.COUNTER)
    b.add(SimpleStatement("UPDATE c SET n = n + 10 WHERE k = 1"))
    b.add(SimpleStatement("UPDATE c SET n = n + 1 WHERE k = 2"))
    s.execute(b)
    assert one(s, "SELECT n FROM c WHERE k = 1").n == 13
    assert one(s, "SELECT n FROM c WHERE k = 2").n == 1


@check
def lightweight_transactions(s, cluster):
    fresh_keyspace(s, "sem_lwt")
    s.execute("CREATE TABLE t (k int PRIMARY KEY, v text)")
    r = one(s, "INSERT INTO t (k, v) VALUES (1, 'a') IF NOT EXISTS")
    assert r[0] is True, r
    r = one(s, "INSERT INTO t (k, v) VALUES (1, 'b') IF NOT EXISTS")
    assert r[0] is False and r.v == "a", r
    r = one(s, "UPDATE t SET v = 'c' WHERE k = 1 IF v = 'a'")
    assert r[0] is True, r
    r = one(s, "UPDATE t SET v = 'd' WHERE k = 1 IF v = 'a'")
    assert r[0] is False and r.v == "c", r
    r = one(s, SimpleStatement("DELETE FROM t WHERE k = 1 IF EXISTS", serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL))
    assert r[0] is True, r
    assert list(s.execute("SELECT * FROM t WHERE k = 1")) == []


@check
def batches(s, cluster):
    fresh_keyspace(s, "sem_batch")
    s.execute("CREATE TABLE t (k int, c int, v text, PRIMARY KEY (k, c))")
    s.execute("BEGIN BATCH INSERT INTO t (k, c, v) VALUES (1, 1, 'a'); INSERT INTO t (k, c, v) VALUES (1, 2, 'b'); APPLY BATCH")
    ps = s.prepare("INSERT INTO t (k, c, v) VALUES (?, ?, ?)")
    b = BatchStatement(batch_type=BatchType.UNLOGGED)
    b.add(ps, (2, 1, "c"))
    b.add(SimpleStatement("INSERT INTO t (k, c, v) VALUES (2, 2, 'd')"))
    s.execute(b)
    assert [r.v for r in s.execute("SELECT v FROM t WHERE k = 1")] == ["a", "b"]
    assert [r.v for r in s.execute("SELECT v FROM t WHERE k = 2")] == ["c", "d"]


@check
def token_range_scans_return_every_row_once(s, cluster):
    fresh_keyspace(s, "sem_scan")
    s.execute("CREATE TABLE t (k int PRIMARY KEY, v int)")
    ps = s.prepare("INSERT INTO t (k, v) VALUES (?, ?)")
    for k in range(1000):
        s.execute(ps, (k, k))
    bounds = [-(2**63)] + [-(2**63) + (2**64 // 8) * i for i in range(1, 8)] + [2**63 - 1]
    seen = []
    scan = s.prepare("SELECT k, token(k) FROM t WHERE token(k) > ? AND token(k) <= ?")
    for lo, hi in zip(bounds, bounds[1:]):
        for row in s.execute(scan, (lo, hi)):
            assert lo < row[1] <= hi, (lo, row, hi)
            seen.append(row.k)
    # The first range excludes the minimum token itself, which no key hashes to.
    assert sorted(seen) == list(range(1000)), f"{len(seen)} rows, {len(set(seen))} distinct"


@check
def paging_survives_writes_between_pages(s, cluster):
    fresh_keyspace(s, "sem_page")
    s.execute("CREATE TABLE t (k int, c int, v int, PRIMARY KEY (k, c))")
    ps = s.prepare("INSERT INTO t (k, c, v) VALUES (?, ?, ?)")
    for i in range(10_000):
        s.execute(ps, (i % 10, i, i))
    stmt = SimpleStatement("SELECT k, c FROM t", fetch_size=1000)
    result = s.execute(stmt)
    seen = []
    pages = 0
    while True:
        seen.extend((r.k, r.c) for r in result.current_rows)
        pages += 1
        # Writes between pages: new rows anywhere, and deletes of rows already read.
        s.execute(ps, (pages % 10, 100_000 + pages, 0))
        if not result.has_more_pages:
            break
        result.fetch_next_page()
    assert pages >= 10, pages
    assert len(seen) == len(set(seen)), "a row came back twice"
    original = {(i % 10, i) for i in range(10_000)}
    assert original <= set(seen), f"{len(original - set(seen))} original rows missing"


@check
def prepared_statements_are_token_aware(s, cluster):
    fresh_keyspace(s, "sem_prep")
    s.execute("CREATE TABLE t (a int, b text, c int, v int, PRIMARY KEY ((a, b), c))")
    ps = s.prepare("INSERT INTO t (c, v, b, a) VALUES (?, ?, ?, ?)")
    assert ps.routing_key_indexes == [3, 2], ps.routing_key_indexes
    bound = ps.bind((1, 2, "x", 7))
    assert bound.routing_key is not None
    s.execute(bound)
    sel = s.prepare("SELECT v FROM t WHERE a = ? AND b = ?")
    assert one(s, sel, (7, "x")).v == 2
    if len(cluster.metadata.all_hosts()) > 1:
        replicas = cluster.metadata.get_replicas("sem_prep", bound.routing_key)
        assert len(replicas) == 1, replicas


@check
def prepared_system_table_queries_describe_their_columns(s, cluster):
    ps = s.prepare("SELECT release_version, host_id AS id FROM system.local WHERE key = ?")
    assert [c[2] for c in ps.result_metadata] == ["release_version", "id"], ps.result_metadata
    row = one(s, ps, ("local",))
    assert row.release_version.startswith("5.0"), row


@check
def errors_carry_cassandras_codes(s, cluster):
    fresh_keyspace(s, "sem_err")
    s.execute("CREATE TABLE t (k int PRIMARY KEY, v int)")
    expectations = [
        ("SELEC * FROM t", "SyntaxException"),
        ("SELECT * FROM nope", "InvalidRequest"),
        ("INSERT INTO t (k, v) VALUES ('x', 1)", "InvalidRequest"),
        ("CREATE TABLE t (k int PRIMARY KEY)", "AlreadyExists"),
    ]
    for query, name in expectations:
        try:
            s.execute(query)
            raise AssertionError(f"{query!r} must fail")
        except AssertionError:
            raise
        except Exception as e:
            assert type(e).__name__ == name, f"{query!r}: {type(e).__name__}: {e}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("version", type=int)
    p.add_argument("--compression", default=None)
    p.add_argument("--auth", default=None)
    p.add_argument("--only", default=None, help="comma-separated check names")
    args = p.parse_args()
    # The defaults (5 s to connect, 2 s for the control connection's queries) are short on a
    # loaded machine.
    kwargs = dict(contact_points=[args.host], port=args.port, protocol_version=args.version,
                  connect_timeout=10, control_connection_timeout=10)
    kwargs["compression"] = args.compression or False
    if args.auth:
        user, password = args.auth.split(":", 1)
        kwargs["auth_provider"] = PlainTextAuthProvider(user, password)
    cluster = Cluster(**kwargs)
    session = cluster.connect()
    passed = failed = 0
    for fn in CHECKS:
        if args.only and fn.__name__ not in args.only.split(","):
            continue
        try:
            fn(session, cluster)
            passed += 1
            print(f"ok   {fn.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}\n{traceback.format_exc()}")
    cluster.shutdown()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
