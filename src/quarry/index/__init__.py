"""Indexes built per snapshot and stored as blobs beside the data."""
