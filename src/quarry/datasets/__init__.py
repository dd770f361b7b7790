"""Dataset kinds: how a snapshot's blobs are ingested and read."""
