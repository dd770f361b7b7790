"""The background key builder: builds the keys the workload asks for within a memory budget,
publishes them per version in one swap, and drops those that no longer pay.

Keys a user accepted are kept in ``<data>/keys/<dataset>.json`` and always built (they count
against the budget first); built keys live in memory only.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from quarry.engine import Engine
from quarry.errors import BadRequest, QuarryError
from quarry.index.keys import KeySpec
from quarry.index.keyset import Key, build_key
from quarry.query.advisor import Suggestion, suggest
from quarry.store.atomic import atomic_write_bytes


class AcceptedKeys:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.dir = root / "keys"
        self.tmp = tmp

    def _path(self, dataset: str) -> Path:
        return self.dir / (quote(dataset, safe="") + ".json")

    def get(self, dataset: str) -> list[KeySpec]:
        try:
            raw = orjson.loads(self._path(dataset).read_bytes())
        except FileNotFoundError:
            return []
        return [KeySpec(tuple(k)) for k in raw]

    def add(self, dataset: str, spec: KeySpec) -> list[KeySpec]:
        have = self.get(dataset)
        if spec not in have:
            have.append(spec)
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self._path(dataset), orjson.dumps([list(k.fields) for k in have]),
                               self.tmp)
        return have

    def datasets(self) -> list[str]:
        from urllib.parse import unquote

        return [unquote(p.stem) for p in self.dir.glob("*.json")] if self.dir.exists() else []


class KeyBuilder:
    """Owned by whoever serves queries (the server starts one per process); ``run_once`` is
    the whole job, so tests and benchmarks drive it without a thread."""

    def __init__(self, engine: Engine, interval: float = 5.0, min_weight: float = 2.0) -> None:
        self.engine = engine
        self.interval = interval
        self.min_weight = min_weight
        self.accepted = AcceptedKeys(engine.store.root, engine.store.tmp_dir)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()
        self.runs = 0
        self.last_error: str | None = None

    # -- what the workload asks for -----------------------------------------------------
    def suggestions(self, dataset: str, version: str | None = None,
                    budget: int | None = None) -> list[Suggestion]:
        view = self.engine.records(dataset, version)
        existing = [k.spec for k in self.engine.keys.declared(view)]
        existing += self.accepted.get(dataset)
        return suggest(self.engine.workload.shapes(dataset), view.types, view.rows,
                       self.engine.key_budget if budget is None else budget, existing,
                       self.min_weight)

    def accept(self, dataset: str, spec: KeySpec) -> list[KeySpec]:
        view = self.engine.records(dataset)
        unknown = [f for f in spec.fields if f not in view.types]
        if not spec.fields or unknown or len(set(spec.fields)) != len(spec.fields):
            raise BadRequest(f"a key names distinct fields of {dataset} "
                             f"({', '.join(view.types)}); got {spec.name!r}")
        return self.accepted.add(dataset, spec)

    # -- the job ------------------------------------------------------------------------
    def run_once(self) -> dict[str, Any]:
        """Build, swap in and drop keys for every dataset queried (or with accepted keys)."""
        with self._run_lock:
            return self._run()

    def _run(self) -> dict[str, Any]:
        eng = self.engine
        targets = dict(eng.workload.datasets())
        for d in self.accepted.datasets():
            targets.setdefault(d, "HEAD")
        weights = {d: sum(eng.workload.shapes(d).values()) for d in targets}
        left = eng.key_budget
        report: dict[str, Any] = {}
        live: set[str] = set()
        for dataset in sorted(targets, key=lambda d: -weights[d]):
            try:
                view = eng.records(dataset, targets[dataset])
            except QuarryError:
                continue
            live.add(view.version)
            current = eng.keys.built(view.version)
            new: dict[KeySpec, Key] = {}
            for spec in self.accepted.get(dataset):
                if spec in (k.spec for k in eng.keys.declared(view)):
                    continue
                k = current.get(spec) or build_key(view, spec, "accepted")
                k.source = "accepted"
                new[spec] = k
                left -= k.nbytes
            for s in self.suggestions(dataset, view.version, max(0, left)):
                hit = current.get(s.spec)
                if hit is None and s.bytes > left:
                    continue
                k = hit or build_key(view, s.spec)
                if k.nbytes > left:
                    continue
                new[s.spec] = k
                left -= k.nbytes
            if set(new) != set(current):
                eng.keys.swap(view.version, new)
            report[dataset] = {"version": view.version, "keys": [s.name for s in new],
                               "dropped": [s.name for s in current if s not in new]}
        for v in eng.keys.versions():
            if v not in live:
                eng.keys.swap(v, {})
        eng.release_drained()
        self.runs += 1
        return report

    # -- the thread ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="quarry-key-builder",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run soon rather than at the next interval (e.g. after a key was accepted)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.run_once()
                self.last_error = None
            except Exception as e:  # a failed build must not kill the service; report it
                self.last_error = f"{type(e).__name__}: {e}"

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
