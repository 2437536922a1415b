"""The noise floor table of the README, from the committed sweep folders under results/ (no hand-typed numbers).

    python results/floor.py            # print the table
    python results/floor.py --write    # replace the table between the markers in README.md

Each ``results/floor-*`` folder is a ``clu sweep`` of the CPU scenarios with seeds 0-9 (the command is in its
``sweep.json``); the floor is the ``retrain (twin)`` row: exact unlearning measured against itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from clu.results import TWIN, read_aggregate

ROOT = Path(__file__).resolve().parent
README = ROOT.parent / "README.md"
BEGIN, END = "<!-- floor table: python results/floor.py --write -->", "<!-- end of floor table -->"
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


def main(argv: list[str]) -> None:
    text = table()
    if "--write" not in argv:
        print(text)
        return
    readme = README.read_text()
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main(sys.argv[1:])
