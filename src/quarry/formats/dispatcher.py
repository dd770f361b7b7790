"""The access-log index's dispatcher configs, flattened to the chunk files they serve.

A config is JSON ``{"data": [...], "port": N}``; each entry is a chunk file given as a list of
path segments (``["dir", "x.csv"]``) or a path, a nested config (``x.json``), a folder (served
by the config ``folder.json`` beside it, or else by its ``.csv`` files), or the URL of another
dispatcher server. Paths are relative to the config's folder. A URL is resolved to the config
in the same folder tree that was served on that port (how the original deployments ran), or
through ``url_map``; a URL nothing maps to is an error, as the data behind it is not local.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from quarry.errors import BadRequest, NotFound

CHUNK_SUFFIXES = (".csv",)
CONFIG_SUFFIXES = (".json", ".config")


def _load(path: Path) -> dict[str, Any]:
    try:
        conf = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"no dispatcher config {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"dispatcher config {path} is not valid JSON: {e}") from None
    if not isinstance(conf, dict) or not isinstance(conf.get("data"), list):
        raise BadRequest(f"dispatcher config {path} has no \"data\" list")
    return conf


def _ports(folder: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for f in sorted(folder.glob("*.json")):
        try:
            port = json.loads(f.read_text()).get("port")
        except (ValueError, AttributeError, OSError):
            continue
        if isinstance(port, int):
            out.setdefault(port, f)
    return out


def chunk_files(config: Path | str, url_map: Mapping[str, str] | None = None) -> list[Path]:
    """Every chunk file ``config`` dispatches to, in the order the original merged them."""
    config = Path(config)
    if config.is_dir():
        config = config.with_suffix(".json") if config.with_suffix(".json").exists() else config
    root = config.parent if config.is_file() else config
    urls = dict(url_map or {})
    out: list[Path] = []
    _walk(config, out, [], root, urls)
    if not out:
        raise BadRequest(f"dispatcher config {config} lists no chunk files")
    return out


def _walk(node: Path, out: list[Path], stack: list[Path], root: Path,
          urls: dict[str, str]) -> None:
    if node.is_dir():
        conf = node.with_suffix(".json")
        if conf.is_file():
            node = conf
        else:
            out.extend(sorted(f for f in node.iterdir() if f.suffix in CHUNK_SUFFIXES))
            return
    key = node.resolve()
    if key in stack:
        raise BadRequest(f"dispatcher configs loop: {' -> '.join(p.name for p in stack)} -> "
                         f"{node.name}")
    base = node.parent
    for entry in _load(node)["data"]:
        if isinstance(entry, list) and all(isinstance(s, str) for s in entry) and entry:
            target = base.joinpath(*entry)
        elif isinstance(entry, str) and entry.startswith(("http://", "https://")):
            target = _resolve_url(entry, root, urls)
        elif isinstance(entry, str):
            target = base / entry
        else:
            raise BadRequest(f"dispatcher config {node} has an entry of unknown shape: "
                             f"{str(entry)[:80]}")
        if target.suffix in CHUNK_SUFFIXES and target.is_file():
            out.append(target)
        elif target.suffix in CONFIG_SUFFIXES or target.is_dir():
            _walk(target, out, [*stack, key], root, urls)
        else:
            raise NotFound(f"dispatcher config {node} names {entry!r}, which is neither a "
                           "chunk file, a config nor a folder")


def _resolve_url(url: str, root: Path, urls: dict[str, str]) -> Path:
    norm = url.rstrip("/")
    for k, v in urls.items():
        if k.rstrip("/") == norm:
            return Path(v)
    parsed = urlparse(url)
    if parsed.hostname in ("127.0.0.1", "localhost", "::1") and parsed.port is not None:
        hit = _ports(root).get(parsed.port)
        if hit is not None:
            return hit
    raise BadRequest(f"dispatcher URL {url} does not name a config in {root}; map it to one "
                     "with --url URL=CONFIG")
