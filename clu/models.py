"""Models: an MLP (digits, MNIST), a small CNN (MNIST, CIFAR) and ResNet-18 in its CIFAR variant."""

from __future__ import annotations

import math
import torch
from torch import Tensor, nn

from clu.specs import ModelSpec


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(in_features, h), nn.ReLU()]
            in_features = h
        layers.append(nn.Linear(in_features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(out)) + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18, CIFAR variant: 3×3 stem without max-pooling."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model ``spec`` names, sized for ``input_shape`` (without batch) and ``num_classes``."""
    if spec.name == "mlp":
        return MLP(math.prod(input_shape), spec.hidden, num_classes)
    if len(input_shape) != 3:
        raise ValueError(f"model {spec.name!r} needs image inputs (C, H, W), got shape {input_shape}")
    if spec.name == "cnn":
        return SmallCNN(input_shape[0], spec.width, num_classes)
    return ResNet18(input_shape[0], num_classes)


def is_convolutional(spec: ModelSpec) -> bool:
    """Whether the model is a CNN (cnn, resnet18): those run in channels_last memory format on a GPU."""
    return spec.name in ("cnn", "resnet18")


def use_channels_last(spec: ModelSpec, device: torch.device) -> bool:
    """channels_last for the convolutional models on CUDA (tensor cores want NHWC); CPU runs keep NCHW, so
    their numbers stay those of every earlier run."""
    return device.type == "cuda" and is_convolutional(spec)


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-d weights in channels_last memory format (in place; returned for chaining)."""
    return model.to(memory_format=torch.channels_last)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
