"""The in-memory dataset every source produces, addressed by stable integer sample ids.

A sample id is the index of a sample in the canonical train split. The validation part is a fixed,
stratified subset of those ids that is never learned (methods calibrate on it); the test split is separate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from clu import seeding
from clu.specs import DataSpec


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/test tensors plus the validation ids. ``x_train[i]`` is sample id ``i`` for ever."""

    name: str
    x_train: Tensor
    """Inputs of the canonical train split (float32, or uint8 images normalised by :meth:`inputs`)."""
    y_train: Tensor
    """Labels (int64) of the train split."""
    x_test: Tensor
    y_test: Tensor
    val_ids: np.ndarray
    """Sorted train ids held out as validation: never part of a learn task."""
    num_classes: int
    mean: tuple[float, ...] = ()
    """Per-channel mean for uint8 images (empty for float inputs)."""
    std: tuple[float, ...] = ()
    placed_labels: Tensor | None = field(default=None, repr=False)
    """The train labels on the inputs' device once :meth:`on_device` placed the data there (``y_train`` and
    ``y_test`` stay on the CPU: the metrics read them as numpy)."""
    _learnable: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mask = np.ones(len(self.y_train), dtype=bool)
        mask[self.val_ids] = False
        object.__setattr__(self, "_learnable", np.flatnonzero(mask))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def learnable_ids(self) -> np.ndarray:
        """Train ids that learn tasks may use (all but validation), sorted."""
        return self._learnable

    @property
    def train_labels(self) -> np.ndarray:
        return self.y_train.numpy()

    def inputs(self, x: Tensor) -> Tensor:
        """Model-ready float inputs for a batch taken from ``x_train`` / ``x_test``."""
        if x.dtype != torch.uint8:
            return x
        x = x.float().div_(255.0)
        if self.mean:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x = (x - x.new_tensor(self.mean).view(shape)) / x.new_tensor(self.std).view(shape)
        return x

    @property
    def device(self) -> torch.device:
        """Where the inputs live (CPU unless :meth:`on_device` moved them)."""
        return self.x_train.device

    def on_device(self, device: torch.device) -> Dataset:
        """This dataset with its inputs (as stored: uint8 images stay uint8) and a copy of the train labels on
        ``device``, so that :meth:`train_batch` slices mini-batches there without a host copy per batch."""
        if device == self.device and (device.type == "cpu" or self.placed_labels is not None):
            return self
        return replace(self, x_train=self.x_train.to(device), x_test=self.x_test.to(device),
                       placed_labels=self.y_train.to(device))

    def validation_as_test(self) -> Dataset:
        """This dataset with its test split replaced by the validation samples (``clu tune``: tuning never
        reads the test split). Learn tasks and the validation ids are unchanged, so strategies, which use
        train and validation ids only, see the same data."""
        idx = torch.as_tensor(self.val_ids, dtype=torch.long)
        return replace(self, x_test=self.x_train[idx], y_test=self.y_train[idx])

    def train_batch(self, ids: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        idx = ids if isinstance(ids, Tensor) and ids.dtype == torch.long else torch.as_tensor(np.asarray(ids), dtype=torch.long)
        if self.placed_labels is None:
            return self.inputs(self.x_train[idx]), self.y_train[idx]
        idx = idx.to(self.device, non_blocking=True)
        return self.inputs(self.x_train[idx]), self.placed_labels[idx]


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held_out) with ``fraction`` of each class held out; deterministic."""
    rng = seeding.data_split(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = int(round(fraction * len(idx)))
        if n:
            held.append(rng.choice(idx, size=n, replace=False))
    held_out = np.sort(np.concatenate(held)) if held else np.empty(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[held_out] = False
    return np.flatnonzero(mask), held_out


def from_arrays(
    name: str, x: np.ndarray, y: np.ndarray, spec: DataSpec, *, split_seed: int = 0
) -> Dataset:
    """A Dataset from one pool of samples, split train/test by a fixed seeded stratified split."""
    train_idx, test_idx = stratified_split(y, spec.test_fraction, seed=split_seed)
    if len(test_idx) == 0 or len(train_idx) == 0:
        from clu.data.registry import DataError

        raise DataError(
            f"test_fraction {spec.test_fraction} leaves an empty {'test' if len(test_idx) == 0 else 'train'} "
            f"split of the {len(y)} {name} samples",
            key="data.test_fraction",
        )
    return with_validation(
        name,
        torch.as_tensor(x[train_idx], dtype=torch.float32),
        torch.as_tensor(y[train_idx], dtype=torch.long),
        torch.as_tensor(x[test_idx], dtype=torch.float32),
        torch.as_tensor(y[test_idx], dtype=torch.long),
        spec,
    )


def with_validation(
    name: str, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, spec: DataSpec, **kw: object
) -> Dataset:
    """A Dataset whose validation ids are a fixed stratified part of the train split."""
    _, val_ids = stratified_split(y_train.numpy(), spec.val_fraction, seed=1)
    num_classes = int(max(int(y_train.max()), int(y_test.max())) + 1)
    return Dataset(name, x_train, y_train, x_test, y_test, val_ids, num_classes, **kw)  # type: ignore[arg-type]
