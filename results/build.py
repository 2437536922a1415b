"""``make results``: run the README's sweeps, write each table's files, regenerate the README's tables.

    python results/build.py                       # run (or resume) every table of results/tables.toml
    python results/build.py --only digits-class   # some tables only (comma-separated)
    python results/build.py --readme-only         # no runs: table.md/.tex and README from the files here

Each ``[tables.<name>]`` of the manifest is one ``clu sweep`` into ``results/<name>/`` (``--extend`` once the
folder holds a sweep.json: only unfinished or changed trials run, a finished table is only re-aggregated), or
with ``run = true`` one ``clu run`` (skipped when its config.toml matches and every replica finished). The
executor comes from ``RESULTS_EXECUTOR`` (``ray`` by default, or ``serial``). Each folder then gets
``table.md`` and ``table.tex`` (:func:`clu.report.report`), and every README block between
``<!-- results:<name> -->`` and ``<!-- end results:<name> -->`` is replaced by that table's markdown; the
block ``noise-floor`` is the ``retrain (twin)`` rows of the ``[floor]`` tables. No number is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from clu.files import write_atomic
from clu.report import report
from clu.report_tex import escape, label, tabular
from clu.results import TWIN, read_aggregate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs import HEADER as PAIRS_HEADER, pairs_table  # noqa: E402  (results/ is not a package)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FLOOR = "noise-floor"
PAIRS = "attached-vs-detached"
PENDING = "(not yet generated: make results)"
_BLOCK = re.compile(r"<!-- results:(?P<name>[\w.-]+) -->\n(?P<body>.*?)\n?<!-- end results:(?P=name) -->", re.S)


@dataclass(frozen=True)
class Table:
    """One manifest entry: a README table and the sweep (or run) that makes it."""

    name: str
    """The folder under results/ and the README marker."""
    scenarios: tuple[str, ...]
    """Scenario files (relative to the repository) or names."""
    strategies: tuple[str, ...]
    """Registry names or preset files (relative to the repository)."""
    seeds: tuple[int, ...]
    caption: str
    """The line above the table in the README."""
    shadows: int | None = None
    """LiRA shadow oracles; None: the scenario's ``[evaluation] shadows``."""
    replicas: int = 1
    run: bool = False
    """One ``clu run`` (seed ``seeds[0]``) instead of a sweep: the KLoM table."""
    grid: tuple[str, ...] = ()
    """A scenario grid, ``clu sweep --set`` arguments (``"KEY=V1,V2,..."``): one scenario per value."""


@dataclass(frozen=True)
class Manifest:
    tables: dict[str, Table]
    floor: tuple[str, ...]
    """The tables whose ``retrain (twin)`` rows make the noise-floor table."""
    floor_caption: str
    pairs: tuple[tuple[str, str], ...] = ()
    """(attached, detached) table pairs of the ``attached-vs-detached`` block (:mod:`pairs`)."""
    pair_strategies: tuple[str, ...] = ()
    pair_baselines: tuple[str, ...] = ()
    pairs_caption: str = ""


def seed_list(text: str | int) -> tuple[int, ...]:
    """``"0-9"``, ``"0,2,5"`` or ``3`` → seeds."""
    out: list[int] = []
    for part in str(text).split(","):
        lo, _, hi = part.strip().partition("-")
        out += range(int(lo), int(hi) + 1) if hi else [int(lo)]
    return tuple(dict.fromkeys(out))


def load_manifest(path: Path) -> Manifest:
    raw = tomllib.loads(path.read_text())
    tables = {}
    for name, e in raw["tables"].items():
        run = bool(e.get("run", False))
        seeds = seed_list(e["seed"] if run else e["seeds"])
        tables[name] = Table(name, tuple(e["scenarios"]), tuple(e["strategies"]), seeds, e.get("caption", ""),
                             e.get("shadows"), int(e.get("replicas", 1)), run, tuple(e.get("set", ())))
    floor = raw.get("floor", {})
    unknown = sorted(set(floor.get("tables", ())) - set(tables))
    if unknown:
        raise SystemExit(f"{path}: [floor] names unknown tables: {', '.join(unknown)}")
    pairs = raw.get("pairs", {})
    pair_tables = tuple((a, d) for a, d in pairs.get("tables", ()))
    unknown = sorted({n for pair in pair_tables for n in pair} - set(tables))
    if unknown:
        raise SystemExit(f"{path}: [pairs] names unknown tables: {', '.join(unknown)}")
    return Manifest(tables, tuple(floor.get("tables", ())), floor.get("caption", ""), pair_tables,
                    tuple(pairs.get("strategies", ())), tuple(pairs.get("baselines", ())), pairs.get("caption", ""))


