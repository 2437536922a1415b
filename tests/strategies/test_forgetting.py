"""The unlearn term (DESIGN §6): kl_proxy targets, the masks, weighted ascent, ugclu's recipe and ablation switches."""

from __future__ import annotations

import tomllib
from dataclasses import fields

import pytest
import torch

from clu.config import ConfigError
from clu.data import load_dataset
from clu.driver import build_strategy, run_events
from clu.events import UnlearnRequest
from clu.events import steps as group_steps
from clu.scenario import events_for, scenario_from_dict
from clu.strategies import ForgetConfig, StrategyChoice, UGCLUConfig, strategy_config
from clu.strategies.forgetting import (
    ForgetTerm,
    attached_coefficient,
    forget_mask,
    looks_unseen,
    proxy_targets,
    silence_head_rows,
)
from clu.strategies.ugclu import unlearn_term
from clu.update import cross_entropy, mask_ratio, salun_mask
from tiny import TINY

CPU = torch.device("cpu")
torch.set_num_threads(1)
SPEC = scenario_from_dict(tomllib.loads(TINY), "tiny.toml")
DATA = load_dataset(SPEC.data)
STEPS = group_steps(events_for(SPEC, SPEC.seed))
SHORT = {"unlearn_iters": 10}


def ugclu(**overrides):
    return StrategyChoice("ugclu", "ugclu", strategy_config("ugclu", {**SHORT, **overrides}))


@pytest.fixture
def trained():
    """ugclu after the first two learn tasks, with the class request of step 2 purged (as ``unlearn`` does)."""
    strategy = build_strategy(ugclu(), SPEC, DATA, SPEC.seed, CPU)
    list(run_events(strategy, STEPS[:2], DATA, seed=SPEC.seed))
    request = STEPS[2].unlearn
    assert request is not None and request.kind == "class" and STEPS[2].learn is None
    strategy.purge(request)
    assert not set(request.sample_ids) & set(strategy.buffer.ids())
    return strategy, request


def _ce(strategy, ids) -> float:
    with torch.no_grad():
        x, y = strategy.batch(torch.tensor(ids))
        return float(cross_entropy(strategy.logits(x, y), y))


def test_kl_proxy_targets_put_no_mass_on_forgotten_or_unseen_classes(trained):
    strategy, request = trained
    term = unlearn_term(strategy, request, ForgetConfig(forget_loss="kl_proxy", mask="none"))
    q = term.targets
    assert q is not None and q.shape == (len(request.sample_ids), DATA.num_classes)
    assert torch.equal(term.ids, torch.tensor(sorted(request.sample_ids)))
    torch.testing.assert_close(q.sum(1), torch.ones(len(q), dtype=q.dtype))
    forgotten = list(request.target_classes)
    assert (q[:, forgotten] == 0).all()
    unseen = [c for c in range(DATA.num_classes) if c not in strategy.known_classes and c not in forgotten]
    assert unseen and (q[:, unseen] == 0).all()  # the oracle never saw those either
    kept = sorted(strategy.known_classes)
    assert (q[:, kept] > 0).all()  # the model's own (renormalised) uncertainty over what remains
    # descent on KL(q || p) at the start: p still puts mass on the forgotten class, so the loss is > 0
    assert float(term.loss().detach()) > 0


def _mask(strategy, request, cfg: ForgetConfig, retain_ids=None):
    ids = torch.tensor(request.sample_ids)
    retain = strategy.buffer_ids() if retain_ids is None else retain_ids
    return forget_mask(cfg, lambda i: strategy.fisher(i, cfg.fisher_batches), strategy.saliency, ids, retain)


def test_balanced_mask_is_partial_on_a_trained_model(trained):
    strategy, request = trained
    mask = _mask(strategy, request, ForgetConfig(mask="balanced"))
    assert mask is not None
    assert set(mask) == {n for n, _ in strategy.model.named_parameters()}
    ratio = mask_ratio(mask)
    assert 0.0 < ratio < 1.0, ratio
    for n, p in strategy.model.named_parameters():
        assert mask[n].shape == p.shape
    assert unlearn_term(strategy, request, ForgetConfig(mask="balanced")).mask is not None


