"""clu-sim: simulate continual learning-unlearning.

The public API. ``import clu`` stays light: torch, Avalanche, Ray and matplotlib load only when
:func:`run` or :func:`sweep` runs.
"""

from __future__ import annotations

__version__ = "0.1.0"  # first: clu.runconfig stamps run configs with it

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from clu.config import ConfigError
from clu.events import Event, LearnTask, Step, UnlearnRequest
from clu.runconfig import RunConfig, resolve_config
from clu.scenario import ScenarioSpec, events_for, load_scenario

if TYPE_CHECKING:
    from avalanche.core import BasePlugin

    from clu.runner import Summary
    from clu.sweeps import SweepResult


def run(
    config: RunConfig,
    out: Path | str | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    plugins: Sequence[BasePlugin] = (),
    checkpoints: Literal["all", "last", "none"] = "all",
    make_plots: bool = True,
    threads: int = 1,
    log: Sequence[Any] = (),
) -> Summary:
    """Run every strategy of ``config`` (from :func:`resolve_config`) on its scenario and seed, the oracle
    first; write the results folder ``out`` (default ``./runs/<scenario>-<time>``); return the summary.
    ``checkpoints``: keep every event's checkpoint (``all``: what ``clu audit`` scans), each unit's latest
    (``last``: enough to resume) or none.
    ``log``: trackers that get every per-event measurement (``"tensorboard"``, ``"csv"``, ``"wandb"``, or
    :class:`clu.trackers.Tracker` objects)."""
    from clu.runner import run as _run  # deferred: torch and Avalanche

    return _run(config, out, resume=resume, progress=progress, plugins=plugins, checkpoints=checkpoints,
                make_plots=make_plots, threads=threads, log=log)


def sweep(scenarios: Sequence[str], strategies: Sequence[str], seeds: Sequence[int] = (0,),
          **options: Any) -> SweepResult:
    """Scenarios × strategies × seeds with Ray Tune or serially; ``options`` are the other
    :class:`clu.sweeps.SweepRequest` fields (executor, out, retries, ...)."""
    from clu.sweeps import sweep as _sweep  # deferred: torch, Avalanche and (for the Ray executor) Ray

    return _sweep(scenarios, strategies, seeds, **options)


__all__ = [
    "ConfigError",
    "Event",
    "LearnTask",
    "RunConfig",
    "ScenarioSpec",
    "Step",
    "UnlearnRequest",
    "events_for",
    "load_scenario",
    "resolve_config",
    "run",
    "sweep",
]
