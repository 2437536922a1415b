"""``er_sfron``: replay; on a request, purge, then SFR-on's unlearn-only fast–slow step (DESIGN §6).

A fast step of adaptive weighted gradient ascent under the balanced mask every ``forget_freq``
iterations, a slow CE step on the buffer every iteration (the reference form; every default of
:class:`~clu.strategies.configs.ERSFRonConfig` is SFR-on's): ugclu's unlearn term, on the replay learner.
"""

from __future__ import annotations

from clu.events import UnlearnRequest
from clu.strategies.configs import ERSFRonConfig
from clu.strategies.er import ReplayLearner
from clu.strategies.forgetting import unlearn_only
from clu.strategies.ugclu import unlearn_term


class ERSFRon(ReplayLearner):
    name = "er_sfron"
    cfg: ERSFRonConfig

    def forget(self, request: UnlearnRequest) -> None:
        unlearn_only(self, unlearn_term(self, request, self.cfg), self.cfg, self.preserve)
