"""Scenario grids: ``--set KEY=V1,V2,...`` turns a scenario field into a sweep axis (pure; no files read).

A **setting** names one field of a scenario file by its path, written as in the validation errors
(``training.epochs``, ``split.n_tasks``, ``schedule.rules[0].fraction``), and the values it takes; each value
is a TOML value (``0.05``, ``true``, ``[128, 128]``, ``"natural"``), and a bare word that is no TOML value is a
string (``natural``). Values are split at commas outside brackets, braces and quotes. Several settings make the
cartesian product, the first one outermost. Every value is written into a copy of the scenario file's raw
table, which then goes through the very validation a file gets (:func:`clu.scenario.scenario_from_dict`); an
error names the file and the ``--set`` argument.

A grid point is a scenario of its own, named ``<scenario>+<field>=<value>`` per setting (Hive-style, safe as
a folder name and readable in tables): ``digits-random-sample+fraction=0.05``,
``digits-class+epochs=3+n_tasks=5``. ``<field>`` is the last name of the path, or, when two settings share
it, the shortest tail of the path that tells them apart (``rules.0.fraction``, ``rules.1.fraction``); a value
is written with characters other than letters, digits, ``.``, ``_`` and ``-`` turned into ``-`` (a list
``[128, 128]`` becomes ``128-128``).
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from clu.config import ConfigError
from clu.scenario import ScenarioSpec, scenario_from_dict

PathPart = str | int
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_KEY = re.compile(rf"{_NAME}(\[\d+\])*(\.{_NAME}(\[\d+\])*)*")
_PART = re.compile(rf"({_NAME})|\[(\d+)\]")
_RESERVED = {"name": "the grid names each scenario", "seed": "the sweep's seeds come from --seeds"}


@dataclass(frozen=True)
class Setting:
    """One ``--set KEY=V1,V2,...`` argument, parsed."""

    arg: str
    """The argument as given (errors name it)."""
    key: str
    """The field's path as written: ``schedule.rules[0].fraction``."""
    path: tuple[PathPart, ...]
    """The path split into table keys (str) and list indices (int)."""
    values: tuple[Any, ...]
    """The values, parsed, in the order given."""
    texts: tuple[str, ...]
    """The values as written."""

    def value_arg(self, i: int) -> str:
        """``--set KEY=VALUE`` of value ``i`` (errors about that one value name it)."""
        return f"--set {self.key}={self.texts[i]}"


@dataclass(frozen=True)
class GridPoint:
    """One scenario of a grid: a base scenario with one value per setting."""

    scenario: str
    """The grid point's scenario name (``<base>+<field>=<value>...``)."""
    base: str
    """The base scenario's name."""
    values: tuple[tuple[str, Any], ...]
    """(setting key, value) per setting, in ``--set`` order."""

    def value(self, key: str) -> Any:
        return dict(self.values)[key]


