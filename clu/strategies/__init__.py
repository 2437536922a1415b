"""Strategies: the registry, the configs and the divergence error (torch-free).

The implementations (one module each, built on :class:`clu.strategies.base.CLUStrategy`) are imported on
first use through :meth:`StrategyEntry.load`.
"""

from clu.strategies.configs import (
    CLPUConfig,
    ERFTConfig,
    ERGAConfig,
    ERRLConfig,
    ERSalUnConfig,
    ERSFRonConfig,
    ForgetConfig,
    ReplayConfig,
    StrategyConfig,
    UGCLUConfig,
    UGCLUPaperConfig,
    UnlearnConfig,
)
from clu.strategies.errors import DivergenceError
from clu.strategies.registry import (
    STRATEGIES,
    StrategyChoice,
    StrategyEntry,
    get_entry,
    register,
    resolve_strategy,
    strategy_config,
)

__all__ = [
    "CLPUConfig",
    "DivergenceError",
    "ERFTConfig",
    "ERGAConfig",
    "ERRLConfig",
    "ERSalUnConfig",
    "ERSFRonConfig",
    "ForgetConfig",
    "ReplayConfig",
    "STRATEGIES",
    "StrategyChoice",
    "StrategyConfig",
    "StrategyEntry",
    "UGCLUConfig",
    "UGCLUPaperConfig",
    "UnlearnConfig",
    "get_entry",
    "register",
    "resolve_strategy",
    "strategy_config",
]
