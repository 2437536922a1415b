"""Scenario files → event streams (DESIGN §5): the ready files, the generator's invariants, validation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clu.config import ConfigError, read_toml
from clu.data import load_dataset
from clu.events import LearnTask, UnlearnRequest, steps
from clu.paths import SCENARIO_DIR
from clu.scenario import events_for, generate, load_scenario, scenario_from_dict, task_classes

SCENARIO_FILES = sorted(SCENARIO_DIR.glob("*.toml"))
CLPU_SEQUENCE = [(0, "R"), (1, "T"), (2, "T"), (3, "R"), (1, "R"), (2, "F"), (4, "T"), (4, "F")]


def check_stream(events, labels: np.ndarray, val_ids: np.ndarray) -> None:
    """Replay a stream and assert every rule of §5 that holds for any scenario."""
    labels = np.asarray(labels)
    val = set(int(i) for i in val_ids)
    task_of_class: dict[int, int] = {}
    forgotten_classes: set[int] = set()
    retained: set[int] = set()
    forgotten: set[int] = set()
    learned_tasks: set[int] = set()
    last_step = -1
    request_ids = []
    for e in events:
        assert e.step >= last_step, "events are ordered by step"
        last_step = e.step
        assert list(e.sample_ids) == sorted(set(e.sample_ids)), "ids sorted, no duplicates"
        ids = set(e.sample_ids)
        if isinstance(e, LearnTask):
            assert ids, "a learn task has samples"
            assert not ids & val, "validation ids are never learned"
            assert set(labels[list(ids)].tolist()) == set(e.classes)
            for c in e.classes:
                assert task_of_class.get(c, e.task_id) == e.task_id, "a class belongs to one task"
                task_of_class[c] = e.task_id
                forgotten_classes.discard(c)
            learned_tasks.add(e.task_id)
            retained |= ids
            forgotten -= ids
            continue
        assert isinstance(e, UnlearnRequest)
        request_ids.append(e.request_id)
        assert ids, "a request forgets something"
        assert ids <= retained, "a request names only learned, still retained ids"
        assert not ids & forgotten, "nothing already forgotten"
        assert {task_of_class[int(labels[i])] for i in ids} <= learned_tasks
        if e.kind == "random_sample":
            assert e.target_classes == ()
            assert len(ids) < len(retained), "something stays retained"
        else:
            tc = set(e.target_classes)
            assert tc and tc <= set(task_of_class), "target classes were learned"
            assert not tc & forgotten_classes, "target classes not already forgotten"
            tasks = {task_of_class[c] for c in tc}
            if e.kind == "cross_task":
                assert len(tasks) >= 2, "cross_task classes come from >= 2 tasks"
            else:
                assert len(tasks) == 1, f"{e.kind} classes come from one task"
            if e.kind == "task":
                assert tasks == {e.target_task}
                assert tc == {c for c, t in task_of_class.items() if t == e.target_task and c not in forgotten_classes}
            # all retained learned samples of the classes
            assert ids == {i for i in retained if int(labels[i]) in tc}
            forgotten_classes |= tc
        retained -= ids
        forgotten |= ids
    assert request_ids == list(range(len(request_ids))), "request ids count up from 0"


def _available(path):
    """(spec, events, dataset) of a ready file, or None when its files are absent (a clean error)."""
    spec = load_scenario(path)
    try:
        events = events_for(spec, spec.seed)
    except ConfigError as e:
        assert spec.data.name in ("cifar10", "cifar100", "tinyimagenet"), f"{path.name}: {e}"
        assert e.key == "data.root" and "not found" in str(e)
        return None
    return spec, events, load_dataset(spec.data)


@pytest.fixture(scope="module")
def ready():
    out = {}
    for path in SCENARIO_FILES:
        got = _available(path)
        if got is not None:
            out[path.stem] = got
    return out


def test_the_ready_files_exist() -> None:
    names = {p.stem for p in SCENARIO_FILES}
    for ds in ("digits", "mnist5k"):
        for kind in ("class", "cross-task", "random-sample", "task-aware"):
            assert f"{ds}-{kind}" in names
    assert {"cifar10-class", "cifar100-5x20", "cifar100-10x10", "tinyimagenet-10x20"} <= names


def test_the_cpu_files_evaluate_with_eight_shadows() -> None:
    for path in SCENARIO_FILES:
        shadows = load_scenario(path).evaluation.shadows
        assert shadows == (8 if path.stem.startswith(("digits-", "mnist5k-")) else 0), path.stem


def test_the_evaluation_table() -> None:
    base = {"name": "x", "data": {"name": "digits"}}
    spec = scenario_from_dict({**base, "evaluation": {"shadows": 4, "klom_bins": 10}})
    assert (spec.evaluation.shadows, spec.evaluation.klom_bins) == (4, 10)
    assert scenario_from_dict(base).evaluation.shadows == 0
    for table, key in (({"shadowz": 1}, "evaluation.shadowz"), ({"shadows": -1}, "evaluation.shadows"),
                       ({"klom_bins": 1}, "evaluation.klom_bins")):
        with pytest.raises(ConfigError) as e:
            scenario_from_dict({**base, "evaluation": table})
        assert key in str(e.value)


def test_every_ready_stream_obeys_the_rules(ready) -> None:
    assert {"digits-class", "mnist5k-task-aware"} <= set(ready)
    for name, (spec, events, data) in ready.items():
        try:
            check_stream(events, data.train_labels, data.val_ids)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def test_every_request_kind_occurs(ready) -> None:
    kinds = {e.kind for _, events, _ in ready.values() for e in events if isinstance(e, UnlearnRequest)}
    assert kinds == {"class", "cross_task", "random_sample", "task"}


def test_cross_task_files_ask_for_classes_of_different_tasks(ready) -> None:
    n = 0
    for name, (_, events, _) in ready.items():
        task_of = {c: e.task_id for e in events if isinstance(e, LearnTask) for c in e.classes}
        for e in events:
            if isinstance(e, UnlearnRequest) and e.kind == "cross_task":
                assert len({task_of[c] for c in e.target_classes}) >= 2, name
                n += 1
    assert n >= 2


def test_task_aware_files_reproduce_the_clpu_sequence(ready) -> None:
    aware = {n: v for n, v in ready.items() if v[0].setting == "task_aware"}
    assert set(aware) == {"digits-task-aware", "mnist5k-task-aware"}
    for name, (spec, events, _) in aware.items():
        got = [(e.task_id, e.mode) if isinstance(e, LearnTask) else (e.target_task, "F") for e in events]
        assert got == CLPU_SEQUENCE, name
        assert all(e.kind == "task" for e in events if isinstance(e, UnlearnRequest))
        assert [e.step for e in events] == list(range(len(CLPU_SEQUENCE)))
        # the F of task 2 forgets exactly what task 2 learned
        learn2 = next(e for e in events if isinstance(e, LearnTask) and e.task_id == 2)
        forget2 = next(e for e in events if isinstance(e, UnlearnRequest) and e.target_task == 2)
        assert forget2.sample_ids == learn2.sample_ids and forget2.target_classes == learn2.classes


def test_class_files_forget_one_class_after_each_task_from_the_second(ready) -> None:
    _, events, _ = ready["digits-class"]
    kinds = [s.kind for s in steps(events)]
    assert kinds == ["learn", "learn", "class", "learn", "class", "learn", "class", "learn", "class"]
    assert all(len(e.target_classes) == 1 for e in events if isinstance(e, UnlearnRequest))


# --- purity and seeds -----------------------------------------------------------------------------------


def _digits(name: str):
    spec = load_scenario(SCENARIO_DIR / f"{name}.toml")
    return spec, load_dataset(spec.data)


def test_generate_is_pure() -> None:
    spec, data = _digits("digits-random-sample")
    labels = data.train_labels.copy()
    learnable = data.learnable_ids.copy()
    a = generate(spec, 7, labels, learnable, data.num_classes)
    b = generate(spec, 7, labels, learnable, data.num_classes)
    assert a == b
    assert a == events_for(spec, 7)
    np.testing.assert_array_equal(labels, data.train_labels)  # inputs untouched
    np.testing.assert_array_equal(learnable, data.learnable_ids)


@pytest.mark.parametrize("name", ["digits-class", "digits-cross-task", "digits-random-sample"])
def test_seed_changes_the_stream(name) -> None:
    spec, _ = _digits(name)
    assert events_for(spec, 0) != events_for(spec, 1)


def test_class_order_follows_the_seed_unless_natural() -> None:
    spec, _ = _digits("digits-class")
    a, b = task_classes(spec.split, 10, 0), task_classes(spec.split, 10, 1)
    assert a != b
    for order in (a, b):
        assert sorted(c for t in order for c in t) == list(range(10))
        assert all(len(t) == 2 for t in order)
    natural = copy.deepcopy(read_toml(SCENARIO_DIR / "digits-class.toml"))
    natural["split"]["class_order"] = "natural"
    assert task_classes(scenario_from_dict(natural).split, 10, 5) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(["digits-class", "digits-cross-task", "digits-random-sample"]))
def test_rules_hold_for_any_seed(seed, name) -> None:
    spec, data = _digits(name)
    events = generate(spec, seed, data.train_labels, data.learnable_ids, data.num_classes)
    check_stream(events, data.train_labels, data.val_ids)
    assert events == generate(spec, seed, data.train_labels, data.learnable_ids, data.num_classes)


# --- attached requests ----------------------------------------------------------------------------------


def _scenario(name: str = "digits-class", **changes):
    """A digits scenario dict with top-level tables updated: ``schedule={"attach": True}``."""
    data = read_toml(SCENARIO_DIR / f"{name}.toml")
    for table, values in changes.items():
        data.setdefault(table, {}).update(values)
    return data


def _events(data: dict, seed: int = 0):
    spec = scenario_from_dict(data)
    d = load_dataset(spec.data)
    return generate(spec, seed, d.train_labels, d.learnable_ids, d.num_classes), d


def test_attached_requests_share_the_step_of_the_next_learn_task() -> None:
    events, data = _events(_scenario(schedule={"attach": True}))
    check_stream(events, data.train_labels, data.val_ids)
    grouped = steps(events)
    assert [s.kind for s in grouped] == ["learn", "learn", "learn+class", "learn+class", "learn+class", "class"]
    assert [s.index for s in grouped] == list(range(6))
    for s in grouped[2:5]:
        # the request forgets something learned before the task it is attached to
        assert not set(s.unlearn.target_classes) & set(s.learn.classes)
        assert s.unlearn.step == s.learn.step
    # within a step the request comes first
    for i, e in enumerate(events[:-1]):
        if e.step == events[i + 1].step:
            assert isinstance(e, UnlearnRequest) and isinstance(events[i + 1], LearnTask)
    # the same requests as without attach, only the steps differ
    alone, _ = _events(_scenario())
    strip = lambda ev: [(type(e), e.sample_ids) for e in ev]  # noqa: E731
    assert sorted(strip(events), key=str) == sorted(strip(alone), key=str)


def test_attach_allows_one_request_per_learn_task() -> None:
    data = _scenario(schedule={"attach": True})
    data["schedule"]["rules"].append({"kind": "random_sample", "start_after": 2, "fraction": 0.1})
    with pytest.raises(ConfigError) as info:
        _events(data)
    assert info.value.key == "schedule.attach"


# --- explicit requests ------------------------------------------------------------------------------------


def _explicit(*requests: dict, **split) -> dict:
    data = _scenario(split={"class_order": "natural", **split})
    data["schedule"] = {"requests": list(requests)}
    return data


def test_explicit_requests_of_every_kind() -> None:
    events, data = _events(
        _explicit(
            {"after_task": 2, "kind": "class", "classes": [1]},
            {"after_task": 3, "kind": "cross_task", "classes": [0, 4]},
            {"after_task": 4, "kind": "random_sample", "count": 25},
            {"after_task": 4, "kind": "task", "task": 1},
            {"after_task": 5, "kind": "random_sample", "fraction": 0.5},
        )
    )
    check_stream(events, data.train_labels, data.val_ids)
    got = [(e.step, e.kind, e.target_classes, e.target_task) for e in events if isinstance(e, UnlearnRequest)]
    assert got == [
        (2, "class", (1,), None),
        (4, "cross_task", (0, 4), None),
        (6, "random_sample", (), None),
        (7, "task", (2, 3), 1),
        (9, "random_sample", (), None),
    ]
    requests = [e for e in events if isinstance(e, UnlearnRequest)]
    assert len(requests[2].sample_ids) == 25
    labels = data.train_labels
    # fraction 0.5 of what is retained after task 5: classes 5..9 minus nothing forgotten among them
    retained_5 = [i for i in data.learnable_ids if labels[i] >= 5]
    before = set(retained_5) - set(requests[2].sample_ids)
    assert len(requests[4].sample_ids) == round(0.5 * len(before))


@pytest.mark.parametrize(
    ("requests", "key", "words"),
    [
        ([{"after_task": 1, "kind": "class", "classes": [5]}], "schedule.requests[0].classes", "never learned"),
        ([{"after_task": 2, "kind": "class", "classes": [0]}, {"after_task": 3, "kind": "class", "classes": [0]}],
         "schedule.requests[1].classes", "already forgotten"),
        ([{"after_task": 3, "kind": "cross_task", "classes": [2, 3]}], "schedule.requests[0].classes", "at least 2 tasks"),
        ([{"after_task": 3, "kind": "class", "classes": [1, 2]}], "schedule.requests[0].classes", "span tasks"),
        ([{"after_task": 2, "kind": "task", "task": 3}], "schedule.requests[0].task", "not learned"),
        ([{"after_task": 2, "kind": "task", "task": 0}, {"after_task": 3, "kind": "task", "task": 0}],
         "schedule.requests[1].task", "not learned (or already forgotten)"),
        ([{"after_task": 6, "kind": "class", "classes": [0]}], "schedule.requests[0].after_task", "only 5 learn tasks"),
        ([{"after_task": 1, "kind": "class", "classes": [0, 1]}], "schedule.requests[0].classes", "every learned class"),
        ([{"after_task": 1, "kind": "random_sample", "count": 10_000}], "schedule.requests[0]", "retained samples"),
        ([{"after_task": 1, "kind": "random_sample", "fraction": 1.5}], "schedule.requests[0].fraction", "(0, 1]"),
        ([{"after_task": 1, "kind": "random_sample", "fraction": 0.0}], "schedule.requests[0].fraction", "(0, 1]"),
        ([{"after_task": 1, "kind": "class", "classes": [0], "fraction": 0.5}], "schedule.requests[0].fraction",
         "random_sample"),
        ([{"after_task": 0, "kind": "class", "classes": [0]}], "schedule.requests[0].after_task", "at least 1"),
        ([{"after_task": 1, "kind": "forget"}], "schedule.requests[0].kind", "'class'"),
    ],
)
def test_bad_explicit_requests(requests, key, words) -> None:
    with pytest.raises(ConfigError) as info:
        _events(_explicit(*requests))
    assert info.value.key == key
    assert words in str(info.value)


def test_bad_rules_and_splits() -> None:
    bad = _scenario()
    bad["schedule"]["rules"][0] = {"kind": "random_sample", "fraction": 1.5}
    with pytest.raises(ConfigError, match=r"schedule\.rules\[0\]\.fraction: must be in \(0, 1\], got 1.5"):
        _events(bad)
    bad["schedule"]["rules"][0] = {"kind": "cross_task", "n_classes": 1}
    with pytest.raises(ConfigError, match=r"schedule\.rules\[0\]\.n_classes"):
        _events(bad)
    with pytest.raises(ConfigError, match=r"split\.tasks\[1\]: a task with no classes"):
        _events(_scenario(split={"tasks": [[0, 1], [], [2, 3]]}))
    with pytest.raises(ConfigError, match=r"split\.tasks\[1\]: class \[1\] is already in an earlier task|split\.tasks\[1\]: class 1"):
        _events(_scenario(split={"tasks": [[0, 1], [1, 2]]}))
    with pytest.raises(ConfigError, match=r"split\.tasks\[1\]: class 12 does not exist"):
        _events(_scenario(split={"tasks": [[0, 1], [12]]}))
    with pytest.raises(ConfigError, match=r"split\.n_tasks: 6 tasks x 2 classes needs 12"):
        _events(_scenario(split={"n_tasks": 6}))


def test_explicit_task_split() -> None:
    events, data = _events(_explicit({"after_task": 2, "kind": "class", "classes": [3]}, tasks=[[3, 1], [7], [0, 2, 9]]))
    learns = [e for e in events if isinstance(e, LearnTask)]
    assert [e.classes for e in learns] == [(3, 1), (7,), (0, 2, 9)]
    check_stream(events, data.train_labels, data.val_ids)


# --- the task-aware protocol ------------------------------------------------------------------------------


def _aware(sequence) -> dict:
    data = _scenario("digits-task-aware")
    data["schedule"] = {"sequence": sequence}
    return data


@pytest.mark.parametrize(
    ("sequence", "key", "words"),
    [
        ([[0, "R"], [0, "F"]], "schedule.sequence[1]", "learned permanently (R)"),
        ([[0, "R"], [1, "F"]], "schedule.sequence[1]", "not learned"),
        ([[0, "T"], [0, "F"], [0, "F"]], "schedule.sequence[2]", "not learned"),
        ([[0, "R"], [0, "R"]], "schedule.sequence[1]", "already learned permanently"),
        ([[0, "R"], [0, "T"]], "schedule.sequence[1]", "already learned permanently"),
        ([[0, "T"], [0, "T"]], "schedule.sequence[1]", "already learned temporarily"),
        ([[7, "R"]], "schedule.sequence[0]", "does not exist"),
        ([[0, "X"]], "schedule.sequence[0][1]", "'R' | 'T' | 'F'"),
    ],
)
def test_bad_task_aware_sequences(sequence, key, words) -> None:
    with pytest.raises(ConfigError) as info:
        _events(_aware(sequence))
    assert info.value.key == key
    assert words in str(info.value)


def test_forgotten_t_task_can_be_learned_again() -> None:
    events, data = _events(_aware([[0, "R"], [1, "T"], [1, "F"], [1, "T"], [1, "R"]]))
    check_stream(events, data.train_labels, data.val_ids)
    assert [(type(e).__name__, getattr(e, "mode", None)) for e in events] == [
        ("LearnTask", "R"), ("LearnTask", "T"), ("UnlearnRequest", None), ("LearnTask", "T"), ("LearnTask", "R"),
    ]


def test_setting_and_schedule_must_agree() -> None:
    data = _scenario()
    data["schedule"]["sequence"] = [[0, "R"]]
    with pytest.raises(ConfigError, match=r"schedule\.sequence: a sequence needs setting"):
        scenario_from_dict(data)
    data = _aware([[0, "R"]])
    data["schedule"]["rules"] = [{"kind": "class"}]
    with pytest.raises(ConfigError, match=r"schedule\.rules: task_aware scenarios use schedule\.sequence only"):
        scenario_from_dict(data)
    data = _aware([])
    with pytest.raises(ConfigError, match=r"schedule\.sequence: the task_aware setting needs"):
        scenario_from_dict(data)
