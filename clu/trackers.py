"""clu's per-event measurements to the trackers researchers watch: TensorBoard, a live CSV, Weights & Biases,
and (in a sweep trial) Ray Tune.

What goes out, and when (:class:`Publisher`):

* a unit's **own** measurements (TA, RA, FA, MIA, ..., ``acc_task_<t>``, ``FA_req_<id>``, ``time_s``) as soon as
  its event is evaluated;
* what is **joined** across units (gaps, AvgGap, KL, LiRA, KLoM, the harder tests, the whole-run figures) when
  the runner joins them: after every finished replica and at the end (:mod:`clu.joint`; the oracle of the same
  replica must have run first). A whole-run figure is published at the unit's last event step.

Every value is the one ``metrics.csv`` holds (``time_s``: ``timings.csv``), and each (strategy, step, metric) goes
out once. Tags are ``<strategy>/<metric>`` (``<strategy> [k]`` for replica k of a multi-replica run, ``[all]`` for
the cross-replica KLoM); the x-axis is the event step. Values that do not apply (null) are not published.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from clu.config import ConfigError
from clu.files import clean, csv_text, format_value, write_atomic
from clu.records import ALL, FINAL, EventRecord, Unit, UnitSpec

TRACKERS = ("tensorboard", "csv", "wandb")
"""The names ``--log`` (and ``clu.run(log=...)``) accept."""
TENSORBOARD_DIR = "tensorboard"
"""TensorBoard's event files, under the run folder (``tensorboard --logdir RUN/tensorboard``)."""
LIVE_CSV = "live.csv"
"""The csv tracker's file, under the run folder: every value published so far (rewritten atomically)."""
LIVE_HEADER = ("strategy", "replica", "step", "event_kind", "metric", "value")
WANDB_EXTRA = "pip install 'clu-sim[wandb]'"


@dataclass(frozen=True)
class Point:
    """One published value."""

    strategy: str
    """The tag prefix: the label, with `` [k]`` for replica k of a multi-replica run."""
    replica: int | str
    step: int
    kind: str
    metric: str
    value: float


class Tracker(Protocol):
    """Where points go. ``publish`` gets the points of one moment (one event, or one join)."""

    def publish(self, points: Sequence[Point]) -> None: ...

    def close(self) -> None: ...


def check_log(log: Iterable[Any]) -> tuple[Any, ...]:
    """``log`` as given (tracker names and/or Tracker objects); an unknown name, or ``wandb`` without the
    package, is a ConfigError naming it (raised before anything is written)."""
    items = (log,) if isinstance(log, str) else tuple(log)
    for item in items:
        if isinstance(item, str):
            if item not in TRACKERS:
                raise ConfigError(f"unknown tracker {item!r}; choose from {', '.join(TRACKERS)}", key="log")
            if item == "wandb" and "wandb" not in sys.modules and importlib.util.find_spec("wandb") is None:
                raise ConfigError(f"--log wandb needs the wandb package: {WANDB_EXTRA}", key="log")
        elif not (callable(getattr(item, "publish", None)) and callable(getattr(item, "close", None))):
            raise ConfigError(f"expected a tracker name or an object with publish() and close(), got "
                              f"{type(item).__name__}", key="log")
    return items


def open_trackers(log: Sequence[Any], out: Path, run_name: str, meta: dict[str, Any]) -> list[Tracker]:
    """Tracker objects for ``log`` (names opened on the run folder ``out``; objects passed through)."""
    made: list[Tracker] = []
    for item in log:
        if item == "tensorboard":
            made.append(TensorBoardTracker(out / TENSORBOARD_DIR))
        elif item == "csv":
            made.append(CsvTracker(out / LIVE_CSV))
        elif item == "wandb":
            made.append(WandbTracker(out, run_name, meta))
        else:
            made.append(item)
    return made


class Publisher:
    """Sends each (strategy, step, metric) once to every tracker: own values live, joined ones at each join."""

    def __init__(self, trackers: Sequence[Tracker], replicas: int) -> None:
        self.trackers = list(trackers)
        self.replicas = replicas
        self._sent: set[tuple[str, int, str]] = set()

    def name(self, spec: UnitSpec) -> str:
        return spec.label if self.replicas == 1 and spec.replica != ALL else f"{spec.label} [{spec.replica}]"

    def event(self, spec: UnitSpec, record: EventRecord) -> None:
        """A unit's own measurements at one event (shadow oracles are no reported row: skipped)."""
        if spec.role != "shadow":
            self._send(record_points(self.name(spec), spec.replica, record))

    def joined(self, units: Sequence[Unit]) -> None:
        """The joined units' values not sent yet (gaps, AvgGap, KL, LiRA, ..., the whole-run figures)."""
        self._send([p for u in units if u.spec.role != "shadow" for p in unit_points(self.name(u.spec), u)])

    def close(self) -> None:
        for t in self.trackers:
            t.close()

    def _send(self, points: Sequence[Point]) -> None:
        new = [p for p in points if (p.strategy, p.step, p.metric) not in self._sent]
        self._sent.update((p.strategy, p.step, p.metric) for p in new)
        if new:
            for t in self.trackers:
                t.publish(new)


