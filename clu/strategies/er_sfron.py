"""``er_sfron``: replay; on a request, purge, then the §6 unlearn-only fast–slow step (SFR-on).

A fast step of adaptive weighted gradient ascent under the balanced mask every ``forget_freq``
iterations, a slow CE step on the buffer every iteration (DESIGN §6 reference form): ugclu's unlearn
term, on the ER learner.
"""

from __future__ import annotations

from clu.events import UnlearnRequest
from clu.strategies.configs import ForgetConfig
from clu.strategies.er import ReplayLearner
from clu.strategies.forgetting import unlearn_only
from clu.strategies.ugclu import unlearn_term


class ERSFRon(ReplayLearner):
    name = "er_sfron"
    cfg: ForgetConfig

    def forget(self, request: UnlearnRequest) -> None:
        unlearn_only(self, unlearn_term(self, request, self.cfg), self.cfg, lambda: self.ce(self.buffer_batch()))
