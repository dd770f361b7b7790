"""Where shard tasks run: in this process (the default) or a local pool of processes.

Every backend takes a :class:`~quarry.cluster.ops.Task` for a shard and returns a future of
``(partial, missing)``; ``missing`` names shards a nested dispatcher could not reach. Ray
actors and remote Quarry servers are adapters in their own modules, imported only when asked
for, so the core never imports them.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quarry.cluster.ops import Task, run_task
from quarry.cluster.shards import ShardSpec
from quarry.engine import Engine
from quarry.errors import BadRequest, ShardUnavailable

Outcome = tuple[Any, tuple[str, ...]]


class Backend:
    name = "backend"
    # Retrying on this backend can help (a restarted worker, another replica).
    retryable: tuple[type[BaseException], ...] = (ShardUnavailable,)

    def shard_count(self, default: int) -> int:
        """How many shards a version is split into on this backend."""
        return default

    def submit(self, spec: ShardSpec, task: Task, attempt: int) -> Future[Outcome]:
        raise NotImplementedError

    def wake(self, spec: ShardSpec) -> None:
        """Bring the shard's indexes into memory where it runs."""

    def sleep(self, spec: ShardSpec) -> None:
        """Let go of the shard's indexes where it runs."""

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def replicas(self, spec: ShardSpec) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        pass


class InProcessBackend(Backend):
    """Runs each shard's task at once in the calling thread: the reference for the others."""

    name = "in-process"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def submit(self, spec: ShardSpec, task: Task, attempt: int) -> Future[Outcome]:
        fut: Future[Outcome] = Future()
        try:
            view = self.engine.records(task.dataset, task.version)
            fut.set_result((run_task(view, task), ()))
        except BaseException as e:
            fut.set_exception(e)
        return fut

    def wake(self, spec: ShardSpec) -> None:
        view = self.engine.records(spec.dataset, spec.version)
        for c in view.subset(spec.chunks).chunks:
            c.warm()

    def sleep(self, spec: ShardSpec) -> None:
        view = self.engine.records(spec.dataset, spec.version)
        for c in view.subset(spec.chunks).chunks:
            c.drop_index()


# Each pool worker process opens the store once; it lives as long as that process.
_worker_engine: Engine | None = None


def _init_worker(root: str) -> None:
    global _worker_engine
    _worker_engine = Engine(root, refresh_interval=3600.0)


def _run_in_worker(task: Task) -> Outcome:
    assert _worker_engine is not None, "pool worker started without its initializer"
    view = _worker_engine.records(task.dataset, task.version)
    return run_task(view, task), ()


def _warm_in_worker(dataset: str, version: str, chunks: tuple[int, ...]) -> int:
    assert _worker_engine is not None
    view = _worker_engine.records(dataset, version)
    return sum(c.warm() for c in view.subset(chunks).chunks)


class PoolBackend(Backend):
    """A pool of local processes. Each maps the same chunk files, so the data is shared
    through the page cache; only the task and the partial cross the process boundary."""

    name = "pool"
    retryable = (ShardUnavailable, BrokenProcessPool)

    def __init__(self, root: Path | str, workers: int) -> None:
        if workers < 1:
            raise BadRequest("a process pool needs at least one worker")
        self.root = str(root)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # forkserver: never fork a process that runs threads (servers do), and start
                # workers from a clean, small parent.
                method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() \
                    else "spawn"
                ctx = multiprocessing.get_context(method)
                self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                                 initializer=_init_worker, initargs=(self.root,))
            return self._pool

    def start(self) -> None:
        """Start every worker now rather than on the first query."""
        pool = self._executor()
        for f in [pool.submit(os.getpid) for _ in range(self.workers * 2)]:
            f.result()

    def submit(self, spec: ShardSpec, task: Task, attempt: int) -> Future[Outcome]:
        pool = self._executor()
        try:
            return pool.submit(_run_in_worker, task)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): start a new pool and let the dispatcher
            # retry the shard there.
            self._reset(pool)
            fut: Future[Outcome] = Future()
            fut.set_exception(ShardUnavailable(f"pool worker for shard {spec.id} died"))
            return fut

    def _reset(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def on_failure(self, exc: BaseException) -> None:
        if isinstance(exc, BrokenProcessPool) and self._pool is not None:
            self._reset(self._pool)

    def wake(self, spec: ShardSpec) -> None:
        # Any worker may serve the shard; the page cache they share is what stays warm.
        self._executor().submit(_warm_in_worker, spec.dataset, spec.version,
                                spec.chunks).result()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "workers": self.workers}

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class BackendSpec:
    """Which backend to run shards on, as chosen on the command line."""

    kind: str = "in-process"  # in-process | pool | ray | remote
    workers: int = 0  # pool processes
    ray_address: str | None = None  # None with kind=ray: start a local Ray cluster
    ray_cpus: int | None = None
    remote: tuple[tuple[str, ...], ...] = ()  # per shard, the URLs of its replicas
    replicas: int = 1
    timeout_s: float = 30.0

    @classmethod
    def choose(cls, *, workers: int = 0, ray: bool = False, ray_address: str | None = None,
               remote: tuple[str, ...] | list[str] = (), replicas: int = 1,
               timeout_s: float = 30.0) -> BackendSpec:
        """From CLI flags: ``remote`` items are shards, each ``URL[,URL...]`` of replicas."""
        chosen = [k for k, on in (("pool", workers > 0), ("ray", ray or bool(ray_address)),
                                  ("remote", bool(remote))) if on]
        if len(chosen) > 1:
            raise BadRequest(f"choose one shard backend, not {' and '.join(chosen)}")
        groups = tuple(tuple(u.strip().rstrip("/") for u in item.split(",") if u.strip())
                       for item in remote)
        return cls(kind=chosen[0] if chosen else "in-process", workers=workers,
                   ray_address=ray_address, remote=groups, replicas=replicas,
                   timeout_s=timeout_s)


def make_backend(spec: BackendSpec, engine: Engine, shards: int, *,
                 token: str | None = None) -> Backend:
    """The backend ``spec`` names; ``token`` is sent to remote servers (closed datasets)."""
    if spec.kind == "in-process":
        return InProcessBackend(engine)
    if spec.kind == "pool":
        return PoolBackend(engine.store.root, spec.workers)
    if spec.kind == "ray":
        from quarry.cluster.ray_backend import RayBackend

        return RayBackend(engine.store.root, shards, replicas=spec.replicas,
                          address=spec.ray_address, num_cpus=spec.ray_cpus)
    if spec.kind == "remote":
        from quarry.cluster.remote import RemoteBackend

        return RemoteBackend(spec.remote, timeout_s=spec.timeout_s, token=token)
    raise BadRequest(f"unknown shard backend {spec.kind!r}")