def record_points(name: str, replica: int | str, record: EventRecord) -> list[Point]:
    """One event's values as metrics.csv will hold them (the join adds the rest), plus ``time_s``."""
    from clu.results import unit_rows  # deferred: clu.results imports plotting helpers

    rows = unit_rows(Unit(UnitSpec(name, name, 1, 0, 0, "strategy"), [record]))
    points = _points(name, replica, [r for r in rows if r[0] != FINAL], record.step)
    if record.time_s is not None:
        points.append(Point(name, replica, record.step, record.kind, "time_s", round(record.time_s, 6)))
    return points


def unit_points(name: str, unit: Unit) -> list[Point]:
    """A joined unit's metrics.csv rows as points; the whole-run figures at its last event step."""
    from clu.results import unit_rows

    last = unit.records[-1].step if unit.records else 0
    return _points(name, unit.spec.replica, unit_rows(unit), last)


def _points(name: str, replica: int | str, rows: Iterable[tuple[Any, str, str, str]], last: int) -> list[Point]:
    return [Point(name, replica, last if step == FINAL else int(step), kind, metric, float(cell))
            for step, kind, metric, cell in rows if cell != ""]


# ------------------------------------------------------------------------------------------------ trackers


class TensorBoardTracker:
    """Scalars ``<strategy>/<metric>`` at the event step, through torch's TensorBoard writer."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs tensorboard>=2.21 (DESIGN §3)

        self.writer = SummaryWriter(log_dir=str(folder))

    def publish(self, points: Sequence[Point]) -> None:
        for p in points:
            self.writer.add_scalar(f"{p.strategy}/{p.metric}", p.value, p.step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class CsvTracker:
    """``live.csv``: every point so far in long format, rewritten atomically after each publish (``tail`` it, or
    read it while the run goes on; metrics.csv is written per finished replica)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[tuple[Any, ...]] = []

    def publish(self, points: Sequence[Point]) -> None:
        self.rows += [(p.strategy, p.replica, p.step, p.kind, p.metric, format_value(clean(p.value))) for p in points]
        write_atomic(self.path, csv_text(LIVE_HEADER, self.rows))

    def close(self) -> None:
        pass


class WandbTracker:
    """One W&B run per clu run, offline unless ``WANDB_MODE`` says otherwise (files under ``RUN/wandb``; upload
    later with ``wandb sync``). The x-axis is the logged ``event_step``: units log their steps one after another."""

    def __init__(self, out: Path, name: str, meta: dict[str, Any]) -> None:
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "clu"), name=name, dir=str(out),
                              mode=os.environ.get("WANDB_MODE", "offline"), config=meta)
        self.run.define_metric("event_step")
        self.run.define_metric("*", step_metric="event_step")

    def publish(self, points: Sequence[Point]) -> None:
        by_step: dict[int, dict[str, float]] = defaultdict(dict)
        for p in points:
            by_step[p.step][f"{p.strategy}/{p.metric}"] = p.value
        for step, values in sorted(by_step.items()):
            self.run.log({"event_step": step, **values})

    def close(self) -> None:
        self.run.finish()


class TuneTracker:
    """A sweep trial's points to Ray Tune, one result per (strategy, step): Tune's callbacks, loggers and the
    trial analysis see ``event_step``, ``event_kind``, ``strategy`` and the metrics. ``report`` sends one result
    (the Ray executor's background reporter, which calls ``ray.tune.report``)."""

    def __init__(self, report: Callable[[dict[str, Any]], None]) -> None:
        self.report = report

    def publish(self, points: Sequence[Point]) -> None:
        groups: dict[tuple[str, int, str], dict[str, float]] = defaultdict(dict)
        for p in points:
            groups[(p.strategy, p.step, p.kind)][p.metric] = p.value
        for (strategy, step, kind), values in groups.items():
            self.report({"strategy": strategy, "event_step": step, "event_kind": kind, **values})

    def close(self) -> None:
        pass


__all__ = ["LIVE_CSV", "TENSORBOARD_DIR", "TRACKERS", "CsvTracker", "Point", "Publisher", "TensorBoardTracker",
           "Tracker", "TuneTracker", "WandbTracker", "check_log", "open_trackers"]
