"""Per-range checkpoints of a fetch, kept in the data folder so a stopped run resumes.

A fetch job is identified by what it fetches (URL, id space, ranges, page size); its folder
``<data>/checkpoints/<dataset>/<what>-<key>/`` holds ``job.json`` and one
``range-NNNN.json`` per range: where to continue (``next``, None when the range is done)
and the blobs holding what was fetched so far (``parts``). Parts are ordinary blobs of the
store, written before the checkpoint that names them; each checkpoint is replaced
atomically, so a crash at any point leaves a state that resumes without losing or repeating
an item. The folder is removed once the result is committed.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from quarry.connectors.ranges import IdRange
from quarry.errors import Conflict, Corrupt
from quarry.store import Store
from quarry.store.atomic import atomic_write_bytes


@dataclass(frozen=True)
class RangeState:
    range: IdRange
    next: int | None  # the offset to request next; None: the range is done
    items: int = 0
    pages: int = 0
    last_id: int | None = None  # the largest id kept so far (items strictly increase)
    parts: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.next is None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.range.index, "begin": self.range.begin, "end": self.range.end,
                "next": self.next, "items": self.items, "pages": self.pages,
                "last_id": self.last_id, "parts": list(self.parts)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RangeState:
        return cls(IdRange(int(d["index"]), int(d["begin"]),
                           None if d["end"] is None else int(d["end"])),
                   None if d["next"] is None else int(d["next"]), int(d["items"]),
                   int(d["pages"]), None if d.get("last_id") is None else int(d["last_id"]),
                   tuple(d["parts"]))


def job_key(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(dict(fields), option=orjson.OPT_SORT_KEYS)
                          ).hexdigest()[:16]


class Checkpoints:
    def __init__(self, store: Store, dataset: str, what: str, fields: Mapping[str, Any]):
        self.store = store
        self.fields = dict(fields)
        self.dir = store.root / "checkpoints" / dataset / f"{what}-{job_key(fields)}"
        self._lock_fd: int | None = None

    def _path(self, index: int) -> Any:
        return self.dir / f"range-{index:04d}.json"

    def load(self, ranges: tuple[IdRange, ...]) -> tuple[list[RangeState], bool]:
        """The ranges' states, from the checkpoints when there are any; True if resumed."""
        states = []
        resumed = False
        for r in ranges:
            path = self._path(r.index)
            if path.exists():
                try:
                    state = RangeState.from_json(orjson.loads(path.read_bytes()))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise Corrupt(f"unreadable checkpoint {path}: {e}; remove the folder "
                                  f"{self.dir} to start over") from None
                if state.range != r or any(not self.has_part(p) for p in state.parts):
                    raise Corrupt(f"checkpoint {path} does not match this job; remove "
                                  f"{self.dir} to start over")
                states.append(state)
                resumed = True
            else:
                states.append(RangeState(r, r.begin))
        return states, resumed

    def start(self) -> None:
        """Claim the job (one process at a time: two would fetch the same ranges) and record
        what it is. The claim ends with the process or ``release``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict(f"another process is running this fetch (checkpoints in "
                           f"{self.dir}); wait for it or stop it") from None
        self._lock_fd = fd
        atomic_write_bytes(self.dir / "job.json", orjson.dumps(self.fields),
                           self.store.tmp_dir)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def save(self, state: RangeState) -> None:
        atomic_write_bytes(self._path(state.range.index), orjson.dumps(state.to_json()),
                           self.store.tmp_dir)

    def has_part(self, part: str) -> bool:
        return self.store.blobs.exists(part) if "." not in part else (self.dir / part).exists()

    def write_file(self, index: int, data: bytes) -> str:
        """Keep ``data`` in the checkpoint folder (not the blob store: it is private to this
        job and replaced as the job goes); returns its name, for ``RangeState.parts``."""
        name = f"range-{index:04d}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
        atomic_write_bytes(self.dir / name, data, self.store.tmp_dir)
        return name

    def read_file(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()

    def drop_files(self, names: Iterable[str]) -> None:
        for name in names:
            if "." in name:
                (self.dir / name).unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()

    @staticmethod
    def advance(state: RangeState, nxt: int | None, items: int, pages: int,
                last_id: int | None, part: str | None, cumulative: bool = False) -> RangeState:
        """The state after a flush. A cumulative part (e.g. a range's statistics so far)
        replaces the earlier ones; otherwise parts accumulate."""
        if part is None:
            parts = state.parts
        else:
            parts = (part,) if cumulative else (*state.parts, part)
        return dataclasses.replace(
            state, next=nxt, items=state.items + items, pages=state.pages + pages,
            last_id=last_id, parts=parts)
