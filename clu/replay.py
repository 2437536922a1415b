"""The replay buffer: a set of sample ids (the data stays in the id-addressed dataset).

Unlearn requests call :meth:`ReplayBuffer.remove` before any further step, so the buffer never holds a
forgotten id. ``class_balanced`` keeps an equal share per class; ``reservoir`` is classic reservoir sampling.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

Policy = Literal["class_balanced", "reservoir"]


class ReplayBuffer:
    def __init__(self, capacity: int, policy: Policy = "class_balanced") -> None:
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.policy: Policy = policy
        self._labels: dict[int, int] = {}  # id -> label, insertion-ordered
        self._seen = 0  # reservoir: samples offered so far

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, sample_id: int) -> bool:
        return int(sample_id) in self._labels

    def ids(self) -> tuple[int, ...]:
        """The stored ids, sorted."""
        return tuple(sorted(self._labels))

    def add(self, ids: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
        """Offer new samples; which are kept depends on the policy (deterministic for ``rng``)."""
        ids, labels = np.asarray(ids, dtype=np.int64), np.asarray(labels, dtype=np.int64)
        if self.capacity == 0 or len(ids) == 0:
            return
        if self.policy == "reservoir":
            self._add_reservoir(ids, labels, rng)
        else:
            self._add_balanced(ids, labels, rng)

    def _add_reservoir(self, ids: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
        slots = list(self._labels.items())
        for i, y in zip(ids.tolist(), labels.tolist()):
            self._seen += 1
            if len(slots) < self.capacity:
                slots.append((i, y))
            else:
                j = int(rng.integers(self._seen))
                if j < self.capacity:
                    slots[j] = (i, y)
        self._labels = dict(slots)

    def _add_balanced(self, ids: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
        pools: dict[int, list[int]] = {}
        for i, y in self._labels.items():
            pools.setdefault(y, []).append(i)
        for c in np.unique(labels):
            pools.setdefault(int(c), []).extend(ids[labels == c].tolist())
        kept: dict[int, int] = {}
        for c, q in _water_fill({c: len(p) for c, p in pools.items()}, self.capacity).items():
            pool = np.array(sorted(pools[c]), dtype=np.int64)
            if len(pool) > q:
                pool = np.sort(rng.choice(pool, size=q, replace=False))
            kept.update((int(i), c) for i in pool)
        self._labels = kept

    def remove(self, ids: Any) -> list[int]:
        """Delete ``ids`` (those present); returns the ids actually removed."""
        removed = [int(i) for i in np.asarray(ids).ravel().tolist() if int(i) in self._labels]
        for i in removed:
            del self._labels[i]
        return removed

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` ids drawn uniformly with replacement when n exceeds the buffer, else without."""
        ids = torch.tensor(self.ids(), dtype=torch.long)
        if len(ids) == 0 or n <= 0:
            return ids[:0]
        if n >= len(ids):
            return ids[torch.randint(len(ids), (n,), generator=generator)]
        return ids[torch.randperm(len(ids), generator=generator)[:n]]

    def state_dict(self) -> dict[str, Any]:
        return {"ids": list(self._labels), "labels": list(self._labels.values()), "seen": self._seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._labels = dict(zip((int(i) for i in state["ids"]), (int(y) for y in state["labels"])))
        self._seen = int(state["seen"])


def _water_fill(sizes: dict[int, int], capacity: int) -> dict[int, int]:
    """Equal shares per class (the lowest class ids get the remainder); a class with fewer samples than
    its share keeps them all and its spare slots go to the others."""
    quota: dict[int, int] = {}
    open_ = sorted(sizes)
    left = capacity
    while open_:
        share, extra = divmod(left, len(open_))
        small = [c for c in open_ if sizes[c] <= share]
        if not small:
            for k, c in enumerate(open_):
                quota[c] = share + (1 if k < extra else 0)
            break
        for c in small:
            quota[c] = sizes[c]
            left -= sizes[c]
        open_ = [c for c in open_ if c not in small]
    return quota
