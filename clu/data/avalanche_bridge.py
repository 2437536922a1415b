"""Learn events → Avalanche experiences over id-subsets of a :class:`~clu.data.base.Dataset`.

The sample ids travel as a ``DataAttribute`` named ``sample_ids`` on every dataset (buffers included), not
in ``__getitem__``: Avalanche reads the task label from the last element of a mini-batch, so a sample is
``(x, y, task_label)`` as usual. Avalanche keeps an attribute through ``concat`` only when every part has it,
which holds for everything built here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience, benchmark_from_datasets
from avalanche.benchmarks.utils import AvalancheDataset, DataAttribute
from avalanche.benchmarks.utils.classification_dataset import TaskAwareSupervisedClassificationDataset
from torch.utils.data import TensorDataset

from clu.data.base import Dataset
from clu.events import LearnTask

IDS = "sample_ids"


def id_dataset(data: Dataset, ids: Sequence[int] | np.ndarray, task_label: int = 0) -> AvalancheDataset:
    """An Avalanche classification dataset of the train samples ``ids``, carrying them as ``sample_ids``."""
    idx = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    x, y = data.train_batch(idx)
    x, y = x.cpu(), y.cpu()  # Avalanche's copy stays on the host (strategies slice batches by id instead)
    n = len(idx)
    return TaskAwareSupervisedClassificationDataset(
        [TensorDataset(x, y)],
        data_attributes=[
            DataAttribute(y.tolist(), "targets"),
            DataAttribute([task_label] * n, "targets_task_labels", use_in_getitem=True),
            DataAttribute(idx.tolist(), IDS),
        ],
    )


def sample_ids_of(dataset: AvalancheDataset) -> torch.Tensor:
    """The ids of every sample of an Avalanche dataset built here (concatenations included)."""
    attr = getattr(dataset, IDS, None)
    if attr is None:
        raise ValueError("dataset has no sample_ids attribute (was it built with clu.data.avalanche_bridge?)")
    return torch.as_tensor(list(attr), dtype=torch.long)


def learn_experiences(data: Dataset, tasks: Sequence[LearnTask], task_aware: bool) -> list[DatasetExperience]:
    """One Avalanche experience per learn task, in stream order (task label = task id when task-aware)."""
    if not tasks:
        return []
    datasets = [id_dataset(data, t.sample_ids, t.task_id if task_aware else 0) for t in tasks]
    return list(benchmark_from_datasets(train=datasets).streams["train"])


def experience_of(data: Dataset, ids: Sequence[int] | np.ndarray, task_label: int = 0) -> DatasetExperience:
    """A single Avalanche experience over arbitrary train ids (e.g. all retained data, for the oracle)."""
    return list(benchmark_from_datasets(train=[id_dataset(data, ids, task_label)]).streams["train"])[0]
