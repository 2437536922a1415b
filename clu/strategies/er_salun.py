"""``er_salun``: replay; on a request, purge, then SalUn — random labels under a gradient-saliency mask."""

from __future__ import annotations

from typing import Iterator

import torch

from clu.events import UnlearnRequest
from clu.strategies.configs import ERSalUnConfig
from clu.strategies.er_rl import ERRL
from clu.update import FastTerm, cross_entropy, salun_mask


class ERSalUn(ERRL):
    name = "er_salun"
    cfg: ERSalUnConfig  # type: ignore[assignment]

    def forget_losses(self, ids: torch.Tensor) -> Iterator[torch.Tensor]:
        """CE of each forget mini-batch (of 256), weighted by its share of D_U: they sum to the mean CE."""
        for b in self.minibatches(ids, 256):
            x, y = self.batch(b)
            yield cross_entropy(self.logits(x, y), y) * len(b) / len(ids)

    def forget(self, request: UnlearnRequest) -> None:
        ids = torch.tensor(request.sample_ids)
        mask = salun_mask(self.model, self.forget_losses(ids), self.cfg.sparsity)
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
