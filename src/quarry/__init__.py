"""Quarry: serve big, immutable, versioned datasets fast."""

from typing import TYPE_CHECKING, Any

from quarry.engine import Engine
from quarry.errors import QuarryError

if TYPE_CHECKING:
    from quarry.client import Client

__all__ = ["Client", "Engine", "QuarryError"]


def __getattr__(name: str) -> Any:
    # The client pulls in httpx; load it only when asked for (quarry.Client).
    if name == "Client":
        from quarry.client import Client

        return Client
    raise AttributeError(name)
__version__ = "0.1.0"
