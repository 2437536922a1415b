"""Framework overhead (DESIGN §11): samples/s of the ``ugclu`` learn step through Avalanche ÷ a plain torch loop.

Framework side: ``strategy.learn(task, experience)`` of ``ugclu`` on the 2nd task of a CPU scenario (its
data, model, batch size, epochs and buffer), i.e. Avalanche's ``train`` with the strategy's fast–slow
``training_epoch``. Plain side: a hand-written loop doing the same arithmetic on the same model, starting
from the same weights, optimizer state and random-generator state — per mini-batch a fast step (CE on the
learn batch, backward, SGD step; plain learn steps are not clipped) and a slow step (CE on a buffer batch at the new
weights, SGD step) — and drawing the same batches; the final weights of both sides are compared as a check
that the arithmetic is the same. The two sides alternate (ABBA) and repeat; the figure is the median of the
per-pair ratios, with their interquartile range, the ratio of the fastest runs and the CPU-time ratio beside it.

A cProfile of both sides then shows where the framework spends its extra time: Python function calls per
iteration (a count, independent of machine load) and the framework functions with the most own time.

Target (issue 6): ≥ 0.85.

    .venv/bin/python bench/overhead.py [--scenarios digits-class,mnist5k-class] [--repeats 12] [--record]
"""

from __future__ import annotations

import copy
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 0.85
SEED = 0


