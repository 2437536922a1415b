"""Event types: one JSON line each, round trip, and grouping into steps (DESIGN §5)."""

from __future__ import annotations

import json

import pytest

from clu.data import load_dataset
from clu.events import REQUEST_KINDS, LearnTask, Step, UnlearnRequest, from_json, steps, to_json
from clu.paths import SCENARIO_DIR
from clu.scenario import events_for, load_scenario

LEARN = LearnTask(step=0, task_id=0, classes=(1, 4), sample_ids=(2, 5, 9))
LEARN_T = LearnTask(step=3, task_id=2, classes=(7,), sample_ids=(11,), mode="T")
FORGET = UnlearnRequest(step=1, kind="class", target_classes=(4,), sample_ids=(5,), request_id=0)
FORGET_TASK = UnlearnRequest(step=4, kind="task", target_classes=(7,), sample_ids=(11,), request_id=1, target_task=2)
RANDOM = UnlearnRequest(step=2, kind="random_sample", target_classes=(), sample_ids=(2, 9), request_id=3)


def test_request_kinds() -> None:
    assert REQUEST_KINDS == ("class", "cross_task", "random_sample", "task")


@pytest.mark.parametrize("event", [LEARN, LEARN_T, FORGET, FORGET_TASK, RANDOM])
def test_one_json_line_that_round_trips(event) -> None:
    line = to_json(event)
    assert "\n" not in line
    d = json.loads(line)
    assert next(iter(d)) == "type"
    assert d["type"] == ("learn" if isinstance(event, LearnTask) else "unlearn")
    back = from_json(line)
    assert back == event
    assert type(back) is type(event)
    assert to_json(back) == line


def test_json_fields() -> None:
    assert json.loads(to_json(LEARN)) == {
        "type": "learn", "step": 0, "task_id": 0, "classes": [1, 4], "sample_ids": [2, 5, 9], "mode": None,
    }
    assert json.loads(to_json(FORGET_TASK)) == {
        "type": "unlearn", "step": 4, "kind": "task", "target_classes": [7], "sample_ids": [11],
        "request_id": 1, "target_task": 2,
    }


def test_events_are_frozen() -> None:
    with pytest.raises(AttributeError):
        LEARN.step = 3  # type: ignore[misc]


@pytest.mark.parametrize("name", ["digits-class", "digits-cross-task", "digits-random-sample", "digits-task-aware"])
def test_scenario_events_round_trip(name) -> None:
    spec = load_scenario(SCENARIO_DIR / f"{name}.toml")
    events = events_for(spec, 3)
    lines = [to_json(e) for e in events]
    assert [from_json(line) for line in lines] == events
    assert all(json.loads(line)["type"] in ("learn", "unlearn") for line in lines)
    # ids are plain ints in JSON, sorted
    for line in lines:
        ids = json.loads(line)["sample_ids"]
        assert ids == sorted(ids) and all(isinstance(i, int) for i in ids)
    assert load_dataset(spec.data).num_classes == 10


# --- steps ----------------------------------------------------------------------------------------------


def test_steps_groups_a_request_with_the_learn_task_of_its_step() -> None:
    learn1 = LearnTask(1, 1, (2,), (3,))
    attached = UnlearnRequest(1, "class", (1,), (2,), 0)
    learn2 = LearnTask(2, 2, (5,), (8,))
    alone = UnlearnRequest(3, "cross_task", (2, 5), (3, 8), 1)
    out = steps([LEARN, attached, learn1, learn2, alone])
    assert out == [
        Step(0, LEARN, None),
        Step(1, learn1, attached),
        Step(2, learn2, None),
        Step(3, None, alone),
    ]
    assert [s.kind for s in out] == ["learn", "learn+class", "learn", "cross_task"]
    assert [s.index for s in out] == [0, 1, 2, 3]


def test_steps_of_an_empty_stream() -> None:
    assert steps([]) == []
