"""Route patterns and the topic tree that matches topics against them.

A route pattern is an MQTT topic filter with named levels:

    sensors/{device_id}/data     {name} matches exactly one level and passes it as `name`
    logs/{path*}                 a trailing {name*} matches zero or more levels ("a/b/c")
    sensors/+/data, logs/#       native MQTT wildcards are accepted; their levels are unnamed

`parse_pattern` validates a pattern and derives its MQTT filter (`sensors/+/data`).
`TopicTree` finds the patterns matching a topic with a walk whose cost grows with the
topic's number of levels, never with the number of routes:

    >>> tree = TopicTree()
    >>> tree.add(parse_pattern("sensors/{device_id}/data"), "by-device")
    >>> tree.add(parse_pattern("sensors/#"), "all-sensors")
    >>> tree.best("sensors/42/data")
    ('by-device', {'device_id': '42'})
    >>> sorted(value for value, _ in tree.match("sensors/42/data"))
    ['all-sensors', 'by-device']
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterator, TypeVar

V = TypeVar("V")

# Handlers are called as handler(**params, payload=..., client=...), so a parameter must be a
# Python identifier and may not shadow the two keyword arguments every handler receives.
RESERVED_PARAMS = frozenset({"payload", "client"})

# Level kinds, ordered by specificity (used to pick the most specific route).
LITERAL, SINGLE, MULTI = 2, 1, 0
END = 3  # marks "no more levels" in a specificity key

MAX_TOPIC_BYTES = 65535  # MQTT's UTF-8 string length limit


@dataclass(frozen=True)
class Level:
    """One level of a pattern: a literal text, a one-level wildcard or the trailing rest."""

    kind: int
    text: str = ""  # the literal, for LITERAL
    name: str | None = None  # the parameter name, for a named wildcard


@dataclass(frozen=True)
class TopicPattern:
    """A validated route pattern, e.g. `sensors/{device_id}/data` -> filter `sensors/+/data`."""

    pattern: str
    levels: tuple[Level, ...]
    mqtt_filter: str
    param_names: tuple[str, ...]
    specificity: tuple[int, ...] = field(compare=False)

    def match(self, topic: str) -> dict[str, str] | None:
        """The parameters if `topic` matches this pattern, else None (linear in levels)."""
        parts = topic.split("/")
        if not _may_match(self.levels, parts):
            return None
        return extract_params(self.levels, parts)

    def __str__(self) -> str:
        return self.pattern


def _may_match(levels: tuple[Level, ...], parts: list[str]) -> bool:
    if parts and parts[0].startswith("$") and levels and levels[0].kind != LITERAL:
        return False  # MQTT: wildcards in the first level never match $-topics
    for i, level in enumerate(levels):
        if level.kind == MULTI:
            return True
        if i >= len(parts):
            return False
        if level.kind == LITERAL and level.text != parts[i]:
            return False
    return len(parts) == len(levels)


def extract_params(levels: tuple[Level, ...], parts: list[str]) -> dict[str, str]:
    """Named parameters of a topic already known to match `levels`."""
    params: dict[str, str] = {}
    for i, level in enumerate(levels):
        if level.name is None:
            continue
        params[level.name] = "/".join(parts[i:]) if level.kind == MULTI else parts[i]
    return params


def _invalid(pattern: str, reason: str) -> ValueError:
    return ValueError(f"invalid route pattern {pattern!r}: {reason}")


def _parse_level(pattern: str, text: str, is_last: bool, seen: set[str]) -> Level:
    if text == "#":
        if not is_last:
            raise _invalid(pattern, "'#' is only allowed as the last level")
        return Level(MULTI)
    if text == "+":
        return Level(SINGLE)
    if "#" in text or "+" in text:
        raise _invalid(pattern, f"wildcard must fill a whole level, got {text!r}")
    if "{" not in text and "}" not in text:
        return Level(LITERAL, text=text)
    if not (text.startswith("{") and text.endswith("}")):
        raise _invalid(pattern, f"a parameter must fill a whole level, got {text!r}")
    name = text[1:-1]
    if "{" in name or "}" in name:
        raise _invalid(pattern, f"one parameter per level, got {text!r}")
    kind = SINGLE
    if name.endswith("*"):
        if not is_last:
            raise _invalid(pattern, f"{text!r} (multi-level) is only allowed as the last level")
        kind, name = MULTI, name[:-1]
    if not name:
        raise _invalid(pattern, "empty parameter name '{}'")
    if not name.isidentifier() or keyword.iskeyword(name):
        raise _invalid(pattern, f"parameter name {name!r} is not a Python identifier")
    if name in RESERVED_PARAMS:
        raise _invalid(pattern, f"parameter name {name!r} is reserved (handlers receive it)")
    if name in seen:
        raise _invalid(pattern, f"parameter {name!r} appears twice")
    seen.add(name)
    return Level(kind, name=name)


def parse_pattern(pattern: str) -> TopicPattern:
    """Validate `pattern` and derive its MQTT filter; ValueError names the pattern and reason."""
    if not isinstance(pattern, str):
        raise ValueError(f"invalid route pattern {pattern!r}: must be a string")
    if pattern == "":
        raise _invalid(pattern, "empty (MQTT topic filters have at least one character)")
    if "\x00" in pattern:
        raise _invalid(pattern, "contains a NUL character")
    if len(pattern.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise _invalid(pattern, f"longer than {MAX_TOPIC_BYTES} bytes")
    if pattern.startswith(("$share/", "$queue/")) or pattern in ("$share", "$queue"):
        raise _invalid(pattern, "do not write $share/<group>/ yourself; use shared=True "
                                "and the group name from the configuration")
    texts = pattern.split("/")
    seen: set[str] = set()
    levels = tuple(_parse_level(pattern, t, i == len(texts) - 1, seen)
                   for i, t in enumerate(texts))
    mqtt_filter = "/".join(
        lv.text if lv.kind == LITERAL else ("+" if lv.kind == SINGLE else "#") for lv in levels)
    names = tuple(lv.name for lv in levels if lv.name is not None)
    # An exact-length pattern outranks one ending in '#' that shares its prefix (END > MULTI).
    kinds = tuple(lv.kind for lv in levels)
    specificity = kinds if kinds[-1] == MULTI else kinds + (END,)
    return TopicPattern(pattern, levels, mqtt_filter, names, specificity)


class _Entry(Generic[V]):
    __slots__ = ("pattern", "value", "order", "rank")

    def __init__(self, pattern: TopicPattern, value: V, order: int) -> None:
        self.pattern, self.value, self.order = pattern, value, order
        # Greater is better: most specific first, then the one added first.
        self.rank = (pattern.specificity, -order)


class _Node(Generic[V]):
    __slots__ = ("children", "single", "rest", "entries")

    def __init__(self) -> None:
        self.children: dict[str, _Node[V]] = {}
        self.single: _Node[V] | None = None
        self.rest: list[_Entry[V]] = []  # patterns ending in '#' below this node
        self.entries: list[_Entry[V]] = []  # patterns ending exactly here


class TopicTree(Generic[V]):
    """Patterns stored level by level; `match` walks only the branches a topic can take.

    `visited` holds the number of nodes the last lookup touched: tests use it to prove that
    the cost does not depend on how many routes exist.
    """

    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        self._size = 0
        self.visited = 0

    def __len__(self) -> int:
        return self._size

    def add(self, pattern: TopicPattern, value: V) -> None:
        entry = _Entry(pattern, value, self._size)
        node = self._root
        for level in pattern.levels:
            if level.kind == MULTI:
                node.rest.append(entry)
                break
            if level.kind == SINGLE:
                if node.single is None:
                    node.single = _Node()
                node = node.single
            else:
                node = node.children.setdefault(level.text, _Node())
        else:
            node.entries.append(entry)
        self._size += 1

    def _walk(self, parts: list[str]) -> Iterator[_Entry[V]]:
        n = len(parts)
        dollar = n > 0 and parts[0].startswith("$")  # MQTT: no wildcard match at level 0
        stack: list[tuple[_Node[V], int]] = [(self._root, 0)]
        visited = 0
        while stack:
            node, i = stack.pop()
            visited += 1
            if node.rest and not (dollar and i == 0):
                yield from node.rest
            if i == n:
                yield from node.entries
                continue
            child = node.children.get(parts[i])
            if child is not None:
                stack.append((child, i + 1))
            if node.single is not None and not (dollar and i == 0):
                stack.append((node.single, i + 1))
        self.visited = visited

    def match(self, topic: str) -> list[tuple[V, dict[str, str]]]:
        """Every stored value whose pattern matches `topic`, with its parameters."""
        parts = topic.split("/")
        return [(e.value, extract_params(e.pattern.levels, parts)) for e in self._walk(parts)]

    def best(self, topic: str, accept: Callable[[V], bool] | None = None
             ) -> tuple[V, dict[str, str]] | None:
        """The most specific match: literal beats `{x}`/`+` beats `#`, level by level from the
        left; among equals, the one added first. `accept` limits the candidates.

        The same walk as `_walk`, written out without a generator: this runs once per
        message in a worker that has no subscription identifier to go by.
        """
        parts = topic.split("/")
        n = len(parts)
        dollar = parts[0][:1] == "$"  # MQTT: no wildcard match at level 0
        best: _Entry[V] | None = None
        stack: list[tuple[_Node[V], int]] = [(self._root, 0)]
        visited = 0
        while stack:
            node, i = stack.pop()
            visited += 1
            wild = not (dollar and i == 0)
            if node.rest and wild:
                for e in node.rest:
                    if (best is None or e.rank > best.rank) and (
                            accept is None or accept(e.value)):
                        best = e
            if i == n:
                for e in node.entries:
                    if (best is None or e.rank > best.rank) and (
                            accept is None or accept(e.value)):
                        best = e
                continue
            child = node.children.get(parts[i])
            if child is not None:
                stack.append((child, i + 1))
            if node.single is not None and wild:
                stack.append((node.single, i + 1))
        self.visited = visited
        if best is None:
            return None
        return best.value, extract_params(best.pattern.levels, parts)


def filters_overlap(a: str, b: str) -> bool:
    """True when some topic matches both MQTT filters `a` and `b` (`sensors/+/data` and
    `sensors/#` do; `a/+` and `b/+` do not). A worker needs MQTT 5 subscription identifiers
    only for filters that overlap another it holds: otherwise the topic alone names the
    route, and paho parses no property per message (measured: a fifth of a worker's CPU).

    Wildcards in the first level never match a topic starting with `$` (MQTT 4.7.2).
    """
    la, lb = a.split("/"), b.split("/")
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else None
        y = lb[i] if i < len(lb) else None
        if x == "#" or y == "#":
            other = y if x == "#" else x
            # '#' also matches its parent level ("a/#" matches "a"), so a shorter filter
            # that got this far overlaps; only the $-rule of the first level can stop it.
            return not (i == 0 and other is not None and other.startswith("$"))
        if x is None or y is None:
            return False
        if x == "+" or y == "+":
            other = y if x == "+" else x
            if i == 0 and other.startswith("$"):
                return False
            continue
        if x != y:
            return False
    return True
