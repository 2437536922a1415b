"""CLI latency (issue 17): wall time from typing a command to its answer, for the commands that need no
training — a typo's one-line error (the scenario, the strategy, a sweep's strategy, a non-writable ``--out``)
and the listings ``clu strategies`` and ``clu scenarios``. Target: under 1 s each on 2 cores (validation runs
before torch, Avalanche or Ray are imported; before issue 17 a typo took 7–10 s).

Each command runs as the installed ``clu`` console script in a fresh process, ``--repeats`` times (default 5);
the figure is the median wall time, the exit status is checked (2 for the typos, 0 for the listings).

    .venv/bin/python bench/cli_latency.py [--repeats 5] [--record]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 1.0
COMMANDS: list[tuple[str, list[str], int]] = [
    ("scenario typo", ["run", "digits-clas"], 2),
    ("strategy typo", ["run", "--strategy", "ugcl"], 2),
    ("sweep strategy typo", ["sweep", "digits-class", "--strategies", "er,ugcl", "--seeds", "0-4"], 2),
    ("non-writable --out", ["run", "--out", "/proc/clu-bench/run"], 2),
    ("reversed seed range", ["sweep", "digits-class", "--strategies", "er", "--seeds", "4-0"], 2),
    ("`clu strategies`", ["strategies"], 0),
    ("`clu scenarios`", ["scenarios"], 0),
]


def timed(argv: list[str], status: int, cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([str(C.VENV_BIN / "clu"), *argv], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != status:
        raise RuntimeError(f"clu {' '.join(argv)}: exit {done.returncode}, expected {status}: {done.stderr[-300:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__)
    p.add_argument("--repeats", type=int, default=5, help="runs per command (the median is the figure)")
    args = p.parse_args(argv)
    repeats = 2 if args.quick else max(1, args.repeats)
    load = C.load1()
    rows, worst = [], 0.0
    with tempfile.TemporaryDirectory(prefix="clu-bench-cli-") as tmp:
        for name, cmd, status in COMMANDS:
            wall = C.median(timed(cmd, status, Path(tmp)) for _ in range(repeats))
            worst = max(worst, wall)
            rows.append([name, f"`clu {' '.join(cmd)}`", f"{wall:.2f}", C.verdict(wall < TARGET)])
            C.say(f"  {name}: {wall:.2f} s")
    block = "\n".join([
        "### CLI latency",
        "",
        f"Target: a typo's error (and a listing) in under {TARGET:.0f} s wall, a fresh `clu` process each time, "
        f"median of {repeats}; 1-min load {load} at the start.",
        "",
        C.table(["what", "command", "wall s", ""], rows, "llrr"),
        "",
        f"- slowest: {worst:.2f} s — target < {TARGET:.0f} s: {C.verdict(worst < TARGET)}",
    ])
    C.emit(block, args, "CLI latency",
           [C.headline("CLI latency, slowest typo or listing", f"{worst:.2f} s", f"< {TARGET:.0f} s",
                       worst < TARGET, load)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
