import pyarrow as pa

from quarry.formats.accesslog import AccessLogParser
from quarry.formats.textblocks import expand_sources, read_batches, split_lines
from tests.support import FIXTURES


def parse(text: str) -> tuple[list[dict[str, object]], list[int]]:
    batch = split_lines(text.encode(), 1, "t")
    parsed = AccessLogParser().parse(batch.lines, 1)
    return parsed.table.to_pylist(), parsed.rejected.tolist()


def test_real_apache_lines() -> None:
    src = expand_sources([str(FIXTURES / "accesslogs" / "apache_logs_head1500")])[0]
    total = 0
    for b in read_batches(src):
        parsed = AccessLogParser().parse(b.lines, b.first_line)
        assert parsed.rejected.tolist() == []
        total += parsed.table.num_rows
    assert total == 1500
    first = parsed.table.slice(0, 1).to_pylist()[0]
    assert first["status"] == 200 and first["size"] == 203023
    assert first["ident"] is None and first["user"] is None
    assert first["request"].startswith("GET /presentations/")
    assert first["ts"].timestamp() == 1431857103.0  # 17/May/2015:10:05:03 +0000


def test_truncated_real_line_is_rejected_with_its_number() -> None:
    src = expand_sources([str(FIXTURES / "accesslogs" / "apache_logs_8890-8910")])[0]
    (b,) = list(read_batches(src))
    parsed = AccessLogParser().parse(b.lines, b.first_line)
    assert [b.first_line + int(i) for i in parsed.rejected] == [10]
    assert parsed.table.num_rows == 20


def test_edge_cases() -> None:
    rows, bad = parse(
        '2001:db8::7 - frank [10/Oct/2000:13:55:36 -0700] "GET /a\\"b HTTP/1.0" 200 - '
        '"-" "agent \\"x\\""\n'
        '10.0.0.1 - - [10/Oct/2000:13:55:36 +0530] "GET / HTTP/1.0" 304 0\n'
        "\n"
        'not a log line\n'
        '999.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.0" 200 1 "-" "-"\n'
        '10.0.0.2 - - [99/Foo/2000:13:55:36 +0000] "GET / HTTP/1.0" 200 1 "-" "-"\r\n'
    )
    assert bad == [3, 4, 5]
    a, b = rows
    assert a["user"] == "frank" and a["size"] is None and a["referer"] is None
    assert a["request"] == 'GET /a\\"b HTTP/1.0' and a["agent"] == 'agent \\"x\\"'
    assert a["ts"].timestamp() == 971186136.0 + 7 * 3600
    assert b["referer"] is None and b["agent"] is None and b["status"] == 304
    assert b["ts"].timestamp() == 971186136.0 - 5.5 * 3600


def test_impossible_times_and_addresses_are_malformed() -> None:
    line = '{} - - [{}] "GET / HTTP/1.0" 200 1\n'
    rows, bad = parse("".join(line.format(ip, t) for ip, t in [
        ("10.0.0.1", "31/Feb/2015:10:00:00 +0000"),  # was 3 March
        ("10.0.0.1", "10/Oct/2000:13:55:36 +9999"),
        ("10.0.0.1", "10/Oct/2000:24:00:00 +0000"),
        ("10.0.0.1", "10/Oct/2000:13:60:00 +0000"),
        ("10.0.0.1", "00/Oct/2000:13:55:36 +0000"),
        ("10.0.0.1", "29/Feb/2015:00:00:00 +0000"),
        ("10.0.0.1", "31/Apr/2015:00:00:00 -07:00"),  # the other layout's path
        ("01.02.03.04", "10/Oct/2000:13:55:36 +0000"),
        # Outside the epoch .. 9e9 s, which query answers give as exact float seconds (a
        # year-2263 time made every query of its dataset a 500), also through the zone.
        ("10.0.0.1", "01/Jan/2263:00:00:00 +0000"),
        ("10.0.0.1", "01/Jan/1677:00:00:00 +0000"),
        ("10.0.0.1", "01/Jan/1970:00:00:00 +0001"),
        ("10.0.0.1", "1/Jan/1970:00:00:00 +00:01"),
        ("10.0.0.1", "29/Feb/2016:00:00:00 +2359"),  # good: a leap day, the widest zone
        ("10.0.0.1", "1/Oct/2000:00:00:00 -07:00"),  # good, in the other layout
    ]))
    assert bad == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert [r["ts"].isoformat() for r in rows] == ["2016-02-28T00:01:00+00:00",
                                                   "2000-10-01T07:00:00+00:00"]


def test_sizes_beyond_int64_reject_their_line_only() -> None:
    line = '10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.0" 200 {}\n'
    sizes = [2**63 - 1, 2**63, 10**19, 10**30, "0" * 30 + "7", "0" * 30 + str(2**63)]
    rows, bad = parse("".join(line.format(s) for s in sizes))
    assert bad == [1, 2, 3, 5]
    assert [r["size"] for r in rows] == [2**63 - 1, 7]
    # The same through the path for lines with backslashes (a regex, not a split).
    rows, bad = parse(line.replace("GET /", 'GET /\\"').format(2**64))
    assert rows == [] and bad == [0]


def test_schema_types() -> None:
    schema = AccessLogParser().schema
    assert schema.field("ip").type == pa.binary(16)
    assert schema.field("status").type == pa.uint16()
