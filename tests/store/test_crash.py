"""A writer killed (SIGKILL) in the middle of a PUT, and writers in separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from quarry.datasets.kinds import put_bytes, read_data
from quarry.store import Store
from quarry.store.fsck import check

pytestmark = pytest.mark.slow

SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from quarry.datasets.kinds import get_kind, WriteOptions
    from quarry.store import Store
    store = Store(sys.argv[1])
    w = get_kind(sys.argv[2]).writer(store, "victim", WriteOptions(message="never"))
    for i in range(10_000):
        w.write(b"new line %d\\n" % i)
        if i == 100:
            print("writing", flush=True)
        time.sleep(0.001)
    w.commit()
""")


@pytest.mark.parametrize("kind", ["lines", "document"])
def test_sigkill_mid_put_leaves_previous_version(store: Store, kind: str) -> None:
    before = put_bytes(store, "victim", b"old data\n", kind=kind)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(store.root), kind],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    fresh = Store(store.root)
    assert fresh.require_head("victim") == before.version
    assert len(fresh.history("victim")) == 1
    assert read_data(fresh, fresh.snapshot(before.version)).read_all() == b"old data\n"
    report = check(fresh)
    assert report.ok, report.problems
    assert report.temp_files >= 1  # the killed writer's temp files, removed by clean_tmp
    assert report.stale_temp_files == report.temp_files
    assert fresh.clean_tmp().count == report.temp_files
    assert check(fresh).temp_files == 0


WRITER = textwrap.dedent("""
    import sys
    from quarry.datasets.kinds import put_bytes
    from quarry.store import Store
    store = Store(sys.argv[1])
    for i in range(15):
        put_bytes(store, "shared", b"%s-%d" % (sys.argv[2].encode(), i))
""")


def test_concurrent_writer_processes_lose_nothing(store: Store) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store.root), str(k)])
             for k in range(4)]
    deadline = time.monotonic() + 120
    for p in procs:
        assert p.wait(max(1.0, deadline - time.monotonic())) == 0
    hist = store.history("shared")
    assert len(hist) == 60
    payloads = {read_data(store, s).read_all() for _, s in hist}
    assert payloads == {b"%d-%d" % (k, i) for k in range(4) for i in range(15)}
    assert check(store).ok
    # The journal holds one commit event per version, none torn.
    events, _ = store.journal.read(0)
    assert sorted(e.version for _, e in events if e.dataset == "shared") == sorted(
        v for v, _ in hist)
    assert os.path.getsize(store.journal.path) == store.journal.end()
