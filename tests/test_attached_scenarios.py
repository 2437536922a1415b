"""The shipped attached scenarios and their detached twins (issue 13): the same stream, served two ways.

``<ds>-attached.toml`` lets every request ride along the next learn task (``attach = true``);
``<ds>-detached.toml`` is the same file with ``attach = false``, so each request is its own unlearn step.
Both must ask for exactly the same samples and classes, in the same order, for every seed.
"""

from __future__ import annotations

import pytest

from clu.config import read_toml
from clu.data import load_dataset
from clu.events import LearnTask, UnlearnRequest, steps
from clu.paths import SCENARIO_DIR
from clu.scenario import generate, load_scenario

PAIRS = ["digits", "mnist5k"]
SEEDS = [0, 1, 2]


def _events(name: str, seed: int):
    spec = load_scenario(SCENARIO_DIR / f"{name}.toml")
    data = load_dataset(spec.data)
    return spec, generate(spec, seed, data.train_labels, data.learnable_ids, data.num_classes)


def _requests(events) -> list[tuple[int, str, tuple[int, ...], tuple[int, ...]]]:
    return [(e.request_id, e.kind, e.target_classes, e.sample_ids) for e in events if isinstance(e, UnlearnRequest)]


@pytest.mark.parametrize("ds", PAIRS)
def test_the_detached_file_is_the_attached_one_with_attach_false(ds) -> None:
    att = read_toml(SCENARIO_DIR / f"{ds}-attached.toml")
    det = read_toml(SCENARIO_DIR / f"{ds}-detached.toml")
    assert att["schedule"]["attach"] is True and det["schedule"]["attach"] is False
    assert (att["name"], det["name"]) == (f"{ds}-attached", f"{ds}-detached")
    assert att["description"] != det["description"]
    for d in (att, det):
        del d["name"], d["description"], d["schedule"]["attach"]
    assert att == det
    # uneven tasks (3, 3, 2, 2 classes) and the CPU files' shadow count
    assert [len(t) for t in att["split"]["tasks"]] == [3, 3, 2, 2]
    assert att["evaluation"]["shadows"] == 8


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ds", PAIRS)
def test_attached_and_detached_ask_for_the_same_requests(ds, seed) -> None:
    _, att = _events(f"{ds}-attached", seed)
    _, det = _events(f"{ds}-detached", seed)
    ra, rd = _requests(att), _requests(det)
    assert ra == rd
    assert [r[1] for r in ra] == ["random_sample", "class", "cross_task"]  # the three kinds, one each
    assert all(r[3] for r in ra)  # none empty
    # the learn tasks are the same too, in the same order
    la = [(e.task_id, e.classes, e.sample_ids) for e in att if isinstance(e, LearnTask)]
    ld = [(e.task_id, e.classes, e.sample_ids) for e in det if isinstance(e, LearnTask)]
    assert la == ld and len(la) == 4
    assert [len(c) for _, c, _ in la] == [3, 3, 2, 2]
    # the same order in the stream: learn tasks and requests interleave identically
    kinds = lambda evs: [("L", e.task_id) if isinstance(e, LearnTask) else ("U", e.request_id) for e in evs]  # noqa: E731
    assert kinds(att) == [("L", 0), ("U", 0), ("L", 1), ("U", 1), ("L", 2), ("U", 2), ("L", 3)]
    assert kinds(att) == kinds(det)


@pytest.mark.parametrize("ds", PAIRS)
def test_every_request_is_attached_in_one_file_and_none_in_the_other(ds) -> None:
    _, att = _events(f"{ds}-attached", 0)
    _, det = _events(f"{ds}-detached", 0)
    sa, sd = steps(att), steps(det)
    # attached: each request shares a step with the next learn task (tasks 1, 2, 3); no request stands alone
    assert [s.kind for s in sa] == ["learn", "learn+random_sample", "learn+class", "learn+cross_task"]
    assert [s.learn.task_id for s in sa if s.unlearn is not None] == [1, 2, 3]
    # detached: every request is its own step, just before the learn task it rides along in the attached file
    assert [s.kind for s in sd] == ["learn", "random_sample", "learn", "class", "learn", "cross_task", "learn"]
    assert not any(s.learn is not None and s.unlearn is not None for s in sd)
    assert [s.unlearn.request_id for s in sa if s.unlearn] == [s.unlearn.request_id for s in sd if s.unlearn]
