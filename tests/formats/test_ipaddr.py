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
