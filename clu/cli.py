"""The ``clu`` command: parses and validates arguments, calls the API, prints.

All argument handling lives here (the resume checks included); the work is done by :mod:`clu.runner`,
:mod:`clu.sweeps`, :mod:`clu.plots`, :mod:`clu.audit` and :mod:`clu.report`. Arguments and files are
validated before the heavy imports (torch, Avalanche, Ray, matplotlib), which the commands load on use.
Bad input (a ConfigError anywhere) ends with one line ``clu: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from clu.audit import audit_run
from clu.checkpoints import POLICIES
from clu.config import ConfigError, dump_toml, to_dict
from clu.events import LearnTask, to_json
from clu.paths import DEFAULT_SCENARIO, SCENARIO_DIR, resolve_scenario
from clu.report import report, run_table, write_report
from clu.results import check_out, read_checkpoint_policy
from clu.runconfig import RunConfig, load_run_config, resolve_config
from clu.scenario import events_for, load_scenario
from clu.strategies import STRATEGIES, resolve_strategy
from clu.trackers import TRACKERS, check_log
from clu.cluster import check_cluster_access

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    _COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be >= 0, got {value}")
    return value


def _seed_range(text: str) -> tuple[int, ...]:
    """``0-4`` or ``0,2,5`` → seeds."""
    try:
        seeds: list[int] = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            if hi and int(hi) < int(lo):
                raise argparse.ArgumentTypeError(f"{part} is a reversed range; write {hi}-{lo}")
            seeds += range(int(lo), int(hi) + 1) if hi else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 0-4 or 0,2,5, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
    return tuple(dict.fromkeys(seeds))


def _count(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {value}")
        return value

    return parse


def _relearn_fraction(text: str) -> float:
    """``--relearn-fraction``: a fraction in [0, 1) (0 = no relearning attack)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) (0 = no relearning attack), got {value}")
    return value


_RELEARN_HELP = ("part of D_U* the relearning attack fine-tunes a throw-away copy on (0 = off; default: the "
                 "scenario's [evaluation] relearn_fraction, 0.1 when absent)")


