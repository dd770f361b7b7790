from __future__ import annotations

import os
from pathlib import Path

import pytest

from quarry.datasets.lines import parse_line_number, put_lines, put_lines_stream
from quarry.engine import Engine
from quarry.errors import BadRequest, NotFound, OutOfRange, Unavailable
from quarry.store import Store
from tests.index.test_line_index import oracle_lines
from tests.support import FIXTURES

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"


def test_frankenstein_copy_and_read(store: Store, engine: Engine) -> None:
    res = put_lines(store, "frank", FRANKENSTEIN)
    view = engine.lines("frank")
    expected = oracle_lines(FRANKENSTEIN.read_bytes())
    assert view.lines == len(expected) == res.snapshot.meta["lines"]
    assert view.line(0) == expected[0]  # BOM not part of line 1
    assert not view.line(0).startswith(b"\xef\xbb\xbf")
    assert all(not view.line(i).endswith(b"\r") for i in range(0, view.lines, 97))
    assert [view.line(i) for i in range(view.lines)] == expected
    # The copy is a blob named by its hash; the source may now go away.
    assert store.blobs.exists(res.snapshot.sha256)


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_modes_agree(store: Store, engine: Engine, mode: str, tmp_path: Path) -> None:
    put_lines(store, f"f-{mode}", FRANKENSTEIN, mode=mode)
    view = engine.lines(f"f-{mode}")
    assert view.info.mode == mode
    expected = oracle_lines(FRANKENSTEIN.read_bytes())
    assert [view.line(i) for i in range(view.lines)] == expected


def test_link_refuses_changed_file(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "big.txt"
    f.write_bytes(b"a\nb\nc\n")
    res = put_lines(store, "big", f, link=True)
    assert res.snapshot.link is not None
    assert not res.snapshot.has_part("data")  # not copied
    engine = Engine(store)
    assert engine.lines("big").line(1) == b"b"
    f.write_bytes(b"a\nb\nc\nd\n")
    with pytest.raises(Unavailable):
        engine.lines("big").line(1)
    st = f.stat()
    f.write_bytes(b"x\ny\nz\nd\n")  # same size, different mtime
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(Unavailable):
        engine.lines("big").line(0)
    f.unlink()
    with pytest.raises(Unavailable):
        engine.lines("big").line(0)




def test_link_refuses_a_file_renamed_over_it(store: Store, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads fstat the mapped file; a new file renamed over the path is seen at once when
    that unlinks the mapped one, and by the path check when another link keeps it alive."""
    import quarry.datasets.lines as lines_mod

    f = tmp_path / "r.txt"
    f.write_bytes(b"a\nb\n")
    put_lines(store, "r", f, link=True)
    engine = Engine(store)
    assert engine.lines("r").line(1) == b"b"
    new = tmp_path / "new.txt"
    new.write_bytes(b"x\ny\n")
    os.replace(new, f)  # the mapped file has no name left
    with pytest.raises(Unavailable):
        engine.lines("r").line(1)
    # Another name keeps the mapped file alive: only the path shows the change.
    g = tmp_path / "g.txt"
    g.write_bytes(b"a\nb\n")
    put_lines(store, "g", g, link=True)
    view = Engine(store).lines("g")
    os.link(g, tmp_path / "keep.txt")
    new.write_bytes(b"x\ny\n")
    os.replace(new, g)
    monkeypatch.setattr(lines_mod, "PATH_RECHECK", 0.0)
    with pytest.raises(Unavailable):
        view.line(1)


def test_relinking_a_touched_file_serves_it_again(store: Store, tmp_path: Path) -> None:
    """The 503's advice ("re-add it with quarry put --link") must work when only the mtime
    moved: same bytes, but the link's pinned mtime is new, so it is a new version."""
    f = tmp_path / "t.txt"
    f.write_bytes(b"a\nb\n")
    first = put_lines(store, "t", f, link=True)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))  # touched, content unchanged
    engine = Engine(store)
    with pytest.raises(Unavailable):
        engine.lines("t").line(0)
    assert engine.describe("t")["linked_file"] == "changed"
    again = put_lines(store, "t", f, link=True)
    assert again.created and again.version != first.version
    assert engine.lines("t").line(1) == b"b"
    assert engine.describe("t")["linked_file"] == "same"
    assert not put_lines(store, "t", f, link=True).created  # nothing moved this time
    copied = put_lines(store, "t", f)  # a copy in place of the link is a new version too
    assert copied.created and copied.snapshot.link is None


def test_changing_the_index_mode_is_a_new_version(store: Store) -> None:
    dense = put_lines(store, "f", FRANKENSTEIN)
    sparse = put_lines(store, "f", FRANKENSTEIN, mode="sparse")
    assert sparse.created and sparse.snapshot.meta["line_index"]["mode"] == "sparse"
    assert not put_lines(store, "f", FRANKENSTEIN, mode="sparse").created
    assert dense.version != sparse.version


def test_stream_and_unchanged(store: Store, engine: Engine) -> None:
    data = FRANKENSTEIN.read_bytes()
    r1 = put_lines_stream(store, "s", (data[i : i + 1000] for i in range(0, len(data), 1000)))
    r2 = put_lines(store, "s", FRANKENSTEIN)
    assert r1.created and not r2.created
    assert engine.lines("s").line(5) == oracle_lines(data)[5]


def test_errors(store: Store, engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        put_lines(store, "x", tmp_path / "missing.txt")
    with pytest.raises(BadRequest):
        put_lines(store, "x", tmp_path)
    with pytest.raises(BadRequest):
        put_lines(store, "bad name", FRANKENSTEIN)
    assert store.datasets() == []
    put_lines(store, "x", FRANKENSTEIN)
    with pytest.raises(OutOfRange):
        engine.lines("x").line(10**9)
    with pytest.raises(NotFound):
        engine.lines("nope")


@pytest.mark.parametrize("raw", ["", "-1", "0", "1.5", "abc", "1e3", "+3", " 1",
                                 "99999999999999999999", "9223372036854775808", "١٢"])
def test_parse_line_number_rejects(raw: str) -> None:
    with pytest.raises(BadRequest):
        parse_line_number(raw, 1)


def test_parse_line_number() -> None:
    assert parse_line_number("1", 1) == 0
    assert parse_line_number("0", 0) == 0
    assert parse_line_number("9223372036854775807", 1) == 9223372036854775806
    for huge in ("9223372036854775808", "9" * 25):  # too big, whatever its length
        with pytest.raises(BadRequest, match=r"beyond 2\^63-1"):
            parse_line_number(huge, 1)
