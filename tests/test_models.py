"""clu.models: ResNet-18 on a tiny batch, channels_last, and the bf16 autocast path of a strategy (on CPU)."""

from __future__ import annotations

import pytest
import torch

from clu.models import ResNet18, build_model, to_channels_last, use_channels_last
from clu.specs import ModelSpec


def test_resnet18_forward_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec(name="resnet18"), (3, 32, 32), 10).eval()
    assert isinstance(model, ResNet18)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_channels_last_for_cnns_on_cuda_only() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert use_channels_last(ModelSpec(name="resnet18"), cuda) and use_channels_last(ModelSpec(name="cnn"), cuda)
    assert not use_channels_last(ModelSpec(name="mlp"), cuda) and not use_channels_last(ModelSpec(name="cnn"), cpu)
    model = to_channels_last(build_model(ModelSpec(name="cnn", width=4), (3, 8, 8), 3))
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    x = torch.randn(2, 3, 8, 8)
    ref = build_model(ModelSpec(name="cnn", width=4), (3, 8, 8), 3)
    ref.load_state_dict(model.state_dict())
    torch.testing.assert_close(model.eval()(x.contiguous(memory_format=torch.channels_last)), ref.eval()(x))


@pytest.mark.parametrize("amp", [False, True])
def test_strategy_logits_under_bf16_autocast_stay_float32(amp: bool) -> None:
    from clu.config import from_dict
    from clu.data import load_dataset
    from clu.driver import build_strategy
    from clu.runconfig import resolve_in_family
    from clu.scenario import ScenarioSpec

    spec = from_dict(ScenarioSpec, {"name": "amp", "data": {"name": "synthetic_images", "n_samples": 120,
                                                            "n_classes": 4}, "model": {"name": "cnn", "width": 4},
                                    "split": {"n_tasks": 2, "classes_per_task": 2}})
    data = load_dataset(spec.data)
    s = build_strategy(resolve_in_family("naive", "default"), spec, data, 0, torch.device("cpu"), amp=amp)
    assert s.ctx.amp is amp and not s.ctx.channels_last
    x, y = s.batch(torch.arange(8))
    out = s.logits(x, y)
    assert out.dtype == torch.float32
    with torch.no_grad():
        full = s.model(x)
    if amp:  # bf16 matmuls: close to, but not the float32 result
        assert not torch.equal(out.detach(), full) and torch.allclose(out.detach(), full, atol=0.1, rtol=0.05)
    else:
        assert torch.equal(out.detach(), full)
    out.sum().backward()  # gradients flow through the autocast region
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in s.model.parameters())
