"""The run-folder schema (DESIGN §9–§10): every result file's columns, how it is written and read back.

This is the only module that writes or parses result files. ``write_run``/``read_run`` turn a run folder's
``metrics.csv``, ``timings.csv`` and ``summary.json`` into typed records and back; the sweep's
``results.csv`` and ``aggregate.csv`` have their own writers and readers here. Every file is written to a
temporary name in the same folder and renamed, so a reader (or a crash) never sees half a file. Numbers are
floats in memory and exact ``repr`` strings on disk, so a value read back prints to the same bytes.

Import-light: torch is imported only by the checkpoint functions (plots, reports and the command line read
result files without it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from clu.config import ConfigError

ORACLE = "retrain"
"""Registry name of the exact-unlearning oracle every gap is measured against."""

FINAL: Literal["final"] = "final"
"""The ``step`` of whole-run rows (their ``event_kind`` is ``run``)."""
Step = int | Literal["final"]

METRICS_HEADER = ("strategy", "seed", "step", "event_kind", "metric", "value")
TIMINGS_HEADER = ("strategy", "seed", "step", "event_kind", "time_s")
RESULTS_HEADER = ("scenario", "strategy", "seed", "step", "event_kind", "metric", "value")
AGGREGATE_HEADER = ("scenario", "strategy", "step", "event_kind", "metric", "mean", "std", "n")

EVENT_METRICS = ("TA", "RA", "FA", "FA_test", "NA", "OA", "MIA", "MIA_attack_acc", "MIA_thr", "KL")
"""The per-event measurements (clu.evaluation), in output order."""
GAPPED = ("TA", "RA", "FA", "FA_test", "MIA")
"""Metrics with a ``<metric>_gap`` column (absolute difference to the oracle)."""
GAP_COLUMNS = (*(f"{m}_gap" for m in GAPPED), "AvgGap")
SUMMARY_EVENT_KEYS = (*EVENT_METRICS, *GAP_COLUMNS)
"""Per-event values of ``summary.json`` and ``metrics.csv`` (then ``acc_task_<t>`` rows)."""
FINAL_CSV_METRICS = ("AvgGap_mean", "AIA", "BWT", "Forgetting")
"""Whole-run figures that ``metrics.csv`` keeps (summary.json also has the time ones)."""
TASK_PREFIX = "acc_task_"


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
    forget_probs: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0)))
    """Softmax on all data forgotten so far (in memory only, for KL to the oracle)."""

    def to_state(self) -> dict[str, Any]:
        import torch  # checkpoints only; see the module docstring

        return {
            "step": self.step,
            "kind": self.kind,
            "values": self.values,
            "per_task": self.per_task,
            "time_s": self.time_s,
            "forget_probs": torch.from_numpy(self.forget_probs),
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> EventRecord:
        return cls(d["step"], d["kind"], d["values"], d["per_task"], d["time_s"], d["forget_probs"].numpy())


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


@dataclass(frozen=True)
class RunData:
    """A run folder read back."""

    scenario: str | None
    """From summary.json (None without one)."""
    seed: int | None
    strategies: tuple[StrategyResult, ...]
    """One per (label, seed) of metrics.csv, in file order."""


@dataclass(frozen=True)
class ResultRow:
    """A row of a sweep's ``results.csv``."""

    scenario: str
    strategy: str
    seed: int
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
    n: int
    """Seeds where the metric applies."""


