"""Datasets addressed by stable sample ids, with a stratified validation part (DESIGN §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clu.config import ConfigError
from clu.data import DATASETS, DataError, DataSpec, load_dataset
from clu.data.base import stratified_split


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataSpec())


def test_digits_is_the_default_and_has_the_documented_shape(digits) -> None:
    assert DataSpec().name == "digits"
    assert digits.name == "digits"
    assert digits.num_classes == 10
    assert digits.input_shape == (1, 8, 8)
    assert len(digits.y_train) + len(digits.y_test) == 1797
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert float(digits.x_train.min()) >= 0.0 and float(digits.x_train.max()) <= 1.0


def test_ids_are_stable_across_loads(digits) -> None:
    again = DATASETS["digits"](DataSpec())  # a fresh load, bypassing the per-process cache
    assert again is not digits
    assert torch.equal(again.x_train, digits.x_train)
    assert torch.equal(again.y_train, digits.y_train)
    assert torch.equal(again.x_test, digits.x_test)
    np.testing.assert_array_equal(again.val_ids, digits.val_ids)
    np.testing.assert_array_equal(again.learnable_ids, digits.learnable_ids)
    assert load_dataset(DataSpec()) is digits  # cached once per process


def test_ids_match_sklearn_raw_data_through_the_documented_split(digits) -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    # documented split: fixed seeded stratified train/test split (test_fraction 0.2, seed 0)
    train_idx, test_idx = stratified_split(raw.target, 0.2, seed=0)
    assert len(train_idx) == len(digits.y_train) and len(test_idx) == len(digits.y_test)
    for i in [0, 1, 17, 500, len(train_idx) - 1]:
        x, y = digits.train_batch(np.array([i]))
        expected = raw.data[train_idx[i]].reshape(1, 8, 8) / 16.0
        np.testing.assert_allclose(x[0].numpy(), expected, rtol=0, atol=1e-7)
        assert int(y[0]) == raw.target[train_idx[i]]
    np.testing.assert_array_equal(digits.y_train.numpy(), raw.target[train_idx])
    np.testing.assert_allclose(digits.x_train.reshape(len(train_idx), -1).numpy(), raw.data[train_idx] / 16.0, atol=1e-7)
    np.testing.assert_array_equal(digits.y_test.numpy(), raw.target[test_idx])


def test_test_split_is_stratified_and_disjoint() -> None:
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    kept, held = stratified_split(y, 0.2, seed=0)
    assert np.intersect1d(kept, held).size == 0
    assert np.union1d(kept, held).tolist() == list(range(len(y)))
    assert np.bincount(y[held]).tolist() == [2, 4, 6, 8]
    again_kept, again_held = stratified_split(y, 0.2, seed=0)
    np.testing.assert_array_equal(held, again_held)
    assert not np.array_equal(held, stratified_split(y, 0.2, seed=1)[1])


def test_learnable_ids_exclude_validation(digits) -> None:
    val, learnable = digits.val_ids, digits.learnable_ids
    n = len(digits.y_train)
    assert len(val) > 0
    assert np.intersect1d(val, learnable).size == 0
    assert np.union1d(val, learnable).tolist() == list(range(n))
    assert list(val) == sorted(val) and list(learnable) == sorted(learnable)


def test_validation_is_stratified(digits) -> None:
    y = digits.train_labels
    per_class = np.bincount(y, minlength=10)
    val_per_class = np.bincount(y[digits.val_ids], minlength=10)
    expected = np.round(0.1 * per_class).astype(int)
    np.testing.assert_array_equal(val_per_class, expected)
    # no validation for a val_fraction of 0
    assert len(DATASETS["digits"](DataSpec(val_fraction=0.0)).val_ids) == 0


def test_synthetic_is_seeded_and_sized() -> None:
    spec = DataSpec(name="synthetic", n_samples=300, n_features=6, n_classes=3)
    a, b = DATASETS["synthetic"](spec), DATASETS["synthetic"](spec)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert a.input_shape == (6,) and a.num_classes == 3
    assert len(a.y_train) + len(a.y_test) == 300


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist", "tinyimagenet"])
def test_missing_files_fail_at_once_saying_where_they_go(tmp_path, name) -> None:
    root = tmp_path / "nodata"
    with pytest.raises(DataError) as info:
        load_dataset(DataSpec(name=name, root=str(root)))
    e = info.value
    assert isinstance(e, ConfigError)
    assert e.key == "data.root"
    assert str(root) in str(e)
    assert "not found" in str(e)
    assert not root.exists()  # nothing created, nothing downloaded


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset(DataSpec(name="imagenet"))
    assert info.value.key == "data.name"
    assert "digits" in str(info.value) and "mnist5k" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [("val_fraction", 0.5, "val_fraction"), ("test_fraction", 0.0, "test_fraction"), ("n_classes", 1, "n_classes")],
)
def test_dataspec_validation(field, value, key) -> None:
    from clu.config import from_dict

    with pytest.raises(ConfigError) as info:
        from_dict(DataSpec, {field: value})
    assert info.value.key == key


def test_uint8_inputs_are_normalised() -> None:
    from clu.data.base import Dataset

    x = torch.full((2, 3, 2, 2), 255, dtype=torch.uint8)
    y = torch.tensor([0, 1])
    d = Dataset("t", x, y, x, y, np.array([], dtype=np.int64), 2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out, labels = d.train_batch(np.array([1]))
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.full((1, 3, 2, 2), 2.0))
    assert labels.tolist() == [1]