def _path(text: str) -> str:
    """A manifest file path, absolute (relative ones are the repository's); a plain name unchanged."""
    return str(REPO / text) if text.endswith(".toml") and not Path(text).is_absolute() else text


# ------------------------------------------------------------------------------------------- running


def run_table(t: Table, out: Path, executor: str) -> bool:
    """Run or resume one table into ``out``; whether every trial (unit) finished."""
    if t.run:
        return _run(t, out)
    from clu.sweeps import sweep  # deferred: torch, Avalanche

    result = sweep([_path(s) for s in t.scenarios], [_path(s) for s in t.strategies], t.seeds,
                   executor=executor, extend=(out / "sweep.json").is_file(), out=out, shadows=t.shadows,
                   replicas=t.replicas, grid=t.grid)
    return not (result.summary["failed"] or result.summary["missing"])


def _run(t: Table, out: Path) -> bool:
    from clu import resolve_config, run  # deferred: torch, Avalanche
    from clu.runconfig import load_run_config

    config = resolve_config(_path(t.scenarios[0]), [_path(s) for s in t.strategies], t.seeds[0], None,
                            replicas=t.replicas, shadows=t.shadows)
    same = (out / "config.toml").is_file() and load_run_config(out / "config.toml") == config
    if same and _run_finished(out, [c.label for c in config.strategies] + [TWIN], t.replicas):
        print(f"  {t.name}: finished already (config.toml matches, {t.replicas} replicas)", flush=True)
        return True
    if out.exists() and not same:  # the manifest entry changed: the old run answers another question
        shutil.rmtree(out)
    return not run(config, out, resume=same, progress=False).errors


def _run_finished(out: Path, labels: Sequence[str], replicas: int) -> bool:
    try:
        entries = json.loads((out / "summary.json").read_text())["strategies"]
    except (OSError, ValueError, KeyError):
        return False
    return all(entries.get(lab, {}).get("replicas") == replicas for lab in labels)


# ------------------------------------------------------------------------------------------- tables


