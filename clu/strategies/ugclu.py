"""``ugclu``: the unified gradient-based CLU method (DESIGN §6).

A learn iteration with no request attached is the replay learner's (:class:`~clu.strategies.er.ReplayLearner`,
``learner``): the learn term p_L · M_L ⊙ ∇CE(D_L) and the buffer term p_R · ∇CE(buffer), unclipped; with
the default p_L = p_R = 1 and no learn mask it is bit-identical to ``er``'s. A request iteration is a
fast–slow step (``order``). Fast: the unlearn term a_t · p_U · M_U ⊙ ∇L_U (with the learn term when the
request is attached to a learn task), clipped, masked. Slow: p_R · ∇CE(buffer) taken at the post-fast
weights, which to first order applies (I + ηH_R)^-1 to the fast direction.
A request alone runs T iterations with a fast step every ``forget_freq``; a request attached to a learn task
gets the same forget steps spread over that task's iterations (rescaled to the learn lr).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from clu.events import LearnTask, UnlearnRequest
from clu.strategies.base import CLUStrategy
from clu.strategies.configs import ForgetConfig, UGCLUConfig
from clu.strategies.er import ReplayLearner
from clu.strategies.forgetting import ForgetTerm, attached_coefficient, forget_mask, proxy_targets, silence_head_rows, unlearn_only
from clu.update import FastTerm, balanced_mask, set_size_coefficients


def unlearn_term(s: CLUStrategy, request: UnlearnRequest, cfg: ForgetConfig, p_u: float = 1.0) -> ForgetTerm:
    """The request's unlearn term, set up after the purge from the model before any step, in this order:
    M_U (Fisher or saliency passes), q (``kl_proxy``), then in the task-aware setting the forgotten task's
    head rows."""
    ids = torch.tensor(request.sample_ids, dtype=torch.long)
    mask = forget_mask(cfg, lambda i: s.fisher(i, cfg.fisher_batches), s.saliency, ids, s.buffer_ids())
    targets = None
    if cfg.forget_loss == "kl_proxy":
        targets = proxy_targets(
            s.eval_logits(ids)[0],
            request,
            known_classes=s.known_classes,
            task_aware=s.ctx.task_aware,
            val_logits=lambda: s.eval_logits(s.known_val_ids())[0],
        )
        if s.ctx.task_aware and request.kind != "random_sample":
            # the oracle never trained the forgotten task's head rows: zeroed, they answer as q does
            silence_head_rows(s.model, s.optimizer, request.target_classes)
    lam = cfg.lam if cfg.adaptive_weights else 0.0
    return ForgetTerm(ids, s.cycle(ids), s.logits_of, mask, targets, lam, cfg.alpha_u, p_u)


class UGCLU(ReplayLearner):
    """Learn: the replay learner on p_L · M_L ⊙ ∇CE(D_L) and p_R · ∇CE(buffer); an attached request adds its
    unlearn term to the fast step (``order``, clipped). A request alone:
    :func:`~clu.strategies.forgetting.unlearn_only` with the same unlearn and slow terms."""

    name = "ugclu"
    cfg: UGCLUConfig

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.forget_term: ForgetTerm | None = None
        """The unlearn term of the request attached to the learn task being trained, if any."""
        self.p_l = self.p_r = 1.0
        self.learn_mask: dict[str, Tensor] | None = None
        self.t = self.total = 0
        """Iteration t of the learn task's total (the attached term's cosine schedule)."""

    def coefficients(self, n_learn: int, n_unlearn: int) -> tuple[float, float, float]:
        return set_size_coefficients(n_learn, n_unlearn, len(self.buffer), self.cfg.coefficients)

    def preserve(self) -> Tensor | None:
        """The slow step's loss: p_R · CE on a buffer batch (None when the buffer is empty)."""
        loss = super().preserve()
        return None if loss is None else self.p_r * loss

    def learn_terms(self, x: Tensor, y: Tensor) -> list[FastTerm]:
        """The learn term p_L · M_L ⊙ ∇CE(D_L batch)."""
        return [FastTerm(lambda: self.learn_loss(x, y), self.learn_mask, self.p_l)]

    # -- a learn task, with the request of the same step riding along --------------------------------

    def learn(self, task: LearnTask, experience: Any, request: UnlearnRequest | None = None) -> None:
        """Purge an attached request and set up its unlearn term (it enters the iterations
        :func:`~clu.strategies.forgetting.attached_coefficient` gives it), then train."""
        if request is not None:
            self.purge(request)
            self.forget_term = unlearn_term(self, request, self.cfg)
        self.train_task(experience)
        self.forget_term = None

    def on_task_start(self, ids: Tensor) -> None:
        """The task's iteration count, p_L, p_U, p_R and (optionally) the learn mask M_L."""
        self.t, self.total = 0, self.train_epochs * math.ceil(len(ids) / self.train_mb_size)
        n_u = len(self.forget_term.ids) if self.forget_term is not None else 0
        self.p_l, p_u, self.p_r = self.coefficients(len(ids), n_u)
        if self.forget_term is not None:
            self.forget_term.p_u = p_u
        self.learn_mask = None
        if self.cfg.learn_mask and len(self.buffer):
            n = self.cfg.fisher_batches
            self.learn_mask = balanced_mask(self.fisher(ids, n), self.fisher(self.buffer_ids(), n), self.cfg.gamma_l)

    def learn_iteration(self, x: Tensor, y: Tensor) -> None:
        """No request attached, or none of its forget steps falls here: the replay learner (``learner``).
        Otherwise a request iteration (``order``, clipped) with the learn and unlearn terms in the fast step."""
        coef = 0.0 if self.forget_term is None else attached_coefficient(self.cfg, self.t, self.total, self.cfg.attached_schedule)
        if coef == 0.0:
            super().learn_iteration(x, y)
        else:
            assert self.forget_term is not None
            unlearn = FastTerm(self.forget_term.loss, self.forget_term.mask, coef * self.forget_term.p_u)
            self.step([*self.learn_terms(x, y), unlearn], self.preserve, clip=self.cfg.clip, order=self.cfg.order)
        self.t += 1

    # -- a request alone -----------------------------------------------------------------------------

    def forget(self, request: UnlearnRequest) -> None:
        _, p_u, self.p_r = self.coefficients(0, len(request.sample_ids))
        unlearn_only(self, unlearn_term(self, request, self.cfg, p_u), self.cfg, self.preserve)
