"""Sweep scaling (DESIGN §11, issue 15): two figures, each measured side by side in one run.

1. **The README's digits sweep** (3 digits scenarios × 9 strategies × seeds 0-4, the oracles, twins and shadow
   oracles included) through ``clu sweep`` in a fresh process, ``--executor serial`` then ``--executor ray``:
   Ray's wall time ÷ the serial wall time, target ≤ 0.6 on 2 cores (ideal 0.5). Both runs' numbers are
   compared (they must be identical). From the two timelines (the trials' ``done.json``) comes the
   **break-even size** that ``--executor auto`` uses: Ray's extra fixed cost ÷ what it saves per trial.
2. **A 4-trial sweep**: ``mnist5k-class`` with more epochs per task (one trial ~5-20 s), the oracle, its twin,
   ``ugclu`` and ``er`` of seed 0, no shadow oracles, run by ``clu.sweep`` with ``executor="ray"`` on this
   machine's CPUs (1 CPU and 1 torch thread per trial): wall time ÷ (N / slots × one trial's wall time), target
   ≤ 1.25. One trial's wall time comes from the serial executor running the very same trials in a warm process
   (torch, Avalanche and clu imported) just before, so it holds the trial alone.

    .venv/bin/python bench/sweep_scaling.py [--epochs 6] [--no-readme] [--record]
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 1.25
README_TARGET = 0.6
STRATEGIES = ("ugclu", "er")
SEEDS = (0,)
README_SCENARIOS = ("digits-class", "digits-cross-task", "digits-random-sample")
README_STRATEGIES = "ugclu,naive,er,er_ft,er_ga,er_rl,er_salun,er_sfron,retrain_stream"


def write_scenario(folder: Path, epochs: int) -> Path:
    from clu.config import dump_toml

    raw = tomllib.loads((C.ROOT / "scenarios" / "mnist5k-class.toml").read_text())
    raw["name"] = "bench-sweep"
    raw["description"] = f"mnist5k-class with {epochs} epochs per task (bench/sweep_scaling.py)"
    raw["training"]["epochs"] = epochs
    path = folder / "bench-sweep.toml"
    path.write_text(dump_toml(raw))
    return path


# ------------------------------------------------------------------------------------ child processes


def child(executor: str, scenario: str, seeds: list[int], out: str) -> dict[str, Any]:
    """Run one sweep in this (fresh) process and time it; the parent reads the JSON line printed last."""
    C.quiet_warnings()
    from clu import sweeps as sweep_mod

    timing: dict[str, float] = {}
    if executor == "serial":  # a warm process: the trials alone are timed
        import avalanche.training  # noqa: F401
        import torch  # noqa: F401

        import clu.runner  # noqa: F401
    t0, t0_epoch = time.perf_counter(), time.time()
    if executor == "ray":
        import ray
        from ray import tune  # noqa: F401

        timing["ray_import_s"] = time.perf_counter() - t0
        init, shutdown = ray.init, ray.shutdown

        def timed_init(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return init(*a, **k)
            finally:
                timing["ray_init_s"] = time.perf_counter() - t

        def timed_shutdown(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return shutdown(*a, **k)
            finally:
                timing["ray_shutdown_s"] = time.perf_counter() - t

        ray.init, ray.shutdown = timed_init, timed_shutdown
    res = sweep_mod.sweep([scenario], list(STRATEGIES), seeds, executor=executor, out=Path(out), progress=False,
                          cpus_per_trial=1.0, shadows=0)
    wall = time.perf_counter() - t0
    s = res.summary
    # a timeline from the trials' done.json: end = finished_at (whole seconds, +0.5 s), start = end - elapsed
    return {"wall_s": wall, "elapsed_s": s["elapsed_s"], "trials": s["trial_elapsed_s"], "failed": s["failed"],
            "finished": s["finished"], "spans": spans(Path(out), t0_epoch), **timing}


def spans(out: Path, t0_epoch: float) -> dict[str, tuple[float, float]]:
    """Trial id → (start, end) in s after ``t0_epoch``, from the trials' done.json: end = finished_at (whole
    seconds, +0.5 s), start = end − elapsed."""
    found = {}
    for done in out.glob("trials/*/*/*/done.json"):
        d = json.loads(done.read_text())
        end = dt.datetime.fromisoformat(d["finished_at"]).timestamp() + 0.5 - t0_epoch
        found[d["trial"]] = (end - d["elapsed_s"], end)
    return found


ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONWARNINGS": "ignore",
       # Ray starts its workers at niceness 15; the serial reference runs at 0. On a shared machine the
       # niced trials would yield to every other job, which is priority, not scaling: run both at 0.
       "RAY_worker_niceness": "0"}


def run_child(executor: str, scenario: Path, seeds: tuple[int, ...], out: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", executor, "--scenario", str(scenario),
           "--seeds", ",".join(map(str, seeds)), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV}, cwd=C.ROOT)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"the {executor} sweep failed (exit {proc.returncode}): {tail}")
    data = json.loads(lines[-1])
    if data["failed"] or data["finished"] != (2 + len(STRATEGIES)) * len(seeds):
        raise RuntimeError(f"the {executor} sweep did not finish all its trials: {data['failed']}")
    return data


# ------------------------------------------------------------------------------------------- parent


def render(serial: dict[str, Any], ray_run: dict[str, Any], loads: dict[str, str], slots: int,
           epochs: int) -> tuple[str, float, float]:
    """The 4-trial block; returns it with the ratio (Ray start-up included; excluded)."""
    alone = serial["trials"]
    inray = ray_run["trials"]
    n = len(inray)
    one = sum(alone.values()) / len(alone)
    ideal = n / slots * one
    startup = ray_run.get("ray_import_s", 0.0) + ray_run.get("ray_init_s", 0.0)
    shutdown = ray_run.get("ray_shutdown_s", 0.0)
    wall = ray_run["wall_s"]
    r_all = wall / ideal
    r_ex = (wall - startup - shutdown) / ideal
    agg = serial["wall_s"] - sum(serial["trials"].values())
    spans = ray_run.get("spans", {})
    order = sorted(spans, key=lambda k: spans[k][0])
    first, warm = order[:slots], order[slots:]  # a worker's first trial also imports torch, Avalanche, clu
    slow_warm = (sum(inray[k] for k in warm) / sum(alone[k] for k in warm)) if warm else None
    slow_first = (sum(inray[k] for k in first) / sum(alone[k] for k in first)) if first else None
    lead = min(s0 for s0, _ in spans.values()) if spans else float("nan")
    tail = wall - max(e for _, e in spans.values()) if spans else float("nan")
    span = wall - lead - tail
    use = sum(inray.values()) / (slots * span) if spans else float("nan")
    per_trial = ", ".join(f"{k.split('/', 1)[1]} {v:.1f} s" for k, v in sorted(alone.items()))
    in_ray = ", ".join(f"{k.split('/', 1)[1]} {inray[k]:.1f} s" for k in order)
    label = " + ".join(STRATEGIES)
    rows = [[f"{n} (oracle, twin, {label}; seed {', '.join(map(str, SEEDS))})", slots, f"{one:.1f}",
             f"{ideal:.1f}", f"{wall:.1f}", f"**{r_all:.2f}**", f"{r_ex:.2f}", f"{startup:.1f} + {shutdown:.1f}",
             loads["ray"]]]
    lines = [
        "#### A 4-trial sweep, `--executor ray`",
        "",
        f"Trials: scenario `mnist5k-class` with {epochs} epoch(s) per task and no shadow oracles, 1 CPU and 1 torch "
        "thread each; one trial's wall time = mean over the same trials run by the serial executor in a warm "
        f"process just before (per trial: {per_trial}; load {loads['serial']}). The Ray sweep's wall time covers "
        "`import ray`, `ray.init`, Tune and worker start-up, the trials, shutdown and aggregation (tables, plots). "
        "Ray's workers run at niceness 0 here, like the serial reference.",
        "",
        C.table(["trials N", "slots", "one trial s", "ideal s", "Ray sweep s", "÷ ideal (start-up incl.)",
                 "÷ ideal (start-up excl.)", "Ray import + init, shutdown s", "load"], rows),
        "",
        f"- 4-trial sweep with `--executor ray`, start-up included: {r_all:.2f} × ideal — target ≤ {TARGET}: "
        f"{C.verdict(r_all <= TARGET)}" + ("" if r_all <= TARGET else f" (over by {r_all - TARGET:.2f})")
        + f" (load {loads['ray']}); without Ray's import, init and shutdown {r_ex:.2f}.",
    ]
    if spans:
        lines.append(
            f"- Timeline (trial start/end from the trials' `done.json`, ±1 s): the first trial started {lead:.1f} s "
            f"after the sweep call (`import ray` {ray_run.get('ray_import_s', 0):.1f} s, `ray.init` "
            f"{ray_run.get('ray_init_s', 0):.1f} s, the rest Tune and worker start-up); the trials then ran for "
            f"{span:.1f} s with the {slots} slots {100 * use:.0f} % busy; after the last one {tail:.1f} s went to "
            f"shutdown ({shutdown:.1f} s) and aggregation (~{agg:.1f} s in the serial sweep). Trials inside Ray, in "
            f"start order: {in_ray}. A worker's first trial took {slow_first:.2f}× its serial time (it imports "
            "torch, Avalanche and clu), the later ones "
            + (f"{slow_warm:.2f}×" if slow_warm is not None else "–") + " (two trials sharing the cores).")
    return "\n".join(lines), r_all, r_ex


def readme_command(executor: str, out: Path, quick: bool) -> list[str]:
    """``clu sweep`` of the README's digits sweep (``quick``: one scenario, seed 0, two strategies, no shadows)."""
    scenarios = [str(C.ROOT / "scenarios" / f"{n}.toml") for n in (README_SCENARIOS[:1] if quick else README_SCENARIOS)]
    rest = (["--strategies", "naive,er", "--seeds", "0", "--shadows", "0"] if quick
            else ["--strategies", README_STRATEGIES, "--seeds", "0-4"])
    return [str(C.VENV_BIN / "clu"), "sweep", *scenarios, *rest, "--executor", executor, "--out", str(out)]


