"""Shards, the dispatcher and its backends: map/reduce of queries over chunks.

The core here (ops, shards, dispatcher, in-process and pool backends) imports no server,
CLI, ZeroMQ or Ray code; ``ray_backend`` and ``remote`` are adapters loaded on demand.
"""

from quarry.cluster import stats_op  # noqa: F401  (registers statistics as a shard query)
from quarry.cluster.backends import Backend, BackendSpec, InProcessBackend, PoolBackend
from quarry.cluster.dispatcher import Answer, Dispatcher, Policy
from quarry.cluster.ops import Op, Task, op_for, register
from quarry.cluster.shards import ShardSpec, layout

__all__ = [
           "Answer",
           "Backend",
           "BackendSpec",
           "Dispatcher",
           "InProcessBackend",
           "Op",
           "Policy",
           "PoolBackend",
           "ShardSpec",
           "Task",
           "layout",
           "op_for",
           "register",
]
