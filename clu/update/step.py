"""Optimizer steps of the unified update (DESIGN §6): clipping, the masked step and the fast–slow
iteration.

Design of :func:`fast_slow_step`:

* The fast step is a list of :class:`FastTerm` ``(loss_fn, mask, coef)`` — e.g. the learn term
  ``(learn_loss, M_L, p_L)`` and the unlearn term ``(forget_loss, M_U, a_t * p_U)``. Each callable
  runs its own forward pass and returns a scalar loss, or ``None`` when its set is empty (the term
  is skipped). Each term's gradient is taken separately, multiplied by its mask (``None`` = no mask)
  and coefficient, and summed: ``g = sum_k coef_k * M_k ⊙ ∇ loss_k``. ``g`` is clipped to norm
  ``clip`` and one :func:`masked_step` is taken with the union of the evaluated terms' masks, so a
  parameter entry masked out by *every* evaluated term — and its momentum buffer — stays
  bit-identical across the fast step. A term whose mask is ``None`` unmasks everything.
* The slow step calls ``slow_loss_fn`` *after* the fast step (so it sees the new weights), and takes
  a plain, unmasked, unclipped step on ``slow_coef * loss``.
* ``order="joint"`` (ablation) evaluates the slow loss at the *same* weights as the fast terms and
  takes one step on ``g + slow_coef * ∇ slow``; it is masked as the fast step only when there is
  no slow loss.

Masks are ``dict[str, Tensor]`` keyed by ``model.named_parameters()`` names (1 = update allowed,
0 = frozen); a parameter missing from a mask is unmasked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["FastTerm", "clip_grad", "fast_slow_step", "masked_step"]

Mask = Mapping[str, Tensor]


class FastTerm(NamedTuple):
    """One term of the fast step: ``coef * mask ⊙ ∇ loss_fn()`` (``loss_fn() is None`` = skip)."""

    loss_fn: Callable[[], Tensor | None]
    mask: Mask | None = None
    coef: float = 1.0


def clip_grad(
    grads: Mapping[str, Tensor] | nn.Module | Iterable[nn.Parameter], max_norm: float
) -> float:
    """Scale gradients in place so their combined L2 norm is at most ``max_norm``.

    ``grads`` is a dict of gradient tensors, a module (its parameters' ``.grad``) or an iterable of
    parameters. ``max_norm <= 0`` means no clipping. Returns the total norm before clipping.
    """
    if isinstance(grads, Mapping):
        tensors = [g for g in grads.values() if g is not None]
    else:
        params = grads.parameters() if isinstance(grads, nn.Module) else grads
        tensors = [p.grad for p in params if p.grad is not None]
    if not tensors:
        return 0.0
    total = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in tensors])
    )
    if max_norm > 0:
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in tensors:
            g.detach().mul_(scale.to(device=g.device, dtype=g.dtype))
    return float(total.item())


def _check_mask(model: nn.Module, mask: Mask) -> dict[str, tuple[nn.Parameter, Tensor]]:
    params = dict(model.named_parameters())
    unknown = sorted(set(mask) - set(params))
    if unknown:
        raise KeyError(f"mask names parameters the model does not have: {unknown}")
    out = {}
    for name, m in mask.items():
        p = params[name]
        if m.shape != p.shape:
            raise ValueError(f"mask {name}: shape {tuple(m.shape)} != parameter {tuple(p.shape)}")
        out[name] = (p, m.to(device=p.device))
    return out


@torch.no_grad()
def masked_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, mask: Mask | None
) -> None:
    """``optimizer.step()`` restricted to the mask.

    Gradients are multiplied by the mask first, so the allowed entries follow the masked gradient.
    Entries with ``mask == 0`` keep their exact values (bit-identical, despite weight decay and
    momentum), and so do their entries in every per-parameter optimizer state tensor (e.g. the
    momentum buffer); a state tensor created by this step gets zeros there. ``mask=None`` is a
    plain step.
    """
    if mask is None:
        optimizer.step()
        return
    checked = _check_mask(model, mask)
    saved: list[tuple[nn.Parameter, Tensor, Tensor, dict[str, Tensor]]] = []
    for p, m in checked.values():
        free = m != 0
        if bool(free.all()):
            if p.grad is not None:
                p.grad.mul_(m.to(p.grad.dtype))
            continue
        if p.grad is not None:
            p.grad.mul_(m.to(p.grad.dtype))
        state = optimizer.state.get(p, {})
        buffers = {
            k: v.clone()
            for k, v in state.items()
            if isinstance(v, Tensor) and v.shape == p.shape
        }
        saved.append((p, free, p.detach().clone(), buffers))
    optimizer.step()
    for p, free, old, buffers in saved:
        p.copy_(torch.where(free, p, old))
        for k, v in optimizer.state.get(p, {}).items():
            if not (isinstance(v, Tensor) and v.shape == p.shape):
                continue
            before = buffers.get(k)
            if before is None:
                before = torch.zeros_like(v)
            v.copy_(torch.where(free, v, before))


def _union_mask(masks: Sequence[Mask | None]) -> Mask | None:
    """Entry-wise OR of masks: free if any mask frees it (``None`` or a missing key frees all)."""
    if not masks or any(m is None for m in masks):
        return None
    if len(masks) == 1:
        return masks[0]
    names = set(masks[0])
    for m in masks[1:]:
        names &= set(m)
    return {
        n: torch.stack([(m[n] != 0) for m in masks]).any(dim=0).to(masks[0][n].dtype)
        for n in names
    }


def _fast_grads(
    params: list[tuple[str, nn.Parameter]], terms: Sequence[FastTerm]
) -> tuple[list[Tensor | None], float | None, list[Mask | None]]:
    """Sum of ``coef * mask ⊙ grad`` over the terms that return a loss."""
    acc: list[Tensor | None] = [None] * len(params)
    value: float | None = None
    used: list[Mask | None] = []
    tensors = [p for _, p in params]
    for term in terms:
        loss = term.loss_fn()
        if loss is None:
            continue
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        own: set[int] = set()
        for i, ((name, p), g) in enumerate(zip(params, grads)):
            if g is None:
                continue
            if term.coef != 1.0 or id(g) in own or not g.is_contiguous():
                g = g * term.coef  # a fresh tensor: autograd may hand back one tensor for two parameters
            own.add(id(g))
            if term.mask is not None and name in term.mask:
                g = g * term.mask[name].to(device=g.device, dtype=g.dtype)
            acc[i] = g if acc[i] is None else acc[i] + g  # a sum is a fresh tensor
        value = (0.0 if value is None else value) + term.coef * float(loss.detach().item())
        used.append(term.mask)
    return acc, value, used


def fast_slow_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    fast_terms: Sequence[FastTerm | tuple[Callable[[], Tensor | None], Mask | None, float]],
    slow_loss_fn: Callable[[], Tensor | None] | None,
    *,
    clip: float = 0.0,
    slow_coef: float = 1.0,
    order: Literal["fast_slow", "joint"] = "fast_slow",
) -> tuple[float | None, float | None]:
    """One §6 iteration: a masked, clipped fast step on the learn/unlearn terms, then a plain
    slow step on ``slow_coef * slow_loss_fn()`` evaluated at the updated weights (see the module
    docstring; ``order="joint"`` is the one-step ablation).

    Returns ``(fast, slow)``: ``sum_k coef_k * loss_k`` over the evaluated fast terms and
    ``slow_coef * slow_loss``, each ``None`` where nothing was evaluated (that step is skipped).
    """
    if order not in ("fast_slow", "joint"):
        raise ValueError(f"order must be 'fast_slow' or 'joint', got {order!r}")
    terms = [t if isinstance(t, FastTerm) else FastTerm(*t) for t in fast_terms]
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    optimizer.zero_grad(set_to_none=True)
    grads, fast_value, used = _fast_grads(params, terms)
    for (_, p), g in zip(params, grads):
        p.grad = g
    if fast_value is not None and clip > 0:
        clip_grad([p for _, p in params], clip)
    fast_mask = _union_mask(used)

    if order == "joint":
        slow_value = None
        if slow_loss_fn is not None:
            slow = slow_loss_fn()
            if slow is not None:
                (slow_coef * slow).backward()  # accumulates into the clipped fast gradient
                slow_value = slow_coef * float(slow.detach().item())
        if fast_value is not None or slow_value is not None:
            masked_step(model, optimizer, fast_mask if slow_value is None else None)
        return fast_value, slow_value

    if fast_value is not None:
        masked_step(model, optimizer, fast_mask)
    slow_value = None
    if slow_loss_fn is not None:
        optimizer.zero_grad(set_to_none=True)
        slow = slow_loss_fn()  # evaluated at the post-fast weights
        if slow is not None:
            (slow_coef * slow).backward()
            optimizer.step()
            slow_value = slow_coef * float(slow.detach().item())
    return fast_value, slow_value