def run_readme(executor: str, out: Path, quick: bool) -> dict[str, Any]:
    """One README sweep in a fresh process, timed from outside (imports included), with its timeline."""
    t0, t0_epoch = time.perf_counter(), time.time()
    proc = subprocess.run(readme_command(executor, out, quick), capture_output=True, text=True,
                          env={**os.environ, **ENV}, cwd=C.ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"the {executor} README sweep failed (exit {proc.returncode}): {tail}")
    found = spans(out, t0_epoch)
    lead = min(a for a, _ in found.values())
    tail = wall - max(b for _, b in found.values())
    return {"wall_s": wall, "n": len(found), "lead_s": lead, "tail_s": tail, "span_s": wall - lead - tail,
            "choice": next((x for x in proc.stderr.splitlines() if "--executor auto" in x), "")}


def values(results: Path) -> dict[tuple[str, ...], str]:
    """results.csv without wall-clock rows."""
    import csv

    with results.open(newline="") as f:
        return {tuple(r[k] for k in ("scenario", "strategy", "seed", "replica", "step", "event_kind", "metric")):
                r["value"] for r in csv.DictReader(f) if "time" not in r["metric"]}


def break_even(serial: dict[str, Any], ray_run: dict[str, Any]) -> float | None:
    """Trials from which Ray's sweep is faster than the serial one, from the two timelines: Ray's extra fixed
    cost (before the first trial and after the last) ÷ what it saves per trial (None: it saves nothing)."""
    fixed = (ray_run["lead_s"] + ray_run["tail_s"]) - (serial["lead_s"] + serial["tail_s"])
    saved = serial["span_s"] / serial["n"] - ray_run["span_s"] / ray_run["n"]
    return fixed / saved if saved > 0 else None


