"""Objectives of the unified update (DESIGN §6): learn, forget and preserve losses.

* learn / preserve: plain mean cross-entropy (:func:`cross_entropy`);
* forget, ``ga_weighted``: adaptive inverse-loss weighted gradient ascent
  (:func:`inverse_loss_weights`, :func:`weighted_ascent_loss`);
* forget, ``kl_proxy``: descent on KL(q || p_theta) (:func:`kl_proxy_loss`) towards a proxy q of the
  oracle's output — the model's own softmax with the forgotten classes removed
  (:func:`remove_classes_target`, class / cross-task requests) or its tempered softmax
  (:func:`tempered_target` with :func:`calibrate_temperature`, random-sample requests);
* forget, random relabelling (``er_rl``, ``er_salun``): CE against :func:`random_labels`.

Targets are returned detached; compute them once at the start of a request.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "calibrate_temperature",
    "cross_entropy",
    "inverse_loss_weights",
    "kl_proxy_loss",
    "random_labels",
    "remove_classes_target",
    "tempered_target",
    "weighted_ascent_loss",
]


def inverse_loss_weights(losses: Tensor, lam: float, eps: float = 1e-8) -> Tensor:
    """Per-sample weights ``w_i = B * c_i / sum_j c_j`` with ``c_i = max(l_i, eps) ** -lam``.

    The weights are detached, sum to ``B = len(losses)`` and are all ones for ``lam == 0``;
    for ``lam > 0`` a sample with a lower loss (not yet forgotten) gets a larger weight.
    """
    if losses.dim() != 1:
        raise ValueError(f"losses must be 1-D (one per sample), got shape {tuple(losses.shape)}")
    if losses.numel() == 0:
        raise ValueError("losses is empty")
    c = losses.detach().clamp_min(eps).pow(-lam)
    return c * (losses.numel() / c.sum())


def weighted_ascent_loss(logits: Tensor, y: Tensor, lam: float) -> Tensor:
    """Adaptive weighted gradient ascent ``L_U = -(1/B) sum_i w_i l_i`` (``ga_weighted``).

    ``l_i`` is the per-sample cross-entropy and ``w_i = inverse_loss_weights(l, lam)`` (no gradient
    flows through the weights). ``lam == 0`` is plain gradient ascent, ``-CE``.
    """
    per_sample = F.cross_entropy(logits, y, reduction="none")
    w = inverse_loss_weights(per_sample, lam)
    return -(w * per_sample).mean()


def _class_list(classes: Sequence[int] | int | None, num_columns: int, what: str) -> list[int]:
    if classes is None:
        return list(range(num_columns))
    if isinstance(classes, int):
        classes = range(classes)
    out = sorted({int(c) for c in classes})
    bad = [c for c in out if not 0 <= c < num_columns]
    if bad:
        raise ValueError(f"{what} {bad} out of range for {num_columns} output columns")
    return out


def remove_classes_target(
    probs: Tensor,
    forgotten_classes: Sequence[int],
    num_classes_seen: Sequence[int] | int | None = None,
) -> Tensor:
    """Proxy of the oracle's output for class / cross-task requests.

    Zeroes the columns of ``probs`` (shape ``(B, C)``, the model's own softmax) that belong to
    ``forgotten_classes`` — and, if ``num_classes_seen`` is given, those of classes never seen
    (an int ``n`` means classes ``0..n-1``, a sequence lists them) — and renormalises each row.
    A row whose remaining mass is zero becomes uniform over the remaining classes. The result is
    detached, has exactly zero mass on the removed columns, and each row sums to 1.
    """
    if probs.dim() != 2:
        raise ValueError(f"probs must be (batch, classes), got shape {tuple(probs.shape)}")
    num_columns = probs.shape[1]
    forgotten = set(_class_list(forgotten_classes, num_columns, "forgotten class"))
    seen = _class_list(num_classes_seen, num_columns, "seen class")
    keep_classes = [c for c in seen if c not in forgotten]
    if not keep_classes:
        raise ValueError("no class remains after removing the forgotten classes")
    keep = torch.zeros(num_columns, dtype=torch.bool, device=probs.device)
    keep[keep_classes] = True
    q = torch.where(keep, probs.detach(), torch.zeros((), dtype=probs.dtype, device=probs.device))
    total = q.sum(dim=1, keepdim=True)
    uniform = keep.to(probs.dtype).expand_as(q) / len(keep_classes)
    return torch.where(total > 0, q / total.clamp_min(torch.finfo(probs.dtype).tiny), uniform)


def tempered_target(logits: Tensor, temperature: float) -> Tensor:
    """Proxy for random-sample requests: ``softmax(logits / temperature)``, detached."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.softmax(logits.detach() / temperature, dim=-1)


def _mean_confidence(logits: Tensor, temperature: float) -> float:
    return F.softmax(logits / temperature, dim=-1).max(dim=-1).values.mean().item()


@torch.no_grad()
def calibrate_temperature(
    forget_logits: Tensor,
    val_logits: Tensor,
    lo: float = 1.0,
    hi: float = 100.0,
    iters: int = 30,
) -> float:
    """Temperature ``T`` at which the forget set looks like held-out data.

    Bisection on ``T`` in ``[lo, hi]`` so that the mean max-softmax confidence of
    ``forget_logits / T`` equals that of ``val_logits`` at ``T = 1`` (``val_logits`` must come from
    held-out *validation* data, never the test split). Returns ``1.0`` if the forget set is already
    no more confident than the validation data, ``hi`` if even ``hi`` cannot bring it down.
    """
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    forget_logits = forget_logits.detach().double()
    target = _mean_confidence(val_logits.detach().double(), 1.0)
    if _mean_confidence(forget_logits, 1.0) <= target:
        return 1.0
    if _mean_confidence(forget_logits, hi) >= target:
        return float(hi)
    # Mean max-softmax confidence is non-increasing in T.
    a, b = float(lo), float(hi)
    for _ in range(iters):
        mid = 0.5 * (a + b)
        if _mean_confidence(forget_logits, mid) > target:
            a = mid
        else:
            b = mid
    return 0.5 * (a + b)


def kl_proxy_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of ``KL(target || softmax(logits))`` (a descent objective).

    Zero-probability target entries contribute nothing (``0 log 0 = 0``); the target is detached.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    target = target.detach()
    log_p = F.log_softmax(logits, dim=-1)
    kl = torch.xlogy(target, target) - target * log_p
    return kl.sum(dim=-1).mean()


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Plain mean cross-entropy (learn on D_L, preserve on the buffer)."""
    return F.cross_entropy(logits, y)


def random_labels(y: Tensor, classes: Sequence[int], generator: torch.Generator) -> Tensor:
    """A wrong label for every sample, drawn uniformly from ``classes`` minus the sample's own label.

    A sample whose true label is in ``classes`` gets one of the ``len(classes) - 1`` others; one whose
    label is not (a forgotten class) gets any of the ``len(classes)``. A single-class pool can offer no
    wrong label: every sample gets that class, even where it is the true one. The draw is made on the CPU
    with ``generator`` (so the labels do not depend on ``y``'s device) and returned on ``y``'s device.
    """
    pool = torch.tensor(sorted({int(c) for c in classes}), dtype=torch.long)
    n = len(pool)
    if n == 0:
        raise ValueError("random_labels needs at least one class")
    if n == 1:
        return pool.expand(y.shape).clone().to(y.device)
    true = y.detach().to("cpu", torch.long)
    pos = torch.searchsorted(pool, true)
    own = pool[pos.clamp(max=n - 1)] == true
    # one draw over n·(n-1) values is exactly uniform over both n (label not in the pool) and n - 1
    draw = torch.randint(n * (n - 1), true.shape, generator=generator)
    skip = draw % (n - 1)
    idx = torch.where(own, skip + (skip >= pos).long(), draw % n)  # skip the own label's position
    return pool[idx].to(y.device)
