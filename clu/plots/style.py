"""The look of every figure: sizes for a two-column paper, and each strategy's colour, marker and line.

A strategy's colour and marker come from a stable hash (CRC-32) of its registry name (or of its label when
the name is unknown), so the same strategy looks the same in every run and sweep; two strategies of one
figure whose hashes meet on a colour are kept apart deterministically, whatever order they come in. The
oracle is always black and dashed, its twin grey and dotted.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from clu.results import ORACLE, TWIN

WIDTH_IN = 7.0
DPI = 150
STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.3,
    "lines.markersize": 4.5,
    "legend.frameon": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
    "#636363", "#e7ba52",
)
"""Tab10 without grey, then darker and warmer tones; none is black (the oracle's)."""
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "p", "*")


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str
    linestyle: str = "-"
    linewidth: float = 1.3
    zorder: float = 2.0


ORACLE_STYLE = Style("black", "o", "--", 1.6, 3.0)
TWIN_STYLE = Style("#7f7f7f", "o", ":", 1.3, 2.5)
"""The oracle's twin (the noise floor): grey and dotted, a cousin of the oracle's look."""


def is_oracle(label: str, names: Mapping[str, str]) -> bool:
    """The oracle's label (its twin, also a ``retrain``, is not the oracle)."""
    return label == ORACLE or (names.get(label) == ORACLE and label != TWIN)


def strategy_style(labels: Sequence[str], names: Mapping[str, str] | None = None) -> dict[str, Style]:
    """Colour, marker and line style of each label; the oracle black and dashed, the twin grey and dotted.

    ``names`` maps a label to its registry strategy name (from summary.json), so that e.g. a label
    ``ugclu-fast`` of strategy ``ugclu`` looks like ugclu when no other label of the figure already does.
    """
    names = names or {}
    out = {lab: ORACLE_STYLE for lab in labels if is_oracle(lab, names)}
    out.update({lab: TWIN_STYLE for lab in labels if lab == TWIN})
    others = sorted({lab for lab in labels if lab not in out}, key=lambda lab: (names.get(lab, lab), lab))
    slot = {lab: zlib.crc32(names.get(lab, lab).encode()) for lab in others}
    colour: dict[str, str] = {}
    for lab in others:  # first, every label that finds its own colour free keeps it
        c = PALETTE[slot[lab] % len(PALETTE)]
        if c not in colour.values():
            colour[lab] = c
    for lab in others:  # then the others take the next free one after it
        if lab not in colour:
            ring = [PALETTE[(slot[lab] + k) % len(PALETTE)] for k in range(len(PALETTE))]
            colour[lab] = next((c for c in ring if c not in colour.values()), ring[0])  # ring[0]: palette used up
    for lab in others:
        out[lab] = Style(colour[lab], MARKERS[slot[lab] % len(MARKERS)])
    return out
