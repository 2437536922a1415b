"""The unlearn term of the unified update (DESIGN §6): pure set-up once per request, then a small object
the fast step calls every iteration.

Set-up, from the model before any step: :func:`forget_mask` (the saliency mask M_U) and
:func:`proxy_targets` (the proxy q of ``kl_proxy``); in the task-aware setting the recipe then silences the
forgotten task's head rows (:func:`silence_head_rows`). :class:`ForgetTerm` holds what the iterations
need: D_U's ids and batches, M_U, q and the coefficient. :func:`unlearn_only` runs an unlearn-only
request; :func:`looks_unseen` is its early-stop rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import Tensor

from clu.events import UnlearnRequest
from clu.strategies.configs import ForgetConfig
from clu.update import (
    FastTerm,
    balanced_mask,
    calibrate_temperature,
    cosine_coefficient,
    cross_entropy,
    kl_proxy_loss,
    remove_classes_target,
    should_stop_early,
    tempered_target,
    weighted_ascent_loss,
)

if TYPE_CHECKING:
    from clu.strategies.base import CLUStrategy

Mask = dict[str, Tensor]
Forward = Callable[[Tensor], tuple[Tensor, Tensor]]
"""Logits and labels of a mini-batch of sample ids."""


# -- set-up, once per request ------------------------------------------------------------------------


def forget_mask(
    cfg: ForgetConfig,
    fisher: Callable[[Tensor], Mask],
    saliency: Callable[[Tensor, float], Mask],
    forget_ids: Tensor,
    retain_ids: Tensor,
) -> Mask | None:
    """M_U: the balanced Fisher ratio of D_U against the retained (buffer) ids, SalUn's top-k mask, or None.

    ``fisher(ids)`` is the diagonal Fisher on ``ids``; for the balanced mask it is called for D_U first, then
    for the retained ids (only when the mask has something to balance against). ``saliency(ids, sparsity)`` is
    SalUn's top-k of |Σ∇ CE| on ``ids`` (``mask = "topk"``: the same ranking as ``er_salun``'s mask).
    """
    if cfg.mask == "none":
        return None
    if cfg.mask == "topk":
        return saliency(forget_ids, cfg.sparsity)
    f_u = fisher(forget_ids)
    if not len(retain_ids):
        return None  # nothing to balance against: every parameter may move
    return balanced_mask(f_u, fisher(retain_ids), cfg.gamma)


def proxy_targets(
    logits: Tensor,
    request: UnlearnRequest,
    *,
    known_classes: set[int],
    task_aware: bool,
    val_logits: Callable[[], Tensor],
) -> Tensor:
    """q for each row of ``logits`` (D_U, from the model before any step): a proxy of the oracle's output.

    Random samples: the output tempered until D_U is as confident as held-out data (``val_logits()``, the
    validation data of the known classes). Task-aware: uniform over the sample's task (the oracle never
    trained that task's head rows). Otherwise: the model's softmax without the forgotten and unseen classes.
    """
    if request.kind == "random_sample":
        return tempered_target(logits, calibrate_temperature(logits, val_logits()))
    if task_aware:
        own = (logits > -1e3).to(logits.dtype)
        return own / own.sum(1, keepdim=True)
    seen = sorted(known_classes | set(request.target_classes))
    return remove_classes_target(torch.softmax(logits, 1), request.target_classes, seen)


@torch.no_grad()
def silence_head_rows(model: torch.nn.Module, optimizer: torch.optim.Optimizer, classes: tuple[int, ...]) -> None:
    """Zero the output-layer rows (weight, bias and their optimizer state) of ``classes``.

    Task-aware only: a forgotten task's logits are masked for every other task, so its head rows receive
    no gradient from then on; zeroed, they give exactly uniform outputs over the task (the proxy target).
    """
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1:]
    rows = torch.tensor(classes, dtype=torch.long)
    for p in head[0].parameters() if head else ():
        p[rows] = 0
        for v in optimizer.state.get(p, {}).values():
            if isinstance(v, Tensor) and v.shape == p.shape:
                v[rows] = 0


# -- per iteration -----------------------------------------------------------------------------------


@dataclass
class ForgetTerm:
    """The unlearn term of one request, ``a_t · p_U · M_U ⊙ ∇ L_U``, on the next D_U batch each call."""

    ids: Tensor
    """D_U's sample ids, sorted (row i of ``targets`` belongs to ``ids[i]``)."""
    batches: Iterator[Tensor]
    """Endless shuffled mini-batches of ``ids``."""
    forward: Forward
    """The strategy's logits and labels of a batch of ids."""
    mask: Mask | None
    """M_U (None: every parameter may move)."""
    targets: Tensor | None
    """q for ``kl_proxy``; None for the weighted ascent."""
    lam: float
    """Inverse-loss exponent of the ascent weights (0: plain ascent)."""
    alpha_u: float
    """α_U, cosine-decayed over the request's iterations."""
    p_u: float = 1.0
    """Set-size coefficient p_U."""

    def loss(self) -> Tensor:
        """L_U on the next D_U batch: KL(q ‖ p) descent, or the adaptive weighted ascent."""
        idx = next(self.batches)
        logits, y = self.forward(idx)
        if self.targets is None:
            return weighted_ascent_loss(logits, y, self.lam)
        rows = torch.searchsorted(self.ids, idx)  # ids are sorted
        return kl_proxy_loss(logits, self.targets[rows].to(logits.device))

    def term(self, t: int, total: int) -> FastTerm:
        """The fast-step term at iteration ``t`` of ``total``: coefficient a_t · p_U, mask M_U."""
        return FastTerm(self.loss, self.mask, cosine_coefficient(self.alpha_u, t, total) * self.p_u)


