"""Forget-set selection for ``random_sample`` requests: which ``n`` of the retained samples a request names.

Pure functions of arrays and a seeded generator (no model is involved, so the scenario generator stays pure):

- ``uniform``: ``n`` samples drawn uniformly without replacement (the original behaviour).
- ``atypical``: the ``n`` samples whose :data:`NEIGHBOURS` nearest retained neighbours most often carry
  another label (the ones a model can only fit by memorising them); ties in that count are broken by a
  seeded random order. Distances are Euclidean on the flattened train inputs, or, above
  :data:`PROJECTED_DIMS` features, on a fixed seeded Gaussian random projection of them.
- ``concentrated``: ``n`` samples from as few classes as possible: the smallest number ``m`` of classes that
  can hold ``n``; the ``m`` classes are drawn one at a time, seeded and uniformly among those that keep the
  rest of the request coverable by the remaining slots; the ``n`` samples are drawn uniformly from their
  retained samples (every chosen class gives some, as no ``m - 1`` classes could hold ``n``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Selection = Literal["uniform", "atypical", "concentrated"]
SELECTIONS: tuple[str, ...] = ("uniform", "atypical", "concentrated")

NEIGHBOURS = 10
"""k of the atypicality rule: neighbours compared with a sample's label."""
PROJECTED_DIMS = 64
"""Inputs with more features are projected to this many before the neighbour search."""
PROJECTION_SEED = 0x0A7C
"""Fixed seed of the random projection: atypicality is a property of the data, not of the scenario seed."""
_GRID = 2**16
"""Embedded coordinates are rounded to integers in [-_GRID, _GRID], so that every squared distance is an
integer computed exactly in float64 (whatever the BLAS summation order): neighbours never depend on the machine."""
_CHUNK = 512


def uniform(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` ids of ``pool`` drawn uniformly without replacement, sorted."""
    return np.sort(rng.choice(pool, size=n, replace=False))


def embed(features: np.ndarray) -> np.ndarray:
    """Integer-valued float64 coordinates of the samples (rows) used for the neighbour search."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if x.shape[1] > PROJECTED_DIMS:
        proj = np.random.default_rng(PROJECTION_SEED).standard_normal((x.shape[1], PROJECTED_DIMS))
        x = x @ proj
    scale = np.abs(x).max() if x.size else 0.0
    return np.rint(x * (_GRID / scale)) if scale > 0 else np.zeros_like(x)


def nearest_neighbours(coords: np.ndarray, k: int) -> np.ndarray:
    """Row i: the ``k`` nearest other rows of ``coords`` (ties in distance go to the lower index)."""
    n = len(coords)
    if n > 2**22:
        raise ValueError(f"the neighbour search handles up to {2**22} samples, got {n}")
    sq = (coords * coords).sum(axis=1)
    out = np.empty((n, k), dtype=np.int64)
    cols = np.arange(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        d2 = (sq[rows, None] + sq[None, :] - 2.0 * (coords[rows] @ coords.T)).astype(np.int64)
        key = d2 * n + cols  # unique keys: distance first, then index
        key[np.arange(key.shape[0]), cols[rows]] = np.iinfo(np.int64).max  # not its own neighbour
        near = np.argpartition(key, k - 1, axis=1)[:, :k]
        out[rows] = np.take_along_axis(near, np.argsort(np.take_along_axis(key, near, axis=1), axis=1), axis=1)
    return out


def atypicality(features: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Per sample: how many of its ``k`` nearest neighbours (within these samples) carry another label."""
    labels = np.asarray(labels)
    k = min(k, len(labels) - 1)
    if k < 1:
        return np.zeros(len(labels), dtype=np.int64)
    near = nearest_neighbours(embed(features), k)
    return (labels[near] != labels[:, None]).sum(axis=1)


def atypical(pool: np.ndarray, features: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The ``n`` most atypical ids of ``pool`` (``features``/``labels`` are the pool's rows), sorted."""
    score = atypicality(features, labels)
    order = np.lexsort((rng.permutation(len(pool)), -score))
    return np.sort(pool[order[:n]])


def fewest_classes(counts: np.ndarray, n: int) -> int:
    """The smallest number of classes (with these sample counts) that together hold ``n`` samples."""
    total = np.cumsum(np.sort(np.asarray(counts))[::-1])
    if n > (total[-1] if len(total) else 0):
        raise ValueError(f"{n} samples do not fit in classes holding {int(total[-1]) if len(total) else 0}")
    return int(np.searchsorted(total, n) + 1)


def concentrated(pool: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` ids of ``pool`` (``labels`` are the pool's labels) from as few classes as possible, sorted."""
    classes, counts = np.unique(labels, return_counts=True)
    slots = fewest_classes(counts, n)
    size = dict(zip(classes.tolist(), counts.tolist()))
    chosen: list[int] = []
    need = n
    while slots > 0:
        free = [c for c in size if c not in chosen]

        def coverable(c: int) -> bool:
            best = sorted((size[o] for o in free if o != c), reverse=True)[: slots - 1]
            return size[c] + sum(best) >= need

        c = int(rng.choice([c for c in free if coverable(c)]))
        chosen.append(c)
        need -= size[c]
        slots -= 1
    return np.sort(rng.choice(pool[np.isin(labels, chosen)], size=n, replace=False))
