"""Pattern parsing, validation and the topic tree (routemq.topics)."""
import pytest

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