@dataclass(frozen=True)
class Grid:
    """A sweep's scenario grid: its axes and every grid point (recorded in sweep.json, read by the plots)."""

    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    """(setting key, values in the order given) per ``--set``."""
    short: tuple[tuple[str, str], ...]
    """(setting key, the field name used in scenario names)."""
    points: tuple[GridPoint, ...]
    """Every grid point, base by base, in product order."""

    def short_name(self, key: str) -> str:
        return dict(self.short)[key]

    def record(self) -> dict[str, Any]:
        """The plain-data form (sweep.json's ``grid``)."""
        return {
            "axes": [{"key": k, "field": self.short_name(k), "values": list(v)} for k, v in self.axes],
            "points": {p.scenario: {"base": p.base, "values": dict(p.values)} for p in self.points},
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Grid:
        """The inverse of :meth:`record`."""
        axes = tuple((a["key"], tuple(a["values"])) for a in data["axes"])
        short = tuple((a["key"], a["field"]) for a in data["axes"])
        points = tuple(GridPoint(name, p["base"], tuple((k, p["values"][k]) for k, _ in axes))
                       for name, p in data["points"].items())
        return cls(axes, short, points)


def parse_setting(arg: str) -> Setting:
    """``KEY=V1,V2,...`` → a :class:`Setting`; a malformed argument is a ConfigError naming it."""
    key, eq, rest = arg.partition("=")
    key = key.strip()
    where = f"--set {arg}"
    if not eq or not key:
        raise ConfigError("expected KEY=V1,V2,... (e.g. training.epochs=3,15)", key=where)
    if not _KEY.fullmatch(key):
        raise ConfigError(f"{key!r} is not a field path; write it like training.epochs or "
                          "schedule.rules[0].fraction", key=where)
    path = tuple(m.group(1) if m.group(1) else int(m.group(2)) for m in _PART.finditer(key))
    if len(path) == 1 and path[0] in _RESERVED:
        raise ConfigError(f"{path[0]} cannot be a grid axis: {_RESERVED[str(path[0])]}", key=where)
    texts = tuple(t.strip() for t in split_values(rest))
    if not texts or any(not t for t in texts):
        raise ConfigError("every value must be non-empty (V1,V2,...)", key=where)
    values = tuple(parse_value(t) for t in texts)
    for t, v in zip(texts, values):
        if not _plain(v):
            raise ConfigError(f"{t} is no value a scenario field takes (a finite number, true/false, a string or "
                              "a list of these)", key=where)
    for i, v in enumerate(values):
        if any(_same(v, w) for w in values[:i]):
            raise ConfigError(f"the value {texts[i]} is given twice", key=where)
    return Setting(arg, key, path, values, texts)


def parse_grid(args: Sequence[str]) -> tuple[Setting, ...]:
    """Every ``--set`` argument; one field set twice is an error."""
    settings = tuple(parse_setting(a) for a in args)
    seen: dict[str, str] = {}
    for s in settings:
        if s.key in seen:
            raise ConfigError(f"{s.key} is already a grid axis (--set {seen[s.key]}); give its values in one --set",
                              key=f"--set {s.arg}")
        seen[s.key] = s.arg
    return settings


def split_values(text: str) -> list[str]:
    """Split at commas outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_value(text: str) -> Any:
    """A TOML value (``0.05``, ``true``, ``[1, 2]``, ``"x"``); anything else is the text itself, as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _same(a: Any, b: Any) -> bool:
    """Equal as config values (``1 == 1.0`` but ``True != 1``)."""
    return type(a) is type(b) and a == b or (_number(a) and _number(b) and a == b)


def _plain(v: Any) -> bool:
    """JSON-safe config data (sweep.json records the grid): no dates, no inf or nan."""
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(_plain(x) for x in v.values())
    return isinstance(v, (str, int, bool))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def short_names(settings: Sequence[Setting]) -> dict[str, str]:
    """Per setting key, the field name used in scenario names: the shortest tail of its path, starting at a
    name, that no other setting's path ends with."""
    out = {}
    for s in settings:
        starts = [i for i, p in enumerate(s.path) if isinstance(p, str)]
        for i in reversed(starts):
            tail = s.path[i:]
            if not any(o is not s and o.path[-len(tail):] == tail for o in settings):
                break
        out[s.key] = ".".join(str(p) for p in tail)
    return out


def value_slug(value: Any) -> str:
    """A value as it appears in a scenario name (letters, digits, ``.``, ``_``, ``-``)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "-".join(value_slug(v) for v in value)
    elif isinstance(value, Mapping):
        text = "-".join(f"{k}-{value_slug(v)}" for k, v in value.items())
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "-"


def point_name(base: str, settings: Sequence[Setting], values: Sequence[Any], short: Mapping[str, str]) -> str:
    """``<base>+<field>=<value>`` per setting."""
    return base + "".join(f"+{short[s.key]}={value_slug(v)}" for s, v in zip(settings, values))


def apply_setting(raw: dict[str, Any], setting: Setting, value: Any, where: str) -> None:
    """Write ``value`` at the setting's path into ``raw`` (in place). A missing table on the way is created
    (the validation then refuses it if the schema has no such table); a missing or out-of-range list index,
    or a path through a value that is no table or list, is a ConfigError naming ``where``."""
    node: Any = raw
    for depth, part in enumerate(setting.path):
        here = _path_text(setting.path[:depth])
        last = depth == len(setting.path) - 1
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ConfigError(f"{here} is not a list, so it has no item [{part}]", key=where)
            if part >= len(node):
                raise ConfigError(f"index [{part}] is out of range: {here} has {len(node)} item(s)", key=where)
            if last:
                node[part] = value
            else:
                node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{here} is not a table, so it has no key {part!r}", key=where)
        if last:
            node[part] = value
        else:
            if part not in node and isinstance(setting.path[depth + 1], int):
                raise ConfigError(f"index [{setting.path[depth + 1]}] is out of range: "
                                  f"{_path_text(setting.path[:depth + 1])} has no items", key=where)
            node = node.setdefault(part, {})


def _path_text(path: Sequence[PathPart]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "the scenario"


def _matches(setting: Setting, key: str) -> bool:
    """Whether an error at ``key`` is about this setting's field (the same path, or one inside the other)."""
    a, b = setting.key, key
    return a == b or b.startswith(a + ".") or b.startswith(a + "[") or a.startswith(b + ".") or a.startswith(b + "[")


@dataclass(frozen=True)
class GridScenario:
    """A grid point and its validated scenario."""

    point: GridPoint
    spec: ScenarioSpec
    """The base scenario with the point's values, named after the point."""


def expand(raw: Mapping[str, Any], source: str, settings: Sequence[Setting]) -> list[GridScenario]:
    """Every grid point of one scenario file's raw table, each validated like a file (the table itself first).

    Errors name ``source`` and the ``--set`` argument (the one value when it alone is at fault).
    """
    base = scenario_from_dict(dict(raw), source)
    short = short_names(settings)
    out = []
    for combo in itertools.product(*(range(len(s.values)) for s in settings)):
        values = [s.values[i] for s, i in zip(settings, combo)]
        where = " ".join(s.value_arg(i) for s, i in zip(settings, combo))
        data = copy.deepcopy(dict(raw))
        for s, i in zip(settings, combo):
            try:
                apply_setting(data, s, s.values[i], s.value_arg(i))
            except ConfigError as e:
                raise e.in_file(source) from None
        name = point_name(base.name, settings, values, short)
        data["name"] = name
        try:
            spec = scenario_from_dict(data, source)
        except ConfigError as e:
            at_fault = [(s, i) for s, i in zip(settings, combo) if _matches(s, e.key)]
            exact = len(at_fault) == 1 and at_fault[0][0].key == e.key
            detail = e.detail if exact or not e.key else f"{e.key}: {e.detail}"
            raise ConfigError(detail, key=" ".join(s.value_arg(i) for s, i in at_fault) or where,
                              file=source) from None
        out.append(GridScenario(GridPoint(name, base.name, tuple((s.key, v) for s, v in zip(settings, values))),
                                spec))
    first: dict[str, GridPoint] = {}
    for g in out:
        other = first.setdefault(g.point.scenario, g.point)
        if other is not g.point:
            raise ConfigError(f"two grid points are both named {g.point.scenario!r} ({dict(other.values)} and "
                              f"{dict(g.point.values)}: their values differ only in characters a folder name "
                              "cannot hold); give distinct values", key="--set", file=source)
    return out


def make_grid(settings: Sequence[Setting], scenarios: Sequence[GridScenario]) -> Grid:
    """The sweep's :class:`Grid` from its settings and the grid points of every base scenario."""
    short = short_names(settings)
    return Grid(tuple((s.key, s.values) for s in settings), tuple((s.key, short[s.key]) for s in settings),
                tuple(g.point for g in scenarios))
