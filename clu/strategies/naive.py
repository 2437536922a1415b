"""``naive``: fine-tune on each learn task; ignore unlearn requests (the lower bound)."""

from __future__ import annotations

from clu.strategies.base import CLUStrategy


class Naive(CLUStrategy):
    """Learn: one SGD step per learn batch (the template's default). Unlearn: nothing."""

    name = "naive"