class _Parser(argparse.ArgumentParser):
    """argparse with our error format: one ``clu: error:`` line naming the command, not the usage block."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("clu").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"clu: error: {where}{message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="clu", description="Simulate continual learning-unlearning (clu-sim).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("scenarios", help="list the scenario files with their descriptions")
    s.add_argument("--dir", type=Path, default=None, help="folder of scenario files (default: the shipped ones)")

    s = sub.add_parser("events", help="print the event stream of a scenario")
    s.add_argument("scenario", help="scenario file or name (e.g. digits-class)")
    s.add_argument("--seed", type=_seed, default=None, help="seed (default: the scenario's)")
    s.add_argument("--format", choices=("table", "jsonl"), default="table")

    s = sub.add_parser("strategies", help="list the registered strategies, or show one's resolved config")
    s.add_argument("--show", default=None, metavar="NAME|FILE",
                   help="print the fully resolved config of a strategy name or preset file as TOML")

    s = sub.add_parser("run", help="run strategies on a scenario (default: digits-class, every strategy)")
    s.add_argument("scenario", nargs="?", default=None, help="scenario file/name, or a run's config.toml")
    s.add_argument("--strategy", action="append", default=None, metavar="NAME|FILE",
                   help="strategy name or preset file; repeat for several (default: all for the setting)")
    s.add_argument("--seed", type=_seed, default=None, help="seed (default: the scenario's)")
    s.add_argument("--out", type=Path, default=None, help="results folder (default ./runs/<scenario>-<time>)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default auto")
    s.add_argument("--resume", type=Path, default=None, metavar="DIR", help="continue an interrupted run in DIR")
    s.add_argument("--replicas", type=_count(1), default=None, metavar="R",
                   help="training replicas of every strategy and the oracle on the same event stream (default 1)")
    s.add_argument("--shadows", type=_count(0), default=None, metavar="K",
                   help="shadow oracles of the membership attack (default: the scenario's [evaluation] shadows)")
    s.add_argument("--relearn-fraction", type=_relearn_fraction, default=None, metavar="F", help=_RELEARN_HELP)
    s.add_argument("--checkpoints", choices=POLICIES, default=None,
                   help="per-event checkpoints kept: all (default; what clu audit scans), last (each unit's latest: "
                        "enough for --resume) or none")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--amp", action="store_true", default=None,
                   help="forward passes under bf16 autocast (for GPUs; CPU runs support it too)")
    s.add_argument("--dry-run", action="store_true",
                   help="print the resolved config (what config.toml would hold) and exit; loads no data")
    s.add_argument("--log", action="append", choices=TRACKERS, default=None,
                   help="publish every per-event measurement to a tracker (repeatable): TensorBoard files under "
                        "OUT/tensorboard, OUT/live.csv, or W&B (offline unless WANDB_MODE is set; the wandb extra)")

    s = sub.add_parser("plot", help="redraw a run or sweep folder's figures from its files")
    s.add_argument("dir", type=Path)

    s = sub.add_parser("audit", help="check that no forgotten id survives in a run's artefacts")
    s.add_argument("dir", type=Path)

    s = sub.add_parser("sweep", help="scenarios x strategies x seeds, in parallel with Ray")
    s.add_argument("scenarios", nargs="+", help="scenario files or names")
    s.add_argument("--strategies", required=True, help="comma-separated strategy names")
    s.add_argument("--seeds", type=_seed_range, default=(0,), help="e.g. 0-4 or 0,2,5")
    s.add_argument("--executor", choices=("auto", "ray", "serial"), default="auto",
                   help="auto (default): in-process below the measured break-even size, else Ray; ray: always Ray")
    s.add_argument("--address", default=None, help="existing Ray cluster (e.g. auto or HOST:PORT)")
    s.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --address without Ray token authentication (RAY_AUTH_MODE=token)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0)
    s.add_argument("--gpus-per-trial", type=float, default=0.0)
    s.add_argument("--retries", type=int, default=1, help="retries of a failing trial before it is reported")
    s.add_argument("--resume", action="store_true",
                   help="run only the trials not finished in --out; the arguments must be the ones its sweep.json records")
    s.add_argument("--extend", action="store_true",
                   help="continue --out for a changed request: reuse its finished trials that are unchanged, run the "
                        "rest, rewrite its tables for this request")
    s.add_argument("--out", type=Path, default=None, help="sweep folder (default ./runs/sweep-<time>)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    s.add_argument("--replicas", type=_count(1), default=1, metavar="R",
                   help="training replicas per (scenario, strategy, seed), each its own trial (default 1)")
    s.add_argument("--shadows", type=_count(0), default=None, metavar="K",
                   help="shadow oracles of the LiRA attack (default: the scenario's [evaluation] shadows)")
    s.add_argument("--log", action="append", choices=TRACKERS, default=None,
                   help="every trial also publishes to this tracker (repeatable; files under its trial folder)")
    s.add_argument("--set", action="append", default=None, metavar="KEY=V1,V2,...", dest="grid",
                   help="a scenario field as a grid axis, one scenario per value, e.g. training.epochs=3,15 or "
                        "schedule.rules[0].fraction=0.05,0.1; repeat for the cartesian product")
    s.add_argument("--relearn-fraction", type=_relearn_fraction, default=None, metavar="F", help=_RELEARN_HELP)
    s.add_argument("--checkpoints", choices=POLICIES, default="none",
                   help="per-event checkpoints each trial folder keeps: none (default; a failed trial reruns from "
                        "its start), last or all (for clu audit on the trial folders)")

    s = sub.add_parser("tune", help="search a strategy's unlearning settings on tuning seeds (validation split)")
    s.add_argument("space", metavar="SPACE_FILE",
                   help="search-space file (strategy + [space] table), or a shipped space's name (ugclu)")
    s.add_argument("--scenarios", nargs="+", required=True, help="tuning scenario files or names")
    s.add_argument("--seeds", type=_seed_range, default=(100, 101, 102),
                   help="tuning seeds, disjoint from --report-seeds (default 100-102)")
    s.add_argument("--report-seeds", type=_seed_range, default=tuple(range(10)),
                   help="the seeds reported tables use; tuning on them is refused (default 0-9)")
    s.add_argument("--budget", type=_count(1), default=16, help="configurations tried, the start included (default 16)")
    s.add_argument("--sampler-seed", type=_count(0), default=0, help="seed of the configuration sampler (default 0)")
    s.add_argument("--executor", choices=("auto", "ray", "serial"), default="auto",
                   help="auto (default): in-process below the measured break-even size, else Ray; ray: always Ray")
    s.add_argument("--address", default=None, help="existing Ray cluster (e.g. auto or HOST:PORT)")
    s.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --address without Ray token authentication (RAY_AUTH_MODE=token)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0)
    s.add_argument("--gpus-per-trial", type=float, default=0.0)
    s.add_argument("--retries", type=int, default=1, help="retries of a failing trial before it is reported")
    s.add_argument("--shadows", type=_count(0), default=0, metavar="K",
                   help="shadow oracles of the LiRA attack, non-members from validation (default 0)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    s.add_argument("--out", type=Path, default=None, help="tune folder, a sweep folder (default ./runs/tune-<time>)")
    s.add_argument("--preset", type=Path, default=None, help="the chosen preset file (default OUT/<name>-tuned.toml)")
    s.add_argument("--resume", action="store_true", help="reuse the finished trials in --out")

    s = sub.add_parser("report", help="print the table of a sweep (or run) folder, from its result files")
    s.add_argument("dir", type=Path)
    s.add_argument("--format", choices=("md", "markdown", "tex", "text"), default="md",
                   help="md (markdown, the table.md form; default), tex (booktabs LaTeX, sweep folders) or text")
    s.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write the table to FILE (atomically) instead of printing it")
    return p


@command
def cmd_scenarios(args: argparse.Namespace) -> int:
    folder = args.dir or SCENARIO_DIR
    files = sorted(Path(folder).glob("*.toml"))
    if not files:
        raise ConfigError("no scenario files (*.toml) here", file=folder)
    width = max(len(f.stem) for f in files)
    for f in files:
        spec = load_scenario(f)
        print(f"{f.stem:<{width}}  {spec.data.name:<12} {spec.description}")
    return 0


@command
def cmd_events(args: argparse.Namespace) -> int:
    path = resolve_scenario(args.scenario)
    spec = load_scenario(path)
    try:
        events = events_for(spec, spec.seed if args.seed is None else args.seed)
    except ConfigError as e:
        raise e.in_file(path) from None
    if args.format == "jsonl":
        sys.stdout.write("".join(to_json(e) + "\n" for e in events))
        return 0
    # the selection column only where random_sample requests have one to show
    sampled = any(not isinstance(e, LearnTask) and e.kind == "random_sample" for e in events)
    print(f"{'step':>4}  {'kind':<13} {'task':>4}  {'classes':<18} {'samples':>7}" + ("  selection" if sampled else ""))
    for e in events:
        selection = ""
        if isinstance(e, LearnTask):
            kind, task, classes = "learn" + (f" ({e.mode})" if e.mode else ""), str(e.task_id), e.classes
        else:
            kind, task, classes = e.kind, "" if e.target_task is None else str(e.target_task), e.target_classes
            selection = (e.selection or "uniform") if e.kind == "random_sample" else ""
        row = f"{e.step:>4}  {kind:<13} {task:>4}  {str(list(classes)):<18} {len(e.sample_ids):>7}"
        print(f"{row}  {selection}" if selection else row)
    return 0


@command
def cmd_strategies(args: argparse.Namespace) -> int:
    if args.show is not None:
        choice = resolve_strategy(args.show)
        sys.stdout.write(dump_toml({"strategy": choice.name, "label": choice.label, **to_dict(choice.config)}))
        return 0
    for name, entry in sorted(STRATEGIES.items()):
        print(f"{name:<15} {entry.summary}")
    return 0


# ------------------------------------------------------------------------------------------------ run


@command
def cmd_run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    strategies = tuple(args.strategy or ())
    if args.resume is not None:
        cfg_path = args.resume / "config.toml"
        if not args.resume.is_dir():
            raise ConfigError("nothing to resume: no such folder", file=args.resume)
        if not cfg_path.is_file():
            raise ConfigError("nothing to resume: no config.toml in this folder", file=args.resume)
        if args.out is not None and args.out.resolve() != args.resume.resolve():
            raise ConfigError("--resume continues in its own folder; drop --out", key="--out")
        config = load_run_config(cfg_path)
        check_resume_args(config, cfg_path, args.scenario, strategies, args.seed, args.device,
                          replicas=args.replicas, shadows=args.shadows)
        ran = config.scenario.evaluation.relearn_fraction
        if args.relearn_fraction is not None and args.relearn_fraction != ran:
            raise ConfigError(f"--relearn-fraction {args.relearn_fraction}: the run being resumed has {ran} (its "
                              "config.toml decides)", file=cfg_path)
        recorded = read_checkpoint_policy(args.resume) or "all"
        if args.checkpoints is not None and args.checkpoints != recorded:
            raise ConfigError(f"--checkpoints {args.checkpoints}: the run being resumed keeps {recorded} (its "
                              "units.json decides)", file=args.resume)
        checkpoints = recorded
        if args.amp and not config.amp:
            raise ConfigError("--amp: the run being resumed runs without it (its config.toml decides)",
                              file=cfg_path)
        if args.dry_run:
            sys.stdout.write(config.to_toml(versions=False))
            return 0
        out = args.resume
        check_log(args.log or ())
    else:
        config = resolve_config(args.scenario, strategies, args.seed, args.device, replicas=args.replicas,
                                shadows=args.shadows, amp=args.amp)
        if args.relearn_fraction is not None:  # into the resolved scenario: config.toml re-runs it as run
            ev = replace(config.scenario.evaluation, relearn_fraction=args.relearn_fraction)
            config = replace(config, scenario=replace(config.scenario, evaluation=ev))
        if args.dry_run:  # before any data is loaded or torch imported
            sys.stdout.write(config.to_toml(versions=False))
            return 0
        out = args.out
        checkpoints = args.checkpoints or "all"
        check_log(args.log or ())
        if out is not None:
            check_out(out)
        try:  # generate-time errors (a request for a class never learned, ...) name the scenario file
            events_for(config.scenario, config.seed)
        except ConfigError as e:
            raise e.in_file(resolve_scenario(args.scenario or DEFAULT_SCENARIO)) from None
    if args.device == "cuda":
        import torch  # deferred: the command line stays light until a run starts

        if not torch.cuda.is_available():
            raise ConfigError("CUDA is not available on this machine; use --device cpu or auto", key="--device")
    print(f"clu run: {config.scenario.name} seed {config.seed}: {', '.join(c.label for c in config.strategies)}",
          file=sys.stderr)
    from clu.runner import run  # deferred: torch and Avalanche

    summary = run(config, out, resume=args.resume is not None, progress=not args.quiet, log=tuple(args.log or ()),
                  checkpoints=checkpoints)
    print(run_table(summary.data))
    print(f"\nresults: {summary.out}  ({time.perf_counter() - t0:.1f} s)")
    return 1 if summary.errors else 0


def check_resume_args(config: RunConfig, cfg_path: Path, scenario: str | None, strategies: Sequence[str],
                      seed: int | None, device: str | None, *, replicas: int | None = None,
                      shadows: int | None = None) -> None:
    """``--resume DIR`` with the scenario/strategies/seed/device given again: the folder's config.toml
    decides, and arguments that disagree with it are an error (exit 2) rather than silently ignored."""
    given = resolve_config(scenario or str(cfg_path), strategies, seed, device)
    diffs = []
    if scenario is not None and given.scenario != config.scenario:
        key, a, b = _first_diff(to_dict(given.scenario), to_dict(config.scenario))
        diffs.append(f"scenario {scenario}: {key} = {a!r}, the run has {b!r}")
    if strategies:
        mine = {c.label: c for c in given.strategies}
        theirs = {c.label: c for c in config.strategies}
        for label in sorted(set(mine) | set(theirs)):
            if label not in theirs:
                diffs.append(f"--strategy {label}: not in the run (it has {', '.join(theirs)})")
            elif label not in mine:
                diffs.append(f"--strategy: the run also has {label}")
            elif mine[label] != theirs[label]:
                key, a, b = _first_diff(to_dict(mine[label]), to_dict(theirs[label]))
                diffs.append(f"--strategy {label}: {key} = {a!r}, the run has {b!r}")
    if seed is not None and seed != config.seed:
        diffs.append(f"--seed {seed}: the run has seed {config.seed}")
    if device is not None and device != config.device:
        diffs.append(f"--device {device}: the run has device {config.device}")
    if replicas is not None and replicas != config.replicas:
        diffs.append(f"--replicas {replicas}: the run has {config.replicas}")
    if shadows is not None and shadows != config.n_shadows:
        diffs.append(f"--shadows {shadows}: the run has {config.n_shadows}")
    if diffs:
        raise ConfigError(
            "the arguments disagree with the run being resumed (its config.toml decides; drop them or "
            "start a new run): " + "; ".join(diffs),
            file=cfg_path,
        )


def _first_diff(a: Any, b: Any, key: str = "") -> tuple[str, Any, Any]:
    """The first dotted key where two plain-data trees differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
    return key or "value", a, b