def test_topk_mask_is_salun_s_mask_and_no_mask_is_none(trained):
    strategy, request = trained
    ids = torch.tensor(request.sample_ids)

    def no_fisher(_ids):
        raise AssertionError("the topk mask ranks saliency, not the Fisher")

    mask = forget_mask(ForgetConfig(mask="topk", sparsity=0.75), no_fisher, strategy.saliency, ids, strategy.buffer_ids())
    assert mask is not None
    assert mask_ratio(mask) == pytest.approx(0.25, abs=0.02)
    # SalUn's ranking by hand: |∇ mean CE(D_U)| in eval mode (D_U is one mini-batch of 256 here)
    assert len(ids) <= 256
    x, y = strategy.batch(ids)
    expected = salun_mask(strategy.model.eval(), [cross_entropy(strategy.logits(x, y), y)], 0.75)
    strategy.model.train()
    assert set(mask) == set(expected) and all(torch.equal(mask[n], expected[n]) for n in mask)
    assert _mask(strategy, request, ForgetConfig(mask="none")) is None
    # nothing to balance against: every parameter may move
    assert _mask(strategy, request, ForgetConfig(mask="balanced"), torch.empty(0, dtype=torch.long)) is None


def test_proxy_targets_by_request_kind():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1e4], [0.0, 3.0, 1.0, -1e4]])
    cls = UnlearnRequest(3, "class", (0,), (5, 6), 0)
    q = proxy_targets(logits, cls, known_classes={1, 2}, task_aware=False, val_logits=lambda: 1 / 0)
    assert (q[:, [0, 3]] == 0).all() and torch.allclose(q.sum(1), torch.ones(2))  # forgotten and unseen: no mass
    task = UnlearnRequest(3, "task", (0, 1, 2), (5, 6), 0, 0)
    q = proxy_targets(logits, task, known_classes={1, 2}, task_aware=True, val_logits=lambda: 1 / 0)
    assert torch.equal(q, torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]] * 2))  # uniform over the sample's task
    rnd = UnlearnRequest(3, "random_sample", (), (5, 6), 0)
    q = proxy_targets(logits, rnd, known_classes={0, 1, 2}, task_aware=False, val_logits=lambda: torch.zeros(3, 4))
    assert torch.equal(q.argmax(1), logits.argmax(1)) and torch.allclose(q.sum(1), torch.ones(2))


def test_silence_head_rows_zeroes_the_rows_and_their_optimizer_state():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 5))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    first = model[0].weight.detach().clone()
    silence_head_rows(model, opt, (1, 3))
    head = model[2]
    for p in (head.weight, head.bias):
        assert (p[[1, 3]] == 0).all() and (p[[0, 2, 4]] != 0).any()
        assert (opt.state[p]["momentum_buffer"][[1, 3]] == 0).all()
    assert torch.equal(model[0].weight, first)  # only the output layer


def test_looks_unseen_compares_the_forget_and_validation_losses():
    losses = {1: 0.5, 2: 0.7}
    mean_ce = lambda ids: losses[int(ids[0])]  # noqa: E731
    assert not looks_unseen(mean_ce, torch.tensor([1]), torch.tensor([2]))
    assert looks_unseen(mean_ce, torch.tensor([2]), torch.tensor([1]))
    assert not looks_unseen(mean_ce, torch.tensor([2]), torch.empty(0))  # no validation data: never stop


def test_ga_weighted_step_increases_ce_on_the_forget_set(trained):
    strategy, request = trained
    term = unlearn_term(strategy, request, ForgetConfig(forget_loss="ga_weighted", mask="none", alpha_u=1.0))
    assert term.targets is None
    assert float(term.loss().detach()) < 0  # ascent: minus a (weighted) cross-entropy
    ids = list(request.sample_ids)
    before = _ce(strategy, ids)
    for t in range(3):
        strategy.step([term.term(t, 3)])
    after = _ce(strategy, ids)
    assert after > before, (before, after)


