"""Key scoring in the style of Roxie's segment monitors: perfect matches, ties, wild fields."""

from quarry.index.keys import KeySpec
from quarry.query.planner import choose, score_key
from quarry.query.predicate import Contains, In, Not, Prefix, Range, Regex

TYPES = {"a": "int", "b": "string", "c": "ip", "d": "timestamp", "e": "float"}


def eq(f: str) -> In:
    return In(f, (1,))


def rng(f: str) -> Range:
    return Range(f, 1, 2)


def spec(text: str) -> KeySpec:
    return KeySpec.parse(text)


def test_perfect_match_wins_and_stops_the_search() -> None:
    best, scored = choose([spec("a,b"), spec("b,a"), spec("c")], [eq("a"), eq("b")], TYPES)
    assert best is not None and best.spec == spec("a,b") and best.perfect
    assert scored == 1  # nothing can beat a perfect key: the others are not scored


def test_score_is_keyed_bytes_of_leading_fixed_fields() -> None:
    by = {"a": eq("a"), "c": eq("c")}
    assert score_key(spec("c,a"), by, TYPES).score == 16 + 8
    assert score_key(spec("a,b,c"), by, TYPES).score == 8  # b is wild: c cannot be used
    assert score_key(spec("b,a"), by, TYPES).score == 0  # a wild leading field
    best, _ = choose([spec("a,b,c"), spec("c,b"), spec("c,a,b")], [eq("a"), eq("c")], TYPES)
    assert best is not None and best.spec == spec("c,a,b") and best.matched == ("c", "a")


def test_ties_go_to_fewest_trailing_fields() -> None:
    best, _ = choose([spec("a,b,c,d"), spec("a,e"), spec("a,b,e")], [eq("a")], TYPES)
    assert best is not None and best.spec == spec("a,e") and best.trailing == 1
    assert not best.perfect


def test_a_range_ends_the_keyed_part() -> None:
    by = {"d": rng("d"), "a": eq("a")}
    assert score_key(spec("d,a"), by, TYPES).matched == ("d",)
    assert score_key(spec("a,d"), by, TYPES).matched == ("a", "d")
    best, _ = choose([spec("d,a"), spec("a,d")], by.values(), TYPES)
    assert best is not None and best.spec == spec("a,d") and best.perfect


def test_post_filters_and_negations_are_not_keyable() -> None:
    conds = [Not(In("a", (1,))), Contains("b", "x"), Regex("b", "^x")]
    assert choose([spec("a"), spec("b")], conds, TYPES) == (None, 0)
    best, _ = choose([spec("b")], [Prefix("b", "x")], TYPES)
    assert best is not None and best.perfect


def test_no_keys_means_a_scan() -> None:
    assert choose([], [eq("a")], TYPES)[0] is None
