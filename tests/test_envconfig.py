from __future__ import annotations

from pathlib import Path

import pytest

from quarry.connectors.settings import ApiSettings
from quarry.envconfig import load_config, parse_config
from quarry.errors import BadConfig

ORIGINAL = """
default:
  url: http://127.0.0.1:9000/foodstats
  rate_limit: 100
  pool: 4
  first_id: 658330693
  last_id: 732158492
  results_per_page: 100
development:
  pool: 2
test:
  url: http://127.0.0.1:9001/foodstats
production:
  url: https://api.example.org/v1/foodipedia/foodstats
server:
"""


def api(text: str, env: str = "development") -> ApiSettings:
    return ApiSettings.from_config(parse_config(text, "config.yml", env))


def test_original_flat_layout_with_environments() -> None:
    text = ORIGINAL.replace("server:\n", "")
    dev = api(text)
    assert (dev.url, dev.pool, dev.rate_limit, dev.first_id, dev.last_id) == (
        "http://127.0.0.1:9000/foodstats", 2, 100.0, 658330693, 732158492)
    assert api(text, "test").url == "http://127.0.0.1:9001/foodstats"
    assert api(text, "production").pool == 4
    assert api(text, "default").pool == 4


def test_sections_for_other_parts_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "quarry.yml"
    f.write_text("default:\n  api: {url: 'http://x/a', pool: 3}\n  server: {port: 8080}\n"
                 "production:\n  api: {pool: 8}\n  events: {pub: 'tcp://*:5556'}\n")
    cfg = load_config(f, environ={"QUARRY_ENV": "production"})
    assert cfg.env == "production"
    assert cfg.section("server").get_int("port") == 8080
    assert cfg.section("events").get_str("pub") == "tcp://*:5556"
    s = ApiSettings.from_config(cfg, {"rate_limit": 5.0, "pool": None})
    assert (s.pool, s.rate_limit, s.url) == (8, 5.0, "http://x/a")
    assert load_config(None, environ={"QUARRY_CONFIG": str(f)}).section("api").values["pool"] == 3


def test_a_file_without_environments_is_the_default() -> None:
    assert api("api: {url: 'http://h/p', pool: 6}\n", "test").pool == 6


@pytest.mark.parametrize("text, env, message", [
    ("default: [1, 2\n", "development", r"not valid YAML at line 2, column 1"),
    ("- 1\n", "development", "must be a mapping of environments"),
    ("default: {}\nstaging: {}\n", "development", "'staging' is not an environment"),
    ("default:\n  apii: {url: 'http://h'}\n", "development", "did you mean 'api'"),
    ("default:\n  api: {url: 'http://h', rate_limit: fast}\n", "development",
     r"config.yml: development.api.rate_limit must be a number, got 'fast'"),
    ("default:\n  api: {url: 'http://h', pool: yes}\n", "development",
     "pool must be a whole number, got True"),
    ("default:\n  api: {url: 'http://h', pool: 0}\n", "development", "pool must be at least 1"),
    ("default:\n  api: {url: 'http://h', poll: 2}\n", "development", "did you mean 'pool'"),
    ("default:\n  api: {url: 'ftp://h'}\n", "development", "http\\(s\\) URL"),
    ("default:\n  api: {pool: 2}\n", "development", "no API url"),
    ("default:\n  api: {url: 'http://h', first_id: 10, last_id: 5}\n", "development",
     "before first_id"),
    ("default:\n  server: 3\n", "development", "server must be a mapping"),
    ("default: {}\n", "staging", "unknown environment 'staging'"),
])
def test_bad_configs_are_clear(text: str, env: str, message: str) -> None:
    with pytest.raises(BadConfig, match=message):
        api(text, env)


def test_missing_or_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(BadConfig, match="does not exist"):
        load_config(tmp_path / "nope.yml")
    (tmp_path / "bin.yml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(BadConfig, match="not UTF-8"):
        load_config(tmp_path / "bin.yml")

def test_no_file_means_empty_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, environ={})
    assert cfg.env == "development" and cfg.section("api").values == {}
