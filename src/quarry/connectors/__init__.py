"""Connectors: fetch items from outside sources (a paged HTTP API) into datasets or stats."""
