"""``[evaluation] split = "validation"`` (``clu tune``): TA, MIA and LiRA use the validation samples as the unseen
data, and the run never reads the test split."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from clu.config import ConfigError
from clu.data import DataSpec, load_dataset
from clu.evaluation import StreamState, attack_set, evaluate
from clu.events import LearnTask, Step
from clu.runconfig import resolve_config
from clu.scenario import load_scenario
from tiny import TINY

DIGITS = load_dataset(DataSpec(name="digits"))


def test_validation_as_test() -> None:
    v = DIGITS.validation_as_test()
    idx = torch.as_tensor(DIGITS.val_ids)
    assert torch.equal(v.x_test, DIGITS.x_train[idx]) and torch.equal(v.y_test, DIGITS.y_train[idx])
    assert v.x_train is DIGITS.x_train and np.array_equal(v.val_ids, DIGITS.val_ids)
    assert np.array_equal(v.learnable_ids, DIGITS.learnable_ids) and v.num_classes == DIGITS.num_classes


def test_ta_is_accuracy_on_validation_samples_of_retained_classes() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(DIGITS.input_shape)), DIGITS.num_classes))
    data = DIGITS.validation_as_test()
    y = DIGITS.train_labels
    ids = tuple(int(i) for i in DIGITS.learnable_ids[np.isin(y[DIGITS.learnable_ids], (0, 1, 2))])
    state = StreamState()
    step = Step(0, LearnTask(0, 0, (0, 1, 2), ids), None)
    state.apply(step)
    values, _, _ = evaluate(lambda x, _y: model(x), data, state, step, device=torch.device("cpu"), seed=0)
    val = DIGITS.val_ids[np.isin(y[DIGITS.val_ids], (0, 1, 2))]
    with torch.no_grad():
        pred = model(DIGITS.inputs(DIGITS.x_train[torch.as_tensor(val)])).argmax(1).numpy()
    assert values["TA"] == pytest.approx(float(np.mean(pred == y[val])))
    state.forgotten_ids, state.forgotten_classes = {ids[0]}, {int(y[ids[0]])}
    _, nonmembers = attack_set(state, data)  # the attack's non-members: validation samples of the class
    assert np.array_equal(DIGITS.val_ids[nonmembers], DIGITS.val_ids[y[DIGITS.val_ids] == y[ids[0]]])


def test_bad_split_names_file_key_and_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY + '[evaluation]\nsplit = "train"\n')
    with pytest.raises(ConfigError, match="'train' is not allowed") as e:
        load_scenario(path)
    assert e.value.file == str(path) and e.value.key == "evaluation.split"


def _poisoned(spec: DataSpec):  # noqa: ANN202 - a load_dataset stand-in
    data = load_dataset(spec)
    return dataclasses.replace(data, x_test=-data.x_test, y_test=(data.y_test + 1) % data.num_classes)


@pytest.mark.slow
def test_a_validation_run_never_reads_the_test_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import clu.runner

    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY + '[evaluation]\nsplit = "validation"\n')
    config = resolve_config(str(scenario), ["er_ga"], 0, "cpu")
    assert config.scenario.evaluation.split == "validation"

    def metrics(cfg, name: str) -> str:  # noqa: ANN001
        return clu.runner.run(cfg, tmp_path / name, checkpoints="none", make_plots=False).out.joinpath(
            "metrics.csv").read_text()

    clean = metrics(config, "clean")
    monkeypatch.setattr(clu.runner, "load_dataset", _poisoned)
    assert metrics(config, "poisoned") == clean  # negated test inputs, shifted test labels: nothing changes
    on_test = dataclasses.replace(config, scenario=dataclasses.replace(
        config.scenario, evaluation=dataclasses.replace(config.scenario.evaluation, split="test")))
    assert metrics(on_test, "on-test") != clean  # the same poison does change a run on the test split
