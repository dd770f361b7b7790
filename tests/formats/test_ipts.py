from quarry.formats.ipts import IpTsParser
from quarry.formats.textblocks import split_lines


def test_header_blank_and_malformed_lines() -> None:
    text = "ip,ts\n1.2.3.4,1412668795.815\n\n5.6.7.8, 12 \nx,1\n1.2.3.4,abc\n9.9.9.9\n::1,7.5\n"
    batch = split_lines(text.encode(), 1, "t")
    parsed = IpTsParser().parse(batch.lines, 1)
    assert parsed.rejected.tolist() == [4, 5, 6]
    rows = parsed.table.to_pylist()
    assert [r["ts"].timestamp() for r in rows] == [1412668795.815, 12.0, 7.5]


def test_header_only_skipped_on_first_line() -> None:
    batch = split_lines(b"1.2.3.4,1\nip,ts\n", 1, "t")
    assert IpTsParser().parse(batch.lines, 1).rejected.tolist() == [1]


def test_last_line_without_newline() -> None:
    batch = split_lines(b"1.2.3.4,1\n1.2.3.5,2", 1, "t")
    assert IpTsParser().parse(batch.lines, 1).table.num_rows == 2


def test_times_before_the_epoch_and_padded_octets_are_malformed() -> None:
    text = b"1.2.3.4,-5\n1.2.3.4,-0\n01.02.03.04,5\n1.2.3.4,0\n1.2.3.4,1e3\n"
    batch = split_lines(text, 1, "t")
    parsed = IpTsParser().parse(batch.lines, 1)
    assert parsed.rejected.tolist() == [0, 1, 2]
    assert [r["ts"].timestamp() for r in parsed.table.to_pylist()] == [0.0, 1000.0]
    # A clean-looking block takes the CSV fast path: it must refuse the same lines.
    for bad in (b"1.2.3.4,-5\n", b"01.02.03.04,5\n"):
        assert IpTsParser().parse_clean(b"1.2.3.4,1\n" + bad) is None