def test_masked_unlearn_step_leaves_masked_out_weights_bit_identical(trained):
    strategy, request = trained
    term = unlearn_term(strategy, request, ForgetConfig(forget_loss="ga_weighted", mask="balanced"))
    before = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}
    strategy.step([term.term(0, 1)])
    moved = False
    for n, p in strategy.model.named_parameters():
        frozen = term.mask[n] == 0
        assert torch.equal(p.detach()[frozen], before[n][frozen]), n
        moved |= not torch.equal(p.detach()[~frozen], before[n][~frozen])
    assert moved


def test_kl_proxy_random_sample_targets_are_tempered(trained):
    strategy, _ = trained
    retained = sorted(set(STEPS[0].learn.sample_ids) - set(STEPS[2].unlearn.sample_ids))[:40]
    request = UnlearnRequest(2, "random_sample", (), tuple(retained), 9)
    term = unlearn_term(strategy, request, ForgetConfig(forget_loss="kl_proxy", mask="none"))
    with torch.no_grad():
        x, y = strategy.batch(term.ids)
        own = torch.softmax(strategy.logits(x, y), 1)
    q = term.targets
    torch.testing.assert_close(q.sum(1), torch.ones(len(q), dtype=q.dtype))
    # q = softmax(logits / T) with T >= 1: never more confident than the model itself
    assert float(q.max(1).values.mean()) <= float(own.max(1).values.mean()) + 1e-6
    assert torch.equal(q.argmax(1), own.argmax(1))


# --------------------------------------------------------------------------------- ugclu ablations

ABLATIONS = {
    # name: (overrides, the run it must differ from)
    "mask_none": ({"mask": "none"}, "default"),
    "mask_topk": ({"mask": "topk"}, "default"),
    "ga_weighted": ({"forget_loss": "ga_weighted"}, "default"),
    "plain_ascent": ({"forget_loss": "ga_weighted", "adaptive_weights": False}, "ga_weighted"),
    "order_joint": ({"order": "joint"}, "default"),
    "learner_joint": ({"learner": "joint"}, "default"),
    "learn_mask": ({"learn_mask": True}, "default"),
    "proportional": ({"coefficients": "proportional"}, "default"),
    "early_stop": ({"early_stop": True}, None),
}


def test_ugclu_config_has_the_ablation_switches():
    names = {f.name for f in fields(UGCLUConfig)}
    assert {"mask", "adaptive_weights", "forget_loss", "order", "learner", "learn_mask", "coefficients",
            "early_stop"} <= names
    for overrides, _ in ABLATIONS.values():
        cfg = strategy_config("ugclu", overrides)
        assert all(getattr(cfg, k) == v for k, v in overrides.items())
    with pytest.raises(ConfigError, match="mask"):
        strategy_config("ugclu", {"mask": "sometimes"})
    with pytest.raises(ConfigError, match="order"):
        strategy_config("ugclu", {"order": "slow_fast"})
    with pytest.raises(ConfigError, match="learner"):
        strategy_config("ugclu", {"learner": "slow_fast"})


_FINAL: dict[str, dict[str, torch.Tensor]] = {}


def _final_weights(name: str) -> dict[str, torch.Tensor]:
    if name not in _FINAL:
        overrides = {} if name == "default" else ABLATIONS[name][0]
        strategy = build_strategy(ugclu(**overrides), SPEC, DATA, SPEC.seed, CPU)
        forgotten: set[int] = set()
        for step, rec in zip(STEPS, run_events(strategy, STEPS, DATA, seed=SPEC.seed)):
            if step.unlearn is not None:
                forgotten |= set(step.unlearn.sample_ids)
            assert not forgotten & set(strategy.buffer.ids())
            assert rec.values["TA"] is not None and 0 <= rec.values["TA"] <= 1
        _FINAL[name] = {k: v.detach().clone() for k, v in strategy.model.state_dict().items()}
    return _FINAL[name]


