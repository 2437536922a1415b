"""The error a strategy raises when training diverges (torch-free, so the runner can name it cheaply)."""

from __future__ import annotations


class DivergenceError(RuntimeError):
    """A loss or the weights became NaN or inf: the strategy stops at this event."""