def render_readme(serial: dict[str, Any], ray_run: dict[str, Any], same: bool, loads: dict[str, str], slots: int,
                  quick: bool) -> tuple[str, float, float | None]:
    ratio = ray_run["wall_s"] / serial["wall_s"]
    even = break_even(serial, ray_run)
    what = ("digits-class × naive, er × seed 0, no shadows (--quick)" if quick else
            "3 digits scenarios × 9 strategies × seeds 0-4, with the oracles, twins and shadow oracles")
    rows = [[ex, run["n"], f"{run['wall_s']:.1f}", f"{run['lead_s']:.1f}", f"{run['span_s']:.1f}",
             f"{run['tail_s']:.1f}", loads[ex]] for ex, run in (("serial", serial), ("ray", ray_run))]
    lines = [
        "#### The README's digits sweep, serial vs `--executor ray`",
        "",
        f"`clu sweep` ({what}) in a fresh process each, timed from outside (imports included), serial first, then "
        "Ray; before the first trial / trials / after the last from the trials' `done.json` (±1 s).",
        "",
        C.table(["executor", "trials", "wall s", "before first trial s", "trials s", "after last trial s",
                 "load (1 min, at its end)"], rows),
        "",
        f"- README digits sweep, Ray ÷ serial wall time: **{ratio:.2f}** — target ≤ {README_TARGET} (ideal "
        f"{1 / slots:.2f} on {slots} cores): {C.verdict(ratio <= README_TARGET)}"
        + ("" if ratio <= README_TARGET else f" (over by {ratio - README_TARGET:.2f})")
        + f"; load {loads['serial']} (serial), {loads['ray']} (Ray). Results identical: {'yes' if same else '**no**'}.",
        "- break-even size for `--executor auto`: "
        + (f"**{even:.0f} trials** of this length — Ray's extra fixed cost "
           f"{ray_run['lead_s'] + ray_run['tail_s'] - serial['lead_s'] - serial['tail_s']:.1f} s ÷ "
           f"{serial['span_s'] / serial['n'] - ray_run['span_s'] / ray_run['n']:.2f} s saved per trial"
           if even is not None else "none: Ray saved no time per trial in this run")
        + " (`clu.sweeps.pack.BREAK_EVEN_TRIALS` holds the value recorded here).",
    ]
    return "\n".join(lines), ratio, even


