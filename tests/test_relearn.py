"""The relearning attack (clu.relearn): its seeded split, its own random stream, the copy it throws away, and
what it measures; on the driver: the run's own records and weights are the same with the attack on or off."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch
from torch import nn

from clu.config import ConfigError
from clu.data import load_dataset
from clu.data.base import Dataset
from clu.driver import build_strategy, run_events
from clu.events import steps as group_steps
from clu.relearn import Relearn, relearn_fa, relearn_rng, split_forgotten, task_head
from clu.scenario import events_for, scenario_from_dict
from clu.specs import EvaluationSpec
from clu.strategies import StrategyChoice, strategy_config
from tiny import TINY

CPU = torch.device("cpu")
torch.set_num_threads(1)

# a separable two-feature problem: class c at (c, c) ± noise; 3 classes, 40 train samples each
_RNG = np.random.default_rng(0)
_Y = np.repeat(np.arange(3), 40)
_X = (_Y[:, None] * 2.0 + _RNG.normal(0, 0.3, (120, 2))).astype(np.float32)
DATA = Dataset("hand", torch.from_numpy(_X), torch.from_numpy(_Y), torch.from_numpy(_X[:6]),
               torch.from_numpy(_Y[:6]), np.array([], dtype=np.int64), 3)
FORGOTTEN = tuple(range(80, 120))  # class 2


def attack(fraction: float = 0.25, epochs: int = 1, lr: float = 0.5, batch_size: int = 4, seed: int = 0) -> Relearn:
    return Relearn(fraction, epochs, lr, batch_size, seed)


def blind_model() -> nn.Module:
    """A linear model that separates classes 0 and 1 and never predicts 2 (its bias is far down)."""
    torch.manual_seed(0)
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
        model.bias.copy_(torch.tensor([2.0, 0.0, -20.0]))
    return model


# --------------------------------------------------------------------------------------- the split


def test_split_is_seeded_disjoint_and_leaves_something_to_measure():
    fit, rest = split_forgotten(FORGOTTEN, 0.1, relearn_rng(0, 4))
    again = split_forgotten(reversed(FORGOTTEN), 0.1, relearn_rng(0, 4))
    assert np.array_equal(fit, again[0]) and np.array_equal(rest, again[1])
    assert len(fit) == 4 and len(rest) == 36 and not set(fit) & set(rest)
    assert sorted([*fit, *rest]) == list(FORGOTTEN) and list(fit) == sorted(fit)
    other_event = split_forgotten(FORGOTTEN, 0.1, relearn_rng(0, 5))[0]
    other_seed = split_forgotten(FORGOTTEN, 0.1, relearn_rng(1, 4))[0]
    assert not np.array_equal(fit, other_event) and not np.array_equal(fit, other_seed)
    assert [len(p) for p in split_forgotten((1, 2), 0.01, relearn_rng(0, 0))] == [1, 1]  # at least one each
    assert [len(p) for p in split_forgotten((1, 2, 3), 0.99, relearn_rng(0, 0))] == [2, 1]
    assert [len(p) for p in split_forgotten((7,), 0.5, relearn_rng(0, 0))] == [0, 0]


# ------------------------------------------------------------------------------------------ attack


def test_the_attack_relearns_what_the_model_only_hides():
    model = blind_model()
    x, y = DATA.train_batch(np.array(FORGOTTEN))
    assert float((model(x).argmax(1) == y).float().mean()) == 0.0  # FA = 0
    value = relearn_fa(model, DATA, FORGOTTEN, attack(epochs=3), step=4, device=CPU)
    assert value is not None and value > 0.9
    weak = relearn_fa(model, DATA, FORGOTTEN, attack(lr=1e-4), step=4, device=CPU)
    assert weak == 0.0
    assert relearn_fa(model, DATA, FORGOTTEN[:1], attack(), step=4, device=CPU) is None


def test_the_copy_is_thrown_away_and_no_run_stream_is_drawn():
    model = blind_model().eval()
    before = [p.detach().clone() for p in model.parameters()]
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    gen = torch.Generator().manual_seed(3)
    gen_state = gen.get_state()
    a = relearn_fa(model, DATA, FORGOTTEN, attack(), step=4, device=CPU)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters()) and not model.training
    assert torch.equal(torch.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(gen.get_state(), gen_state)
    assert relearn_fa(model, DATA, FORGOTTEN, attack(), step=4, device=CPU) == a  # deterministic


def test_task_head_masks_to_each_samples_task():
    head = task_head([(0, 1), (2,)], 3, CPU)
    out = head(torch.zeros(2, 3), torch.tensor([1, 2]))
    assert out[0].tolist() == [0.0, 0.0, -1e4] and out[1].tolist() == [-1e4, -1e4, 0.0]


def test_settings_from_the_evaluation_table():
    assert Relearn.of(EvaluationSpec(), 32, 7) == Relearn(0.1, 1, 0.05, 32, 7)
    assert Relearn.of(EvaluationSpec(relearn_fraction=0.0), 32, 7) is None
    base = {"name": "x", "data": {"name": "digits"}}
    table = {"relearn_fraction": 0.2, "relearn_epochs": 2, "relearn_lr": 0.01}
    spec = scenario_from_dict({**base, "evaluation": table}, "s.toml")
    assert Relearn.of(spec.evaluation, 16, 0) == Relearn(0.2, 2, 0.01, 16, 0)
    for key, bad in (("relearn_fraction", 1.0), ("relearn_fraction", -0.1), ("relearn_epochs", 0), ("relearn_lr", 0),
                     ("relearn_epochs", 1.5), ("relearn", True)):
        with pytest.raises(ConfigError) as e:
            scenario_from_dict({**base, "evaluation": {key: bad}}, "s.toml")
        assert f"evaluation.{key}" in str(e.value) and "s.toml" in str(e.value)


# ------------------------------------------------------------------------------------------ driver


def test_the_run_is_the_same_with_the_attack_on_or_off():
    """The attack adds Relearn_FA at the request events and the last one, and changes nothing else: not the
    other measurements, not the weights, not the strategy's random streams."""
    spec = scenario_from_dict(tomllib.loads(TINY), "tiny.toml")
    data = load_dataset(spec.data)
    steps = group_steps(events_for(spec, spec.seed))
    choice = StrategyChoice("er", "er", strategy_config("er", {}))
    runs = {}
    for on in (False, True):
        strategy = build_strategy(choice, spec, data, spec.seed, CPU)
        relearn = Relearn.of(spec.evaluation, spec.training.batch_size, spec.seed) if on else None
        runs[on] = strategy, list(run_events(strategy, steps, data, seed=spec.seed, relearn=relearn))
    (off, plain), (on, attacked) = runs[False], runs[True]
    assert [r.step for r in attacked if "Relearn_FA" in r.values] == [2, 4]  # the requests; 4 is also the last
    assert all(r.values["Relearn_FA"] is not None for r in attacked if "Relearn_FA" in r.values)
    for a, b in zip(plain, attacked):
        assert {k: v for k, v in b.values.items() if k != "Relearn_FA"} == a.values
        assert a.per_request == b.per_request and np.array_equal(a.margins.phi, b.margins.phi)
    assert all(torch.equal(p, q) for p, q in zip(off.model.parameters(), on.model.parameters()))
    assert torch.equal(off.gen.get_state(), on.gen.get_state())
    assert plain[-1].per_request.keys() == {0, 1}


# --------------------------------------------------------------------------------------- overrides


def test_relearn_fraction_flag_of_run_and_sweep(capsys):
    from clu.cli import main
    from clu.sweeps.plan import SweepRequest, plan_sweep

    assert main(["run", "digits-class", "--strategy", "er", "--relearn-fraction", "0", "--dry-run"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["scenario"]["evaluation"]["relearn_fraction"] == 0.0
    assert main(["run", "digits-class", "--strategy", "er", "--dry-run"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["scenario"]["evaluation"]["relearn_fraction"] == 0.1
    with pytest.raises(SystemExit) as e:
        main(["run", "--relearn-fraction", "1", "--dry-run"])
    assert e.value.code == 2 and "relearn-fraction" in capsys.readouterr().err
    plan = plan_sweep(SweepRequest(("digits-class",), ("er",), executor="serial", relearn_fraction=0.25))
    assert {tomllib.loads(t.config_toml)["scenario"]["evaluation"]["relearn_fraction"] for t in plan.trials} == {0.25}
    with pytest.raises(ConfigError, match="relearn-fraction"):
        plan_sweep(SweepRequest(("digits-class",), ("er",), executor="serial", relearn_fraction=1.5))