class Bench:
    """One scenario: the ugclu strategy after task 1 (saved), and the plain loop over the same task 2."""

    def __init__(self, scenario: str) -> None:
        import torch

        from clu.data import load_dataset
        from clu.data.avalanche_bridge import learn_experiences, sample_ids_of
        from clu.driver import build_strategy
        from clu.events import steps as group_steps
        from clu.scenario import events_for, load_scenario
        from clu.strategies import resolve_strategy

        self.name = scenario
        self.spec = load_scenario(C.ROOT / "scenarios" / f"{scenario}.toml")
        self.data = load_dataset(self.spec.data)
        learns = [s.learn for s in group_steps(events_for(self.spec, SEED)) if s.learn is not None][:2]
        self.tasks = learns
        self.exps = learn_experiences(self.data, learns, False)
        self.s = build_strategy(resolve_strategy("ugclu"), self.spec, self.data, SEED, torch.device("cpu"))
        self.s.learn(learns[0], self.exps[0])  # fills the buffer: the slow step of task 2 is live
        self.snap = copy.deepcopy(self.s.state_dict())
        cfg = self.s.cfg
        self.bs, self.epochs = self.s.train_mb_size, self.s.train_epochs
        self.p_l, self.p_r = self.s.coefficients(1, 0)[0], self.s.coefficients(1, 0)[2]
        assert cfg.learner == "fast_slow" and not cfg.learn_mask and cfg.coefficients == "constant", \
            "the plain loop mirrors the default ugclu learn step"
        # the plain loop's data: the train tensors themselves, the task's ids in the experience's order
        self.x_all = self.data.inputs(self.data.x_train)
        self.y_all = self.data.y_train
        self.ids = sample_ids_of(self.exps[1].dataset)
        self.buf_ids = torch.tensor(sorted(int(i) for i in self.snap["buffer"]["ids"]), dtype=torch.long)
        self.model = copy.deepcopy(self.s.model)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.gen = torch.Generator()
        self.samples = len(self.ids) * self.epochs
        self.iterations = -(-len(self.ids) // self.bs) * self.epochs

    # -- the two sides ---------------------------------------------------------------------------------

    def reset_framework(self) -> None:
        # deepcopy: the optimizer adopts the given state tensors and updates them in place
        self.s.load_state_dict(copy.deepcopy(self.snap))

    def framework(self) -> None:
        self.s.learn(self.tasks[1], self.exps[1])

    def reset_plain(self) -> None:
        self.model.load_state_dict(self.snap["model"])
        self.opt.load_state_dict(copy.deepcopy(self.snap["optimizer"]))
        self.gen.set_state(self.snap["torch_rng"])

    def plain(self) -> None:
        import torch
        import torch.nn.functional as F

        model, opt, g, bs = self.model, self.opt, self.gen, self.bs
        x_all, y_all, ids, buf = self.x_all, self.y_all, self.ids, self.buf_ids
        for _ in range(self.epochs):
            perm = ids[torch.randperm(len(ids), generator=g)]
            for start in range(0, len(perm), bs):
                b = perm[start:start + bs]
                loss = F.cross_entropy(model(x_all[b]), y_all[b])  # fast step: learn batch
                opt.zero_grad(set_to_none=True)
                (loss * self.p_l if self.p_l != 1.0 else loss).backward()
                opt.step()
                k = buf[torch.randperm(len(buf), generator=g)[:bs]] if bs < len(buf) else \
                    buf[torch.randint(len(buf), (bs,), generator=g)]
                slow = F.cross_entropy(model(x_all[k]), y_all[k])  # slow step: buffer batch, new weights
                opt.zero_grad(set_to_none=True)
                (slow * self.p_r if self.p_r != 1.0 else slow).backward()
                opt.step()

    def max_weight_diff(self) -> float:
        self.reset_framework()
        self.framework()
        self.reset_plain()
        self.plain()
        return max(float((a - b).abs().max()) for a, b in zip(self.s.model.parameters(), self.model.parameters()))


def _timed(reset: Callable[[], None], fn: Callable[[], None]) -> tuple[float, float]:
    reset()
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def measure(b: Bench, repeats: int) -> dict[str, Any]:
    """ABBA-interleaved timings of plain and framework."""
    sides: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "plain": (b.reset_plain, b.plain),
        "framework": (b.reset_framework, b.framework),
    }
    for reset, fn in sides.values():  # warm-up
        _timed(reset, fn)
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            w, c = _timed(*sides[k])
            wall[k].append(w)
            cpu[k].append(c)
    out: dict[str, Any] = {"wall": wall, "cpu": cpu, "load": C.load1()}
    for k in names[1:]:
        pairs = [p / f for p, f in zip(wall["plain"], wall[k])]
        out[k] = {
            "ratio": C.median(pairs),
            "iqr": C.quartiles(pairs),
            "min_ratio": min(wall["plain"]) / min(wall[k]),
            "cpu_ratio": C.median(p / f for p, f in zip(cpu["plain"], cpu[k])),
            "sps": b.samples / C.median(wall[k]),
        }
    out["plain_sps"] = b.samples / C.median(wall["plain"])
    return out


