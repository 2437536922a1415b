"""The search-space file of ``clu tune`` and its seeded sampler.

A space file names the strategy whose config is searched and one distribution per searched field::

    strategy = "er_ga"          # registry name, or a preset file (relative to this file or the working folder)
    [space]
    unlearn_iters = { choice = [2, 5, 10] }
    unlearn_lr = { loguniform = [0.001, 0.1] }
    gamma = { randint = [1, 4] }     # whole numbers, both ends included

Everything is checked here, before any trial runs: the strategy, each key (a field of its config class, not
a learner setting), the distribution and its bounds, and every choice value and both bounds against the
config's own ``validate()``. Errors name the file, the key and the value.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from clu.config import ConfigError, read_toml, replace_from
from clu.paths import STRATEGY_DIR
from clu.strategies import StrategyChoice, resolve_strategy

Kind = Literal["choice", "uniform", "loguniform", "randint"]
LEARNER_KEYS = ("lr", "momentum", "weight_decay", "learner")
"""Settings of the learner: fixed by the scenario, never searched (DESIGN §13)."""
MAX_REDRAWS = 1000
"""Draws of one configuration before the sampler gives up finding one not drawn yet."""
_TOP_KEYS = ("strategy", "space")
SPACE_DIR = STRATEGY_DIR / "spaces"
"""The shipped search spaces (one per tunable strategy)."""


@dataclass(frozen=True)
class Param:
    """One searched field and its distribution."""

    name: str
    """A field of the strategy's config class."""
    kind: Kind
    """choice: uniform over ``values``; uniform / loguniform: continuous over [low, high], rounded to 4
    significant digits; randint: whole numbers in [low, high], both included."""
    values: tuple[Any, ...]
    """The choices, or (low, high)."""

    def draw(self, rng: np.random.Generator) -> Any:
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        low, high = self.values
        if self.kind == "randint":
            return int(rng.integers(low, high + 1))
        x = rng.uniform(low, high) if self.kind == "uniform" else math.exp(rng.uniform(math.log(low), math.log(high)))
        return min(max(float(f"{x:.4g}"), float(low)), float(high))

    @property
    def size(self) -> int | None:
        """The number of distinct values (None: continuous)."""
        if self.kind == "choice":
            return len(self.values)
        if self.kind == "randint":
            return int(self.values[1] - self.values[0] + 1)
        return None

    def to_inline(self) -> str:
        """``{ kind = [...] }`` as inline TOML."""
        return f"{{ {self.kind} = [{', '.join(_inline_value(v) for v in self.values)}] }}"


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, validated space file."""

    source: Path
    """The space file."""
    strategy: str
    """The strategy as written in the file (registry name or preset path)."""
    start: StrategyChoice
    """The resolved starting strategy (its preset or defaults): configuration 0 of every search."""
    params: tuple[Param, ...]
    """The searched fields, in file order."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def start_values(self) -> dict[str, Any]:
        """The starting config's values of the searched fields."""
        return {p.name: getattr(self.start.config, p.name) for p in self.params}

    def to_inline(self) -> str:
        """The space as one inline TOML table (the tuned preset's header records it)."""
        return "{ " + ", ".join(f"{p.name} = {p.to_inline()}" for p in self.params) + " }"

    def to_dict(self) -> dict[str, Any]:
        return {p.name: {p.kind: list(p.values)} for p in self.params}


def _inline_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)  # strings: TOML basic strings escape like JSON


def _resolve_start(strategy: Any, path: Path) -> StrategyChoice:
    if not isinstance(strategy, str) or not strategy:
        raise ConfigError(f"expected a strategy name or preset file, got {strategy!r}", key="strategy", file=path)
    if strategy.endswith(".toml") and not Path(strategy).is_absolute() and (path.parent / strategy).is_file():
        strategy = str(path.parent / strategy)
    try:
        return resolve_strategy(strategy)
    except ConfigError as e:
        raise (e if e.file else ConfigError(f"{strategy!r}: {e.detail}", key="strategy", file=path)) from None


