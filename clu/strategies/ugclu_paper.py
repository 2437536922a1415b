"""``ugclu_paper``: UG-CLU's update as the papers describe it (DESIGN §7, §13).

The same recipe as :mod:`clu.strategies.ugclu` (replay learner; requests: fast–slow unlearn + preserve under
the balanced mask, attached requests on the spread schedule), with the papers' forget objective: SFR-on's
adaptive weighted gradient ascent with inverse-loss weights (``forget_loss = "ga_weighted"``), at SFR-on's
settings scaled to the CPU data sets (:class:`~clu.strategies.configs.UGCLUPaperConfig`; the scalings are
written in ``strategies/ugclu-paper.toml``). Not tuned: it is the published reconstruction. ``ugclu`` is this
project's KL-to-proxy variant.
"""

from __future__ import annotations

from clu.strategies.configs import UGCLUPaperConfig
from clu.strategies.ugclu import UGCLU


class UGCLUPaper(UGCLU):
    name = "ugclu_paper"
    cfg: UGCLUPaperConfig
