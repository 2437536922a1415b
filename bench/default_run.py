"""Default run (DESIGN §11): wall time and peak memory of ``clu run --out DIR`` with no other arguments.

The command runs in a fresh process, imports included — the default scenario (``digits-class``) with every
strategy and the oracle, results, checkpoints and plots, exactly what ``make run`` does. Wall time is taken
around the process; its peak resident memory comes from ``os.wait4`` (the child's own rusage). The run's
``summary.json`` splits the time: the strategies' learn/unlearn time (``time_s``) against the rest
(imports, data, evaluation after every event, writing results and plots). A separate fresh process times the
imports alone.

Target (issue 6): ≤ 60 s.

    .venv/bin/python bench/default_run.py [--repeats 1] [--record]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 60.0


def clu_command() -> list[str]:
    exe = C.VENV_BIN / "clu"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("clu")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from clu.cli import main; sys.exit(main())"]


def run_once(folder: Path) -> dict[str, Any]:
    out = folder / "run"
    cmd = [*clu_command(), "run", "--out", str(out)]
    with open(folder / "stdout.txt", "w") as so, open(folder / "stderr.txt", "w") as se:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=C.ROOT, stdout=so, stderr=se)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join((folder / "stderr.txt").read_text().strip().splitlines()[-5:])
        raise RuntimeError(f"`clu run` failed (exit {proc.returncode}): {tail}")
    summary = json.loads((out / "summary.json").read_text())
    strat = {k: v.get("time_s") or 0.0 for k, v in summary["strategies"].items()}
    return {"wall": wall, "maxrss_mib": usage.ru_maxrss / 1024, "cpu": usage.ru_utime + usage.ru_stime,
            "strategies": strat, "scenario": summary.get("scenario"), "load": C.load1(), "disk": disk(out)}


def disk(run: Path) -> dict[str, float]:
    """The run folder's size in MiB under each ``--checkpoints`` policy, read off one ``all`` run: ``last``
    keeps each unit's newest checkpoint file of the same content, ``none`` none of them."""
    files = [f for f in run.rglob("*") if f.is_file()]
    ckpts = [f for f in files if f.suffix == ".pt" and "checkpoints" in f.relative_to(run).parts]
    newest = {f.parent: f for f in sorted(ckpts)}.values()
    rest = sum(f.stat().st_size for f in files if f not in ckpts)
    mib = 1024 * 1024
    return {"all": (rest + sum(f.stat().st_size for f in ckpts)) / mib,
            "last": (rest + sum(f.stat().st_size for f in newest)) / mib, "none": rest / mib}


def import_time() -> float:
    code = "import torch, avalanche.training, clu.cli, clu.runner, clu.driver, clu.plots"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=C.ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def render(runs: list[dict[str, Any]], imports: float, elapsed: float) -> str:
    wall = C.median(r["wall"] for r in runs)
    rss = max(r["maxrss_mib"] for r in runs)
    train = C.median(sum(r["strategies"].values()) for r in runs)
    r0 = runs[0]
    slowest = sorted(r0["strategies"].items(), key=lambda kv: -kv[1])[:3]
    rows = [[f"`clu run --out DIR` ({r0['scenario']}, {len(r0['strategies'])} strategies incl. the oracle)",
             f"**{wall:.1f}**", f"{rss:.0f}", f"{C.median(r['cpu'] for r in runs):.1f}", f"{train:.1f}",
             f"{imports:.1f}", ", ".join(r["load"] for r in runs)]]
    lines = [
        "### Default run",
        "",
        f"Target: wall time of `clu run` with no arguments but `--out`, imports included, ≤ {TARGET:.0f} s.",
        "",
        C.table(["command", "wall s", "peak RSS MiB", "CPU s", "strategies' learn/unlearn s", "imports alone s",
                 "load"], rows),
        "",
        f"- default run: {wall:.1f} s"
        + (f" (median of {len(runs)})" if len(runs) > 1 else "")
        + f" — target ≤ {TARGET:.0f} s: {C.verdict(wall <= TARGET)}"
        + ("" if wall <= TARGET else f" (over by {wall - TARGET:.1f} s)") + f"; peak memory {rss:.0f} MiB.",
        "- Disk: the run folder holds "
        + ", ".join(f"{v:.1f} MiB with `--checkpoints {k}`" for k, v in r0["disk"].items())
        + " (`last` and `none` read off the same folder: its newest checkpoint per unit, none).",
        f"- Split: learn/unlearn {train:.1f} s (slowest: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in slowest)
        + f"), imports ~{imports:.1f} s, the remaining ~{max(wall - train - imports, 0):.1f} s data loading, "
        "evaluation after every event, checkpoints, results and plots.",
        "",
        f"({elapsed:.0f} s for this benchmark.)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__)
    p.add_argument("--repeats", type=int, default=1, help="runs (the median is the figure; default 1)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    runs = []
    for i in range(max(1, args.repeats)):
        C.say(f"default run {i + 1}/{args.repeats} (load {C.load()})")
        with tempfile.TemporaryDirectory(prefix="clu-bench-run-") as tmp:
            runs.append(run_once(Path(tmp)))
        C.say(f"  {runs[-1]['wall']:.1f} s, peak {runs[-1]['maxrss_mib']:.0f} MiB")
    imports = import_time()
    wall = C.median(r["wall"] for r in runs)
    heads = [C.headline("default run, `clu run` wall time (peak memory)",
                        f"{wall:.1f} s ({max(r['maxrss_mib'] for r in runs):.0f} MiB)", f"≤ {TARGET:.0f} s",
                        wall <= TARGET, ", ".join(r["load"] for r in runs))]
    C.emit(render(runs, imports, time.perf_counter() - t0), args, "default run", heads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
