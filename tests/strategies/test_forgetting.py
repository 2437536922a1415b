"""The unlearn term (DESIGN §6): kl_proxy targets, the balanced mask, weighted ascent, ugclu's ablation switches."""

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
from clu.strategies import StrategyChoice, strategy_config
from clu.strategies.forgetting import ForgetConfig, ForgetTerm
from clu.strategies.ugclu import UGCLUConfig
from clu.update import cross_entropy, mask_ratio
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
    strategy.model.train()
    strategy.buffer.remove(request.sample_ids)
    strategy.known_classes.difference_update(request.target_classes)
    return strategy, request


def _ce(strategy, ids) -> float:
    with torch.no_grad():
        x, y = strategy.batch(torch.tensor(ids))
        return float(cross_entropy(strategy.logits(x, y), y))


def test_kl_proxy_targets_put_no_mass_on_forgotten_or_unseen_classes(trained):
    strategy, request = trained
    term = ForgetTerm(strategy, request, ForgetConfig(forget_loss="kl_proxy", mask="none"))
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


def test_balanced_mask_is_partial_on_a_trained_model(trained):
    strategy, request = trained
    term = ForgetTerm(strategy, request, ForgetConfig(mask="balanced"))
    assert term.mask is not None
    assert set(term.mask) == {n for n, _ in strategy.model.named_parameters()}
    ratio = mask_ratio(term.mask)
    assert 0.0 < ratio < 1.0, ratio
    for n, p in strategy.model.named_parameters():
        assert term.mask[n].shape == p.shape


def test_topk_mask_keeps_the_asked_fraction(trained):
    strategy, request = trained
    term = ForgetTerm(strategy, request, ForgetConfig(mask="topk", sparsity=0.75))
    assert term.mask is not None
    assert mask_ratio(term.mask) == pytest.approx(0.25, abs=0.02)
    assert ForgetTerm(strategy, request, ForgetConfig(mask="none")).mask is None


def test_ga_weighted_step_increases_ce_on_the_forget_set(trained):
    strategy, request = trained
    term = ForgetTerm(strategy, request, ForgetConfig(forget_loss="ga_weighted", mask="none", alpha_u=1.0))
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
    term = ForgetTerm(strategy, request, ForgetConfig(forget_loss="ga_weighted", mask="balanced"))
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
    term = ForgetTerm(strategy, request, ForgetConfig(forget_loss="kl_proxy", mask="none"))
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
    "learn_mask": ({"learn_mask": True}, "default"),
    "proportional": ({"coefficients": "proportional"}, "default"),
    "early_stop": ({"early_stop": True}, None),
}


def test_ugclu_config_has_the_ablation_switches():
    names = {f.name for f in fields(UGCLUConfig)}
    assert {"mask", "adaptive_weights", "forget_loss", "order", "learn_mask", "coefficients", "early_stop"} <= names
    for overrides, _ in ABLATIONS.values():
        cfg = strategy_config("ugclu", overrides)
        assert all(getattr(cfg, k) == v for k, v in overrides.items())
    with pytest.raises(ConfigError, match="mask"):
        strategy_config("ugclu", {"mask": "sometimes"})
    with pytest.raises(ConfigError, match="order"):
        strategy_config("ugclu", {"order": "slow_fast"})


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


def test_ugclu_serves_a_request_attached_to_a_learn_task():
    spec = scenario_from_dict(tomllib.loads(TINY.replace("[[schedule.rules]]", "[schedule]\nattach = true\n\n[[schedule.rules]]")))
    steps = group_steps(events_for(spec, spec.seed))
    assert [s.kind for s in steps] == ["learn", "learn", "learn+class", "class"]
    strategy = build_strategy(ugclu(), spec, DATA, spec.seed, CPU)
    records = list(run_events(strategy, steps, DATA, seed=spec.seed))
    assert strategy.pending is None  # the attached term ends with its learn task
    gone = set(steps[2].unlearn.sample_ids) | set(steps[3].unlearn.sample_ids)
    assert not gone & set(strategy.buffer.ids())
    assert records[2].values["NA"] is not None and records[2].values["FA"] is not None
