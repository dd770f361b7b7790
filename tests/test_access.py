"""The access policy: the one object that decides who may see and change what."""

from __future__ import annotations

from quarry.access import AccessPolicy, is_loopback


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    # An empty host listens on every address, so it is public, not loopback.
    assert not is_loopback("")


def test_writes_and_closed_reads() -> None:
    assert AccessPolicy(None, "").check("PUT", "/datasets/a", None) is not None
    local = AccessPolicy(None, "127.0.0.1")
    assert local.check("PUT", "/datasets/a", None) is None
    public = AccessPolicy(None, "0.0.0.0")
    denied = public.check("PUT", "/datasets/a", None)
    assert denied is not None and denied[0] == 401
    assert public.check("GET", "/datasets/a", None) is None
    assert public.check("POST", "/datasets/a/query", None) is None
    tok = AccessPolicy("s3cret", "0.0.0.0", closed=["private"],
                       write_posts=["/gc", r"/datasets/.+/keys"])
    ok, bad = b"Bearer s3cret", "Bearer nope"
    assert tok.check("PUT", "/datasets/a", ok) is None
    assert tok.check("PUT", "/datasets/a", bad) is not None
    assert tok.check("POST", "/gc", None) is not None
    assert tok.check("POST", "/datasets/a/b/keys", None) is not None
    assert tok.check("POST", "/datasets/a/keys/extra", None) is None  # whole-path match only
    assert tok.check("POST", "/datasets/a/query", None) is None
    assert tok.check("GET", "/datasets/private/lines/1", None) is not None
    assert tok.check("GET", "/datasets/private/lines/1", ok) is None
    assert tok.check("GET", "/datasets/privateer/lines/1", None) is None


def test_under_a_closed_name_is_closed() -> None:
    p = AccessPolicy("t", "127.0.0.1", closed=["vault"])
    anon, known = p.caller(None), p.caller("Bearer t")
    assert not p.may_read(anon, "vault") and not p.may_read(anon, "vault/sub")
    assert p.may_read(anon, "vaulted") and p.may_read(known, "vault/sub")
    assert p.read_denied(anon, "vault/sub/deeper") is not None
    assert p.visible(anon, ["a", "vault", "vault/sub", "vaulted"]) == ["a", "vaulted"]
    assert p.hidden(anon) == {"vault"} and p.hidden(known) == frozenset()


def test_closed_datasets_are_closed_to_writes_too() -> None:
    # A write's answer (its version id, an If-Match conflict) tells of the dataset too.
    p = AccessPolicy(None, "127.0.0.1", closed=["vault"])
    assert p.check("PUT", "/datasets/open", None) is None
    assert p.check("PUT", "/datasets/vault/sub", None) is not None


def test_non_ascii_credentials_are_refused_not_raised() -> None:
    # compare_digest raises TypeError on non-ASCII str: that was a 500 on every route that
    # checks the token.
    p = AccessPolicy("s3cret", "127.0.0.1", closed=["vault"])
    for header in ("Bearer s3crét", "Bearer \u00ff\u00fe", b"Bearer \xff\xfe\x80",
                   "Bearer \u20ac", b"\xff"):
        assert not p.caller(header).authorized
        assert p.check("GET", "/datasets/vault/lines/1", header) is not None
        assert p.check("PUT", "/datasets/a", header) is not None
    # A token of non-ASCII text works as its UTF-8 bytes.
    u = AccessPolicy("sécret", "127.0.0.1")
    assert u.caller("Bearer sécret".encode().decode("latin-1")).authorized
