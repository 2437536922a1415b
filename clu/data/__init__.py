"""Datasets addressed by stable sample ids. Each source module registers itself explicitly below."""

from clu.data import offline, synthetic_images, vision  # noqa: F401  (explicit registration, no directory scanning)
from clu.data.base import Dataset, DataSpec
from clu.data.placement import place
from clu.data.registry import DATASETS, DataError, load_dataset, register_dataset

__all__ = ["DATASETS", "DataError", "DataSpec", "Dataset", "load_dataset", "place", "register_dataset"]
