"""The unlearn term of the unified update (DESIGN §6), prepared once per request.

:class:`ForgetTerm` holds what the fast step needs for one request: the forget set D_U and its batches,
the saliency mask M_U (computed at the start of the request), the proxy targets q of ``kl_proxy``
(computed once, from the model before any step) and the adaptive coefficient schedule. Strategies
compose it: ``ugclu`` with its learn and preserve terms, ``er_sfron`` with the preserve term only.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Callable, Literal

import torch
from torch import Tensor

from clu.config import check
from clu.events import UnlearnRequest
from clu.strategies.base import UnlearnConfig
from clu.update import (
    FastTerm,
    balanced_mask,
    calibrate_temperature,
    cosine_coefficient,
    cross_entropy,
    fisher_diagonal,
    kl_proxy_loss,
    remove_classes_target,
    tempered_target,
    topk_grad_mask,
    weighted_ascent_loss,
)

if TYPE_CHECKING:
    from clu.strategies.base import CLUStrategy

Mask = dict[str, Tensor]


@dataclass(frozen=True)
class ForgetConfig(UnlearnConfig):
    """The unlearn component: objective, adaptive coefficients, saliency mask, fast–slow schedule."""

    forget_loss: Literal["kl_proxy", "ga_weighted"] = "kl_proxy"
    """kl_proxy: descent on KL(q ‖ p) to a proxy of the oracle's output; ga_weighted: weighted ascent."""
    alpha_u: float = 10.0
    """Unlearn coefficient α_U, cosine-decayed over the request's iterations."""
    lam: float = 0.5
    """Inverse-loss exponent λ of the per-sample ascent weights (ga_weighted)."""
    adaptive_weights: bool = True
    """Ablation switch: false = plain ascent (λ = 0)."""
    forget_freq: int = 5
    """Unlearn-only requests: a fast (forget) step every forget_freq iterations; slow steps every one."""
    mask: Literal["balanced", "topk", "none"] = "balanced"
    """Saliency mask on the unlearn term: balanced Fisher ratio M_U, SalUn top-k |grad|, or none."""
    gamma: float = 1.0
    """Threshold γ of the balanced mask (F_U + ε) / (F_R + ε) ≥ γ."""
    sparsity: float = 0.5
    """topk mask: fraction of weights frozen."""
    fisher_batches: int = 4
    """Mini-batches (of 64) per set for the diagonal Fisher at the start of a request."""
    coefficients: Literal["constant", "proportional"] = "constant"
    """p_L, p_U, p_R: constants 1, or proportional to |D_L|, |D_U|, |buffer|."""
    order: Literal["fast_slow", "joint"] = "fast_slow"
    """fast_slow: the slow (preserve) step at the post-fast weights; joint: one summed step (ablation)."""
    early_stop: bool = False
    """End the unlearning once the forget set's mean loss reaches the validation loss."""

    def validate(self) -> None:
        super().validate()
        check(self.alpha_u >= 0, "alpha_u", f"must be >= 0, got {self.alpha_u}")
        check(self.lam >= 0, "lam", f"must be >= 0, got {self.lam}")
        check(self.forget_freq >= 1, "forget_freq", f"must be >= 1, got {self.forget_freq}")
        check(self.gamma > 0, "gamma", f"must be > 0, got {self.gamma}")
        check(0.0 <= self.sparsity < 1.0, "sparsity", f"must be in [0, 1), got {self.sparsity}")
        check(self.fisher_batches >= 1, "fisher_batches", f"must be >= 1, got {self.fisher_batches}")


def fisher_of(strategy: CLUStrategy, ids: Tensor, n_batches: int) -> Mask:
    """Diagonal empirical Fisher on up to ``n_batches`` mini-batches of 64 of ``ids``."""
    batches = [strategy.batch(b) for b in islice(strategy.minibatches(ids, 64), n_batches)]
    return fisher_diagonal(strategy.model, batches)


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


