"""The bundled pipeline example's Python step: totals per item of a conditioned CSV."""

from __future__ import annotations


def totals(data: bytes) -> str:
    """``item,qty`` lines → ``item,total`` lines, sorted by item. Malformed rows fail loudly:
    a failed transform commits nothing and is reported as a ``failed`` event."""
    sums: dict[str, int] = {}
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        item, sep, qty = line.partition(",")
        if not sep:
            raise ValueError(f"line {n} has no comma: {line[:60]!r}")
        sums[item] = sums.get(item, 0) + int(qty)
    return "".join(f"{item},{total}\n" for item, total in sorted(sums.items()))
