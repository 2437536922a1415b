"""The event stream: learn tasks and unlearn requests, each serialisable to one JSON line."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import groupby
from typing import Iterable, Literal, Union

RequestKind = Literal["class", "cross_task", "random_sample", "task"]
REQUEST_KINDS: tuple[str, ...] = ("class", "cross_task", "random_sample", "task")


@dataclass(frozen=True)
class LearnTask:
    """New data to learn at ``step``."""

    step: int
    task_id: int
    classes: tuple[int, ...]
    sample_ids: tuple[int, ...]
    """Sorted train ids of the task."""
    mode: Literal["R", "T"] | None = None
    """Task-aware setting only: learned permanently (R) or temporarily (T)."""

    type = "learn"


@dataclass(frozen=True)
class UnlearnRequest:
    """A deletion request at ``step``: forget ``sample_ids`` (and, for class kinds, ``target_classes``)."""

    step: int
    kind: RequestKind
    target_classes: tuple[int, ...]
    """Classes forgotten entirely (class, cross_task, task kinds); empty for random_sample."""
    sample_ids: tuple[int, ...]
    """Sorted train ids to forget."""
    request_id: int
    target_task: int | None = None
    """The forgotten task (kind ``task``)."""
    selection: Literal["atypical", "concentrated"] | None = None
    """random_sample: how the samples were chosen (:mod:`clu.selection`); None = uniform, and for other kinds.
    Left out of the JSON line when None, so uniform streams keep the format they had before selections."""

    type = "unlearn"


Event = Union[LearnTask, UnlearnRequest]


@dataclass(frozen=True)
class Step:
    """What happens at one step: a learn task, an unlearn request, or both at once."""

    index: int
    learn: LearnTask | None
    unlearn: UnlearnRequest | None

    @property
    def kind(self) -> str:
        """``learn``, the request kind, or ``learn+<kind>`` when a request is attached to a learn task."""
        if self.unlearn is None:
            return "learn"
        return self.unlearn.kind if self.learn is None else f"learn+{self.unlearn.kind}"


def to_json(event: Event) -> str:
    """One JSON line: the event's fields plus its ``type`` first (a request's ``selection`` only when set)."""
    d = asdict(event)
    if d.get("selection", "") is None:
        del d["selection"]
    return json.dumps({"type": event.type, **d}, separators=(",", ":"))


def from_json(line: str) -> Event:
    d = json.loads(line)
    kind = d.pop("type")
    for k in ("classes", "sample_ids", "target_classes"):
        if k in d:
            d[k] = tuple(d[k])
    return LearnTask(**d) if kind == "learn" else UnlearnRequest(**d)


def steps(events: Iterable[Event]) -> list[Step]:
    """Group a stream by step (a step holds at most one learn task and one request)."""
    out = []
    for index, group in groupby(events, key=lambda e: e.step):
        g = list(group)
        learn = next((e for e in g if isinstance(e, LearnTask)), None)
        unlearn = next((e for e in g if isinstance(e, UnlearnRequest)), None)
        out.append(Step(index, learn, unlearn))
    return out
