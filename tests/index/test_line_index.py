from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quarry.errors import BadRequest
from quarry.index.line_index import (
    BOM,
    LineIndex,
    LineIndexBuilder,
    LineIndexInfo,
    build_line_index_from_file,
    choose_mode,
)


def oracle_lines(data: bytes) -> list[bytes]:
    """Plain-Python statement of the line rules the index must follow."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    if not data:
        return []
    parts = data.split(b"\n")
    terminated = len(parts) - 1
    if parts[-1] == b"":
        parts.pop()
    return [p[:-1] if i < terminated and p.endswith(b"\r") else p for i, p in enumerate(parts)]


def build(data: bytes, mode: str, splits: list[int], every: int = 64,
          size_hint: int | None = None) -> LineIndex:
    sink = bytearray()
    builder = LineIndexBuilder(sink.extend, mode=mode, size_hint=size_hint,  # type: ignore[arg-type]
                               every=every)
    pos = 0
    for cut in sorted(splits):
        builder.feed(data[pos:cut])
        pos = cut
    builder.feed(data[pos:])
    info = builder.finish()
    return LineIndex(info, memoryview(bytes(sink)), data)


line_bytes = st.lists(
    st.sampled_from([b"a", b"xyz", b"\r", b"\n", b"\r\n", b"\xc3\xa9", b"\xff", b" ", b"\n\n"]),
    max_size=60,
).map(b"".join)
files = st.tuples(st.booleans(), line_bytes).map(lambda t: (BOM if t[0] else b"") + t[1])


@settings(max_examples=300, deadline=None)
@given(data=files, mode=st.sampled_from(["dense", "sparse"]), every=st.integers(1, 5),
       splits=st.lists(st.integers(0, 80), max_size=6), small=st.booleans())
def test_index_matches_oracle(data: bytes, mode: str, every: int, splits: list[int],
                              small: bool) -> None:
    splits = [min(s, len(data)) for s in splits]
    idx = build(data, mode, splits, every=every, size_hint=len(data) if small else None)
    expected = oracle_lines(data)
    assert idx.lines == len(expected)
    assert [idx.line(i) for i in range(idx.lines)] == expected
    # The range reader gives the same lines, newline-terminated.
    text = b"".join(idx.iter_text(0, idx.lines + 3, piece=7))
    assert text == b"".join(x + b"\n" for x in expected)


@settings(max_examples=100, deadline=None)
@given(data=files, start=st.integers(0, 30), count=st.integers(1, 30))
def test_range_matches_oracle(data: bytes, start: int, count: int) -> None:
    for mode in ("dense", "sparse"):
        idx = build(data, mode, [], every=3)
        expected = oracle_lines(data)[start : start + count]
        got = b"".join(idx.iter_text(start, count, piece=5))
        assert got == b"".join(x + b"\n" for x in expected)


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", []),
        (BOM, []),
        (b"\n", [b""]),
        (b"a", [b"a"]),
        (b"a\n", [b"a"]),
        (b"a\r\nb", [b"a", b"b"]),
        (b"a\r", [b"a\r"]),
        (BOM + b"x\r\n\r\ny", [b"x", b"", b"y"]),
        (b"\xc3\xa9t\xc3\xa9\n", ["\u00e9t\u00e9".encode()]),
    ],
)
def test_edge_cases(data: bytes, lines: list[bytes]) -> None:
    for mode in ("dense", "sparse"):
        idx = build(data, mode, [1])
        assert [idx.line(i) for i in range(idx.lines)] == lines


def test_very_long_line_and_block_boundaries() -> None:
    long_line = b"x" * 3_000_000
    data = b"first\n" + long_line + b"\r\nlast"
    for mode in ("dense", "sparse"):
        sink = bytearray()
        info = build_line_index_from_file(io.BytesIO(data), sink.extend, mode=mode,  # type: ignore[arg-type]
                                          block_size=1 << 16)
        idx = LineIndex(info, memoryview(bytes(sink)), data)
        assert idx.lines == 3
        assert idx.line(1) == long_line
        assert idx.line(2) == b"last"


def test_offsets_width_and_sparse_size() -> None:
    data = b"".join(b"line %d\n" % i for i in range(10_000))
    dense = bytearray()
    LineIndexBuilder(dense.extend, mode="dense", size_hint=len(data)).feed(data)  # type: ignore[arg-type]
    sparse = bytearray()
    b = LineIndexBuilder(sparse.extend, mode="sparse", size_hint=len(data))  # type: ignore[arg-type]
    b.feed(data)
    info = b.finish()
    assert info.dtype == "<u4"
    # Sparse: 4-byte offset per 64 lines, well under 0.25 bytes a line.
    assert len(sparse) / info.lines <= 0.25
    assert LineIndexInfo.from_json(info.to_json()) == info


def test_choose_mode() -> None:
    assert choose_mode("auto", 10) == "dense"
    assert choose_mode("auto", 64 << 30) == "sparse"
    assert choose_mode("sparse", 10) == "sparse"
    with pytest.raises(BadRequest):
        choose_mode("bogus", 10)


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_threaded_scan_matches_single_thread(mode: str) -> None:
    rng = __import__("random").Random(5)
    data = b"".join(b"y" * rng.randint(0, 300) + rng.choice([b"\n", b"\r\n"])
                    for _ in range(40_000)) + b"tail"
    assert len(data) > 4 << 20
    outs = []
    for threads in (1, 2, 3):
        sink = bytearray()
        info = build_line_index_from_file(io.BytesIO(data), sink.extend, mode=mode,  # type: ignore[arg-type]
                                          block_size=3 << 20)
        b = LineIndexBuilder(sink.extend, mode=mode, threads=threads)  # type: ignore[arg-type]
        sink.clear()
        for k in range(0, len(data), 3 << 20):
            b.feed(data[k : k + (3 << 20)])
        info = b.finish()
        outs.append((info, bytes(sink)))
    assert outs[0] == outs[1] == outs[2]
    idx = LineIndex(outs[1][0], memoryview(outs[1][1]), data)
    expected = oracle_lines(data)
    assert idx.lines == len(expected)
    assert all(idx.line(i) == expected[i] for i in range(0, len(expected), 997))
    assert idx.line(len(expected) - 1) == b"tail"
