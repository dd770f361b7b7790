"""The dispatcher: maps a query onto shards, runs it there and merges the partial answers.

Shards whose zone maps cannot match are not asked. A shard that fails is asked again (the
backend picks another replica, a restarted actor or a new pool) until its deadline; one that
still has no answer makes the whole query fail naming it, or — with the ``partial`` policy —
leaves an answer flagged as partial that lists what is missing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, TimeoutError
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from quarry.cluster.backends import Backend, InProcessBackend, Outcome
from quarry.cluster.ops import Task, op_for
from quarry.cluster.shards import Lifecycle, ShardSpec, layout
from quarry.datasets.records import RecordsView
from quarry.defaults import DEFAULT_SHARDS as DEFAULT_SHARDS  # re-exported
from quarry.engine import Engine
from quarry.errors import BadRequest, QuarryError, ShardTimeout, ShardUnavailable
from quarry.logs import LOGGER, fields

R = TypeVar("R")
OnError = Literal["fail", "partial"]


@dataclass(frozen=True)
class Policy:
    on_error: OnError = "fail"
    timeout_s: float = 30.0  # per shard, retries included
    retries: int = 3

    def __post_init__(self) -> None:
        if self.on_error not in ("fail", "partial"):
            raise BadRequest("on shard error must be fail or partial")
        if not self.timeout_s > 0:
            raise BadRequest("the shard timeout must be positive")


@dataclass(frozen=True)
class Answer(Generic[R]):
    result: R
    version: str
    shards: int  # shards asked
    missing: tuple[str, ...] = ()  # "<shard>: <why>" of shards without an answer

    @property
    def partial(self) -> bool:
        return bool(self.missing)


@dataclass(frozen=True)
class Gathered:
    partial: Any  # the combined partial of the shards that answered
    shards: int
    missing: tuple[str, ...]

log = logging.getLogger(LOGGER + ".shards")


class Dispatcher:
    def __init__(self, engine: Engine, backend: Backend | None = None, *,
                 shards: int = DEFAULT_SHARDS, policy: Policy | None = None,
                 memory_budget: int | None = None) -> None:
        if shards < 1:
            raise BadRequest("there must be at least one shard")
        self.engine = engine
        self.backend = backend or InProcessBackend(engine)
        self.shards = self.backend.shard_count(shards)
        self.policy = policy or Policy()
        self.lifecycle = Lifecycle(memory_budget)
        self._layouts: OrderedDict[str, tuple[ShardSpec, ...]] = OrderedDict()
        self._lock = threading.Lock()

    # -- layout -------------------------------------------------------------------------

    def layout(self, view: RecordsView) -> tuple[ShardSpec, ...]:
        specs = self._layouts.get(view.version)
        if specs is None:
            specs = layout(view, self.shards)
            with self._lock:
                self._layouts[view.version] = specs
                while len(self._layouts) > 64:
                    self._layouts.popitem(last=False)
            for s in specs:
                self.lifecycle.add(s)
        return specs

    def layout_of(self, dataset: str, version: str | None = None) -> tuple[ShardSpec, ...]:
        return self.layout(self.engine.records(dataset, version))

    # -- queries ------------------------------------------------------------------------

    def run(self, view: RecordsView, query: Any) -> Answer[Any]:
        """Answer ``query`` over every shard of ``view``'s version."""
        op = op_for(query)
        g = self.gather(view, query, None)
        if g.missing and self.policy.on_error == "fail":
            raise _failure(g.missing)
        return Answer(op.finish(query, g.partial, view.version), view.version, g.shards,
                      g.missing)

    def query(self, dataset: str, query: Any, version: str | None = None) -> Answer[Any]:
        return self.run(self.engine.records(dataset, version), query)

    def gather(self, view: RecordsView, query: Any,
               chunks: Sequence[int] | None) -> Gathered:
        """The combined partial of ``query`` over the shards (only ``chunks`` if given):
        what ``run`` finishes, and what a remote dispatcher sends back to its caller."""
        op = op_for(query)
        wanted = None if chunks is None else frozenset(chunks)
        work: list[tuple[ShardSpec, tuple[int, ...]]] = []
        for spec in self.layout(view):
            keep = tuple(p for p, info in zip(spec.chunks, spec.infos, strict=True)
                         if (wanted is None or p in wanted) and op.keeps(query, info))
            if keep:
                work.append((spec, keep))
        parts: list[Any] = []
        missing: list[str] = []
        running: list[_Call] = []
        for spec, keep in work:
            scan, slept = self.lifecycle.use(spec)
            for s in slept:
                self._quietly(self.backend.sleep, s)
            task = Task(view.dataset, view.version, keep, query, scan, spec.id)
            try:
                running.append(_Call(spec, task, self.backend, self.policy))
            except BaseException:
                self.lifecycle.done(spec, 0.0, False)
                self._finish_all(running)
                raise
        for call in running:
            try:
                value, nested_missing = call.result()
                parts.append(value)
                missing.extend(nested_missing)
                ok = True
            except QuarryError as e:
                if not isinstance(e, ShardUnavailable | ShardTimeout):
                    self._finish_all(running)
                    raise
                missing.append(f"{call.spec.id}: {e.detail}")
                ok = False
            self.lifecycle.done(call.spec, call.elapsed(), ok)
        return Gathered(op.combine(query, parts), len(work), tuple(missing))

    def _finish_all(self, calls: list[_Call]) -> None:
        for c in calls:
            if not c.finished:
                c.finished = True
                self.lifecycle.done(c.spec, c.elapsed(), False)

    def iter_find(self, view: RecordsView, query: Any, piece: int) -> Iterator[Any]:
        """A find query's records page by page (cursors), for streaming responses."""
        import dataclasses

        from quarry.query.model import Cursor

        q = dataclasses.replace(query, limit=piece)
        while True:
            answer = self.run(view, q)
            if answer.partial:
                # A stream cannot be flagged partial after its first records: it fails.
                raise _failure(answer.missing)
            page = answer.result
            if len(page.hits):
                yield page.hits
            if page.next_cursor is None:
                return
            q = dataclasses.replace(q, cursor=Cursor.decode(page.next_cursor))

    # -- lifecycle ----------------------------------------------------------------------

    def wake(self, shard_id: str) -> dict[str, Any]:
        st, slept = self.lifecycle.wake(shard_id)
        for s in slept:
            self._quietly(self.backend.sleep, s)
        self.backend.wake(st.spec)
        return st.to_json(time.time())

    def sleep(self, shard_id: str) -> dict[str, Any]:
        st = self.lifecycle.sleep(shard_id)
        self.backend.sleep(st.spec)
        return st.to_json(time.time())

    def status(self) -> dict[str, Any]:
        now = time.time()
        shards = []
        for st in self.lifecycle.states():
            d = st.to_json(now)
            d["replicas"] = self.backend.replicas(st.spec)
            shards.append(d)
        return {**self.backend.describe(), "shards_per_version": self.shards,
                "memory_budget": self.lifecycle.budget, "memory_bytes": self.lifecycle.memory(),
                "policy": {"on_error": self.policy.on_error, "timeout": self.policy.timeout_s,
                           "retries": self.policy.retries},
                "shards": shards}

    def close(self) -> None:
        self.backend.close()

    @staticmethod
    def _quietly(fn: Any, spec: ShardSpec) -> None:
        # Putting a shard to sleep only frees memory; a failure there must not fail a query.
        with contextlib.suppress(Exception):
            fn(spec)


