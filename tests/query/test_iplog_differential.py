"""Hypothesis-generated logs and queries, answered by Quarry and by a plain Python oracle."""

import ipaddress
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.ipaddr import format_ip
from quarry.formats.textblocks import expand_sources
from quarry.query import iplog
from quarry.query.model import (
    DistinctQuery,
    FindQuery,
    MembershipQuery,
    VisitsQuery,
    ip_list,
    window,
)
from quarry.store import Store

POOL = ["10.0.0.1", "10.0.0.2", "192.168.1.1", "8.8.8.8", "255.255.255.255", "0.0.0.0",
        "2001:db8::1", "fe80::1", "::ffff:1.2.3.4"]
Row = tuple[str, str]

rows_st = st.lists(st.tuples(st.sampled_from(POOL),
                             st.integers(0, 400).map(lambda t: f"{1_400_000_000 + t / 8:.3f}")),
                   min_size=0, max_size=120)
bound = st.one_of(st.none(), st.integers(-10, 410).map(lambda t: 1_400_000_000 + t / 8))


def canon(ip: str) -> str:
    return format_ip(ipaddress.IPv6Address(ip).packed if ":" in ip
                     else b"\0" * 10 + b"\xff\xff" + ipaddress.IPv4Address(ip).packed)


def oracle(rows: list[Row], ips: list[str], s: float | None, e: float | None) -> list[Row]:
    want = {canon(i) for i in ips}
    hits = [(i, (float(t), n)) for n, (ip, t) in enumerate(rows) for i in [canon(ip)]
            if i in want and (s is None or float(t) >= s) and (e is None or float(t) <= e)]
    hits.sort(key=lambda x: x[1])
    return [(i, str(k[0])) for i, k in hits]


def build(rows: list[Row], split: int, chunk_rows: int) -> Engine:
    d = Path(tempfile.mkdtemp())
    store = Store(d / "data")
    for n, part in enumerate((rows[:split], rows[split:])):
        if not part:
            continue
        f = d / f"p{n}.csv"
        f.write_text("".join(f"{ip},{t}\n" for ip, t in part))
        ingest(store, "t", expand_sources([str(f)]), chunk_rows=chunk_rows, append=True)
    return Engine(store, refresh_interval=0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_st, data=st.data())
def test_queries_match_oracle(rows: list[Row], data: st.DataObject) -> None:
    if not rows:
        return
    split = data.draw(st.integers(0, len(rows)))
    chunk_rows = data.draw(st.integers(1, 40))
    ips = data.draw(st.lists(st.sampled_from([*POOL, "1.1.1.1"]), min_size=1, max_size=5))
    s, e = data.draw(bound), data.draw(bound)
    if s is not None and e is not None and s > e:
        s, e = e, s
    view = build(rows, split, chunk_rows).records("t")
    w = window(s, e)
    want = oracle(rows, ips, s, e)

    page = iplog.find_page(view, FindQuery(ip_list(ips), w))
    got = list(zip(page.hits.ip_list(), map(str, page.hits.seconds().tolist()),
                   strict=True))
    assert got == want

    # Paging with a cursor gives the same records, in the same order.
    limit = data.draw(st.integers(1, 7))
    paged: list[Row] = []
    cursor = None
    while True:
        from quarry.query.model import Cursor

        q = FindQuery(ip_list(ips), w, limit, Cursor.decode(cursor) if cursor else None)
        p = iplog.find_page(view, q)
        paged += list(zip(p.hits.ip_list(), map(str, p.hits.seconds().tolist()),
                          strict=True))
        cursor = p.next_cursor
        if cursor is None:
            break
    assert paged == want

    member = iplog.membership(view, MembershipQuery(ip_list(ips), w))
    seen = {i for i, _ in want}
    uniq = list(dict.fromkeys(canon(i) for i in ips))
    assert member.tolist() == [i in seen for i in uniq]

    one = ips[0]
    vis = iplog.visits(view, VisitsQuery(ip_list([one])[0], w, bucket_s=10))
    times = [float(t) for i, t in oracle(rows, [one], s, e)]
    assert vis.count == len(times)
    assert (vis.times_us / 1e6).tolist() == times
    assert vis.buckets is not None
    assert dict(zip(vis.buckets[0].tolist(), vis.buckets[1].tolist(), strict=True)) == dict(
        Counter(int(t // 10) * 10 for t in times))

    dist = iplog.distinct(view, DistinctQuery(w, limit=100))
    counts = Counter(canon(ip) for ip, t in rows
                     if (s is None or float(t) >= s) and (e is None or float(t) <= e))
    got_counts = {format_ip(bytes(b)): int(c) for b, c in zip(dist.ips, dist.counts,
                                                               strict=True)}
    assert got_counts == dict(counts)
    assert dist.distinct == len(counts) and dist.rows == sum(counts.values())
    assert dist.counts.tolist() == sorted(dist.counts.tolist(), reverse=True)
