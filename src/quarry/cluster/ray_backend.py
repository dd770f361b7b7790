"""Ray actors as shard workers, for many machines (install with ``pip install quarry[ray]``).

Each shard index has ``replicas`` long-lived actors (Roxie's agents per channel). An actor
opens the store at the same path on its node (shared storage, or a copy of the snapshots:
they are content-addressed) and keeps the shards it serves mapped while they are awake.
Actors are created with unlimited restarts and task retries: one killed under load comes back
and Ray runs its part of the query again, so the query does not fail.

Queries reach an actor over a direct connection it opens (:mod:`quarry.cluster.channel`):
about 0.1 ms instead of a Ray call's 1 ms. Ray's own call is the fallback whenever that
connection is down (the actor died, restarts, or sits where the dispatcher cannot connect),
and the way to the actor for everything else (wake, sleep, its address).
"""

from __future__ import annotations

import itertools
import pickle
import secrets
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from quarry.cluster.backends import Backend, Outcome
from quarry.cluster.channel import Call, Channel, ChannelDown, ChannelServer
from quarry.cluster.ops import Task, run_task
from quarry.cluster.shards import ShardSpec
from quarry.engine import Engine
from quarry.errors import MissingExtra, ShardUnavailable


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtra("the Ray backend needs Ray: pip install quarry[ray]") from None
    return ray


class ShardWorker:
    """The actor's state: one engine over the store, opened in the actor's process."""

    def __init__(self, root: str, authkey: bytes | None = None) -> None:
        self.engine = Engine(root, refresh_interval=3600.0)
        self.server: ChannelServer | None = None
        if authkey is not None:
            host: str = import_ray().util.get_node_ip_address()
            self.server = ChannelServer(host, authkey, self.run_packed)

    def channel(self) -> tuple[str, int] | None:
        """Where this actor takes queries directly, if it does."""
        return None if self.server is None else self.server.address

    def run(self, task: Task) -> Outcome:
        view = self.engine.records(task.dataset, task.version)
        return run_task(view, task), ()

    def run_packed(self, task: bytes) -> bytes:
        """``run`` with the task and the outcome as pickled bytes. Ray hands bytes through
        as they are, where a task or a partial of numpy arrays goes through its own
        serialisation on both sides: about 0.3 ms of a 1.5 ms call here."""
        return pickle.dumps(self.run(pickle.loads(task)), protocol=pickle.HIGHEST_PROTOCOL)

    def wake(self, dataset: str, version: str, chunks: tuple[int, ...]) -> int:
        view = self.engine.records(dataset, version)
        return sum(c.warm() for c in view.subset(chunks).chunks)

    def sleep(self, dataset: str, version: str, chunks: tuple[int, ...]) -> None:
        view = self.engine.records(dataset, version)
        for c in view.subset(chunks).chunks:
            c.drop_index()

    def pid(self) -> int:
        import os

        return os.getpid()


class _RayFuture(Future[Outcome]):
    """A future that waits with ``ray.get`` in the caller's thread: no callback thread and
    no condition variable between the answer and the dispatcher (about 0.1 ms a call)."""

    def __init__(self, ray: Any, ref: Any) -> None:
        super().__init__()
        self._ray = ray
        self._ref = ref

    def result(self, timeout: float | None = None) -> Outcome:
        return _ray_result(self._ray, self._ref, timeout)

    def cancel(self) -> bool:
        # Only a task still queued can be cancelled; one running finishes and is ignored.
        try:
            self._ray.cancel(self._ref)
        except Exception:
            return False
        return True


