"""Quarry: serve big, immutable, versioned datasets fast."""

from quarry.engine import Engine
from quarry.errors import QuarryError

__all__ = ["Engine", "QuarryError"]
__version__ = "0.1.0"
