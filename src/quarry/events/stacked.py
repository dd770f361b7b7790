"""The "stacked streams" wire format of the original snapshot service.

A message is a stack of sections. A section starts with a header line ``=====<label>``; each
of its body lines starts with a TAB, which is stripped on read. Resources are named with
spaces (``qplan raw``) where datasets use slashes (``qplan/raw``).
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = "====="


class Malformed(ValueError):
    """The message is not in the stacked-stream format; the text says why."""


@dataclass(frozen=True)
class Section:
    label: str
    lines: tuple[str, ...]


def parse(message: bytes) -> list[Section]:
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Malformed(f"message is not UTF-8 text (byte {e.start})") from None
    rows = text.split("\n")
    if rows and rows[-1] == "":
        rows.pop()  # a final newline ends the last line rather than starting another
    if not rows:
        raise Malformed("empty message")
    sections: list[Section] = []
    label: str | None = None
    body: list[str] = []
    for n, row in enumerate(rows, 1):
        if row.startswith(HEADER):
            if label is not None:
                sections.append(Section(label, tuple(body)))
            label, body = row[len(HEADER):].rstrip("\r"), []
        elif row.startswith("\t"):
            if label is None:
                raise Malformed("a body line comes before any '=====' header")
            body.append(row[1:])
        else:
            raise Malformed(f"line {n} neither starts a section ('=====') nor a body line "
                            "(TAB)")
    assert label is not None
    sections.append(Section(label, tuple(body)))
    return sections


def encode(sections: list[Section]) -> bytes:
    out: list[str] = []
    for s in sections:
        out.append(HEADER + s.label)
        out.extend("\t" + line for line in s.lines)
    return "\n".join(out).encode("utf-8")


def resource_to_dataset(resource: str) -> str:
    """``qplan raw`` → ``qplan/raw``: words become path segments."""
    return "/".join(resource.split())


def dataset_to_resource(dataset: str) -> str:
    return dataset.replace("/", " ")


def lines_of(data: bytes) -> list[str]:
    """A version's data as the body lines of a section."""
    text = data.decode("utf-8", errors="replace")
    if not text:
        return []
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n")


def data_of(lines: tuple[str, ...]) -> bytes:
    """Body lines back to the data stored as a version: newline-terminated text."""
    if not lines:
        return b""
    return ("\n".join(lines) + "\n").encode("utf-8")
