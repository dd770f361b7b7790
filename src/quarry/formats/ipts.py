"""The access-log index's own format: ``ip,ts`` lines, ts in POSIX seconds with fractions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.formats.ipaddr import parse_ips
from quarry.formats.records import IP_FIELD, TS_FIELD, Parsed, blank_mask, group

_LINE = (r"^[ \t]*(?P<ip>[0-9A-Fa-f:.%\[\]a-zA-Z_-]+)[ \t]*,[ \t]*"
         r"(?P<ts>-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))[ \t]*\r?\n?$")
_HEADER = r"^[ \t]*\"?ip\"?[ \t]*,[ \t]*\"?(?:ts|timestamp|time)\"?[ \t]*\r?\n?$"
# Beyond ±2^53 µs a float no longer holds every microsecond; also keeps int64 safe.
MAX_SECONDS = 9.0e9


class IpTsParser:
    name = "ipts"
    schema = pa.schema([IP_FIELD, TS_FIELD])

    def parse(self, lines: pa.BinaryArray, first_line: int) -> Parsed:
        n = len(lines)
        st = pc.extract_regex(lines, _LINE)
        ok = st.is_valid().to_numpy(zero_copy_only=False).copy()
        ips, ip_ok = parse_ips(group(st, "ip", b"").cast(pa.string()))
        ok &= ip_ok
        secs = pc.cast(group(st, "ts", b"0").cast(pa.string()), pa.float64())
        s = secs.to_numpy(zero_copy_only=False)
        ok &= np.abs(s) < MAX_SECONDS
        ts = np.rint(s * 1e6).astype(np.int64)
        skip = blank_mask(lines)
        if first_line == 1 and n and not ok[0]:
            skip[0] |= bool(pc.match_substring_regex(lines[:1], _HEADER)[0].as_py())
        bad = np.flatnonzero(~ok & ~skip)
        keep = np.flatnonzero(ok)
        table = pa.table({
            "ip": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), len(keep), [None, pa.py_buffer(ips[keep].tobytes())]),
            "ts": pa.array(ts[keep], pa.int64()).cast(TS_FIELD.type),
        }, schema=self.schema)
        return Parsed(table, bad)
