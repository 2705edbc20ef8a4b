"""Drives the Python cassandra-driver against a ferry-sim cluster for the Rust tests.

Usage: driver.py MODE HOST PORT [key=value ...]; prints `name<TAB>value` lines.
"""
import sys
import time
import logging

from cassandra import ProtocolVersion
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable
from cassandra.policies import ConstantReconnectionPolicy, RoundRobinPolicy

logging.basicConfig(level=logging.ERROR)


def out(name, value):
    print(f"{name}\t{value}", flush=True)


def make_cluster(host, port, opts, **extra):
    kwargs = dict(
        contact_points=[host],
        port=port,
        schema_metadata_enabled=False,
        load_balancing_policy=RoundRobinPolicy(),
        reconnection_policy=ConstantReconnectionPolicy(0.2, None),
        status_event_refresh_window=0,
        topology_event_refresh_window=0,
        # Generous for a loaded machine; failures here are refusals, which come at once.
        connect_timeout=10,
        control_connection_timeout=10,
    )
    if "protocol" in opts:
        kwargs["protocol_version"] = int(opts["protocol"])
    if "compression" in opts:
        kwargs["compression"] = opts["compression"] if opts["compression"] != "none" else False
    if "user" in opts:
        kwargs["auth_provider"] = PlainTextAuthProvider(opts["user"], opts["password"])
    kwargs.update(extra)
    return Cluster(**kwargs)


def wait_for(pred, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def connect(host, port, opts):
    cluster = make_cluster(host, port, opts)
    try:
        session = cluster.connect()
    except NoHostAvailable as e:
        out("error", "; ".join(f"{type(v).__name__}: {v}" for v in e.errors.values()))
        return
    out("protocol", cluster.protocol_version)
    out("hosts", len(cluster.metadata.all_hosts()))
    row = session.execute("SELECT release_version, cluster_name FROM system.local").one()
    out("release_version", row.release_version)
    out("partitioner", cluster.metadata.partitioner)
    out("token_owners", len(cluster.metadata.token_map.token_to_host_owner))
    if "fault" in opts:
        try:
            session.execute(opts["fault"])
            out("fault", "none")
        except Exception as e:  # noqa: BLE001 - the test checks the class name
            out("fault", f"{type(e).__name__}: {e}")
    if opts.get("order") == "1":
        done = []
        futures = [session.execute_async(q) for q in ("SELECT slow FROM ks.t", "SELECT fast FROM ks.t")]
        futures[0].add_callback(lambda _: done.append("slow"))
        futures[1].add_callback(lambda _: done.append("fast"))
        # The sim holds the slow request until a statement with "unblock" arrives: the fast
        # one must complete meanwhile, on the same connection, whatever the machine's speed.
        futures[1].result()
        wait_for(lambda: len(done) == 1)
        session.execute("SELECT unblock FROM ks.t")
        futures[0].result()
        wait_for(lambda: len(done) == 2)
        out("order", ",".join(done))
        out("connections", sum(p["open_count"] for p in session.get_pool_state().values()))
    cluster.shutdown()


def updown(host, port, opts):
    """Waits for the test to stop and restart the node at opts['watch'] and reports what the
    driver saw."""
    cluster = make_cluster(host, port, opts)
    session = cluster.connect()
    target = opts["watch"]
    host_obj = next(h for h in cluster.metadata.all_hosts() if h.address == target)
    out("ready", host_obj.is_up)
    sys.stdin.readline()  # stopped
    out("down", wait_for(lambda: not host_obj.is_up))
    sys.stdin.readline()  # restarted
    out("up", wait_for(lambda: host_obj.is_up))
    session.execute("SELECT * FROM system.local")
    cluster.shutdown()


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    opts = dict(a.split("=", 1) for a in sys.argv[4:])
    {"connect": connect, "updown": updown}[mode](host, port, opts)


if __name__ == "__main__":
    main()
