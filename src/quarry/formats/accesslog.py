"""Apache/nginx access logs, common and combined formats, parsed by one vectorised regex.

Real logs have ``-`` for missing fields, quoted strings with backslash escapes, IPv6 clients
and zone offsets on timestamps. Quoted fields keep their text as logged (escapes included),
so nothing is lost; ``-`` becomes null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.formats.ipaddr import parse_ips
from quarry.formats.records import IP_FIELD, TS_FIELD, Parsed, blank_mask, group, to_text

# An escaped-quote-aware quoted string, unrolled ([^"\\]*(\\.[^"\\]*)*), which RE2 runs
# markedly faster than the alternation form.
_Q = r'[^"\\]*(?:\\.[^"\\]*)*'
_LINE = (r"^(?P<ip>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
         rf'"(?P<request>{_Q})" (?P<status>\d{{3}}|-) (?P<size>\d+|-)'
         rf'(?: "(?P<referer>{_Q})" "(?P<agent>{_Q})")?[ \t]*\r?\n?$')
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
STRING_DICT = pa.dictionary(pa.int32(), pa.string())


class AccessLogParser:
    name = "access-log"
    schema = pa.schema([
        IP_FIELD, TS_FIELD,
        pa.field("ident", STRING_DICT), pa.field("user", STRING_DICT),
        pa.field("request", pa.string()),
        pa.field("status", pa.uint16()), pa.field("size", pa.int64()),
        pa.field("referer", STRING_DICT), pa.field("agent", STRING_DICT),
    ])

    def parse(self, lines: pa.BinaryArray, first_line: int) -> Parsed:
        st = pc.extract_regex(lines, _LINE)
        ok = st.is_valid().to_numpy(zero_copy_only=False).copy()
        ips, ip_ok = parse_ips(group(st, "ip", b"").cast(pa.string()))
        ok &= ip_ok
        when = pc.strptime(to_text(group(st, "time", b"")), format=TIME_FORMAT,
                           unit="us", error_is_null=True)
        ok &= when.is_valid().to_numpy(zero_copy_only=False)
        skip = blank_mask(lines)
        bad = np.flatnonzero(~ok & ~skip)
        keep = pa.array(np.flatnonzero(ok))
        good = st.take(keep)

        def field(name: str) -> pa.Array:
            return good.field(name)

        def dict_text(name: str) -> pa.Array:
            return pc.dictionary_encode(to_text(field(name), dash_is_null=True))

        status = to_text(field("status"), dash_is_null=True)
        size = to_text(field("size"), dash_is_null=True)
        table = pa.table({
            "ip": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), len(keep), [None, pa.py_buffer(ips[keep.to_numpy()].tobytes())]),
            "ts": when.take(keep).cast(TS_FIELD.type),
            "ident": dict_text("ident"),
            "user": dict_text("user"),
            "request": to_text(field("request")),
            "status": pc.cast(status, pa.uint16()),
            "size": pc.cast(size, pa.int64()),
            # A common-format line has no referer/agent: the optional group gives "".
            "referer": pc.dictionary_encode(_empty_null(to_text(field("referer"),
                                                                dash_is_null=True))),
            "agent": pc.dictionary_encode(_empty_null(to_text(field("agent"),
                                                              dash_is_null=True))),
        }, schema=self.schema)
        return Parsed(table, bad)


def _empty_null(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
