"""Device placement of the id-addressed data and the seeded learn-batch augmentation (CPU-checkable parts)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from clu.data import DataSpec, load_dataset, place
from clu.data.augment import augment, augment_generator, crop_flip
from clu.data.placement import dataset_bytes, fits

SPEC = DataSpec(name="synthetic_images", n_samples=120, n_classes=4)


def test_placed_data_slices_the_same_batches_from_the_device_copy() -> None:
    data = load_dataset(SPEC)
    placed = replace(data, placed_labels=data.y_train.clone())  # what on_device builds, here on the CPU
    ids = torch.tensor([3, 1, 7])
    for a, b in zip(data.train_batch(ids), placed.train_batch(ids)):
        assert torch.equal(a, b)
    assert data.on_device(torch.device("cpu")) is data and place(data, torch.device("cpu")) is data
    assert placed.on_device(torch.device("cpu")) is placed


def test_data_stays_on_the_host_when_it_does_not_fit_on_the_device() -> None:
    data = load_dataset(SPEC)
    n = dataset_bytes(data)
    assert n == data.x_train.numel() + data.x_test.numel() + 8 * len(data.y_train)  # uint8 images, int64 labels
    assert fits(n, 2 * n) and not fits(n, 2 * n - 1)
    # a CUDA device without room: the data is left where it is (and CUDA is never touched)
    assert place(data, torch.device("cuda"), free_bytes=n) is data


def test_crop_flip_is_seeded_and_a_crop_or_mirror_of_the_padded_image() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    a = crop_flip(x, augment_generator(5))
    assert torch.equal(a, crop_flip(x, augment_generator(5))) and a.shape == x.shape
    assert not torch.equal(a, crop_flip(x, augment_generator(6)))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        windows = [padded[i, :, r : r + 8, c : c + 8] for r in range(9) for c in range(9)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)


def test_augment_none_is_the_batch_itself_and_the_stream_is_independent_of_batch_order() -> None:
    x = torch.zeros(2, 3, 4, 4)
    assert augment("none", x, augment_generator(0)) is x
    g = augment_generator(0)
    assert g.initial_seed() != torch.Generator().manual_seed(0).initial_seed()
    with pytest.raises(ValueError):
        augment("mixup", x, g)  # type: ignore[arg-type]


def test_augmentation_touches_learn_batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from clu.config import from_dict
    from clu.data.avalanche_bridge import learn_experiences
    from clu.driver import build_strategy
    from clu.events import steps
    from clu.runconfig import resolve_in_family
    from clu.scenario import ScenarioSpec, generate
    import clu.strategies.base as base

    spec = from_dict(ScenarioSpec, {
        "name": "aug", "data": {"name": "synthetic_images", "n_samples": 120, "n_classes": 4},
        "model": {"name": "cnn", "width": 4}, "split": {"n_tasks": 2, "classes_per_task": 2, "class_order": "natural"},
        "training": {"epochs": 1, "batch_size": 16, "buffer_size": 20, "augment": "crop_flip"},
        "schedule": {"requests": [{"after_task": 2, "kind": "class", "classes": [3]}]},
    })
    data = load_dataset(spec.data)
    st = steps(generate(spec, 0, data.train_labels, data.learnable_ids, data.num_classes))
    calls: list[int] = []
    real = base.augment
    monkeypatch.setattr(base, "augment", lambda kind, x, gen: calls.append(len(x)) or real(kind, x, gen))
    choice = resolve_in_family("er_ft", "default")
    strategy = build_strategy(replace(choice, config=replace(choice.config, unlearn_iters=2)), spec, data, 0,
                              torch.device("cpu"))
    learn = [s.learn for s in st if s.learn is not None]
    exps = learn_experiences(data, learn, task_aware=False)
    strategy.learn(learn[0], exps[0])
    assert sum(calls) == len(learn[0].sample_ids)  # every learn sample, once per epoch
    before = list(calls)
    strategy.learn(learn[1], exps[1])
    assert sum(calls) - sum(before) == len(learn[1].sample_ids)  # buffer batches are not augmented
    before = list(calls)
    strategy.unlearn(next(s.unlearn for s in st if s.unlearn is not None))
    assert calls == before  # nor the unlearning phase
    state = strategy.state_dict()
    assert "aug_rng" in state and np.asarray(state["aug_rng"]).size > 0
