"""The in-memory dataset every source produces, addressed by stable integer sample ids.

A sample id is the index of a sample in the canonical train split. The validation part is a fixed,
stratified subset of those ids that is never learned (methods calibrate on it); the test split is separate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from clu.config import check


@dataclass(frozen=True)
class DataSpec:
    """Which dataset to load and how (the ``[data]`` table of a scenario file)."""

    name: str = "digits"
    """Registry name: digits, mnist5k, synthetic, mnist, fashion_mnist, cifar10, cifar100, tinyimagenet."""
    root: str = "data"
    """Folder holding downloaded files (torchvision sets, tinyimagenet); relative to the working folder."""
    download: bool = False
    """Allow torchvision to download missing files (needs network; off by default)."""
    val_fraction: float = 0.1
    """Stratified fraction of the train split held out as validation (never learned)."""
    test_fraction: float = 0.2
    """Test fraction for sources without an official test split (digits, mnist5k, synthetic)."""
    n_samples: int = 5000
    """synthetic only: number of samples (train + test)."""
    n_features: int = 32
    """synthetic only: number of features."""
    n_classes: int = 10
    """synthetic only: number of classes."""

    def validate(self) -> None:
        check(0.0 <= self.val_fraction < 0.5, "val_fraction", f"must be in [0, 0.5), got {self.val_fraction}")
        check(0.0 < self.test_fraction < 0.9, "test_fraction", f"must be in (0, 0.9), got {self.test_fraction}")
        check(self.n_samples >= 100, "n_samples", f"must be at least 100, got {self.n_samples}")
        check(self.n_features >= 2, "n_features", f"must be at least 2, got {self.n_features}")
        check(2 <= self.n_classes <= 1000, "n_classes", f"must be in [2, 1000], got {self.n_classes}")


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
            x = (x - torch.tensor(self.mean).view(shape)) / torch.tensor(self.std).view(shape)
        return x

    def train_batch(self, ids: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(np.asarray(ids), dtype=torch.long)
        return self.inputs(self.x_train[idx]), self.y_train[idx]


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held_out) with ``fraction`` of each class held out; deterministic."""
    rng = np.random.default_rng(seed)
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
