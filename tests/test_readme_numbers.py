"""README numbers come from committed result files: every ``<!-- results:<table> -->`` block of README.md is
what results/build.py generates from results/ (no sweeps run), and each committed table.md / table.tex is what
``clu report`` draws from its folder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from clu.report import report
from clu.results import ORACLE, TWIN, aggregate_csv, results_csv
from clu.sweeps.aggregate import aggregate_rows

from test_report import LABELS, ROWS, SEEDS

ROOT = Path(__file__).resolve().parent.parent


def _build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("results_build", ROOT / "results" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


build = _build()
MANIFEST = build.load_manifest(ROOT / "results" / "tables.toml")


def test_every_readme_block_is_generated_from_the_committed_results() -> None:
    readme = (ROOT / "README.md").read_text()
    markers = build.readme_markers(readme)
    assert sorted(markers) == sorted([*MANIFEST.tables, build.FLOOR, build.PAIRS])  # each table once, nothing else
    blocks = build.readme_blocks(MANIFEST, ROOT / "results")
    for name in markers:
        body = readme.split(f"<!-- results:{name} -->\n", 1)[1].split(f"<!-- end results:{name} -->", 1)[0]
        assert body.rstrip("\n") == blocks[name], f"README block {name}: run `python results/build.py --readme-only`"


@pytest.mark.parametrize("name", list(MANIFEST.tables))
def test_committed_tables_are_what_report_draws(name: str) -> None:
    t, folder = MANIFEST.tables[name], ROOT / "results" / name
    if not build._exists(t, folder):
        assert build.readme_blocks(MANIFEST, ROOT / "results")[name] == build.PENDING
        return
    for file, text in build.table_files(t, folder).items():
        assert (folder / file).read_text() == text, f"results/{name}/{file}: run `make readme`"


def test_manifest_is_the_leads_table_list() -> None:
    assert list(MANIFEST.tables) == [
        "digits-class", "digits-cross-task", "digits-random-sample", "mnist5k-class", "mnist5k-cross-task",
        "mnist5k-random-sample", "digits-task-aware", "mnist5k-task-aware", "ablations", "lira-digits",
        "klom16-digits-random-sample", "digits-attached", "digits-detached", "mnist5k-attached", "mnist5k-detached",
        "ablations-attached", "mnist5k-atypical", "mnist5k-concentrated", "synthetic-many-requests",
        "digits-request-size", "mnist5k-memorise"]
    ablations = {str(p.relative_to(ROOT)) for p in (ROOT / "strategies" / "ablations").glob("*.toml")}
    attached_only = {"strategies/ablations/ugclu-attach-every-iteration.toml"}  # acts on attached requests only
    assert ablations - attached_only <= set(MANIFEST.tables["ablations"].strategies)
    for t in MANIFEST.tables.values():
        assert all((ROOT / s).is_file() for s in (*t.scenarios, *(x for x in t.strategies if x.endswith(".toml"))))
    assert MANIFEST.tables["digits-class"].seeds == tuple(range(10))
    assert MANIFEST.tables["klom16-digits-random-sample"].run
    assert len(MANIFEST.floor) == 6
    assert set(MANIFEST.tables["ablations-attached"].strategies) == {"ugclu", *ablations} - {
        "strategies/ablations/er-joint.toml"}  # ugclu's switches only
    assert MANIFEST.pairs == (("digits-attached", "digits-detached"), ("mnist5k-attached", "mnist5k-detached"))


def _sweep_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"scenarios": ["sc"], "strategies": LABELS, "seeds": SEEDS}))
    (folder / "results.csv").write_text(results_csv(ROWS))
    (folder / "aggregate.csv").write_text(aggregate_csv(aggregate_rows(ROWS)))


def test_blocks_floor_and_readme_fill(tmp_path: Path) -> None:
    manifest = tmp_path / "tables.toml"
    manifest.write_text('[tables.t1]\nscenarios = ["sc"]\nstrategies = ["a"]\nseeds = "0-3"\ncaption = "One."\n'
                        '[tables.t2]\nscenarios = ["sc"]\nstrategies = ["a"]\nseeds = "0-3"\ncaption = "Two."\n'
                        '[floor]\ntables = ["t1"]\ncaption = "Floor."\n')
    m = build.load_manifest(manifest)
    blocks = build.readme_blocks(m, tmp_path)
    assert blocks == {"t1": build.PENDING, "t2": build.PENDING, build.FLOOR: build.PENDING}
    _sweep_folder(tmp_path / "t1")
    blocks = build.readme_blocks(m, tmp_path)
    assert blocks["t1"] == "One. Files: `results/t1/`.\n\n" + report(tmp_path / "t1", standalone=False).strip()
    floor = blocks[build.FLOOR].splitlines()
    assert floor[0] == "Floor." and len(floor) == 5  # caption, blank, header, rule, one scenario
    # the twin's AvgGap_req over seeds 0-3 (test_report.REQ): 4.25 ± t(.975, 3) * s / 2 points
    assert floor[4] == "| sc | 4.25 ± 1.03 | 2.12 ± 0.51 | – | – | – | – | 0.01 | 4 |"
    readme = "x\n<!-- results:t1 -->\nold\n<!-- end results:t1 -->\n<!-- results:t2 -->\n<!-- end results:t2 -->\n"
    filled = build.fill_readme(readme, blocks)
    assert filled.startswith(f"x\n<!-- results:t1 -->\n{blocks['t1']}\n<!-- end results:t1 -->\n")
    assert filled.endswith(f"<!-- results:t2 -->\n{build.PENDING}\n<!-- end results:t2 -->\n")
    assert build.fill_readme(filled, blocks) == filled
    with pytest.raises(SystemExit, match="nope"):
        build.fill_readme("<!-- results:nope -->\n<!-- end results:nope -->", blocks)


def test_readme_only_writes_tables_and_readme(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "tables.toml").write_text('[tables.t1]\nscenarios = ["sc"]\nstrategies = ["a"]\nseeds = "0-3"\n'
                                          'caption = "One."\n')
    _sweep_folder(tmp_path / "t1")
    (tmp_path / "README.md").write_text("<!-- results:t1 -->\n<!-- end results:t1 -->\n")
    args = ["--readme-only", "--manifest", str(tmp_path / "tables.toml"), "--results", str(tmp_path),
            "--readme", str(tmp_path / "README.md")]
    assert build.main(args) == 0
    assert (tmp_path / "t1" / "table.tex").read_text() == report(tmp_path / "t1", "tex")
    assert (tmp_path / "t1" / "table.md").read_text() == report(tmp_path / "t1")
    assert f"| {ORACLE} (oracle) |" in (tmp_path / "README.md").read_text()
    assert f"| {TWIN} |" in (tmp_path / "t1" / "table.md").read_text()
    assert "no block for noise-floor" in capsys.readouterr().err


def test_the_manifest_replans_the_committed_sweeps_to_their_fingerprints() -> None:
    """Every committed sweep.json's trial fingerprints are the ones planning its manifest entry gives today (the
    trial folders behind them are not committed): a change to how a trial's config is written or hashed, or to a
    scenario file or preset a table uses, shows here, before ``make results`` --extend would rerun the table."""
    from clu.sweeps.plan import SweepRequest, plan_sweep

    checked = 0
    for name, t in MANIFEST.tables.items():
        recorded = json.loads((ROOT / "results" / name / "sweep.json").read_text()) if not t.run else {}
        if "fingerprints" not in recorded:  # a clu run table, or a sweep.json older than fingerprints
            continue
        req = SweepRequest(tuple(build._path(s) for s in t.scenarios), tuple(build._path(s) for s in t.strategies),
                           t.seeds, executor="serial", shadows=t.shadows, replicas=t.replicas, grid=t.grid)
        planned = {trial.id: trial.fingerprint for trial in plan_sweep(req).trials}
        assert planned == recorded["fingerprints"], name
        checked += 1
    assert checked >= 15
