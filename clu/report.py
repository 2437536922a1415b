"""The tables: one run's (``clu run`` prints it) and a sweep's (``table.md``, ``clu report``), and stats.csv.

Both are drawn from result data alone: the run table from summary.json's content, the sweep table from the
rows of results.csv, so ``clu report SWEEP_DIR`` regenerates exactly the ``table.md`` the sweep wrote. The
sweep table is built once as structured :class:`Section` s (cells and marks from :mod:`clu.verdicts`) and
drawn as markdown (``table.md``), aligned plain text or booktabs LaTeX (:mod:`clu.report_tex`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from clu.config import ConfigError
from clu.files import write_atomic
from clu.metrics import KLOM_MIN_REPLICAS
from clu.report_tex import sections_tex
from clu.results import ORACLE, TWIN, ResultRow, read_results
from clu.stats import WILCOXON_MIN_N, ci95
from clu.verdicts import COLUMNS, Column, per_seed, verdict, wilcoxon_note

Format = Literal["markdown", "text", "tex"]

_INTRO = ("Mean ± 95 % confidence interval (t) over seeds, each seed's training replicas averaged first. "
          "Request-only figures lead: AvgGap_req (mean gap to the oracle over request events), dAvgGap (the "
          "request's own effect: gap right after it minus right before it), AvgGap_L_req (AvgGap with the LiRA "
          "AUC in place of MIA); then the final event's TA, FA, FA_test, MIA and LiRA_AUC in %, KL and KLoM to the "
          "oracle, AvgGap (all events, points) and the run's wall seconds. "
          f"`{ORACLE}` is the oracle (the target of the → columns); `{TWIN}` is exact unlearning measured against "
          "itself (same initial weights, another batch order): its gaps are the noise floor.")
_LEGEND = ("Marks: **bold** = the best mean that a paired t-test over seeds finds better than every other method "
           "(Holm-corrected over its rivals, 5 %); `=` = leaders not significantly different from one another "
           "(no method bold); `≈` = a gap not significantly above the twin's (one-sided paired t-test, 5 %): "
           "indistinguishable from exact unlearning on that metric. The oracle and the twin are not ranked, and no "
           "method is on MIA or LiRA_AUC (the attack's score describes the attack, not the method). "
           "`n/a (R<16)`: KLoM needs at least 16 replicas. p-values: stats.csv.")
DIVERGED = "† diverged in some seed: that run stopped early; its last event is used."
_KLOM_NA = "n/a (R<16)"


# ------------------------------------------------------------------------------------------ run table


def run_table(summary: dict[str, Any]) -> str:
    """One row per strategy of a run (the oracle, its twin, then the strategies): final TA / FA / MIA /
    LiRA_AUC, AvgGap over request events and over all events, total time."""
    width = max([15, *(len(lab) for lab in summary["strategies"])])
    head = (f"{'strategy':<{width}} {'TA':>6} {'FA':>6} {'MIA':>6} {'LiRA':>6} {'AvgGap_req':>10} {'AvgGap':>7} "
            f"{'time_s':>7}")
    lines = [head, "-" * len(head)]

    def pct(v: float | None, w: int = 6, d: int = 1) -> str:
        return f"{'-':>{w}}" if v is None else f"{100 * v:{w}.{d}f}"

    for label, r in summary["strategies"].items():
        f = r["final"]
        note = f"  ({r['error']})" if r.get("error") else ""
        lines.append(
            f"{label:<{width}} {pct(f.get('TA'))} {pct(f.get('FA'))} {pct(f.get('MIA'))} {pct(f.get('LiRA_AUC'))} "
            f"{pct(f.get('AvgGap_req'), 10, 2)} {pct(f.get('AvgGap_mean'), 7, 2)} {f.get('time_s') or 0:7.2f}{note}"
        )
    lines.append("TA, FA, MIA, LiRA (LiRA_AUC): final event (%); AvgGap_req / AvgGap: mean gap to the oracle over "
                 f"request events / all events (points); {TWIN}: the noise floor.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- sweep table


Cell = tuple[str, str]
"""A table cell: its text (``≈`` prefix included) and its mark: ``"bold"``, ``"tied"`` or ``""``."""


@dataclass(frozen=True)
class Section:
    """One scenario of a sweep table, as every renderer draws it."""

    scenario: str
    note: str
    """The seeds (and replicas) and how many runs finished."""
    rows: tuple[tuple[str, tuple[Cell, ...]], ...]
    """(strategy as shown, one cell per :data:`clu.verdicts.COLUMNS` entry) per strategy."""
    diverged: bool
    """Some strategy diverged in some seed (its name carries ``†``)."""
    wilcoxon: tuple[str, ...]
    """The Wilcoxon notes (10 seeds and more), else empty."""


def _ordered(strategies: Sequence[str]) -> list[str]:
    """The oracle, its twin, then the strategies in their order."""
    head = [lab for lab in (ORACLE, TWIN) if lab in strategies]
    return head + [lab for lab in strategies if lab not in head]


def sweep_sections(scenarios: Sequence[str], strategies: Sequence[str], seeds: Sequence[int],
                   rows: Sequence[ResultRow], diverged: set[tuple[str, str]], replicas: int = 1) -> list[Section]:
    """Per scenario, mean ± 95 % CI over seeds; bold / tied / ≈ from paired tests (:mod:`clu.verdicts`).

    ``rows``: results.csv; ``diverged``: the (scenario, strategy) pairs with a diverged seed; ``replicas``:
    the sweep's R (KLoM is ``n/a (R<16)`` below 16).
    """
    labels = _ordered(strategies)
    return [_section(scen, labels, seeds, rows, diverged, replicas) for scen in scenarios]


def render(sections: Sequence[Section], fmt: Format = "markdown", *, standalone: bool = True) -> str:
    """Draw the sections. ``standalone=False`` (markdown only): no title, intro or legend, and each scenario
    as a bold line instead of a heading — the form the README embeds."""
    if fmt == "tex":
        return sections_tex(sections, [_INTRO, _LEGEND])
    return _markdown(sections, standalone) if fmt == "markdown" else _text(sections)


def sweep_table(scenarios: Sequence[str], strategies: Sequence[str], seeds: Sequence[int],
                rows: Sequence[ResultRow], diverged: set[tuple[str, str]], fmt: Format = "markdown",
                replicas: int = 1, *, standalone: bool = True) -> str:
    """:func:`sweep_sections` drawn by :func:`render`."""
    return render(sweep_sections(scenarios, strategies, seeds, rows, diverged, replicas), fmt,
                  standalone=standalone)


def _cell(v: np.ndarray, c: Column) -> str | None:
    vals = v[np.isfinite(v)] * c.scale
    if not vals.size:
        return None
    half = ci95(vals)
    return f"{vals.mean():.{c.decimals}f}" + ("" if half is None else f" ± {half:.{c.decimals}f}")


def _section(scen: str, labels: Sequence[str], seeds: Sequence[int], rows: Sequence[ResultRow],
             diverged: set[tuple[str, str]], replicas: int) -> Section:
    values = per_seed(rows, scen, labels, seeds)
    verdicts = {c.key: verdict(values, c) for c in COLUMNS}
    counts = {lab: len({r.seed for r in rows if r.scenario == scen and r.strategy == lab}) for lab in labels}
    seed_text = f"Seeds {', '.join(map(str, seeds))}" + (f", {replicas} replicas each" if replicas > 1 else "")
    if all(n == len(seeds) for n in counts.values()):
        note = f"{seed_text}: all runs finished."
    else:
        note = f"{seed_text}; finished runs: " + ", ".join(f"{lab} {n}" for lab, n in counts.items()) + "."
    out = []
    for label in labels:
        cells = []
        for c in COLUMNS:
            text = _cell(values[label][c.key], c)
            v = verdicts[c.key]
            if text is None:
                cells.append((_KLOM_NA if c.key == "KLoM" and replicas < KLOM_MIN_REPLICAS else "–", ""))
                continue
            if label in v.approx:
                text = f"≈ {text}"
            mark = "bold" if label in v.bold else "tied" if label in v.tied else ""
            cells.append((text, mark))
        name = f"{ORACLE} (oracle)" if label == ORACLE else label
        if (scen, label) in diverged:
            name += " †"
        out.append((name, tuple(cells)))
    wilcoxon = tuple(wilcoxon_note(verdicts)) if len(seeds) >= WILCOXON_MIN_N else ()
    return Section(scen, note, tuple(out), any(s == scen for s, _ in diverged), wilcoxon)


def wilcoxon_line(sec: Section) -> str:
    return ("Wilcoxon signed-rank (robustness; largest p of each bold leader against its rivals): "
            + "; ".join(sec.wilcoxon) + ".")


def _markdown(sections: Sequence[Section], standalone: bool = True) -> str:
    lines = ["# Sweep results", "", _INTRO, "", _LEGEND, ""] if standalone else []
    for sec in sections:
        lines += [f"## {sec.scenario}" if standalone else f"**{sec.scenario}**", "", sec.note, ""]
        lines.append("| strategy | " + " | ".join(c.header for c in COLUMNS) + " |")
        lines.append("|---|" + "---:|" * len(COLUMNS))
        for name, cells in sec.rows:
            shown = (f"**{t}**" if m == "bold" else f"{t} =" if m == "tied" else t for t, m in cells)
            lines.append(f"| {name} | " + " | ".join(shown) + " |")
        if sec.diverged:
            lines += ["", DIVERGED]
        if sec.wilcoxon:
            lines += ["", wilcoxon_line(sec)]
        lines.append("")
    return "\n".join(lines)


def _text(sections: Sequence[Section]) -> str:
    """Aligned columns; ``*`` marks a bold leader, ``=`` the tied ones."""
    lines = ["Sweep results: " + _INTRO, _LEGEND.replace("**bold**", "`*`")]
    for sec in sections:
        table = [["strategy", *(c.header for c in COLUMNS)]]
        table += [[name, *(t + ("*" if m == "bold" else " =" if m == "tied" else "") for t, m in cells)]
                  for name, cells in sec.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines += ["", f"{sec.scenario}: {sec.note}"]
        for i, row in enumerate(table):
            lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
            if i == 0:
                lines.append("-" * len(lines[-1]))
        if sec.diverged:
            lines.append(DIVERGED)
        if sec.wilcoxon:
            lines.append(wilcoxon_line(sec))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- stats.csv


STATS_HEADER = ("scenario", "metric", "method", "rival", "t_p", "holm_p", "wilcoxon_p")


def stats_rows(scenarios: Sequence[str], strategies: Sequence[str], seeds: Sequence[int],
               rows: Sequence[ResultRow]) -> list[tuple[str, str, str, str, float, float, float | None]]:
    """stats.csv's rows: per scenario and table column, every paired comparison behind the marks."""
    labels = _ordered(strategies)
    out = []
    for scen in scenarios:
        values = per_seed(rows, scen, labels, seeds)
        for c in COLUMNS:
            out += [(scen, c.key, x.method, x.rival, x.t_p, x.holm_p, x.wilcoxon_p)
                    for x in verdict(values, c).comparisons]
    return out


