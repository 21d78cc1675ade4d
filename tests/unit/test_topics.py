"""Pattern parsing, validation and the topic tree (routemq.topics)."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from routemq.topics import TopicTree, parse_pattern


@pytest.mark.parametrize("pattern, mqtt_filter, params", [
    ("sensors/{device_id}/data", "sensors/+/data", ("device_id",)),
    ("telemetry/bulk", "telemetry/bulk", ()),
    ("a/{x}/{y}", "a/+/+", ("x", "y")),
    ("logs/{path*}", "logs/#", ("path",)),
    ("sensors/+/data", "sensors/+/data", ()),
    ("logs/#", "logs/#", ()),
    ("#", "#", ()),
    ("/leading/empty", "/leading/empty", ()),
    ("$SYS/broker/uptime", "$SYS/broker/uptime", ()),
])
def test_filter_conversion(pattern, mqtt_filter, params):
    parsed = parse_pattern(pattern)
    assert parsed.mqtt_filter == mqtt_filter
    assert parsed.param_names == params


@pytest.mark.parametrize("pattern, reason", [
    ("a/#/b", "'#' is only allowed as the last level"),
    ("a/{}", "empty parameter name"),
    ("a/{a}{b}", "one parameter per level"),
    ("a/x{id}", "a parameter must fill a whole level"),
    ("a/{id}x", "a parameter must fill a whole level"),
    ("", "empty"),
    ("$share/g/a/b", "use shared=True"),
    ("$queue/a", "use shared=True"),
    ("a/b#", "wildcard must fill a whole level"),
    ("a/+b", "wildcard must fill a whole level"),
    ("a/{rest*}/b", "only allowed as the last level"),
    ("a/{1x}", "not a Python identifier"),
    ("a/{class}", "not a Python identifier"),
    ("a/{payload}", "reserved"),
    ("a/{client}", "reserved"),
    ("a/{x}/{x}", "appears twice"),
    ("a/{x", "a parameter must fill a whole level"),
    ("a\x00b", "NUL"),
])
def test_invalid_patterns_name_pattern_and_reason(pattern, reason):
    with pytest.raises(ValueError) as err:
        parse_pattern(pattern)
    assert repr(pattern) in str(err.value)
    assert reason in str(err.value)


@pytest.mark.parametrize("pattern, topic, expected", [
    ("sensors/{device_id}/data", "sensors/42/data", {"device_id": "42"}),
    ("sensors/{device_id}/data", "sensors/42/other", None),
    ("sensors/{device_id}/data", "sensors/42/data/x", None),
    ("sensors/{device_id}/data", "sensors//data", {"device_id": ""}),
    ("logs/{path*}", "logs/a/b/c", {"path": "a/b/c"}),
    ("logs/{path*}", "logs", {"path": ""}),
    ("logs/#", "logs/a", {}),
    ("#", "$SYS/x", None),
    ("+/x", "$SYS/x", None),
    ("$SYS/{what}", "$SYS/x", {"what": "x"}),
])
def test_pattern_match(pattern, topic, expected):
    assert parse_pattern(pattern).match(topic) == expected


def _tree(*patterns):
    tree = TopicTree()
    for p in patterns:
        tree.add(parse_pattern(p), p)
    return tree


def test_tree_finds_all_matches_with_params():
    tree = _tree("sensors/{id}/data", "sensors/#", "sensors/+/+", "other/x", "#")
    found = dict(tree.match("sensors/7/data"))
    assert found == {"sensors/{id}/data": {"id": "7"}, "sensors/#": {},
                     "sensors/+/+": {}, "#": {}}
    assert tree.match("nothing/here/at/all") == [("#", {})]


def test_tree_best_is_most_specific():
    tree = _tree("#", "a/#", "a/+/c", "a/b/#", "a/b/c", "a/{x}/{y}")
    assert tree.best("a/b/c") == ("a/b/c", {})
    assert tree.best("a/z/c") == ("a/+/c", {})  # first of the two equal patterns
    assert tree.best("a/b/d") == ("a/b/#", {})
    assert tree.best("a/z/d") == ("a/{x}/{y}", {"x": "z", "y": "d"})
    assert tree.best("q") == ("#", {})
    assert _tree("a/b", "a/b/#").best("a/b") == ("a/b", {})  # exact beats '#' with same prefix
    assert _tree("a/b/#", "a/b").best("a/b") == ("a/b", {})


def test_tree_no_match():
    assert _tree("a/b").best("a/c") is None
    assert _tree("a/b").match("a") == []


def _visits(n_routes: int, topic: str) -> int:
    tree = TopicTree()
    tree.add(parse_pattern("sensors/{id}/data"), "target")
    tree.add(parse_pattern("alerts/#"), "alerts")
    for i in range(n_routes):
        tree.add(parse_pattern(f"devices/d{i}/{{part}}/status"), i)
        tree.add(parse_pattern(f"fleet/{i}/+"), -i)
    tree.best(topic)
    return tree.visited


@pytest.mark.parametrize("topic", ["sensors/7/data", "devices/d0/x/status", "nope/a/b/c"])
def test_tree_cost_does_not_grow_with_route_count(topic):
    small = _visits(1, topic)
    assert small > 0
    assert _visits(100, topic) == small
    assert _visits(10_000, topic) == small


def test_tree_cost_grows_with_levels_only():
    tree = _tree("+/+/+/+/+/+", "a/b/c/d/e/f")
    tree.best("a/b/c/d/e/f")
    assert tree.visited <= 2 * 7  # at most two branches per level


LEVELS = ["a", "b", "+", "{p}", "$x"]


@st.composite
def pattern_sets(draw):
    patterns = set()
    for _ in range(draw(st.integers(1, 12))):
        n = draw(st.integers(1, 4))
        levels = [draw(st.sampled_from(LEVELS)) for _ in range(n)]
        levels = [lv if lv != "{p}" else f"{{p{i}}}" for i, lv in enumerate(levels)]
        if draw(st.booleans()):
            levels.append("#")
        patterns.add("/".join(levels))
    return sorted(patterns)


@settings(max_examples=200, deadline=None)
@given(pattern_sets(), st.lists(st.sampled_from(["a", "b", "c", "$x"]), min_size=1,
                                max_size=5), st.integers(0, 2**16))
def test_tree_best_equals_the_most_specific_of_all_matches(patterns, topic_levels, seed):
    tree = TopicTree()
    parsed = []
    for p in patterns:
        try:
            parsed.append(parse_pattern(p))
        except ValueError:
            continue
    for order, pattern in enumerate(parsed):
        tree.add(pattern, order)
    topic = "/".join(topic_levels)
    accepted = set(random.Random(seed).sample(range(len(parsed)), k=len(parsed) // 2 + 1)) \
        if parsed else set()
    for accept in (None, accepted.__contains__):
        candidates = [(parsed[v].specificity, -v, v, params) for v, params in tree.match(topic)
                      if accept is None or accept(v)]
        got = tree.best(topic, accept)
        if not candidates:
            assert got is None
        else:
            best = max(candidates, key=lambda c: (c[0], c[1]))
            assert got == (best[2], best[3])
