"""Run every benchmark and append one dated section with all their figures to ``bench/RESULTS.md``.

Each benchmark runs in its own process (``bench/<name>.py --md FILE``) one after the other; their markdown
blocks are collected and written as one section — date, machine, commit, a summary of the headline figures
next to their targets, then each benchmark's block — by an atomic rewrite of RESULTS.md (temp file + rename).
A benchmark that fails is reported in the section with its error; the exit status is then 1.

    .venv/bin/python bench/run_all.py            # what `make bench` runs (~5-10 min on 2 cores)
    .venv/bin/python bench/run_all.py --quick    # smoke test of the scripts (figures meaningless)
    .venv/bin/python bench/run_all.py --only overhead,default_run --no-record
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

BENCHES = ("unlearn_cost", "overhead", "sweep_scaling", "default_run", "cli_latency")


def run_bench(name: str, folder: Path, quick: bool) -> tuple[str, list[dict[str, object]], float, str | None]:
    md, js = folder / f"{name}.md", folder / f"{name}.json"
    cmd = [sys.executable, str(C.ROOT / "bench" / f"{name}.py"), "--md", str(md), "--json", str(js)]
    if quick:
        cmd.append("--quick")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=C.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0 or not md.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:]) or f"exit status {proc.returncode}"
        title = name.replace("_", " ")
        return f"### {title}\n\nThis benchmark failed (exit {proc.returncode}):\n\n```\n{tail}\n```", [], elapsed, tail
    heads = json.loads(js.read_text()) if js.exists() else []
    return md.read_text(), heads, elapsed, None


def gpu_block() -> str:
    g = C.gpu()
    if g is None:
        return "### GPU\n\nno GPU on this machine (torch.cuda.is_available() is false): GPU figures skipped."
    return (f"### GPU\n\nGPU present ({g}), but the figures above are CPU figures (the CPU scenarios, device cpu); "
            "the suite has no GPU benchmark yet.")


def summary(heads: list[dict[str, object]], failed: list[str]) -> str:
    rows = [[h["figure"], h["value"], h["target"], C.verdict(h["met"]), h.get("load", "")] for h in heads]
    rows += [[f"{name}: failed", "–", "–", "**missed**", ""] for name in failed]
    return C.table(["figure", "measured", "target", "", "load"], rows, "lrrlr")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (figures meaningless); implies --no-record")
    p.add_argument("--no-record", action="store_true", help="print the section instead of appending it")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    t0 = time.perf_counter()
    start_load = C.load()
    blocks, heads, failed, times = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="clu-bench-") as tmp:
        for name in names:
            C.say(f"== {name} ==")
            block, h, elapsed, error = run_bench(name, Path(tmp), args.quick)
            blocks.append(block)
            heads += h
            times.append(f"{name} {elapsed:.0f} s")
            if error is not None:
                failed.append(name)
    blocks.append(gpu_block())
    total = time.perf_counter() - t0
    body = "\n\n".join([
        f"Load average (1, 5, 15 min) at the start: {start_load}; at the end: {C.load()}. Total "
        f"{total / 60:.1f} min ({'; '.join(times)}).",
        "Summary (each figure measured side by side within its benchmark; *load*: 1-min load average then):",
        summary(heads, failed),
        *blocks,
    ])
    if args.quick:
        body = "**Quick smoke run (`--quick`): tiny sizes, figures not meaningful.**\n\n" + body
    if args.quick or args.no_record:
        print(C.section_header("benchmarks") + "\n" + body)
    else:
        C.append_section(body, "make bench")
        C.say(f"appended a section to {C.RESULTS} ({total / 60:.1f} min)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
