"""Hypothesis-generated access-log lines, parsed by Quarry and by a plain Python oracle."""

import ipaddress
import re
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from quarry.formats.accesslog import _LINE, AccessLogParser
from quarry.formats.ipaddr import format_ip, parse_ip
from quarry.formats.textblocks import split_lines

ORACLE = re.compile(_LINE.replace("(?P<", "(?P<"))
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

ip_st = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i))),
    st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i))),
    st.sampled_from(["-", "300.1.1.1", "fe80::1%eth0", "01.02.03.04", "10.0.0.010",
                     "0.0.0.0", "::ffff:01.2.3.4"]))
word = st.one_of(st.just("-"), st.text("abcxyz_.", min_size=1, max_size=6))
quoted = st.lists(st.sampled_from([*"ab /?=-", '\\"', "\\\\", "é"]), max_size=12).map("".join)
when_st = st.tuples(st.datetimes(datetime(1990, 1, 1), datetime(2090, 1, 1)),
                    st.integers(-12 * 60, 14 * 60).map(lambda m: m - m % 15))


def fmt_time(dt: datetime, offset_min: int) -> str:
    sign = "-" if offset_min < 0 else "+"
    a = abs(offset_min)
    return (f"{dt.day:02d}/{MONTHS[dt.month - 1]}/{dt.year:04d}:{dt:%H:%M:%S} "
            f"{sign}{a // 60:02d}{a % 60:02d}")


# Times with each field drawn past its range (31/Feb, hour 24, zone +9999, year 0) and in
# other layouts (one-digit day, a zone with a colon): the oracle's strptime decides.
raw_time_st = st.builds(
    lambda d, mon, y, h, mi, s, sign, zh, zm, short, colon: (
        f"{d if short else f'{d:02d}'}/{mon}/{y:04d}:{h:02d}:{mi:02d}:{s:02d} "
        f"{sign}{zh:02d}{':' if colon else ''}{zm:02d}"),
    st.integers(0, 32), st.sampled_from([*MONTHS, "Foo"]), st.integers(0, 2100),
    st.integers(0, 25), st.integers(0, 61), st.integers(0, 61), st.sampled_from("+-"),
    st.integers(0, 99), st.integers(0, 99), st.booleans(), st.booleans())


line_st = st.builds(
    lambda ip, ident, user, when, req, status, size, tail, end: (
        f'{ip} {ident} {user} [{when}] "{req}" {status} {size}'
        + (f' "{tail[0]}" "{tail[1]}"' if tail else "") + end),
    ip_st, word, word, st.one_of(when_st.map(lambda w: fmt_time(*w)), raw_time_st), quoted,
    st.sampled_from(["200", "404", "-"]),
    st.one_of(st.just("-"), st.integers(0, 10**9).map(str),
              st.integers(2**63 - 2, 2**64).map(str)),
    st.one_of(st.none(), st.tuples(quoted, quoted)), st.sampled_from(["\n", "\r\n"]))
junk = st.sampled_from(['x - - [bad] "GET /" 200 1\n', "\n", 'a b c "d"\n'])


def oracle(line: str) -> dict[str, object] | None:
    m = ORACLE.match(line.rstrip("\n"))
    if not m:
        return None
    g = m.groupdict()
    try:
        packed = parse_ip(g["ip"])
        when = datetime.strptime(g["time"], "%d/%b/%Y:%H:%M:%S %z")
    except Exception:
        return None

    if g["size"] != "-" and int(g["size"]) >= 2**63:
        return None  # beyond the int64 column
    us = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    if not 0 <= us < 9_000_000_000 * 10**6:
        return None  # the epoch to 9e9 s, as ip,ts times (query answers float seconds)

    def dash(v: str | None) -> str | None:
        return None if v in (None, "-", "") else v

    return {"ip": format_ip(packed),
            "ts": us,
            "ident": dash(g["ident"]), "user": dash(g["user"]), "request": g["request"],
            "status": None if g["status"] == "-" else int(g["status"]),
            "size": None if g["size"] == "-" else int(g["size"]),
            "referer": dash(g["referer"]), "agent": dash(g["agent"])}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(line_st, junk), min_size=1, max_size=25))
def test_parser_matches_oracle(lines: list[str]) -> None:
    batch = split_lines("".join(lines).encode(), 1, "t")
    parsed = AccessLogParser().parse(batch.lines, 1)
    want = [oracle(x) for x in lines]
    bad = [i for i, w in enumerate(want) if w is None and lines[i].strip()]
    assert parsed.rejected.tolist() == bad
    got = parsed.table.to_pylist()
    for g in got:
        g["ip"] = format_ip(g["ip"])
        g["ts"] = (g["ts"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert got == [w for w in want if w is not None]
