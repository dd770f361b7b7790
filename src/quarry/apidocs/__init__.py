"""Swagger UI and ReDoc, vendored in ``vendor/`` (see its README.md): /docs and /redoc work
offline."""

from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