def _ray_result(ray: Any, ref: Any, timeout: float | None) -> Outcome:
    try:
        packed: bytes = ray.get(ref, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError from None
    value: Outcome = pickle.loads(packed)
    return value


class _Link:
    """How the dispatcher reaches one actor directly: its channel, or none while the
    actor's address is being (re)learnt through Ray."""

    def __init__(self, ray: Any, actor: Any, authkey: bytes) -> None:
        self.ray = ray
        self.actor = actor
        self.authkey = authkey
        self._channel: Channel | None = None
        self._asked: Any = None  # the pending ``actor.channel()`` call
        self._lock = threading.Lock()
        # Channels that failed in a row, and when to try one again: a restarted actor is
        # reached again at once, but a dispatcher that cannot connect to the actor's node (a
        # firewall) must not pay a connect timeout on every query.
        self._failures = 0
        self._retry_at = 0.0

    def channel(self) -> Channel | None:
        """The open channel, or None without waiting (Ray calls serve meanwhile)."""
        ch = self._channel
        if ch is not None:
            return ch
        with self._lock:
            if self._channel is not None:
                return self._channel
            if time.monotonic() < self._retry_at:
                return None
            if self._asked is None:
                self._asked = self.actor.channel.remote()
            ready, _ = self.ray.wait([self._asked], timeout=0)
            if ready:
                asked, self._asked = self._asked, None
                try:
                    address = self.ray.get(asked)
                except Exception:
                    return None  # the actor died again: ask anew next time
                self._open(address)
            return self._channel

    def learn(self) -> None:
        """Wait for the actor's address (at start, when the actor is known to be up)."""
        address = self.ray.get(self.actor.channel.remote())
        with self._lock:
            self._open(address)

    def _open(self, address: tuple[str, int] | None) -> None:
        # Under the lock: a channel to the address the actor gave, unless one is open.
        if address is not None and self._channel is None:
            self._channel = Channel((str(address[0]), int(address[1])), self.authkey)

    def worked(self) -> None:
        self._failures = 0

    def down(self, ch: Channel) -> None:
        with self._lock:
            if self._channel is ch:
                self._channel = None
                self._failures += 1
                if self._failures > 1:
                    self._retry_at = time.monotonic() + min(60.0, 0.25 * 2 ** self._failures)
        ch.close()

    def close(self) -> None:
        with self._lock:
            ch, self._channel = self._channel, None
        if ch is not None:
            ch.close()


class _DirectFuture(Future[Outcome]):
    """A task sent over the actor's channel; if the channel fails, the same task goes
    through Ray, which waits for a restarted actor."""

    def __init__(self, backend: RayBackend, link: _Link, channel: Channel, call: Call,
                 packed: bytes) -> None:
        super().__init__()
        self._backend = backend
        self._link = link
        self._channel = channel
        self._call = call
        self._packed = packed

    def result(self, timeout: float | None = None) -> Outcome:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            value: Outcome = pickle.loads(self._call.result(timeout))
            self._link.worked()
            return value
        except ChannelDown:
            self._link.down(self._channel)
        ray = self._backend.ray
        ref = self._link.actor.run_packed.remote(self._packed)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return _ray_result(ray, ref, left)

    def cancel(self) -> bool:
        self._call.cancel()
        return True


class RayBackend(Backend):
    name = "ray"
    retryable = (ShardUnavailable,)

    def __init__(self, root: Path | str, shards: int, *, replicas: int = 1,
                 address: str | None = None, num_cpus: int | None = None,
                 direct: bool = True) -> None:
        ray = import_ray()
        self.ray = ray
        if not ray.is_initialized():
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        self.root = str(Path(root).resolve())
        self.n = shards
        self.replica_count = max(1, replicas)
        # num_cpus=0: actors mostly wait on I/O and numpy; they must not hold a CPU each, or a
        # small cluster could not place them all.
        actor_cls = ray.remote(ShardWorker).options(max_restarts=-1, max_task_retries=-1,
                                                    num_cpus=0)
        # direct=False: every query is a Ray call (slower; for networks where the dispatcher
        # cannot open connections to the actors' nodes).
        self.direct = direct
        authkey = secrets.token_bytes(32) if direct else None
        self.actors: list[list[Any]] = [
            [actor_cls.remote(self.root, authkey) for _ in range(self.replica_count)]
            for _ in range(shards)]
        self._links: list[list[_Link]] = []
        if authkey is not None:
            self._links = [[_Link(ray, a, authkey) for a in group] for group in self.actors]
        self._rr = itertools.count()
        self._lock = threading.Lock()

    def shard_count(self, default: int) -> int:
        return self.n

    def start(self) -> None:
        """Wait until every actor is up (and its channel known)."""
        self.ray.get([a.pid.remote() for group in self.actors for a in group])
        for links in self._links:
            for link in links:
                link.learn()

    def submit(self, spec: ShardSpec, task: Task, attempt: int) -> Future[Outcome]:
        group = self.actors[spec.index % self.n]
        with self._lock:
            i = next(self._rr) if attempt == 0 else attempt
        actor = group[i % len(group)]
        packed = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        if self._links:
            link = self._links[spec.index % self.n][i % len(group)]
            ch = link.channel()
            if ch is not None:
                try:
                    return _DirectFuture(self, link, ch, ch.send(packed), packed)
                except ChannelDown:
                    link.down(ch)
        return _RayFuture(self.ray, actor.run_packed.remote(packed))

    def wake(self, spec: ShardSpec) -> None:
        group = self.actors[spec.index % self.n]
        self.ray.get([a.wake.remote(spec.dataset, spec.version, spec.chunks) for a in group])

    def sleep(self, spec: ShardSpec) -> None:
        group = self.actors[spec.index % self.n]
        self.ray.get([a.sleep.remote(spec.dataset, spec.version, spec.chunks) for a in group])

    def replicas(self, spec: ShardSpec) -> list[dict[str, Any]]:
        group = self.actors[spec.index % self.n]
        return [{"actor": a._actor_id.hex()[:12]} for a in group]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "actors": self.n * self.replica_count,
                "replicas": self.replica_count,
                "transport": "direct connections" if self.direct else "ray calls"}

    def close(self) -> None:
        for links in self._links:
            for link in links:
                link.close()
        self._links = []
        for group in self.actors:
            for a in group:
                self.ray.kill(a, no_restart=True)
        self.actors = []
