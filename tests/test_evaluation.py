"""Per-event evaluation (DESIGN §8) on a hand-made dataset and a fake model with hand-computed numbers.

Gaps to the oracle and the whole-run figures are tested in test_summary; KL, LiRA and KLoM in test_joint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clu.data.base import Dataset
from clu.evaluation import StreamState, attack_margins, attack_set, evaluate, event_margins, request_fa
from clu.events import LearnTask, Step, UnlearnRequest

K = 6  # classes 0..5; tasks (0,1) (2,3) (4,5)
# train ids 0..23, 4 per class (label = id // 4); test samples 0..11, 2 per class (label = j // 2)
X_TRAIN = torch.arange(24, dtype=torch.float32).unsqueeze(1)
Y_TRAIN = torch.arange(24) // 4
X_TEST = (100 + torch.arange(12, dtype=torch.float32)).unsqueeze(1)
Y_TEST = torch.arange(12) // 2
DATA = Dataset("hand", X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, np.array([], dtype=np.int64), K)

WRONG = {0, 5, 6, 9, 20, 100, 102, 105, 108}
"""Inputs (train id, or 100 + test index) the fake model gets wrong; everything else it gets right."""
SCALE = 5.0


def fake_logits(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One-hot logits of the true label, of the next class for the inputs in WRONG."""
    wrong = torch.isin(x[:, 0], torch.tensor(sorted(WRONG), dtype=x.dtype))
    pred = torch.where(wrong, (y + 1) % K, y)
    return SCALE * torch.nn.functional.one_hot(pred, K).float()


def learn(step: int, task: int) -> LearnTask:
    classes = (2 * task, 2 * task + 1)
    return LearnTask(step, task, classes, tuple(range(8 * task, 8 * task + 8)))


FORGET_1 = UnlearnRequest(2, "class", (1,), (4, 5, 6, 7), 0)
STEPS = [
    Step(0, learn(0, 0), None),
    Step(1, learn(1, 1), None),
    Step(2, None, FORGET_1),
    Step(3, learn(3, 2), None),
]


def state_after(n: int) -> StreamState:
    s = StreamState()
    for st in STEPS[:n]:
        s.apply(st)
    return s


# ------------------------------------------------------------------------------------- StreamState


def test_stream_state_learn_request_learn():
    s = StreamState()
    s.apply(STEPS[0])
    assert s.retained_ids == set(range(8)) and s.forgotten_ids == set()
    assert s.retained_classes == {0, 1} and s.newest_task == 0
    s.apply(STEPS[1])
    assert s.retained_ids == set(range(16)) and s.newest_task == 1
    s.apply(STEPS[2])
    assert s.retained_ids == set(range(16)) - {4, 5, 6, 7}
    assert s.forgotten_ids == {4, 5, 6, 7}
    assert s.forgotten_classes == {1}
    assert s.retained_classes == {0, 2, 3}
    assert s.newest_task == 1  # a request is not a task
    s.apply(STEPS[3])  # a new task re-learns nothing that was forgotten
    assert s.retained_ids == (set(range(24)) - {4, 5, 6, 7})
    assert s.forgotten_ids == {4, 5, 6, 7} and s.forgotten_classes == {1}
    assert s.retained_classes == {0, 2, 3, 4, 5}
    assert s.task_classes == {0: (0, 1), 1: (2, 3), 2: (4, 5)}
    assert s.newest_task == 2


def test_stream_state_combined_step_unlearns_then_learns():
    s = state_after(2)
    s.apply(Step(2, learn(2, 2), FORGET_1))
    assert s.forgotten_ids == {4, 5, 6, 7} and s.forgotten_classes == {1}
    assert s.retained_ids == set(range(24)) - {4, 5, 6, 7}
    assert s.newest_task == 2


def test_stream_state_random_sample_forgets_ids_not_classes():
    s = state_after(2)
    s.apply(Step(2, None, UnlearnRequest(2, "random_sample", (), (1, 9, 14), 0)))
    assert s.forgotten_ids == {1, 9, 14} and s.forgotten_classes == set()
    assert s.retained_classes == {0, 1, 2, 3}


def test_stream_state_relearning_a_forgotten_task_makes_it_retained_again():
    """Task-aware: (1,T) (1,F) (1,R) -- the R brings the task's ids and classes back."""
    s = StreamState()
    t1 = LearnTask(0, 1, (2, 3), tuple(range(8, 16)), "T")
    s.apply(Step(0, t1, None))
    s.apply(Step(1, None, UnlearnRequest(1, "task", (2, 3), t1.sample_ids, 0, 1)))
    assert s.retained_ids == set() and s.retained_classes == set()
    s.apply(Step(2, LearnTask(2, 1, (2, 3), t1.sample_ids, "R"), None))
    assert s.retained_ids == set(range(8, 16)) and s.forgotten_ids == set()
    assert s.retained_classes == {2, 3}


# ---------------------------------------------------------------------------------------- evaluate


def _evaluate(n: int, **kw):
    return evaluate(fake_logits, DATA, state_after(n), STEPS[n - 1], device=torch.device("cpu"), seed=0, **kw)


def test_evaluate_after_first_learn():
    values, per_task, probs = _evaluate(1)
    # test of classes {0,1}: j=0..3, wrong j=0,2 -> 2/4
    assert values["TA"] == pytest.approx(0.5)
    # train ids 0..7, wrong 0,5,6 -> 5/8
    assert values["RA"] == pytest.approx(5 / 8)
    assert values["FA"] is None and values["FA_test"] is None  # nothing forgotten yet
    assert values["NA"] == pytest.approx(0.5)  # the newest task is the only one
    assert values["OA"] is None  # no earlier task
    assert values["MIA"] is None and "KL" not in values  # nothing to attack; KL is the join's
    assert per_task == {0: pytest.approx(0.5)}
    assert probs.shape[0] == 0


