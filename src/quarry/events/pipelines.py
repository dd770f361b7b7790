"""Pipelines: when a stage's source gets a new version, transform it and PUT the target.

Guarantees, all kept in a per-stage state file under ``<data>/pipelines/`` and checked
under a per-stage flock (so a ``quarry pipeline retry`` in another process cannot race the
running pipelines):

- a source version is transformed successfully at most once;
- a failed transform commits nothing, is recorded, and publishes a ``failed`` event on the
  target; it is retried on the source's next event, by ``retry``, or at start-up;
- a failure superseded by a newer source version that succeeded is dropped, so the target
  never moves back to data derived from an older source;
- versions committed while nothing was running are caught up at start-up (HEAD only).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from quarry.config import Stage
from quarry.datasets.kinds import WriteOptions, get_kind, kind_for_put, read_data
from quarry.errors import NotFound, QuarryError
from quarry.logs import LOGGER, fields
from quarry.store import Store
from quarry.store.atomic import atomic_write_bytes
from quarry.store.journal import COMMIT, FAILED, Event

KEEP_DONE = 10_000  # remembered successful source versions per stage
PIPE_BLOCK = 1 << 20


log = logging.getLogger(LOGGER + ".pipelines")


class TransformFailed(Exception):
    pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The shell's children (each command of a pipe) share its session: kill them all, or
    # one of them could keep stdout open and the read would never end.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Outcome:
    stage: str
    source_version: str
    status: str  # "done", "unchanged", "skipped", "failed"
    target_version: str | None = None
    error: str | None = None


class StageState:
    def __init__(self, folder: Path, tmp_dir: Path, stage: Stage) -> None:
        self.path = folder / f"{stage.name}.json"
        self.lock_path = folder / f"{stage.name}.lock"
        self.tmp_dir = tmp_dir
        self.done: list[str] = []
        self.failed: dict[str, dict[str, Any]] = {}

    @contextmanager
    def locked(self) -> Iterator[StageState]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._load()
            yield self
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load(self) -> None:
        try:
            d = orjson.loads(self.path.read_bytes())
            self.done, self.failed = list(d["done"]), dict(d["failed"])
        except FileNotFoundError:
            self.done, self.failed = [], {}

    def save(self) -> None:
        body = {"done": self.done[-KEEP_DONE:], "failed": self.failed}
        atomic_write_bytes(self.path, orjson.dumps(body, option=orjson.OPT_INDENT_2),
                           self.tmp_dir, durable=True)


def _call(spec: str, data: bytes) -> bytes:
    module_name, _, func_name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise TransformFailed(f"cannot load {spec}: {e}") from None
    try:
        out = func(data)
    except Exception as e:
        raise TransformFailed(f"{spec} raised {type(e).__name__}: {e}") from None
    if isinstance(out, str):
        return out.encode("utf-8")
    if isinstance(out, bytes | bytearray | memoryview):
        return bytes(out)
    raise TransformFailed(f"{spec} returned {type(out).__name__}; return bytes or str")


class Pipelines:
    def __init__(self, store: Store, stages: tuple[Stage, ...], *,
                 workdir: Path | None = None,
                 observer: Callable[[Outcome], None] | None = None) -> None:
        self.store = store
        self.observer = observer  # told every outcome of the background workers (metrics)
        self.stages = {s.name: s for s in stages}
        self.workdir = workdir
        self.folder = store.root / "pipelines"
        self.folder.mkdir(exist_ok=True)
        if workdir is not None and str(workdir) not in sys.path:
            # ``call: mymodule:fn`` finds modules next to the config file.
            sys.path.insert(0, str(workdir))
        self._queues: dict[str, queue.Queue[str | None]] = {}
        self._threads: list[threading.Thread] = []
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._stopping = threading.Event()

    def state(self, name: str) -> StageState:
        return StageState(self.folder, self.store.tmp_dir, self.stages[name])

    # -- running in the background ---------------------------------------------------------
    def start(self) -> None:
        for name in self.stages:
            q: queue.Queue[str | None] = queue.Queue()
            self._queues[name] = q
            t = threading.Thread(target=self._worker, args=(name, q), daemon=True,
                                 name=f"quarry-stage-{name}")
            t.start()
            self._threads.append(t)
        for name, stage in self.stages.items():
            head = self.store.head(stage.source)
            if head is not None:
                self._queues[name].put(head)

    def on_event(self, event: Event) -> None:
        """Bus callback: queue the new source version for each stage reading it."""
        if event.event != COMMIT or event.version is None:
            return
        for name, stage in self.stages.items():
            if stage.source == event.dataset and name in self._queues:
                self._queues[name].put(event.version)

    def _worker(self, name: str, q: queue.Queue[str | None]) -> None:
        while True:
            version = q.get()
            if version is None or self._stopping.is_set():
                return
            try:
                outcomes = [self.process(name, failed) for failed in
                            self._pending_failures(name) if failed != version]
                outcomes.append(self.process(name, version))
                if self.observer is not None:
                    for outcome in outcomes:
                        self.observer(outcome)
            except Exception as e:  # keep the stage alive whatever happens
                print(f"quarry pipeline {name}: {e!r}", file=sys.stderr)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for q in self._queues.values():
            q.put(None)
        for p in list(self._procs):
            _kill_group(p)  # a transform cut short commits nothing
        for t in self._threads:
            t.join(timeout)

    # -- one version -----------------------------------------------------------------------
    def _pending_failures(self, name: str) -> list[str]:
        with self.state(name).locked() as st:
            return sorted(st.failed, key=lambda v: st.failed[v].get("source_time", 0))

    def retry(self, name: str | None = None) -> list[Outcome]:
        """Run failed source versions again (all stages, or one), then any unprocessed HEAD."""
        names = [name] if name is not None else list(self.stages)
        out = []
        for n in names:
            if n not in self.stages:
                raise NotFound(f"no pipeline stage named {n!r}")
            for v in self._pending_failures(n):
                out.append(self.process(n, v))
            head = self.store.head(self.stages[n].source)
            if head is not None:
                out.append(self.process(n, head))
        return out

    def process(self, name: str, version: str) -> Outcome:
        stage = self.stages[name]
        with self.state(name).locked() as st:
            if version in st.done:
                return Outcome(name, version, "skipped")
            src = self.store.snapshot(version)
            try:
                res = self._transform_and_put(stage, version)
            except (TransformFailed, QuarryError, OSError) as e:
                why = e.detail if isinstance(e, QuarryError) else str(e)
                log.error("pipeline stage %s failed on %s@%s: %s", name, stage.source,
                          version[:12], why, extra=fields(
                              stage=name, dataset=stage.source, version=version,
                              target=stage.target))
                prev = st.failed.get(version, {})
                st.failed[version] = {"error": why, "time": time.time(),
                                      "source_time": src.created,
                                      "attempts": int(prev.get("attempts", 0)) + 1}
                st.save()
                self.store.publish(Event(stage.target, FAILED, None, None, None, extra={
                    "stage": name, "source": stage.source, "source_version": version,
                    "error": why}))
                return Outcome(name, version, "failed", error=why)
            st.done.append(version)
            log.info("pipeline stage %s: %s@%s -> %s@%s", name, stage.source, version[:12],
                     stage.target, res[0][:12], extra=fields(
                         stage=name, dataset=stage.source, version=version,
                         target=stage.target, target_version=res[0], created=res[1]))
            # Older failures are superseded by this newer success; retrying them would move
            # the target back to data derived from an older source.
            for v in [v for v, f in st.failed.items()
                      if v == version or f.get("source_time", 0) <= src.created]:
                del st.failed[v]
            st.save()
            return Outcome(name, version, "done" if res[1] else "unchanged", res[0])

    def _transform_and_put(self, stage: Stage, version: str) -> tuple[str, bool]:
        snap = self.store.snapshot(version)
        data = read_data(self.store, snap)
        target_kind = kind_for_put(self.store, stage.target, stage.kind, snap.kind)
        lineage = ({"dataset": stage.source, "version": version, "stage": stage.name},)
        opts = WriteOptions(message=f"{stage.name}: from {stage.source}@{version[:12]}",
                            lineage=lineage)
        writer = target_kind.writer(self.store, stage.target, opts)
        try:
            if stage.run is not None:
                self._run_shell(stage, version, data.path, data.iter_bytes, writer.write)
            else:
                assert stage.call is not None
                writer.write(_call(stage.call, data.read_all()))
        except BaseException:
            writer.abort()
            raise
        res = writer.commit()
        return res.version, res.created

    def _run_shell(self, stage: Stage, version: str, path: Path | None, blocks: Any,
                   sink: Any) -> None:
        env = {**os.environ, "QUARRY_SOURCE": stage.source, "QUARRY_SOURCE_VERSION": version,
               "QUARRY_TARGET": stage.target, "QUARRY_HOME": str(self.store.root)}
        with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as feed:
            if path is None:
                for block in blocks():
                    feed.write(block)
                feed.seek(0)
            stdin = open(path, "rb") if path is not None else feed  # noqa: SIM115
            try:
                proc = subprocess.Popen(stage.run or "", shell=True, stdin=stdin,
                                        stdout=subprocess.PIPE, stderr=err, env=env,
                                        cwd=self.workdir, start_new_session=True)
            finally:
                if stdin is not feed:
                    stdin.close()
            self._procs.add(proc)
            timer = threading.Timer(stage.timeout, _kill_group, (proc,))
            timer.start()
            try:
                assert proc.stdout is not None
                while block := proc.stdout.read(PIPE_BLOCK):
                    sink(block)
                rc = proc.wait()
            finally:
                timer.cancel()
                self._procs.discard(proc)
                if proc.poll() is None:
                    _kill_group(proc)
                    proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
            if rc != 0:
                err.seek(0)
                tail = err.read()[-2000:].decode("utf-8", "replace").strip()
                why = "timed out" if rc == -9 and not self._stopping.is_set() else f"exit {rc}"
                raise TransformFailed(f"`{stage.run}` failed ({why})" + (f": {tail}" if tail
                                                                         else ""))

    def status(self) -> list[dict[str, Any]]:
        out = []
        for name, stage in self.stages.items():
            with self.state(name).locked() as st:
                out.append({"stage": name, "source": stage.source, "target": stage.target,
                            "done": len(st.done), "last_done": st.done[-1] if st.done else None,
                            "failed": st.failed})
        return out


def check_stage_kinds(stages: tuple[Stage, ...]) -> None:
    for s in stages:
        if s.kind is not None:
            get_kind(s.kind)
