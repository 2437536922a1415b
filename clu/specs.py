"""The ``[data]``, ``[model]`` and ``[evaluation]`` tables of a scenario file.

Kept free of torch so that reading and validating scenario files (``clu events``, ``clu scenarios``,
``import clu``) stays fast; :mod:`clu.data` and :mod:`clu.models` build the real things from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clu.config import check

_SIZED = frozenset({"synthetic", "synthetic_images"})
_FILES = frozenset({"mnist", "fashion_mnist", "cifar10", "cifar100"})
DATA_FIELD_READERS: dict[str, frozenset[str]] = {
    "root": _FILES | {"tinyimagenet"},
    "download": _FILES,
    "test_fraction": _SIZED | {"digits", "mnist5k"},
    "n_samples": _SIZED,
    "n_features": frozenset({"synthetic"}),
    "n_classes": _SIZED,
}
"""The built-in datasets that read each dataset-specific ``[data]`` field (``name`` and ``val_fraction``: all)."""
BUILTIN_DATASETS = frozenset().union(*DATA_FIELD_READERS.values())


@dataclass(frozen=True)
class DataSpec:
    """Which dataset to load and how (the ``[data]`` table of a scenario file)."""

    name: str = "digits"
    """Registry name: digits, mnist5k, synthetic, mnist, fashion_mnist, cifar10, cifar100, tinyimagenet."""
    root: str = "data"
    """Folder holding downloaded files (torchvision sets, tinyimagenet); relative to the working folder."""
    download: bool = False
    """Allow torchvision to download missing files (needs network; off by default)."""
    val_fraction: float = 0.1
    """Stratified fraction of the train split held out as validation (never learned)."""
    test_fraction: float = 0.2
    """Test fraction for sources without an official test split (digits, mnist5k, synthetic)."""
    n_samples: int = 5000
    """synthetic and synthetic_images only: number of samples (train + test)."""
    n_features: int = 32
    """synthetic only: number of features."""
    n_classes: int = 10
    """synthetic and synthetic_images only: number of classes."""

    def unused_fields(self) -> frozenset[str]:
        """The fields this dataset does not read (:data:`DATA_FIELD_READERS`; none for a dataset registered
        outside clu): a run's config.toml leaves them out while they hold their defaults."""
        if self.name not in BUILTIN_DATASETS:
            return frozenset()
        return frozenset(f for f, readers in DATA_FIELD_READERS.items() if self.name not in readers)

    def validate(self) -> None:
        check(0.0 <= self.val_fraction < 0.5, "val_fraction", f"must be in [0, 0.5), got {self.val_fraction}")
        check(0.0 < self.test_fraction < 0.9, "test_fraction", f"must be in (0, 0.9), got {self.test_fraction}")
        check(self.n_samples >= 100, "n_samples", f"must be at least 100, got {self.n_samples}")
        check(self.n_features >= 2, "n_features", f"must be at least 2, got {self.n_features}")
        check(2 <= self.n_classes <= 1000, "n_classes", f"must be in [2, 1000], got {self.n_classes}")
        if self.name == "synthetic":  # make_classification needs n_classes <= 2 ** n_informative
            informative = max(2, self.n_features // 2)
            check(
                self.n_classes <= 2**informative,
                "n_classes",
                f"{self.n_classes} classes need n_features >= {2 * (self.n_classes - 1).bit_length()} "
                f"(synthetic uses n_features // 2 informative features); got n_features = {self.n_features}",
            )



@dataclass(frozen=True)
class ModelSpec:
    """The ``[model]`` table of a scenario file."""

    name: Literal["mlp", "cnn", "resnet18"] = "mlp"
    """Architecture."""
    hidden: tuple[int, ...] = (256, 256)
    """mlp only: hidden layer widths."""
    width: int = 32
    """cnn only: channels of the first convolution (doubled in the second)."""

    def unused_fields(self) -> frozenset[str]:
        """The fields this architecture does not read (``width`` for an MLP, ``hidden`` for a CNN, both for
        ResNet-18): a run's config.toml leaves them out while they hold their defaults."""
        return frozenset({"hidden", "width"} - {"mlp": {"hidden"}, "cnn": {"width"}}.get(self.name, set()))

    def validate(self) -> None:
        check(all(h > 0 for h in self.hidden), "hidden", f"widths must be positive, got {list(self.hidden)}")
        check(self.width > 0, "width", f"must be positive, got {self.width}")


@dataclass(frozen=True)
class EvaluationSpec:
    """How a run is evaluated beyond the per-event metrics (the ``[evaluation]`` table of a scenario file)."""

    shadows: int = 0
    """Shadow oracles of the per-example membership attack (LiRA); 0 = no attack (``--shadows`` overrides)."""
    klom_bins: int = 20
    """Histogram bins of KLoM (KL to the oracle's distribution of margins over replicas)."""
    split: Literal["test", "validation"] = "test"
    """The held-out samples TA, MIA and LiRA use as the unseen data: test for reporting, validation for tuning
    (``clu tune`` sets it so that tuning never reads the test split)."""
    relearn_fraction: float = 0.1
    """Relearning attack (``Relearn_FA``): the fraction of D_U* a throw-away copy of the model is fine-tuned on
    after every request and at the end of the stream (0 = no attack); the rest of D_U* is measured."""
    relearn_epochs: int = 1
    """Relearning attack: passes over that fraction (mini-batches of the scenario's batch size)."""
    relearn_lr: float = 0.05
    """Relearning attack: SGD learning rate, the same for every strategy (the default is the strategies' learn lr)."""

    def validate(self) -> None:
        check(self.shadows >= 0, "shadows", f"must be >= 0, got {self.shadows}")
        check(self.klom_bins >= 2, "klom_bins", f"must be at least 2, got {self.klom_bins}")
        check(self.split in ("test", "validation"), "split",
              f"{self.split!r} is not allowed; choose 'test' | 'validation'")
        check(0.0 <= self.relearn_fraction < 1.0, "relearn_fraction",
              f"must be in [0, 1) (0 = no relearning attack), got {self.relearn_fraction}")
        check(self.relearn_epochs >= 1, "relearn_epochs", f"must be at least 1, got {self.relearn_epochs}")
        check(self.relearn_lr > 0, "relearn_lr", f"must be > 0, got {self.relearn_lr}")
