"""Strategies: one module each, registered explicitly here (import order = listing order)."""

from clu.strategies import (  # noqa: F401  (each import registers its strategies)
    clpu_derpp,
    er,
    er_ft,
    er_ga,
    er_rl,
    er_salun,
    er_sfron,
    naive,
    retrain,
    ugclu,
)
from clu.strategies.base import CLUStrategy, DivergenceError, RunContext, StrategyConfig
from clu.strategies.registry import STRATEGIES, StrategyChoice, register_strategy, resolve_strategy, strategy_config

__all__ = [
    "CLUStrategy",
    "DivergenceError",
    "RunContext",
    "STRATEGIES",
    "StrategyChoice",
    "StrategyConfig",
    "register_strategy",
    "resolve_strategy",
    "strategy_config",
]
