"""The README's measured evaluation tables, from the committed result folders under results/ (no hand-typed
numbers): the noise floor of the CPU scenarios and the KLoM run with 16 replicas.

    python results/floor.py            # print the tables
    python results/floor.py --write    # replace the tables between their markers in README.md

Each ``results/floor-*`` folder is a ``clu sweep`` of the CPU scenarios with seeds 0-9 (the command is in its
``sweep.json``); the floor is the ``retrain (twin)`` row: exact unlearning measured against itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from clu.results import TWIN, read_aggregate

ROOT = Path(__file__).resolve().parent
README = ROOT.parent / "README.md"
BEGIN, END = "<!-- floor table: python results/floor.py --write -->", "<!-- end of floor table -->"
KLOM_BEGIN, KLOM_END = "<!-- klom table: python results/floor.py --write -->", "<!-- end of klom table -->"
GAPS = ("TA_gap", "RA_gap", "FA_gap", "MIA_gap")


def table() -> str:
    lines = ["| scenario | AvgGap_req | AvgGap (all events) | TA gap | RA gap | FA gap | MIA gap | KL | seeds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for folder in sorted(ROOT.glob("floor-*")):
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
                return f"{100 * r.mean:.2f} ± {100 * (r.ci95 or 0):.2f}"

            n = final["AvgGap_mean"].n
            lines.append(f"| {scen} | {pm('AvgGap_req')} | {pm('AvgGap_mean')} | "
                         + " | ".join(over_requests(g) for g in GAPS) + f" | {over_requests('KL', 1)} | {n} |")
    return "\n".join(lines)


def klom_table() -> str:
    """Final-event figures of each committed ``clu run --replicas 16`` (mean over replicas; KLoM across them)."""
    lines = ["| run | strategy | KLoM | KLoM_p95 | KL | LiRA_AUC % | AvgGap_req | AvgGap |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]

    def num(v: float | None, scale: float = 1, dec: int = 2) -> str:
        return "–" if v is None else f"{scale * v:.{dec}f}"

    for folder in sorted(ROOT.glob("klom16-*")):
        summary = json.loads((folder / "summary.json").read_text())
        for label, entry in summary["strategies"].items():
            f = entry["final"]
            lines.append(f"| {folder.name} | {label} | {num(f.get('KLoM'))} | {num(f.get('KLoM_p95'))} | "
                         f"{num(f.get('KL'), dec=3)} | {num(f.get('LiRA_AUC'), 100, 1)} | "
                         f"{num(f.get('AvgGap_req'), 100)} | {num(f.get('AvgGap_mean'), 100)} |")
    return "\n".join(lines)


def _replace(text: str, begin: str, end: str, body: str) -> str:
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def main(argv: list[str]) -> None:
    if "--write" not in argv:
        print(table(), klom_table(), sep="\n\n")
        return
    readme = _replace(README.read_text(), BEGIN, END, table())
    README.write_text(_replace(readme, KLOM_BEGIN, KLOM_END, klom_table()))


if __name__ == "__main__":
    main(sys.argv[1:])
