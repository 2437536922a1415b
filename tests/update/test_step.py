import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clu.update.step import FastTerm, clip_grad, fast_slow_step, masked_step


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _sgd(model, lr=0.1):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)


def _random_mask(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = {n: (torch.rand(p.shape, generator=g) < 0.5).float() for n, p in model.named_parameters()}
    mask["2.bias"] = torch.zeros(3)  # one whole tensor frozen
    return mask


def test_masked_parameters_bit_identical_after_ten_steps():
    model = _mlp()
    opt = _sgd(model)
    mask = _random_mask(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for _ in range(10):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        masked_step(model, opt, mask)
    for n, p in model.named_parameters():
        frozen = mask[n] == 0
        assert torch.equal(p.detach()[frozen], before[n][frozen]), n
        buf = opt.state[p]["momentum_buffer"]
        assert torch.equal(buf[frozen], torch.zeros_like(buf[frozen])), n
    # every unmasked entry moved
    for n, p in model.named_parameters():
        free = mask[n] != 0
        assert (p.detach()[free] != before[n][free]).all(), n


def test_masked_step_keeps_existing_momentum_of_frozen_entries():
    model = _mlp()
    opt = _sgd(model)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for _ in range(3):  # build up momentum with plain steps
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    mask = _random_mask(model, seed=2)
    bufs = {n: opt.state[p]["momentum_buffer"].clone() for n, p in model.named_parameters()}
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    masked_step(model, opt, mask)
    for n, p in model.named_parameters():
        frozen = mask[n] == 0
        assert torch.equal(opt.state[p]["momentum_buffer"][frozen], bufs[n][frozen])


def test_masked_step_free_part_follows_masked_gradient():
    w = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    model = nn.Module()
    model.w = w
    opt = torch.optim.SGD([w], lr=0.5)
    w.grad = torch.tensor([1.0, 1.0, 1.0])
    masked_step(model, opt, {"w": torch.tensor([1.0, 0.0, 1.0])})
    assert torch.equal(w.detach(), torch.tensor([0.5, 2.0, 2.5]))
    assert torch.equal(w.grad, torch.tensor([1.0, 0.0, 1.0]))


def test_masked_step_none_is_plain_step():
    a, b = _mlp(), _mlp()
    oa, ob = _sgd(a), _sgd(b)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    for m, o in ((a, oa), (b, ob)):
        o.zero_grad()
        F.cross_entropy(m(x), y).backward()
    oa.step()
    masked_step(b, ob, None)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_masked_step_rejects_bad_masks():
    model = _mlp()
    opt = _sgd(model)
    with pytest.raises(KeyError):
        masked_step(model, opt, {"nope": torch.ones(1)})
    with pytest.raises(ValueError):
        masked_step(model, opt, {"0.bias": torch.ones(3)})


def test_clip_grad_bounds_the_norm():
    model = _mlp()
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)
    before = clip_grad(model, 1.0)
    after = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    assert before > 1.0
    assert after.item() == pytest.approx(1.0, rel=1e-4)
    grads = {"a": torch.tensor([3.0, 4.0])}
    assert clip_grad(grads, 1.0) == pytest.approx(5.0)
    assert torch.allclose(grads["a"], torch.tensor([0.6, 0.8]), atol=1e-5)
    small = {"a": torch.tensor([0.3, 0.4])}
    clip_grad(small, 1.0)
    assert torch.equal(small["a"], torch.tensor([0.3, 0.4]))
    clip_grad(grads, 0.0)  # no clipping
    assert torch.allclose(grads["a"], torch.tensor([0.6, 0.8]), atol=1e-5)


class _Scalar(nn.Module):
    def __init__(self, w0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w0))


A, B, LR, W0 = 3.0, 2.0, 0.1, 1.0


def _quadratic_step(order, seen=None):
    model = _Scalar(W0)
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def fast():
        return (model.w - A) ** 2  # gradient 2 (w - A)

    def slow():
        if seen is not None:
            seen.append(model.w.item())
        return B * model.w**2  # gradient 2 B w: depends on the weights

    values = fast_slow_step(model, opt, [FastTerm(fast)], slow, order=order)
    return model.w.item(), values


def test_fast_slow_order_matters_on_a_quadratic():
    w_fs, (f_fs, s_fs) = _quadratic_step("fast_slow")
    w_j, (f_j, s_j) = _quadratic_step("joint")
    w1 = W0 - LR * 2 * (W0 - A)  # fast step
    assert w_fs == pytest.approx(w1 - LR * 2 * B * w1)  # slow step at the new weights
    assert w_j == pytest.approx(W0 - LR * (2 * (W0 - A) + 2 * B * W0))
    assert abs(w_fs - w_j) > 1e-3
    assert f_fs == pytest.approx((W0 - A) ** 2) and f_j == pytest.approx((W0 - A) ** 2)
    assert s_fs == pytest.approx(B * w1**2)
    assert s_j == pytest.approx(B * W0**2)


