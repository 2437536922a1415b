"""Image datasets read from files: torchvision's MNIST family and CIFAR, and TinyImageNet folders.

Nothing is downloaded unless ``download = true``; with files missing the error says where they must go.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from clu.data.base import Dataset, DataSpec, with_validation
from clu.data.registry import DataError, register_dataset

# name: (torchvision class, files that must exist under root, channel mean, channel std)
_TV = {
    "mnist": ("MNIST", "MNIST/raw/train-images-idx3-ubyte", (0.1307,), (0.3081,)),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte", (0.2860,), (0.3530,)),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/data_batch_1", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", "cifar-100-python/train", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _torchvision(name: str, spec: DataSpec) -> Dataset:
    cls_name, marker, mean, std = _TV[name]
    root = Path(spec.root)
    if not spec.download and not (root / marker).exists():
        raise DataError(
            f"{name} files not found: expected {root / marker} (set data.root to the folder holding them, "
            f"or data.download = true on a machine with network)",
            key="data.root",
        )
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        train, test = (cls(str(root), train=t, download=spec.download) for t in (True, False))
    except Exception as e:  # torchvision raises RuntimeError/URLError variants
        raise DataError(f"{name} could not be loaded from {root}: {e}", key="data.root") from None

    def tensors(ds: object) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(np.asarray(ds.data))  # type: ignore[attr-defined]
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        return x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)  # type: ignore[attr-defined]

    return with_validation(name, *tensors(train), *tensors(test), spec, mean=mean, std=std)


for _name in _TV:
    register_dataset(_name)(lambda spec, _n=_name: _torchvision(_n, spec))


@register_dataset("tinyimagenet")
def load_tinyimagenet(spec: DataSpec) -> Dataset:
    """TinyImageNet-200 from ``root/tiny-imagenet-200`` in the standard layout (64×64 RGB, 200 classes)."""
    base = Path(spec.root) / "tiny-imagenet-200"
    ann = base / "val" / "val_annotations.txt"
    if not (base / "wnids.txt").exists() or not ann.exists():
        raise DataError(
            f"tinyimagenet not found: expected {base}/wnids.txt, train/<wnid>/images/*.JPEG and "
            f"val/val_annotations.txt (set data.root to the folder that holds tiny-imagenet-200)",
            key="data.root",
        )
    from PIL import Image

    wnids = base.joinpath("wnids.txt").read_text().split()
    index = {w: i for i, w in enumerate(wnids)}

    def load(paths: list[Path]) -> torch.Tensor:
        arr = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
        return torch.as_tensor(arr).permute(0, 3, 1, 2).contiguous()

    train_paths, train_y = [], []
    for w in wnids:
        for p in sorted((base / "train" / w / "images").glob("*.JPEG")):
            train_paths.append(p)
            train_y.append(index[w])
    val_rows = [line.split("\t")[:2] for line in ann.read_text().splitlines() if line.strip()]
    test_paths = [base / "val" / "images" / f for f, _ in val_rows]
    test_y = [index[w] for _, w in val_rows]
    return with_validation(
        "tinyimagenet",
        load(train_paths),
        torch.tensor(train_y),
        load(test_paths),
        torch.tensor(test_y),
        spec,
        mean=(0.480, 0.448, 0.398),
        std=(0.277, 0.269, 0.282),
    )
