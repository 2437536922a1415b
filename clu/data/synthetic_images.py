"""``synthetic_images``: seeded, class-conditional 3×32×32 images of any size (CIFAR's shape, no download).

Each class has a fixed smooth colour pattern (a random 3×4×4 grid, upsampled); a sample is its class pattern
at a random contrast plus pixel noise, stored as uint8 like CIFAR, so the ResNet-18 pipeline, the GPU data
path and the unlearn-cost ratio can be measured at any scale offline. The same ``[data]`` table gives the
same images, byte for byte (fixed generator seed, as ``synthetic``).
"""

from __future__ import annotations

import numpy as np
import torch

from clu.data.base import Dataset, DataSpec, stratified_split, with_validation
from clu.data.registry import DataError, register_dataset

SHAPE = (3, 32, 32)
_GRID = 4
_CHUNK = 4096
_SEED = 0


def class_patterns(n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """One smooth pattern per class in [-1, 1]: shape (n_classes, 3, 32, 32)."""
    grid = rng.uniform(-1.0, 1.0, size=(n_classes, SHAPE[0], _GRID, _GRID)).astype(np.float32)
    scale = SHAPE[1] // _GRID
    return np.repeat(np.repeat(grid, scale, axis=2), scale, axis=3)


def synthetic_images(n_samples: int, n_classes: int, seed: int = _SEED) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` uint8 images (N, 3, 32, 32) and their labels (balanced, shuffled); pure in its arguments."""
    rng = np.random.default_rng(seed)
    patterns = class_patterns(n_classes, rng)
    y = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    x = np.empty((n_samples, *SHAPE), dtype=np.uint8)
    for start in range(0, n_samples, _CHUNK):
        yc = y[start : start + _CHUNK]
        contrast = rng.uniform(0.3, 0.6, size=(len(yc), 1, 1, 1)).astype(np.float32)
        noise = rng.normal(0.0, 0.25, size=(len(yc), *SHAPE)).astype(np.float32)
        img = 0.5 + contrast * patterns[yc] * 0.5 + noise
        x[start : start + _CHUNK] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return x, y


@register_dataset("synthetic_images")
def load_synthetic_images(spec: DataSpec) -> Dataset:
    """``data.n_samples`` images (train + test) of ``data.n_classes`` classes, split by ``data.test_fraction``."""
    x, y = synthetic_images(spec.n_samples, spec.n_classes)
    train, test = stratified_split(y, spec.test_fraction, seed=0)
    if len(test) == 0:
        raise DataError(f"test_fraction {spec.test_fraction} leaves an empty test split of {spec.n_samples} "
                        f"images in {spec.n_classes} classes", key="data.test_fraction")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    return with_validation(
        "synthetic_images", xt[train], yt[train], xt[test], yt[test], spec, mean=(0.5, 0.5, 0.5), std=(0.28, 0.28, 0.28)
    )