class _Call:
    """One shard's part of a query: submitted at once, retried on failure until its deadline."""

    def __init__(self, spec: ShardSpec, task: Task, backend: Backend, policy: Policy) -> None:
        self.spec = spec
        self.task = task
        self.backend = backend
        self.policy = policy
        self.started = time.monotonic()
        self.deadline = self.started + policy.timeout_s
        self.attempt = 0
        self.finished = False
        self.future: Future[Outcome] = backend.submit(spec, task, 0)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _log(self, what: str, why: str) -> None:
        log.warning("shard %s of %s@%s %s (attempt %d): %s", self.task.shard or self.spec.index,
                    self.task.dataset, self.task.version[:12], what, self.attempt + 1, why,
                    extra=fields(dataset=self.task.dataset, version=self.task.version,
                                 shard=self.task.shard or str(self.spec.index),
                                 attempt=self.attempt + 1))

    def result(self) -> Outcome:
        errors: list[str] = []
        try:
            while True:
                left = self.deadline - time.monotonic()
                try:
                    return self.future.result(timeout=max(0.0, left))
                except TimeoutError:
                    self.future.cancel()
                    target = getattr(self.future, "quarry_target", None)
                    self._log("timed out", f"no answer within {self.policy.timeout_s:g}s")
                    raise ShardTimeout((f"{target}: " if target else "")
                                       + f"no answer within {self.policy.timeout_s:g}s"
                                       + (f" (after {'; '.join(errors)})" if errors else "")
                                       ) from None
                except Exception as e:
                    if not isinstance(e, self.backend.retryable) and \
                            not _is_retryable_name(e):
                        raise
                    errors.append(_describe(e))
                    self._log("failed", errors[-1])
                    on_failure = getattr(self.backend, "on_failure", None)
                    if on_failure is not None:
                        on_failure(e)
                    if self.attempt >= self.policy.retries or time.monotonic() >= self.deadline:
                        raise ShardUnavailable("; ".join(errors)) from None
                    self.attempt += 1
                    self.future = self.backend.submit(self.spec, self.task, self.attempt)
        finally:
            self.finished = True


def _is_retryable_name(e: BaseException) -> bool:
    # Ray's errors are matched by name so that the core never imports ray.
    return type(e).__name__ in ("RayActorError", "ActorDiedError", "ActorUnavailableError",
                                "WorkerCrashedError", "ObjectLostError")


def _describe(e: BaseException) -> str:
    if isinstance(e, QuarryError):
        return e.detail
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


def _failure(missing: tuple[str, ...]) -> QuarryError:
    detail = "no answer from " + "; ".join(missing)
    if all("no answer within" in m for m in missing):
        return ShardTimeout(detail, missing=list(missing))
    return ShardUnavailable(detail, missing=list(missing))
