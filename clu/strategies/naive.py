"""``naive``: fine-tune on each learn task; ignore unlearn requests (the lower bound)."""

from __future__ import annotations

from clu.strategies.base import CLUStrategy
from clu.strategies.registry import register_strategy


@register_strategy("naive", "fine-tune on new data only; requests are ignored")
class Naive(CLUStrategy):
    """Learn: one SGD step per learn batch (the template's default). Unlearn: nothing."""
