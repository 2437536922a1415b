"""The strategy registry: one explicit table, name → (summary, config class, implementation, preset).

Torch-free: names, summaries, configs and presets resolve without importing torch or Avalanche; the
implementation module is imported by :meth:`StrategyEntry.load` on first use. A new strategy is one file
plus one line in the table below (its config may be a class from :mod:`clu.strategies.configs` or a
``"module:Class"`` string naming one in the strategy's own file).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clu.config import ConfigError, from_dict, read_toml
from clu.paths import STRATEGY_DIR
from clu.strategies.configs import (
    CLPUConfig,
    ERFTConfig,
    ERGAConfig,
    ERRLConfig,
    ERSalUnConfig,
    ERSFRonConfig,
    ReplayConfig,
    StrategyConfig,
    UGCLUConfig,
    UGCLUPaperConfig,
)

if TYPE_CHECKING:
    from clu.strategies.base import CLUStrategy


def _resolve(ref: str | type, what: str) -> Any:
    """A class given directly, or named as ``"package.module:Class"`` (imported now)."""
    if not isinstance(ref, str):
        return ref
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{what} {ref!r} is not of the form 'package.module:Class'")
    try:
        found = import_module(module)
    except Exception as e:  # a broken strategy file stops the commands that use it, with one line
        if isinstance(e, ModuleNotFoundError) and e.name is not None and not module.startswith(e.name):
            raise  # a missing dependency of a working module: the install's problem, shown in full
        raise ConfigError(f"{what}: cannot import {module} ({type(e).__name__}: {e}); run "
                          f"`python -c 'import {module}'` for the traceback") from None
    if not hasattr(found, attr):
        raise ConfigError(f"{what}: {module} has no {attr}")
    return getattr(found, attr)


@dataclass(frozen=True)
class StrategyEntry:
    """One registered strategy."""

    name: str
    """The registry name (``er_ga``); runs report under it unless a preset gives a label."""
    summary: str
    """One line for ``clu strategies``."""
    config: type[StrategyConfig] | str
    """Its config class, or ``"module:Class"`` naming it (resolved on first use)."""
    target: str | type[CLUStrategy]
    """The strategy class as ``"module:Class"`` (imported on first use), or the class itself."""
    task_aware_only: bool = False
    """Runs only in the task-aware setting."""

    @property
    def config_class(self) -> type[StrategyConfig]:
        cls = _resolve(self.config, f"{self.name}: config")
        if not (isinstance(cls, type) and issubclass(cls, StrategyConfig)):
            raise TypeError(f"{self.name}: config {cls!r} is not a StrategyConfig subclass")
        return cls

    @property
    def preset(self) -> Path:
        """The shipped preset file (it may be absent: then the config defaults apply)."""
        return STRATEGY_DIR / f"{self.name.replace('_', '-')}.toml"

    def load(self) -> type[CLUStrategy]:
        """The strategy class (its module is imported on first use)."""
        from clu.strategies.base import CLUStrategy  # deferred: torch and Avalanche

        cls = _resolve(self.target, f"{self.name}: target")
        if not (isinstance(cls, type) and issubclass(cls, CLUStrategy)):
            raise TypeError(f"{self.name}: {cls!r} is not a CLUStrategy subclass")
        if cls.name != self.name:
            raise TypeError(f"{self.name}: {cls.__name__}.name is {cls.name!r}; set it to {self.name!r}")
        return cls


STRATEGIES: dict[str, StrategyEntry] = {}
"""The registry, in listing order (the default strategies of a run, in this order)."""


def register(entry: StrategyEntry) -> StrategyEntry:
    """Add ``entry`` to the registry; a name already taken is refused."""
    if entry.name in STRATEGIES:
        raise ValueError(f"strategy {entry.name!r} is already registered")
    STRATEGIES[entry.name] = entry
    return entry


_PKG = "clu.strategies"
_BUILT_IN = (
    StrategyEntry("clpu_derpp", "task-aware CLPU: DER++ main model + one side model per temporary task",
                  CLPUConfig, f"{_PKG}.clpu_derpp:CLPUDERPP", task_aware_only=True),
    StrategyEntry("er", "experience replay; a request purges the buffer only", ReplayConfig, f"{_PKG}.er:ER"),
    StrategyEntry("er_ft", "replay; purge, then fine-tune on the buffer", ERFTConfig, f"{_PKG}.er_ft:ERFT"),
    StrategyEntry("er_ga", "replay; purge, then gradient ascent on the forget set", ERGAConfig, f"{_PKG}.er_ga:ERGA"),
    StrategyEntry("er_rl", "replay; purge, then random-label training on the forget set + buffer CE",
                  ERRLConfig, f"{_PKG}.er_rl:ERRL"),
    StrategyEntry("er_salun", "replay; purge, then SalUn (random labels under a top-k saliency mask)",
                  ERSalUnConfig, f"{_PKG}.er_salun:ERSalUn"),
    StrategyEntry("er_sfron", "replay; purge, then SFR-on: unlearn-only fast-slow step (weighted ascent, balanced mask)",
                  ERSFRonConfig, f"{_PKG}.er_sfron:ERSFRon"),
    StrategyEntry("naive", "fine-tune on new data only; requests are ignored", StrategyConfig, f"{_PKG}.naive:Naive"),
    StrategyEntry("retrain", "the oracle: joint training from scratch on all retained data after every event",
                  StrategyConfig, f"{_PKG}.retrain:Retrain"),
    StrategyEntry("retrain_stream", "oracle variant: replay the stream so far with ER, minus the forgotten data",
                  ReplayConfig, f"{_PKG}.retrain:RetrainStream"),
    StrategyEntry("ugclu", "unified CLU: replay learner; requests: fast-slow unlearn + preserve under a balanced mask",
                  UGCLUConfig, f"{_PKG}.ugclu:UGCLU"),
    StrategyEntry("ugclu_paper", "UG-CLU as published: ugclu's recipe with SFR-on's weighted ascent (not tuned)",
                  UGCLUPaperConfig, f"{_PKG}.ugclu_paper:UGCLUPaper"),
)
for _entry in _BUILT_IN:
    register(_entry)


@dataclass(frozen=True)
class StrategyChoice:
    """A resolved strategy: its registry name, the label it is reported under, its config."""

    name: str
    label: str
    config: StrategyConfig


def get_entry(name: str) -> StrategyEntry:
    """The entry of ``name``; an unknown name is a ConfigError listing the known ones."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}", key="strategy")
    return STRATEGIES[name]


def strategy_config(name: str, overrides: dict[str, Any] | None = None, *, source: str = "") -> StrategyConfig:
    """The preset config of ``name`` (its shipped preset file when present) plus overrides."""
    entry = get_entry(name)
    data: dict[str, Any] = {}
    if entry.preset.is_file():
        data = dict(read_toml(entry.preset))
        data.pop("strategy", None)
        data.pop("label", None)
    data.update(overrides or {})
    try:
        return from_dict(entry.config_class, data)
    except ConfigError as e:
        raise e.in_file(source or entry.preset) from None


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
