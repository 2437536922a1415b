"""Per-event margins of one unit (one model trajectory): what the joint post-processing needs, as a file.

At every event e a unit records, on the attack set of e (:func:`clu.evaluation.attack_set`: the members
D_U*, then the non-members), the margin φ of every sample (:func:`clu.mia.margins`), at request events also
φ under the model just before the request, and the softmax on the members (KL to the oracle). One
compressed ``.npz`` per unit, keys ``phi_<e>``, ``before_<e>``, ``probs_<e>``, ``n_members_<e>``. No sample
ids are stored (the audit forbids forgotten ids in artefacts): the sets are re-derived from events.jsonl.

Import-light: numpy only.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

__all__ = ["EventMargins", "margins_bytes", "parse_margins"]


@dataclass(frozen=True)
class EventMargins:
    """One unit's margins at one event."""

    phi: np.ndarray = field(repr=False)
    """φ on the attack set: the members (D_U*, sorted ids) then the non-members (sorted test indices)."""
    n_members: int
    """How many of ``phi`` are members."""
    probs: np.ndarray = field(repr=False)
    """Softmax on the members (n_members × classes), for KL to the oracle."""
    before: np.ndarray | None = field(repr=False, default=None)
    """Request events: φ on the same sets under the model just before the request; None otherwise."""


_KEY = re.compile(r"(phi|before|probs|n_members)_(\d+)")


def margins_bytes(margins: Mapping[int, EventMargins]) -> bytes:
    """The ``.npz`` content (compressed) of a unit's margins, by event step."""
    arrays: dict[str, np.ndarray] = {}
    for step, m in sorted(margins.items()):
        arrays[f"phi_{step}"] = np.asarray(m.phi, dtype=np.float64)
        arrays[f"probs_{step}"] = np.asarray(m.probs, dtype=np.float64)
        arrays[f"n_members_{step}"] = np.asarray(m.n_members, dtype=np.int64)
        if m.before is not None:
            arrays[f"before_{step}"] = np.asarray(m.before, dtype=np.float64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def parse_margins(data: bytes) -> dict[int, EventMargins]:
    """The inverse of :func:`margins_bytes`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        parts: dict[int, dict[str, np.ndarray]] = {}
        for key in z.files:
            match = _KEY.fullmatch(key)
            if match is None:
                raise ValueError(f"unexpected array {key!r} in a margins file")
            parts.setdefault(int(match.group(2)), {})[match.group(1)] = z[key]
    return {
        step: EventMargins(p["phi"], int(p["n_members"]), p["probs"], p.get("before"))
        for step, p in sorted(parts.items())
    }
