"""``clu audit DIR``: the privacy audit of a run folder (DESIGN §12).

After an unlearn request no forgotten sample id may survive anywhere in the run folder except in
``events.jsonl`` (the request itself) and the metrics. The audit replays the event stream to know, after
every event, which ids are forgotten (an id forgotten at step k and learned again at a step j > k is allowed
again from j on), then checks:

- every checkpoint ``checkpoints/<label>/event-NNN.pt`` against the ids forgotten up to its event;
- every other artefact (``config.toml``, ``summary.json``, ``timings.csv``, other JSON/TOML/CSV/``.pt``
  files) against the ids forgotten by the end of the stream;
- that ``summary.json`` reports a final FA for every strategy of the run that has forgotten data to measure.

Sample ids are found by one naming rule, the same in every file and checkpoint, so the audit knows no
strategy: a key named ``ids`` or ``*_ids`` holds ids (a list, nested lists, a tensor or an array of them), a
key named ``*_by_id`` is a per-id store (its dict keys are ids), and CSV columns named ``id``, ``ids``,
``sample_id`` or ``sample_ids`` hold ids. A strategy that keeps sample ids in its state names the key after
this rule (``retained_ids``, ``task_sample_ids``, ``logits_by_id``, the buffer's ``ids``). Nothing else
counts, never "any integer anywhere": optimizer state keys, RNG states, class ids and task ids are integers too.

Files the audit cannot read (a half-written ``.tmp`` left by a killed run, a corrupt checkpoint) fail it:
the audit cannot vouch for them.
"""

from __future__ import annotations

import csv
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from clu.config import ConfigError
from clu.events import UnlearnRequest, from_json, steps
from clu.checkpoints import load_checkpoint
from clu.results import read_checkpoint_policy

EXEMPT = frozenset({"events.jsonl", "metrics.csv"})
"""Top-level files that may name forgotten ids: the requests themselves and the metrics."""

CSV_ID_COLUMNS = frozenset({"id", "ids", "sample_id", "sample_ids"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".pdf", ".svg"})


@dataclass(frozen=True)
class Finding:
    """One problem: a forgotten id found in a file (``ids`` non-empty), or a check that failed."""

    file: str
    """Path relative to the run folder."""
    where: str
    """Where in the file (e.g. ``strategy.buffer.ids``)."""
    message: str
    ids: tuple[int, ...] = ()


@dataclass
class AuditReport:
    """What ``clu audit`` prints; ``ok`` is False when anything was found."""

    run_dir: Path
    findings: list[Finding] = field(default_factory=list)
    requests: int = 0
    forgotten: int = 0
    checkpoints: int = 0
    files: int = 0
    strategies: int = 0
    notes: list[str] = field(default_factory=list)
    forgotten_at: dict[int, tuple[int, int]] = field(default_factory=dict, repr=False)
    """id → (step, request id) of the (latest) request that forgot it."""

    @property
    def ok(self) -> bool:
        return not self.findings

    def render(self) -> str:
        lines = [
            f"audit of {self.run_dir}: {self.requests} unlearn request(s), {self.forgotten} forgotten id(s); "
            f"scanned {self.checkpoints} checkpoint(s) and {self.files} other file(s)"
        ]
        for note in self.notes:
            lines.append(f"  note: {note}")
        for f in self.findings:
            if f.ids:
                first = f.ids[0]
                step, req = self.forgotten_at.get(first, (-1, -1))
                more = ""
                if len(f.ids) > 1:
                    shown = ", ".join(map(str, f.ids[1:6])) + (", ..." if len(f.ids) > 6 else "")
                    more = f" (and {len(f.ids) - 1} more: {shown})"
                lines.append(
                    f"FAIL: forgotten id {first} (request {req}, step {step}) found in {f.file} at {f.where}{more}"
                )
            else:
                lines.append(f"FAIL: {f.file}: {f.where + ': ' if f.where else ''}{f.message}")
        if self.ok:
            lines.append(
                f"audit: ok - no forgotten id in the {self.checkpoints} checkpoint(s) kept or any artefact; "
                f"summary.json reports the final FA "
                f"of all {self.strategies} strateg{'y' if self.strategies == 1 else 'ies'} (where data was forgotten)"
            )
        else:
            first = next((f for f in self.findings if f.ids), self.findings[0])
            what = f"forgotten id {first.ids[0]} in {first.file}" if first.ids else f"{first.file}: {first.message}"
            lines.append(f"audit: FAILED ({len(self.findings)} finding(s)); first: {what}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the stream


@dataclass(frozen=True)
class _Timeline:
    """The forgotten ids after every step of the stream (position k = the checkpoint ``event-k``)."""

    after: list[frozenset[int]]
    forgotten_at: dict[int, tuple[int, int]]
    requests: int

    @property
    def final(self) -> frozenset[int]:
        return self.after[-1] if self.after else frozenset()


def _timeline(path: Path) -> _Timeline:
    from clu.evaluation import StreamState  # deferred: torch (the command line imports this module)

    events = []
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read ({e.strerror})", file=path) from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(from_json(line))
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"line {n} is not an event ({e})", file=path) from None
    state = StreamState()
    after: list[frozenset[int]] = []
    forgotten_at: dict[int, tuple[int, int]] = {}
    for s in steps(events):
        if s.unlearn is not None:
            for i in s.unlearn.sample_ids:
                forgotten_at[int(i)] = (s.index, s.unlearn.request_id)
        state.apply(s)
        after.append(frozenset(state.forgotten_ids))
    return _Timeline(after, forgotten_at, sum(isinstance(e, UnlearnRequest) for e in events))


