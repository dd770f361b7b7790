"""Range splitting, page validation, the rate limiter and the mock's page source."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quarry.connectors.mockpages import PageSource
from quarry.connectors.pages import parse_page
from quarry.connectors.ranges import split
from quarry.connectors.ratelimit import RateLimiter
from quarry.errors import BadRequest, BadUpstream
from tests.support import FIXTURES

PAGES = FIXTURES / "foodstats"


@given(st.integers(0, 10**12), st.integers(0, 10_000), st.integers(1, 64))
def test_ranges_cover_each_id_once(begin: int, size: int, n: int) -> None:
    ranges = split(begin, begin + size, n)
    assert ranges[0].begin == begin and ranges[-1].end == begin + size
    for a, b in itertools.pairwise(ranges):
        assert a.end == b.begin
    sizes = [r.size or 0 for r in ranges]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == size


@pytest.mark.parametrize("raw, message", [
    (b"<html>", "not JSON"),
    (b"[]", "expected a JSON object"),
    (b'{"response": []}', "no meta.next_offset"),
    (b'{"meta": {"next_offset": "x"}, "response": []}', "non-negative integer or null"),
    (b'{"meta": {"next_offset": null}}', "no response list"),
    (b'{"meta": {"next_offset": null}, "response": [{"food_id": 1}]}', "no integer 'id'"),
])
def test_bad_pages_are_clear(raw: bytes, message: str) -> None:
    with pytest.raises(BadUpstream, match=message):
        parse_page(raw, "test")


def test_pages_are_sorted_by_id() -> None:
    page = parse_page(b'{"meta": {"next_offset": 9}, "response": [{"id": 5}, {"id": 3}]}', "t")
    assert page.ids == [3, 5] and page.items == [{"id": 3}, {"id": 5}]


def test_rate_limiter_spaces_requests() -> None:
    async def go() -> float:
        lim = RateLimiter(200.0)
        t0 = time.monotonic()
        await asyncio.gather(*(lim.acquire() for _ in range(60)))
        return time.monotonic() - t0

    elapsed = asyncio.run(go())
    # Never faster than the rate; the upper bound is loose for a busy machine.
    assert 59 / 200 * 0.95 <= elapsed < 59 / 200 + 1.0


def test_canned_pages_replay_and_slice() -> None:
    src = PageSource.from_dir(PAGES)
    assert len(src) == 2000  # end.json repeats 20.json; test.json's ids are already served
    first = orjson.loads((PAGES / "1.json").read_bytes())
    again = orjson.loads(src.page(0, 100))
    assert again["response"] == first["response"]
    assert again["meta"]["next_offset"] == first["meta"]["next_offset"]
    page3 = orjson.loads((PAGES / "3.json").read_bytes())
    replay = orjson.loads(src.page(page3["meta"]["offset"], 100))
    assert replay["response"] == page3["response"]
    mid = orjson.loads(src.page(658330700, 3))
    assert [x["id"] for x in mid["response"]] == [658330704, 658330705, 658330706]
    last = orjson.loads(src.page(658332803, 100))
    assert last["meta"]["next_offset"] is None and len(last["response"]) == 1


def test_bad_canned_pages_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match=r"holds no \*.json pages"):
        PageSource.from_dir(tmp_path)
    (tmp_path / "1.json").write_text('{"meta": {}, "response": []}')
    with pytest.raises(BadRequest, match=r"1.json: no meta.next_offset"):
        PageSource.from_dir(tmp_path)


def test_one_process_at_a_time_per_fetch_job(tmp_path: Path) -> None:
    from quarry.connectors.checkpoint import Checkpoints
    from quarry.errors import Conflict
    from quarry.store import Store

    store = Store(tmp_path / "d")
    a = Checkpoints(store, "food", "api", {"url": "http://x/"})
    b = Checkpoints(store, "food", "api", {"url": "http://x/"})
    a.start()
    with pytest.raises(Conflict, match="another process is running this fetch"):
        b.start()
    a.release()
    b.start()
    b.clear()
