"""GPU figures (DESIGN §11): ResNet-18 learning throughput on ``synthetic_images`` (CIFAR size), and the unlearn ÷
retrain ratio at 50k training samples, through the library's own path (data placed on the device, batches
sliced there, seeded crop + flip, channels_last on CUDA, optional bf16 autocast).

1. **Throughput**: samples/s of ``naive`` learning (one SGD step per learn batch) on one task of ``--samples``
   images, batch 128; the first epoch warms up (cuDNN autotuning), the second is timed. Measured in fp32 and,
   where the device supports it, under bf16 autocast (``--amp`` in ``clu run``).
2. **Unlearn ÷ retrain**: a stream of 2 tasks × 5 classes on ``--ratio-samples`` training images, then one
   class request (a class of the 2nd task); the wall time of ``ugclu``'s request (its paper preset, T = 1500)
   ÷ the time of the oracle ``retrain`` at the same request (retraining from scratch on the retained data for
   ``--epochs`` epochs per task). Retraining grows with the data and the epochs, a request's T iterations do not.

``--smoke`` (or ``--quick``) runs both on tiny sizes (about a hundred images, a small CNN, T = 3, batch 16) on
any device: a test that the script works, not a figure. Without a GPU the figures are CPU figures and say so.

    .venv/bin/python bench/gpu.py [--device auto|cpu|cuda] [--samples 50000] [--ratio-samples 50000]
                                  [--epochs 5] [--smoke] [--record]
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SEED = 0
BATCH = 128


@dataclass(frozen=True)
class Sizes:
    """What one invocation measures."""

    samples: int
    """Training images of the throughput task."""
    ratio_samples: int
    """Training images of the unlearn ÷ retrain stream."""
    epochs: int
    """Epochs per learn task (and per retraining) of the ratio stream."""
    batch: int
    unlearn_iters: int | None
    """None: the paper preset's T."""
    model: str = "resnet18"
    """resnet18 for the figures; the smoke run's small CNN keeps a CPU test short."""


def sizes(args: Any) -> Sizes:
    if args.smoke or args.quick:
        return Sizes(samples=96, ratio_samples=120, epochs=1, batch=16, unlearn_iters=3, model="cnn")
    return Sizes(args.samples, args.ratio_samples, args.epochs, BATCH, None)


def scenario(s: Sizes, train_samples: int, epochs: int, n_tasks: int, request: bool) -> Any:
    """A synthetic_images scenario (``s.model``, batch ``s.batch``) with the paper-scale training settings (crop + flip, paper presets).
    ``train_samples`` training images: the data set is sized so that its train split holds them."""
    from clu.config import from_dict
    from clu.scenario import ScenarioSpec

    test_fraction = 0.2
    raw: dict[str, Any] = {
        "name": "bench-gpu", "seed": SEED,
        "data": {"name": "synthetic_images", "n_samples": round(train_samples / (1 - test_fraction)),
                 "n_classes": 10, "test_fraction": test_fraction},
        "model": {"name": s.model, **({"width": 8} if s.model == "cnn" else {})},
        "split": {"n_tasks": n_tasks, "classes_per_task": 10 // n_tasks, "class_order": "natural"},
        "training": {"epochs": epochs, "batch_size": s.batch, "buffer_size": 500, "augment": "crop_flip",
                     "presets": "paper"},
    }
    if request:
        raw["schedule"] = {"requests": [{"after_task": n_tasks, "kind": "class", "classes": [9]}]}
    return from_dict(ScenarioSpec, raw)


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: Any) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def prepare(spec: Any, device: Any) -> tuple[Any, list[Any]]:
    """The dataset placed on ``device`` and the scenario's steps."""
    from clu.data import load_dataset, place
    from clu.events import steps
    from clu.scenario import generate

    data = place(load_dataset(spec.data), device)
    events = generate(spec, SEED, data.train_labels, data.learnable_ids, data.num_classes)
    return data, steps(events)


def throughput(s: Sizes, device: Any, amp: bool) -> tuple[int, float]:
    """Images learned per epoch and samples/s of naive learning on one task (the second epoch of two)."""
    from clu.data.avalanche_bridge import learn_experiences
    from clu.driver import build_strategy
    from clu.runconfig import resolve_in_family

    spec = scenario(s, s.samples, 1, 1, request=False)
    data, st = prepare(spec, device)
    task = st[0].learn
    exp = learn_experiences(data, [task], task_aware=False)[0]
    strategy = build_strategy(resolve_in_family("naive", "paper"), spec, data, SEED, device, amp=amp)
    strategy.train_task(exp)  # warm-up: cuDNN autotuning, allocator
    return len(task.sample_ids), len(task.sample_ids) / timed(lambda: strategy.train_task(exp), device)