# ---------------------------------------------------------------------------------- finding stored ids


def _ints(value: Any) -> Iterator[int]:
    """Every integer in an id collection (nested lists/tuples/sets, integer arrays and tensors)."""
    import torch  # deferred: the command line imports this module

    if isinstance(value, bool):
        return
    if isinstance(value, (int, np.integer)):
        yield int(value)
    elif isinstance(value, torch.Tensor):
        if not value.dtype.is_floating_point and not value.dtype.is_complex and value.dtype != torch.bool:
            yield from (int(v) for v in value.flatten().tolist())
    elif isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.integer):
            yield from (int(v) for v in value.ravel().tolist())
        elif value.dtype == object:
            for v in value.ravel():
                yield from _ints(v)
    elif isinstance(value, Mapping):
        yield from _keys(value)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _ints(v)


def _keys(value: Any) -> Iterator[int]:
    if isinstance(value, Mapping):
        for k in value:
            if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
                yield int(k)
            elif isinstance(k, str) and k.strip().lstrip("-").isdigit():  # JSON turns int keys into strings
                yield int(k)


def _is_id_key(key: str) -> bool:
    k = key.lower()
    return k == "ids" or k.endswith("_ids")


def _is_id_map(key: str) -> bool:
    return key.lower().endswith("_by_id")


