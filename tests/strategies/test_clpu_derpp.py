"""``clpu_derpp`` driven step by step on tiny task-aware digits: CLPU's merge of a side model into the main
model (from the task's memory only), forgetting a temporary task, side models in eval mode, checkpoints."""

from __future__ import annotations

import copy
import io
import tomllib
from typing import Any

import torch
from torch import Tensor, nn

from clu.audit import stored_ids
from clu.data import load_dataset
from clu.data.avalanche_bridge import learn_experiences
from clu.data.base import Dataset
from clu.driver import build_strategy
from clu.events import Step, steps as group_steps
from clu.scenario import events_for, scenario_from_dict
from clu.strategies import StrategyChoice, strategy_config
from clu.strategies.base import CLUStrategy
from clu.strategies.clpu_derpp import CLPUDERPP
from tiny import TINY

CPU = torch.device("cpu")
torch.set_num_threads(1)
SEQUENCE = '[[0, "R"], [1, "T"], [2, "T"], [1, "R"], [2, "F"]]'
"""Task 1 is learned temporarily and then permanently (the merge); task 2 temporarily, then forgotten."""
MLP = 'name = "mlp"\nhidden = [32]'


def scenario(sequence: str = SEQUENCE, *, epochs: int = 3, buffer_size: int = 50, model: str = MLP) -> str:
    """The tiny scenario (tests/tiny.py), task-aware with ``sequence``."""
    text = (
        TINY.replace('name = "tiny"', 'name = "tiny-aware"\nsetting = "task_aware"')
        .replace('[[schedule.rules]]\nkind = "class"\nstart_after = 2\n', f"[schedule]\nsequence = {sequence}\n")
        .replace("epochs = 1", f"epochs = {epochs}")
        .replace("buffer_size = 50", f"buffer_size = {buffer_size}")
        .replace(MLP, model)
    )
    assert text.count("task_aware") == 1 and f"sequence = {sequence}" in text and f"epochs = {epochs}" in text
    return text


class Stream:
    """A clpu_derpp strategy and its steps, played one at a time as the driver would."""

    def __init__(self, text: str) -> None:
        self.spec = scenario_from_dict(tomllib.loads(text), "tiny-aware.toml")
        self.data: Dataset = load_dataset(self.spec.data)
        self.steps: list[Step] = group_steps(events_for(self.spec, self.spec.seed))
        experiences = learn_experiences(self.data, [s.learn for s in self.steps if s.learn is not None], True)
        learn_steps = [s.index for s in self.steps if s.learn is not None]
        self.experience = dict(zip(learn_steps, experiences))
        self.strategy = self.build()

    def build(self) -> CLPUDERPP:
        choice = StrategyChoice("clpu_derpp", "clpu_derpp", strategy_config("clpu_derpp", {}))
        strategy = build_strategy(choice, self.spec, self.data, self.spec.seed, CPU)
        assert isinstance(strategy, CLPUDERPP)
        return strategy

    def play(self, k: int, strategy: CLPUDERPP | None = None) -> None:
        s, step = strategy or self.strategy, self.steps[k]
        if step.learn is not None:
            s.learn(step.learn, self.experience[step.index], request=step.unlearn)
        elif step.unlearn is not None:
            s.unlearn(step.unlearn)

    def test_set(self, task: int) -> tuple[Tensor, Tensor]:
        classes = next(s.learn.classes for s in self.steps if s.learn is not None and s.learn.task_id == task)
        sel = torch.isin(self.data.y_test, torch.tensor(classes))
        return self.data.inputs(self.data.x_test[sel]), self.data.y_test[sel]


@torch.no_grad()
def main_accuracy(strategy: CLUStrategy, x: Tensor, y: Tensor) -> float:
    """Task-aware accuracy of the main model alone (no routing to side models)."""
    strategy.model.eval()
    acc = float((CLUStrategy.logits(strategy, x, y).argmax(1) == y).float().mean())
    strategy.model.train()
    return acc


@torch.no_grad()
def distillation_mse(strategy: CLPUDERPP, targets: dict[int, Tensor]) -> float:
    """MSE between the main model's logits and ``targets`` (id -> logits) in eval mode."""
    strategy.model.eval()
    x, _ = strategy.batch(torch.tensor(list(targets)))
    mse = float(nn.functional.mse_loss(strategy.model(x), torch.stack(list(targets.values()))))
    strategy.model.train()
    return mse


def test_the_stream_makes_a_temporary_task_permanent_and_forgets_another() -> None:
    modes = [
        (s.learn.task_id, s.learn.mode) if s.learn else (s.unlearn.target_task, "F")  # type: ignore[union-attr]
        for s in Stream(scenario()).steps
    ]
    assert modes == [(0, "R"), (1, "T"), (2, "T"), (1, "R"), (2, "F")]


