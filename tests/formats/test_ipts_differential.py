"""Hypothesis-generated ``ip,ts`` lines, parsed by Quarry (both its paths) and by an oracle."""

import ipaddress
import math
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from quarry.errors import BadRequest
from quarry.formats.ipaddr import format_ip, parse_ip
from quarry.formats.ipts import _LINE, MAX_SECONDS, IpTsParser
from quarry.formats.textblocks import split_lines

ORACLE = re.compile(_LINE)

ip_st = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i))),
    st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i))),
    st.sampled_from(["01.02.03.04", "10.0.0.010", "1.2.3", "300.1.1.1", "x", "[::1]"]))
ts_st = st.one_of(
    st.integers(0, 2_000_000_000).map(str),
    st.floats(0, 2e9, allow_nan=False).map(lambda f: f"{f:.3f}"),
    st.sampled_from(["-5", "-0", "-1.5", "nan", "-nan", "inf", "1e3", "+5", "1E-2", "1e",
                     "9000000000", "8999999999.9", "9e9", ".5", "5.", "abc", "0x10", ""]))
line_st = st.builds(lambda ip, ts, pad, end: f"{ip},{pad}{ts}{end}", ip_st, ts_st,
                    st.sampled_from(["", " "]), st.sampled_from(["\n", "\r\n"]))


def oracle(line: str) -> tuple[str, int] | None:
    """The address and µs time of a good line: an address ``parse_ip`` takes, and a decimal
    number of seconds from 0 (not -0) up to MAX_SECONDS."""
    m = ORACLE.match(line)
    if not m:
        return None
    try:
        packed = parse_ip(m["ip"])
    except BadRequest:
        return None
    secs = float(m["ts"])
    if math.copysign(1, secs) < 0 or not secs < MAX_SECONDS:
        return None
    return format_ip(packed), round(secs * 1e6)


@settings(max_examples=200, deadline=None)
@given(st.lists(line_st, min_size=1, max_size=20))
def test_parser_matches_oracle(lines: list[str]) -> None:
    batch = split_lines("".join(lines).encode(), 2, "t")  # not line 1: no header check
    parsed = IpTsParser().parse(batch.lines, 2)
    want = [oracle(x) for x in lines]
    assert parsed.rejected.tolist() == [i for i, w in enumerate(want) if w is None]
    got = [(format_ip(r["ip"]), round(r["ts"].timestamp() * 1e6))
           for r in parsed.table.to_pylist()]
    assert got == [w for w in want if w is not None]
