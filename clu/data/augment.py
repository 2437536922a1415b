"""Seeded, batched data augmentation of learn batches, on whatever device the batch is on.

``crop_flip`` is SFR-on's CIFAR training transform (``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``)
applied to a whole mini-batch at once: the random offsets and flips are drawn on the CPU from the strategy's
augmentation generator (so a run is reproducible whatever the device) and applied by indexing, so a batch
that lives on the GPU stays there. The padding is zeros of the normalised input, i.e. the data set's mean
colour (torchvision pads black pixels before normalising).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

Kind = Literal["none", "crop_flip"]
_AUGMENT_TAG = 0xA06
"""Part of the augmentation seed's derivation (never change: runs with augmentation would change)."""


def augment_generator(seed: int) -> torch.Generator:
    """The augmentation stream of a strategy whose batch-order seed is ``seed`` (independent of batch order)."""
    state = np.random.SeedSequence([seed, _AUGMENT_TAG]).generate_state(1, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]))


def crop_flip(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Each image of ``x`` (N, C, H, W) randomly cropped back to H×W from its zero-padded version, and flipped
    left-right with probability 1/2."""
    n, _, h, w = x.shape
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = (oy[:, None] + torch.arange(h)).to(x.device)  # (N, H), indices into the padded image
    cols = ox[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(x.device)  # (N, W)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    n_idx = torch.arange(n, device=x.device)[:, None, None, None]
    c_idx = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]


def augment(kind: Kind, x: Tensor, gen: torch.Generator) -> Tensor:
    """The learn batch ``x`` under the augmentation ``kind`` (``none``: ``x`` itself), drawing from ``gen``."""
    if kind == "none":
        return x
    if kind == "crop_flip":
        return crop_flip(x, gen)
    raise ValueError(f"unknown augmentation {kind!r}")