class ForgetTerm:
    """The unlearn term for one request: ``a_t · p_U · M_U ⊙ ∇ L_U`` on D_U batches."""

    def __init__(self, strategy: CLUStrategy, request: UnlearnRequest, cfg: ForgetConfig, p_u: float = 1.0) -> None:
        self.s = strategy
        self.cfg = cfg
        self.p_u = p_u
        self.ids = torch.tensor(request.sample_ids, dtype=torch.long)
        self.batches = strategy.cycle(self.ids)
        self.lam = cfg.lam if cfg.adaptive_weights else 0.0
        self.mask = self._mask()
        self.targets = self._targets(request) if cfg.forget_loss == "kl_proxy" else None

    # -- set-up, once per request ------------------------------------------------------------------

    def _mask(self) -> Mask | None:
        s, cfg = self.s, self.cfg
        if cfg.mask == "none":
            return None
        f_u = fisher_of(s, self.ids, cfg.fisher_batches)
        if cfg.mask == "topk":
            return topk_grad_mask({n: f.sqrt() for n, f in f_u.items()}, cfg.sparsity)
        buffer_ids = torch.tensor(s.buffer.ids(), dtype=torch.long)
        if not len(buffer_ids):
            return None  # nothing to balance against: every parameter may move
        return balanced_mask(f_u, fisher_of(s, buffer_ids, cfg.fisher_batches), cfg.gamma)

    @torch.no_grad()
    def _targets(self, request: UnlearnRequest) -> Tensor:
        """q for every id of D_U (row i ↔ ``self.ids[i]``), from the model before any step."""
        s = self.s
        s.model.eval()
        x, y = s.batch(self.ids)
        logits = s.logits(x, y)
        s.model.train()
        if request.kind == "random_sample":
            val = [i for i in s.ctx.data.val_ids.tolist() if int(s.ctx.data.train_labels[i]) in s.known_classes]
            s.model.eval()
            vx, vy = s.batch(torch.tensor(val, dtype=torch.long))
            temperature = calibrate_temperature(logits, s.logits(vx, vy))
            s.model.train()
            return tempered_target(logits, temperature)
        if s.ctx.task_aware:
            # The oracle never trained this task's head rows (masked logits): it answers its samples with
            # nearly uniform outputs over the task. Zeroed rows give exactly that; q is uniform over the task.
            silence_head_rows(s.model, s.optimizer, request.target_classes)
            own = (logits > -1e3).to(logits.dtype)
            return own / own.sum(1, keepdim=True)
        seen = sorted(s.known_classes | set(request.target_classes))
        return remove_classes_target(torch.softmax(logits, 1), request.target_classes, seen)

    # -- per iteration --------------------------------------------------------------------------------

    def loss(self) -> Tensor:
        """L_U on the next D_U batch: KL(q ‖ p) descent, or the adaptive weighted ascent."""
        idx = next(self.batches)
        x, y = self.s.batch(idx)
        logits = self.s.logits(x, y)
        if self.targets is None:
            return weighted_ascent_loss(logits, y, self.lam)
        rows = torch.searchsorted(self.ids, idx)  # ids are sorted
        return kl_proxy_loss(logits, self.targets[rows].to(logits.device))

    def term(self, t: int, total: int) -> FastTerm:
        """The fast-step term at iteration ``t`` of ``total``: coefficient a_t · p_U, mask M_U."""
        return FastTerm(self.loss, self.mask, cosine_coefficient(self.cfg.alpha_u, t, total) * self.p_u)

    @torch.no_grad()
    def looks_unseen(self) -> bool:
        """Early-stop rule: the forget set's mean CE has reached the validation data's."""
        s = self.s
        val = [i for i in s.ctx.data.val_ids.tolist() if int(s.ctx.data.train_labels[i]) in s.known_classes]
        if not val:
            return False
        s.model.eval()
        fx, fy = s.batch(self.ids)
        vx, vy = s.batch(torch.tensor(val, dtype=torch.long))
        done = float(cross_entropy(s.logits(fx, fy), fy)) >= float(cross_entropy(s.logits(vx, vy), vy))
        s.model.train()
        return done


def unlearn_only(strategy: CLUStrategy, term: ForgetTerm, preserve: Callable[[], Tensor | None]) -> int:
    """An unlearn-only request (§6): T iterations, a fast (forget) step every ``forget_freq``-th, a slow
    (``preserve``) step every one; with ``early_stop`` it ends once the forget set looks unseen."""
    cfg = term.cfg
    T, k = cfg.unlearn_iters, cfg.forget_freq
    return strategy.unlearn_phase(
        T,
        cfg.unlearn_lr,
        lambda t: [term.term(t, T)] if t % k == 0 else [],
        preserve,
        clip=cfg.clip,
        order=cfg.order,
        stop=(lambda t: t % k == 0 and term.looks_unseen()) if cfg.early_stop else None,
    )
