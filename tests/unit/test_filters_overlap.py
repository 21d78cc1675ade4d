"""routemq.topics.filters_overlap against brute force over a small universe of topics."""
import itertools

from hypothesis import given, settings, strategies as st

from routemq.topics import filters_overlap, parse_pattern

LEVELS = ["a", "b", "", "$x"]
TOPICS = ["/".join(p) for n in range(1, 6) for p in itertools.product(LEVELS + ["c"], repeat=n)]


def brute(a: str, b: str) -> bool:
    pa, pb = parse_pattern(a), parse_pattern(b)
    return any(pa.match(t) is not None and pb.match(t) is not None for t in TOPICS)


@st.composite
def filters(draw):
    n = draw(st.integers(1, 4))
    levels = [draw(st.sampled_from(LEVELS + ["+"])) for _ in range(n)]
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels) or "a"  # "" is not a valid filter


@settings(max_examples=300, deadline=None)
@given(filters(), filters())
def test_overlap_agrees_with_brute_force(a, b):
    assert filters_overlap(a, b) == brute(a, b) == filters_overlap(b, a)


def test_examples():
    assert filters_overlap("sensors/+/data", "sensors/#")
    assert filters_overlap("a/#", "a")
    assert not filters_overlap("a/b/#", "a")
    assert not filters_overlap("a/+", "b/+")
    assert not filters_overlap("#", "$SYS/x")
    assert filters_overlap("$SYS/#", "$SYS/+")
    assert not filters_overlap("a/+", "a/+/c")
