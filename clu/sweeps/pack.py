"""Packing a sweep's trials into Ray Tune trials, and the ``auto`` executor's choice (pure functions).

A Tune trial costs a fixed amount besides its work (a placement group, an actor call, its result files), which
dominates trials of a second or two. So the Ray executor runs a **pack** of trials as one Tune trial: trials of
the same (scenario, seed), in plan order (the oracle first). Packs shrink as the sweep goes on (guided
scheduling): a pack holds at most 1 / (``PACKS_PER_SLOT`` × slots) of the trials not yet packed when it is cut,
so the first packs are long (few Tune trials) and the last ones a single trial, and the slots finish together
instead of one waiting for the other's last long pack. Each trial of a pack keeps its own folder, ``done.json``, attempts and
progress line: packing changes how work reaches the workers, never what a trial writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from clu.sweeps.plan import Trial

PACKS_PER_SLOT = 4
"""A pack holds at most 1 / (this × slots) of the trials still to pack: when the last packs start, the other slots
have at most that share of the remaining work left."""
BREAK_EVEN_TRIALS = 16
"""Below this many trials to run, ``--executor auto`` runs a sweep in-process: Ray's fixed cost (import,
``ray.init``, each worker's torch and Avalanche import) outweighs what the second slot saves. Measured by
``bench/sweep_scaling.py`` on 2 cores (bench/RESULTS.md, "break-even"): 16, 24 and 12 trials in its three runs
of 2026-12-05 with the current packing (the machine's speed varied between them); this is their median."""


@dataclass(frozen=True)
class Pack:
    """Trials run one after the other as one Tune trial."""

    trials: tuple[Trial, ...]
    index: int = 1
    """1-based position among the packs of its (scenario, seed)."""

    @property
    def id(self) -> str:
        """The trial's id for a one-trial pack, else ``scenario/seed/pack-<k>``."""
        if len(self.trials) == 1:
            return self.trials[0].id
        return f"{self.trials[0].scenario}/{self.trials[0].seed}/pack-{self.index}"

    def spec(self, out: Path) -> dict[str, Any]:
        """The plain-dict form a worker receives: ``id``, ``dir`` (the trial's folder for a one-trial pack, else
        the sweep folder) and ``units``, the trials' :meth:`Trial.spec` in run order."""
        units = [t.spec(out) for t in self.trials]
        return {"id": self.id, "dir": units[0]["dir"] if len(units) == 1 else str(out), "units": units}


def pack_trials(todo: Sequence[Trial], slots: int, per_slot: int = PACKS_PER_SLOT) -> list[Pack]:
    """Cut the trials into packs, in order: the (scenario, seed) groups as they first appear in ``todo``, each
    group's trials in ``todo`` order (the oracle first). Each pack holds at most ``ceil(R / (per_slot × slots))``
    trials, R being the trials not yet packed when it is cut; within that bound a group's packs are near-equal."""
    groups: dict[tuple[str, int], list[Trial]] = {}
    for t in todo:
        groups.setdefault((t.scenario, t.seed), []).append(t)
    share = max(1, per_slot) * max(1, slots)
    left = len(todo)
    packs: list[Pack] = []
    for trials in groups.values():
        start, index = 0, 1
        while start < len(trials):
            rest = len(trials) - start
            cap = max(1, math.ceil(left / share))
            size = math.ceil(rest / math.ceil(rest / cap))  # the rest in near-equal packs of at most cap
            packs.append(Pack(tuple(trials[start:start + size]), index))
            start, index, left = start + size, index + 1, left - size
    return packs


Choice = Literal["ray", "serial"]


def choose_executor(executor: str, n_trials: int, slots: int, address: str | None,
                    cuda_without_gpus: bool = False) -> tuple[Choice, str | None]:
    """The executor to run with and, for ``auto``, why (a line for stderr): Ray on a cluster (``address``) or
    from ``BREAK_EVEN_TRIALS`` trials on a machine with at least 2 slots, else in-process (also for
    ``--device cuda`` without ``--gpus-per-trial``: a Ray trial sees only the GPUs it asked for)."""
    if executor != "auto":
        return ("ray" if executor == "ray" else "serial"), None
    if address is not None:
        return "ray", f"--executor auto: Ray at {address}"
    if cuda_without_gpus:
        return "serial", "--executor auto: --device cuda without --gpus-per-trial, so in-process"
    if slots < 2:
        return "serial", (f"--executor auto: {slots} parallel slot on this machine, so in-process "
                          "(--executor ray to use Ray anyway)")
    if n_trials < BREAK_EVEN_TRIALS:
        return "serial", (f"--executor auto: {n_trials} trial(s), below the break-even of {BREAK_EVEN_TRIALS} on "
                          "this machine, so in-process (--executor ray to use Ray anyway)")
    return "ray", f"--executor auto: {n_trials} trials on {slots} parallel slots: local Ray"
