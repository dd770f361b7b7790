"""Dataset names in URL paths: the ``{name:dataset}`` convertor that keeps the routes below a
dataset out of the ``/datasets/{name}`` catch-alls, and the patterns the OpenAPI description
gives names, aliases and line numbers (the server's own checks, written as JSON Schema)."""

from __future__ import annotations

from typing import Any

from starlette.convertors import Convertor, register_url_convertor

from quarry.datasets.lines import MAX_LINE_NUMBER
from quarry.store.refs import RESERVED_SEGMENTS

_RESERVED = "|".join(sorted(RESERVED_SEGMENTS))
# A path segment that is not a route's name ("lines", "find", ...): the lookahead stops at
# the segment's end, so "datafile" is a name while "data" is not.
_PLAIN_SEGMENT = rf"(?!(?:{_RESERVED})(?:/|$))[^/]*"


def has_sub_route(name: str) -> bool:
    """Whether a path below /datasets/ names a route under a dataset (``a/lines/3``) rather
    than a dataset: no dataset name has a reserved segment."""
    return any(seg in RESERVED_SEGMENTS for seg in name.split("/"))


class DatasetConvertor(Convertor[str]):
    """Like ``path``, but never across a reserved segment. Without it the catch-alls
    (``GET``/``PUT /datasets/{name}``) took ``PUT /datasets/a/lines/3`` as a PUT of dataset
    "a/lines/3" (a 400 for its name) instead of the 405 that a read-only route gets, and a
    405's ``Allow`` listed their methods on every path below a dataset."""

    regex = rf"{_PLAIN_SEGMENT}(?:/{_PLAIN_SEGMENT})*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("dataset", DatasetConvertor())

# The OpenAPI forms of store.refs' checks (DATASET_NAME, RESERVED_SEGMENTS, ALIAS_NAME) and
# of parse_line_number. Patterns are anchored (JSON Schema patterns search) and use no
# flags, so any ECMA or Python engine reads them alike.
_NAME_SEGMENT = rf"(?!(?:{_RESERVED})(?:/|$))(?![^/]*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}"
DATASET_NAME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": rf"^{_NAME_SEGMENT}(?:/{_NAME_SEGMENT}){{0,7}}$",
    "description": "Letters, digits, '.', '_', '-' in up to 8 segments separated by '/', "
                   "each starting with a letter or digit; no '..', and no segment that "
                   f"names a route ({', '.join(sorted(RESERVED_SEGMENTS))})",
    "examples": ["weblogs", "qplan/raw"],
}
ALIAS_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"^(?![Hh][Ee][Aa][Dd]$)[A-Za-z][A-Za-z0-9._-]{0,63}$",
    "description": "A letter, then letters, digits, '.', '_' or '-' (not HEAD, in any case)",
    "examples": ["prod"],
}


def line_number_schema(base: int) -> dict[str, Any]:
    """A line number as parse_line_number takes it: ASCII digits, ``base`` to 2^63-1."""
    return {
        "type": "integer", "minimum": base, "maximum": MAX_LINE_NUMBER,
        "description": f"Line number, counted from {base}",
    }
