"""IP addresses as 16 bytes (IPv4 mapped into IPv6), parsed and formatted column-wise.

Every address is stored as the 16 network-order bytes of its IPv6 form, IPv4 as
``::ffff:a.b.c.d``, so one fixed-width column holds both families and byte order is address
order. IPv4 (nearly all real traffic) is parsed by one vectorised regex; only IPv6 rows go
through :mod:`ipaddress`. Indexes use a 32-bit *key*: the IPv4 address itself, or a hash of an
IPv6 address (which then needs a check against the stored bytes, see ``exact``).
"""

from __future__ import annotations

import ipaddress
import socket

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.errors import BadRequest

IP_TYPE = pa.binary(16)
V4_PREFIX = 0xFFFF << 32  # the low 64 bits of ::ffff:0.0.0.0
# No leading zeros: ``010`` is 8 to inet_aton and 10 to others, so such an octet is refused
# (as inet_pton and ipaddress do) rather than read one way.
_OCTET = r"(?:0|[1-9][0-9]{0,2})"
_V4 = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"
_MIX = np.uint64(0x9E3779B97F4A7C15)


def string_parts(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The value bytes and the ``n + 1`` offsets of a string/binary array, zero copy."""
    _, offsets_buf, data_buf = strings.buffers()
    offs = np.frombuffer(offsets_buf, dtype=np.int32)[strings.offset:
                                                      strings.offset + len(strings) + 1]
    data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
            else np.zeros(0, dtype=np.uint8))
    return data, offs


def _split_v4(strings: pa.Array) -> np.ndarray | None:
    """uint32 addresses if every string is a dotted quad (decimal octets without leading
    zeros), else None (all or nothing)."""
    parts = pc.split_pattern(strings, ".")
    if not (pc.list_value_length(parts).to_numpy(zero_copy_only=False) == 4).all():
        return None
    flat = pc.list_flatten(parts)
    try:
        o = pc.cast(flat, pa.uint16()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # An octet written wider than its value has a leading zero (or a sign): refused.
    width = np.diff(string_parts(flat)[1])
    if (width != 1 + (o >= 10).view(np.uint8) + (o >= 100).view(np.uint8)).any():
        return None
    o = o.reshape(-1, 4).astype(np.uint32)
    if (o > 255).any():
        return None
    out: np.ndarray = (o[:, 0] << 24) | (o[:, 1] << 16) | (o[:, 2] << 8) | o[:, 3]
    return out


def parse_ipv4(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Dotted quads to uint32 and a validity mask.

    Arrow's split and cast kernels do the work, several times faster than a capturing regex;
    when a batch holds anything else (IPv6, ``-``, garbage), a regex match first picks out
    the rows that are dotted quads.
    """
    n = len(strings)
    if n == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=bool)
    strings = pc.fill_null(strings, "")
    fast = _split_v4(strings)
    if fast is not None:
        return fast, np.ones(n, dtype=bool)
    valid = pc.match_substring_regex(strings, _V4).to_numpy(zero_copy_only=False).copy()
    value = np.zeros(n, dtype=np.uint32)
    rows = np.flatnonzero(valid)
    if len(rows):
        sub = _split_v4(strings.take(pa.array(rows)))
        if sub is None:  # only octets over 255 can get here
            octets = pc.cast(pc.list_flatten(pc.split_pattern(
                strings.take(pa.array(rows)), ".")), pa.uint16()).to_numpy(
                zero_copy_only=False).reshape(-1, 4).astype(np.uint32)
            ok = (octets <= 255).all(axis=1)
            valid[rows[~ok]] = False
            rows, octets = rows[ok], octets[ok]
            sub = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
        value[rows] = sub
    return value, valid


def parse_ips(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Strings to an ``(n, 16)`` uint8 array and a validity mask (False: not an address)."""
    n = len(strings)
    out = np.zeros((n, 16), dtype=np.uint8)
    if n == 0:
        return out, np.zeros(0, dtype=bool)
    strings = strings.cast(pa.string())
    v4, valid4 = parse_ipv4(strings)
    out[:, 10] = 0xFF
    out[:, 11] = 0xFF
    out[:, 12:] = v4.astype(">u4").view(np.uint8).reshape(n, 4)
    valid = valid4.copy()
    # Only rows that may be IPv6 take the slow path.
    maybe6 = np.flatnonzero(~valid4)
    if len(maybe6):
        colon = pc.fill_null(pc.match_substring(strings.take(pa.array(maybe6)), ":"), False)
        for j in maybe6[colon.to_numpy(zero_copy_only=False)]:
            packed = _parse_v6(strings[int(j)].as_py())
            if packed is not None:
                out[j] = np.frombuffer(packed, dtype=np.uint8)
                valid[j] = True
    out[~valid] = 0
    return out, valid


def _parse_v6(text: str) -> bytes | None:
    text = text.strip("[]")
    text = text.split("%", 1)[0]  # a zone id (fe80::1%eth0) names a link, not an address
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        return None


_V4_PREFIX_BYTES = b"\0" * 10 + b"\xff\xff"


def parse_ip(text: str) -> bytes:
    """One address (IPv4 or IPv6) to its 16 bytes; BadRequest if it is not one.

    ``inet_pton`` (C, strict dotted quads) is some twenty times faster than :mod:`ipaddress`,
    which only handles what it refuses (zone ids, brackets, spaces).
    """
    try:
        if ":" not in text:
            return _V4_PREFIX_BYTES + socket.inet_pton(socket.AF_INET, text)
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        pass
    raw = text.strip()
    try:
        if ":" in raw:
            packed = _parse_v6(raw)
            if packed is None:
                raise ValueError
            return packed
        return _V4_PREFIX_BYTES + ipaddress.IPv4Address(raw).packed
    except ValueError:
        raise BadRequest(f"not an IP address: {text[:60]!r}") from None


def halves(ips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 16)`` uint8 (or ``n`` 16-byte items) to native uint64 high and low halves."""
    be = np.ascontiguousarray(ips).view(">u8").reshape(-1, 2)
    return be[:, 0].astype(np.uint64), be[:, 1].astype(np.uint64)


def keys32(ips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """32-bit index keys and whether each is exact (an IPv4 address rather than a hash)."""
    hi, lo = halves(ips)
    is_v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    with np.errstate(over="ignore"):
        mixed = (hi * _MIX) ^ lo
        mixed = (mixed ^ (mixed >> np.uint64(29))) * _MIX
    h32 = (mixed >> np.uint64(32)).astype(np.uint32)
    key = np.where(is_v4, (lo & np.uint64(0xFFFFFFFF)).astype(np.uint32), h32)
    return key.astype(np.uint32), is_v4


def format_ips(ips: np.ndarray) -> pa.Array:
    """``(n, 16)`` uint8 to address strings (dotted quad for IPv4, RFC 5952 for IPv6)."""
    n = len(ips)
    if n == 0:
        return pa.array([], pa.string())
    hi, lo = halves(ips)
    is_v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    octets = [pa.array(np.asarray(ips)[:, 12 + i]).cast(pa.string()) for i in range(4)]
    text = pc.binary_join_element_wise(*octets, ".")
    if is_v4.all():
        return text
    values = text.to_pylist()
    for i in np.flatnonzero(~is_v4):
        values[i] = str(ipaddress.IPv6Address(bytes(np.asarray(ips)[i])))
    return pa.array(values, pa.string())


def format_ip(packed: bytes) -> str:
    if packed[:12] == _V4_PREFIX_BYTES:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return str(ipaddress.IPv6Address(packed))  # RFC 5952 form, as format_ips gives
