"""What a data folder holds, described from refs and manifests alone: no dataset is opened,
so listing a folder (``quarry ls``, ``quarry info``) loads neither numpy nor pyarrow."""

from __future__ import annotations

from typing import Any

from quarry.errors import QuarryError
from quarry.formats import logical
from quarry.store import Store

# Manifest meta entries too bulky for a dataset description (listed per chunk).
_HIDDEN_META = frozenset({"line_index", "chunks"})


def datasets(store: Store) -> list[dict[str, Any]]:
    out = []
    for name in store.datasets():
        try:
            out.append(describe(store, name))
        except QuarryError:  # not found, or damaged: fsck reports it, a list goes on
            continue
    return out


def describe(store: Store, dataset: str) -> dict[str, Any]:
    vid = store.require_head(dataset)
    snap = store.snapshot(vid)
    versions = len(store.history(dataset))
    d: dict[str, Any] = {
        "name": dataset, "kind": snap.kind, "version": vid, "created": snap.created,
        "size": snap.size, "sha256": snap.sha256, "versions": versions,
        "aliases": store.refs.aliases(dataset), "message": snap.message,
        "linked": snap.link is not None,
    }
    if snap.link is not None:
        # Metadata stays readable when a linked file changed (its reads answer 503).
        d["linked_file"] = snap.link.state()
    d.update({k: v for k, v in snap.meta.items() if k not in _HIDDEN_META})
    if "line_index" in snap.meta:
        d["line_index"] = snap.meta["line_index"]
    if "chunks" in snap.meta:
        d["chunks"] = len(snap.meta["chunks"])
    if snap.kind == "records" and isinstance(snap.meta.get("schema"), list):
        # Users see logical types, whatever Arrow types the chunks store.
        d["schema"] = [{**f, "type": logical.of_text(str(f.get("type", "")))}
                       for f in snap.meta["schema"]]
    return d
