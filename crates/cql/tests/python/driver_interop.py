"""The Python cassandra-driver's own protocol code, as a second implementation to check ours against.

`encode`: prints `name<TAB>hex` lines, each a request envelope or v5 segment stream encoded by the
driver. `decode`: reads `name<TAB>version<TAB>hex` lines of envelopes (or `segment-*` lines of
segments) that ferry-cql encoded, and prints `name<TAB>json` with what the driver decoded.
"""

import datetime
import decimal
import io
import ipaddress
import json
import sys
import uuid

from cassandra import ConsistencyLevel
from cassandra.connection import locally_supported_compressions
from cassandra.protocol import (
    AuthResponseMessage,
    BatchMessage,
    ExecuteMessage,
    OptionsMessage,
    PrepareMessage,
    ProtocolHandler,
    QueryMessage,
    RegisterMessage,
    StartupMessage,
)
from cassandra.query import BatchType, _UNSET_VALUE
from cassandra.segment import SegmentCodec

LZ4_COMPRESS, LZ4_DECOMPRESS = locally_supported_compressions["lz4"]


def envelope(msg, version, stream=1):
    return ProtocolHandler.encode_message(msg, stream, version, None, version >= 5)


def query(version):
    msg = QueryMessage(
        "SELECT * FROM ks.t WHERE a = ? AND b = ?",
        ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        fetch_size=5000,
        paging_state=b"\x01\x02\x03",
        timestamp=1_700_000_000_000_000,
        keyspace="ks" if version >= 5 else None,
    )
    msg.query_params = [b"\x00\x00\x00\x2a", None]
    return msg


def execute(version):
    return ExecuteMessage(
        b"\xca\xfe",
        [b"\x00\x07", None, _UNSET_VALUE],
        ConsistencyLevel.ONE,
        skip_meta=True,
        result_metadata_id=b"\x5e" if version >= 5 else None,
    )


def batch(version):
    return BatchMessage(
        BatchType.UNLOGGED,
        [(False, "INSERT INTO ks.t (a) VALUES (?)", [b"x"]), (True, b"\xca\xfe", [None])],
        ConsistencyLevel.QUORUM,
        serial_consistency_level=ConsistencyLevel.SERIAL,
        timestamp=7,
        keyspace="ks" if version >= 5 else None,
    )


def payload(n):
    return bytes((i * 7 + i // 256) % 251 for i in range(n))


def encode():
    out = []
    out.append(("startup-v4", envelope(StartupMessage("3.0.0", {"COMPRESSION": "lz4"}), 4)))
    out.append(("options-v5", envelope(OptionsMessage(), 5)))
    out.append(("register-v4", envelope(RegisterMessage(["SCHEMA_CHANGE", "STATUS_CHANGE"]), 4)))
    out.append(("auth-response-v4", envelope(AuthResponseMessage(b"\x00u\x00p"), 4)))
    for v in (3, 4, 5):
        out.append((f"query-v{v}", envelope(query(v), v)))
        out.append((f"batch-v{v}", envelope(batch(v), v)))
        out.append((f"prepare-v{v}", envelope(PrepareMessage("SELECT 1", keyspace="ks" if v >= 5 else None), v)))
    for v in (4, 5):
        out.append((f"execute-v{v}", envelope(execute(v), v)))
    for n in (10, 1000, 300_000):
        for name, codec in (("plain", SegmentCodec()), ("lz4", SegmentCodec(LZ4_COMPRESS, LZ4_DECOMPRESS))):
            buf = io.BytesIO()
            codec.encode(buf, payload(n))
            out.append((f"segment-{name}-{n}", buf.getvalue()))
    for name, data in out:
        print(f"{name}\t{bytes(data).hex()}")


def plain(value):
    """A JSON-friendly, order-stable form of a decoded value."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (uuid.UUID, decimal.Decimal, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if type(value).__name__ in ("Date", "Time"):  # cassandra.util's own date and time types
        return str(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return [[plain(k), plain(v)] for k, v in value.items()]
    if isinstance(value, (set, frozenset)) or type(value).__name__ == "SortedSet":
        return sorted((plain(v) for v in value), key=json.dumps)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "months") and hasattr(value, "nanoseconds"):
        return [value.months, value.days, value.nanoseconds]
    if isinstance(value, float):
        return repr(value)
    return value


def describe(msg):
    # The Cython build names its result class FastResultMessage; the pure-Python one does not.
    out = {"type": type(msg).__name__.removeprefix("Fast")}
    if hasattr(msg, "code") and hasattr(msg, "info"):
        out.update(code=msg.code, message=msg.message, info=plain(msg.info))
    for attr in ("options", "authenticator", "event_type", "event_args", "new_keyspace",
                 "column_names", "paging_state", "pk_indexes", "result_metadata_id",
                 "schema_change_event", "warnings", "trace_id"):
        if getattr(msg, attr, None) is not None:
            out[attr] = plain(getattr(msg, attr))
    if getattr(msg, "kind", None) is not None:
        out["kind"] = msg.kind
    if getattr(msg, "column_types", None):
        out["column_types"] = [t.cql_parameterized_type() for t in msg.column_types]
    if getattr(msg, "parsed_rows", None) is not None:
        out["rows"] = plain(msg.parsed_rows)
    if getattr(msg, "query_id", None) is not None:
        out["query_id"] = plain(msg.query_id)
    if getattr(msg, "kind", None) == 4 and getattr(msg, "column_metadata", None):
        out["result_columns"] = [[c[0], c[1], c[2], c[3].cql_parameterized_type()] for c in msg.column_metadata]
    if getattr(msg, "bind_metadata", None):
        out["bind"] = [[c[0], c[1], c[2], c[3].cql_parameterized_type()] for c in msg.bind_metadata]
    return out


def decode():
    for line in sys.stdin:
        name, version, data = line.rstrip("\n").split("\t")
        raw = bytes.fromhex(data)
        if name.startswith("segment"):
            lz4 = "lz4" in name
            codec = SegmentCodec(LZ4_COMPRESS, LZ4_DECOMPRESS) if lz4 else SegmentCodec()
            buf = io.BytesIO(raw)
            segments = []
            while buf.tell() < len(raw):
                header = codec.decode_header(buf)
                segment = codec.decode(buf, header)
                segments.append([segment.is_self_contained, segment.payload.hex()])
            print(f"{name}\t{json.dumps(segments)}")
            continue
        flags, stream, opcode = raw[1], int.from_bytes(raw[2:4], "big", signed=True), raw[4]
        length = int.from_bytes(raw[5:9], "big")
        body = raw[9:9 + length]
        assert len(body) == length, f"{name}: body is {len(body)} bytes, header says {length}"
        msg = ProtocolHandler.decode_message(int(version), {}, stream, flags, opcode, body, None, None)
        print(f"{name}\t{json.dumps(describe(msg), sort_keys=True)}")


if __name__ == "__main__":
    {"encode": encode, "decode": decode}[sys.argv[1]]()
