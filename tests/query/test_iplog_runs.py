"""The fast paths of IP/time finds: merging row runs, gathering index rows, many addresses,
and the Arrow answer, each against a plain-Python oracle."""

import ipaddress

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarry.index import ip_index
from quarry.query import iplog
from quarry.query.model import FindQuery, ip_list, window
from quarry.query.runs import DENSE, merge_runs, owner_dtype
from tests.query.test_iplog_differential import build, canon, oracle


def test_owner_dtype_holds_one_more_than_the_last_owner() -> None:
    assert owner_dtype(1) == np.uint8 and owner_dtype(255) == np.uint8
    assert owner_dtype(256) == np.uint16 and owner_dtype(65535) == np.uint16
    assert owner_dtype(65536) == np.uint32


@st.composite
def runs_st(draw: st.DrawFn) -> tuple[list[list[int]], list[int], int, int, int]:
    """Disjoint ascending runs of rows in ``[r0, r1)``, their owners, and the owner count."""
    r0 = draw(st.integers(0, 1 << 20))
    span = draw(st.integers(1, 300))
    n_owners = draw(st.sampled_from([3, 255, 256, 65535, 65536, 100_000]))
    k = draw(st.integers(1, min(12, n_owners)))
    rows = draw(st.lists(st.integers(r0, r0 + span - 1), unique=True, max_size=span))
    which = draw(st.lists(st.integers(0, k - 1), min_size=len(rows), max_size=len(rows)))
    runs = [sorted(r for r, w in zip(rows, which, strict=True) if w == i) for i in range(k)]
    owners = draw(st.lists(st.integers(0, n_owners - 1), min_size=k, max_size=k, unique=True))
    return runs, owners, n_owners, r0, r0 + span


@settings(max_examples=300, deadline=None)
@given(runs_st())
def test_merge_runs_matches_a_sort(case: tuple[list[list[int]], list[int], int, int, int]) -> None:
    runs, owners, n_owners, r0, r1 = case
    dt = owner_dtype(n_owners)
    rows = np.array([r for run in runs for r in run], dtype=np.uint32)
    own = np.array([o for run, o in zip(runs, owners, strict=True) for _ in run], dtype=dt)
    got_rows, got_own = merge_runs(rows, own, r0, r1, sum(1 for run in runs if run))
    want = sorted((r, o) for run, o in zip(runs, owners, strict=True) for r in run)
    assert got_rows.dtype == np.int64 and got_own.dtype == dt
    assert list(zip(got_rows.tolist(), got_own.tolist(), strict=True)) == want


def test_merge_runs_takes_both_paths() -> None:
    """The dense (slots) and sparse (sort) paths give the same order; sizes straddle DENSE."""
    rng = np.random.default_rng(1)
    for span in (DENSE * 40 - 1, DENSE * 40 + 1, DENSE * 4000):
        rows = rng.choice(span, 40, replace=False)
        own = rng.integers(0, 7, 40).astype(np.uint8)
        order = np.lexsort((rows, own))  # grouped by owner, rows ascending within each
        got_rows, got_own = merge_runs(rows[order].astype(np.uint32) + np.uint32(5), own[order],
                                       5, 5 + span, 7)
        want = np.argsort(rows)
        assert got_rows.tolist() == (rows[want] + 5).tolist()
        assert got_own.tolist() == own[want].tolist()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), n_keys=st.integers(1, 600), data=st.data())
def test_index_rows_gather_slices_and_vectorised(n: int, n_keys: int,
                                                 data: st.DataObject) -> None:
    """Up to 256 ranges are copied slice by slice, more in one gather: both match Python."""
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    v4 = rng.integers(0, 700, n).astype(np.uint32) + np.uint32(0x0A000000)
    ips = np.zeros((n, 16), dtype=np.uint8)
    ips[:, 10:12] = 0xFF
    ips[:, 12:] = v4.astype(">u4").view(np.uint8).reshape(-1, 4)
    comp, exact = ip_index.build(ips)
    idx = ip_index.IpIndex(comp, exact)
    keys = np.unique(rng.integers(0, 700, n_keys).astype(np.uint32) + np.uint32(0x0A000000))
    r0 = data.draw(st.integers(0, n))
    r1 = data.draw(st.integers(r0, n))
    lo, hi = idx.ranges(keys, r0, r1)
    want = [r for k in keys.tolist() for r in range(r0, r1) if int(v4[r]) == k]
    default = ip_index._SLICE_RANGES
    try:
        for limit in (0, 1, default):  # every path: one gather, one slice, slices
            ip_index._SLICE_RANGES = limit
            got = idx.rows(lo, hi)
            assert got.dtype == np.uint32
            assert got.tolist() == want
    finally:
        ip_index._SLICE_RANGES = default


POOL4 = [str(ipaddress.IPv4Address(0x0A000000 + i * 7919)) for i in range(400)]
POOL6 = ["2001:db8::1", "fe80::1", "::ffff:1.2.3.4"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_many_addresses_match_oracle(data: st.DataObject) -> None:
    """Hundreds of query addresses (two-byte owners, the vectorised gather), dense and sparse
    windows, IPv6 chunks: the index path, the scan path and the Arrow answer equal the oracle."""
    pool = POOL4 + (POOL6 if data.draw(st.booleans()) else [])
    n = data.draw(st.integers(1, 1500))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    ts = np.sort(rng.integers(0, 4000, n))
    hot = data.draw(st.sampled_from([1, 3, 40, len(pool)]))  # few: dense answers; many: sparse
    rows = [(pool[int(i)], f"{1_400_000_000 + t / 8:.3f}")
            for i, t in zip(rng.integers(0, hot, n), ts, strict=True)]
    # Sizes on both sides of 255 (one- and two-byte owners) and of 256 ranges.
    k = data.draw(st.sampled_from([1, 5, 255, 256, 400]))
    ips = [[*pool, "1.1.1.1"][int(i)] for i in rng.permutation(len(pool) + 1)[:k]]
    s = 1_400_000_000 + data.draw(st.integers(-10, 510))
    e = s + data.draw(st.integers(0, 520))
    split = data.draw(st.integers(0, n))
    view = build(rows, split, data.draw(st.sampled_from([50, 400, 5000]))).records("t")
    want = oracle(rows, ips, s, e)
    q = FindQuery(ip_list(ips), window(s, e), 1_000_000)
    for scan in (False, True):
        page = iplog.find_page(view, q, scan)
        got = list(zip(page.hits.ip_list(), map(str, page.hits.seconds().tolist()),
                       strict=True))
        assert got == want
    table = iplog.find_page(view, q).hits.to_arrow()
    assert table.schema.field("ip").type == pa.dictionary(pa.int32(), pa.string())
    assert [(i, str(t)) for i, t in zip(table.column("ip").to_pylist(),
                                        table.column("ts").to_pylist(), strict=True)] == want
    # The dictionary is the query's addresses, in query order.
    assert table.column("ip").chunk(0).dictionary.to_pylist() == list(
        dict.fromkeys(canon(i) for i in ips))
