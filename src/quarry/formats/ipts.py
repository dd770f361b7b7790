"""The access-log index's own format: ``ip,ts`` lines, ts in POSIX seconds with fractions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from quarry.formats.ipaddr import parse_ips, parse_ipv4, string_parts
from quarry.formats.records import IP_FIELD, TS_FIELD, Parsed, blank_mask, group

# The numbers Arrow's CSV reader (the fast path) reads too: a sign, an exponent. A minus is
# left out: times before the epoch are refused (see MAX_SECONDS).
_LINE = (r"^[ \t]*(?P<ip>[0-9A-Fa-f:.%\[\]a-zA-Z_-]+)[ \t]*,[ \t]*"
         r"(?P<ts>\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[ \t]*\r?\n?$")
_HEADER = r"^[ \t]*\"?ip\"?[ \t]*,[ \t]*\"?(?:ts|timestamp|time)\"?[ \t]*\r?\n?$"
# Beyond 2^53 µs a float no longer holds every microsecond; also keeps int64 safe. Times
# before the epoch are refused: a log written since 1970 has none, so -5 is damage.
MAX_SECONDS = 9.0e9
_CSV_READ = pacsv.ReadOptions(column_names=["ip", "ts"], use_threads=False,
                              block_size=64 << 20)
_CSV_PARSE = pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False)
_CSV_CONVERT = pacsv.ConvertOptions(column_types={"ip": pa.string(), "ts": pa.float64()},
                                    strings_can_be_null=False, quoted_strings_can_be_null=False)


def _in_range(secs: np.ndarray) -> np.ndarray:
    """Times from the epoch (0, not -0) up to ``MAX_SECONDS``; NaN is out of range."""
    out: np.ndarray = ~np.signbit(secs) & (secs < MAX_SECONDS)
    return out


class IpTsParser:
    name = "ipts"
    schema = pa.schema([IP_FIELD, TS_FIELD])

    def parse(self, lines: pa.BinaryArray, first_line: int) -> Parsed:
        data, offs = string_parts(lines)
        fast = self.parse_clean(data[int(offs[0]):int(offs[-1])].tobytes()) if len(lines) else None
        return fast if fast is not None else self._parse_any(lines, first_line)

    def parse_clean(self, raw: bytes) -> Parsed | None:
        """Arrow's CSV reader plus a split/cast IPv4 parser over a raw block of whole lines:
        several times faster than the regex, and no line split needed, but all or nothing;
        any surprise in the block (a header, a blank or malformed line, IPv6) returns None
        and the block takes the general path."""
        n = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
        if not raw or n == 0:
            return None
        block = pa.py_buffer(raw)
        try:
            t = pacsv.read_csv(pa.BufferReader(block), read_options=_CSV_READ,
                               parse_options=_CSV_PARSE, convert_options=_CSV_CONVERT)
            if t.num_rows != n:
                return None
            secs = t.column("ts").to_numpy()
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        v4, ok = parse_ipv4(t.column("ip").combine_chunks())
        if not ok.all() or not _in_range(secs).all():
            return None
        ips = np.zeros((n, 16), dtype=np.uint8)
        ips[:, 10:12] = 0xFF
        ips[:, 12:] = v4.astype(">u4").view(np.uint8).reshape(n, 4)
        table = pa.table({
            "ip": pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n,
                                                       [None, pa.py_buffer(ips)]),
            "ts": pa.array(np.rint(secs * 1e6).astype(np.int64)).cast(TS_FIELD.type),
        }, schema=self.schema)
        return Parsed(table, np.zeros(0, dtype=np.int64))

    def _parse_any(self, lines: pa.BinaryArray, first_line: int) -> Parsed:
        n = len(lines)
        st = pc.extract_regex(lines, _LINE)
        ok = st.is_valid().to_numpy(zero_copy_only=False).copy()
        ips, ip_ok = parse_ips(group(st, "ip", b"").cast(pa.string()))
        ok &= ip_ok
        secs = pc.cast(group(st, "ts", b"0").cast(pa.string()), pa.float64())
        s = secs.to_numpy(zero_copy_only=False)
        ok &= _in_range(s)
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
