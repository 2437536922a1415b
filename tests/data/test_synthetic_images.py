"""synthetic_images: seeded, class-conditional 3×32×32 images in the dataset registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clu.data import DATASETS, DataError, DataSpec, load_dataset, register_dataset
from clu.data.synthetic_images import SHAPE, synthetic_images


def test_the_same_arguments_give_the_same_images_byte_for_byte() -> None:
    a, ya = synthetic_images(300, 10)
    b, yb = synthetic_images(300, 10)
    assert a.dtype == np.uint8 and a.shape == (300, *SHAPE)
    assert a.tobytes() == b.tobytes() and np.array_equal(ya, yb)
    c, _ = synthetic_images(300, 10, seed=1)
    assert c.tobytes() != a.tobytes()


def test_labels_are_balanced_and_the_images_class_conditional() -> None:
    x, y = synthetic_images(1000, 10)
    assert np.bincount(y).tolist() == [100] * 10
    flat = x.reshape(len(x), -1).astype(np.float32)
    train, test = slice(0, 500), slice(500, None)
    means = np.stack([flat[train][y[train] == c].mean(0) for c in range(10)])
    dist = ((flat[test][:, None, :] - means[None]) ** 2).sum(-1)
    nearest_mean_acc = float((dist.argmin(1) == y[test]).mean())
    assert nearest_mean_acc > 0.9  # the class is in the image: a nearest-class-mean rule reads it
    shuffled = np.random.default_rng(0).permutation(y[test])
    assert float((dist.argmin(1) == shuffled).mean()) < 0.3


def test_registered_as_an_id_addressed_uint8_dataset() -> None:
    data = load_dataset(DataSpec(name="synthetic_images", n_samples=200, n_classes=4))
    assert data.input_shape == SHAPE and data.x_train.dtype == torch.uint8 and data.num_classes == 4
    assert len(data.y_train) + len(data.y_test) == 200 and len(data.val_ids) > 0
    x, y = data.train_batch(np.array([0, 5]))
    assert x.dtype == torch.float32 and x.shape == (2, *SHAPE) and abs(float(x.mean())) < 1.0
    assert torch.equal(y, data.y_train[[0, 5]])


def test_a_second_registration_is_refused_and_an_empty_test_split_is_a_data_error() -> None:
    assert "synthetic_images" in DATASETS
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("synthetic_images")(DATASETS["synthetic_images"])
    with pytest.raises(DataError, match="empty test split"):
        DATASETS["synthetic_images"](DataSpec(name="synthetic_images", n_samples=100, n_classes=10,
                                              test_fraction=0.01))