def test_merge_distils_the_side_model_from_the_memory_only() -> None:
    st = Stream(scenario())
    s = st.strategy
    for k in range(3):  # (0,R) (1,T) (2,T)
        st.play(k)
    task1 = st.steps[1].learn
    assert task1 is not None and set(s.sides) == set(s.memory) == {1, 2}
    memory = list(s.memory[1].ids())
    assert 0 < len(memory) < len(task1.sample_ids)  # the memory is a part of the task: using all of it would show
    assert not set(memory) & set(s.buffer.ids())  # T tasks stay out of the buffer (and out of DER++ replay)
    side_logits = {i: s.logits_by_id[i].clone() for i in memory}
    buffer_before = set(s.buffer.ids())
    x, y = st.test_set(1)
    acc_before, mse_before = main_accuracy(s, x, y), distillation_mse(s, side_logits)

    used: set[int] = set()
    batch = s.batch

    def spy(ids: Tensor) -> tuple[Tensor, Tensor]:
        used.update(int(i) for i in ids)
        return batch(ids)

    s.batch = spy  # type: ignore[method-assign]
    st.play(3)  # (1,R): the merge
    del s.batch

    assert used and used <= set(memory) | buffer_before, "the merge read samples outside the memory and the buffer"
    assert set(memory) <= used
    assert 1 not in s.sides and 1 not in s.memory and set(s.sides) == {2}
    mse_after = distillation_mse(s, side_logits)
    acc_after = main_accuracy(s, x, y)
    assert mse_after < 0.5 * mse_before, (mse_before, mse_after)
    assert acc_after >= 0.9 and acc_after > acc_before + 0.2, (acc_before, acc_after)
    # the memory joined the buffer with the side model's logits as its DER++ targets
    kept = set(memory) & set(s.buffer.ids())
    assert kept and all(torch.equal(s.logits_by_id[i], side_logits[i]) for i in kept)
    assert set(s.logits_by_id) == set(s.buffer.ids()) | set(s.memory[2].ids())
    assert set(task1.classes) <= s.known_classes


def test_forgetting_a_temporary_task_drops_its_side_memory_and_logits() -> None:
    st = Stream(scenario(epochs=1))
    s = st.strategy
    for k in range(4):
        st.play(k)
    task2 = set(st.steps[2].learn.sample_ids)  # type: ignore[union-attr]
    memory = set(s.memory[2].ids())
    assert memory and memory <= set(s.logits_by_id)  # not vacuous: the memory and its logits exist
    st.play(4)  # (2,F)
    assert 2 not in s.sides and 2 not in s.memory and not s.sides and not s.memory
    assert not task2 & set(s.buffer.ids())
    assert not task2 & set(s.logits_by_id)
    assert set(s.logits_by_id) == set(s.buffer.ids())
    state = s.state_dict()
    assert not any(set(ids) & task2 for _, ids in stored_ids(state))


def test_side_models_stay_in_eval_mode_and_routing_leaves_batchnorm_stats_alone() -> None:
    st = Stream(scenario('[[0, "R"], [1, "T"]]', epochs=1, model='name = "cnn"\nwidth = 4'))
    s = st.strategy
    st.play(0)
    st.play(1)
    side = s.sides[1]
    assert not side.training
    x, y = st.test_set(1)
    stats = {k: v.clone() for k, v in side.state_dict().items()}
    s.model.train()  # routing must not depend on the main model's mode
    routed = s.logits(x, y)
    assert all(torch.equal(v, side.state_dict()[k]) for k, v in stats.items()), "evaluation moved BatchNorm stats"
    assert not side.training
    with torch.no_grad():
        expected = side(x).masked_fill(~s._head_mask[y], -1e4)  # type: ignore[index]
        in_train_mode = copy.deepcopy(side).train()(x).masked_fill(~s._head_mask[y], -1e4)  # type: ignore[index]
    assert torch.allclose(routed, expected)
    assert not torch.allclose(routed, in_train_mode, atol=1e-3)  # the mode matters for this model
    # the memory's targets are the side model's eval-mode logits
    memory = torch.tensor(s.memory[1].ids())
    with torch.no_grad():
        z = side(s.batch(memory)[0])
    assert torch.allclose(s.stored_logits(memory), z, atol=1e-6)


def test_checkpoint_round_trip_keeps_sides_memory_and_logits() -> None:
    st = Stream(scenario(epochs=1))
    s = st.strategy
    for k in range(3):
        st.play(k)
    buf = io.BytesIO()
    torch.save(s.state_dict(), buf)
    buf.seek(0)
    state: dict[str, Any] = torch.load(buf, weights_only=False)
    where = {w: set(ids) for w, ids in stored_ids(state)}
    assert where["memory.1.ids"] == set(s.memory[1].ids()) and where["memory.2.ids"] == set(s.memory[2].ids())

    restored = st.build()
    restored.load_state_dict(state)
    assert set(restored.sides) == {1, 2} and not any(m.training for m in restored.sides.values())
    assert {t: m.ids() for t, m in restored.memory.items()} == {t: m.ids() for t, m in s.memory.items()}
    assert set(restored.logits_by_id) == set(s.logits_by_id)
    for t, side in s.sides.items():
        other = restored.sides[t].state_dict()
        assert all(torch.equal(v, other[k]) for k, v in side.state_dict().items())
    # both go on identically: the merge, then the forgetting
    for k in (3, 4):
        st.play(k)
        st.play(k, restored)
    weights = restored.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in s.model.state_dict().items())
    assert restored.buffer.ids() == s.buffer.ids() and not restored.sides and not restored.memory


def test_without_memory_the_side_model_keeps_the_task() -> None:
    """buffer_size 0: nothing to distil from, so R on a T task leaves the main model and the side as they are."""
    st = Stream(scenario('[[0, "R"], [1, "T"], [1, "R"]]', epochs=1, buffer_size=0))
    s = st.strategy
    st.play(0)
    st.play(1)
    assert 1 in s.sides and not len(s.memory[1]) and not s.logits_by_id
    weights = copy.deepcopy(s.model.state_dict())
    st.play(2)
    assert 1 in s.sides
    assert all(torch.equal(v, s.model.state_dict()[k]) for k, v in weights.items())