def _md(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A markdown table: the first ``left`` columns left-aligned, the others right-aligned."""
    rule = "|" + "---|" * left + "---:|" * (len(header) - left)
    return "\n".join(["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows)])


FLOOR_HEADER = ("scenario", "AvgGap_req", "AvgGap (all events)", "TA gap", "RA gap", "FA gap", "MIA gap", "KL",
                "seeds")
_GAPS = ("TA_gap", "RA_gap", "FA_gap", "MIA_gap")


def floor_rows(folders: Sequence[Path]) -> list[list[str]]:
    """The noise floor: per scenario, the ``retrain (twin)`` row of each folder's aggregate.csv — AvgGap_req
    and AvgGap (mean ± 95 % CI over seeds), the per-component gaps and KL averaged over the request events."""
    out = []
    for folder in folders:
        rows = [r for r in read_aggregate(folder / "aggregate.csv") if r.strategy == TWIN]
        for scen in dict.fromkeys(r.scenario for r in rows):
            mine = [r for r in rows if r.scenario == scen]
            final = {r.metric: r for r in mine if r.step == "final"}
            req = [r for r in mine if r.step != "final" and r.kind not in ("learn", "run")]

            def over_requests(metric: str, scale: float = 100) -> str:
                vals = [r.mean for r in req if r.metric == metric and r.mean is not None]
                return f"{scale * float(np.mean(vals)):.2f}" if vals else "–"

            def pm(metric: str) -> str:
                r = final[metric]
                return "–" if r.mean is None else f"{100 * r.mean:.2f} ± {100 * (r.ci95 or 0):.2f}"

            out.append([scen, pm("AvgGap_req"), pm("AvgGap_mean"), *(over_requests(g) for g in _GAPS),
                        over_requests("KL", 1), str(final["AvgGap_mean"].n)])
    return out


KLOM_HEADER = ("run", "strategy", "KLoM", "KLoM_p95", "KL", "LiRA_AUC %", "AvgGap_req", "AvgGap")


def klom_rows(folder: Path) -> list[list[str]]:
    """A ``clu run --replicas R`` folder's final-event figures (mean over replicas; KLoM across them)."""

    def num(v: float | None, scale: float = 1, dec: int = 2) -> str:
        return "–" if v is None else f"{scale * v:.{dec}f}"

    out = []
    for label, entry in json.loads((folder / "summary.json").read_text())["strategies"].items():
        f = entry["final"]
        out.append([folder.name, label, num(f.get("KLoM")), num(f.get("KLoM_p95")), num(f.get("KL"), dec=3),
                    num(f.get("LiRA_AUC"), 100, 1), num(f.get("AvgGap_req"), 100), num(f.get("AvgGap_mean"), 100)])
    return out


def _exists(t: Table, folder: Path) -> bool:
    return (folder / ("summary.json" if t.run else "results.csv")).is_file()


def table_files(t: Table, folder: Path) -> dict[str, str]:
    """``table.md`` and ``table.tex`` of an existing result folder."""
    if not t.run:
        return {"table.md": report(folder, "markdown"), "table.tex": report(folder, "tex")}
    rows = klom_rows(folder)
    tex = tabular([escape(h) for h in KLOM_HEADER], [[escape(c) for c in r] for r in rows], escape(t.caption),
                  label(t.name), left=2)
    return {"table.md": _md(KLOM_HEADER, rows, 2) + "\n", "table.tex": tex + "\n"}


def readme_blocks(m: Manifest, results: Path) -> dict[str, str]:
    """Every README block's content, from the files under ``results``."""
    blocks = {}
    for name, t in m.tables.items():
        folder = results / name
        if not _exists(t, folder):
            blocks[name] = PENDING
        elif t.run:
            blocks[name] = f"{t.caption}\n\n{_md(KLOM_HEADER, klom_rows(folder), 2)}"
        else:
            body = report(folder, "markdown", standalone=False).strip()
            blocks[name] = f"{t.caption} Files: `results/{name}/`.\n\n{body}"
    floor = [results / n for n in m.floor if (results / n / "aggregate.csv").is_file()]
    blocks[FLOOR] = f"{m.floor_caption}\n\n{_md(FLOOR_HEADER, floor_rows(floor))}" if floor else PENDING
    if m.pairs:
        rows = pairs_table(results, m.pairs, m.pair_strategies, m.pair_baselines)
        blocks[PAIRS] = f"{m.pairs_caption}\n\n{_md(PAIRS_HEADER, rows, 3)}" if rows else PENDING
    return blocks


def fill_readme(text: str, blocks: dict[str, str]) -> str:
    """``text`` with every marker block replaced by its content; an unknown marker name is an error."""
    unknown = sorted({mt["name"] for mt in _BLOCK.finditer(text)} - set(blocks))
    if unknown:
        raise SystemExit(f"README markers name no table of the manifest: {', '.join(unknown)}")
    return _BLOCK.sub(lambda mt: f"<!-- results:{mt['name']} -->\n{blocks[mt['name']]}\n<!-- end results:{mt['name']} -->",
                      text)


def readme_markers(text: str) -> list[str]:
    """The block names of a README, in order."""
    return [mt["name"] for mt in _BLOCK.finditer(text)]


# ------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, metavar="TABLE[,TABLE]", help="run or refresh these tables only")
    p.add_argument("--readme-only", action="store_true", help="run nothing: table.md/.tex and README from files")
    p.add_argument("--manifest", type=Path, default=HERE / "tables.toml")
    p.add_argument("--results", type=Path, default=HERE, help="the folder holding the table folders")
    p.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = p.parse_args(argv)
    m = load_manifest(args.manifest)
    names = list(m.tables) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in m.tables]
    if unknown:
        p.error(f"not in {args.manifest}: {', '.join(unknown)}")
    executor = os.environ.get("RESULTS_EXECUTOR", "ray")
    failed = []
    for i, name in enumerate(names, 1):
        t, folder = m.tables[name], args.results / name
        if not args.readme_only:
            what = "run" if t.run else "sweep"
            print(f"[{i}/{len(names)}] {name}: {what} of {len(t.scenarios)} scenario(s) x {len(t.strategies)} "
                  f"strategies x {len(t.seeds)} seed(s) -> {folder}", flush=True)
            t0 = time.perf_counter()
            if not run_table(t, folder, executor):
                failed.append(name)
            print(f"[{i}/{len(names)}] {name}: {'FAILED trials' if name in failed else 'done'} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if _exists(t, folder):
            for file, text in table_files(t, folder).items():
                write_atomic(folder / file, text)
    readme = args.readme.read_text()
    blocks = readme_blocks(m, args.results)
    absent = [n for n in blocks if n not in readme_markers(readme)]
    if absent:
        print(f"{args.readme}: warning: no block for {', '.join(absent)}", file=sys.stderr)
    new = fill_readme(readme, blocks)
    if new != readme:
        write_atomic(args.readme, new)
    print(f"{args.readme}: tables {'regenerated' if new != readme else 'up to date'}", flush=True)
    if failed:
        print(f"results: trials failed or unfinished in {', '.join(failed)} (rerun `make results` to resume)",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
