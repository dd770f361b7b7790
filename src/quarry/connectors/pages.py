"""One page of the paged API: ``{"meta": {"next_offset": <id|null>, ...}, "response": [...]}``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import orjson

from quarry.errors import BadUpstream


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]  # sorted by id
    ids: list[int]
    next_offset: int | None


def _bad(where: str, why: str) -> BadUpstream:
    return BadUpstream(f"bad page from {where}: {why}", where=where)


def parse_page(raw: bytes, where: str, id_field: str = "id") -> Page:
    """Validate a page; items come back sorted by id (the API's order is not relied upon)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _bad(where, f"not JSON ({e}); it starts {raw[:80]!r}") from None
    if not isinstance(doc, dict):
        raise _bad(where, f"expected a JSON object, got {type(doc).__name__}")
    meta = doc.get("meta")
    if not isinstance(meta, dict) or "next_offset" not in meta:
        raise _bad(where, "no meta.next_offset")
    nxt = meta["next_offset"]
    if nxt is not None and (isinstance(nxt, bool) or not isinstance(nxt, int) or nxt < 0):
        raise _bad(where, f"meta.next_offset must be a non-negative integer or null, got "
                          f"{nxt!r}")
    items = doc.get("response")
    if not isinstance(items, list):
        raise _bad(where, "no response list")
    ids: list[int] = []
    for i, item in enumerate(items):
        item_id = item.get(id_field) if isinstance(item, dict) else None
        if isinstance(item_id, bool) or not isinstance(item_id, int):
            raise _bad(where, f"response[{i}] has no integer {id_field!r}: {str(item)[:120]}")
        ids.append(item_id)
    if any(a >= b for a, b in itertools.pairwise(ids)):
        order = sorted(range(len(ids)), key=ids.__getitem__)
        items = [items[i] for i in order]
        ids = [ids[i] for i in order]
    return Page(items, ids, nxt)
