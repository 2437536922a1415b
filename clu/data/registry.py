"""The dataset registry: a name → loader dict filled by an explicit decorator (duplicates refused)."""

from __future__ import annotations

from typing import Callable

from clu.config import ConfigError
from clu.data.base import Dataset, DataSpec

Loader = Callable[[DataSpec], Dataset]
DATASETS: dict[str, Loader] = {}


class DataError(ConfigError):
    """A dataset cannot be loaded (files missing, no network): says where the files must go."""


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register ``loader`` under ``name``; registering a name twice is a programming error."""

    def deco(loader: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASETS[name] = loader
        return loader

    return deco


_CACHE: dict[DataSpec, Dataset] = {}


def load_dataset(spec: DataSpec) -> Dataset:
    """Load (once per process) the dataset ``spec`` names."""
    if spec.name not in DATASETS:
        raise ConfigError(f"unknown dataset {spec.name!r}; known: {', '.join(sorted(DATASETS))}", key="data.name")
    if spec not in _CACHE:
        _CACHE[spec] = DATASETS[spec.name](spec)
    return _CACHE[spec]
