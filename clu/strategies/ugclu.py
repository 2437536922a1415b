"""``ugclu``: the unified gradient-based CLU method (DESIGN §6).

Every iteration is a fast–slow step. Fast: the learn term p_L · M_L ⊙ ∇CE(D_L) and, when a request is
being served, the unlearn term a_t · p_U · M_U ⊙ ∇L_U (clipped, masked). Slow: p_R · ∇CE(buffer) taken at
the post-fast weights, which to first order applies (I + ηH_R)^-1 to the fast direction.
Learn tasks run the scenario's epochs; an unlearn-only request runs T iterations with a fast step every
``forget_freq``; a request attached to a learn task rides along that task's iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from clu.config import check
from clu.events import UnlearnRequest
from clu.strategies.base import CLUStrategy
from clu.strategies.forgetting import ForgetConfig, ForgetTerm, fisher_of, unlearn_only
from clu.strategies.registry import register_strategy
from clu.update import FastTerm, balanced_mask, set_size_coefficients


@dataclass(frozen=True)
class UGCLUConfig(ForgetConfig):
    """ForgetConfig plus the learn-side mask."""

    learn_mask: bool = False
    """Mask the learn term with M_L = 1[(F_L + ε) / (F_R + ε) ≥ γ_L] (off by default)."""
    gamma_l: float = 1.0
    """Threshold γ_L of the learn mask."""

    def validate(self) -> None:
        super().validate()
        check(self.gamma_l > 0, "gamma_l", f"must be > 0, got {self.gamma_l}")


@register_strategy("ugclu", "unified fast-slow CLU: learn + unlearn + preserve under a balanced saliency mask")
class UGCLU(CLUStrategy):
    config_class = UGCLUConfig
    cfg: UGCLUConfig
    uses_buffer = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pending: ForgetTerm | None = None
        """The request attached to the learn task being trained, if any."""
        self.p_l = self.p_r = 1.0
        self.learn_mask: dict[str, Tensor] | None = None
        self.t = self.total = 0

    # -- coefficients and masks, at the start of each learn task or request ----------------------------

    def coefficients(self, n_learn: int, n_unlearn: int) -> tuple[float, float, float]:
        return set_size_coefficients(n_learn, n_unlearn, len(self.buffer), self.cfg.coefficients)

    def _before_training_exp(self, **kwargs: Any) -> None:
        super()._before_training_exp(**kwargs)
        n = len(self._train_ids)
        self.t, self.total = 0, self.train_epochs * math.ceil(n / self.train_mb_size)
        n_u = len(self.pending.ids) if self.pending is not None else 0
        self.p_l, p_u, self.p_r = self.coefficients(n, n_u)
        if self.pending is not None:
            self.pending.p_u = p_u
        self.learn_mask = None
        if self.cfg.learn_mask and len(self.buffer):
            f_l = fisher_of(self, self._train_ids, self.cfg.fisher_batches)
            f_r = fisher_of(self, torch.tensor(self.buffer.ids()), self.cfg.fisher_batches)
            self.learn_mask = balanced_mask(f_l, f_r, self.cfg.gamma_l)

    # -- the recipe ------------------------------------------------------------------------------------

    def preserve(self) -> Tensor | None:
        """The slow step's loss: p_R · CE on a buffer batch (None when the buffer is empty)."""
        loss = self.ce(self.buffer_batch())
        return None if loss is None else self.p_r * loss

    def learn_iteration(self, x: Tensor, y: Tensor) -> None:
        fast = [FastTerm(lambda: self.learn_loss(x, y), self.learn_mask, self.p_l)]
        if self.pending is not None:
            fast.append(self.pending.term(self.t, self.total))
        self.step(fast, self.preserve, clip=self.cfg.clip, order=self.cfg.order)
        self.t += 1

    def _after_training_exp(self, **kwargs: Any) -> None:
        self.pending = None
        super()._after_training_exp(**kwargs)

    def forget(self, request: UnlearnRequest, *, then_learn: bool) -> None:
        _, p_u, self.p_r = self.coefficients(0, len(request.sample_ids))
        term = ForgetTerm(self, request, self.cfg, p_u)
        if then_learn:  # the learn task of this step carries the unlearn term
            self.pending = term
            return
        unlearn_only(self, term, self.preserve)
