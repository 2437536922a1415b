"""Every random stream of a run, derived from a seed in one place.

Each function gives one named stream: a fresh generator, or (``model_init``) torch's global generator
seeded. The derivations are the historical ones, so results stay byte-identical; where one generator
serves several purposes (``batch_order``), it still does. Three numpy streams start alike for equal
seeds: ``data_split`` and ``mia`` share the plain-seed derivation, and ``class_order``'s ``[seed, 0]`` is the
same state (numpy's SeedSequence drops trailing zeros); they draw for unrelated purposes (and the data
split gets fixed seeds, not the run's).

Training seeds (issue 11): the scenario seed fixes the event stream; replica k trains with
:func:`training_seed` (replica 1: the scenario seed itself), the oracle's twin reorders its batches with
:func:`twin_seed`, and the run's extra shadow oracles use :func:`shadow_seed`. Each is an int in [0, 2**31)
derived through numpy's SeedSequence from (seed, a fixed tag, index), so the streams of different seeds never meet.

Light on purpose (the scenario generator imports it): torch is imported only by the torch streams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["batch_order", "buffer_policy", "class_order", "data_split", "mia", "model_init", "scenario_requests",
           "shadow_seed", "training_seed", "twin_seed"]

_TAGS = {"replica": 1, "twin": 2, "shadow": 3}
"""Fixed numeric tags of the derived seeds (part of the derivation: never renumber)."""


def _derive(seed: int, tag: str, index: int = 0) -> int:
    state = np.random.SeedSequence([seed, 0x5EED, _TAGS[tag], index]).generate_state(1, dtype=np.uint32)
    return int(state[0]) & 0x7FFFFFFF


def training_seed(seed: int, replica: int) -> int:
    """Replica ``replica``'s training seed (init, batch order, buffer draws); replica 1 trains with ``seed``."""
    if replica < 1:
        raise ValueError(f"replicas are numbered from 1, got {replica}")
    return seed if replica == 1 else _derive(seed, "replica", replica)


def twin_seed(training: int) -> int:
    """The oracle twin's batch-order/buffer seed, from its replica's training seed (its init is that seed)."""
    return _derive(training, "twin")


def shadow_seed(seed: int, j: int) -> int:
    """Extra shadow oracle ``j`` (1, 2, ...) of a run: its init and batch-order seed, from the scenario seed."""
    if j < 1:
        raise ValueError(f"shadows are numbered from 1, got {j}")
    return _derive(seed, "shadow", j)


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
