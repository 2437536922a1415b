"""``clu run``: resolve a run config, run the oracle and every strategy, write the results folder.

The oracle (``retrain``) always runs first, once per (scenario, seed); every other strategy's gaps and
KL are joined from its records. A strategy that diverges stops at that event with a message; the rows
written so far stay and the other strategies go on.
"""

from __future__ import annotations

import datetime as dt
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clu.config import ConfigError, dump_toml, read_toml, to_dict
from clu.events import steps as group_steps
from clu.events import to_json
from clu.models import resolve_device
from clu.paths import DEFAULT_SCENARIO, REPO_ROOT, resolve_scenario
from clu.results import (
    METRICS_HEADER,
    TIMINGS_HEADER,
    check_out,
    checkpoint_path,
    csv_text,
    format_value,
    latest_checkpoint,
    load_checkpoint,
    prepare_out,
    save_checkpoint,
    write_atomic,
    write_json,
)
from clu.scenario import ScenarioSpec, events_for, load_scenario, scenario_from_dict

ORACLE = "retrain"


@dataclass(frozen=True)
class RunConfig:
    """A fully resolved run: what ``config.toml`` holds and ``clu run config.toml`` re-runs."""

    scenario: ScenarioSpec
    strategies: tuple[Any, ...]
    """StrategyChoice per strategy (the oracle first)."""
    seed: int
    device: str = "auto"
    """auto | cpu | cuda."""

    def to_toml(self) -> str:
        import avalanche
        import torch

        data = {
            "seed": self.seed,
            "device": self.device,
            "scenario": to_dict(self.scenario),
            "strategies": [{"strategy": c.name, "label": c.label, **to_dict(c.config)} for c in self.strategies],
            "versions": {
                "clu": _version(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "avalanche": avalanche.__version__,
            },
        }
        return "# clu-sim run config: re-run with `clu run <this file> --out DIR`\n" + dump_toml(data)


@dataclass
class StrategyResult:
    label: str
    name: str
    records: list[Any] = field(default_factory=list)
    error: str | None = None


@dataclass
class Summary:
    """What ``clu.run`` returns: the run folder and the summary.json content."""

    out: Path
    data: dict[str, Any]
    errors: dict[str, str]


def _version() -> str:
    from clu import __version__

    return __version__


# ------------------------------------------------------------------------------------------- config


def load_run_config(path: Path) -> RunConfig:
    """A run's ``config.toml`` back into a RunConfig (``versions`` is informational)."""
    from clu.strategies import StrategyChoice, strategy_config

    raw = read_toml(path)
    unknown = sorted(set(raw) - {"seed", "device", "scenario", "strategies", "versions"})
    if unknown:
        raise ConfigError("unknown key in a run config", key=unknown[0], file=path)
    scenario = scenario_from_dict(raw.get("scenario", {}), str(path))
    choices = []
    for i, entry in enumerate(raw.get("strategies", [])):
        entry = dict(entry)
        name, label = entry.pop("strategy", None), entry.pop("label", None)
        if not isinstance(name, str):
            raise ConfigError("missing strategy name", key=f"strategies[{i}].strategy", file=path)
        try:
            choices.append(StrategyChoice(name, str(label or name), strategy_config(name, entry, source=str(path))))
        except ConfigError as e:
            raise (e.under(f"strategies[{i}]") if not e.file else e).in_file(path) from None
    seed = raw.get("seed", scenario.seed)
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"must be a whole number >= 0, got {seed!r}", key="seed", file=path)
    device = raw.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{device!r} is not allowed; choose auto, cpu or cuda", key="device", file=path)
    return RunConfig(scenario, tuple(choices), seed, device)


def default_strategies(scenario: ScenarioSpec) -> list[str]:
    from clu.strategies import STRATEGIES

    aware = scenario.setting == "task_aware"
    return [n for n, e in STRATEGIES.items() if aware or not e.task_aware_only]


