"""Where a run's data lives: on the GPU when it fits, so mini-batches are sliced there (DESIGN §11, GPU).

The whole id-addressed dataset (inputs as stored, uint8 for images) moves to the device once; the strategies'
``train_batch`` then indexes it there, with no host round trip per batch. It stays on the host when it would
take more than a fraction of the device's free memory (the model, activations and evaluation need the rest).
"""

from __future__ import annotations

import torch

from clu.data.base import Dataset

FREE_FRACTION = 0.5
"""At most this share of the device's free memory goes to the data."""


def dataset_bytes(data: Dataset) -> int:
    """Bytes the placed data takes on the device: the inputs as stored plus a copy of the train labels."""
    return sum(t.numel() * t.element_size() for t in (data.x_train, data.x_test, data.y_train))


def fits(nbytes: int, free_bytes: int, fraction: float = FREE_FRACTION) -> bool:
    """Whether ``nbytes`` of data fit in ``fraction`` of ``free_bytes``."""
    return nbytes <= fraction * free_bytes


def free_memory(device: torch.device) -> int:
    """Free bytes on a CUDA device (what the CUDA driver reports)."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def place(data: Dataset, device: torch.device, free_bytes: int | None = None) -> Dataset:
    """``data`` on ``device`` when it fits there (``free_bytes``: the device's free memory, asked when None);
    CPU devices get the data as it is."""
    if device.type == "cpu":
        return data.on_device(device)
    free = free_memory(device) if free_bytes is None else free_bytes
    return data.on_device(device) if fits(dataset_bytes(data), free) else data
