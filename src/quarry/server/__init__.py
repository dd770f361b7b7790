"""HTTP adapter: a management API (FastAPI) plus a hot path for line reads."""
