"""Connects the Python cassandra-driver to one instance of a multi-instance `ferry proxy`
topology and checks it sees every instance as a node and can run queries through each.

usage: topology.py HOST PORT EXPECTED_HOST[,EXPECTED_HOST...]
Exits non-zero with a message on the first failed check.
"""
import sys
import time

from cassandra.cluster import Cluster


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def main():
    host, port, expected = sys.argv[1], int(sys.argv[2]), sorted(sys.argv[3].split(","))
    # The default 2 s for the control connection's queries is short on a loaded machine.
    cluster = Cluster([host], port=port, protocol_version=4, connect_timeout=10,
                      control_connection_timeout=10)
    session = cluster.connect()
    hosts = cluster.metadata.all_hosts()
    seen = sorted(h.endpoint.address for h in hosts)
    check(seen == expected, f"the driver sees {expected} (saw {seen})")
    # The session opens a pool per host in the background; a query pinned to a host whose
    # pool is not registered yet fails with "Host has been marked down or removed", even
    # though the host is up. Wait (bounded) until every pool has an open connection.
    def pools_open():
        state = session.get_pool_state()
        return all(h in state and state[h]["open_count"] > 0 for h in hosts)

    for _ in range(300):  # 30 s: a loaded machine may take seconds
        if all(h.is_up for h in hosts) and pools_open():
            break
        time.sleep(0.1)
    check(all(h.is_up for h in hosts), f"every instance is up ({[(h.endpoint.address, h.is_up) for h in hosts]})")
    check(pools_open(), f"a connection pool is open to every instance ({session.get_pool_state()})")
    for i, h in enumerate(sorted(hosts, key=lambda h: h.endpoint.address)):
        local = session.execute("SELECT rpc_address FROM system.local", host=h).one()
        check(str(local.rpc_address) == h.endpoint.address,
              f"{h.endpoint.address} answers system.local as itself ({local.rpc_address})")
        session.execute("INSERT INTO ks.t (k, v) VALUES (%s, 'python')", (100 + i,), host=h)
    cluster.shutdown()


if __name__ == "__main__":
    main()
