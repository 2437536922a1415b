"""Unlearn cost vs retraining (DESIGN §11): one request's wall time ÷ the oracle's at the same event.

For each data set (``synthetic`` at 5k, 20k and 80k samples, and ``mnist5k``) a short stream — 2 learn tasks
of 5 classes, then one unlearn request — is run by the oracle ``retrain`` and by ``ugclu``, ``er_sfron``,
``er_salun`` and ``er_ga``, in lock step (event by event, the oracle first) through the library's own
driver (``clu.driver.run_events``), so each strategy's gaps to the oracle are the ones ``clu run`` reports.
Two request kinds share the learned state: a ``class`` request (one class of the 2nd task) and a
``random_sample`` request (5 % of the retained samples). After the request has been timed once by the driver,
every strategy is restored to its state before the request and the request is timed again, the strategies
interleaved (oracle, ugclu, er_sfron, ...) and repeated; the figure is the ratio of the median wall times.

Target (issue 6): ugclu ÷ retrain ≤ 0.05 at 80k, with |FA gap| ≤ 3 points and |TA gap| ≤ 3 points, and a ratio
that falls as the data grows. Scenario fixed here: MLP 256-256, batch 32, 2 epochs per task, buffer 500,
seed 0, one torch thread (as ``clu run``); strategy presets as in ``strategies/`` (ugclu T = 100 iterations).

    .venv/bin/python bench/unlearn_cost.py [--sizes 5000,20000,80000] [--no-mnist] [--repeats 3] [--record]
"""

from __future__ import annotations

import copy
import cProfile
import pstats
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

ORACLE = "retrain"
METHOD = "ugclu"
BASELINES = ("er_sfron", "er_salun", "er_ga")
KINDS = ("class", "random_sample")
SEED = 0
RATIO_TARGET = 0.05
GAP_TARGET = 0.03  # 3 points
TARGET_SIZE = 80000


@dataclass
class Outcome:
    """One (data set, request kind): times per strategy and the metrics at the request."""

    data: str
    kind: str
    retained: int
    forget: int
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per strategy: the metrics at the request (TA, FA, ...)."""
    before: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per strategy: the metrics at the last learn event before the request."""
    load: str = ""

    def t(self, name: str) -> float:
        return C.median(self.wall[name])

    def ratio(self, name: str) -> float:
        return self.t(name) / self.t(ORACLE)

    def cpu_ratio(self, name: str) -> float:
        return C.median(self.cpu[name]) / C.median(self.cpu[ORACLE])

    def gap(self, name: str, metric: str, when: str = "request") -> float | None:
        """Signed gap strategy − oracle (fraction), None where the metric does not apply."""
        src = self.values if when == "request" else self.before
        a, b = src[name].get(metric), src[ORACLE].get(metric)
        return None if a is None or b is None else a - b


def scenario_dict(data: dict[str, Any], kind: str, epochs: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"kind": kind, "start_after": 2, "every": 1}
    if kind == "class":
        rule["n_classes"] = 1
    else:
        rule["fraction"] = 0.05
    return {
        "name": f"bench-{data['name']}",
        "description": "2 tasks x 5 classes, then one request (bench/unlearn_cost.py)",
        "setting": "task_agnostic",
        "seed": SEED,
        "data": data,
        "model": {"name": "mlp", "hidden": [256, 256]},
        "split": {"n_tasks": 2, "classes_per_task": 5, "class_order": "seeded"},
        "training": {"epochs": epochs, "batch_size": 32, "buffer_size": 500},
        "schedule": {"attach": False, "rules": [rule]},
    }