def forget_accuracy(strategy: Any, ids: Any) -> float:
    import torch

    logits, y = strategy.eval_logits(torch.as_tensor(ids, dtype=torch.long))
    return float((logits.argmax(1) == y).float().mean())


def unlearn_ratio(s: Sizes, device: Any, amp: bool) -> dict[str, float]:
    """Wall time of ugclu's request and of the oracle's retraining at it, and FA after it for both."""
    from clu.data.avalanche_bridge import learn_experiences
    from clu.driver import build_strategy
    from clu.runconfig import resolve_in_family

    spec = scenario(s, s.ratio_samples, s.epochs, 2, request=True)
    data, st = prepare(spec, device)
    learn = [x.learn for x in st if x.learn is not None]
    exps = learn_experiences(data, learn, task_aware=False)
    request = next(x.unlearn for x in st if x.unlearn is not None)
    out: dict[str, float] = {"retained": float(sum(len(t.sample_ids) for t in learn) - len(request.sample_ids)),
                             "forget": float(len(request.sample_ids))}
    for name in ("retrain", "ugclu"):
        choice = resolve_in_family(name, "paper")
        if s.unlearn_iters is not None and hasattr(choice.config, "unlearn_iters"):
            choice = replace(choice, config=replace(choice.config, unlearn_iters=s.unlearn_iters))
        strategy = build_strategy(choice, spec, data, SEED, device, amp=amp)
        for task, exp in zip(learn, exps):
            strategy.learn(task, exp)
        C.say(f"  {name}: learned {len(learn)} tasks; request of {len(request.sample_ids)} samples ...")
        out[f"{name}_s"] = timed(lambda: strategy.unlearn(request), device)
        out[f"{name}_FA"] = forget_accuracy(strategy, request.sample_ids)
    out["ratio"] = out["ugclu_s"] / out["retrain_s"]
    return out


def amp_supported(device: Any) -> bool:
    import torch

    return device.type == "cpu" or torch.cuda.is_bf16_supported()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = C.parser(__doc__)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--samples", type=int, default=50000, help="training images of the throughput task")
    p.add_argument("--ratio-samples", type=int, default=50000, help="training images of the ratio stream")
    p.add_argument("--epochs", type=int, default=5, help="epochs per learn task of the ratio stream")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on any device: a test, not a figure")
    args = p.parse_args(argv)
    C.quiet_warnings()
    import torch

    from clu.models import resolve_device

    device = resolve_device(args.device)
    torch.set_num_threads(max(1, C.cores()))
    s = sizes(args)
    load = C.load1()
    C.say(f"bench/gpu.py on {device} ({C.gpu() or 'no GPU'}): {s}")
    rows, figures = [], {}
    for amp in (False, True) if amp_supported(device) else (False,):
        n_images, rate = throughput(s, device, amp)
        figures[f"samples_per_s{'_amp' if amp else ''}"] = rate
        rows.append(["bf16 autocast" if amp else "fp32", f"{rate:,.0f}"])
        C.say(f"  throughput ({rows[-1][0]}): {rate:,.0f} samples/s")
    r = unlearn_ratio(s, device, amp=False)
    figures.update(r)
    where = f"GPU: {C.gpu()}" if device.type == "cuda" else "no GPU lent: CPU figures"
    kind = "smoke run (tiny sizes: not a figure)" if (args.smoke or args.quick) else "measurement"
    block = "\n".join([
        "### GPU",
        "",
        f"{where}; device {device}; {kind}; 1-min load {load} at the start.",
        "",
        f"{'ResNet-18' if s.model == 'resnet18' else s.model} learning throughput on synthetic_images (3×32×32), {n_images} images, batch {s.batch}, "
        "crop + flip, data on the device (second epoch timed):",
        "",
        C.table(["precision", "samples/s"], rows, "lr"),
        "",
        f"Unlearn ÷ retrain at {int(r['retained'] + r['forget'])} training samples (2 tasks × 5 classes, "
        f"{s.epochs} epoch(s) per task, one class request of {int(r['forget'])} samples; ugclu's paper preset"
        f"{'' if s.unlearn_iters is None else f' with T = {s.unlearn_iters}'}):",
        "",
        C.table(["", "request s", "FA"], [
            ["retrain (oracle)", f"{r['retrain_s']:.2f}", C.pct(r["retrain_FA"])],
            ["ugclu", f"{r['ugclu_s']:.2f}", C.pct(r["ugclu_FA"])],
        ], "lrr"),
        "",
        f"- unlearn ÷ retrain: {r['ratio']:.3f}",
    ])
    C.emit(block, args, "GPU")
    return figures


if __name__ == "__main__":
    main()