def space_path(name_or_path: str | Path) -> Path:
    """A space file, or the name of a shipped one (``ugclu`` → ``strategies/spaces/ugclu.toml``)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or len(p.parts) != 1:
        return p
    return SPACE_DIR / f"{p.name.replace('_', '-')}.toml"


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file (or a shipped one by name); a ConfigError names the file, the key and
    the value."""
    path = space_path(path)
    raw = read_toml(path)
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown key; allowed keys here: {', '.join(_TOP_KEYS)}", key=unknown[0], file=path)
    if "strategy" not in raw:
        raise ConfigError("required key is missing (the strategy whose config is searched)", key="strategy", file=path)
    start = _resolve_start(raw["strategy"], path)
    space = raw.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError("give a [space] table with at least one searched field", key="space", file=path)
    params = tuple(_param(start, key, value, path) for key, value in space.items())
    return SearchSpace(path, raw["strategy"], start, params)


def _param(start: StrategyChoice, key: str, value: Any, path: Path) -> Param:
    where = f"space.{key}"

    def bad(message: str) -> ConfigError:
        return ConfigError(f"{value!r}: {message}", key=where, file=path)

    if key in LEARNER_KEYS:
        raise bad("the learner's settings are fixed by the scenario (DESIGN §13); search only unlearning settings")
    fields = {f.name for f in dataclasses.fields(start.config)}
    if key not in fields:
        raise bad(f"not a field of {type(start.config).__name__} ({start.name}); its fields: "
                  f"{', '.join(sorted(fields - set(LEARNER_KEYS)))}")
    kinds = get_args(Kind)
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in kinds:
        raise bad(f"expected one distribution, {{ choice = [...] }}, {{ uniform = [low, high] }}, "
                  f"{{ loguniform = [low, high] }} or {{ randint = [low, high] }}")
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise bad(f"{kind} takes a non-empty list")
    if kind == "choice":
        if len(set(map(repr, args))) != len(args):
            raise bad("choice values must be distinct")
    else:
        numbers = all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
        if kind == "randint" and not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            numbers = False
        if len(args) != 2 or not numbers or not all(math.isfinite(a) for a in args):
            raise bad(f"{kind} takes [low, high], two {'whole numbers' if kind == 'randint' else 'numbers'}")
        if not args[0] < args[1]:
            raise bad(f"{kind} needs low < high")
        if kind == "loguniform" and args[0] <= 0:
            raise bad("loguniform needs low > 0")
    for v in args:  # every choice and both bounds must make a valid config
        try:
            replace_from(start.config, {key: v})
        except ConfigError as e:
            raise bad(f"{v!r} is not a valid {key}: {e.detail}") from None
    return Param(key, kind, tuple(args))


def sample(space: SearchSpace, budget: int, seed: int = 0) -> list[dict[str, Any]]:
    """``budget`` distinct configurations of the searched fields: configuration 0 is the starting config, then
    ``budget - 1`` draws from a numpy Generator seeded with ``seed`` (a duplicate is drawn again, at most
    :data:`MAX_REDRAWS` times). The same space and seed give the same list."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"must be a whole number >= 1, got {budget!r}", key="--budget")
    start = space.start_values()
    sizes = [p.size for p in space.params]
    if all(s is not None for s in sizes):
        inside = all(start[p.name] in _grid(p) for p in space.params)
        n = math.prod(s for s in sizes if s is not None) + (0 if inside else 1)
        if n < budget:
            raise ConfigError(f"the space has only {n} distinct configurations (the starting config included); "
                              f"give a budget <= {n}", key="--budget")
    rng = np.random.default_rng(seed)
    configs = [start]
    seen = {_key(start)}
    while len(configs) < budget:
        for _ in range(MAX_REDRAWS):
            c = {p.name: p.draw(rng) for p in space.params}
            if _key(c) not in seen:
                break
        else:
            raise ConfigError(f"no new configuration in {MAX_REDRAWS} draws after {len(configs)}; lower the budget "
                              "or widen the space", key="--budget")
        seen.add(_key(c))
        configs.append(c)
    return configs


def _grid(p: Param) -> list[Any]:
    return list(p.values) if p.kind == "choice" else list(range(p.values[0], p.values[1] + 1))


def _key(config: dict[str, Any]) -> str:
    """Equal configurations have equal keys (2 and 2.0 included)."""
    return json.dumps({k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                       for k, v in config.items()}, sort_keys=True)
