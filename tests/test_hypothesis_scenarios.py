"""Property: every scenario file, valid or not, either generates its events or fails cleanly (DESIGN §5, §12).

Hypothesis writes scenario files: mostly well-formed ones around the ready digits scenarios (task-agnostic
rules and explicit requests, task-aware R/T/F sequences) with values near and beyond their limits, plus
wrong types, unknown keys, unknown names and broken TOML. Each file goes through ``clu events`` in-process:
status 0 with a well-formed, reproducible stream, or status 2 with one ``clu: error:`` line naming the file.
Any other exception escapes ``main`` and fails the test with its traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clu.cli import main
from clu.config import ConfigError, dump_toml
from clu.events import LearnTask, UnlearnRequest, from_json, steps
from clu.scenario import events_for, load_scenario

KINDS = ("class", "cross_task", "random_sample", "task")


def opt(value: st.SearchStrategy[Any], weird: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    """A value, or now and then (1 in 20) a wrong one."""
    bad = weird if weird is not None else st.sampled_from(["x", 1.5, True, [1], -1])
    return st.integers(0, 19).flatmap(lambda i: bad if i == 0 else value)


rule = st.fixed_dictionaries(
    {"kind": opt(st.sampled_from(KINDS), st.just("forget_all"))},
    optional={
        "start_after": opt(st.integers(0, 6)),
        "every": opt(st.integers(0, 3)),
        "stop_after": opt(st.integers(-1, 6)),
        "n_classes": opt(st.integers(-1, 4)),
        "fraction": opt(st.floats(-0.2, 1.2, allow_nan=False)),
        "count": opt(st.integers(-1, 1500)),
    },
)
request = st.fixed_dictionaries(
    {"after_task": opt(st.integers(0, 6)), "kind": opt(st.sampled_from(KINDS))},
    optional={
        "classes": opt(st.lists(st.integers(-1, 11), max_size=3)),
        "task": opt(st.integers(-1, 5)),
        "fraction": opt(st.floats(0.0, 1.1, allow_nan=False)),
        "count": opt(st.integers(0, 50)),
        "bogus": st.just(1),
    },
)
op = st.tuples(opt(st.integers(-1, 5)), opt(st.sampled_from(["R", "T", "F"]), st.just("X"))).map(list)

data = st.one_of(
    st.fixed_dictionaries({"name": st.just("digits")}, optional={"val_fraction": opt(st.floats(-0.1, 0.6)),
                                                                  "test_fraction": opt(st.floats(0.0, 0.95))}),
    st.fixed_dictionaries({"name": st.just("synthetic"), "n_samples": st.sampled_from([50, 100, 400]),
                           "n_classes": st.integers(1, 12), "n_features": st.integers(2, 12)}),
    st.fixed_dictionaries({"name": st.sampled_from(["cifar10", "imagenet", 7])}),
)
split = st.fixed_dictionaries(
    {},
    optional={
        "n_tasks": opt(st.integers(-1, 7)),
        "classes_per_task": opt(st.integers(-1, 4)),
        "class_order": opt(st.sampled_from(["seeded", "natural"]), st.just("random")),
        "tasks": opt(st.lists(st.lists(st.integers(-1, 11), max_size=3), max_size=5)),
    },
)
schedule = st.fixed_dictionaries(
    {},
    optional={
        "attach": opt(st.booleans()),
        "rules": st.lists(rule, max_size=2),
        "requests": st.lists(request, max_size=3),
        "sequence": opt(st.lists(op, max_size=8)),
    },
)
training = st.fixed_dictionaries(
    {},
    optional={"epochs": opt(st.integers(0, 3)), "batch_size": opt(st.integers(0, 64)),
              "buffer_size": opt(st.integers(-1, 300))},
)
scenario = st.fixed_dictionaries(
    {"name": opt(st.sampled_from(["gen", "digits-x"]), st.sampled_from(["", "  ", 3]))},
    optional={
        "setting": opt(st.sampled_from(["task_agnostic", "task_aware"]), st.just("online")),
        "seed": opt(st.integers(0, 3)),
        "description": st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
        "data": data,
        "model": st.fixed_dictionaries({"name": opt(st.sampled_from(["mlp", "cnn"]), st.just("vit"))}),
        "split": split,
        "schedule": schedule,
        "training": training,
    },
)


@st.composite
def scenario_text(draw: st.DrawFn) -> str:
    spec = draw(scenario)
    text = dump_toml(spec)
    damage = draw(st.sampled_from(["none"] * 12 + ["unknown_key", "truncate", "garbage"]))
    if damage == "unknown_key":
        text = draw(st.sampled_from(["colour = 1\n", "[training]\nepoch = 2\n", "[data]\nnam = 1\n"])) + text
    elif damage == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == "garbage":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["[[", "= =", '"', "\x00", "[split]\n"])) + text[at:]
    return text


def _events_cli(path: Path, seed: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["events", str(path), "--format", "jsonl", *(["--seed", seed] if seed else [])]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse (not expected here, but it is a clean exit 2 as well)
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()


def _check_stream(lines: list[str]) -> None:
    events = [from_json(line) for line in lines]
    assert events and isinstance(events[0], LearnTask)
    assert [e.step for e in events] == sorted(e.step for e in events)
    learned: set[int] = set()
    for s in steps(events):
        if s.unlearn is not None:
            assert isinstance(s.unlearn, UnlearnRequest) and s.unlearn.sample_ids
            assert set(s.unlearn.sample_ids) <= learned, "a request for ids never learned (or already forgotten)"
            learned -= set(s.unlearn.sample_ids)
        if s.learn is not None:
            learned |= set(s.learn.sample_ids)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hypothesis-scenarios")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=scenario_text(), seed=st.sampled_from([None, "0", "5"]))
def test_every_scenario_file_generates_or_fails_cleanly(folder: Path, text: str, seed: str | None) -> None:
    path = folder / "scenario.toml"
    path.write_text(text)
    rc, stdout, stderr = _events_cli(path, seed)
    if rc == 0:
        assert stderr == ""
        lines = stdout.splitlines()
        _check_stream(lines)
        assert _events_cli(path, seed)[1] == stdout  # the same file and seed: the same stream, byte for byte
        spec = load_scenario(path)  # and the API agrees with the command
        api = events_for(spec, spec.seed if seed is None else int(seed))
        assert [json.loads(line) for line in lines] == [json.loads(json.dumps(_as_json(e))) for e in api]
    else:
        assert rc == 2, stderr
        assert stdout == ""
        assert stderr.startswith(f"clu: error: {path}: ") and stderr.count("\n") == 1, stderr  # names the file
        assert "Traceback" not in stderr
        with pytest.raises(ConfigError):  # the API raises the clean error, nothing else
            spec = load_scenario(path)
            events_for(spec, spec.seed if seed is None else int(seed))


def _as_json(event: Any) -> dict[str, Any]:
    from clu.events import to_json

    return json.loads(to_json(event))


# Found by the property test above: bad data settings that once crashed inside the data layer.
DATA_CRASHES = {
    "empty_test_split": 'name = "gen"\n[data]\nname = "digits"\ntest_fraction = 0.001953125\n',
    "synthetic_too_few_features": 'name = "gen"\n[data]\nname = "synthetic"\nn_samples = 100\nn_classes = 5\n'
    "n_features = 2\n",
}


@pytest.mark.parametrize("case", sorted(DATA_CRASHES))
def test_former_data_layer_crashes_fail_cleanly(folder: Path, case: str) -> None:
    path = folder / f"{case}.toml"
    path.write_text(DATA_CRASHES[case])
    rc, _, stderr = _events_cli(path)
    assert rc == 2 and stderr.startswith("clu: error: ")
