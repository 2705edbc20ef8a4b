"""Protocol v5 result metadata ids: after ALTER TABLE, EXECUTE of a prepared `SELECT *` must
answer METADATA_CHANGED with the new columns, or a driver that skips metadata decodes the new
row with the old columns.

Usage: metadata_changed.py HOST PORT
"""

import sys

from cassandra.cluster import Cluster

host, port = sys.argv[1], int(sys.argv[2])
# The defaults (5 s to connect, 2 s for the control connection's queries) are short on a
# loaded machine.
cluster = Cluster([host], port=port, protocol_version=5, connect_timeout=10,
                  control_connection_timeout=10)
s = cluster.connect()
s.execute(
    "CREATE KEYSPACE md_changed WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
)
s.set_keyspace("md_changed")
s.execute("CREATE TABLE t (k int PRIMARY KEY, v text)")
s.execute("INSERT INTO t (k, v) VALUES (1, 'one')")
select = s.prepare("SELECT * FROM t WHERE k = 1")
old_id = select.result_metadata_id
row = s.execute(select).one()
assert (row.k, row.v) == (1, "one"), row

s.execute("ALTER TABLE t ADD w int")
s.execute("UPDATE t SET w = 5 WHERE k = 1")
row = s.execute(select).one()
assert row._fields == ("k", "v", "w"), row._fields
assert (row.k, row.v, row.w) == (1, "one", 5), row
# cassandra-driver 3.30 decodes with the metadata the response carries but keeps the old id
# (it updates it only on re-prepare), so every later EXECUTE must get METADATA_CHANGED too.
assert select.result_metadata_id == old_id
row = s.execute(select).one()
assert row.w == 5, row
cluster.shutdown()
print("metadata_changed: ok")