# --------------------------------------------------------------------------------- plot, audit, report


@command
def cmd_plot(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():  # before matplotlib loads
        raise ConfigError("no such results folder", file=args.dir)
    from clu.plots import replot  # deferred: matplotlib

    for p in replot(args.dir):
        print(p)
    return 0


@command
def cmd_audit(args: argparse.Namespace) -> int:
    result = audit_run(args.dir)
    print(result.render())
    return 0 if result.ok else 1


@command
def cmd_report(args: argparse.Namespace) -> int:
    fmt = "markdown" if args.format == "md" else args.format
    if args.out is not None:
        write_report(args.dir, fmt, args.out)
    else:
        sys.stdout.write(report(args.dir, fmt))
    return 0


# ---------------------------------------------------------------------------------------------- sweep


@command
def cmd_sweep(args: argparse.Namespace) -> int:
    check_cluster_access(args.address, args.insecure)  # before anything is written or started
    from clu.sweeps.plan import SweepRequest, check_sweep_out, plan_sweep

    req = SweepRequest(
        scenarios=tuple(args.scenarios),
        strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
        seeds=args.seeds,
        executor=args.executor,
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        retries=args.retries,
        resume=args.resume,
        extend=args.extend,
        out=args.out,
        device=args.device,
        replicas=args.replicas,
        shadows=args.shadows,
        grid=tuple(args.grid or ()),
        log=tuple(args.log or ()),
        relearn_fraction=args.relearn_fraction,
        checkpoints=args.checkpoints,
    )
    plan = plan_sweep(req)  # validated before torch, Avalanche or Ray load: a typo's error comes at once
    check_log(req.log)
    check_sweep_out(req, "now")  # the default folder's stamp does not matter: nothing is created here
    from clu.sweeps.run import run_sweep

    result = run_sweep(req, plan)
    print((result.out / "table.md").read_text())
    s = result.summary
    status = "ok" if result.exit_code == 0 else (
        f"{len(s['failed'])} failed, {len(s['diverged'])} diverged, {len(s['missing'])} unfinished")
    print(f"results: {result.out}  ({s['finished']}/{s['trials']} trials finished, {status}; {s['elapsed_s']:.1f} s)")
    return result.exit_code


# ----------------------------------------------------------------------------------------------- tune


@command
def cmd_tune(args: argparse.Namespace) -> int:
    check_cluster_access(args.address, args.insecure)  # before anything is written or started
    from clu.tune import TuneRequest, tune  # deferred: torch, Avalanche (and Ray for its executor)

    result = tune(TuneRequest(
        space=args.space, scenarios=tuple(args.scenarios), seeds=args.seeds, report_seeds=args.report_seeds,
        budget=args.budget, sampler_seed=args.sampler_seed, executor=args.executor, address=args.address,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, retries=args.retries,
        shadows=args.shadows, out=args.out, preset=args.preset, resume=args.resume, device=args.device,
    ))
    s = result.summary
    print((result.out / "tune.csv").read_text(), end="")
    chosen = "none (no finite objective)" if s["chosen"] is None else f"{s['chosen_label']} -> {result.preset}"
    print(f"chosen: {chosen}\nresults: {result.out}")
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"clu: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
