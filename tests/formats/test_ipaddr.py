import ipaddress

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quarry.errors import BadRequest
from quarry.formats.ipaddr import format_ips, keys32, parse_ip, parse_ips

v4 = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
v6 = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))


@given(st.lists(st.one_of(v4, v6), max_size=40))
def test_parse_format_roundtrip(texts: list[str]) -> None:
    ips, ok = parse_ips(pa.array(texts, pa.string()))
    assert ok.all()
    want = [str(ipaddress.ip_address(t)) for t in texts]
    # IPv4-mapped IPv6 text comes back as the IPv4 address it maps.
    want = [str(ipaddress.IPv6Address(w).ipv4_mapped) if ":" in w and
            ipaddress.IPv6Address(w).ipv4_mapped else w for w in want]
    assert format_ips(ips).to_pylist() == want
    for t, row in zip(texts, ips, strict=True):
        assert bytes(row) == parse_ip(t)


def test_invalid_addresses_are_flagged() -> None:
    bad = ["256.1.1.1", "1.2.3", "abc", "", "1.2.3.4.5", "::g", "1.2.3.-4"]
    _, ok = parse_ips(pa.array([*bad, "10.0.0.1"]))
    assert ok.tolist() == [False] * len(bad) + [True]
    with pytest.raises(BadRequest):
        parse_ip("300.1.2.3")


def test_leading_zeros_are_refused_as_ambiguous() -> None:
    texts = ["01.02.03.04", "10.0.0.010", "1.2.3.00", "::ffff:01.2.3.4", "0.0.0.0",
             "10.0.0.10"]
    _, ok = parse_ips(pa.array(texts))
    assert ok.tolist() == [False, False, False, False, True, True]
    _, ok = parse_ips(pa.array(texts[:3]))  # the all-dotted-quads fast path too
    assert ok.tolist() == [False, False, False]
    with pytest.raises(BadRequest):
        parse_ip("01.02.03.04")


def test_zone_ids_and_brackets_are_dropped() -> None:
    ips, ok = parse_ips(pa.array(["fe80::1%eth0", "[2001:db8::1]"]))
    assert ok.all()
    assert format_ips(ips).to_pylist() == ["fe80::1", "2001:db8::1"]


def test_keys_are_exact_for_ipv4_only() -> None:
    ips, _ = parse_ips(pa.array(["1.2.3.4", "2001:db8::1"]))
    keys, exact = keys32(ips)
    assert keys[0] == 0x01020304
    assert exact.tolist() == [True, False]
    assert keys.dtype == np.uint32


def _reference_v4(text: str) -> int | None:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and p.isascii() and 1 <= len(p) <= 3
                                  for p in parts):
        return None
    if any(len(p) > 1 and p.startswith("0") for p in parts):
        return None  # 010: octal to inet_aton, decimal to others; refused, as inet_pton does
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        return None
    return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]


# Dotted quads whose octets may carry leading zeros (01.02.03.04, 10.0.0.010).
padded_v4 = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 2)), min_size=4,
                     max_size=4).map(lambda os: ".".join("0" * z + str(o) for o, z in os))


@given(st.lists(st.one_of(v4, padded_v4, st.text("0123456789.", max_size=17),
                          st.text("0123456789.:ab -", max_size=8)), max_size=30))
def test_parse_ipv4_matches_reference(texts: list[str]) -> None:
    from quarry.formats.ipaddr import parse_ipv4

    values, ok = parse_ipv4(pa.array(texts, pa.string()))
    want = [_reference_v4(t) for t in texts]
    assert ok.tolist() == [w is not None for w in want]
    assert [int(v) for v, w in zip(values, want, strict=True) if w is not None] == [
        w for w in want if w is not None]
