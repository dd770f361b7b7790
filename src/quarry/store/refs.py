"""Movable names (HEAD, aliases) for snapshots, moved by compare-and-swap under a file lock."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quarry.errors import BadRequest, PreconditionFailed
from quarry.store.atomic import atomic_write_bytes

# Dataset names are paths of simple segments (``weblogs``, ``qplan/raw``); ``@`` is reserved
# for the ref files inside a dataset's folder, so names and refs can never collide.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
DATASET_NAME = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,7}}")
ALIAS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
HEAD = "@HEAD"
# Segments that name routes below a dataset (/datasets/<name>/lines/...), so no dataset
# name may contain them as a segment.
RESERVED_SEGMENTS = frozenset({
    "lines", "versions", "aliases", "data", "query", "join", "stats", "keys", "records",
    "find", "events", "shards", "explain",
})
ALIASES = "@aliases"


def check_dataset_name(name: str) -> str:
    if any(seg in RESERVED_SEGMENTS for seg in name.split("/")):
        raise BadRequest(
            f"invalid dataset name {name[:80]!r}: segments may not be one of "
            f"{', '.join(sorted(RESERVED_SEGMENTS))}"
        )
    if not DATASET_NAME.fullmatch(name) or ".." in name:
        raise BadRequest(
            f"invalid dataset name {name[:80]!r}: use letters, digits, '.', '_', '-' "
            "in up to 8 segments separated by '/', each starting with a letter or digit"
        )
    return name


def check_alias_name(alias: str) -> str:
    if not ALIAS_NAME.fullmatch(alias) or alias.upper() == "HEAD":
        raise BadRequest(
            f"invalid alias {alias[:80]!r}: start with a letter, then letters, digits, "
            "'.', '_' or '-' (and not HEAD)"
        )
    return alias


class RefStore:
    def __init__(self, root: Path, locks: Path, tmp_dir: Path, *, durable: bool = True) -> None:
        self.durable = durable
        self.root = root
        self.locks = locks
        self.tmp_dir = tmp_dir
        root.mkdir(parents=True, exist_ok=True)
        locks.mkdir(parents=True, exist_ok=True)

    def _dir(self, dataset: str) -> Path:
        return self.root / check_dataset_name(dataset)

    def _file(self, dataset: str, alias: str | None) -> Path:
        d = self._dir(dataset)
        return d / HEAD if alias is None else d / ALIASES / check_alias_name(alias)

    @contextmanager
    def lock(self, dataset: str) -> Iterator[None]:
        """An exclusive lock per dataset, held across processes (flock) and threads."""
        name = hashlib.sha256(dataset.encode()).hexdigest()[:32]
        fd = os.open(self.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def get(self, dataset: str, alias: str | None = None) -> str | None:
        try:
            return self._file(dataset, alias).read_text().strip() or None
        except FileNotFoundError:
            return None

    def set_locked(self, dataset: str, alias: str | None, new: str | None) -> None:
        """Move a ref; the caller holds ``lock(dataset)``. ``None`` deletes it."""
        path = self._file(dataset, alias)
        if new is None:
            path.unlink(missing_ok=True)
            return
        atomic_write_bytes(path, new.encode() + b"\n", self.tmp_dir, durable=self.durable)

    def compare_and_set(
        self, dataset: str, alias: str | None, expected: str | None, new: str | None
    ) -> None:
        with self.lock(dataset):
            current = self.get(dataset, alias)
            if current != expected:
                raise PreconditionFailed(
                    f"{dataset} {alias or 'HEAD'} is at {(current or 'nothing')[:12]}, "
                    f"not at {(expected or 'nothing')[:12]} as expected",
                    current=current,
                )
            self.set_locked(dataset, alias, new)

    def aliases(self, dataset: str) -> dict[str, str]:
        d = self._dir(dataset) / ALIASES
        if not d.is_dir():
            return {}
        out = {}
        for f in sorted(d.iterdir()):
            if not f.name.endswith(".tmp"):
                out[f.name] = f.read_text().strip()
        return out

    def datasets(self) -> list[str]:
        names = []
        for head in self.root.rglob(HEAD):
            names.append(head.parent.relative_to(self.root).as_posix())
        return sorted(names)
