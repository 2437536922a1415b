"""The records of a run in memory and the names of its result columns (DESIGN §9–§10).

Constants (labels, headers, metric names in output order) and the dataclasses that :mod:`clu.results`
writes and reads: an event's record, a unit (one model trajectory) and its spec, a strategy's rows read
back, and the rows of a sweep's files. :mod:`clu.results` re-exports every name; import from there.
Import-light: numpy only (through :mod:`clu.margins`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from clu.margins import EventMargins, margins_bytes, parse_margins

ORACLE = "retrain"
"""Registry name of the exact-unlearning oracle every gap is measured against."""
TWIN = "retrain (twin)"
"""Label of the oracle's twin (same init, another batch order): the noise floor of every gap."""
ALL: Literal["all"] = "all"
"""The ``replica`` of cross-replica rows (KLoM)."""
Replica = int | Literal["all"]
Role = Literal["oracle", "twin", "shadow", "strategy"]

FINAL: Literal["final"] = "final"
"""The ``step`` of whole-run rows (their ``event_kind`` is ``run``)."""
Step = int | Literal["final"]

METRICS_HEADER = ("strategy", "seed", "replica", "step", "event_kind", "metric", "value")
TIMINGS_HEADER = ("strategy", "seed", "replica", "step", "event_kind", "time_s")
RESULTS_HEADER = ("scenario", "strategy", "seed", "replica", "step", "event_kind", "metric", "value")
AGGREGATE_HEADER = ("scenario", "strategy", "step", "event_kind", "metric", "mean", "std", "ci95", "n")

EVENT_METRICS = ("TA", "RA", "FA", "FA_test", "NA", "OA", "MIA", "MIA_attack_acc", "MIA_thr", "KL")
"""The per-event measurements (clu.evaluation; KL from the joint post-processing), in output order."""
LIRA_METRICS = ("LiRA_AUC", "LiRA_TPR1", "LiRA_TPR5", "LiRA_AUC_before", "LiRA_TPR1_before", "LiRA_TPR5_before")
"""The per-example membership attack (clu.joint); ``*_before`` at request events only."""
GAPPED = ("TA", "RA", "FA", "FA_test", "MIA")
"""Metrics with a ``<metric>_gap`` column (absolute difference to the oracle)."""
GAP_COLUMNS = (*(f"{m}_gap" for m in GAPPED), "AvgGap")
LIRA_GAP_COLUMNS = ("LiRA_AUC_gap", "AvgGap_L", "dAvgGap")
HARDER_COLUMNS = ("Relearn_FA", "Relearn_FA_gap", "FA_resurface", "FA_resurface_step")
"""The harder tests (DESIGN §8): the relearning attack (clu.relearn; at request events and the final event) and
its gap to the oracle; per request (at its own event) the highest FA of its samples at a later event and that
event's step (clu.joint, from the ``FA_req_<id>`` rows)."""
SUMMARY_EVENT_KEYS = (*EVENT_METRICS, *LIRA_METRICS, *GAP_COLUMNS, *LIRA_GAP_COLUMNS, *HARDER_COLUMNS)
"""Per-event values of ``summary.json`` and ``metrics.csv`` (then ``acc_task_<t>`` and ``FA_req_<id>`` rows)."""
OWN_METRICS = frozenset({"TA", "RA", "FA", "FA_test", "NA", "OA", "MIA", "MIA_attack_acc", "MIA_thr", "Relearn_FA"})
"""The per-event values a unit measures itself (everything else is the join's)."""
KLOM_METRICS = ("KLoM", "KLoM_p95")
"""Cross-replica metrics (replica ``all``; request events and the final event)."""
FINAL_CSV_METRICS = ("AvgGap_mean", "AIA", "BWT", "Forgetting", "AvgGap_req", "AvgGap_L_mean", "AvgGap_L_req",
                     "dAvgGap_mean", "FA_resurface_max")
