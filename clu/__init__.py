"""clu-sim: simulate continual learning-unlearning.

The public API. Heavy modules (Avalanche, Ray, matplotlib) load only when the function needing them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clu.config import ConfigError
from clu.events import Event, LearnTask, Step, UnlearnRequest
from clu.scenario import ScenarioSpec, events_for, load_scenario

if TYPE_CHECKING:
    from clu.runner import RunConfig, Summary

__version__ = "0.1.0"


def run(config: "RunConfig", **kwargs: Any) -> "Summary":
    """Run every strategy of ``config`` on its scenario and seed; returns the summary (see clu.runner)."""
    from clu.runner import run as _run

    return _run(config, **kwargs)


def sweep(*args: Any, **kwargs: Any) -> Any:
    """Scenarios × strategies × seeds with Ray Tune or serially (see clu.sweep.sweep)."""
    from clu.sweep import sweep as _sweep

    return _sweep(*args, **kwargs)


__all__ = [
    "ConfigError",
    "Event",
    "LearnTask",
    "ScenarioSpec",
    "Step",
    "UnlearnRequest",
    "events_for",
    "load_scenario",
    "run",
    "sweep",
]
