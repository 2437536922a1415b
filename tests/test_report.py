"""clu.report: the run table, the sweep table (marks from paired tests), stats.csv, and ``clu report DIR``."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clu.cli import main
from clu.config import ConfigError
from clu.report import report, run_table, stats_rows, sweep_table
from clu.results import ALL, FINAL, ORACLE, TWIN, ResultRow, results_csv
from clu.stats import compare, holm, paired_p

SEEDS = [0, 1, 2, 3]
# per-seed values of AvgGap_req (replica 1 and, for "a", replica 2), final TA and FA
REQ = {ORACLE: [0.0] * 4, TWIN: [0.040, 0.050, 0.045, 0.035],
       "a": [0.010, 0.012, 0.008, 0.011], "b": [0.20, 0.22, 0.19, 0.21], "c": [0.04, 0.06, 0.03, 0.05]}
TA = {ORACLE: [0.90] * 4, TWIN: [0.89] * 4, "a": [0.80, 0.82, 0.81, 0.79], "b": [0.81, 0.80, 0.82, 0.80],
      "c": [0.50, 0.52, 0.49, 0.51]}
FA = {ORACLE: [0.0] * 4, TWIN: [0.0] * 4, "a": [0.30, 0.32, 0.29, 0.31], "b": [0.02, 0.01, 0.03, 0.02],
      "c": [0.20, 0.21, 0.22, 0.19]}


def _unit(label: str, seed: int, replica: int, req: float, ta: float, fa: float, last: int = 4) -> list[ResultRow]:
    def row(step, kind, metric, value):
        return ResultRow("sc", label, seed, replica, step, kind, metric, value)

    rows = [row(1, "learn", "TA", 0.0), row(1, "learn", "time_s", 0.5)]  # an earlier event: not in the table
    rows += [row(last, "class", m, v) for m, v in (("TA", ta), ("FA", fa), ("FA_test", None), ("MIA", 0.1),
                                                   ("LiRA_AUC", 0.5), ("KL", 0.01))]
    rows += [row(FINAL, "run", m, v) for m, v in (("AvgGap_req", req), ("dAvgGap_mean", 0.0),
                                                  ("AvgGap_L_req", req), ("AvgGap_mean", req / 2), ("time_s", 1.0))]
    return rows


def _rows(seeds: list[int] = SEEDS) -> list[ResultRow]:
    rows: list[ResultRow] = []
    for label in (ORACLE, TWIN, "a", "b", "c"):
        for s in seeds:
            i = s % 4
            rows += _unit(label, s, 1, REQ[label][i], TA[label][i], FA[label][i])
            if label == "a":  # a second replica: averaged into the seed's value
                rows += _unit(label, s, 2, REQ[label][i], TA[label][i] + 0.02, FA[label][i])
    return rows


ROWS = _rows()
LABELS = [ORACLE, TWIN, "a", "b", "c"]


def _cells(text: str) -> dict[str, list[str]]:
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ") and "strategy" not in line}


def _col(text: str, header_start: str) -> int:
    head = next(line for line in text.splitlines() if line.startswith("| strategy"))
    return next(i for i, h in enumerate(c.strip() for c in head.split("|")[2:-1]) if h.startswith(header_start))


def test_sweep_table_rows_and_mean_ci() -> None:
    text = sweep_table(["sc"], ["a", "b", ORACLE, "c", TWIN], SEEDS, ROWS, set())
    names = list(_cells(text))
    assert names == [f"{ORACLE} (oracle)", TWIN, "a", "b", "c"]  # oracle, twin, then strategies
    row = _cells(text)
    # a's TA per seed = mean of replicas (x, x + 0.02) = x + 0.01 -> mean 81.5, CI = t(.975, 3) * s / 2
    ta = 100 * (np.array(TA["a"]) + 0.01)
    half = 3.182446 * ta.std(ddof=1) / 2
    assert row["a"][_col(text, "TA")].startswith(f"{ta.mean():.1f} ± {half:.1f}")
    assert "Seeds 0, 1, 2, 3: all runs finished." in text


def test_sweep_table_bold_only_by_paired_tests_else_tied() -> None:
    text = sweep_table(["sc"], LABELS, SEEDS, ROWS, set())
    row = _cells(text)
    req = _col(text, "AvgGap_req")
    assert row["a"][req].startswith("**") and not row["b"][req].startswith("**")  # a beats b and c, paired
    ta = _col(text, "TA")
    assert row["a"][ta].endswith(" =") and row["b"][ta].endswith(" =")  # a and b: not significantly different
    assert not row["c"][ta].endswith("=") and "**" not in row["a"][ta]
    fa = _col(text, "FA %")
    assert row["b"][fa].startswith("**")  # closest to the oracle's FA, seed by seed
    for name in (f"{ORACLE} (oracle)", TWIN):
        assert not any(c.startswith("**") or c.endswith("=") or c.startswith("≈") for c in row[name])


def test_sweep_table_ranks_no_method_on_the_attack_columns() -> None:
    """MIA and LiRA_AUC score the attack: b, closest to the oracle on them as on FA, is bold on FA only."""
    attack = {"MIA", "LiRA_AUC"}
    rows = [replace(r, value=FA[r.strategy][r.seed] + 0.1) if r.metric in attack else r for r in ROWS]
    text = sweep_table(["sc"], LABELS, SEEDS, rows, set())
    row = _cells(text)
    assert row["b"][_col(text, "FA %")].startswith("**")
    for col in (_col(text, "MIA"), _col(text, "LiRA_AUC")):
        assert row["b"][col].startswith("12.0 ±")  # shown, compared with the twin (no ≈ here), never marked
        assert not any(row[lab][col].startswith("**") or row[lab][col].endswith("=") for lab in row)
    assert "no method is on MIA or LiRA_AUC" in text


def test_sweep_table_marks_gaps_within_the_floor() -> None:
    text = sweep_table(["sc"], LABELS, SEEDS, ROWS, set())
    row = _cells(text)
    req = _col(text, "AvgGap_req")
    # c (4-6 points) is not significantly above the twin (3.5-5): ≈; b (19-22) is; a is below the floor: ≈
    assert "≈" in row["c"][req] and "≈" not in row["b"][req] and "≈" in row["a"][req]
    assert "≈" not in row["a"][_col(text, "TA")]  # TA is not a gap
    assert "indistinguishable from exact unlearning" in text and "Holm" in text


def test_sweep_table_klom_needs_16_replicas() -> None:
    text = sweep_table(["sc"], LABELS, SEEDS, ROWS, set())
    assert _cells(text)["a"][_col(text, "KLoM")] == "n/a (R<16)"
    many = sweep_table(["sc"], LABELS, SEEDS, ROWS, set(), replicas=16)
    assert _cells(many)["a"][_col(many, "KLoM")] == "–"
    klom = [ResultRow("sc", lab, s, ALL, 4, "class", "KLoM", 0.1 * (i + 1) + 0.001 * s)
            for i, lab in enumerate(LABELS) for s in SEEDS]
    with_klom = sweep_table(["sc"], LABELS, SEEDS, ROWS + klom, set(), replicas=16)
    assert _cells(with_klom)["a"][_col(with_klom, "KLoM")].startswith("**0.302")


def test_sweep_table_wilcoxon_from_ten_seeds_and_text_format() -> None:
    assert "Wilcoxon" not in sweep_table(["sc"], LABELS, SEEDS, ROWS, set()).split("Marks:")[1].split("##")[1]
    ten = list(range(10))
    text = sweep_table(["sc"], LABELS, ten, _rows(ten), set())
    assert "Wilcoxon signed-rank" in text.split("## sc")[1] and "AvgGap_req: a max p" in text
    plain = sweep_table(["sc"], LABELS, SEEDS, ROWS, {("sc", "b")}, fmt="text")
    assert "|" not in plain and "**" not in plain and "b †" in plain and "† diverged" in plain


def test_sweep_table_counts_unfinished_runs() -> None:
    text = sweep_table(["sc"], LABELS, [0, 1, 2, 3, 4], ROWS, set())
    assert "finished runs: retrain 4, retrain (twin) 4, a 4, b 4, c 4." in text


def test_stats_rows_hold_the_p_values_behind_the_marks() -> None:
    got = stats_rows(["sc"], LABELS, SEEDS, ROWS)
    req = {(m, r): (t, h, w) for s, metric, m, r, t, h, w in got if metric == "AvgGap_req"}
    contenders = {lab: np.array(REQ[lab]) for lab in ("a", "b", "c")}
    assert {k: v[:2] for k, v in req.items() if k[1] != TWIN} == {
        (x.method, x.rival): (x.t_p, x.holm_p) for x in compare(contenders)}
    raw = {r: paired_p(contenders["a"], contenders[r]) for r in ("b", "c")}
    assert req[("a", "b")][1] == holm(raw)["b"]
    assert req[("b", TWIN)][0] < 0.05 and req[("c", TWIN)][0] >= 0.05  # the floor tests, one-sided
    assert all(w is None for *_, w in got)  # 4 seeds: no Wilcoxon


def test_run_table_has_the_twin_and_request_columns() -> None:
    summary = {"strategies": {
        ORACLE: {"final": {"TA": 0.9, "FA": 0.0, "MIA": 0.1, "LiRA_AUC": 0.5, "AvgGap_req": 0.0,
                           "AvgGap_mean": 0.0, "time_s": 1.0}},
        TWIN: {"final": {"TA": 0.89, "FA": 0.0, "MIA": 0.2, "LiRA_AUC": 0.51, "AvgGap_req": 0.04,
                         "AvgGap_mean": 0.03, "time_s": 1.0}},
        "er": {"final": {"TA": 0.8, "FA": None, "MIA": None, "AvgGap_mean": None, "time_s": 0.5},
               "error": "stopped at step 2"}}}
    lines = run_table(summary).splitlines()
    assert lines[0].split() == ["strategy", "TA", "FA", "MIA", "LiRA", "AvgGap_req", "AvgGap", "time_s"]
    assert lines[2].split() == ["retrain", "90.0", "0.0", "10.0", "50.0", "0.00", "0.00", "1.00"]
    assert lines[3].split() == ["retrain", "(twin)", "89.0", "0.0", "20.0", "51.0", "4.00", "3.00", "1.00"]
    assert lines[4].split()[:2] == ["er", "80.0"] and "(stopped at step 2)" in lines[4]


def test_report_reads_a_sweep_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps({"scenarios": ["sc"], "strategies": LABELS,
                                                     "seeds": SEEDS, "replicas": 2}))
    (tmp_path / "results.csv").write_text(results_csv(ROWS))
    done = tmp_path / "trials" / "sc" / "b" / "seed-1-r2" / "done.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"scenario": "sc", "strategy": "b", "error": "diverged"}))
    assert report(tmp_path) == sweep_table(["sc"], LABELS, SEEDS, ROWS, {("sc", "b")}, replicas=2)
    assert main(["report", str(tmp_path), "--format", "text"]) == 0
    assert "b †" in capsys.readouterr().out


def test_report_reads_a_run_folder(tmp_path: Path) -> None:
    summary = {"strategies": {"retrain": {"final": {"TA": 0.9, "time_s": 1.0}}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert report(tmp_path) == run_table(summary) + "\n"


def test_report_of_something_else_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="not a sweep or run folder"):
        report(tmp_path)
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith(f"clu: error: {tmp_path / 'nope'}: no such folder")
    (tmp_path / "sweep.json").write_text("{}")
    with pytest.raises(ConfigError, match="lacks scenarios"):
        report(tmp_path)


# ------------------------------------------------------------------------------------------- LaTeX


_NUM = re.compile(r"-?\d+\.\d+")


def _tex_rows(tex: str) -> dict[str, list[str]]:
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return {line.split(" & ")[0]: line.removesuffix(" \\\\").split(" & ")[1:] for line in body.splitlines()}


def test_tex_is_the_markdown_table_with_latex_marks() -> None:
    md = sweep_table(["sc"], LABELS, SEEDS, ROWS, {("sc", "b")})
    tex = sweep_table(["sc"], LABELS, SEEDS, ROWS, {("sc", "b")}, fmt="tex")
    md_rows, tex_rows = _cells(md), _tex_rows(tex)
    assert len(tex_rows) == len(md_rows) == 5
    for (md_name, md_cells), (tex_name, tex_cells) in zip(md_rows.items(), tex_rows.items()):
        assert tex_name == md_name.replace("†", "$^\\dagger$")
        assert len(tex_cells) == len(md_cells)
        for m, t in zip(md_cells, tex_cells):  # the same numbers, cell by cell, and the same marks
            assert _NUM.findall(m) == _NUM.findall(t)
            assert m.startswith("**") == t.startswith("\\textbf{")
            assert m.endswith(" =") == t.endswith("$^{=}$")
            assert ("≈" in m) == ("$\\approx$" in t)
            assert ("±" in m) == ("$\\pm$" in t)
    assert tex.count("\\toprule") == tex.count("\\midrule") == tex.count("\\bottomrule") == 1
    assert "\\caption{sc. Seeds 0, 1, 2, 3: all runs finished." in tex and "\\label{tab:sc}" in tex
    assert "AvgGap\\_req $\\downarrow$" in tex and "TA \\% $\\uparrow$" in tex and "n/a (R$<$16)" in tex
    assert "diverged in some seed" in tex
    assert not [line for line in tex.splitlines() if not line.startswith("%") and re.search(r"[^\\]%|±|≈|→", line)]


def test_tex_has_one_table_per_scenario(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = ROWS + [ResultRow("sc_2", r.strategy, r.seed, r.replica, r.step, r.kind, r.metric, r.value) for r in ROWS]
    (tmp_path / "sweep.json").write_text(json.dumps({"scenarios": ["sc", "sc_2"], "strategies": LABELS,
                                                     "seeds": SEEDS}))
    (tmp_path / "results.csv").write_text(results_csv(rows))
    tex = report(tmp_path, "tex")
    assert tex.count("\\begin{tabular}") == tex.count("\\end{table}") == 2 and "\\label{tab:sc-2}" in tex
    assert "\\caption{sc\\_2." in tex
    assert main(["report", str(tmp_path), "--format", "tex", "--out", str(tmp_path / "t.tex")]) == 0
    assert (tmp_path / "t.tex").read_text() == tex and capsys.readouterr().out == ""
    assert main(["report", str(tmp_path), "--format", "md"]) == 0
    assert capsys.readouterr().out == report(tmp_path)


def test_report_embedded_markdown_and_tex_of_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps({"scenarios": ["sc"], "strategies": LABELS, "seeds": SEEDS}))
    (tmp_path / "results.csv").write_text(results_csv(ROWS))
    full, bare = report(tmp_path), report(tmp_path, standalone=False)
    assert bare.startswith("**sc**\n") and "# Sweep results" not in bare and "Marks:" not in bare
    assert bare.strip() in full.replace("## sc", "**sc**")
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"strategies": {}}))
    with pytest.raises(ConfigError, match="tex draws sweep tables"):
        report(run, "tex")


def test_report_marks_divergence_from_sweep_summary_without_trials(tmp_path: Path) -> None:
    """A committed result folder keeps sweep_summary.json but not its trials: the † marks must survive."""
    (tmp_path / "sweep.json").write_text(json.dumps({"scenarios": ["sc"], "strategies": LABELS, "seeds": SEEDS}))
    (tmp_path / "results.csv").write_text(results_csv(ROWS))
    (tmp_path / "sweep_summary.json").write_text(json.dumps({"diverged": [{"trial": "sc/b/1/r2", "error": "nan"}]}))
    assert report(tmp_path) == sweep_table(["sc"], LABELS, SEEDS, ROWS, {("sc", "b")})
