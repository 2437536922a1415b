"""The run-folder schema (DESIGN §9–§10): every result file's columns, how it is written and read back.

This is the only module that writes or parses result files. ``write_run``/``read_run`` turn a run folder's
``metrics.csv``, ``timings.csv`` and ``summary.json`` into typed records and back; the sweep's
``results.csv`` and ``aggregate.csv`` have their own writers and readers here. Every file is written to a
temporary name in the same folder and renamed, so a reader (or a crash) never sees half a file. Numbers are
floats in memory and exact ``repr`` strings on disk, so a value read back prints to the same bytes.

The records and column names live in :mod:`clu.records` (re-exported here), checkpoints in
:mod:`clu.checkpoints`. Import-light: no torch (plots, reports and the command line read result files
without it). Atomic writing and the output folder live in :mod:`clu.files` (re-exported here).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from clu.config import ConfigError
from clu.files import check_out, clean, csv_text, format_value, prepare_out, write_atomic, write_json
from clu.margins import margins_bytes, parse_margins
from clu.records import (
    AGGREGATE_HEADER,
    ALL,
    EVENT_METRICS,
    FINAL,
    FINAL_CSV_METRICS,
    GAP_COLUMNS,
    GAPPED,
    KLOM_METRICS,
    LIRA_GAP_COLUMNS,
    LIRA_METRICS,
    METRICS_HEADER,
    ORACLE,
    OWN_METRICS,
    REQUEST_PREFIX,
    RESULTS_HEADER,
    SUMMARY_EVENT_KEYS,
    TASK_PREFIX,
    TIMINGS_HEADER,
    TWIN,
    AggregateRow,
    EventRecord,
    Replica,
    ResultRow,
    Role,
    RunData,
    Step,
    StrategyResult,
    Unit,
    UnitSpec,
)

__all__ = [  # the records and column names (clu.records) are part of this module's interface
    "AGGREGATE_HEADER", "ALL", "EVENT_METRICS", "FINAL", "FINAL_CSV_METRICS", "GAP_COLUMNS", "GAPPED", "KLOM_METRICS",
    "LIRA_GAP_COLUMNS", "LIRA_METRICS", "METRICS_HEADER", "ORACLE", "PARTIAL_RUN_GAPS", "RESULTS_HEADER",
    "SUMMARY_EVENT_KEYS", "TASK_PREFIX", "TIMINGS_HEADER", "TWIN", "UNITS_FILE", "AggregateRow", "EventRecord",
    "Replica", "ResultRow",
    "Role", "RunData", "Step", "StrategyResult", "Unit", "UnitSpec", "aggregate_csv", "check_out", "clean",
    "csv_text", "format_value", "margins_path", "prepare_out", "read_aggregate", "read_checkpoint_policy",
    "read_results", "read_run",
    "read_units", "read_units_manifest", "results_csv", "safe_label", "summary_entries", "unit_folder", "unit_rows",
    "write_atomic", "write_json", "write_margins", "write_run", "write_units_manifest",
]

def unit_rows(unit: Unit) -> list[tuple[Step, str, str, str]]:
    """A joined unit's ``(step, event_kind, metric, value cell)`` rows, in file order (metrics.csv and the
    sweep's results.csv prefix them): per event the SUMMARY_EVENT_KEYS (KLOM_METRICS for replica ``all``)
    then ``acc_task_<t>`` and ``FA_req_<id>``; then the whole-run FINAL_CSV_METRICS."""
    keys = KLOM_METRICS if unit.spec.replica == ALL else SUMMARY_EVENT_KEYS
    rows: list[tuple[Step, str, str, str]] = []
    for r in unit.records:
        rows += [(r.step, r.kind, m, format_value(clean(r.values.get(m)))) for m in keys]
        rows += [(r.step, r.kind, f"{TASK_PREFIX}{t}", format_value(v)) for t, v in r.per_task.items()]
        rows += [(r.step, r.kind, f"{REQUEST_PREFIX}{k}", format_value(v)) for k, v in r.per_request.items()]
    if unit.records and unit.spec.replica != ALL:
        rows += [(FINAL, "run", m, format_value(clean(unit.final.get(m)))) for m in FINAL_CSV_METRICS]
    return rows


def _per_event(unit: Unit) -> list[dict[str, Any]]:
    out = []
    for r in unit.records:
        row: dict[str, Any] = {"step": r.step, "kind": r.kind}
        row.update({m: clean(r.values.get(m)) for m in SUMMARY_EVENT_KEYS})
        row["time_s"] = round(r.time_s or 0.0, 6)
        out.append(row)
    return out


def _final(unit: Unit, per_event: list[dict[str, Any]]) -> dict[str, Any]:
    final = {k: v for k, v in (per_event[-1] if per_event else {}).items() if k not in ("step", "kind")}
    final.update(unit.final)
    return final


def _mean_dicts(dicts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Key-wise mean of the values that exist (None when none does); one dict comes back as it is."""
    if len(dicts) == 1:
        return dict(dicts[0])
    out: dict[str, Any] = {}
    for d in dicts:
        for k in d:
            out.setdefault(k, None)
    for k in out:
        vals = [clean(d.get(k)) for d in dicts]
        vals = [v for v in vals if v is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def summary_entries(units: Sequence[Unit]) -> dict[str, Any]:
    """summary.json's ``strategies``: per label, the mean over its replicas of ``final`` and ``per_event``
    (a single replica's values as they are), ``replicas``, and for R > 1 ``per_replica`` finals; the
    cross-replica (``all``) values join the per-event rows of their step and the final of the last step."""
    by_label: dict[str, list[Unit]] = {}
    for u in units:
        by_label.setdefault(u.spec.label, []).append(u)
    entries: dict[str, Any] = {}
    for label, group in by_label.items():
        reps = [u for u in group if u.spec.replica != ALL]
        cross = {r.step: r.values for u in group if u.spec.replica == ALL for r in u.records}
        if not reps:
            continue
        events = [_per_event(u) for u in reps]
        finals = [_final(u, ev) for u, ev in zip(reps, events)]
        steps = list(dict.fromkeys(row["step"] for ev in events for row in ev))
        per_event = []
        for step in steps:
            rows = [row for ev in events for row in ev if row["step"] == step]
            row = {"step": step, "kind": rows[0]["kind"], **_mean_dicts([{k: v for k, v in r.items()
                                                                          if k not in ("step", "kind")} for r in rows])}
            row.update({m: clean(v) for m, v in cross.get(step, {}).items()})
            per_event.append(row)
        final = _mean_dicts(finals)
        if steps:
            final.update({m: clean(v) for m, v in cross.get(steps[-1], {}).items()})
        entry: dict[str, Any] = {"name": reps[0].spec.name, "final": final, "per_event": per_event,
                                 "time_s": final.get("time_s"), "replicas": len(reps)}
        if len(reps) > 1:
            entry["per_replica"] = [{"replica": u.spec.replica, "final": f} for u, f in zip(reps, finals)]
        errors = [(u.spec.replica, u.error) for u in reps if u.error]
        if errors:
            entry["error"] = errors[0][1] if len(reps) == 1 else "; ".join(f"replica {k}: {e}" for k, e in errors)
        entries[label] = entry
    return entries


PARTIAL_RUN_GAPS = ("this folder runs one unit of a sweep on its own, so what compares it with other units (the "
                    "gaps to the oracle, AvgGap, KL, LiRA, KLoM) is null here; the sweep's results.csv holds it, "
                    "joined across the trials (the oracle's, the shadows')")
"""summary.json's ``gaps`` entry in a folder that runs part of a run's units (a sweep trial)."""


def write_run(out: Path, scenario: str, seed: int, units: Sequence[Unit], *, partial: bool = False) -> dict[str, Any]:
    """metrics.csv, timings.csv and summary.json from joined units (:func:`clu.joint.join`; atomic rewrites).

    ``partial``: the units are part of a run (a sweep trial's one): summary.json's ``gaps`` says where its
    joined figures are (:data:`PARTIAL_RUN_GAPS`). Returns the summary.json content.
    """
    metric_rows = [(u.spec.label, seed, u.spec.replica, *row) for u in units for row in unit_rows(u)]
    time_rows = [(u.spec.label, seed, u.spec.replica, r.step, r.kind, repr(round(r.time_s or 0.0, 6)))
                 for u in units if u.spec.replica != ALL for r in u.records]
    write_atomic(out / "metrics.csv", csv_text(METRICS_HEADER, metric_rows))
    write_atomic(out / "timings.csv", csv_text(TIMINGS_HEADER, time_rows))
    summary: dict[str, Any] = {"scenario": scenario, "seed": seed}
    if partial:
        summary["gaps"] = PARTIAL_RUN_GAPS
    summary["strategies"] = summary_entries(units)
    write_json(out / "summary.json", summary)
    return summary


def results_csv(rows: Iterable[ResultRow]) -> str:
    return csv_text(RESULTS_HEADER, ((r.scenario, r.strategy, r.seed, r.replica, r.step, r.kind, r.metric,
                                      format_value(r.value)) for r in rows))


def aggregate_csv(rows: Iterable[AggregateRow]) -> str:
    return csv_text(AGGREGATE_HEADER, ((r.scenario, r.strategy, r.step, r.kind, r.metric, format_value(r.mean),
                                        format_value(r.std), format_value(r.ci95), r.n) for r in rows))


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


def _replica(text: str | None) -> Replica:
    text = (text or "").strip()
    return ALL if text == ALL else int(text)


def _bad_line(path: Path, line: int, what: str, row: Mapping[str, str], keys: Sequence[str]) -> ConfigError:
    got = " ".join(f"{k}={row.get(k)!r}" for k in keys)
    return ConfigError(f"line {line}: {what}, got {got}", file=path)


def read_run(folder: Path | str) -> RunData:
    """A run folder's metrics.csv (required), timings.csv and summary.json (optional) as typed records."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("no such results folder", file=folder)
    path = folder / "metrics.csv"
    times: dict[tuple[str, int, Replica, int], float] = {}
    if (folder / "timings.csv").is_file():
        for line, row in _read_csv(folder / "timings.csv", TIMINGS_HEADER, folder):
            try:
                times[(row["strategy"], int(row["seed"]), _replica(row["replica"]), int(row["step"]))] = \
                    float(row["time_s"])
            except (TypeError, ValueError):
                raise _bad_line(folder / "timings.csv", line, "seed, replica and step must be integers and time_s "
                                "a number", row, ("seed", "replica", "step", "time_s")) from None
    summary = _read_summary(folder)
    entries = summary.get("strategies") if isinstance(summary.get("strategies"), dict) else {}
    groups: dict[tuple[str, int, Replica], StrategyResult] = {}
    events: dict[tuple[str, int, Replica, int], EventRecord] = {}
    for line, row in _read_csv(path, METRICS_HEADER, folder):
        try:
            seed, replica = int(row["seed"]), _replica(row["replica"])
            step, value = _step(row["step"]), _number(row["value"])
        except (TypeError, ValueError):
            raise _bad_line(path, line, "seed must be an integer, replica an integer or 'all', step an integer or "
                            "'final' and value a number or empty", row, ("seed", "replica", "step", "value")) from None
        label = row["strategy"]
        res = groups.get((label, seed, replica))
        if res is None:
            entry = entries.get(label) if isinstance(entries.get(label), dict) else {}
            res = groups[(label, seed, replica)] = StrategyResult(label, str(entry.get("name", label)), seed,
                                                                  error=entry.get("error"), replica=replica)
        if step == FINAL:
            res.final[row["metric"]] = value
            continue
        rec = events.get((label, seed, replica, step))
        if rec is None:
            rec = EventRecord(step, row["event_kind"], {}, {}, times.get((label, seed, replica, step)))
            events[(label, seed, replica, step)] = rec
            res.records.append(rec)
        metric = row["metric"]
        if metric.startswith(TASK_PREFIX) and metric[len(TASK_PREFIX):].isdigit():
            rec.per_task[int(metric[len(TASK_PREFIX):])] = value
        elif metric.startswith(REQUEST_PREFIX) and metric[len(REQUEST_PREFIX):].isdigit():
            rec.per_request[int(metric[len(REQUEST_PREFIX):])] = value
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
            out.append(ResultRow(row["scenario"], row["strategy"], int(row["seed"]), _replica(row["replica"]),
                                 _step(row["step"]), row["event_kind"], row["metric"], _number(row["value"])))
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
                                    row["metric"], _number(row["mean"]), _number(row["std"]), _number(row["ci95"]),
                                    int(row["n"] or 0)))
        except (TypeError, ValueError):
            raise _bad_line(path, line, "step must be an integer or 'final', mean/std numbers or empty and n an "
                            "integer", row, ("step", "mean", "std", "n")) from None
    return out


# ------------------------------------------------------------------------------------- unit folders


def safe_label(label: str) -> str:
    """A label as a folder name: runs of characters other than letters, digits, ``.``, ``_``, ``-`` become one
    ``-`` (``retrain (twin)`` → ``retrain-twin``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "-"


def unit_folder(run_dir: Path, kind: str, spec: UnitSpec) -> Path:
    """``<run_dir>/<kind>/<safe label>`` (checkpoints, margins)."""
    return run_dir / kind / safe_label(spec.label)


# -------------------------------------------------------------------------------------------- margins


def margins_path(run_dir: Path, spec: UnitSpec) -> Path:
    """``margins/<safe label>/replica-<k>.npz``: one unit's margins (:mod:`clu.margins`; no sample ids)."""
    return unit_folder(run_dir, "margins", spec) / f"replica-{spec.replica}.npz"


def write_margins(run_dir: Path, unit: Unit) -> Path:
    """The unit's margins file, from the margins of its records (atomic)."""
    path = margins_path(run_dir, unit.spec)
    write_atomic(path, margins_bytes({r.step: r.margins for r in unit.records if r.margins is not None}))
    return path


UNITS_FILE = "units.json"
"""A run or trial folder's manifest: the specs of the units it runs, in run order."""


def write_units_manifest(run_dir: Path, specs: Sequence[UnitSpec], checkpoints: str = "all") -> None:
    """units.json: the run's units in run order and which checkpoints it keeps (``--checkpoints``)."""
    write_json(run_dir / UNITS_FILE, {"units": [dataclasses.asdict(s) for s in specs], "checkpoints": checkpoints})


def read_checkpoint_policy(run_dir: Path) -> str | None:
    """The ``--checkpoints`` policy units.json records; None for runs made before it was recorded."""
    try:
        return json.loads((run_dir / UNITS_FILE).read_text()).get("checkpoints")
    except (OSError, ValueError, AttributeError):
        return None


def read_units_manifest(run_dir: Path) -> list[UnitSpec]:
    path = run_dir / UNITS_FILE
    try:
        return [UnitSpec(**d) for d in json.loads(path.read_text())["units"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"not a readable units manifest ({e})", file=path) from None


def read_units(folder: Path | str, specs: Sequence[UnitSpec] | None = None) -> list[Unit]:
    """The units of a run or sweep-trial folder (``specs``, default: its units.json): records from
    metrics.csv/timings.csv (the unit's label and replica; only the unit's own measurements are kept, the
    joined ones are recomputed by :func:`clu.joint.join`), margins from ``margins/``. A unit without rows
    (a shadow oracle) has records made of its margins alone (kind ""); none without a margins file either
    (not run yet, or diverged at its first event); a record without margins has None."""
    folder = Path(folder)
    specs = read_units_manifest(folder) if specs is None else specs
    run = read_run(folder)
    by_key = {(s.label, s.replica): s for s in run.strategies}
    units = []
    for spec in specs:
        res = by_key.get((spec.label, spec.replica))
        unit = Unit(spec, list(res.records) if res else [], res.error if res else None)
        path = margins_path(folder, spec)
        margins = parse_margins(path.read_bytes()) if path.is_file() else {}
        for r in unit.records:
            r.values = {m: v for m, v in r.values.items() if m in _RAW}
            r.margins = margins.get(r.step)
        if res is None:  # a shadow oracle: it has no rows, only its margins (all the attack needs)
            unit.records = [EventRecord(step, "", {}, {}, None, m) for step, m in margins.items()]
        units.append(unit)
    return units


_RAW = OWN_METRICS
"""The per-event values a unit measures itself (everything else is the join's)."""
