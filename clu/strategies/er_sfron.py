"""``er_sfron``: replay; on a request, purge, then the §6 unlearn-only fast–slow step (SFR-on).

A fast step of adaptive weighted gradient ascent under the balanced mask every ``forget_freq``
iterations, a slow CE step on the buffer every iteration (DESIGN §6 reference form).
"""

from __future__ import annotations

from clu.events import UnlearnRequest
from clu.strategies.er import ReplayLearner
from clu.strategies.forgetting import ForgetConfig, ForgetTerm
from clu.strategies.registry import register_strategy


@register_strategy("er_sfron", "replay; purge, then the unlearn-only fast-slow step (weighted ascent, balanced mask)")
class ERSFRon(ReplayLearner):
    config_class = ForgetConfig
    cfg: ForgetConfig

    def forget(self, request: UnlearnRequest, *, then_learn: bool) -> None:
        term = ForgetTerm(self, request, self.cfg)
        T, k = self.cfg.unlearn_iters, self.cfg.forget_freq
        self.unlearn_phase(
            T,
            self.cfg.unlearn_lr,
            lambda t: [term.term(t, T)] if t % k == 0 else [],
            lambda: self.ce(self.buffer_batch()),
            clip=self.cfg.clip,
            order=self.cfg.order,
            stop=(lambda t: t % k == 0 and term.looks_unseen()) if self.cfg.early_stop else None,
        )
