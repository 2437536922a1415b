"""Scenario files → event streams. :func:`generate` is pure: the same spec and seed give the same events.

A scenario file (TOML) names the data, the model, the task split, the setting and the request schedule.
Task-agnostic schedules combine generator ``rules`` ("after each learn task from the 2nd on, one class
request") with explicit ``requests``; task-aware schedules are an R/T/F ``sequence`` (the CLPU protocol).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from clu import seeding
from clu.config import OMIT_DEFAULT, ConfigError, check, from_dict, read_toml
from clu.events import Event, LearnTask, RequestKind, UnlearnRequest
from clu.selection import Selection, atypical, concentrated, uniform
from clu.specs import DataSpec, EvaluationSpec, ModelSpec


@dataclass(frozen=True)
class SplitSpec:
    """How the classes are split into learn tasks."""

    n_tasks: int = 5
    """Number of learn tasks (ignored when ``tasks`` is given)."""
    classes_per_task: int = 2
    """Classes per task (ignored when ``tasks`` is given)."""
    class_order: Literal["seeded", "natural"] = "seeded"
    """``seeded``: classes permuted by the scenario seed; ``natural``: 0, 1, 2, ..."""
    tasks: tuple[tuple[int, ...], ...] = ()
    """Explicit class lists, one per task (overrides the three keys above)."""

    def validate(self) -> None:
        check(self.n_tasks >= 1, "n_tasks", f"must be at least 1, got {self.n_tasks}")
        check(self.classes_per_task >= 1, "classes_per_task", f"a task needs classes, got {self.classes_per_task}")
        seen: set[int] = set()
        for i, t in enumerate(self.tasks):
            check(len(t) > 0, f"tasks[{i}]", "a task with no classes; every task needs at least one class")
            check(all(c >= 0 for c in t), f"tasks[{i}]", f"class ids must be >= 0, got {list(t)}")
            dup = seen.intersection(t)
            check(not dup, f"tasks[{i}]", f"class {sorted(dup)[0] if dup else ''} is already in an earlier task")
            seen.update(t)


@dataclass(frozen=True)
class RequestRule:
    """A generator rule: one request of ``kind`` after learn tasks start_after, start_after+every, ..."""

    kind: RequestKind
    """class | cross_task | random_sample | task."""
    start_after: int = 2
    """The first request arrives after this many learn tasks (1 = after the first)."""
    every: int = 1
    """Then after every ``every``-th learn task."""
    stop_after: int = 0
    """No requests after this many learn tasks (0 = until the end)."""
    n_classes: int = 0
    """class: classes per request (default 1); cross_task: classes from different tasks (default 2)."""
    fraction: float = 0.0
    """random_sample: fraction of the retained learned samples to forget, in (0, 1]."""
    count: int = 0
    """random_sample: number of samples to forget (instead of ``fraction``)."""
    selection: Selection = field(default="uniform", metadata=OMIT_DEFAULT)
    """random_sample: which samples (uniform | atypical | concentrated; see :mod:`clu.selection`)."""

    def validate(self) -> None:
        check(self.start_after >= 1, "start_after", f"must be at least 1, got {self.start_after}")
        check(self.every >= 1, "every", f"must be at least 1, got {self.every}")
        check(self.stop_after >= 0, "stop_after", f"must be >= 0, got {self.stop_after}")
        check(self.n_classes >= 0, "n_classes", f"must be >= 0, got {self.n_classes}")
        if self.kind == "cross_task":
            check(self.n_classes != 1, "n_classes", "a cross_task request needs classes from at least 2 tasks")
        _check_size(self.kind, self.fraction, self.count, self.selection)


@dataclass(frozen=True)
class ExplicitRequest:
    """One request placed by hand after the ``after_task``-th learn task."""

    after_task: int
    """The request arrives after this many learn tasks."""
    kind: RequestKind
    classes: tuple[int, ...] = ()
    """class / cross_task: the classes to forget."""
    task: int = -1
    """task: the task id to forget."""
    fraction: float = 0.0
    """random_sample: fraction of the retained learned samples, in (0, 1]."""
    count: int = 0
    """random_sample: number of samples (instead of ``fraction``)."""
    selection: Selection = field(default="uniform", metadata=OMIT_DEFAULT)
    """random_sample: which samples (uniform | atypical | concentrated; see :mod:`clu.selection`)."""

    def validate(self) -> None:
        check(self.after_task >= 1, "after_task", f"must be at least 1, got {self.after_task}")
        if self.kind in ("class", "cross_task"):
            check(len(self.classes) > 0, "classes", f"a {self.kind} request needs classes")
        else:
            check(not self.classes, "classes", f"classes apply to class/cross_task requests, not {self.kind}")
        if self.kind == "task":
            check(self.task >= 0, "task", "a task request needs the task id (task = N)")
        else:
            check(self.task == -1, "task", f"task applies to task requests, not {self.kind}")
        _check_size(self.kind, self.fraction, self.count, self.selection)


def _check_size(kind: str, fraction: float, count: int, selection: str) -> None:
    if kind != "random_sample":
        check(fraction == 0.0 and count == 0, "fraction", f"fraction/count apply to random_sample, not {kind}")
        check(selection == "uniform", "selection", f"selection applies to random_sample, not {kind}")
        return
    check(count >= 0, "count", f"must be >= 0, got {count}")
    if count == 0:
        check(0.0 < fraction <= 1.0, "fraction", f"must be in (0, 1], got {fraction}")
    else:
        check(fraction == 0.0, "fraction", "give either fraction or count, not both")


@dataclass(frozen=True)
class ScheduleSpec:
    """When which unlearn requests arrive."""

    attach: bool = False
    """false: requests arrive alone; true: attached to the next learn task (one unified step)."""
    rules: tuple[RequestRule, ...] = ()
    """Generator rules (task-agnostic)."""
    requests: tuple[ExplicitRequest, ...] = ()
    """Explicit requests (task-agnostic)."""
    sequence: tuple[tuple[int, Literal["R", "T", "F"]], ...] = ()
    """Task-aware: (task, R|T|F) pairs, e.g. [[0, "R"], [1, "T"], [1, "F"]]."""


@dataclass(frozen=True)
class TrainingSpec:
    """Training budget fixed by the scenario (strategies may not override it)."""

    epochs: int = 5
    """Epochs per learn task."""
    batch_size: int = 32
    """Mini-batch size for learning and unlearning."""
    buffer_size: int = 200
    """Replay buffer capacity in samples."""
    augment: Literal["none", "crop_flip"] = field(default="none", metadata=OMIT_DEFAULT)
    """Learn batches only: crop_flip = random crop (4 pixels of zero padding) + horizontal flip, seeded
    (SFR-on's CIFAR augmentation); none = the images as stored."""
    presets: Literal["default", "paper"] = field(default="default", metadata=OMIT_DEFAULT)
    """Strategy presets a strategy name resolves to: default = strategies/<name>.toml; paper =
    strategies/paper/<name>.toml (the paper-scale reference settings) where that file exists, else the default."""

    def validate(self) -> None:
        check(self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        check(self.buffer_size >= 0, "buffer_size", f"must be >= 0, got {self.buffer_size}")


@dataclass(frozen=True)
class ScenarioSpec:
    """A whole scenario file."""

    name: str
    """Short name, used for run folders."""
    description: str = ""
    """One line: what the scenario models."""
    setting: Literal["task_agnostic", "task_aware"] = "task_agnostic"
    """task_agnostic: class-incremental, one head; task_aware: CLPU R/T/F protocol, task ids at test time."""
    seed: int = 0
    """Default seed (``--seed`` overrides it)."""
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    split: SplitSpec = field(default_factory=SplitSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)

    def validate(self) -> None:
        check(bool(self.name.strip()), "name", "must not be empty")
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        s = self.schedule
        if self.setting == "task_aware":
            check(bool(s.sequence), "schedule.sequence", "the task_aware setting needs an R/T/F sequence")
            check(not s.rules and not s.requests, "schedule.rules", "task_aware scenarios use schedule.sequence only")
        else:
            check(not s.sequence, "schedule.sequence", "a sequence needs setting = \"task_aware\"")


def load_scenario(path: str | Path) -> ScenarioSpec:
    """Read and validate a scenario file; errors name the file and the key."""
    try:
        return from_dict(ScenarioSpec, read_toml(path))
    except ConfigError as e:
        raise e.in_file(path) from None


def scenario_from_dict(data: dict, source: str = "<scenario>") -> ScenarioSpec:
    try:
        return from_dict(ScenarioSpec, data)
    except ConfigError as e:
        raise e.in_file(source) from None


# --------------------------------------------------------------------------------------------- generator


def task_classes(split: SplitSpec, num_classes: int, seed: int) -> list[tuple[int, ...]]:
    """The class list of every task (seeded class order unless explicit)."""
    if split.tasks:
        for i, t in enumerate(split.tasks):
            bad = [c for c in t if c >= num_classes]
            check(not bad, f"split.tasks[{i}]", f"class {bad[0] if bad else ''} does not exist (dataset has {num_classes})")
        return [tuple(t) for t in split.tasks]
    need = split.n_tasks * split.classes_per_task
    check(
        need <= num_classes,
        "split.n_tasks",
        f"{split.n_tasks} tasks x {split.classes_per_task} classes needs {need} classes; the dataset has {num_classes}",
    )
    order = np.arange(num_classes)
    if split.class_order == "seeded":
        order = seeding.class_order(seed).permutation(num_classes)
    k = split.classes_per_task
    return [tuple(int(c) for c in sorted(order[i * k : (i + 1) * k])) for i in range(split.n_tasks)]


class _State:
    """What has been learned and forgotten so far, while the stream is generated."""

    def __init__(self, labels: np.ndarray, learnable: np.ndarray, num_classes: int) -> None:
        self.labels = labels
        self.num_classes = num_classes
        self.learnable = learnable
        self.task_of_class: dict[int, int] = {}
        self.forgotten_classes: set[int] = set()
        self.retained_ids: set[int] = set()
        self.forgotten_ids: set[int] = set()

    def ids_of(self, classes: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(int(i) for i in self.learnable[np.isin(self.labels[self.learnable], classes)])

    def retained_classes(self, task: int | None = None) -> list[int]:
        return sorted(
            c for c, t in self.task_of_class.items() if c not in self.forgotten_classes and (task is None or t == task)
        )

    def retained_of(self, classes: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(i for i in self.ids_of(classes) if i in self.retained_ids))

    def learn(self, task: int, classes: tuple[int, ...]) -> tuple[int, ...]:
        ids = self.ids_of(classes)
        check(len(ids) > 0, f"split.tasks[{task}]", f"task {task} (classes {list(classes)}) has no samples")
        for c in classes:
            self.task_of_class[c] = task
            self.forgotten_classes.discard(c)
        self.retained_ids.update(ids)
        self.forgotten_ids.difference_update(ids)
        return ids

    def forget(self, classes: tuple[int, ...], ids: tuple[int, ...]) -> None:
        self.forgotten_classes.update(classes)
        self.retained_ids.difference_update(ids)
        self.forgotten_ids.update(ids)


def _class_request(state: _State, classes: tuple[int, ...], kind: str, key: str) -> tuple[int, ...]:
    """Validate a class/cross_task request against what is learned; return its sample ids."""
    for c in classes:
        if not 0 <= c < state.num_classes:
            raise ConfigError(f"class {c} does not exist (the dataset has {state.num_classes} classes, "
                              f"0..{state.num_classes - 1})", key=key)
        if c in state.forgotten_classes:
            raise ConfigError(f"class {c} is already forgotten", key=key)
        if c not in state.task_of_class:
            learned = state.retained_classes()
            raise ConfigError(f"class {c} was never learned before this request (learned: {learned})", key=key)
    tasks = {state.task_of_class[c] for c in classes}
    if kind == "class" and len(tasks) > 1:
        raise ConfigError(f"a class request names classes of one task; {list(classes)} span tasks {sorted(tasks)}", key=key)
    if kind == "cross_task" and len(tasks) < 2:
        raise ConfigError(
            f"a cross_task request needs classes from at least 2 tasks; {list(classes)} all come from task {tasks.pop()}",
            key=key,
        )
    if len(state.retained_classes()) <= len(classes):
        raise ConfigError("this request would forget every learned class; keep at least one", key=key)
    return state.retained_of(classes)


def _random_ids(
    state: _State, rng: np.random.Generator, req: RequestRule | ExplicitRequest, key: str, features: np.ndarray | None
) -> tuple[int, ...]:
    """The forget set of a random_sample request, chosen among the retained samples by ``req.selection``."""
    pool = np.array(sorted(state.retained_ids), dtype=np.int64)
    n = req.count if req.count else int(round(req.fraction * len(pool)))
    if n < 1 or n >= len(pool):
        raise ConfigError(f"asks for {n} of the {len(pool)} retained samples; need 1 .. {len(pool) - 1}", key=key)
    if req.selection == "atypical":
        if features is None:
            raise ValueError(f"{key}: atypical selection needs the train inputs: generate(..., features=...)")
        ids = atypical(pool, features[pool], state.labels[pool], n, rng)
    elif req.selection == "concentrated":
        ids = concentrated(pool, state.labels[pool], n, rng)
    else:
        ids = uniform(pool, n, rng)
    return tuple(int(i) for i in ids)


def _rule_classes(state: _State, rule: RequestRule, rng: np.random.Generator, key: str) -> tuple[int, ...]:
    """Pick the classes a generated class / cross_task / task request forgets."""
    tasks = sorted({state.task_of_class[c] for c in state.retained_classes()})
    if rule.kind == "class":
        n = rule.n_classes or 1
        ok = [t for t in tasks if len(state.retained_classes(t)) >= n]
        if not ok:
            raise ConfigError(f"no learned task has {n} retained classes to forget at this point", key=key)
        t = int(rng.choice(ok))
        return tuple(sorted(int(c) for c in rng.choice(state.retained_classes(t), size=n, replace=False)))
    if rule.kind == "cross_task":
        n = rule.n_classes or 2
        if len(tasks) < 2 or len(tasks) < min(n, 2):
            raise ConfigError(f"a cross_task request needs 2 learned tasks with retained classes; have {len(tasks)}", key=key)
        chosen = rng.choice(tasks, size=min(n, len(tasks)), replace=False)
        picks = [int(rng.choice(state.retained_classes(int(t)))) for t in chosen]
        rest = [c for c in state.retained_classes() if c not in picks]
        while len(picks) < n and rest:
            picks.append(rest.pop(int(rng.integers(len(rest)))))
        return tuple(sorted(picks))
    if not tasks:
        raise ConfigError("no learned task left to forget", key=key)
    t = int(rng.choice(tasks))
    return tuple(state.retained_classes(t))


def _make_request(
    state: _State, req: RequestRule | ExplicitRequest, rng: np.random.Generator, key: str, features: np.ndarray | None
) -> tuple[tuple[int, ...], tuple[int, ...], int | None]:
    """(target_classes, sample_ids, target_task) of one request, validated against the state."""
    if req.kind == "random_sample":
        return (), _random_ids(state, rng, req, key, features), None
    if isinstance(req, ExplicitRequest):
        if req.kind == "task":
            classes = tuple(state.retained_classes(req.task))
            if not classes:
                raise ConfigError(f"task {req.task} is not learned (or already forgotten) at this point", key=f"{key}.task")
        else:
            classes = tuple(sorted(req.classes))
            key = f"{key}.classes"
    else:
        classes = _rule_classes(state, req, rng, key)
    kind = "class" if req.kind == "task" else req.kind
    ids = _class_request(state, classes, kind, key)
    target_task = state.task_of_class[classes[0]] if req.kind == "task" else None
    return classes, ids, target_task


def generate(
    spec: ScenarioSpec,
    seed: int,
    labels: np.ndarray,
    learnable_ids: np.ndarray,
    num_classes: int,
    features: np.ndarray | None = None,
) -> list[Event]:
    """The event stream of ``spec`` for ``seed`` (pure: depends only on its arguments).

    ``features`` (the train inputs, row = sample id) is needed only by ``atypical`` random_sample requests.
    """
    classes = task_classes(spec.split, num_classes, seed)
    state = _State(np.asarray(labels), np.asarray(learnable_ids), num_classes)
    if spec.setting == "task_aware":
        return _generate_task_aware(spec, classes, state)
    rng = seeding.scenario_requests(seed)
    events: list[Event] = []
    step = 0
    n_req = 0
    for i, req in enumerate(spec.schedule.requests):
        check(req.after_task <= len(classes), f"schedule.requests[{i}].after_task", f"there are only {len(classes)} learn tasks")
    for i, rule in enumerate(spec.schedule.rules):
        check(rule.start_after <= len(classes), f"schedule.rules[{i}].start_after", f"there are only {len(classes)} learn tasks")
    for t, cls in enumerate(classes):
        ids = state.learn(t, cls)
        events.append(LearnTask(step, t, cls, ids))
        step += 1
        learned = t + 1
        todo: list[tuple[RequestRule | ExplicitRequest, str]] = []
        for r, rule in enumerate(spec.schedule.rules):
            stop = rule.stop_after or len(classes)
            if rule.start_after <= learned <= stop and (learned - rule.start_after) % rule.every == 0:
                todo.append((rule, f"schedule.rules[{r}]"))
        for r, req in enumerate(spec.schedule.requests):
            if req.after_task == learned:
                todo.append((req, f"schedule.requests[{r}]"))
        if spec.schedule.attach and len(todo) > 1 and learned < len(classes):
            raise ConfigError(
                f"{len(todo)} requests after learn task {learned}; attached requests allow one per learn task",
                key="schedule.attach",
            )
        for req, key in todo:
            target, ids_u, task = _make_request(state, req, rng, key, features)
            state.forget(target, ids_u)
            # attached: shares the step of the next learn task (the last task has none to attach to)
            attach = spec.schedule.attach and learned < len(classes)
            selection = None if req.selection == "uniform" else req.selection  # uniform: the original format
            events.append(UnlearnRequest(step, req.kind, target, ids_u, n_req, task, selection))
            n_req += 1
            if not attach:
                step += 1
    return _order(events)


def _order(events: list[Event]) -> list[Event]:
    """Sort by step, request before learn task within a step (a combined step unlearns what came before)."""
    return sorted(events, key=lambda e: (e.step, 0 if isinstance(e, UnlearnRequest) else 1))


def _generate_task_aware(spec: ScenarioSpec, classes: list[tuple[int, ...]], state: _State) -> list[Event]:
    """The CLPU protocol: R learns permanently, T temporarily, F forgets a T task; R on a T task makes it permanent."""
    mode: dict[int, str] = {}
    events: list[Event] = []
    n_req = 0
    for i, (task, op) in enumerate(spec.schedule.sequence):
        key = f"schedule.sequence[{i}]"
        if not 0 <= task < len(classes):
            raise ConfigError(f"task {task} does not exist (tasks 0..{len(classes) - 1})", key=key)
        if op == "F":
            if task not in mode:
                raise ConfigError(f"F on task {task}, which is not learned at this point", key=key)
            if mode[task] == "R":
                raise ConfigError(f"F on task {task}, which is learned permanently (R); only T tasks may be forgotten", key=key)
            ids = state.retained_of(classes[task])
            state.forget(classes[task], ids)
            del mode[task]
            events.append(UnlearnRequest(i, "task", classes[task], ids, n_req, task))
            n_req += 1
            continue
        if mode.get(task) == "R":
            raise ConfigError(f"task {task} is already learned permanently (R); it cannot be learned again", key=key)
        if op == "T" and mode.get(task) == "T":
            raise ConfigError(f"task {task} is already learned temporarily (T)", key=key)
        ids = state.learn(task, classes[task])
        mode[task] = op
        events.append(LearnTask(i, task, classes[task], ids, op))  # type: ignore[arg-type]
    return events


def events_for(spec: ScenarioSpec, seed: int) -> list[Event]:
    """Load the dataset ``spec`` names and generate its events for ``seed``."""
    from clu.data import load_dataset

    data = load_dataset(spec.data)
    return generate(spec, seed, data.train_labels, data.learnable_ids, data.num_classes, data.x_train.numpy())