# ------------------------------------------------------------------------------------ writing files


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def format_value(v: float | None) -> str:
    """CSV cell of a metric: exact repr of the float, empty for a metric that does not apply."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(float(v))


def clean(v: Any) -> float | None:
    """A metric as stored: a finite float or None."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_run(out: Path, scenario: str, seed: int, results: Sequence[StrategyResult]) -> dict[str, Any]:
    """metrics.csv, timings.csv and summary.json for everything recorded so far (atomic rewrites).

    Returns the summary.json content.
    """
    metric_rows: list[tuple[Any, ...]] = []
    time_rows: list[tuple[Any, ...]] = []
    strategies: dict[str, Any] = {}
    for res in results:
        per_event = []
        for r in res.records:
            row: dict[str, Any] = {"step": r.step, "kind": r.kind}
            row.update({m: clean(r.values.get(m)) for m in SUMMARY_EVENT_KEYS})
            row["time_s"] = round(r.time_s or 0.0, 6)
            per_event.append(row)
            for m in SUMMARY_EVENT_KEYS:
                metric_rows.append((res.label, res.seed, r.step, r.kind, m, format_value(row[m])))
            for t, v in r.per_task.items():
                metric_rows.append((res.label, res.seed, r.step, r.kind, f"{TASK_PREFIX}{t}", format_value(v)))
            time_rows.append((res.label, res.seed, r.step, r.kind, repr(row["time_s"])))
        final = {k: v for k, v in (per_event[-1] if per_event else {}).items() if k not in ("step", "kind")}
        final.update(res.final)
        entry: dict[str, Any] = {"name": res.name, "final": final, "per_event": per_event,
                                 "time_s": final.get("time_s")}
        if res.error:
            entry["error"] = res.error
        strategies[res.label] = entry
        if res.records:
            metric_rows += [(res.label, res.seed, FINAL, "run", m, format_value(final.get(m)))
                            for m in FINAL_CSV_METRICS]
    write_atomic(out / "metrics.csv", csv_text(METRICS_HEADER, metric_rows))
    write_atomic(out / "timings.csv", csv_text(TIMINGS_HEADER, time_rows))
    summary = {"scenario": scenario, "seed": seed, "strategies": strategies}
    write_json(out / "summary.json", summary)
    return summary


def results_csv(rows: Iterable[ResultRow]) -> str:
    return csv_text(RESULTS_HEADER, ((r.scenario, r.strategy, r.seed, r.step, r.kind, r.metric,
                                      format_value(r.value)) for r in rows))


def aggregate_csv(rows: Iterable[AggregateRow]) -> str:
    return csv_text(AGGREGATE_HEADER, ((r.scenario, r.strategy, r.step, r.kind, r.metric, format_value(r.mean),
                                        format_value(r.std), r.n) for r in rows))


# ------------------------------------------------------------------------------------ reading files