def resolve_config(
    scenario: str | None, strategies: Sequence[str], seed: int | None, device: str | None
) -> RunConfig:
    """CLI/API arguments → RunConfig. ``scenario`` may be a scenario file/name or a run's config.toml."""
    from clu.strategies import resolve_strategy

    base: RunConfig | None = None
    path = resolve_scenario(scenario or DEFAULT_SCENARIO)
    raw = read_toml(path)
    if "scenario" in raw and "strategies" in raw:
        base = load_run_config(path)
        spec = base.scenario
    else:
        spec = load_scenario(path)
    if strategies:
        choices = [resolve_strategy(s) for s in strategies]
    elif base is not None:
        choices = list(base.strategies)
    else:
        choices = [resolve_strategy(s) for s in default_strategies(spec)]
    labels = [c.label for c in choices]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"strategy {dup[0]!r} given twice; give each a distinct label", key="--strategy")
    if spec.setting != "task_aware":
        from clu.strategies import STRATEGIES

        bad = [c.name for c in choices if STRATEGIES[c.name].task_aware_only]
        if bad:
            raise ConfigError(f"{bad[0]} needs a task_aware scenario; {spec.name} is task_agnostic", key="--strategy")
    oracle = [c for c in choices if c.name == ORACLE]
    if not oracle:
        oracle = [resolve_strategy(ORACLE)]  # gaps need it; it runs once and is reported
    choices = oracle[:1] + [c for c in choices if c is not oracle[0] and c.label != oracle[0].label]
    final_seed = seed if seed is not None else (base.seed if base else spec.seed)
    final_device = device or (base.device if base else "auto")
    return RunConfig(spec, tuple(choices), final_seed, final_device)


# ---------------------------------------------------------------------------------------------- run


def run(
    config: RunConfig,
    out: Path | str | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    plugins: Sequence[Any] = (),
    checkpoints: bool = True,
    make_plots: bool = True,
    threads: int = 1,
) -> Summary:
    """Run every strategy of ``config``; write the results folder; return the summary.

    ``threads``: torch CPU threads. One is the default: the models here are small, and a second thread
    costs more in synchronisation than it gains (and slows down badly when the other core is busy).
    """
    import torch

    _check_run_args(config, out, resume, threads)
    torch.set_num_threads(max(1, threads))
    from clu.data import load_dataset
    from clu.driver import build_strategy, run_events
    from clu.evaluation import with_gaps
    from clu.strategies import DivergenceError

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out) if out is not None else REPO_ROOT / "runs" / f"{config.scenario.name}-{stamp}"
    check_out(out, resume=resume)
    device = resolve_device(config.device)
    data = load_dataset(config.scenario.data)
    events = events_for(config.scenario, config.seed)  # bad input surfaces here, before the folder exists
    steps = group_steps(events)
    stream = "".join(to_json(e) + "\n" for e in events)
    prepare_out(out, resume=resume)
    if resume and (out / "events.jsonl").exists() and (out / "events.jsonl").read_text() != stream:
        raise ConfigError("events.jsonl differs from the stream its config generates; cannot resume", file=out)
    if not resume or not (out / "config.toml").exists():
        write_atomic(out / "config.toml", config.to_toml())
    if not resume or not (out / "events.jsonl").exists():
        write_atomic(out / "events.jsonl", stream)

    results: list[StrategyResult] = []
    oracle_records = None
    for choice in config.strategies:
        res = StrategyResult(choice.label, choice.name)
        results.append(res)
        strategy = build_strategy(choice, config.scenario, data, config.seed, device, plugins)
        start = 0
        ckpt = latest_checkpoint(out, choice.label) if resume else None
        if ckpt is not None:
            from clu.driver import EventRecord

            state = load_checkpoint(ckpt)
            strategy.load_state_dict(state["strategy"])
            res.records = [EventRecord.from_state(r) for r in state["records"]]
            res.error = state.get("error")
            start = state["event_index"] + 1
        bar = _progress(choice.label, len(steps), start) if progress else None
        try:
            if res.error is None:
                for rec in run_events(strategy, steps, data, seed=config.seed, start=start, oracle=oracle_records):
                    _check_finite(strategy)
                    if choice.name == ORACLE and oracle_records is None:
                        rec.values = with_gaps(rec.values, rec.values)
                    res.records.append(rec)
                    if checkpoints:
                        save_checkpoint(out, choice.label, len(res.records) - 1, _ckpt_payload(strategy, res))
                    if bar is not None:
                        bar.update(1)
        except DivergenceError as e:
            step = steps[len(res.records)]
            res.error = f"stopped at step {step.index} ({step.kind}): {e}"
            print(f"clu: {choice.label}: {res.error}", file=sys.stderr)
            if checkpoints and res.records:  # mark the last good checkpoint as final (its state, not the NaNs)
                last = checkpoint_path(out, choice.label, len(res.records) - 1)
                payload = load_checkpoint(last) if last.exists() else _ckpt_payload(strategy, res)
                payload.pop("event_index", None)
                save_checkpoint(out, choice.label, len(res.records) - 1, {**payload, "error": res.error})
        finally:
            if bar is not None:
                bar.close()
        if choice.name == ORACLE and oracle_records is None:
            if res.error is not None:
                raise ConfigError(f"the oracle failed: {res.error}", key="retrain")
            oracle_records = res.records
        _write_results(out, config, results)
    summary = _write_results(out, config, results)
    if make_plots:
        from clu.plots import plot_run

        plot_run(out)
    return Summary(out, summary, {r.label: r.error for r in results if r.error})


