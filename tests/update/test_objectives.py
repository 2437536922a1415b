import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from clu.update.objectives import (
    calibrate_temperature,
    cross_entropy,
    inverse_loss_weights,
    kl_proxy_loss,
    random_labels,
    remove_classes_target,
    tempered_target,
    weighted_ascent_loss,
)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(1e-3, 50.0), min_size=1, max_size=64),
    st.floats(0.0, 2.0),
)
def test_inverse_weights_sum_to_batch_size(losses, lam):
    w = inverse_loss_weights(torch.tensor(losses, dtype=torch.float64), lam)
    assert w.sum().item() == pytest.approx(len(losses), rel=1e-9)
    assert (w > 0).all()


def test_inverse_weights_invert_loss_order():
    losses = torch.tensor([0.5, 3.0, 0.1, 1.0])
    w = inverse_loss_weights(losses, lam=0.5)
    assert torch.equal(torch.argsort(w), torch.argsort(losses, descending=True))
    c = losses.pow(-0.5)
    assert torch.allclose(w, 4 * c / c.sum())


def test_inverse_weights_lam_zero_are_ones_and_detached():
    losses = torch.tensor([0.2, 5.0, 0.0], requires_grad=True)
    w = inverse_loss_weights(losses, lam=0.0)
    assert torch.equal(w, torch.ones(3))
    assert not w.requires_grad
    # a zero loss is clamped, not inf
    assert torch.isfinite(inverse_loss_weights(losses, lam=0.5)).all()


def test_weighted_ascent_lam_zero_is_plain_ga():
    torch.manual_seed(0)
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(weighted_ascent_loss(logits, y, 0.0), -F.cross_entropy(logits, y))


def test_weighted_ascent_gradient_treats_weights_as_constants():
    torch.manual_seed(1)
    logits = torch.randn(6, 4, requires_grad=True)
    y = torch.randint(0, 4, (6,))
    weighted_ascent_loss(logits, y, 0.5).backward()
    per = F.cross_entropy(logits.detach(), y, reduction="none")
    w = inverse_loss_weights(per, 0.5)
    ref_logits = logits.detach().clone().requires_grad_(True)
    (-(w * F.cross_entropy(ref_logits, y, reduction="none")).mean()).backward()
    assert torch.allclose(logits.grad, ref_logits.grad)
    # ascent: following -grad increases the CE
    with torch.no_grad():
        stepped = logits - 0.1 * logits.grad
    assert F.cross_entropy(stepped, y) > F.cross_entropy(logits.detach(), y)


def test_remove_classes_target_zero_mass_and_rows_sum_to_one():
    torch.manual_seed(2)
    probs = F.softmax(torch.randn(16, 6), dim=1)
    q = remove_classes_target(probs, [1, 4])
    assert torch.equal(q[:, [1, 4]], torch.zeros(16, 2))
    assert torch.allclose(q.sum(1), torch.ones(16))
    # the kept classes keep their relative proportions
    kept = [0, 2, 3, 5]
    ref = probs[:, kept] / probs[:, kept].sum(1, keepdim=True)
    assert torch.allclose(q[:, kept], ref)


def test_remove_classes_target_empty_row_becomes_uniform_over_remaining():
    probs = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    q = remove_classes_target(probs, [1], num_classes_seen=3)
    assert torch.equal(q[0], torch.tensor([0.5, 0.0, 0.5, 0.0]))
    assert torch.allclose(q[1], torch.tensor([0.5, 0.0, 0.5, 0.0]))
    q2 = remove_classes_target(probs, [1], num_classes_seen=[0, 1, 3])
    assert torch.equal(q2[:, 2], torch.zeros(2))
    assert torch.allclose(q2.sum(1), torch.ones(2))


def test_remove_classes_target_rejects_removing_everything():
    with pytest.raises(ValueError):
        remove_classes_target(torch.full((1, 2), 0.5), [0, 1])
    with pytest.raises(ValueError):
        remove_classes_target(torch.full((1, 2), 0.5), [5])


def test_tempered_target():
    logits = torch.tensor([[3.0, 1.0, -2.0]])
    assert torch.allclose(tempered_target(logits, 1.0), F.softmax(logits, 1))
    hot = tempered_target(logits, 1000.0)
    assert torch.allclose(hot, torch.full_like(hot, 1 / 3), atol=1e-3)
    with pytest.raises(ValueError):
        tempered_target(logits, 0.0)


def _conf(logits, t=1.0):
    return F.softmax(logits / t, 1).max(1).values.mean().item()


def test_calibrate_temperature_matches_validation_confidence():
    g = torch.Generator().manual_seed(3)
    forget = 8.0 * torch.randn(64, 10, generator=g)  # overconfident
    val = 1.5 * torch.randn(64, 10, generator=g)
    assert _conf(forget) > _conf(val)
    t = calibrate_temperature(forget, val)
    assert 1.0 < t < 100.0
    assert abs(_conf(forget, t) - _conf(val)) < 1e-3