def _timed(fn: Any) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def measure(label: str, data_spec: dict[str, Any], epochs: int, repeats: int,
            profile: bool) -> tuple[list[Outcome], str | None]:
    """Both request kinds on one data set; returns the outcomes and (optionally) ugclu's time breakdown."""
    import torch

    from clu.data import load_dataset
    from clu.driver import build_strategy, run_events
    from clu.events import steps as group_steps
    from clu.scenario import events_for, scenario_from_dict
    from clu.strategies import resolve_strategy
    from clu.summary import with_gaps

    names = (ORACLE, METHOD, *BASELINES)
    specs = {k: scenario_from_dict(scenario_dict(data_spec, k, epochs), f"<bench {label} {k}>") for k in KINDS}
    data = load_dataset(specs["class"].data)
    steps = {k: group_steps(events_for(s, SEED)) for k, s in specs.items()}
    n_learn = len(steps["class"]) - 1
    learn = [s.learn for s in steps["class"][:n_learn]]
    for k in KINDS:  # the kinds share the learned state: same learn events, one request at the end
        assert [s.learn for s in steps[k][:n_learn]] == learn and steps[k][-1].unlearn is not None, k
        assert steps[k][-1].learn is None, "the request must arrive alone"
    device = torch.device("cpu")
    strategies = {n: build_strategy(resolve_strategy(n), specs["class"], data, SEED, device) for n in names}

    # -- learn both tasks in lock step (the oracle first, so its record is there for the others' gaps) --
    oracle: list[Any] = []
    gens = {n: run_events(s, steps["class"], data, seed=SEED) for n, s in strategies.items()}
    last: dict[str, Any] = {}
    for _ in range(n_learn):
        for n in names:
            rec = next(gens[n])
            rec.values = with_gaps(rec.values, (rec if n == ORACLE else oracle[len(oracle) - 1]).values)
            if n == ORACLE:
                oracle.append(rec)
            last[n] = rec.values
        C.say(f"  {label}: learned task {len(oracle)} of {n_learn} ({C.load1()} load)")
    snaps = {n: copy.deepcopy(s.state_dict()) for n, s in strategies.items()}
    retained = len(set().union(*(t.sample_ids for t in learn)))

    def restore(n: str) -> None:
        # deepcopy again: the optimizer adopts the given state tensors and then updates them in place
        strategies[n].load_state_dict(copy.deepcopy(snaps[n]))

    outcomes, breakdown = [], None
    for k in KINDS:
        request = steps[k][-1].unlearn
        out = Outcome(label, k, retained - len(request.sample_ids), len(request.sample_ids),
                      before={n: dict(last[n]) for n in names})
        # first timing: the driver's own (time_s of the event) with the metrics and gaps at the request
        orc = list(oracle)
        for n in names:
            restore(n)
            gen = run_events(strategies[n], steps[k], data, seed=SEED, start=n_learn)
            rec = next(gen)  # time_s: the driver's wall time of the request alone (evaluation excluded)
            rec.values = with_gaps(rec.values, (rec if n == ORACLE else orc[-1]).values)
            if n == ORACLE:
                orc.append(rec)
            out.values[n] = rec.values
            out.wall[n], out.cpu[n] = [rec.time_s], []
        # repeats, interleaved: every strategy from its state before the request, timed around unlearn()
        for r in range(repeats):
            for n in names:
                restore(n)
                w, c = _timed(lambda: strategies[n].unlearn(request))
                out.wall[n].append(w)
                out.cpu[n].append(c)
        out.load = C.load1()
        outcomes.append(out)
        C.say(f"  {label} {k}: retrain {out.t(ORACLE):.2f} s, ugclu {out.t(METHOD):.3f} s, "
              f"ratio {out.ratio(METHOD):.3f} (load {out.load})")
        if profile:
            restore(METHOD)
            prof = cProfile.Profile()
            prof.enable()
            strategies[METHOD].unlearn(request)
            prof.disable()
            part = _breakdown(prof, epochs * -(-out.retained // specs[k].training.batch_size))
            if part:
                breakdown = (breakdown + "; " if breakdown else "") + f"*{k.replace('_', ' ')}*: {part}"
    return outcomes, breakdown


def _breakdown(prof: cProfile.Profile, retrain_iters: int) -> str | None:
    """Where one ugclu request spends its time (cProfile shares; step counts exact)."""
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]

    def find(file_end: str, func: str) -> tuple[int, float]:
        hits = [(nc, ct) for (f, _l, fn), (_cc, nc, _tt, ct, _c) in stats.items() if fn == func and f.endswith(file_end)]
        return (sum(h[0] for h in hits), sum(h[1] for h in hits)) if hits else (0, 0.0)

    _, total = find("strategies/base.py", "unlearn")
    _, setup = find("strategies/forgetting.py", "__init__")
    _, fisher = find("update/saliency.py", "fisher_diagonal")
    n_steps, steps = find("update/step.py", "fast_slow_step")
    n_masked, masked = find("update/step.py", "masked_step")
    _, fast = find("update/step.py", "_fast_grads")
    _, clip = find("update/step.py", "clip_grad")
    if not total or not n_steps:
        return None
    fast_all = fast + masked + clip
    slow = steps - fast_all
    share = lambda x: f"{100 * x / total:.0f} %"  # noqa: E731
    per_fast = fast_all / max(n_masked, 1)
    per_slow = slow / n_steps
    floor = n_steps / retrain_iters if retrain_iters else float("nan")
    return (f"set-up {share(setup)} (Fisher {share(fisher)}), {n_masked} fast steps {share(fast_all)} (masked "
            f"optimizer step {share(masked)}), {n_steps} slow steps {share(slow)}; a fast step costs "
            f"{per_fast / per_slow:.1f}× a slow step; step-count floor {n_steps} ÷ {retrain_iters} = {floor:.3f}")


def render(outcomes: list[Outcome], breakdown: str | None, args: Any, elapsed: float) -> str:
    g = lambda x: "–" if x is None else f"{100 * x:+.1f}"  # noqa: E731 - signed points
    rows = []
    for o in outcomes:
        rows.append([o.data, o.kind.replace("_", " "), f"{o.retained:,}", f"{o.forget:,}", f"{o.t(ORACLE):.2f}",
                     f"{o.t(METHOD):.3f}", f"**{o.ratio(METHOD):.3f}**", f"{o.cpu_ratio(METHOD):.3f}",
                     g(o.gap(METHOD, "FA")), g(o.gap(METHOD, "TA")), g(o.gap(METHOD, "TA", "before")), o.load])
    head = ["data", "request", "retained", "forgotten", "retrain s", "ugclu s", "ugclu ÷ retrain",
            "(CPU time)", "FA gap", "TA gap", "TA gap before request", "load"]
    base_rows = []
    for o in outcomes:
        cells = [o.data, o.kind.replace("_", " ")]
        for b in BASELINES:
            cells.append(f"{o.ratio(b):.3f} │ {g(o.gap(b, 'FA'))} │ {g(o.gap(b, 'TA'))}")
        cells.append(o.load)
        base_rows.append(cells)

    lines = [
        "### Unlearn cost vs retraining",
        "",
        f"Target: `ugclu` unlearn request ≤ {RATIO_TARGET} × the wall time of `retrain` at the same event at "
        f"{TARGET_SIZE // 1000}k samples, with |FA gap| ≤ {GAP_TARGET * 100:.0f} and |TA gap| ≤ "
        f"{GAP_TARGET * 100:.0f} points to the oracle, and a ratio that falls as the data grows.",
        "",
        f"Stream: 2 tasks × 5 classes, then one request (`class`: one class of task 2; `random sample`: 5 % of the "
        f"retained samples); MLP 256-256, batch 32, {args.epochs} epoch(s) per task, buffer 500, seed {SEED}, 1 torch "
        f"thread; strategy presets from `strategies/`. Times: median of {args.repeats + 1} interleaved timings "
        f"(the driver's `time_s` and {args.repeats} repeat(s) from the saved state before the request). Gaps: "
        "strategy − oracle in points at the request (one seed); *TA gap before request*: the same at the "
        "preceding learn event, i.e. what continual learning alone left. *load*: 1-min load average.",
        "",
        C.table(head, rows),
        "",
        "Baselines at the same events — unlearn ÷ retrain │ FA gap │ TA gap (points):",
        "",
        C.table(["data", "request", *BASELINES, "load"], base_rows),
        "",
    ]
    lines += _verdicts(outcomes)
    if breakdown:
        lines += ["", "Profile of one `ugclu` request at the largest size (cProfile, shares of the request's time; "
                      "set-up = balanced mask (Fisher on D_U and the buffer) and proxy targets; a slow step is one "
                      "forward/backward and SGD step on a batch of 32, like a retrain iteration, so the ratio's floor "
                      "is T iterations ÷ the oracle's iterations, the rest being the fast steps' extra work and the "
                      f"set-up): {breakdown}."]
    lines += ["", f"({elapsed:.0f} s for this benchmark.)"]
    return "\n".join(lines)


def _verdicts(outcomes: list[Outcome]) -> list[str]:
    out = []
    big = [o for o in outcomes if o.data == f"synthetic-{TARGET_SIZE // 1000}k"]
    for o in big:
        r = o.ratio(METHOD)
        fa, ta, ta0 = o.gap(METHOD, "FA"), o.gap(METHOD, "TA"), o.gap(METHOD, "TA", "before")
        msg = [f"- unlearn cost at {o.data}, {o.kind.replace('_', ' ')} request: ratio {r:.3f} — target ≤ "
               f"{RATIO_TARGET}: {C.verdict(r <= RATIO_TARGET)}"
               + (f" (by {r - RATIO_TARGET:.3f}, {r / RATIO_TARGET:.1f}× the target)" if r > RATIO_TARGET else "")]
        if fa is not None:
            ok = abs(fa) <= GAP_TARGET
            msg.append(f"|FA gap| {100 * abs(fa):.1f} ≤ 3: {C.verdict(ok)}"
                       + ("" if ok else f" (by {100 * (abs(fa) - GAP_TARGET):.1f} points)"))
        if ta is not None:
            ok = abs(ta) <= GAP_TARGET
            why = ""
            if not ok and ta0 is not None:
                why = (f"; the gap was already {100 * abs(ta0):.1f} before the request, so "
                       f"{100 * (abs(ta) - abs(ta0)):+.1f} of it is the request's own")
            msg.append(f"|TA gap| {100 * abs(ta):.1f} ≤ 3: {C.verdict(ok)}"
                       + ("" if ok else f" (by {100 * (abs(ta) - GAP_TARGET):.1f} points{why})"))
        out.append("; ".join(msg) + ".")
    for kind in KINDS:
        syn = sorted((o for o in outcomes if o.kind == kind and o.data.startswith("synthetic")),
                     key=lambda o: o.retained)
        if len(syn) >= 2:
            rs = [o.ratio(METHOD) for o in syn]
            falls = all(a > b for a, b in zip(rs, rs[1:]))
            out.append(f"- ratio falls as the data grows ({kind.replace('_', ' ')}: "
                       + " → ".join(f"{r:.3f}" for r in rs) + f"): {C.verdict(falls)}.")
    return out


def headlines(outcomes: list[Outcome]) -> list[dict[str, object]]:
    rows = []
    labels = [o.data for o in outcomes if o.data.startswith("synthetic")]
    target = f"synthetic-{TARGET_SIZE // 1000}k"
    pick = target if target in labels else (labels[-1] if labels else None)  # sizes run in increasing order
    for o in outcomes:
        if o.data != pick:
            continue
        r, fa, ta, ta0 = o.ratio(METHOD), o.gap(METHOD, "FA"), o.gap(METHOD, "TA"), o.gap(METHOD, "TA", "before")
        gaps_ok = all(g is None or abs(g) <= GAP_TARGET for g in (fa, ta))
        kind = o.kind.replace("_", " ")
        rows.append(C.headline(f"unlearn cost, ugclu ÷ retrain ({o.data}, {kind} request)", f"{r:.3f}",
                               f"≤ {RATIO_TARGET}", r <= RATIO_TARGET, o.load))
        rows.append(C.headline(
            f"  … its FA gap, TA gap to the oracle (TA gap before the request)",
            f"{C.pct(fa)}, {C.pct(ta)} ({C.pct(ta0)}) pts", "|gaps| ≤ 3 pts", gaps_ok, o.load))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__)
    p.add_argument("--sizes", default="5000,20000,80000", help="synthetic sizes (samples, train + test)")
    p.add_argument("--no-mnist", action="store_true", help="skip mnist5k")
    p.add_argument("--epochs", type=int, default=2, help="epochs per learn task (default 2)")
    p.add_argument("--repeats", type=int, default=2, help="timings per strategy after the driver's own (default 2)")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.no_mnist, args.epochs, args.repeats = "1000,2000", True, 1, 1
    C.quiet_warnings()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sets: list[tuple[str, dict[str, Any]]] = []
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for n in sizes:
        sets.append((f"synthetic-{n // 1000}k" if n % 1000 == 0 else f"synthetic-{n}",
                     {"name": "synthetic", "n_samples": n, "n_features": 32, "n_classes": 10}))
    if not args.no_mnist:
        sets.append(("mnist5k", {"name": "mnist5k"}))
    outcomes: list[Outcome] = []
    breakdown = None
    biggest = max(sizes) if sizes else None
    for label, spec in sets:
        C.say(f"unlearn cost: {label} (load {C.load()})")
        res, bd = measure(label, spec, args.epochs, args.repeats,
                          profile=spec.get("n_samples") == biggest and spec["name"] == "synthetic")
        outcomes += res
        breakdown = bd or breakdown
    C.emit(render(outcomes, breakdown, args, time.perf_counter() - t0), args, "unlearn cost", headlines(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
