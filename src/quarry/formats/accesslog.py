"""Apache/nginx access logs, common and combined formats, parsed column-wise.

Real logs have ``-`` for missing fields, quoted strings with backslash escapes, IPv6 clients
and zone offsets on timestamps. Quoted fields keep their text as logged (escapes included),
so nothing is lost; ``-`` becomes null.

Speed: RE2 runs a regex with capture groups several times slower than a plain match, so a
match (DFA) validates each line and the fields are cut out by splitting on ``"`` and spaces;
only lines holding a backslash (escaped quotes) go through the capturing regex. Timestamps in
the standard fixed-width layout are computed from their digits (impossible dates, times and
zones refused); others go through Python's strptime.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.formats.ipaddr import parse_ips, string_parts
from quarry.formats.ipts import MAX_SECONDS
from quarry.formats.records import IP_FIELD, TS_FIELD, Parsed, blank_mask, group, to_text

# An escaped-quote-aware quoted string, unrolled ([^"\\]*(\\.[^"\\]*)*), which RE2 runs
# markedly faster than the alternation form.
_Q = r'[^"\\]*(?:\\.[^"\\]*)*'
_LINE = (r"^(?P<ip>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
         rf'"(?P<request>{_Q})" (?P<status>\d{{3}}|-) (?P<size>\d+|-)'
         rf'(?: "(?P<referer>{_Q})" "(?P<agent>{_Q})")?[ \t]*\r?\n?$')
_VALID = (r"^\S+ \S+ \S+ \[[^\]]+\] "
          rf'"{_Q}" (?:\d{{3}}|-) (?:\d+|-)(?: "{_Q}" "{_Q}")?[ \t]*\r?\n?$')
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
_FIXED_TIME = r"^\d\d/[A-Z][a-z][a-z]/\d\d\d\d:\d\d:\d\d:\d\d [+-]\d\d\d\d$"
_MONTH_NAMES = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep",
                b"Oct", b"Nov", b"Dec"]
_BY_CODE = sorted((int.from_bytes(n, "big"), i + 1) for i, n in enumerate(_MONTH_NAMES))
_MONTH_CODES = np.array([c for c, _ in _BY_CODE], dtype=np.int64)
_MONTH_NUMBERS = np.array([m for _, m in _BY_CODE], dtype=np.int64)
STRING_DICT = pa.dictionary(pa.int32(), pa.string())
FIELDS = ("ip", "ident", "user", "time", "request", "status", "size", "referer", "agent")


class AccessLogParser:
    name = "access-log"
    schema = pa.schema([
        IP_FIELD, TS_FIELD,
        pa.field("ident", STRING_DICT), pa.field("user", STRING_DICT),
        pa.field("request", pa.string()),
        pa.field("status", pa.uint16()), pa.field("size", pa.int64()),
        pa.field("referer", STRING_DICT), pa.field("agent", STRING_DICT),
    ])

    def parse_clean(self, raw: bytes) -> Parsed | None:
        return None  # every block is split: the parser works per line

    def parse(self, lines: pa.BinaryArray, first_line: int) -> Parsed:
        n = len(lines)
        valid = pc.fill_null(pc.match_substring_regex(lines, _VALID), False).to_numpy(
            zero_copy_only=False)
        # Splitting at quotes needs no backslash and exactly the format's quotes (2 common,
        # 6 combined); counted per line over the raw bytes.
        slash = (_per_line(lines, 92) > 0) | ~np.isin(_per_line(lines, 34), (2, 6))
        plain = np.flatnonzero(valid & ~slash)
        escaped = np.flatnonzero(valid & slash)
        cols = [_split_fields(lines.take(pa.array(plain)))]
        if len(escaped):
            st = pc.extract_regex(lines.take(pa.array(escaped)), _LINE)
            cols.append({f: group(st, f, b"") for f in FIELDS})
        rows = np.concatenate([plain, escaped])
        fields = {f: pa.concat_arrays([c[f].cast(pa.binary()) for c in cols]) for f in FIELDS}
        if len(escaped):  # back to input order, so equal times keep it
            order = pa.array(np.argsort(rows, kind="stable"))
            fields = {f: a.take(order) for f, a in fields.items()}
            rows = np.sort(rows)
        ips, ip_ok = parse_ips(to_text(fields["ip"]))
        when = parse_times(to_text(fields["time"]))
        # A size past 2^63-1 rejects its line; cast with the others, it failed the ingest.
        ok = ip_ok & when.is_valid().to_numpy(zero_copy_only=False) & _fits_int64(
            fields["size"])
        good = np.zeros(n, dtype=bool)
        good[rows[ok]] = True
        bad = np.flatnonzero(~good & ~blank_mask(lines))
        keep = pa.array(np.flatnonzero(ok))
        f = {k: v.take(keep) for k, v in fields.items()}

        def dict_text(name: str) -> pa.Array:
            return _dict_dash_null(to_text(f[name]))

        def number(name: str, typ: pa.DataType) -> pa.Array:
            col = f[name]
            dash = pc.fill_null(pc.equal(col, pa.scalar(b"-", col.type)), True)
            ints = pc.cast(pc.if_else(dash, pa.scalar(b"0", col.type), col).cast(pa.string()),
                           typ)
            return pc.if_else(dash, pa.scalar(None, typ), ints)

        table = pa.table({
            "ip": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), len(keep), [None, pa.py_buffer(ips[ok].tobytes())]),
            "ts": when.take(keep).cast(TS_FIELD.type),
            "ident": dict_text("ident"),
            "user": dict_text("user"),
            "request": to_text(f["request"]),
            "status": number("status", pa.uint16()),
            "size": number("size", pa.int64()),
            # A common-format line has no referer/agent: those come out as "".
            "referer": dict_text("referer"),
            "agent": dict_text("agent"),
        }, schema=self.schema)
        return Parsed(table, bad)


def _fits_int64(digits: pa.Array) -> np.ndarray:
    """Whether each value (digits, or ``-``) fits an int64: fewer than 19 significant
    digits, or 19 that compare as text at most 2^63-1 (equal widths compare as numbers)."""
    text = pc.utf8_ltrim(to_text(digits), characters="0")
    width = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    fits: np.ndarray = width < 19
    edge = width == 19
    if edge.any():
        small = pc.fill_null(pc.less_equal(text, str(2**63 - 1)), False)
        fits |= edge & small.to_numpy(zero_copy_only=False)
    return fits


def _per_line(lines: pa.BinaryArray, byte: int) -> np.ndarray:
    """How many times ``byte`` occurs in each line."""
    data, offs = string_parts(lines)
    if len(lines) == 0:
        return np.zeros(0, dtype=np.int64)
    chunk = data[int(offs[0]):int(offs[-1])] == byte
    rel = offs[:-1].astype(np.int64) - int(offs[0])
    if (np.diff(offs) > 0).all():
        # One pass, no int64 running sum over every byte.
        out: np.ndarray = np.add.reduceat(chunk.view(np.uint8), rel, dtype=np.int32)
        return out
    hits = np.concatenate(([0], np.cumsum(chunk, dtype=np.int64)))
    ends = offs[1:].astype(np.int64) - int(offs[0])
    out = hits[ends] - hits[rel]
    return out


def _element(lists: pa.ListArray, i: int) -> pa.Array:
    """Element ``i`` of each list, null where the list is shorter (one take, no copies of
    the lists themselves)."""
    offs = lists.offsets.to_numpy(zero_copy_only=False)
    lengths = np.diff(offs)
    idx = offs[:-1] + i
    missing = lengths <= i
    return lists.values.take(pa.array(np.where(missing, 0, idx), mask=missing))


def _split_fields(lines: pa.BinaryArray) -> dict[str, pa.Array]:
    """Fields of valid lines without backslashes, cut at quotes and spaces."""
    if len(lines) == 0:
        return {f: pa.array([], pa.binary()) for f in FIELDS}
    q = pc.split_pattern(lines, b'"')
    head = pc.split_pattern(_element(q, 0), b" ", max_splits=3)
    middle = pc.split_pattern(_element(q, 2), b" ")  # " 200 2326 " -> "", "200", "2326", ...
    return {
        "ip": _element(head, 0),
        "ident": _element(head, 1),
        "user": _element(head, 2),
        "time": pc.binary_slice(_element(head, 3), 1, -2),  # "[time] " -> time
        "request": _element(q, 1),
        "status": _element(middle, 1),
        # On a common-format line the size ends the line: drop its line ending.
        "size": pc.utf8_trim_whitespace(_element(middle, 2).cast(pa.string())),
        "referer": _element(q, 3),  # null on common-format lines
        "agent": _element(q, 5),
    }


def parse_times(text: pa.Array) -> pa.Array:
    """``10/Oct/2000:13:55:36 -0700`` to UTC µs timestamps (null when unreadable)."""
    n = len(text)
    fixed = pc.fill_null(pc.match_substring_regex(text, _FIXED_TIME), False).to_numpy(
        zero_copy_only=False)
    out = np.zeros(n, dtype=np.int64)
    ok = fixed.copy()
    rows = np.flatnonzero(fixed)
    if len(rows):
        # All these are 26 bytes wide: view them as an (n, 26) byte matrix and do the
        # arithmetic on digit columns.
        t = text.take(pa.array(rows))
        data, offs = string_parts(t)
        b = data[int(offs[0]):int(offs[-1])].reshape(-1, 26).astype(np.int64)

        def num(start: int, stop: int) -> np.ndarray:
            v = np.zeros(len(b), dtype=np.int64)
            for i in range(start, stop):
                v = v * 10 + (b[:, i] - 48)
            return v

        code = (b[:, 3] << 16) | (b[:, 4] << 8) | b[:, 5]
        pos = np.searchsorted(_MONTH_CODES, code)
        pos = np.minimum(pos, 11)
        known = _MONTH_CODES[pos] == code
        m = _MONTH_NUMBERS[pos]
        y, d = num(7, 11), num(0, 2)
        hh, mm, ss, zh, zm = num(12, 14), num(15, 17), num(18, 20), num(22, 24), num(24, 26)
        # Arithmetic would carry an impossible field into the next one (31/Feb as 3 March,
        # a zone of +9999 as four days): such times are malformed, as strptime says.
        ok[rows] = (known & (y >= 1) & (d >= 1) & (d <= _days_in_month(y, m)) & (hh < 24)
                    & (mm < 60) & (ss < 60) & (zh < 24) & (zm < 60))
        days = _days_from_civil(y, m, d)
        secs = days * 86400 + hh * 3600 + mm * 60 + ss
        sign = np.where(b[:, 21] == ord("-"), -1, 1)
        offset = sign * (zh * 3600 + zm * 60)
        out[rows] = (secs - offset) * 1_000_000
    result = pa.array(out, pa.int64()).cast(TS_FIELD.type)
    if not fixed.all():
        # Other layouts (one-digit days, ``-07:00`` zones) are rare: Python's strptime reads
        # them, which refuses impossible dates where Arrow's rolls them over.
        for i in np.flatnonzero(~fixed):
            us = _slow_time(text[int(i)].as_py())
            ok[i] = us is not None
            out[i] = us or 0
        result = pa.array(out, pa.int64()).cast(TS_FIELD.type)
    # The range ip,ts times have (the epoch to MAX_SECONDS): what the query path turns into
    # float seconds exactly. A zone offset can carry a year-1 or year-9999 time past it.
    ok &= (out >= 0) & (out < int(MAX_SECONDS) * 1_000_000)
    return pc.if_else(pa.array(ok), result, pa.scalar(None, TS_FIELD.type))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _slow_time(text: str | None) -> int | None:
    try:
        when = datetime.strptime(text or "", TIME_FORMAT)
    except ValueError:
        return None
    return (when - _EPOCH) // timedelta(microseconds=1)


def _days_in_month(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    out: np.ndarray = np.where(m == 2, 28 + leap, 30 + ((m + (m >= 8)) % 2))
    return out


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    out: np.ndarray = era * 146097 + doe - 719468
    return out


def _dict_dash_null(arr: pa.Array) -> pa.Array:
    """Dictionary-encode, with ``-`` and empty (absent) values as nulls; the test runs on the
    small dictionary, not on every row."""
    enc = pc.dictionary_encode(arr)
    words = enc.dictionary
    blank = np.flatnonzero(pc.fill_null(pc.is_in(words, pa.array(["-", ""])), False)
                           .to_numpy(zero_copy_only=False))
    if len(blank) == 0:
        return enc
    idx = enc.indices.to_numpy(zero_copy_only=False)
    null = np.isin(idx, blank) | ~enc.indices.is_valid().to_numpy(zero_copy_only=False)
    return pa.DictionaryArray.from_arrays(pa.array(np.where(null, 0, idx), pa.int32(),
                                                   mask=null), words)
