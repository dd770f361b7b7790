from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quarry.events.stacked import (
    Malformed,
    Section,
    data_of,
    dataset_to_resource,
    encode,
    lines_of,
    parse,
    resource_to_dataset,
)

line = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
               max_size=30)
label = line.filter(lambda s: not s.endswith("\r"))


@given(st.lists(st.builds(Section, label, st.lists(line, max_size=5).map(tuple)), min_size=1,
                max_size=4))
def test_encode_parse_round_trip(sections: list[Section]) -> None:
    assert parse(encode(sections)) == sections


@given(st.lists(line, max_size=10))
def test_lines_data_round_trip(rows: list[str]) -> None:
    assert lines_of(data_of(tuple(rows))) == rows


def test_parse_examples() -> None:
    assert parse(b"=====PUT qplan raw\n\ta\n\t\tb\n") == [Section("PUT qplan raw", ("a", "\tb"))]
    assert parse(b"=====GET x") == [Section("GET x", ())]


@pytest.mark.parametrize("bad", [b"", b"\n", b"hello", b"\tbody first", b"=====A\nno tab",
                                 b"\xff\xfe=====GET x"])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(Malformed):
        parse(bad)


def test_names() -> None:
    assert resource_to_dataset("qplan raw") == "qplan/raw"
    assert resource_to_dataset("  qplan   raw ") == "qplan/raw"
    assert dataset_to_resource("qplan/raw") == "qplan raw"
