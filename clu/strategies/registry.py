"""The strategy registry: name → (class, config class, preset file), filled by an explicit decorator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from clu.config import ConfigError, from_dict, read_toml
from clu.paths import STRATEGY_DIR
from clu.strategies.base import CLUStrategy, StrategyConfig


@dataclass(frozen=True)
class StrategyEntry:
    name: str
    cls: type[CLUStrategy]
    summary: str
    """One line for ``clu strategies``."""
    task_aware_only: bool = False

    @property
    def preset(self) -> Path:
        return STRATEGY_DIR / f"{self.name.replace('_', '-')}.toml"


STRATEGIES: dict[str, StrategyEntry] = {}
S = TypeVar("S", bound=type[CLUStrategy])


def register_strategy(name: str, summary: str, *, task_aware_only: bool = False) -> Callable[[S], S]:
    """Register a strategy class under ``name``; a duplicate name is a programming error."""

    def deco(cls: S) -> S:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is already registered")
        cls.name = name
        STRATEGIES[name] = StrategyEntry(name, cls, summary, task_aware_only)
        return cls

    return deco


@dataclass(frozen=True)
class StrategyChoice:
    """A resolved strategy: its registry name, the label it is reported under, its config."""

    name: str
    label: str
    config: StrategyConfig


def strategy_config(name: str, overrides: dict[str, Any] | None = None, *, source: str = "") -> StrategyConfig:
    """The preset config of ``name`` (from ``strategies/<name>.toml`` when present) plus overrides."""
    entry = get_entry(name)
    data: dict[str, Any] = {}
    if entry.preset.is_file():
        data = dict(read_toml(entry.preset))
        data.pop("strategy", None)
        data.pop("label", None)
    data.update(overrides or {})
    try:
        return from_dict(entry.cls.config_class, data)
    except ConfigError as e:
        raise e.in_file(source or entry.preset) from None


def get_entry(name: str) -> StrategyEntry:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}", key="strategy")
    return STRATEGIES[name]


def resolve_strategy(spec: str) -> StrategyChoice:
    """A registry name (its preset) or a preset file with ``strategy = "<name>"`` and overrides."""
    p = Path(spec)
    if p.suffix == ".toml":
        data = dict(read_toml(p))
        name = data.pop("strategy", None)
        if not isinstance(name, str):
            raise ConfigError("a strategy file must name its strategy (strategy = \"ugclu\")", key="strategy", file=p)
        label = data.pop("label", p.stem)
        try:
            get_entry(name)
        except ConfigError as e:
            raise e.in_file(p) from None
        return StrategyChoice(name, str(label), strategy_config(name, data, source=str(p)))
    return StrategyChoice(spec, spec, strategy_config(spec))
