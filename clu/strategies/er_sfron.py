"""``er_sfron``: replay; on a request, purge, then the §6 unlearn-only fast–slow step (SFR-on).

A fast step of adaptive weighted gradient ascent under the balanced mask every ``forget_freq``
iterations, a slow CE step on the buffer every iteration (DESIGN §6 reference form).
"""

from __future__ import annotations

from clu.events import UnlearnRequest
from clu.strategies.er import ReplayLearner
from clu.strategies.forgetting import ForgetConfig, ForgetTerm, unlearn_only
from clu.strategies.registry import register_strategy


@register_strategy("er_sfron", "replay; purge, then the unlearn-only fast-slow step (weighted ascent, balanced mask)")
class ERSFRon(ReplayLearner):
    config_class = ForgetConfig
    cfg: ForgetConfig

    def forget(self, request: UnlearnRequest, *, then_learn: bool) -> None:
        unlearn_only(self, ForgetTerm(self, request, self.cfg), lambda: self.ce(self.buffer_batch()))
