import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clu.update.saliency import balanced_mask, fisher_diagonal, mask_ratio, salun_mask, topk_mask


def _linear():
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        m.bias.copy_(torch.tensor([0.1, -0.2]))
    return m


def test_fisher_matches_hand_computed_squared_gradient():
    m = _linear()
    batches = [
        (torch.tensor([[1.0, 2.0]]), torch.tensor([0])),
        (torch.tensor([[-1.0, 0.5]]), torch.tensor([1])),
    ]
    exp_w, exp_b = torch.zeros(2, 2), torch.zeros(2)
    for x, y in batches:
        p = F.softmax(x @ m.weight.detach().T + m.bias.detach(), 1)[0]
        d = p - F.one_hot(y, 2)[0].float()  # dCE/dlogits for one sample
        exp_w += torch.outer(d, x[0]) ** 2
        exp_b += d**2
    fisher = fisher_diagonal(m, batches)
    assert set(fisher) == {"weight", "bias"}
    assert torch.allclose(fisher["weight"], exp_w / 2)
    assert torch.allclose(fisher["bias"], exp_b / 2)


def test_fisher_leaves_grads_mode_and_works_under_no_grad():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m.eval()
    m[0].weight.grad = torch.full_like(m[0].weight, 7.0)
    batches = [(torch.randn(5, 3), torch.randint(0, 2, (5,)))]
    with torch.no_grad():
        fisher = fisher_diagonal(m, batches)
    assert not m.training
    assert torch.equal(m[0].weight.grad, torch.full_like(m[0].weight, 7.0))
    assert all(p.grad is None for n, p in m.named_parameters() if n != "0.weight")
    assert all(f.shape == p.shape for (n, p), f in zip(m.named_parameters(), fisher.values()))
    assert sum(f.sum() for f in fisher.values()) > 0
    with pytest.raises(ValueError):
        fisher_diagonal(m, [])


def test_fisher_skips_frozen_parameters():
    m = _linear()
    m.bias.requires_grad_(False)
    fisher = fisher_diagonal(m, [(torch.ones(1, 2), torch.tensor([0]))])
    assert set(fisher) == {"weight"}


def test_balanced_mask_on_hand_made_fishers():
    f_u = {"a": torch.tensor([1.0, 2.0, 0.0, 4.0]), "b": torch.tensor([[3.0, 0.5]])}
    f_r = {"a": torch.tensor([2.0, 2.0, 0.0, 1.0]), "b": torch.tensor([[1.0, 1.0]])}
    m = balanced_mask(f_u, f_r)
    assert torch.equal(m["a"], torch.tensor([0.0, 1.0, 1.0, 1.0]))  # 0/0 -> eps/eps = 1 >= 1
    assert torch.equal(m["b"], torch.tensor([[1.0, 0.0]]))
    assert mask_ratio(m) == pytest.approx(4 / 6)
    m2 = balanced_mask(f_u, f_r, gamma=2.5)
    assert mask_ratio(m2) == pytest.approx(2 / 6)  # 4/1 and 3/1
    with pytest.raises(KeyError):
        balanced_mask(f_u, {"a": f_r["a"]})


def test_topk_keeps_the_right_count_and_the_largest():
    g = {"a": torch.tensor([0.1, -5.0, 0.3]), "b": torch.tensor([[2.0, -0.2], [0.0, 1.0]])}
    m = topk_mask(g, sparsity=0.5)  # keep round(0.5 * 7) = 4 (3.5 rounds to 4)
    assert mask_ratio(m) == pytest.approx(4 / 7)
    assert torch.equal(m["a"], torch.tensor([0.0, 1.0, 1.0]))
    assert torch.equal(m["b"], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert mask_ratio(topk_mask(g, 0.0)) == 1.0
    assert mask_ratio(topk_mask(g, 1.0)) == 0.0


def test_topk_ties_are_deterministic():
    g = {"a": torch.ones(10), "b": torch.ones(5)}
    m = topk_mask(g, sparsity=0.6)  # keep 6 of 15 equal entries: the first six
    assert int(sum(v.sum() for v in m.values())) == 6
    assert torch.equal(m["a"], torch.tensor([1.0] * 6 + [0.0] * 4))
    assert torch.equal(m["b"], torch.zeros(5))
    assert all(torch.equal(m[k], topk_mask(g, 0.6)[k]) for k in m)


def test_salun_ranking_differs_from_the_square_root_of_the_fisher():
    """Gradients that cancel across batches: SalUn's |Σ∇| drops them, √Fisher (mean of squares) keeps them."""
    m = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        m.weight.zero_()  # p = (1/2, 1/2): ∇_W CE = (p - onehot(y)) xᵀ
    batches = [(torch.tensor([[1.0, 1.0]]), torch.tensor([0])), (torch.tensor([[-2.0, 1.0]]), torch.tensor([0]))]
    # column 0: gradients -0.5 then +1 (sum 0.5, mean square 0.625); column 1: -0.5 twice (sum 1, 0.25)
    salun = salun_mask(m, (F.cross_entropy(m(x), y) / 2 for x, y in batches), sparsity=0.5)
    fisher = topk_mask({n: f.sqrt() for n, f in fisher_diagonal(m, batches).items()}, sparsity=0.5)
    assert torch.equal(salun["weight"], torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert torch.equal(fisher["weight"], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


def test_salun_mask_ranks_the_summed_gradient_of_the_batch_losses():
    m = _linear()
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]])
    y = torch.tensor([0, 1, 1])
    parts = [(x[:2], y[:2]), (x[2:], y[2:])]
    losses = (F.cross_entropy(m(xb), yb) * len(yb) / len(y) for xb, yb in parts)  # they sum to the mean CE
    mask = salun_mask(m, losses, sparsity=0.5)
    grads = dict(zip(("weight", "bias"), torch.autograd.grad(F.cross_entropy(m(x), y), [m.weight, m.bias])))
    expected = topk_mask(grads, 0.5)
    assert set(mask) == {"weight", "bias"} and mask_ratio(mask) == pytest.approx(3 / 6)
    assert all(torch.equal(mask[k], expected[k]) for k in mask)
    assert m.weight.grad is None  # the model's .grad fields are left alone