def test_slow_loss_is_evaluated_at_post_fast_weights():
    seen = []
    _quadratic_step("fast_slow", seen)
    assert seen == [pytest.approx(W0 - LR * 2 * (W0 - A))]
    seen_joint = []
    _quadratic_step("joint", seen_joint)
    assert seen_joint == [pytest.approx(W0)]


def test_empty_terms_are_skipped():
    model = _Scalar(W0)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    out = fast_slow_step(model, opt, [FastTerm(lambda: None)], lambda: B * model.w**2)
    assert out[0] is None and out[1] == pytest.approx(B * W0**2)
    assert model.w.item() == pytest.approx(W0 - LR * 2 * B * W0)
    out = fast_slow_step(model, opt, [], None)
    assert out == (None, None)


def test_fast_step_combines_masked_terms_and_freezes_the_intersection():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    model = _Scalar(0.0)
    model.w = nn.Parameter(w.clone())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    m_l = {"w": torch.tensor([1.0, 0.0, 0.0, 1.0])}
    m_u = {"w": torch.tensor([0.0, 1.0, 0.0, 1.0])}
    learn = FastTerm(lambda: model.w.sum(), m_l, 2.0)  # grad 1 per entry
    unlearn = FastTerm(lambda: -(model.w**2).sum() / 2, m_u, 3.0)  # grad -w
    for _ in range(5):
        fast_slow_step(model, opt, [learn, unlearn], None)
    assert model.w[2].item() == 3.0  # masked out by both: bit-identical
    assert opt.state[model.w]["momentum_buffer"][2].item() == 0.0
    assert (model.w.detach()[[0, 1, 3]] != w[[0, 1, 3]]).all()

    # one step from scratch: g = 2 * M_L * 1 + 3 * M_U * (-w)
    model2 = _Scalar(0.0)
    model2.w = nn.Parameter(w.clone())
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    t1 = FastTerm(lambda: model2.w.sum(), m_l, 2.0)
    t2 = FastTerm(lambda: -(model2.w**2).sum() / 2, m_u, 3.0)
    fast_slow_step(model2, opt2, [t1, t2], None)
    g = torch.tensor([2.0, -6.0, 0.0, 2.0 - 12.0])
    assert torch.allclose(model2.w.detach(), w - 0.1 * g)


def test_fast_step_is_clipped_and_slow_step_is_not():
    model = _Scalar(0.0)
    model.w = nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    fast_slow_step(model, opt, [FastTerm(lambda: 100.0 * model.w.sum())], None, clip=2.0)
    assert torch.linalg.vector_norm(model.w.detach()).item() == pytest.approx(2.0, rel=1e-4)
    before = model.w.detach().clone()
    fast_slow_step(model, opt, [], lambda: 100.0 * model.w.sum(), clip=2.0)
    assert torch.allclose(model.w.detach(), before - 100.0)


def test_training_a_tiny_model_with_masks_keeps_frozen_weights():
    model = _mlp(3)
    opt = _sgd(model, lr=0.05)
    mask = _random_mask(model, seed=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    xr, yr = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for t in range(10):
        fast_slow_step(
            model,
            opt,
            [FastTerm(lambda: -F.cross_entropy(model(x), y), mask, 1.0)],
            None,
            clip=1.0,
        )
    for n, p in model.named_parameters():
        frozen = mask[n] == 0
        assert torch.equal(p.detach()[frozen], before[n][frozen]), n
    # with a slow step the frozen entries do move (the slow step is unmasked)
    fast_slow_step(model, opt, [], lambda: F.cross_entropy(model(xr), yr))
    assert not torch.equal(model[2].bias.detach(), before["2.bias"])


def test_a_gradient_tensor_shared_by_two_parameters_is_clipped_once() -> None:
    """Autograd can return one tensor for two parameters (loss on a + b); each must get its own .grad."""
    from torch import nn

    from clu.update import FastTerm, fast_slow_step

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Parameter(torch.ones(4))
            self.b = nn.Parameter(torch.ones(4))

    m = Tied()
    x = torch.arange(4.0)
    opt = torch.optim.SGD(m.parameters(), lr=0.0)  # lr 0: only the gradients are inspected
    fast_slow_step(m, opt, [FastTerm(lambda: ((x * (m.a + m.b)) ** 2).sum())], None, clip=1.0)
    assert m.a.grad is not m.b.grad
    total = torch.linalg.vector_norm(torch.stack([m.a.grad.norm(), m.b.grad.norm()]))
    assert torch.isclose(total, torch.tensor(1.0), atol=1e-5)