def stored_ids(obj: Any, path: str = "") -> Iterator[tuple[str, list[int]]]:
    """(where, ids) for every sample-id collection in ``obj`` (see the module docstring for the rule)."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            where = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and _is_id_key(k):
                yield where, list(_ints(v))
            elif isinstance(k, str) and _is_id_map(k):
                yield where, list(_keys(v))
            else:
                yield from stored_ids(v, where)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            if isinstance(v, (Mapping, list, tuple)):
                yield from stored_ids(v, f"{path}[{i}]")


def _check(report: AuditReport, rel: str, found: Iterator[tuple[str, list[int]]], forbidden: frozenset[int]) -> None:
    for where, ids in found:
        hit = sorted(set(ids) & forbidden)
        if hit:
            report.findings.append(Finding(rel, where, "forgotten ids stored here", tuple(hit)))


# ------------------------------------------------------------------------------------------ artefacts


def _scan_checkpoint(report: AuditReport, run_dir: Path, path: Path, tl: _Timeline) -> None:
    rel = path.relative_to(run_dir).as_posix()
    try:
        payload = load_checkpoint(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file fails the audit, with its reason
        report.findings.append(Finding(rel, "", f"cannot read the checkpoint ({type(e).__name__}: {e})"))
        return
    if not isinstance(payload, Mapping):
        report.findings.append(Finding(rel, "", "not a checkpoint (expected a dict payload)"))
        return
    report.checkpoints += 1
    k = payload.get("event_index")
    if not isinstance(k, int):
        try:
            k = int(path.stem.removeprefix("event-"))
        except ValueError:
            k = len(tl.after) - 1
    if not 0 <= k < len(tl.after):
        report.findings.append(
            Finding(rel, "event_index", f"checkpoint of event {k}, but the stream has {len(tl.after)} events")
        )
        forbidden = tl.final
    else:
        forbidden = tl.after[k]
    _check(report, rel, stored_ids(payload), forbidden)


def _scan_file(report: AuditReport, run_dir: Path, path: Path, tl: _Timeline) -> None:
    rel = path.relative_to(run_dir).as_posix()
    suffix = path.suffix.lower()
    forbidden = tl.final
    try:
        if suffix == ".json":
            report.files += 1
            _check(report, rel, stored_ids(json.loads(path.read_text())), forbidden)
        elif suffix == ".jsonl":
            report.files += 1
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    _check(report, rel, stored_ids(json.loads(line), f"line {n}"), forbidden)
        elif suffix == ".toml":
            report.files += 1
            with path.open("rb") as f:
                _check(report, rel, stored_ids(tomllib.load(f)), forbidden)
        elif suffix == ".csv":
            report.files += 1
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                cols = [c for c in reader.fieldnames or () if c.strip().lower() in CSV_ID_COLUMNS]
                if cols:
                    rows = list(reader)
                    for c in cols:
                        cells = (str(r.get(c) or "").replace(";", " ").split() for r in rows)
                        ids = [int(x) for cell in cells for x in cell if x.lstrip("-").isdigit()]
                        _check(report, rel, iter([(f"column {c}", ids)]), forbidden)
        elif suffix == ".pt":
            _scan_checkpoint(report, run_dir, path, tl)
        elif suffix == ".npz":  # margins files: arrays by name, under the same naming rule
            report.files += 1
            with np.load(path, allow_pickle=False) as z:
                _check(report, rel, stored_ids({k: z[k].tolist() for k in z.files}), forbidden)
        elif suffix in IMAGE_SUFFIXES:
            return
        else:
            report.notes.append(f"not scanned (unknown file type): {rel}")
    except (OSError, ValueError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        report.findings.append(Finding(rel, "", f"cannot read ({type(e).__name__}: {e})"))


def _check_fa(report: AuditReport, run_dir: Path, tl: _Timeline) -> None:
    """summary.json reports a final FA for every strategy that has forgotten data at its last event."""
    labels: list[str] = []
    cfg = run_dir / "config.toml"
    if cfg.is_file():
        try:
            with cfg.open("rb") as f:
                raw = tomllib.load(f)
            entries = [s for s in raw.get("strategies", []) if isinstance(s, dict)]
            labels = [str(s.get("label") or s.get("strategy")) for s in entries]
        except (OSError, tomllib.TOMLDecodeError):
            pass  # reported by the file scan
    path = run_dir / "summary.json"
    if not path.is_file():
        report.findings.append(Finding("summary.json", "", "missing: the final FA of each strategy is not reported"))
        return
    try:
        summary = json.loads(path.read_text())
        strategies = summary["strategies"]
        assert isinstance(strategies, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        report.findings.append(Finding("summary.json", "strategies", "no per-strategy results"))
        return
    for label in labels or list(strategies):
        entry = strategies.get(label)
        if not isinstance(entry, dict):
            report.findings.append(Finding("summary.json", f"strategies.{label}", "strategy of the run has no results"))
            continue
        report.strategies += 1
        per_event = entry.get("per_event") or []
        last = len(per_event) - 1  # records run from the first event on: position of the last one
        needs_fa = bool(per_event) and 0 <= last < len(tl.after) and bool(tl.after[last])
        fa = (entry.get("final") or {}).get("FA")
        reported = isinstance(fa, (int, float)) and not isinstance(fa, bool) and math.isfinite(fa) and 0 <= fa <= 1
        if needs_fa and not reported:
            report.findings.append(
                Finding("summary.json", f"strategies.{label}.final.FA", f"final FA is not reported (got {fa!r})")
            )


def audit_run(run_dir: str | Path) -> AuditReport:
    """Audit a run folder; raises ConfigError when it is not a run folder (bad input, exit 2)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError("no such run folder", file=run_dir)
    events = run_dir / "events.jsonl"
    if not events.is_file():
        raise ConfigError("not a run folder (no events.jsonl)", file=run_dir)
    tl = _timeline(events)
    report = AuditReport(run_dir, requests=tl.requests, forgotten=len(set(tl.forgotten_at)))
    report.forgotten_at = tl.forgotten_at
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(run_dir)
        if rel.as_posix() in EXEMPT:
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            report.findings.append(
                Finding(rel.as_posix(), "", "left over from an interrupted write; resume the run or delete it")
            )
            continue
        if rel.parts[0] == "checkpoints" and path.suffix == ".pt":
            _scan_checkpoint(report, run_dir, path, tl)
        else:
            _scan_file(report, run_dir, path, tl)
    _check_fa(report, run_dir, tl)
    coverage = _checkpoint_coverage(run_dir, report.checkpoints)
    if coverage:
        report.notes.append(coverage)
    return report


def _checkpoint_coverage(run_dir: Path, scanned: int) -> str | None:
    """What the audit could not check because the run kept fewer checkpoints (``--checkpoints``)."""
    policy = read_checkpoint_policy(run_dir)
    if policy == "none" or (policy is None and scanned == 0):
        return ("no checkpoints were kept (--checkpoints none): the models' states after each event could not be "
                "checked, only the result files")
    if policy == "last":
        return ("only each unit's last checkpoint was kept (--checkpoints last): the states after earlier events "
                "could not be checked")
    return None


__all__ = ["AuditReport", "Finding", "audit_run", "stored_ids"]
