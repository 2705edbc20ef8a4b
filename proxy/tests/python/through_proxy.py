"""Drives `ferry proxy` with the Python cassandra-driver and checks each cluster directly.

usage: through_proxy.py PROXY_HOST:PORT ORIGIN_HOST:PORT TARGET_HOST:PORT VERSION
       [--compression lz4|snappy] [--auth USER:PASS] [--origin-auth USER:PASS] [--target-auth USER:PASS]
       [--keyspace NAME]
Exits non-zero with a message on the first failed check.
"""
import argparse
import sys
import uuid

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import WhiteListRoundRobinPolicy
from cassandra.query import BatchStatement, SimpleStatement


def connect(addr, version, compression=None, auth=None):
    host, port = addr.rsplit(":", 1)
    provider = None
    if auth:
        user, password = auth.split(":", 1)
        provider = PlainTextAuthProvider(username=user, password=password)
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]))
    cluster = Cluster(
        [host],
        port=int(port),
        protocol_version=version,
        compression=compression or False,
        auth_provider=provider,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=10,
        # The default 2 s for the control connection's queries is short on a loaded machine.
        control_connection_timeout=10,
    )
    return cluster, cluster.connect()


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("proxy")
    p.add_argument("origin")
    p.add_argument("target")
    p.add_argument("version", type=int)
    p.add_argument("--compression")
    p.add_argument("--auth")
    p.add_argument("--origin-auth")
    p.add_argument("--target-auth")
    p.add_argument("--keyspace", default="proxy_py")
    a = p.parse_args()

    cluster, s = connect(a.proxy, a.version, a.compression, a.auth)
    check(cluster.protocol_version == a.version, f"negotiated protocol v{a.version}")
    ks = a.keyspace
    s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    s.execute(f"CREATE TABLE {ks}.t (k int, c int, v text, l list<int>, PRIMARY KEY (k, c))")
    s.execute(f"CREATE TABLE {ks}.counts (k int PRIMARY KEY, n counter)")
    s.set_keyspace(ks)

    insert = s.prepare("INSERT INTO t (k, c, v, l) VALUES (?, ?, ?, ?)")
    for k in range(5):
        for c in range(4):
            s.execute(insert, (k, c, f"v{k}.{c}", [k, c]))
    s.execute("UPDATE t SET v = 'updated', l = l + [99] WHERE k = 0 AND c = 0")
    s.execute("DELETE FROM t WHERE k = 4")
    batch = BatchStatement()
    batch.add(insert, (10, 0, "batched", [1]))
    batch.add(SimpleStatement("INSERT INTO t (k, c, v) VALUES (10, 1, 'batched text')"))
    s.execute(batch)
    s.execute("UPDATE counts SET n = n + 5 WHERE k = 1")
    lwt = s.execute("INSERT INTO t (k, c, v) VALUES (20, 0, 'lwt') IF NOT EXISTS").one()
    check(lwt[0] is True, "LWT applied through the proxy")
    lwt = s.execute("INSERT INTO t (k, c, v) VALUES (20, 0, 'again') IF NOT EXISTS").one()
    check(lwt[0] is False, "second LWT not applied")

    rows = list(s.execute("SELECT k, c, v FROM t"))
    check(len(rows) == 5 * 4 - 4 + 2 + 1, f"read through the proxy sees every row ({len(rows)})")
    select = s.prepare("SELECT v, l FROM t WHERE k = ? AND c = ?")
    row = s.execute(select, (0, 0)).one()
    check(row.v == "updated" and row.l == [0, 0, 99], "prepared read sees the update")
    paged = list(s.execute(SimpleStatement("SELECT * FROM t", fetch_size=3)))
    check(len(paged) == len(rows), "paging through the proxy")
    local = s.execute("SELECT rpc_address, host_id FROM system.local").one()
    check(str(local.rpc_address) == a.proxy.rsplit(":", 1)[0], "system.local names the proxy")

    # Each cluster directly: same rows, same writetimes.
    def snapshot(addr, auth):
        c, sess = connect(addr, 4, None, auth)
        data = sorted(
            (r.k, r.c, r.v, tuple(r.l or ()), r.wt)
            for r in sess.execute(f"SELECT k, c, v, l, writetime(v) AS wt FROM {ks}.t")
        )
        n = sess.execute(f"SELECT n FROM {ks}.counts WHERE k = 1").one()
        c.shutdown()
        return data, n.n if n else None

    origin = snapshot(a.origin, a.origin_auth)
    target = snapshot(a.target, a.target_auth)
    check(len(origin[0]) == len(rows), "origin has every row")
    check(origin == target, "origin and target hold identical rows, writetimes and counters")
    cluster.shutdown()
    print("all checks passed")


if __name__ == "__main__":
    main()
