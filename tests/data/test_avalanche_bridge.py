"""Learn events → Avalanche experiences that carry the sample ids as a ``sample_ids`` DataAttribute (§4)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from clu.data import load_dataset
from clu.data.avalanche_bridge import id_dataset, learn_experiences, sample_ids_of
from clu.events import LearnTask
from clu.models import ModelSpec, build_model
from clu.paths import SCENARIO_DIR
from clu.scenario import events_for, load_scenario


@pytest.fixture(scope="module")
def import_avalanche_proc():
    """``import avalanche`` in a fresh interpreter, started first so it overlaps with the other tests."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import avalanche"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def digits_class(request):
    if any(item.name == "test_import_avalanche_prints_no_warning" for item in request.session.items):
        request.getfixturevalue("import_avalanche_proc")  # start it now, to overlap with the tests below
    spec = load_scenario(SCENARIO_DIR / "digits-class.toml")
    data = load_dataset(spec.data)
    tasks = [e for e in events_for(spec, 0) if isinstance(e, LearnTask)]
    return data, tasks, learn_experiences(data, tasks, task_aware=False)


def test_one_experience_per_learn_task_with_its_ids(digits_class) -> None:
    data, tasks, exps = digits_class
    assert len(exps) == len(tasks) == 5
    for i, (exp, task) in enumerate(zip(exps, tasks)):
        assert exp.current_experience == i
        assert sample_ids_of(exp.dataset).tolist() == list(task.sample_ids)
        assert len(exp.dataset) == len(task.sample_ids)
        assert sorted(set(exp.dataset.targets)) == list(task.classes)
        assert set(exp.dataset.targets_task_labels) == {0}  # task-agnostic: one task label


def test_getitem_is_x_y_task_label_without_ids(digits_class) -> None:
    data, tasks, exps = digits_class
    ds = exps[1].dataset
    ids = tasks[1].sample_ids
    for pos in (0, 7, len(ds) - 1):
        item = ds[pos]
        assert len(item) == 3
        x, y, t = item
        ex, ey = data.train_batch(np.array([ids[pos]]))
        assert torch.equal(x, ex[0])
        assert int(y) == int(ey[0])
        assert t == 0
    batch = next(iter(DataLoader(ds, batch_size=8, shuffle=False)))
    assert len(batch) == 3
    x, y, t = batch
    assert x.shape == (8, *data.input_shape)
    assert y.tolist() == data.y_train[list(ids[:8])].tolist()
    assert t.tolist() == [0] * 8


def test_sample_ids_survive_concat_and_subset(digits_class) -> None:
    _, tasks, exps = digits_class
    a, b = exps[0].dataset, exps[2].dataset
    both = a.concat(b)
    expected = list(tasks[0].sample_ids) + list(tasks[2].sample_ids)
    assert sample_ids_of(both).tolist() == expected
    picks = [5, 0, len(a) + 3, len(both) - 1]
    sub = both.subset(picks)
    assert sample_ids_of(sub).tolist() == [expected[p] for p in picks]
    # a subset of a concat keeps the pairing of sample, label and id
    for k, p in enumerate(picks):
        assert int(sub[k][1]) == int(both[p][1])
    # and a concat of subsets (what a replay buffer is) too
    buffer = a.subset([1, 2]).concat(b.subset([0]))
    assert sample_ids_of(buffer).tolist() == [tasks[0].sample_ids[1], tasks[0].sample_ids[2], tasks[2].sample_ids[0]]


def test_task_aware_experiences_carry_the_task_id(digits_class) -> None:
    data, _, _ = digits_class
    spec = load_scenario(SCENARIO_DIR / "digits-task-aware.toml")
    tasks = [e for e in events_for(spec, 0) if isinstance(e, LearnTask)]
    exps = learn_experiences(data, tasks, task_aware=True)
    assert len(exps) == len(tasks)
    for exp, task in zip(exps, tasks):
        assert set(exp.dataset.targets_task_labels) == {task.task_id}
        assert sample_ids_of(exp.dataset).tolist() == list(task.sample_ids)
        assert exp.dataset[0][2] == task.task_id


def test_empty_and_foreign_datasets(digits_class) -> None:
    data, _, _ = digits_class
    assert learn_experiences(data, [], task_aware=False) == []
    ds = id_dataset(data, [9, 4, 2], task_label=3)
    assert sample_ids_of(ds).tolist() == [9, 4, 2]
    assert [ds[i][2] for i in range(3)] == [3, 3, 3]
    with pytest.raises(ValueError, match="sample_ids"):
        sample_ids_of(torch.utils.data.TensorDataset(torch.zeros(2)))


def _accuracy(model: torch.nn.Module, data, classes) -> float:
    mask = torch.isin(data.y_test, torch.tensor(classes))
    model.eval()
    with torch.no_grad():
        pred = model(data.inputs(data.x_test[mask])).argmax(1)
    return float((pred == data.y_test[mask]).float().mean())


def test_avalanche_naive_trains_on_the_experiences(digits_class) -> None:
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    data, tasks, exps = digits_class
    torch.manual_seed(0)
    model = build_model(ModelSpec(hidden=(64,)), data.input_shape, data.num_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = EvaluationPlugin(loggers=[])
    strategy = Naive(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=32,
        train_epochs=1,
        eval_mb_size=256,
        device="cpu",
        evaluator=evaluator,
    )
    strategy.train(exps[0])
    # the first task's test data, right after learning it: chance is 1/2 within the task (1/10 over all classes)
    assert _accuracy(model, data, tasks[0].classes) > 0.75
    for exp in exps[1:]:
        strategy.train(exp)
    # every experience was trained for one epoch of mini-batches of 32
    assert strategy.clock.train_exp_counter == len(exps)
    assert strategy.clock.train_iterations == sum(-(-len(t.sample_ids) // 32) for t in tasks)


@pytest.mark.slow
def test_import_avalanche_prints_no_warning(import_avalanche_proc) -> None:
    out, err = import_avalanche_proc.communicate(timeout=180)
    assert import_avalanche_proc.returncode == 0, err
    assert err.strip() == ""
    assert out.strip() == ""