KEPT = ("readme-serial", "readme-ray", "serial", "ray", "bench-sweep.toml")
"""What this benchmark writes into a ``--keep`` folder (and replaces there on the next run)."""


def keep_folder(path: Path) -> Path:
    """``--keep DIR``: empty, new, or one this benchmark wrote before (its own entries are replaced); anything
    else is refused rather than deleted."""
    if path.exists():
        other = sorted(p.name for p in path.iterdir() if p.name not in KEPT)
        if not path.is_dir() or other:
            raise SystemExit(f"sweep_scaling: --keep {path}: not a folder this benchmark wrote (holds {other[:3]}); "
                             "give a new or empty folder")
        for name in KEPT:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__)
    p.add_argument("--epochs", type=int, default=6, help="epochs per learn task of the 4-trial scenario (default 6)")
    p.add_argument("--no-readme", action="store_true", help="skip the README digits sweep (tens of minutes)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep the sweep folders in DIR (replaced) for inspection, instead of a temp folder")
    p.add_argument("--child", choices=("ray", "serial"), help=argparse_hidden())
    p.add_argument("--scenario", help=argparse_hidden())
    p.add_argument("--seeds", help=argparse_hidden())
    p.add_argument("--out", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.scenario, [int(s) for s in args.seeds.split(",")], args.out)))
        return 0
    if args.quick:
        args.epochs = 1
    t0 = time.perf_counter()
    slots = C.cores()
    heads, blocks = [], []
    with contextlib.ExitStack() as stack:
        if args.keep:
            folder = keep_folder(args.keep)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clu-bench-sweep-")))
        if not args.no_readme:
            loads: dict[str, str] = {}
            runs = {}
            for ex in ("serial", "ray"):
                C.say(f"sweep scaling: README digits sweep, {ex} (load {C.load()})")
                runs[ex] = run_readme(ex, folder / f"readme-{ex}", args.quick)
                loads[ex] = C.load1()
            same = values(folder / "readme-serial" / "results.csv") == values(folder / "readme-ray" / "results.csv")
            block, ratio, even = render_readme(runs["serial"], runs["ray"], same, loads, slots, args.quick)
            blocks.append(block)
            heads.append(C.headline(f"README digits sweep, Ray ÷ serial wall time on {slots} CPUs", f"{ratio:.2f}",
                                    f"≤ {README_TARGET}", ratio <= README_TARGET, loads["ray"]))
            heads.append(C.headline("break-even size of --executor auto (trials)",
                                    "–" if even is None else f"{even:.0f}", "measured", None, loads["ray"]))
        scenario = write_scenario(folder, args.epochs)
        loads = {}
        C.say(f"sweep scaling: 4 trials, serial (load {C.load()})")
        s0 = run_child("serial", scenario, SEEDS, folder / "serial")
        loads["serial"] = C.load1()
        C.say(f"sweep scaling: 4 trials, Ray (load {C.load()})")
        ray_run = run_child("ray", scenario, SEEDS, folder / "ray")
        loads["ray"] = C.load1()
    block, r_all, r_ex = render(s0, ray_run, loads, slots, args.epochs)
    blocks.append(block)
    heads.append(C.headline(f"4-trial sweep, --executor ray, ÷ ideal on {slots} CPUs (start-up incl.; excl.)",
                            f"{r_all:.2f}; {r_ex:.2f}", f"≤ {TARGET}", r_all <= TARGET, loads["ray"]))
    body = "\n\n".join(["### Sweep scaling", *blocks, f"({time.perf_counter() - t0:.0f} s for this benchmark.)"])
    C.emit(body, args, "sweep scaling", heads)
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
