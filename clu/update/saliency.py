"""Every weight-saliency mask (DESIGN §6), each named for what it ranks:

* :func:`balanced_mask` — the balanced Fisher ratio ``1[(F_U + ε) / (F_R + ε) ≥ γ]`` (ugclu's M_U and M_L);
* :func:`salun_mask` — SalUn's top-k of the summed-gradient magnitude ``|Σ ∇ CE|`` on the forget set
  (er_salun, and ugclu's ``mask = "topk"`` ablation);

built from :func:`fisher_diagonal` (the diagonal empirical Fisher) and :func:`topk_mask` (top-k of |score|).
Masks are ``dict[str, Tensor]`` keyed by ``model.named_parameters()`` names, float tensors of the
parameter's shape holding 1 (update allowed) or 0 (parameter frozen). The functions run the model in its
current mode; the strategies run these passes in eval mode (``CLUStrategy.fisher`` / ``.saliency``), as
SFR-on and SalUn do, so BatchNorm neither normalises by the pass's batch nor records its statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["balanced_mask", "fisher_diagonal", "mask_ratio", "salun_mask", "topk_mask"]


def fisher_diagonal(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]
) -> dict[str, Tensor]:
    """Diagonal empirical Fisher ``F[p] = mean over batches of (d CE_batchmean / d p) ** 2``.

    Covers every parameter with ``requires_grad`` (a parameter the loss does not reach gets zeros).
    The model runs in its current train/eval mode (BatchNorm in train mode updates its running
    statistics as in any forward pass) with gradients enabled even under ``torch.no_grad()``;
    gradients are taken with ``torch.autograd.grad``, so the ``.grad`` fields are left untouched.
    Batches must already be on the model's device. Raises ``ValueError`` if there are no batches.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    acc = {n: torch.zeros_like(p, memory_format=torch.preserve_format) for n, p in named}
    count = 0
    with torch.enable_grad():
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for (n, _), g in zip(named, grads):
                if g is not None:
                    acc[n].add_(g.detach().square())
            count += 1
    if count == 0:
        raise ValueError("fisher_diagonal needs at least one batch")
    return {n: f / count for n, f in acc.items()}


def balanced_mask(
    f_num: Mapping[str, Tensor],
    f_den: Mapping[str, Tensor],
    gamma: float = 1.0,
    eps: float = 1e-8,
) -> dict[str, Tensor]:
    """``1[(F_num + eps) / (F_den + eps) >= gamma]`` per parameter, as float tensors.

    ``M_U = balanced_mask(F_U, F_R)``; ``M_L = balanced_mask(F_L, F_R, gamma_L)``.
    """
    missing = sorted(set(f_num) ^ set(f_den))
    if missing:
        raise KeyError(f"Fisher dicts have different parameters: {missing}")
    out: dict[str, Tensor] = {}
    for name, num in f_num.items():
        den = f_den[name]
        if num.shape != den.shape:
            raise ValueError(f"{name}: shapes {tuple(num.shape)} and {tuple(den.shape)} differ")
        out[name] = ((num + eps) / (den + eps) >= gamma).to(num.dtype)
    return out


def topk_mask(scores: Mapping[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    """Keep the ``round((1 - sparsity) * N)`` entries of largest ``|score|`` across all parameters
    together (``N`` entries in all). Ties are broken deterministically in favour of the earlier entry
    (dict order, then flattened index)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    if not scores:
        return {}
    names = list(scores)
    flat = torch.cat([scores[n].detach().abs().reshape(-1).float().cpu() for n in names])
    k = int(round((1.0 - sparsity) * flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.sort(flat, descending=True, stable=True).indices
        keep[order[:k]] = True
    out: dict[str, Tensor] = {}
    start = 0
    for n in names:
        g = scores[n]
        part = keep[start : start + g.numel()].reshape(g.shape)
        out[n] = part.to(device=g.device, dtype=g.dtype if g.is_floating_point() else torch.float32)
        start += g.numel()
    return out


def salun_mask(model: nn.Module, losses: Iterable[Tensor], sparsity: float) -> dict[str, Tensor]:
    """SalUn's mask: top-k of ``|Σ_b ∇ loss_b|`` over every parameter with ``requires_grad``.

    ``losses`` yields one scalar per forget-set mini-batch (weighted so that they sum to the mean loss);
    each is differentiated as it comes, so one batch's graph is alive at a time.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    grads = {n: torch.zeros_like(p) for n, p in named}
    for loss in losses:
        for (n, _), g in zip(named, torch.autograd.grad(loss, params)):
            grads[n] += g
    return topk_mask(grads, sparsity)


def mask_ratio(mask: Mapping[str, Tensor]) -> float:
    """Fraction of entries equal to 1 (update allowed) over all parameters; ``0.0`` if empty."""
    total = sum(m.numel() for m in mask.values())
    if total == 0:
        return 0.0
    ones = sum(int((m != 0).sum().item()) for m in mask.values())
    return ones / total
