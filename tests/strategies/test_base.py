"""The template's measuring passes (Fisher, saliency, eval logits) run in eval mode: BatchNorm's running
statistics never see the forget set (SFR-on and SalUn compute their masks in eval mode)."""

from __future__ import annotations

import tomllib

import pytest
import torch
from torch import nn

from clu.data import load_dataset
from clu.driver import build_strategy, run_events
from clu.events import steps as group_steps
from clu.scenario import events_for, scenario_from_dict
from clu.strategies import ForgetConfig, StrategyChoice, strategy_config
from clu.strategies.base import eval_mode
from clu.strategies.ugclu import unlearn_term
from clu.update import fisher_diagonal
from tiny import TINY

CPU = torch.device("cpu")
torch.set_num_threads(1)
CNN = TINY.replace('name = "mlp"\nhidden = [32]', 'name = "cnn"\nwidth = 4')
"""The tiny scenario on the small CNN (BatchNorm after each convolution)."""
SPEC = scenario_from_dict(tomllib.loads(CNN), "tiny-cnn.toml")
DATA = load_dataset(SPEC.data)
STEPS = group_steps(events_for(SPEC, SPEC.seed))


def test_eval_mode_restores_every_module_s_own_mode_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    model[1].eval()  # mixed modes: model.train() afterwards would lose this
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False, True]
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError
    assert [m.training for m in model.modules()] == [True, True, False, True]


def _after_two_tasks(name: str, **overrides):
    """``name`` on the CNN after the first two learn tasks, with the class request of step 2 purged."""
    strategy = build_strategy(StrategyChoice(name, name, strategy_config(name, overrides)), SPEC, DATA, SPEC.seed, CPU)
    list(run_events(strategy, STEPS[:2], DATA, seed=SPEC.seed))
    request = STEPS[2].unlearn
    assert request is not None and request.kind == "class"
    strategy.purge(request)
    return strategy, request


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {n: b.detach().clone() for n, b in model.named_buffers()}
    assert any(n.endswith("running_mean") for n in state) and any(n.endswith("num_batches_tracked") for n in state)
    return state


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(b, before[n]) for n, b in model.named_buffers())


@pytest.fixture(scope="module")
def ugclu_cnn():
    return _after_two_tasks("ugclu")


@pytest.mark.parametrize("mask", ["balanced", "topk"])
def test_ugclu_mask_set_up_leaves_batchnorm_statistics_alone(ugclu_cnn, mask):
    strategy, request = ugclu_cnn
    before = _bn_state(strategy.model)
    term = unlearn_term(strategy, request, ForgetConfig(mask=mask))  # the mask, then kl_proxy's targets
    assert term.mask is not None
    assert _unchanged(strategy.model, before)
    assert strategy.model.training  # back in train mode for the unlearning steps


def test_the_batchnorm_check_is_not_vacuous(ugclu_cnn):
    """The same Fisher pass in train mode does move the running statistics."""
    strategy, request = ugclu_cnn
    before = _bn_state(strategy.model)
    fisher_diagonal(strategy.model, [strategy.batch(torch.tensor(request.sample_ids[:64]))])
    assert not _unchanged(strategy.model, before)


def test_er_salun_mask_leaves_batchnorm_statistics_alone(monkeypatch):
    strategy, request = _after_two_tasks("er_salun", unlearn_iters=10)
    masks = []
    monkeypatch.setattr(strategy, "unlearn_phase", lambda iters, lr, fast, slow, **kw: masks.append(fast(0)[0].mask))
    before = _bn_state(strategy.model)
    strategy.forget(request)  # the saliency pass; the (stubbed) phase records the mask it was given
    assert len(masks) == 1 and masks[0] is not None
    assert _unchanged(strategy.model, before)
    assert strategy.model.training
