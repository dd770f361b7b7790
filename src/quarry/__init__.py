"""Quarry: serve big, immutable, versioned datasets fast."""

from typing import TYPE_CHECKING, Any

from quarry.errors import QuarryError

if TYPE_CHECKING:
    from quarry.client import Client
    from quarry.engine import Engine

__all__ = ["Client", "Engine", "QuarryError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The engine pulls in numpy and pyarrow, the client httpx: load them only when asked
    # for, so that `import quarry.cli` (every CLI command) and `quarry.store` stay light.
    if name == "Engine":
        from quarry.engine import Engine

        return Engine
    if name == "Client":
        from quarry.client import Client

        return Client
    raise AttributeError(name)