def _check_run_args(config: Any, out: Any, resume: Any, threads: Any) -> None:
    """``clu.run``'s own arguments: wrong types are a ConfigError (nothing is written)."""
    if not isinstance(config, RunConfig):
        hint = " (build one with clu.runner.resolve_config(scenario, strategies, seed, device))"
        raise ConfigError(f"clu.run expects a RunConfig, got {type(config).__name__}{hint}", key="config")
    if out is not None and not isinstance(out, (str, Path)):
        raise ConfigError(f"expected a folder path (str or Path), got {type(out).__name__}", key="out")
    if not isinstance(resume, bool):
        raise ConfigError(f"expected true or false, got {resume!r}", key="resume")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"expected a whole number >= 1, got {threads!r}", key="threads")


def _check_finite(strategy: Any) -> None:
    """A step whose loss was still finite may leave inf/NaN weights: that event diverged too."""
    import torch

    from clu.strategies import DivergenceError

    for name, p in strategy.model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise DivergenceError(f"{strategy.name}: the weights became non-finite ({name}; diverged)")


def _ckpt_payload(strategy: Any, res: StrategyResult) -> dict[str, Any]:
    return {"strategy": strategy.state_dict(), "records": [r.to_state() for r in res.records], "error": res.error}


def _progress(label: str, total: int, start: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=f"{label:<15}", unit="event", leave=True, file=sys.stderr,
                bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} events [{elapsed}]")


def _write_results(out: Path, config: RunConfig, results: list[StrategyResult]) -> dict[str, Any]:
    """metrics.csv, timings.csv and summary.json for everything recorded so far (atomic rewrites)."""
    from clu.evaluation import EVENT_METRICS, GAPPED, run_summary

    metric_rows, time_rows = [], []
    strategies: dict[str, Any] = {}
    oracle_times = {r.step: r.time_s for res in results if res.name == ORACLE for r in res.records}
    for res in results:
        per_event = []
        for r in res.records:
            row = {"step": r.step, "kind": r.kind}
            for m in (*EVENT_METRICS, *(f"{g}_gap" for g in GAPPED), "AvgGap"):
                row[m] = _clean(r.values.get(m))
            row["time_s"] = round(r.time_s, 6)
            per_event.append(row)
            for m, v in row.items():
                if m not in ("step", "kind", "time_s"):
                    metric_rows.append((res.label, config.seed, r.step, r.kind, m, format_value(v)))
            for t, v in r.per_task.items():
                metric_rows.append((res.label, config.seed, r.step, r.kind, f"acc_task_{t}", format_value(v)))
            time_rows.append((res.label, config.seed, r.step, r.kind, repr(round(r.time_s, 6))))
        final = dict(per_event[-1]) if per_event else {}
        final.pop("step", None), final.pop("kind", None)
        gaps = [e["AvgGap"] for e in per_event if e.get("AvgGap") is not None]
        final["AvgGap_mean"] = float(np.mean(gaps)) if gaps else None
        final.update({k: _clean(v) for k, v in run_summary(per_event, [r.per_task for r in res.records]).items()})
        unlearn = [r for r in res.records if r.kind != "learn"]
        t_u, t_o = sum(r.time_s for r in unlearn), sum(oracle_times.get(r.step, 0.0) for r in unlearn)
        final["unlearn_time_vs_oracle"] = round(t_u / t_o, 6) if unlearn and t_o > 0 else None
        final["time_s"] = round(sum(r.time_s for r in res.records), 6)
        entry = {"name": res.name, "final": final, "per_event": per_event, "time_s": final["time_s"]}
        if res.error:
            entry["error"] = res.error
        strategies[res.label] = entry
        for m in ("AvgGap_mean", "AIA", "BWT", "Forgetting"):
            if res.records:
                metric_rows.append((res.label, config.seed, "final", "run", m, format_value(final.get(m))))
    write_atomic(out / "metrics.csv", csv_text(METRICS_HEADER, metric_rows))
    write_atomic(out / "timings.csv", csv_text(TIMINGS_HEADER, time_rows))
    summary = {"scenario": config.scenario.name, "seed": config.seed, "strategies": strategies}
    write_json(out / "summary.json", summary)
    return summary


