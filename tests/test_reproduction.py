"""Reproduction check (issue 12, item 8; as Avalanche's continual-learning-baselines do): a small slice of the
committed results is re-run and must give the committed figures, so a change that silently moves a published
number fails CI.

The slice: digits-class, seeds 0 and 1, ``ugclu`` and two baselines of the ``digits-class`` table (``er_rl``,
``er_sfron``) with the oracle and its twin, no shadow oracles, serial executor (threads = 1, as in the
committed sweep). The figures: the whole-run ``AvgGap`` and ``AvgGap_req`` and the final event's ``TA`` and
``FA``, per seed from both results.csv files.

Tolerance. Per (strategy, figure) the mean over the two seeds of the fresh run is compared with the mean
over the same seeds of the committed run, within ``max(K · std / √2, FLOOR)``, std being that figure's
spread over the committed seeds 0–9, so std / √2 is the standard error of a two-seed mean. K = 2: on the
platform that made the tables the run is deterministic and every per-seed value matches exactly (the
assertion message says how many do); on another CPU (an AVX-512 Xeon against the AMD EPYC of the tables:
22 of 40 values identical) BLAS sums in another order, training amplifies it, and two-seed means moved by up
to 1.6 standard errors. K = 2 passes that and still fails a change that moves a figure by two standard errors
of what the slice can measure. FLOOR (half a point) keeps zero-spread figures (the oracle's gaps, an FA of 0
in every seed) from demanding bit equality.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from clu.paths import SCENARIO_DIR
from clu.results import ORACLE, TWIN, ResultRow, read_results
from clu.verdicts import per_seed

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "digits-class" / "results.csv"
SCENARIO = "digits-class"
SEEDS = (0, 1)
STRATEGIES = ("ugclu", "er_rl", "er_sfron")
FIGURES = ("AvgGap_mean", "AvgGap_req", "TA", "FA")
"""Whole-run AvgGap and AvgGap_req, final-event TA and FA (results.csv names)."""
K = 2.0
FLOOR = 0.005
"""Half a point (figures are fractions)."""


def tolerances(reference: list[ResultRow], labels: list[str], n: int = len(SEEDS)) -> dict[tuple[str, str], float]:
    """Per (label, figure): ``max(K · std over the reference's seeds / sqrt(n), FLOOR)``."""
    seeds = sorted({r.seed for r in reference if r.scenario == SCENARIO})
    values = per_seed(reference, SCENARIO, labels, seeds)
    out = {}
    for lab in labels:
        for fig in FIGURES:
            v = values[lab][fig][np.isfinite(values[lab][fig])]
            std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
            out[(lab, fig)] = max(K * std / math.sqrt(n), FLOOR)
    return out


def compare(reference: list[ResultRow], fresh: list[ResultRow], labels: list[str]) -> tuple[list[str], int, int]:
    """(the figures outside their tolerance, per-seed values equal exactly, per-seed values compared)."""
    tol = tolerances(reference, labels)
    ref, new = per_seed(reference, SCENARIO, labels, SEEDS), per_seed(fresh, SCENARIO, labels, SEEDS)
    bad, exact, total = [], 0, 0
    for lab in labels:
        for fig in FIGURES:
            a, b = ref[lab][fig], new[lab][fig]
            total += a.size
            exact += int(np.sum((a == b) | (np.isnan(a) & np.isnan(b))))
            if np.isnan(a).any() or np.isnan(b).any():
                if not np.array_equal(np.isnan(a), np.isnan(b)):
                    bad.append(f"{lab} {fig}: missing in one run (committed {a}, now {b})")
                continue
            diff = abs(float(a.mean() - b.mean()))
            if diff > tol[(lab, fig)]:
                bad.append(f"{lab} {fig}: seeds {SEEDS} mean {b.mean():.4f}, committed {a.mean():.4f} "
                           f"(|diff| {diff:.4f} > tol {tol[(lab, fig)]:.4f})")
    return bad, exact, total


def check_reproduction(reference: Path, fresh: Path) -> str:
    """Assert the fresh slice reproduces ``reference``; returns the exact-match summary."""
    assert reference.is_file(), f"{reference} does not exist: run make results (the committed table is missing)"
    labels = [ORACLE, TWIN, *STRATEGIES]
    bad, exact, total = compare(read_results(reference), read_results(fresh), labels)
    summary = f"{exact} of {total} per-seed values identical to the committed ones"
    assert not bad, f"the committed results are not reproduced ({summary}):\n  " + "\n  ".join(bad)
    return summary


@pytest.mark.slow
def test_digits_class_slice_reproduces_the_committed_results(tmp_path: Path) -> None:
    assert REFERENCE.is_file(), f"{REFERENCE} does not exist: run make results"
    from clu.sweeps import sweep

    result = sweep([str(SCENARIO_DIR / f"{SCENARIO}.toml")], STRATEGIES, SEEDS, executor="serial",
                   out=tmp_path / "sweep", shadows=0, progress=False)
    assert result.exit_code == 0, result.summary
    print(check_reproduction(REFERENCE, tmp_path / "sweep" / "results.csv"))


# ---------------------------------------------------------------------- the comparison itself (fast)


def _rows(shift: dict[tuple[str, int, str], float] | None = None) -> list[ResultRow]:
    """A fake digits-class results.csv, seeds 0-9: per label and seed AvgGap_mean, AvgGap_req (whole-run) and
    TA, FA at the last event (and an earlier event that must be ignored)."""
    shift = shift or {}
    rows = []
    for i, lab in enumerate([ORACLE, TWIN, *STRATEGIES]):
        for s in range(10):
            base = {"AvgGap_mean": 0.05 + 0.01 * i + 0.002 * s, "AvgGap_req": 0.06 + 0.002 * s,
                    "TA": 0.9 - 0.004 * s, "FA": 0.0}
            v = {m: x + shift.get((lab, s, m), 0.0) for m, x in base.items()}
            rows += [ResultRow(SCENARIO, lab, s, 1, 1, "learn", "TA", 0.1),
                     ResultRow(SCENARIO, lab, s, 1, 5, "class", "TA", v["TA"]),
                     ResultRow(SCENARIO, lab, s, 1, 5, "class", "FA", v["FA"]),
                     ResultRow(SCENARIO, lab, s, 1, "final", "run", "AvgGap_mean", v["AvgGap_mean"]),
                     ResultRow(SCENARIO, lab, s, 1, "final", "run", "AvgGap_req", v["AvgGap_req"])]
    return rows


def _write(path: Path, rows: list[ResultRow]) -> Path:
    from clu.results import results_csv

    path.write_text(results_csv(rows))
    return path


def test_comparison_passes_identical_and_flags_a_moved_figure(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref.csv", _rows())
    fresh = _write(tmp_path / "fresh.csv", [r for r in _rows() if r.seed in SEEDS])
    assert check_reproduction(ref, fresh) == "40 of 40 per-seed values identical to the committed ones"
    # std of TA over seeds 0-9 = 0.004 * std(0..9) = 0.0121; tol = 2 * 0.0121 / sqrt(2) = 0.0171 > FLOOR
    tol = tolerances(read_results(ref), [ORACLE, TWIN, *STRATEGIES])
    assert tol[("ugclu", "TA")] == pytest.approx(2 * 0.004 * np.std(range(10), ddof=1) / math.sqrt(2))
    assert tol[("ugclu", "FA")] == FLOOR  # no spread: the floor
    small = _write(tmp_path / "small.csv", [r for r in _rows({("ugclu", 0, "TA"): 0.015}) if r.seed in SEEDS])
    assert check_reproduction(ref, small).startswith("39 of 40")  # the mean moves 0.0075 < tol: passes, not exact
    moved = _write(tmp_path / "moved.csv", [r for r in _rows({("er_rl", 1, "FA"): 0.03}) if r.seed in SEEDS])
    with pytest.raises(AssertionError, match=r"er_rl FA: .*39 of 40|39 of 40(.|\n)*er_rl FA"):
        check_reproduction(ref, moved)
    gone = _write(tmp_path / "gone.csv", [r for r in _rows() if r.seed in SEEDS and r.strategy != "er_sfron"])
    with pytest.raises(AssertionError, match="er_sfron TA: missing"):
        check_reproduction(ref, gone)
    with pytest.raises(AssertionError, match="run make results"):
        check_reproduction(tmp_path / "nope.csv", fresh)
