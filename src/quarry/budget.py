"""Memory budgets: bytes from an environment variable (``512M``, ``2G``) or a share of RAM."""

from __future__ import annotations

import os

from quarry.errors import BadRequest

_SCALE = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def ram_share(fraction: float, fallback: int = 1 << 30) -> int:
    """``fraction`` of physical memory; ``fallback`` where the system does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * fraction)
    except (ValueError, OSError, AttributeError):
        return fallback


def budget_from_env(name: str, default: int) -> int:
    """Bytes from environment variable ``name`` (a number with an optional K/M/G suffix),
    else ``default``; a clear error when it is not a size."""
    env = os.environ.get(name, "").strip().upper()
    if not env:
        return default
    try:
        return int(float(env.rstrip("KMG")) * _SCALE.get(env[-1], 1))
    except ValueError:
        raise BadRequest(f"{name} must be bytes (or 512M, 2G): {env!r}") from None
