"""The tables: one run's (``clu run`` prints it) and a sweep's (``table.md``, ``clu report``).

Both are drawn from result data alone: the run table from summary.json's content, the sweep table from the
rows of results.csv, so ``clu report SWEEP_DIR`` regenerates exactly the ``table.md`` the sweep wrote. The
sweep table comes as markdown (``table.md``) or aligned plain text.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from clu.config import ConfigError
from clu.results import FINAL, ORACLE, ResultRow, read_results

Format = Literal["markdown", "text"]
TABLE_METRICS = ("TA", "FA", "FA_test", "MIA", "MIA_attack_acc")
"""Final-event metrics of the sweep table (then AvgGap_mean and the run time)."""

_COLUMNS = (
    # key, header, scale, decimals, rule
    ("TA", "TA % ↑", 100, 1, "max"),
    ("FA", "FA % (→ oracle)", 100, 1, "target"),
    ("FA_test", "FA_test % (→ oracle)", 100, 1, "target"),
    ("MIA", "MIA % (→ oracle)", 100, 1, "target"),
    ("MIA_attack_acc", "MIA_attack_acc % (→ oracle)", 100, 1, "target"),
    ("AvgGap", "AvgGap ↓", 100, 2, "min"),
    ("time", "time s ↓", 1, 2, "min"),
)
_INTRO = ("Final event of each run, mean ± std over seeds (std: sample standard deviation). "
          "TA, FA, FA_test, MIA, MIA_attack_acc in %; AvgGap (mean gap to the oracle over the events) in points; "
          "time: total wall seconds of the run. **Bold**: best strategy per column, the oracle excluded — "
          "highest TA, lowest AvgGap and time, and for FA, FA_test, MIA and MIA_attack_acc the value closest to "
          f"the oracle's (`{ORACLE}`), which is the target. KL is not computed in sweeps.")
_DIVERGED = "† diverged in some seed: that run stopped early; its last event is used."


# ------------------------------------------------------------------------------------------ run table


def run_table(summary: dict[str, Any]) -> str:
    """One row per strategy of a run: final TA / FA / MIA, mean AvgGap over events, total time."""
    head = f"{'strategy':<15} {'TA':>6} {'FA':>6} {'MIA':>6} {'AvgGap':>7} {'time_s':>7}"
    lines = [head, "-" * len(head)]

    def pct(v: float | None) -> str:
        return "   -  " if v is None else f"{100 * v:6.1f}"

    for label, r in summary["strategies"].items():
        f = r["final"]
        gap = f.get("AvgGap_mean")
        note = f"  ({r['error']})" if r.get("error") else ""
        lines.append(
            f"{label:<15} {pct(f.get('TA'))} {pct(f.get('FA'))} {pct(f.get('MIA'))} "
            f"{'    -  ' if gap is None else f'{100 * gap:7.2f}'} {f.get('time_s', 0):7.2f}{note}"
        )
    lines.append("TA, FA, MIA: final event (%); AvgGap: mean gap to the oracle over events (points).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- sweep table


Finals = dict[str, float | None]


def trial_finals(rows: Iterable[ResultRow]) -> Finals:
    """One trial's table entries: the final event's metrics, AvgGap_mean and the total time."""
    rows = list(rows)
    last = max((r.step for r in rows if r.step != FINAL), default=None)
    finals: Finals = {m: None for m in (*TABLE_METRICS, "AvgGap", "time")}
    for r in rows:
        if r.step == last and r.metric in TABLE_METRICS:
            finals[r.metric] = r.value
        elif r.step == FINAL and r.metric == "AvgGap_mean":
            finals["AvgGap"] = r.value
        elif r.step == FINAL and r.metric == "time_s":
            finals["time"] = r.value
    return finals


@dataclass(frozen=True)
class _Section:
    scenario: str
    note: str
    rows: tuple[tuple[str, tuple[tuple[str, bool], ...]], ...]
    """(strategy, ((cell text, best), ...)) per strategy."""
    diverged: bool


def sweep_table(scenarios: Sequence[str], strategies: Sequence[str], seeds: Sequence[int],
                rows: Sequence[ResultRow], diverged: set[tuple[str, str]], fmt: Format = "markdown") -> str:
    """Per scenario, mean ± std over seeds of the final metrics; the best strategy per column marked.

    ``rows``: results.csv; ``diverged``: the (scenario, strategy) pairs with a diverged seed.
    """
    by_trial: dict[tuple[str, str, int], list[ResultRow]] = defaultdict(list)
    for r in rows:
        by_trial[(r.scenario, r.strategy, r.seed)].append(r)
    finals: dict[tuple[str, str], list[Finals]] = defaultdict(list)
    for (scen, label, _), trial in by_trial.items():
        finals[(scen, label)].append(trial_finals(trial))
    sections = [_section(scen, strategies, seeds, finals, diverged) for scen in scenarios]
    return _markdown(sections) if fmt == "markdown" else _text(sections)


def _section(scen: str, strategies: Sequence[str], seeds: Sequence[int],
             finals: dict[tuple[str, str], list[Finals]], diverged: set[tuple[str, str]]) -> _Section:
    stats: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    for label in strategies:
        entries = finals.get((scen, label), [])
        stats[label] = {}
        for key, _, scale, _, _ in _COLUMNS:
            vals = np.asarray([e[key] for e in entries if e.get(key) is not None], dtype=np.float64) * scale
            stats[label][key] = (float(vals.mean()) if len(vals) else None,
                                 float(vals.std(ddof=1)) if len(vals) >= 2 else None)
    counts = {lab: len(finals.get((scen, lab), [])) for lab in strategies}
    seed_text = f"Seeds {', '.join(map(str, seeds))}"
    if all(n == len(seeds) for n in counts.values()):
        note = f"{seed_text}: all runs finished."
    else:
        note = f"{seed_text}; finished runs: " + ", ".join(f"{lab} {n}" for lab, n in counts.items()) + "."
    best = {key: _best(stats, strategies, key, dec, rule) for key, _, _, dec, rule in _COLUMNS}
    out = []
    for label in strategies:
        cells = []
        for key, _, _, dec, _ in _COLUMNS:
            mean, std = stats[label][key]
            if mean is None:
                cells.append(("–", False))
                continue
            cells.append((f"{mean:.{dec}f}" + (f" ± {std:.{dec}f}" if std is not None else ""), label in best[key]))
        name = f"{label} (oracle)" if label == ORACLE else label
        if (scen, label) in diverged:
            name += " †"
        out.append((name, tuple(cells)))
    return _Section(scen, note, tuple(out), any(s == scen for s, _ in diverged))


def _best(stats: dict[str, dict[str, tuple[float | None, float | None]]], strategies: Sequence[str], key: str,
          dec: int, rule: str) -> set[str]:
    """The leaders of a column at the shown precision (the oracle excluded); none with fewer than two."""
    target = stats.get(ORACLE, {}).get(key, (None, None))[0]
    score = {}
    for label in strategies:
        mean = stats[label][key][0]
        if label == ORACLE or mean is None:
            continue
        if rule == "max":
            score[label] = -round(mean, dec)
        elif rule == "min":
            score[label] = round(mean, dec)
        elif target is not None:
            score[label] = round(abs(round(mean, dec) - round(target, dec)), dec)
    low = min(score.values(), default=None)
    return {lab for lab, s in score.items() if s == low} if len(score) > 1 else set()


def _markdown(sections: Sequence[_Section]) -> str:
    lines = ["# Sweep results", "", _INTRO, ""]
    for sec in sections:
        lines += [f"## {sec.scenario}", "", sec.note, ""]
        lines.append("| strategy | " + " | ".join(h for _, h, *_ in _COLUMNS) + " |")
        lines.append("|---|" + "---:|" * len(_COLUMNS))
        for name, cells in sec.rows:
            lines.append(f"| {name} | " + " | ".join(f"**{t}**" if b else t for t, b in cells) + " |")
        if sec.diverged:
            lines += ["", _DIVERGED]
        lines.append("")
    return "\n".join(lines)


def _text(sections: Sequence[_Section]) -> str:
    """Aligned columns; ``*`` marks the best per column."""
    lines = ["Sweep results: " + _INTRO.replace("**Bold**", "*")]
    for sec in sections:
        table = [["strategy", *(h for _, h, *_ in _COLUMNS)]]
        table += [[name, *(t + ("*" if b else "") for t, b in cells)] for name, cells in sec.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines += ["", f"{sec.scenario}: {sec.note}"]
        for i, row in enumerate(table):
            lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
            if i == 0:
                lines.append("-" * len(lines[-1]))
        if sec.diverged:
            lines.append(_DIVERGED)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- clu report


def report(folder: Path, fmt: Format = "markdown") -> str:
    """The table of a sweep folder (from sweep.json, results.csv and the trials' done.json) or of a run
    folder (from summary.json)."""
    if not folder.is_dir():
        raise ConfigError("no such folder", file=folder)
    if (folder / "sweep.json").is_file():
        request = _json(folder / "sweep.json")
        diverged = set()
        for done in sorted(folder.glob("trials/*/*/seed-*/done.json")):
            d = _json(done)
            if d.get("error"):
                diverged.add((str(d.get("scenario")), str(d.get("strategy"))))
        try:
            scenarios, strategies = list(request["scenarios"]), list(request["strategies"])
            seeds = [int(s) for s in request["seeds"]]
        except (KeyError, TypeError, ValueError):
            raise ConfigError("sweep.json lacks scenarios, strategies or seeds", file=folder / "sweep.json") from None
        return sweep_table(scenarios, strategies, seeds, read_results(folder / "results.csv"), diverged, fmt)
    if (folder / "summary.json").is_file():
        return run_table(_json(folder / "summary.json")) + "\n"
    raise ConfigError("not a sweep or run folder (no sweep.json or summary.json here)", file=folder)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"not readable JSON ({e})", file=path) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", file=path)
    return data