def _read_csv(path: Path, header: Sequence[str], owner: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file with at least the columns ``header``; errors name ``owner``."""
    if not path.is_file():
        raise ConfigError(f"no {path.name} here (expected a results folder)", file=owner)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            if not columns:
                raise ConfigError(f"{path.name} is empty", file=owner)
            missing = [c for c in header if c not in columns]
            if missing:
                raise ConfigError(f"{path.name} lacks the column(s) {', '.join(missing)}; expected header "
                                  f"{','.join(header)}", file=path)
            return [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"not a readable CSV file ({e})", file=path) from None


def _number(text: str | None) -> float | None:
    """A value cell: a float, None when empty; non-finite values read as None (they are never written)."""
    text = (text or "").strip()
    return clean(float(text)) if text else None


def _step(text: str | None) -> Step:
    text = (text or "").strip()
    return FINAL if text == FINAL else int(text)


def _bad_line(path: Path, line: int, what: str, row: Mapping[str, str], keys: Sequence[str]) -> ConfigError:
    got = " ".join(f"{k}={row.get(k)!r}" for k in keys)
    return ConfigError(f"line {line}: {what}, got {got}", file=path)


def read_run(folder: Path | str) -> RunData:
    """A run folder's metrics.csv (required), timings.csv and summary.json (optional) as typed records."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("no such results folder", file=folder)
    path = folder / "metrics.csv"
    times: dict[tuple[str, int, int], float] = {}
    if (folder / "timings.csv").is_file():
        for line, row in _read_csv(folder / "timings.csv", TIMINGS_HEADER, folder):
            try:
                times[(row["strategy"], int(row["seed"]), int(row["step"]))] = float(row["time_s"])
            except (TypeError, ValueError):
                raise _bad_line(folder / "timings.csv", line, "seed and step must be integers and time_s a number",
                                row, ("seed", "step", "time_s")) from None
    summary = _read_summary(folder)
    entries = summary.get("strategies") if isinstance(summary.get("strategies"), dict) else {}
    groups: dict[tuple[str, int], StrategyResult] = {}
    events: dict[tuple[str, int, int], EventRecord] = {}
    for line, row in _read_csv(path, METRICS_HEADER, folder):
        try:
            seed, step, value = int(row["seed"]), _step(row["step"]), _number(row["value"])
        except (TypeError, ValueError):
            raise _bad_line(path, line, "seed must be an integer, step an integer or 'final' and value a number "
                            "or empty", row, ("seed", "step", "value")) from None
        label = row["strategy"]
        res = groups.get((label, seed))
        if res is None:
            entry = entries.get(label) if isinstance(entries.get(label), dict) else {}
            res = groups[(label, seed)] = StrategyResult(label, str(entry.get("name", label)), seed,
                                                         error=entry.get("error"))
        if step == FINAL:
            res.final[row["metric"]] = value
            continue
        rec = events.get((label, seed, step))
        if rec is None:
            rec = EventRecord(step, row["event_kind"], {}, {}, times.get((label, seed, step)))
            events[(label, seed, step)] = rec
            res.records.append(rec)
        metric = row["metric"]
        if metric.startswith(TASK_PREFIX) and metric[len(TASK_PREFIX):].isdigit():
            rec.per_task[int(metric[len(TASK_PREFIX):])] = value
        else:
            rec.values[metric] = value
    seed = summary.get("seed")
    return RunData(str(summary["scenario"]) if summary.get("scenario") else None,
                   seed if isinstance(seed, int) else None, tuple(groups.values()))


def _read_summary(folder: Path) -> dict[str, Any]:
    """summary.json is optional: without it (or when unreadable) names and titles fall back to labels."""
    try:
        data = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_results(path: Path) -> list[ResultRow]:
    """A sweep's results.csv."""
    out = []
    for line, row in _read_csv(path, RESULTS_HEADER, path):
        try:
            out.append(ResultRow(row["scenario"], row["strategy"], int(row["seed"]), _step(row["step"]),
                                 row["event_kind"], row["metric"], _number(row["value"])))
        except (TypeError, ValueError):
            raise _bad_line(path, line, "seed must be an integer, step an integer or 'final' and value a number "
                            "or empty", row, ("seed", "step", "value")) from None
    return out


def read_aggregate(path: Path) -> list[AggregateRow]:
    """A sweep's aggregate.csv."""
    out = []
    for line, row in _read_csv(path, AGGREGATE_HEADER, path):
        try:
            out.append(AggregateRow(row["scenario"], row["strategy"], _step(row["step"]), row["event_kind"],
                                    row["metric"], _number(row["mean"]), _number(row["std"]), int(row["n"] or 0)))
        except (TypeError, ValueError):
            raise _bad_line(path, line, "step must be an integer or 'final', mean/std numbers or empty and n an "
                            "integer", row, ("step", "mean", "std", "n")) from None
    return out


# ---------------------------------------------------------------------------------------- the folder


def check_out(path: Path, *, resume: bool = False) -> None:
    """The checks of :func:`prepare_out` that need no writing: bad arguments leave no folder behind."""
    if path.exists() and not path.is_dir():
        raise ConfigError("--out exists and is not a folder", file=path)
    if not resume and path.is_dir() and any(path.iterdir()):
        raise ConfigError("--out is not empty; choose a new folder (or --resume it)", file=path)
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--out cannot be created: {parent} is not a folder", file=path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out is not writable (no write permission on {parent})", file=path)


def prepare_out(path: Path, *, resume: bool = False) -> Path:
    """Create the results folder; refuse a non-empty one unless resuming, and an unwritable one.

    Resuming removes the temporary files a killed run may have left behind (half-written checkpoints).
    """
    check_out(path, resume=resume)
    if resume and path.is_dir():
        for stale in path.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out is not writable ({e.strerror})", file=path) from None
    return path


# -------------------------------------------------------------------------------------- checkpoints


def checkpoint_path(run_dir: Path, label: str, event_index: int) -> Path:
    return run_dir / "checkpoints" / label / f"event-{event_index:03d}.pt"


def save_checkpoint(run_dir: Path, label: str, event_index: int, payload: dict[str, Any]) -> Path:
    """Strategy state + records so far after event ``event_index`` (atomic)."""
    import torch  # checkpoints only; see the module docstring

    buf = io.BytesIO()
    torch.save({"event_index": event_index, **payload}, buf)
    path = checkpoint_path(run_dir, label, event_index)
    write_atomic(path, buf.getvalue())
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch  # checkpoints only; see the module docstring

    return torch.load(path, map_location="cpu", weights_only=False)


def latest_checkpoint(run_dir: Path, label: str) -> Path | None:
    files = sorted((run_dir / "checkpoints" / label).glob("event-*.pt"))
    return files[-1] if files else None
