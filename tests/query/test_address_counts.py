"""Distinct-address partials: the compact form they cross process boundaries in."""

import pickle

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from quarry.query.iplog import V4_LO, AddressCounts

v4 = st.integers(0, (1 << 32) - 1).map(lambda k: (0, int(V4_LO) | k))
v6 = st.tuples(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1))
count = st.integers(1, (1 << 40))


@given(st.lists(st.tuples(st.one_of(v4, v6), count), max_size=50))
def test_pickle_round_trip_keeps_every_address_and_count(items: list) -> None:
    hi = np.array([a[0] for a, _ in items], dtype=np.uint64)
    lo = np.array([a[1] for a, _ in items], dtype=np.uint64)
    cnt = np.array([c for _, c in items], dtype=np.int64)
    back = pickle.loads(pickle.dumps(AddressCounts(hi, lo, cnt)))
    assert back.hi.dtype == np.uint64 and back.lo.dtype == np.uint64
    assert back.counts.dtype == np.int64
    assert back.hi.tolist() == hi.tolist()
    assert back.lo.tolist() == lo.tolist()
    assert back.counts.tolist() == cnt.tolist()


def test_ipv4_partials_travel_in_a_third_of_the_bytes() -> None:
    n = 10_000
    keys = np.arange(n, dtype=np.uint64)
    ac = AddressCounts(np.zeros(n, dtype=np.uint64), V4_LO | keys, np.ones(n, dtype=np.int64))
    assert len(pickle.dumps(ac)) < 9 * n  # 4-byte address + 4-byte count, plus framing