def test_calibrate_temperature_returns_one_when_not_overconfident():
    g = torch.Generator().manual_seed(4)
    forget = 0.5 * torch.randn(32, 10, generator=g)
    val = 5.0 * torch.randn(32, 10, generator=g)
    assert calibrate_temperature(forget, val) == 1.0


def test_kl_proxy_loss():
    torch.manual_seed(5)
    logits = torch.randn(8, 5, requires_grad=True)
    assert kl_proxy_loss(logits, F.softmax(logits, 1)).item() == pytest.approx(0.0, abs=1e-6)
    q = remove_classes_target(F.softmax(logits, 1), [0])
    loss = kl_proxy_loss(logits, q)
    ref = F.kl_div(F.log_softmax(logits, 1), q, reduction="batchmean")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # descent moves mass off the removed class
    with torch.no_grad():
        stepped = logits - 1.0 * logits.grad
    assert F.softmax(stepped, 1)[:, 0].mean() < F.softmax(logits, 1)[:, 0].mean()


def test_cross_entropy_is_mean_ce():
    logits, y = torch.tensor([[0.0, 0.0]]), torch.tensor([1])
    assert cross_entropy(logits, y).item() == pytest.approx(math.log(2))


# ---------------------------------------------------------------------------------------- random labels


def _chi_square(counts: list[int], expected: float) -> float:
    return sum((c - expected) ** 2 / expected for c in counts)


def test_random_labels_true_label_outside_the_pool_draws_every_class():
    """A forgotten class (class / cross-task requests): every retained class, the highest included."""
    out = random_labels(torch.full((20000,), 4), [0, 1, 2, 3, 5], torch.Generator().manual_seed(0))
    c = torch.bincount(out, minlength=6).tolist()
    assert c[4] == 0 and all(c[k] > 0 for k in (0, 1, 2, 3, 5)), c
    # uniform over 5 classes: chi-square with 4 degrees of freedom below its 1e-6 upper quantile (a class
    # never drawn would give ~4000)
    assert _chi_square([c[k] for k in (0, 1, 2, 3, 5)], 20000 / 5) < 33.38, c


def test_random_labels_true_label_in_the_pool_is_never_drawn_and_the_rest_are_uniform():
    """A random-sample request: the own label is excluded, the other len - 1 classes equally likely."""
    out = random_labels(torch.full((20000,), 2), [5, 0, 3, 2, 1], torch.Generator().manual_seed(1))
    c = torch.bincount(out, minlength=6).tolist()
    assert c[2] == 0 and c[4] == 0, c
    assert _chi_square([c[k] for k in (0, 1, 3, 5)], 20000 / 4) < 30.66, c  # 3 degrees of freedom, 1e-6
    for own in (0, 5):  # the lowest and the highest class of the pool
        c = torch.bincount(random_labels(torch.full((8000,), own), [0, 1, 2, 5], torch.Generator().manual_seed(2)),
                           minlength=6).tolist()
        assert c[own] == 0 and all(c[k] > 2000 for k in {0, 1, 2, 5} - {own}), (own, c)


def test_random_labels_mixed_batch_are_wrong_and_in_the_pool():
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 10, (5000,), generator=g)
    pool = [1, 4, 6, 7, 9]
    out = random_labels(y, pool, g)
    assert out.shape == y.shape and out.dtype == torch.long
    assert set(out.tolist()) == set(pool)
    assert not (out == y).any()


def test_random_labels_single_class_pool_and_empty_pool():
    g = torch.Generator().manual_seed(0)
    assert random_labels(torch.tensor([3, 1, 3]), [3], g).tolist() == [3, 3, 3]  # no wrong label to give
    with pytest.raises(ValueError):
        random_labels(torch.tensor([1]), [], g)


def test_random_labels_follow_the_generator_on_every_device():
    y = torch.randint(0, 6, (300,), generator=torch.Generator().manual_seed(4))
    pool = [0, 2, 3, 5]
    first = random_labels(y, pool, torch.Generator().manual_seed(9))
    assert torch.equal(first, random_labels(y, pool, torch.Generator().manual_seed(9)))  # same seed, same labels
    assert not torch.equal(first, random_labels(y, pool, torch.Generator().manual_seed(10)))
    g = torch.Generator().manual_seed(9)
    random_labels(y, pool, g)
    assert not torch.equal(first, random_labels(y, pool, g))  # the generator advances
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:  # drawn on the CPU generator: the same labels on any device, returned there
        out = random_labels(y.to(device), pool, torch.Generator().manual_seed(9))
        assert out.device.type == device and torch.equal(out.cpu(), first)
