"""PUT of a new version, shared by the ASGI route (any body) and the hot path (small ones)."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from quarry.datasets.kinds import VersionWriter, WriteOptions, kind_for_put
from quarry.errors import BadRequest, InsufficientStorage
from quarry.store import CommitResult, Store
from quarry.store.refs import check_dataset_name
from quarry.versions import commit_json

DEFAULT_KIND = "document"
MAX_MESSAGE = 4096
# Small data is read and sent in one piece: cheaper than a file response's thread hops.
INLINE_BELOW = 1 << 20
# A small commit whose disk sync is quicker than this runs on the event loop: the two thread
# hand-offs of a worker thread cost more here (1 KB PUTs: ~700/s inline against ~400/s).
# The loop waits for less than the sync: the log's syncer overlaps it with the commit's
# files and answer (a measured fdatasync is 0.25-0.55 ms on this VM's disk).
INLINE_SYNC_BELOW = 1e-3


def open_writer(store: Store, name: str, kind: str | None, opts: WriteOptions) -> VersionWriter:
    """The writer of a new version of ``name`` (a name the caller has checked)."""
    return kind_for_put(store, name, kind, DEFAULT_KIND).writer(store, name, opts)


@contextmanager
def storage_errors(name: str) -> Iterator[None]:
    """The store's errors while a version is written, said in the API's terms."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise InsufficientStorage(f"the disk filled up while storing {name}; nothing "
                                      "was committed") from None
        raise
    except ValueError as e:  # e.g. an unknown line index mode
        raise BadRequest(str(e)) from None


def commits_inline(store: Store, size: int | None) -> bool:
    """Whether a PUT of ``size`` bytes may commit on the event loop."""
    return (size if size is not None else INLINE_BELOW) < INLINE_BELOW \
        and store.commit_seconds() < INLINE_SYNC_BELOW


def reply(name: str, res: CommitResult) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers of a PUT's answer."""
    headers = {"etag": f'"{res.version}"', "x-quarry-version": res.version,
               "location": f"/datasets/{name}/data?version={res.version}"}
    return (201 if res.created else 200), commit_json(res), headers


def put_small(store: Store, name: str, body: bytes, opts: WriteOptions,
              on_created: Callable[[CommitResult], None]
              ) -> tuple[int, dict[str, Any], dict[str, str], Callable[[], None]]:
    """The whole PUT of a body already in memory: write, commit, answer. The commit may
    still be on its way to disk: the last item returns once it is, and the caller must call
    it before it sends the answer (it prepares the answer meanwhile)."""
    check_dataset_name(name)
    with storage_errors(name):
        writer = open_writer(store, name, None, opts)
        try:
            writer.write(body)
        except BaseException:
            writer.abort()
            raise
        res = writer.commit(wait=False)
    if res.created:
        on_created(res)
    return (*reply(name, res), res.wait_durable)
