import json
from pathlib import Path

import pytest

from quarry.errors import BadRequest
from quarry.formats.dispatcher import chunk_files
from tests.support import FIXTURES

IPLOG = FIXTURES / "iplog"


def test_nested_configs_and_urls_flatten_in_order() -> None:
    names = [p.name for p in chunk_files(IPLOG / "stable_metaindex2.json")]
    assert names == [f"stable_1k_{i}.csv" for i in (*range(10, 20), *range(10))]


def test_loop_and_unknown_url(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"data": ["b.json"]}))
    (tmp_path / "b.json").write_text(json.dumps({"data": ["a.json"]}))
    with pytest.raises(BadRequest, match="loop"):
        chunk_files(tmp_path / "a.json")
    (tmp_path / "c.json").write_text(json.dumps({"data": ["http://example.org:81/"]}))
    with pytest.raises(BadRequest, match="--url"):
        chunk_files(tmp_path / "c.json")


def test_folder_without_config_uses_its_csv_files(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.csv").write_text("1.2.3.4,1\n")
    (tmp_path / "d" / "a.csv").write_text("1.2.3.4,2\n")
    (tmp_path / "top.json").write_text(json.dumps({"data": ["d"]}))
    assert [p.name for p in chunk_files(tmp_path / "top.json")] == ["a.csv", "b.csv"]
