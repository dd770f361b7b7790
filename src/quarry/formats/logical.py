"""Logical types — int, float, string, bool, timestamp, ip — over physical Arrow types.

Users, filters and schemas shown to users speak logical types only. What is stored varies by
format: access logs keep ``status`` as uint16, strings dictionary-encoded or plain, addresses
as 16 bytes and times as µs; tables keep int64, float64, dictionary strings. Manifests written
before logical types were recorded name the physical type as Arrow prints it
(``dictionary<values=string, indices=int32, ordered=0>``), so both forms map here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # of_text serves `quarry ls`, which loads no pyarrow
    import pyarrow as pa

LOGICAL = ("int", "float", "string", "bool", "timestamp", "ip")


def of_type(t: pa.DataType) -> str:
    """The logical type of a physical Arrow type (anything unknown reads as string)."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_fixed_size_binary(t) and t.byte_width == 16:
        return "ip"
    return "string"


def of_field(f: pa.Field) -> str:
    """A stored field's logical type: its ``quarry.type`` metadata, else from its Arrow type."""
    meta = (f.metadata or {}).get(b"quarry.type")
    if meta:
        return str(meta.decode())
    return of_type(f.type)


def of_text(text: str) -> str:
    """A manifest schema's type name (logical, or physical as Arrow prints it) as logical."""
    if text in LOGICAL:
        return text
    t = text.strip()
    if t.startswith("dictionary<"):
        t = t[len("dictionary<values="):].split(",", 1)[0]
    if t.startswith("timestamp"):
        return "timestamp"
    if t == "fixed_size_binary[16]":
        return "ip"
    if t == "bool":
        return "bool"
    if t.startswith(("int", "uint")):
        return "int"
    if t in ("halffloat", "float", "double") or t.startswith("float"):
        return "float"
    return "string"


def of_schema(schema: pa.Schema) -> dict[str, str]:
    return {f.name: of_field(f) for f in schema}
