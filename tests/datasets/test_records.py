import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from quarry.datasets.records import ChunkInfo, RecordsView
from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.errors import BadRequest
from quarry.formats.textblocks import expand_sources
from quarry.store import Store
from tests.support import FIXTURES


def write(path: Path, rows: list[tuple[str, float]]) -> Path:
    path.write_text("".join(f"{ip},{ts}\n" for ip, ts in rows))
    return path


def view(store: Store, name: str) -> RecordsView:
    return Engine(store, refresh_interval=0).records(name)


def test_chunks_are_sorted_with_zone_maps(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ts = np.sort(rng.uniform(1e9, 1e9 + 1000, 1000)).round(3)
    ts[100:110] = ts[100:110][::-1]  # slightly out of order
    rows = [(f"10.0.{i % 7}.{i % 251}", float(t)) for i, t in enumerate(ts)]
    rep = ingest(store, "ips", expand_sources([str(write(tmp_path / "a.csv", rows))]),
                 chunk_rows=128)
    assert rep.rows == 1000 and rep.rejected == 0 and rep.format == "ipts"
    v = view(store, "ips")
    assert len(v.chunks) == 8 and v.rows == 1000
    all_ts = np.concatenate([c.ts for c in v.chunks])
    assert (np.diff(all_ts) >= 0).all()
    for c in v.chunks:
        lo, hi = c.info.ts_range
        assert lo == c.ts.min() and hi == c.ts.max() and c.info.exact
        assert "ip" in c.info.zones
    assert sorted(all_ts.tolist()) == sorted(np.rint(ts * 1e6).astype(np.int64).tolist())


def test_append_reuses_chunks_and_same_data_makes_no_version(store: Store,
                                                              tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", [("1.1.1.1", 10.0), ("2.2.2.2", 20.0)])
    b = write(tmp_path / "b.csv", [("3.3.3.3", 30.0)])
    first = ingest(store, "ips", expand_sources([str(a)])).result
    assert first is not None and first.created
    again = ingest(store, "ips", expand_sources([str(a)])).result
    assert again is not None and not again.created
    appended = ingest(store, "ips", expand_sources([str(b)]), append=True).result
    assert appended is not None and appended.created
    old = [ChunkInfo.from_json(c) for c in first.snapshot.meta["chunks"]]
    new = [ChunkInfo.from_json(c) for c in appended.snapshot.meta["chunks"]]
    assert new[: len(old)] == old and len(new) == len(old) + 1
    assert appended.snapshot.parent == first.version
    assert view(store, "ips").rows == 3


def test_append_refuses_other_schema(store: Store, tmp_path: Path) -> None:
    ingest(store, "x", expand_sources([str(write(tmp_path / "a.csv", [("1.1.1.1", 1.0)]))]))
    log = str(FIXTURES / "accesslogs" / "apache_logs_head1500")
    with pytest.raises(BadRequest, match="schema"):
        ingest(store, "x", expand_sources([log]), append=True, fmt="access-log")


def test_rejects_counted_reported_and_kept(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text("1.1.1.1,1\nbad line\n2.2.2.2,2\n1.2.3,4\n")
    rejects = io.BytesIO()
    rep = ingest(store, "x", expand_sources([str(src)]), rejects=rejects)
    assert rep.rows == 2 and rep.rejected == 2
    assert [(r.line, r.text) for r in rep.first_rejects] == [(2, "bad line"), (4, "1.2.3,4")]
    assert rejects.getvalue() == b"bad line\n1.2.3,4\n"
    with pytest.raises(BadRequest, match=r"a.csv:2"):
        ingest(store, "y", expand_sources([str(src)]), strict=True)
    assert store.head("y") is None


def test_sources_gzip_glob_folder(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    write(d / "a.csv", [("1.1.1.1", 1.0)])
    with gzip.open(d / "b.csv.gz", "wt") as f:
        f.write("2.2.2.2,2\n3.3.3.3,3\n")
    assert ingest(store, "folder", expand_sources([str(d)])).rows == 3
    assert ingest(store, "glob", expand_sources([str(d / "*.gz")])).rows == 2


def test_access_log_dataset(store: Store) -> None:
    log = str(FIXTURES / "accesslogs" / "apache_logs_head1500")
    rep = ingest(store, "web", expand_sources([log]))
    assert rep.format == "access-log" and rep.rows == 1500
    v = view(store, "web")
    t = v.chunks[0].table
    assert t.schema.names[:2] == ["ip", "ts"]
    assert (np.diff(v.chunks[0].ts) >= 0).all()
    assert v.describe()["rows"] == 1500