def attached_coefficient(cfg: ForgetConfig, t: int, total: int, schedule: str = "spread") -> float:
    """The unlearn coefficient at iteration ``t`` of ``total`` of a learn task that carries a request.

    An unlearn-only request takes its fast (forget) steps at iterations 0, k, 2k, ... < T (k = ``forget_freq``)
    with coefficient a_j = α_U·cos-decay(j) at the cosine-decayed unlearn lr. Attached, the same steps are
    spread evenly over the task's iterations, each rescaled from the unlearn lr to the learn lr, so the request
    gets the same total forget step as alone. 0 where none falls (a plain learner iteration); several are summed
    when the task has fewer iterations than forget steps. ``schedule = "every_iteration"``: the schedule before
    the fix (an ablation), α_U cosine-decayed over the task's iterations, in every one of them.
    """
    if schedule == "every_iteration":
        return cosine_coefficient(cfg.alpha_u, t, total)
    steps = range(0, cfg.unlearn_iters, cfg.forget_freq)
    lo, hi = -(-t * len(steps) // total), -(-(t + 1) * len(steps) // total)  # ceil: step 0 at iteration 0
    T = cfg.unlearn_iters
    return sum(cosine_coefficient(cfg.alpha_u, j, T) * cosine_coefficient(cfg.unlearn_lr, j, T) for j in steps[lo:hi]) / cfg.lr


def looks_unseen(mean_ce: Callable[[Tensor], float], forget_ids: Tensor, val_ids: Tensor) -> bool:
    """Early-stop rule (:func:`clu.update.should_stop_early`): D_U's mean CE has reached the validation
    data's (False without validation data)."""
    if not len(val_ids):
        return False
    return should_stop_early(mean_ce(forget_ids), mean_ce(val_ids))


def unlearn_only(
    strategy: CLUStrategy, term: ForgetTerm, cfg: ForgetConfig, preserve: Callable[[], Tensor | None]
) -> int:
    """An unlearn-only request (§6): T iterations, a fast (forget) step every ``forget_freq``-th, a slow
    (``preserve``) step every one; with ``early_stop`` it ends once the forget set looks unseen."""
    T, k = cfg.unlearn_iters, cfg.forget_freq

    def mean_ce(ids: Tensor) -> float:
        return float(cross_entropy(*strategy.eval_logits(ids)))

    def stop(t: int) -> bool:
        return t % k == 0 and looks_unseen(mean_ce, term.ids, strategy.known_val_ids())

    return strategy.unlearn_phase(
        T,
        cfg.unlearn_lr,
        lambda t: [term.term(t, T)] if t % k == 0 else [],
        preserve,
        clip=cfg.clip,
        order=cfg.order,
        stop=stop if cfg.early_stop else None,
    )