def test_evaluate_after_a_class_request():
    values, per_task, probs = _evaluate(3)
    # retained classes {0,2,3}: test j=0,1,4,5,6,7; wrong j=0,5 -> 4/6
    assert values["TA"] == pytest.approx(4 / 6)
    # retained ids {0..3, 8..15}: wrong 0, 9 -> 10/12
    assert values["RA"] == pytest.approx(10 / 12)
    # forgotten ids {4,5,6,7}: wrong 5, 6 -> 2/4
    assert values["FA"] == pytest.approx(0.5)
    # test of the forgotten class 1: j=2,3; wrong j=2 -> 1/2
    assert values["FA_test"] == pytest.approx(0.5)
    assert values["NA"] is None  # a request learns no new task
    # earlier retained tasks: class 0 (task 1 is the newest): j=0,1; wrong j=0 -> 1/2
    assert values["OA"] == pytest.approx(0.5)
    # task 0 only keeps class 0 (1/2); task 1: j=4..7, wrong j=5 -> 3/4
    assert per_task == {0: pytest.approx(0.5), 1: pytest.approx(0.75)}
    assert probs.shape == (4, K)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    for key in ("MIA", "MIA_attack_acc", "MIA_thr"):
        assert values[key] is not None and 0.0 <= values[key] <= 1.0


def test_evaluate_after_a_later_learn():
    values, per_task, _ = _evaluate(4)
    # retained classes {0,2,3,4,5}: j=0,1,4..11; wrong j=0,5,8 -> 7/10
    assert values["TA"] == pytest.approx(0.7)
    # retained ids {0..3, 8..23}: wrong 0, 9, 20 -> 17/20
    assert values["RA"] == pytest.approx(17 / 20)
    assert values["FA"] == pytest.approx(0.5) and values["FA_test"] == pytest.approx(0.5)
    # newest task (4,5): j=8..11, wrong j=8 -> 3/4
    assert values["NA"] == pytest.approx(0.75)
    # older retained classes {0,2,3}: 4/6
    assert values["OA"] == pytest.approx(4 / 6)
    assert per_task == {0: pytest.approx(0.5), 1: pytest.approx(0.75), 2: pytest.approx(0.75)}


def test_attack_set_members_and_same_class_test_samples():
    members, nonmembers = attack_set(state_after(2), DATA)
    assert members.size == 0 and nonmembers.size == 0  # nothing forgotten yet
    members, nonmembers = attack_set(state_after(3), DATA)
    assert members.tolist() == [4, 5, 6, 7] and nonmembers.tolist() == [2, 3]  # class 1's test samples
    s = state_after(2)
    s.apply(Step(2, None, UnlearnRequest(2, "random_sample", (), (9, 1, 14), 0)))
    members, nonmembers = attack_set(s, DATA)
    assert members.tolist() == [1, 9, 14] and nonmembers.tolist() == [0, 1, 4, 5, 6, 7]  # classes 0, 2, 3


def test_attack_margins_are_the_true_class_logit_minus_the_others_lse():
    members, nonmembers = attack_set(state_after(3), DATA)
    phi = attack_margins(fake_logits, DATA, members, nonmembers, torch.device("cpu"))
    right = SCALE - math.log(K - 1)  # true logit 5, five others at 0
    wrong = 0.0 - math.log(math.exp(SCALE) + K - 2)  # true logit 0, others: one 5 and four 0
    # members 4, 5, 6, 7 (5, 6 wrong); non-members test 2, 3 (102 wrong)
    np.testing.assert_allclose(phi, [right, wrong, wrong, right, wrong, right])
    m = event_margins(fake_logits, DATA, state_after(3), np.ones((4, K)), torch.device("cpu"), before=phi[::-1])
    assert m.n_members == 4 and np.array_equal(m.phi, phi) and np.array_equal(m.before, phi[::-1])


def test_evaluate_random_sample_request_has_no_fa_test():
    s = state_after(2)
    step = Step(2, None, UnlearnRequest(2, "random_sample", (), (0, 9, 10, 11), 0))
    s.apply(step)
    values, _, _ = evaluate(fake_logits, DATA, s, step, device=torch.device("cpu"), seed=0)
    assert values["FA"] == pytest.approx(0.5)  # ids 0 and 9 wrong of 4
    assert values["FA_test"] is None
    # every class is still retained: TA over j=0..7, wrong j=0,2,5 -> 5/8
    assert values["TA"] == pytest.approx(5 / 8)


def test_request_fa_is_each_requests_fa_on_its_still_forgotten_samples():
    state = state_after(4)
    assert state.requests == {0: (4, 5, 6, 7)}
    second = UnlearnRequest(4, "random_sample", (), (9, 20), 1)
    state.apply(Step(4, None, second))
    _, _, probs = evaluate(fake_logits, DATA, state, Step(4, None, second), device=torch.device("cpu"), seed=0)
    # request 0: ids 4..7, wrong 5 and 6 -> 1/2; request 1: ids 9 and 20, both wrong -> 0
    assert request_fa(state, DATA, probs) == {0: pytest.approx(0.5), 1: 0.0}
    state.apply(Step(5, LearnTask(5, 0, (0, 1), (4, 5, 6, 7)), None))  # request 0's samples learned again
    assert request_fa(state, DATA, probs[4:]) == {0: None, 1: 0.0}  # D_U* is now {9, 20}
    assert request_fa(StreamState(), DATA, probs[:0]) == {}
