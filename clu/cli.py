"""The ``clu`` command: parses and validates arguments, calls the API, prints. No logic of its own.

Bad input (a ConfigError anywhere) ends with one line ``clu: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from clu.config import ConfigError
from clu.paths import SCENARIO_DIR, resolve_scenario

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
            seeds += range(int(lo), int(hi) + 1) if hi else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 0-4 or 0,2,5, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
    return tuple(dict.fromkeys(seeds))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clu", description="Simulate continual learning-unlearning (clu-sim).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("scenarios", help="list the scenario files with their descriptions")
    s.add_argument("--dir", type=Path, default=None, help=f"folder of scenario files (default {SCENARIO_DIR})")

    s = sub.add_parser("events", help="print the event stream of a scenario")
    s.add_argument("scenario", help="scenario file or name (e.g. digits-class)")
    s.add_argument("--seed", type=_seed, default=None, help="seed (default: the scenario's)")
    s.add_argument("--format", choices=("table", "jsonl"), default="table")

    s = sub.add_parser("strategies", help="list the registered strategies and their preset files")

    s = sub.add_parser("run", help="run strategies on a scenario (default: digits-class, every strategy)")
    s.add_argument("scenario", nargs="?", default=None, help="scenario file/name, or a run's config.toml")
    s.add_argument("--strategy", action="append", default=None, metavar="NAME|FILE",
                   help="strategy name or preset file; repeat for several (default: all for the setting)")
    s.add_argument("--seed", type=_seed, default=None, help="seed (default: the scenario's)")
    s.add_argument("--out", type=Path, default=None, help="results folder (default runs/<scenario>-<time>)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default auto")
    s.add_argument("--resume", type=Path, default=None, metavar="DIR", help="continue an interrupted run in DIR")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("plot", help="redraw a results folder's figures from its files")
    s.add_argument("dir", type=Path)

    s = sub.add_parser("audit", help="check that no forgotten id survives in a run's artefacts")
    s.add_argument("dir", type=Path)

    s = sub.add_parser("sweep", help="scenarios x strategies x seeds, in parallel with Ray")
    s.add_argument("scenarios", nargs="+", help="scenario files or names")
    s.add_argument("--strategies", required=True, help="comma-separated strategy names")
    s.add_argument("--seeds", type=_seed_range, default=(0,), help="e.g. 0-4 or 0,2,5")
    s.add_argument("--executor", choices=("ray", "serial"), default="ray")
    s.add_argument("--address", default=None, help="existing Ray cluster (e.g. auto or HOST:PORT)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0)
    s.add_argument("--gpus-per-trial", type=float, default=0.0)
    s.add_argument("--retries", type=int, default=1, help="retries of a failing trial before it is reported")
    s.add_argument("--resume", action="store_true", help="run only the trials not finished in --out")
    s.add_argument("--out", type=Path, default=None, help="sweep folder (default runs/sweep-<time>)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    return p


@command
def cmd_scenarios(args: argparse.Namespace) -> int:
    from clu.scenario import load_scenario

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
    from clu.events import LearnTask, to_json
    from clu.scenario import events_for, load_scenario

    path = resolve_scenario(args.scenario)
    spec = load_scenario(path)
    try:
        events = events_for(spec, spec.seed if args.seed is None else args.seed)
    except ConfigError as e:
        raise e.in_file(path) from None
    if args.format == "jsonl":
        sys.stdout.write("".join(to_json(e) + "\n" for e in events))
        return 0
    print(f"{'step':>4}  {'kind':<13} {'task':>4}  {'classes':<18} {'samples':>7}")
    for e in events:
        if isinstance(e, LearnTask):
            kind, task, classes = "learn" + (f" ({e.mode})" if e.mode else ""), str(e.task_id), e.classes
        else:
            kind, task, classes = e.kind, "" if e.target_task is None else str(e.target_task), e.target_classes
        print(f"{e.step:>4}  {kind:<13} {task:>4}  {str(list(classes)):<18} {len(e.sample_ids):>7}")
    return 0


@command
def cmd_strategies(args: argparse.Namespace) -> int:
    from clu.strategies import STRATEGIES

    for name, entry in sorted(STRATEGIES.items()):
        print(f"{name:<15} {entry.summary}")
    return 0


@command
def cmd_run(args: argparse.Namespace) -> int:
    from clu.runner import RunRequest, run_cli

    req = RunRequest(
        scenario=args.scenario,
        strategies=tuple(args.strategy or ()),
        seed=args.seed,
        out=args.out,
        device=args.device,
        resume=args.resume,
        progress=not args.quiet,
    )
    return run_cli(req)


@command
def cmd_plot(args: argparse.Namespace) -> int:
    from clu.plots import plot_run

    for p in plot_run(args.dir):
        print(p)
    return 0


@command
def cmd_audit(args: argparse.Namespace) -> int:
    from clu.audit import audit_run

    report = audit_run(args.dir)
    print(report.render())
    return 0 if report.ok else 1


@command
def cmd_sweep(args: argparse.Namespace) -> int:
    from clu.sweep import SweepRequest, sweep_cli

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
        out=args.out,
        device=args.device,
    )
    return sweep_cli(req)


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
