"""``er_salun``: replay; on a request, purge, then SalUn — random labels under a gradient-saliency mask."""

from __future__ import annotations

import torch

from clu.events import UnlearnRequest
from clu.strategies.configs import ERSalUnConfig
from clu.strategies.er_rl import ERRL
from clu.update import FastTerm


class ERSalUn(ERRL):
    name = "er_salun"
    cfg: ERSalUnConfig  # type: ignore[assignment]

    def forget(self, request: UnlearnRequest) -> None:
        ids = torch.tensor(request.sample_ids)
        mask = self.saliency(ids, self.cfg.sparsity)
        forget = self.cycle(ids)
        self.unlearn_phase(
            self.cfg.unlearn_iters,
            self.cfg.unlearn_lr,
            lambda t: [
                FastTerm(lambda: self.relabel_loss(forget), mask),
                FastTerm(self.preserve, mask),
            ],
            None,
            clip=self.cfg.clip,
        )
