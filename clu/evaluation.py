"""Evaluate a model after an event: every §8 metric, from the ground truth of the stream.

:class:`StreamState` is what the driver knows (learned, forgotten); :func:`evaluate` runs the model
once over the sets it needs and calls the pure functions of :mod:`clu.metrics` and :mod:`clu.mia`;
:func:`attack_set` and :func:`attack_margins` give what the membership attack and KLoM need; :func:`request_fa` the
FA of each request on its own samples (resurfacing). Everything measured
against other models (gaps, KL, LiRA, KLoM) is joined later from these measurements (:mod:`clu.joint`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from clu import metrics as M
from clu.data.base import Dataset
from clu.events import Step
from clu.margins import EventMargins
from clu.mia import entropy_mia, margins

LogitsFn = Callable[[Tensor, Tensor], Tensor]
"""(x, y) → logits; y is used only for the task-aware head mask (task ids are known at test time)."""


@dataclass
class StreamState:
    """What has been learned and forgotten so far (the driver's ground truth, not the strategy's)."""

    retained_ids: set[int] = field(default_factory=set)
    forgotten_ids: set[int] = field(default_factory=set)
    task_classes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Every task learned so far (task-aware: its classes even after F)."""
    forgotten_classes: set[int] = field(default_factory=set)
    newest_task: int | None = None
    requests: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Every request so far: request id → its sample ids (per-request FA, resurfacing)."""

    def apply(self, step: Step) -> None:
        if step.unlearn is not None:
            ids = set(step.unlearn.sample_ids)
            self.requests[step.unlearn.request_id] = step.unlearn.sample_ids
            self.retained_ids -= ids
            self.forgotten_ids |= ids
            self.forgotten_classes |= set(step.unlearn.target_classes)
        if step.learn is not None:
            ids = set(step.learn.sample_ids)
            self.retained_ids |= ids
            self.forgotten_ids -= ids
            self.forgotten_classes -= set(step.learn.classes)
            self.task_classes[step.learn.task_id] = step.learn.classes
            self.newest_task = step.learn.task_id

    @property
    def retained_classes(self) -> set[int]:
        learned = {c for cs in self.task_classes.values() for c in cs}
        return learned - self.forgotten_classes


@dataclass(frozen=True)
class Outputs:
    """Softmax outputs and labels of one set of samples."""

    probs: np.ndarray
    labels: np.ndarray

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1) if len(self.probs) else np.empty(0, dtype=np.int64)

    def acc(self, mask: np.ndarray | None = None) -> float | None:
        if mask is None:
            return M.accuracy(self.pred, self.labels)
        return M.accuracy(self.pred[mask], self.labels[mask])


@torch.no_grad()
def outputs(logits_fn: LogitsFn, x: Tensor, y: Tensor, data: Dataset, device: torch.device, batch: int = 1024) -> Outputs:
    probs = []
    for i in range(0, len(y), batch):
        xb = data.inputs(x[i : i + batch]).to(device)
        yb = y[i : i + batch].to(device)
        probs.append(torch.softmax(logits_fn(xb, yb).float(), 1).cpu())
    p = torch.cat(probs).numpy() if probs else np.empty((0, data.num_classes), dtype=np.float32)
    return Outputs(p.astype(np.float64), y.numpy())


def attack_set(state: StreamState, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The membership attack's sets at an event: the sorted ids of D_U* (members) and the sorted indices of the
    test samples whose label is a class of those members (non-members); both empty when nothing is forgotten."""
    members = np.asarray(sorted(state.forgotten_ids), dtype=np.int64)
    if not len(members):
        return members, np.empty(0, dtype=np.int64)
    classes = np.unique(data.y_train[torch.from_numpy(members)].numpy())
    return members, np.flatnonzero(np.isin(data.y_test.numpy(), classes)).astype(np.int64)


