"""``er_ft``: replay; on a request, purge, then fine-tune on the buffer (catastrophic forgetting as unlearning)."""

from __future__ import annotations

from dataclasses import dataclass

from clu.events import UnlearnRequest
from clu.strategies.base import UnlearnConfig
from clu.strategies.er import ReplayLearner
from clu.strategies.registry import register_strategy
from clu.update import FastTerm


@dataclass(frozen=True)
class ERFTConfig(UnlearnConfig):
    """Fine-tuning on the retained buffer for ``unlearn_iters`` steps."""


@register_strategy("er_ft", "replay; purge, then fine-tune on the buffer")
class ERFT(ReplayLearner):
    config_class = ERFTConfig
    cfg: ERFTConfig

    def forget(self, request: UnlearnRequest, *, then_learn: bool) -> None:
        if not len(self.buffer):
            return
        self.unlearn_phase(
            self.cfg.unlearn_iters,
            self.cfg.unlearn_lr,
            lambda t: [FastTerm(lambda: self.ce(self.buffer_batch()))],
            None,
            clip=self.cfg.clip,
        )