def _clean(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


# ------------------------------------------------------------------------------------------------ CLI


@dataclass(frozen=True)
class RunRequest:
    """What ``clu run`` was asked (validated CLI arguments)."""

    scenario: str | None
    strategies: tuple[str, ...]
    seed: int | None
    out: Path | None
    device: str | None
    resume: Path | None
    progress: bool = True


def run_cli(req: RunRequest) -> int:
    t0 = time.perf_counter()
    if req.resume is not None:
        cfg_path = req.resume / "config.toml"
        if not cfg_path.is_file():
            raise ConfigError("nothing to resume: no config.toml in this folder", file=req.resume)
        if req.out is not None and req.out.resolve() != req.resume.resolve():
            raise ConfigError("--resume continues in its own folder; drop --out", key="--out")
        config = load_run_config(cfg_path)
        _check_resume_args(req, config, cfg_path)
        out = req.resume
    else:
        config = resolve_config(req.scenario, req.strategies, req.seed, req.device)
        out = req.out
        if out is not None:
            check_out(out)
        try:  # generate-time errors (a request for a class never learned, ...) name the scenario file
            events_for(config.scenario, config.seed)
        except ConfigError as e:
            raise e.in_file(resolve_scenario(req.scenario or DEFAULT_SCENARIO)) from None
    if req.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("CUDA is not available on this machine; use --device cpu or auto", key="--device")
    print(f"clu run: {config.scenario.name} seed {config.seed}: {', '.join(c.label for c in config.strategies)}",
          file=sys.stderr)
    summary = run(config, out, resume=req.resume is not None, progress=req.progress)
    print(render_table(summary.data))
    print(f"\nresults: {summary.out}  ({time.perf_counter() - t0:.1f} s)")
    return 1 if summary.errors else 0


def _check_resume_args(req: RunRequest, config: RunConfig, cfg_path: Path) -> None:
    """``--resume DIR`` with the scenario/strategies/seed/device given again: the folder's config.toml
    decides, and arguments that disagree with it are an error (exit 2) rather than silently ignored."""
    given = resolve_config(req.scenario or str(cfg_path), req.strategies, req.seed, req.device)
    diffs = []
    if req.scenario is not None and given.scenario != config.scenario:
        key, a, b = _first_diff(to_dict(given.scenario), to_dict(config.scenario))
        diffs.append(f"scenario {req.scenario}: {key} = {a!r}, the run has {b!r}")
    if req.strategies:
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
    if req.seed is not None and req.seed != config.seed:
        diffs.append(f"--seed {req.seed}: the run has seed {config.seed}")
    if req.device is not None and req.device != config.device:
        diffs.append(f"--device {req.device}: the run has device {config.device}")
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


def render_table(summary: dict[str, Any]) -> str:
    """One row per strategy: final TA / FA / MIA, mean AvgGap over events, total time."""
    head = f"{'strategy':<15} {'TA':>6} {'FA':>6} {'MIA':>6} {'AvgGap':>7} {'time_s':>7}"
    lines = [head, "-" * len(head)]

    def pct(v: float | None) -> str:
        return "   -  " if v is None else f"{100 * v:6.1f}"

    for label, r in summary["strategies"].items():
        f = r["final"]
        gap = f.get("AvgGap_mean")
        note = f"  ({r['error']})" if r.get("error") else ""
        lines.append(
            f"{label:<15} {pct(f.get('TA'))} {pct(f.get('FA'))} {pct(f.get('MIA'))} "
            f"{'    -  ' if gap is None else f'{100 * gap:7.2f}'} {f.get('time_s', 0):7.2f}{note}"
        )
    lines.append("TA, FA, MIA: final event (%); AvgGap: mean gap to the oracle over events (points).")
    return "\n".join(lines)


__all__ = ["RunConfig", "RunRequest", "Summary", "load_run_config", "resolve_config", "run", "run_cli"]
