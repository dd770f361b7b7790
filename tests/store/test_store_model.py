"""The store against a plain in-memory model: random puts, alias moves and gc runs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from quarry.datasets.kinds import put_bytes, read_data
from quarry.errors import NotFound
from quarry.store import Store
from quarry.store.fsck import check
from quarry.store.gc import collect

NAMES = st.sampled_from(["a", "b/c"])
PAYLOADS = st.binary(max_size=40) | st.sampled_from([b"same", b"x\ny\n"])
ALIASES = st.sampled_from(["prod", "old"])


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="quarry-model-"))
        # No fsyncs: the model checks logic, not power-loss durability; keeps it quick.
        self.store = Store(self.dir / "data", min_free_bytes=0, durable=False)
        # The model: per dataset, the versions (id, data) oldest first, and the aliases.
        self.versions: dict[str, list[tuple[str, bytes]]] = {}
        self.aliases: dict[str, dict[str, tuple[str, bytes]]] = {}
        self.removed: set[str] = set()

    def teardown(self) -> None:
        report = check(self.store)
        shutil.rmtree(self.dir, ignore_errors=True)
        assert report.ok, report.problems

    @rule(name=NAMES, payload=PAYLOADS)
    def put(self, name: str, payload: bytes) -> None:
        res = put_bytes(self.store, name, payload)
        hist = self.versions.setdefault(name, [])
        if hist and hist[-1][1] == payload:
            assert not res.created and res.version == hist[-1][0]
        else:
            assert res.created and res.snapshot.parent == (hist[-1][0] if hist else None)
            hist.append((res.version, payload))

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), alias=ALIASES)
    def move_alias(self, data: st.DataObject, alias: str) -> None:
        name = data.draw(st.sampled_from(sorted(self.versions)))
        live = [v for v in self.versions[name] if v[0] not in self.removed]
        target = data.draw(st.sampled_from(live))
        assert self.store.set_alias(name, alias, target[0][:8]) == target[0]
        self.aliases.setdefault(name, {})[alias] = target

    @rule(keep=st.integers(1, 3))
    def gc(self, keep: int) -> None:
        report = collect(self.store, keep=keep, apply=True, grace=0)
        kept: set[str] = set()
        for name, hist in self.versions.items():
            # The last versions reachable from HEAD: an earlier gc may have cut the history.
            reachable = []
            for v, _ in reversed(hist):
                if v in self.removed:
                    break
                reachable.append(v)
            kept.update(reachable[:keep])
            kept.update(v for v, _ in self.aliases.get(name, {}).values())
        every = {v for hist in self.versions.values() for v, _ in hist}
        assert set(report.dropped_versions) == every - kept - self.removed
        self.removed |= every - kept

    @invariant()
    def reads_match_the_model(self) -> None:
        assert self.store.datasets() == sorted(self.versions)
        for name, hist in self.versions.items():
            head, payload = hist[-1]
            assert self.store.resolve(name) == head
            assert read_data(self.store, self.store.snapshot(head)).read_all() == payload
            for alias, (vid, data) in self.aliases.get(name, {}).items():
                assert self.store.resolve(name, alias) == vid
                assert read_data(self.store, self.store.snapshot(vid)).read_all() == data
            for vid, data in hist:
                if vid in self.removed:
                    try:
                        self.store.snapshot(vid)
                        raise AssertionError(f"{vid[:8]} should be gone")
                    except NotFound:
                        pass
                else:
                    assert read_data(self.store, self.store.snapshot(vid)).read_all() == data
            listed = [v for v, _ in self.store.history(name)]
            expected = [v for v, _ in reversed(hist)]
            # History runs from HEAD back to the first version gc removed.
            cut = next((i for i, v in enumerate(expected) if v in self.removed), len(expected))
            assert listed == expected[:cut]


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