@torch.no_grad()
def attack_margins(logits_fn: LogitsFn, data: Dataset, members: np.ndarray, nonmembers: np.ndarray,
                   device: torch.device, batch: int = 1024) -> np.ndarray:
    """φ (:func:`clu.mia.margins`) on the members (train ids) then the non-members (test indices)."""
    parts = []
    for xs, ys in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        idx = torch.from_numpy(members if xs is data.x_train else nonmembers)
        for i in range(0, len(idx), batch):
            x, y = xs[idx[i : i + batch]], ys[idx[i : i + batch]]
            logits = logits_fn(data.inputs(x).to(device), y.to(device)).double().cpu().numpy()
            parts.append(margins(logits, y.numpy()))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


def event_margins(logits_fn: LogitsFn, data: Dataset, state: StreamState, probs: np.ndarray,
                  device: torch.device, before: np.ndarray | None = None) -> EventMargins:
    """A unit's margins at an event: φ on the attack set of ``state``, the softmax ``probs`` on D_U*."""
    members, nonmembers = attack_set(state, data)
    return EventMargins(attack_margins(logits_fn, data, members, nonmembers, device), len(members), probs, before)


def _train_outputs(logits_fn: LogitsFn, data: Dataset, ids: set[int], device: torch.device) -> Outputs:
    idx = torch.tensor(sorted(ids), dtype=torch.long)
    return outputs(logits_fn, data.x_train[idx], data.y_train[idx], data, device)


def evaluate(
    logits_fn: LogitsFn,
    data: Dataset,
    state: StreamState,
    step: Step,
    *,
    device: torch.device,
    seed: int,
) -> tuple[dict[str, float | None], dict[int, float | None], np.ndarray]:
    """The model's own per-event metrics, the per-task test accuracies, and the softmax on D_U* (for KL)."""
    test = outputs(logits_fn, data.x_test, data.y_test, data, device)
    retained = _train_outputs(logits_fn, data, state.retained_ids, device)
    forgotten = _train_outputs(logits_fn, data, state.forgotten_ids, device)

    kept = np.isin(test.labels, sorted(state.retained_classes))
    gone = np.isin(test.labels, sorted(state.forgotten_classes))
    newest = state.task_classes.get(state.newest_task, ()) if step.learn is not None else ()
    older = np.isin(test.labels, sorted(state.retained_classes - set(state.task_classes.get(state.newest_task, ()))))

    values: dict[str, float | None] = {
        "TA": test.acc(kept),
        "RA": retained.acc(),
        "FA": forgotten.acc(),
        "FA_test": test.acc(gone) if gone.any() else None,
        "NA": test.acc(np.isin(test.labels, newest)) if newest else None,
        "OA": test.acc(older) if older.any() else None,
    }
    mia = entropy_mia(retained.probs, retained.labels, test.probs[kept], test.labels[kept], forgotten.probs, seed)
    values.update(MIA=mia.member_rate, MIA_attack_acc=mia.attack_acc, MIA_thr=mia.member_rate_thr)
    per_task = {
        t: test.acc(np.isin(test.labels, [c for c in cs if c not in state.forgotten_classes]))
        for t, cs in sorted(state.task_classes.items())
        if any(c not in state.forgotten_classes for c in cs)
    }
    return values, per_task, forgotten.probs


def request_fa(state: StreamState, data: Dataset, probs: np.ndarray) -> dict[int, float | None]:
    """FA of each request so far on its own samples that are still forgotten (None once all are learned again),
    from the softmax ``probs`` on D_U* (sorted ids, as :func:`evaluate` returns it)."""
    ids = np.asarray(sorted(state.forgotten_ids), dtype=np.int64)
    pred = probs.argmax(1) if len(probs) else np.empty(0, dtype=np.int64)
    labels = data.train_labels[ids]
    out: dict[int, float | None] = {}
    for rid, sample_ids in sorted(state.requests.items()):
        mask = np.isin(ids, np.asarray(sample_ids, dtype=np.int64))
        out[rid] = M.accuracy(pred[mask], labels[mask])
    return out
