"""Tables from CSV, JSON lines and Parquet: inferred types, overrides, clear errors."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quarry.errors import BadRequest
from quarry.formats import tabular


def types(t: pa.Table) -> dict[str, str]:
    return {f.name: tabular.logical_type(f) for f in t.schema}


def test_csv_inference(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    f.write_text("n,x,s,when,addr,flag\n1,1.5,a,2024-01-02T03:04:05Z,10.0.0.1,true\n"
                 "2,,b,2024-01-02T03:04:06Z,2001:db8::1,false\n")
    t = tabular.normalise(tabular.read_file(f))
    assert types(t) == {"n": "int", "x": "float", "s": "string", "when": "timestamp",
                        "addr": "ip", "flag": "int"}
    assert t.column("when").cast(pa.int64()).to_pylist()[1] - t.column("when").cast(
        pa.int64()).to_pylist()[0] == 1_000_000
    assert t.column("x").null_count == 1


def test_overrides_and_posix_seconds(tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    f.write_text('{"id": "7", "t": 1700000000.25, "ip": "1.2.3.4"}\n'
                 '{"id": "8", "t": 1700000001, "ip": "5.6.7.8"}\n')
    t = tabular.normalise(tabular.read_file(f), tabular.parse_overrides(["id=int", "t=timestamp",
                                                                         "ip=string"]))
    assert types(t) == {"id": "int", "t": "timestamp", "ip": "string"}
    assert t.column("t").cast(pa.int64()).to_pylist() == [1_700_000_000_250_000,
                                                         1_700_000_001_000_000]


def test_parquet_and_chunk_dictionaries(tmp_path: Path) -> None:
    pq.write_table(pa.table({"s": ["x", "y", "x", None]}), tmp_path / "a.parquet")
    t = tabular.normalise_chunk(tabular.normalise(tabular.read_file(tmp_path / "a.parquet")))
    col = t.column("s").chunk(0)
    assert pa.types.is_dictionary(col.type) and col.dictionary.to_pylist() == ["x", "y"]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="NAME=TYPE"):
        tabular.parse_overrides(["a=varchar"])
    with pytest.raises(BadRequest, match="format"):
        tabular.detect_format(tmp_path / "x.bin")
    f = tmp_path / "a.csv"
    f.write_text("a\nhello\n")
    with pytest.raises(BadRequest, match="'a' cannot be read as int"):
        tabular.normalise(tabular.read_file(f), {"a": "int"})
    with pytest.raises(BadRequest, match="not an IP address"):
        tabular.normalise(tabular.read_file(f), {"a": "ip"})
    with pytest.raises(BadRequest, match="unknown columns"):
        tabular.normalise(tabular.read_file(f), {"b": "int"})
