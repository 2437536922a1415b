"""``er_salun``: replay; on a request, purge, then SalUn — random labels under a gradient-saliency mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clu.config import check
from clu.events import UnlearnRequest
from clu.strategies.base import UnlearnConfig
from clu.strategies.er_rl import ERRL
from clu.strategies.registry import register_strategy
from clu.update import FastTerm, cross_entropy, topk_grad_mask


@dataclass(frozen=True)
class ERSalUnConfig(UnlearnConfig):
    """SalUn: the mask keeps the (1 - sparsity) most salient weights for the forget loss."""

    sparsity: float = 0.5
    """Fraction of weights frozen (lowest |∇ CE(D_U)|)."""

    def validate(self) -> None:
        super().validate()
        check(0.0 <= self.sparsity < 1.0, "sparsity", f"must be in [0, 1), got {self.sparsity}")


@register_strategy("er_salun", "replay; purge, then SalUn (random labels under a top-k saliency mask)")
class ERSalUn(ERRL):
    config_class = ERSalUnConfig
    cfg: ERSalUnConfig

    def saliency_mask(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Top-k mask of |∇ CE| on the forget set (accumulated over its mini-batches)."""
        params = dict((n, p) for n, p in self.model.named_parameters() if p.requires_grad)
        grads = {n: torch.zeros_like(p) for n, p in params.items()}
        for b in self.minibatches(ids, 256):
            x, y = self.batch(b)
            loss = cross_entropy(self.logits(x, y), y) * len(b) / len(ids)
            for (n, _), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()))):
                grads[n] += g
        return topk_grad_mask(grads, self.cfg.sparsity)

    def forget(self, request: UnlearnRequest, *, then_learn: bool) -> None:
        ids = torch.tensor(request.sample_ids)
        mask = self.saliency_mask(ids)
        forget = self.cycle(ids)
        self.unlearn_phase(
            self.cfg.unlearn_iters,
            self.cfg.unlearn_lr,
            lambda t: [
                FastTerm(lambda: self.relabel_loss(forget), mask),
                FastTerm(lambda: self.ce(self.buffer_batch()), mask),
            ],
            None,
            clip=self.cfg.clip,
        )
