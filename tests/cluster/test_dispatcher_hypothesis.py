"""Any number of shards, any query: map/merge answers equal a single pass (hypothesis)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarry.cluster import Dispatcher
from quarry.datasets.records import RecordsView
from quarry.engine import Engine
from quarry.query import iplog
from quarry.query.model import DistinctQuery, FindQuery, MembershipQuery, VisitsQuery, Window
from tests.cluster.conftest import T0

bound = st.one_of(st.none(), st.integers(-1_000, 90_000).map(lambda s: (T0 + s) * 1_000_000))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shards=st.integers(1, 9), picks=st.lists(st.integers(0, 10**9), min_size=1, max_size=6),
       lo=bound, hi=bound, limit=st.integers(1, 300), scan=st.booleans())
def test_map_merge_equals_one_pass(view: RecordsView, data_dir: Path, shards: int,
                                   picks: list[int],
                                   lo: int | None, hi: int | None, limit: int,
                                   scan: bool) -> None:
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    w = Window(lo, hi)
    ips = tuple(dict.fromkeys(
        view.chunks[p % len(view.chunks)].ip[p % 1000].tobytes() for p in picks))
    d = Dispatcher(Engine(data_dir), shards=shards)
    if scan:
        for s in d.layout(view):
            d.sleep(s.id)
    fq = FindQuery(ips, w, limit)
    got, want = d.run(view, fq).result, iplog.find_page(view, fq)
    assert (got.hits.ts.tolist(), got.hits.row.tolist(), got.next_cursor) == (
        want.hits.ts.tolist(), want.hits.row.tolist(), want.next_cursor)
    mq = MembershipQuery(ips, w)
    assert d.run(view, mq).result.tolist() == iplog.membership(view, mq).tolist()
    vq = VisitsQuery(ips[0], w, limit, 900)
    gv, wv = d.run(view, vq).result, iplog.visits(view, vq)
    assert (gv.count, gv.times_us.tolist(), [b.tolist() for b in gv.buckets]) == (
        wv.count, wv.times_us.tolist(), [b.tolist() for b in wv.buckets])
    dq = DistinctQuery(w, limit, picks[0] % 50, "count" if picks[0] % 2 else "ip")
    gd, wd = d.run(view, dq).result, iplog.distinct(view, dq)
    assert (gd.distinct, gd.counts.tolist(), gd.ips.tobytes()) == (
        wd.distinct, wd.counts.tolist(), wd.ips.tobytes())

