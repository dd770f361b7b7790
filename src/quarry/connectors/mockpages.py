"""The pages a development mock of the paged API serves: canned pages or synthetic items.

Canned pages (the original mock's ``1.json``, ``2.json``, …) are read once, their items merged
by id, and served sliced at whatever offset is asked: ``offset`` is an item id, a page holds
the ``limit`` items from the first id ``>= offset``, and ``meta.next_offset`` is the id after
the page (null at the end), as the real API does. A page requested at one of the canned
offsets thus comes back as it was recorded, and any other offset works too, which range
splitting needs. Pages are read in natural order (``2.json`` before ``10.json``); an id seen
on an earlier page keeps that page's item (the fixture's ``end.json`` repeats ``20.json``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from quarry.connectors.pages import parse_page
from quarry.errors import BadRequest, BadUpstream, NotFound

Render = Callable[[int, int], list[dict[str, Any]]]


def _natural(path: Path) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


class PageSource:
    def __init__(self, ids: np.ndarray, render: Render, description: str) -> None:
        self.ids = ids  # sorted, unique
        self.render = render
        self.description = description

    def __len__(self) -> int:
        return len(self.ids)

    def page(self, offset: int, limit: int) -> bytes:
        i = int(np.searchsorted(self.ids, offset, "left"))
        j = min(len(self.ids), i + limit)
        nxt = int(self.ids[j]) if j < len(self.ids) else None
        return orjson.dumps({"meta": {"code": 200, "limit": limit, "next_offset": nxt,
                                      "offset": offset},
                             "response": self.render(i, j)})

    @classmethod
    def from_dir(cls, folder: Path | str) -> PageSource:
        folder = Path(folder)
        if not folder.is_dir():
            raise NotFound(f"no folder of pages at {folder}")
        files = sorted(folder.glob("*.json"), key=_natural)
        if not files:
            raise BadRequest(f"{folder} holds no *.json pages")
        by_id: dict[int, dict[str, Any]] = {}
        for f in files:
            try:
                page = parse_page(f.read_bytes(), str(f))
            except BadUpstream as e:
                raise BadRequest(e.detail) from None
            for item, item_id in zip(page.items, page.ids, strict=True):
                by_id.setdefault(item_id, item)
        ids = np.array(sorted(by_id), dtype=np.int64)
        items = [by_id[int(i)] for i in ids]
        return cls(ids, lambda i, j: items[i:j],
                   f"{len(ids)} items from {len(files)} pages in {folder}")

    @classmethod
    def synthetic(cls, n: int, seed: int = 0, first_id: int = 1) -> PageSource:
        """``n`` items with ids from ``first_id`` (gaps of 1–3), ``food_id`` skewed over 10^5
        foods, ``food__category_id`` over 150 categories: like the real API's items."""
        rng = np.random.default_rng(seed)
        ids = first_id + np.cumsum(rng.integers(1, 4, n)) - 1
        food = (rng.zipf(1.2, n) % 100_000).astype(np.int64)
        category = (food * 7919 % 150).astype(np.int64)

        def render(i: int, j: int) -> list[dict[str, Any]]:
            return [{"food__category_id": int(c), "food_id": int(f), "id": int(k)}
                    for k, f, c in zip(ids[i:j], food[i:j], category[i:j], strict=True)]

        return cls(ids.astype(np.int64), render, f"{n} synthetic items (seed {seed})")
