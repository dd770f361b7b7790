"""Per-chunk and per-row query costs on a store made by bench/iplog.py, for docs/sizing.md.

    .venv/bin/python bench/iplog_costs.py [--data bench/out/iplog/data]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from quarry.engine import Engine
from quarry.formats.ipaddr import format_ips
from quarry.query import iplog
from quarry.query.model import (
    DistinctQuery,
    FindQuery,
    MembershipQuery,
    VisitsQuery,
    Window,
    ip_list,
)

REPO = Path(__file__).resolve().parent.parent


def best(fn: Callable[[], Any], n: int = 7) -> float:
    fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=REPO / "bench" / "out" / "iplog" / "data")
    args = ap.parse_args()
    view = Engine(args.data).records("iplog")
    chunks = len(view.chunks)
    rng = np.random.default_rng(7)
    c = view.chunks[0]
    ips = ip_list(format_ips(c.ip[rng.integers(0, len(c.ts), 100)]).to_pylist())
    everything = Window()
    t_member = best(lambda: iplog.membership(view, MembershipQuery(ips, everything)))
    one = ips[:1]
    t_visits = best(lambda: iplog.visits(view, VisitsQuery(one[0], everything)))
    rare = ip_list(["1.0.0.1"])
    t_rare = best(lambda: iplog.find_page(view, FindQuery(rare, everything)))
    first = view.chunks[0].info.ts_range[0]
    day = Window(first, first + 86_400_000_000 - 1)
    rows_day = sum(int(np.diff(ch.row_range(day.start_us, day.end_us))[0])
                   for ch in view.chunks)
    t_distinct = best(lambda: iplog.distinct(view, DistinctQuery(day, limit=100)), 3)
    print(f"chunks: {chunks}, rows: {view.rows:,}")
    print(f"membership of 100 IPs: {t_member / chunks * 1e6:.0f} µs per chunk")
    print(f"find of an absent IP: {t_rare / chunks * 1e6:.0f} µs per chunk")
    n_visits = iplog.visits(view, VisitsQuery(one[0], everything)).count
    print(f"visits of one IP (all chunks): {t_visits * 1e3:.2f} ms for {n_visits:,} visits, "
          f"{t_visits / max(1, n_visits) * 1e9:.0f} ns per visit")
    print(f"distinct IPs of one day: {t_distinct / rows_day * 1e9:.1f} ns per row "
          f"({rows_day:,} rows, {t_distinct * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
