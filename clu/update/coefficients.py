"""Coefficients of the unified update (DESIGN §6): the decaying unlearn coefficient ``a_t``,
the set-size coefficients ``p_L, p_U, p_R`` and the optional early-stop rule for the ascent."""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["cosine_coefficient", "set_size_coefficients", "should_stop_early"]


def cosine_coefficient(alpha: float, t: int, T: int) -> float:
    """Cosine-decayed coefficient ``alpha * (1 + cos(pi * t / T)) / 2``: ``alpha`` at ``t = 0``,
    ``alpha / 2`` at ``t = T / 2``, ``0`` at ``t = T``."""
    if T <= 0:
        raise ValueError(f"T must be > 0, got {T}")
    return alpha * (1.0 + math.cos(math.pi * t / T)) / 2.0


def set_size_coefficients(
    n_learn: int,
    n_unlearn: int,
    n_retain: int,
    mode: Literal["constant", "proportional"] = "constant",
) -> tuple[float, float, float]:
    """``(p_L, p_U, p_R)``: all ``1.0`` for ``"constant"``; for ``"proportional"`` each set's share
    ``n_x / (n_learn + n_unlearn + n_retain)`` (an empty set gets ``0.0``)."""
    sizes = (n_learn, n_unlearn, n_retain)
    if any(n < 0 for n in sizes):
        raise ValueError(f"set sizes must be >= 0, got {sizes}")
    if mode == "constant":
        return (1.0, 1.0, 1.0)
    if mode == "proportional":
        total = sum(sizes)
        if total == 0:
            return (0.0, 0.0, 0.0)
        p_l, p_u, p_r = (n / total for n in sizes)
        return (p_l, p_u, p_r)
    raise ValueError(f"mode must be 'constant' or 'proportional', got {mode!r}")


def should_stop_early(forget_loss: float, reference_loss: float) -> bool:
    """Stop rule for the ascent: ``True`` once the forget set's mean loss reaches the reference
    (held-out validation) loss, i.e. the forget set looks like unseen data. NaN gives ``False``."""
    return forget_loss >= reference_loss
