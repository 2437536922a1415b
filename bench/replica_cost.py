"""Replicas' cost (DESIGN §11, issue 11): wall time of a digits-class sweep with R = 4 ÷ the same sweep with R = 1.

Both sweeps run serially in this process after a warm-up sweep (imports, data), side by side, on the same scenario, strategies and seeds, with no
extra shadow oracles (``--shadows 0``: with R = 4 the other replicas' oracles are the shadows), so the ratio is
the price of the replicas themselves (the oracle, the twin and every strategy trained R times) — ideally R.

    .venv/bin/python bench/replica_cost.py [--seeds 2] [--record]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import clu  # noqa: E402


def timed_sweep(out: Path, replicas: int, seeds: int) -> float:
    t0 = time.perf_counter()
    clu.sweep(["digits-class"], ["ugclu", "er"], range(seeds), executor="serial", replicas=replicas, shadows=0,
              out=out, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    seeds = 1 if args.quick else args.seeds
    load = C.load1()
    with tempfile.TemporaryDirectory(prefix="clu-replicas-") as tmp:
        timed_sweep(Path(tmp) / "warm-up", 1, 1)  # imports, data and first-call costs out of the figures
        one = timed_sweep(Path(tmp) / "r1", 1, seeds)
        four = timed_sweep(Path(tmp) / "r4", 4, seeds)
    block = "\n".join([
        "### replicas' cost",
        "",
        f"digits-class, ugclu + er + the oracle and its twin, seeds 0–{seeds - 1}, serial, `--shadows 0`; "
        f"1-min load {load} at the start.",
        "",
        C.table(["R", "wall s", "÷ R = 1"], [["1", f"{one:.1f}", "1.00"], ["4", f"{four:.1f}", f"{four / one:.2f}"]],
                "rrr"),
        "",
        "The ideal is 4.00 (four times the training); the rest is per-sweep overhead that replicas share.",
    ])
    C.say(block)
    if args.md:
        C.write_atomic(args.md, block + "\n")
    if args.record:
        C.append_section(block, "replicas' cost")


if __name__ == "__main__":
    main()