@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_each_ugclu_ablation_runs_and_takes_effect(ablation):
    weights = _final_weights(ablation)
    assert all(torch.isfinite(w).all() for w in weights.values())
    reference = ABLATIONS[ablation][1]
    if reference is not None:  # a switch that is silently ignored would leave the weights bit-identical
        other = _final_weights(reference)
        assert any(not torch.equal(weights[k], other[k]) for k in weights), f"{ablation} changed nothing"


def test_ugclu_serves_a_request_attached_to_a_learn_task(monkeypatch):
    attached = TINY.replace("[[schedule.rules]]", "[schedule]\nattach = true\n\n[[schedule.rules]]")
    spec = scenario_from_dict(tomllib.loads(attached))
    steps = group_steps(events_for(spec, spec.seed))
    assert [s.kind for s in steps] == ["learn", "learn", "learn+class", "class"]
    strategy = build_strategy(ugclu(), spec, DATA, spec.seed, CPU)
    calls: list[int] = []
    loss = ForgetTerm.loss
    monkeypatch.setattr(ForgetTerm, "loss", lambda self: calls.append(strategy.t) or loss(self))
    records = list(run_events(strategy, steps[:3], DATA, seed=spec.seed))
    # the attached term enters the iterations attached_coefficient gives: the unlearn-only forget steps, spread
    total = spec.training.epochs * -(-len(steps[2].learn.sample_ids) // spec.training.batch_size)
    expected = [t for t in range(total) if attached_coefficient(strategy.cfg, t, total) > 0]
    assert calls == expected and calls[0] == 0 and len(calls) == min(total, -(-strategy.cfg.unlearn_iters //
                                                                             strategy.cfg.forget_freq))
    assert strategy.forget_term is None  # the attached term ends with its learn task
    records += list(run_events(strategy, steps, DATA, seed=spec.seed, start=3))
    gone = set(steps[2].unlearn.sample_ids) | set(steps[3].unlearn.sample_ids)
    assert not gone & set(strategy.buffer.ids())
    assert records[2].values["NA"] is not None and records[2].values["FA"] is not None


@pytest.mark.parametrize("total", [3, 7, 40, 45, 200])
def test_an_attached_request_gets_the_total_forget_step_of_an_unlearn_only_one(total: int) -> None:
    from clu.strategies.configs import UGCLUConfig
    from clu.update import cosine_coefficient

    cfg = UGCLUConfig(unlearn_iters=100, forget_freq=5, alpha_u=10.0, unlearn_lr=0.01, lr=0.05)
    alone = sum(cosine_coefficient(10.0, j, 100) * cosine_coefficient(0.01, j, 100) for j in range(0, 100, 5))
    coefs = [attached_coefficient(cfg, t, total) for t in range(total)]
    assert sum(coefs) * cfg.lr == pytest.approx(alone)  # the same step mass, rescaled to the learn lr
    assert sum(c > 0 for c in coefs) == min(total, 20)  # spread evenly: one forget step per iteration at most
    assert coefs[0] == pytest.approx(max(coefs))  # the cosine decay starts at the task's first iteration


def test_the_every_iteration_ablation_is_the_attached_schedule_before_the_fix() -> None:
    cfg = strategy_config("ugclu", {"attached_schedule": "every_iteration", "alpha_u": 10.0})
    coefs = [attached_coefficient(cfg, t, 40, cfg.attached_schedule) for t in range(40)]
    assert coefs[0] == 10.0 and all(c > 0 for c in coefs) and coefs == sorted(coefs, reverse=True)
    assert sum(c > 0 for c in (attached_coefficient(cfg, t, 400) for t in range(400))) < 400  # spread: not all
    with pytest.raises(ConfigError, match="attached_schedule"):
        strategy_config("ugclu", {"attached_schedule": "sometimes"})