# ----------------------------------------------------------------------------------------- clu report


def report(folder: Path, fmt: Format = "markdown", *, standalone: bool = True) -> str:
    """The table of a sweep folder (from sweep.json, results.csv and the diverged trials) or of a run folder
    (from summary.json; markdown and text only)."""
    if not folder.is_dir():
        raise ConfigError("no such folder", file=folder)
    if (folder / "sweep.json").is_file():
        request = _json(folder / "sweep.json")
        try:
            scenarios, strategies = list(request["scenarios"]), list(request["strategies"])
            seeds = [int(s) for s in request["seeds"]]
            replicas = int(request.get("replicas", 1))
        except (KeyError, TypeError, ValueError):
            raise ConfigError("sweep.json lacks scenarios, strategies or seeds", file=folder / "sweep.json") from None
        return sweep_table(scenarios, strategies, seeds, read_results(folder / "results.csv"), _diverged(folder),
                           fmt, replicas, standalone=standalone)
    if (folder / "summary.json").is_file():
        if fmt == "tex":
            raise ConfigError("--format tex draws sweep tables; this is a run folder", file=folder)
        return run_table(_json(folder / "summary.json")) + "\n"
    raise ConfigError("not a sweep or run folder (no sweep.json or summary.json here)", file=folder)


def write_report(folder: Path, fmt: Format, out: Path) -> None:
    """:func:`report` written atomically to ``out``."""
    write_atomic(out, report(folder, fmt))


def _diverged(folder: Path) -> set[tuple[str, str]]:
    """(scenario, strategy) pairs with a diverged trial: from the trials' done.json, and from
    sweep_summary.json's ``diverged`` list (trial ids ``scenario/label/seed[/r<k>]``), which a committed
    result folder keeps without its trials."""
    out = set()
    for done in sorted(folder.glob("trials/*/*/seed-*/done.json")):
        d = _json(done)
        if d.get("error"):
            out.add((str(d.get("scenario")), str(d.get("strategy"))))
    if (folder / "sweep_summary.json").is_file():
        for d in _json(folder / "sweep_summary.json").get("diverged") or []:
            scenario, _, rest = str(d.get("trial", "")).partition("/")
            label = re.sub(r"/\d+(/r\d+)?$", "", rest)
            if scenario and label:
                out.add((scenario, label))
    return out


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"not readable JSON ({e})", file=path) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", file=path)
    return data