"""Whole-run figures that ``metrics.csv`` keeps (summary.json also has the time ones)."""
TASK_PREFIX = "acc_task_"
REQUEST_PREFIX = "FA_req_"
"""``FA_req_<request id>`` rows: a request's FA on its own samples at every event from it on."""


# ------------------------------------------------------------------------------------------- records


@dataclass
class EventRecord:
    """What one event produced for one strategy."""

    step: int
    kind: str
    values: dict[str, float | None]
    """Per-event metrics (gaps added once the oracle's record is known), in output order."""
    per_task: dict[int, float | None]
    """Test accuracy per learned task (a row of the accuracy matrix)."""
    time_s: float | None
    """Wall seconds of the event; None when read from a folder without timings.csv."""
    margins: EventMargins | None = field(repr=False, default=None)
    """Margins on the attack set and softmax on D_U* (the margins file; for KL, LiRA and KLoM)."""
    per_request: dict[int, float | None] = field(default_factory=dict)
    """FA of every request so far on its own still-forgotten samples, by request id (resurfacing)."""

    def to_state(self) -> dict[str, Any]:
        """A checkpoint's form (numpy arrays, no torch tensors)."""
        return {"step": self.step, "kind": self.kind, "values": self.values, "per_task": self.per_task,
                "time_s": self.time_s, "margins": None if self.margins is None else margins_bytes({0: self.margins}),
                "per_request": self.per_request}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> EventRecord:
        margins = parse_margins(d["margins"])[0] if d.get("margins") is not None else None
        return cls(d["step"], d["kind"], d["values"], d["per_task"], d["time_s"], margins, d.get("per_request", {}))


@dataclass
class StrategyResult:
    """One strategy's records in one run (one seed)."""

    label: str
    """The name it is reported under."""
    name: str
    """Its registry name."""
    seed: int
    records: list[EventRecord] = field(default_factory=list)
    error: str | None = None
    """Why it stopped early (divergence), if it did."""
    final: dict[str, float | None] = field(default_factory=dict)
    """Whole-run figures (clu.summary.final_metrics)."""
    replica: Replica = 1
    """Its training replica (``all``: the cross-replica rows)."""


@dataclass(frozen=True)
class UnitSpec:
    """One model trajectory over the events of a run: a strategy, the oracle, its twin or a shadow oracle."""

    label: str
    """The name it is reported under (folder-safe form: :func:`safe_label`)."""
    name: str
    """Its registry name."""
    replica: Replica
    """Training replica 1..R (shadow oracles beyond the replicas: 1; ``all``: a joined cross-replica unit)."""
    init_seed: int
    """Seed of the initial weights."""
    order_seed: int
    """Seed of the batch order and buffer draws."""
    role: Role
    """oracle | twin | shadow | strategy."""


@dataclass
class Unit:
    """A unit's records (with their margins) as run, read back or joined (:func:`clu.joint.join`)."""

    spec: UnitSpec
    records: list[EventRecord] = field(default_factory=list)
    error: str | None = None
    """Why it stopped early (divergence), if it did."""
    final: dict[str, float | None] = field(default_factory=dict)
    """Whole-run figures (filled by the join)."""


@dataclass(frozen=True)
class RunData:
    """A run folder read back."""

    scenario: str | None
    """From summary.json (None without one)."""
    seed: int | None
    strategies: tuple[StrategyResult, ...]
    """One per (label, seed, replica) of metrics.csv, in file order."""


@dataclass(frozen=True)
class ResultRow:
    """A row of a sweep's ``results.csv``."""

    scenario: str
    strategy: str
    seed: int
    replica: Replica
    step: Step
    kind: str
    metric: str
    value: float | None


@dataclass(frozen=True)
class AggregateRow:
    """A row of a sweep's ``aggregate.csv``: a metric over seeds."""

    scenario: str
    strategy: str
    step: Step
    kind: str
    metric: str
    mean: float | None
    std: float | None
    """Sample standard deviation (ddof=1); None when n < 2."""
    ci95: float | None
    """Half-width of the 95 % t confidence interval of the mean; None when n < 2."""
    n: int
    """Seeds where the metric applies."""
