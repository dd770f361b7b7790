"""The data folder: content-addressed blobs, immutable manifests and movable refs."""

from quarry.store.blobs import BlobStore, BlobWriter
from quarry.store.manifest import LinkedFile, Part, Snapshot
from quarry.store.store import CommitResult, Store

__all__ = ["BlobStore", "BlobWriter", "CommitResult", "LinkedFile", "Part", "Snapshot", "Store"]
