"""Every random stream of a run, derived from a seed in one place.

Each function gives one named stream: a fresh generator, or (``model_init``) torch's global generator
seeded. The derivations are the historical ones, so results stay byte-identical; where one generator
serves several purposes (``batch_order``), it still does. Three numpy streams start alike for equal
seeds: ``data_split`` and ``mia`` share the plain-seed derivation, and ``class_order``'s ``[seed, 0]`` is the
same state (numpy's SeedSequence drops trailing zeros); they draw for unrelated purposes (and the data
split gets fixed seeds, not the run's).

Light on purpose (the scenario generator imports it): torch is imported only by the torch streams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["batch_order", "buffer_policy", "class_order", "data_split", "mia", "model_init", "scenario_requests"]


def class_order(seed: int) -> np.random.Generator:
    """The scenario's seeded class order (``split.class_order = "seeded"``): one permutation of the classes."""
    return np.random.default_rng([seed, 0])


def scenario_requests(seed: int) -> np.random.Generator:
    """The scenario's unlearn requests: the classes and samples each rule or explicit request draws."""
    return np.random.default_rng([seed, 1])


def buffer_policy(seed: int) -> np.random.Generator:
    """A strategy's replay-buffer admission: which new samples enter the buffer and which are evicted."""
    return np.random.default_rng([seed, 2])


def data_split(seed: int) -> np.random.Generator:
    """A stratified split of a dataset (train/test, train/validation); the loaders give fixed seeds."""
    return np.random.default_rng(seed)


def mia(seed: int) -> np.random.Generator:
    """The membership-inference attack of one evaluation: class balancing and its half split."""
    return np.random.default_rng(seed)


def model_init(seed: int) -> None:
    """Seed torch's global generator: the initial weights (the same for every strategy of a run)."""
    import torch

    torch.manual_seed(seed)


def batch_order(seed: int) -> torch.Generator:
    """A strategy's own torch stream, shared by all its draws in call order: mini-batch order (learn, forget,
    Fisher and saliency batches), buffer samples and random labels."""
    import torch

    return torch.Generator().manual_seed(seed)