def profile(b: Bench, reps: int = 3) -> dict[str, Any]:
    """cProfile both sides: Python calls per iteration and the framework's top own-time functions."""
    res: dict[str, Any] = {}
    for side, reset, fn in (("plain", b.reset_plain, b.plain), ("framework", b.reset_framework, b.framework)):
        prof = cProfile.Profile()
        for _ in range(reps):
            reset()
            prof.enable()
            fn()
            prof.disable()
        st = pstats.Stats(prof)
        n_iter = b.iterations * reps
        res[side] = {"calls": st.total_calls / n_iter, "time": st.total_tt / n_iter}  # type: ignore[attr-defined]
        if side == "framework":
            own = []
            for (file, line, func), (_cc, nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
                if "/clu/" in file or "/avalanche/" in file:
                    short = file.split("/clu/")[-1] if "/clu/" in file else "avalanche/" + file.split("/avalanche/")[-1]
                    pkg = "clu/" if "/clu/" in file else ""
                    own.append((tt / n_iter, nc / n_iter, f"{pkg}{short}:{line}({func})"))
            own.sort(reverse=True)
            res["top"] = own[:8]
            res["framework_own"] = sum(t for t, _, _ in own)
    return res


def render(results: list[tuple[Bench, dict[str, Any], dict[str, Any], float]], args: Any, elapsed: float) -> str:
    rows = []
    for b, m, _prof, diff in results:
        f = m["framework"]
        rows.append([b.name, f"{b.samples:,} ({b.iterations} it.)", f"{m['plain_sps']:,.0f}", f"{f['sps']:,.0f}",
                     f"**{f['ratio']:.3f}**", f"{f['iqr'][0]:.2f}–{f['iqr'][1]:.2f}", f"{f['min_ratio']:.3f}",
                     f"{f['cpu_ratio']:.3f}", f"{diff:.1e}", m["load"]])
    lines = [
        "### Framework overhead",
        "",
        f"Target: samples/s of the `ugclu` learn step through Avalanche (`strategy.learn` on an experience) ÷ "
        f"samples/s of a plain torch loop doing the same arithmetic ≥ {TARGET}.",
        "",
        f"Timed: learning task 2 of the scenario (its batch size, epochs and buffer; MLP 256-256; 1 torch thread) "
        f"after task 1, both sides from the same saved state; {args.repeats} ABBA-interleaved runs per side. "
        "*ratio*: median of per-pair ratios (IQR beside it); *fastest*: ratio of the fastest runs; *CPU*: the same "
        "on process CPU time; *Δw*: largest weight difference between the sides after the task (same arithmetic "
        "and batches: 0 up to rounding).",
        "",
        C.table(["scenario", "samples", "plain samples/s", "framework samples/s", "overhead ratio", "IQR",
                 "fastest", "CPU", "Δw", "load"], rows),
        "",
    ]
    for b, m, _prof, _diff in results:
        r = m["framework"]["ratio"]
        lines.append(f"- overhead at {b.name}: {r:.3f} — target ≥ {TARGET}: {C.verdict(r >= TARGET)}"
                     + ("" if r >= TARGET else f" (short by {TARGET - r:.3f})") + ".")
    lines += ["", "Profile (cProfile, 3 runs per side; times inflated by the profiler, calls exact):", ""]
    for b, _m, prof, _diff in results:
        fw, pl = prof["framework"], prof["plain"]
        top = "; ".join(f"`{name}` {1e6 * t:.0f} µs ({n:.0f}×)" for t, n, name in prof["top"][:6])
        lines.append(f"- {b.name}: Python function calls per iteration {fw['calls']:.0f} (framework) vs "
                     f"{pl['calls']:.0f} (plain); profiled time per iteration {1e6 * fw['time']:.0f} vs "
                     f"{1e6 * pl['time']:.0f} µs, of which {1e6 * prof['framework_own']:.0f} µs own time in "
                     f"clu/avalanche code. Most own time per iteration: {top}.")
    lines += ["", f"({elapsed:.0f} s for this benchmark.)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__)
    p.add_argument("--scenarios", default="digits-class,mnist5k-class")
    p.add_argument("--repeats", type=int, default=16, help="runs per side (default 16)")
    args = p.parse_args(argv)
    if args.quick:
        args.scenarios, args.repeats = "digits-class", 2
    C.quiet_warnings()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results = []
    for name in args.scenarios.split(","):
        C.say(f"overhead: {name} (load {C.load()})")
        b = Bench(name)
        diff = b.max_weight_diff()
        m = measure(b, args.repeats)
        prof = profile(b)
        C.say(f"  {name}: ratio {m['framework']['ratio']:.3f} (load {m['load']}), Δw {diff:.1e}")
        results.append((b, m, prof, diff))
    heads = [C.headline(f"framework overhead, Avalanche ÷ plain loop ({b.name})", f"{m['framework']['ratio']:.3f}",
                        f"≥ {TARGET}", m["framework"]["ratio"] >= TARGET, m["load"]) for b, m, _p, _d in results]
    C.emit(render(results, args, time.perf_counter() - t0), args, "framework overhead", heads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
