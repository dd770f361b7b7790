"""The one conformance suite every backend passes: the same answers as a single process,
for every query type, awake or asleep, paged or not."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from quarry.cluster import Dispatcher
from quarry.datasets.records import RecordsView
from quarry.query import iplog
from quarry.query.model import (
    Cursor,
    DistinctQuery,
    FindQuery,
    MembershipQuery,
    VisitsQuery,
    Window,
)
from tests.cluster.conftest import T0


def _ips(view: RecordsView, n: int, seed: int) -> tuple[bytes, ...]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c = view.chunks[rng.randrange(len(view.chunks))]
        out.append(c.ip[rng.randrange(len(c.ts))].tobytes())
    out.append(bytes(15) + b"\x07")  # an address that never visited
    return tuple(dict.fromkeys(out))


WINDOWS = [Window(), Window(T0 * 10**6, (T0 + 3_600) * 10**6),
           Window((T0 + 30_000) * 10**6, (T0 + 60_000) * 10**6), Window((T0 - 100) * 10**6, None),
           Window(1, 2)]


def _hits(h: iplog.Hits) -> tuple[list[int], list[int], list[int], list[str]]:
    return h.ts.tolist(), h.chunk.tolist(), h.row.tolist(), h.ip_list()


def check_all(d: Dispatcher, view: RecordsView) -> None:
    for seed, n in ((1, 1), (2, 3), (3, 40)):
        ips = _ips(view, n, seed)
        for w in WINDOWS:
            for limit in (1, 7, 10_000):
                q = FindQuery(ips, w, limit)
                want = iplog.find_page(view, q)
                got = d.run(view, q)
                assert not got.partial
                assert _hits(got.result.hits) == _hits(want.hits)
                assert got.result.next_cursor == want.next_cursor
            q2 = MembershipQuery(ips, w)
            assert d.run(view, q2).result.tolist() == iplog.membership(view, q2).tolist()
            for bucket in (None, 600):
                q3 = VisitsQuery(ips[0], w, 5, bucket)
                want_v, got_v = iplog.visits(view, q3), d.run(view, q3).result
                assert (got_v.count, got_v.first_us, got_v.last_us) == (
                    want_v.count, want_v.first_us, want_v.last_us)
                assert got_v.times_us.tolist() == want_v.times_us.tolist()
                if bucket:
                    assert [x.tolist() for x in got_v.buckets] == [
                        x.tolist() for x in want_v.buckets]
    for w in WINDOWS[:3]:
        for order in ("count", "ip"):
            for offset, limit in ((0, 10), (5, 3), (0, 100_000)):
                q4 = DistinctQuery(w, limit, offset, order)  # type: ignore[arg-type]
                want_d, got_d = iplog.distinct(view, q4), d.run(view, q4).result
                assert (got_d.distinct, got_d.rows) == (want_d.distinct, want_d.rows)
                assert got_d.ips.tobytes() == want_d.ips.tobytes()
                assert got_d.counts.tolist() == want_d.counts.tolist()


def test_same_answers_as_one_process(dispatcher: Dispatcher, view: RecordsView) -> None:
    check_all(dispatcher, view)


def test_same_answers_asleep(dispatcher: Dispatcher, view: RecordsView) -> None:
    ids = [s.id for s in dispatcher.layout(view)]
    for i in ids:
        assert dispatcher.sleep(i)["state"] == "asleep"
    try:
        check_all(dispatcher, view)
        states = {s["id"]: s["state"] for s in dispatcher.status()["shards"]}
        assert all(states[i] == "asleep" for i in ids)
    finally:
        for i in ids:
            assert dispatcher.wake(i)["state"] == "awake"


def test_paging_with_cursors_matches_one_pass(dispatcher: Dispatcher, view: RecordsView) -> None:
    ips = _ips(view, 30, 9)
    full = np.concatenate([h.ts for h in iplog.find_iter(view, FindQuery(ips))])
    q = FindQuery(ips, Window(), 97)
    got: list[np.ndarray] = []
    while True:
        page = dispatcher.run(view, q).result
        got.append(page.hits.ts)
        if page.next_cursor is None:
            break
        q = FindQuery(ips, Window(), 97, Cursor.decode(page.next_cursor))
    assert np.concatenate(got).tolist() == full.tolist()
    streamed = np.concatenate([h.ts for h in dispatcher.iter_find(view, FindQuery(ips), 50)])
    assert streamed.tolist() == full.tolist()


def test_shards_pruned_by_zone_maps(dispatcher: Dispatcher, view: RecordsView) -> None:
    specs = dispatcher.layout(view)
    assert len(specs) == dispatcher.shards
    narrow = Window((T0 + 80_000) * 10**6, (T0 + 80_001) * 10**6)
    a: Any = dispatcher.run(view, MembershipQuery(_ips(view, 2, 4), narrow))
    assert 1 <= a.shards < len(specs) and a.shards <= max(1, len(specs) // 2)
    assert dispatcher.run(view, MembershipQuery(_ips(view, 2, 4), Window(1, 2))).shards == 0


@pytest.mark.parametrize("shards", [1, 2, 5, 64])
def test_layout_covers_every_chunk_once_in_time_order(view: RecordsView, shards: int) -> None:
    from quarry.cluster import layout

    specs = layout(view, shards)
    assert len(specs) == min(shards, len(view.chunks))
    flat = [p for s in specs for p in s.chunks]
    assert sorted(flat) == sorted(c.position for c in view.chunks)
    starts = [s.ts_range[0] for s in specs]
    assert starts == sorted(starts)
    rows = [s.rows for s in specs]
    if shards <= 5:
        assert max(rows) <= 2.5 * (sum(rows) / len(rows))


STATS = [
    {"aggregates": ["count", "top_k:ip:5", "histogram:ts:3600", "distinct_count:ip", "min:ts",
                    "max:ts"]},
    {"aggregates": [{"op": "distinct_count", "field": "ip", "approx": True}, "group_count:ip"],
     "filters": [{"field": "ts", "op": "range", "value": [T0 + 1_000, T0 + 30_000]}]},
    {"aggregates": ["count"], "filters": [{"field": "ts", "op": "range",
                                           "value": [T0 - 100, T0 - 50]}]},
]


@pytest.mark.parametrize("doc", STATS)
def test_statistics_same_as_one_process(dispatcher: Dispatcher, view: RecordsView,
                                        doc: dict[str, Any]) -> None:
    from quarry.stats.dataset import dataset_stats
    from quarry.stats.request import StatsRequest

    req = StatsRequest.parse(doc)
    want = dataset_stats(dispatcher.engine, "logs", req, view.version)
    got = dispatcher.run(view, req)
    assert not got.partial
    assert got.result["results"] == want["results"]
    assert (got.result["rows_matched"], got.result["chunks"]) == (want["rows_matched"],
                                                                 want["chunks"])
