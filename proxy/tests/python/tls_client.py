"""Drives a TLS `ferry proxy` with the Python cassandra-driver (an ssl.SSLContext that checks
the certificate chain and the host name), then checks each cluster directly.

usage: tls_client.py PROXY_HOST:PORT ORIGIN_HOST:PORT TARGET_HOST:PORT --ca CA.pem
       [--cert CLIENT.pem --key CLIENT.key] [--expect-refused] [--keyspace NAME]
With --expect-refused the connection must fail (mutual TLS without a client certificate).
Exits non-zero with a message on the first failed check.
"""
import argparse
import ssl
import sys

from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT, NoHostAvailable
from cassandra.policies import WhiteListRoundRobinPolicy


def connect(addr, ssl_context=None):
    host, port = addr.rsplit(":", 1)
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]))
    cluster = Cluster(
        [host],
        port=int(port),
        protocol_version=4,
        ssl_context=ssl_context,
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
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--expect-refused", action="store_true")
    p.add_argument("--keyspace", default="tls_py")
    a = p.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(a.ca)
    # The default for PROTOCOL_TLS_CLIENT; said here because it is what the test is about.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if a.cert:
        context.load_cert_chain(a.cert, a.key)

    if a.expect_refused:
        try:
            cluster, _ = connect(a.proxy, context)
        except NoHostAvailable as e:
            print(f"ok: refused ({e})")
            return
        cluster.shutdown()
        check(False, "the proxy refuses a client without a certificate")

    cluster, s = connect(a.proxy, context)
    ks = a.keyspace
    s.execute(
        f"CREATE KEYSPACE {ks} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
    insert = s.prepare(f"INSERT INTO {ks}.t (k, v) VALUES (?, ?)")
    for k in range(20):
        s.execute(insert, (k, f"v{k}"))
    rows = sorted((r.k, r.v) for r in s.execute(f"SELECT k, v FROM {ks}.t"))
    check(rows == [(k, f"v{k}") for k in range(20)], "reads through the TLS proxy")
    local = s.execute("SELECT rpc_address FROM system.local").one()
    check(str(local.rpc_address) == a.proxy.rsplit(":", 1)[0], "system.local names the proxy")
    cluster.shutdown()

    # Each cluster directly (plain TCP): the dual writes landed on both.
    for name, addr in (("origin", a.origin), ("target", a.target)):
        c, sess = connect(addr)
        direct = sorted((r.k, r.v) for r in sess.execute(f"SELECT k, v FROM {ks}.t"))
        c.shutdown()
        check(direct == rows, f"{name} holds every row")
    print("all checks passed")


if __name__ == "__main__":
    main()
