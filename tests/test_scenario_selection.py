"""Forget-set selection in scenario files (issue 14): the ``selection`` key of random_sample requests, the
streams it generates, its place in events.jsonl and ``clu events``, and clean errors for bad values."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clu.cli import main
from clu.config import ConfigError, read_toml
from clu.data import load_dataset
from clu.events import LearnTask, UnlearnRequest, from_json, to_json
from clu.paths import SCENARIO_DIR
from clu.scenario import events_for, generate, load_scenario, scenario_from_dict
from clu.selection import atypicality, fewest_classes

from test_scenario import check_stream

# sha256 of `clu events <file> --seed S --format jsonl` before selections existed: uniform streams never change
GOLDEN = {
    ("digits-random-sample", 0): "72ae054a8c6ef3f902aadc91aa3724b1041f4135392d1efd84bb32553f13193d",
    ("digits-attached", 1): "fed3241ae1054207e99f10a6d0a267c2efc78fabbc5e30586ca9e00d62d9d877",
}


def _digits(selection: str | None, **rule) -> dict:
    """digits-random-sample with its rule's selection (None: no key) and other rule keys changed."""
    data = read_toml(SCENARIO_DIR / "digits-random-sample.toml")
    r = data["schedule"]["rules"][0]
    r.update(rule)
    if selection is not None:
        r["selection"] = selection
    return data


def _generate(data: dict, seed: int = 0):
    spec = scenario_from_dict(data)
    d = load_dataset(spec.data)
    return generate(spec, seed, d.train_labels, d.learnable_ids, d.num_classes, d.x_train.numpy()), d


def _requests_with_pools(events):
    """Each request with the retained ids just before it (replaying the stream)."""
    retained: set[int] = set()
    for e in events:
        if isinstance(e, LearnTask):
            retained |= set(e.sample_ids)
            continue
        yield e, np.array(sorted(retained), dtype=np.int64)
        retained -= set(e.sample_ids)


@pytest.mark.parametrize(("name", "seed"), sorted(GOLDEN))
def test_uniform_streams_are_byte_identical_to_before(name, seed) -> None:
    text = "".join(to_json(e) + "\n" for e in events_for(load_scenario(SCENARIO_DIR / f"{name}.toml"), seed))
    assert hashlib.sha256(text.encode()).hexdigest() == GOLDEN[(name, seed)]
    assert '"selection"' not in text


def test_uniform_by_name_is_the_default() -> None:
    assert _generate(_digits("uniform"))[0] == _generate(_digits(None))[0]
    assert all(e.selection is None for e in _generate(_digits("uniform"))[0] if isinstance(e, UnlearnRequest))


@pytest.mark.parametrize("selection", ["uniform", "atypical", "concentrated"])
def test_same_seed_same_forget_sets(selection) -> None:
    a, data = _generate(_digits(selection), seed=4)
    assert a == _generate(_digits(selection), seed=4)[0]
    assert a != _generate(_digits(selection), seed=5)[0]
    check_stream(a, data.train_labels, data.val_ids)
    reqs = [e for e in a if isinstance(e, UnlearnRequest)]
    assert len(reqs) == 4 and all(e.selection == (None if selection == "uniform" else selection) for e in reqs)


def test_atypical_requests_forget_the_least_typical_retained_samples() -> None:
    events, data = _generate(_digits("atypical"), seed=2)
    x, y = data.x_train.numpy(), data.train_labels
    for e, pool in _requests_with_pools(events):
        score = dict(zip(pool.tolist(), atypicality(x[pool], y[pool]).tolist()))
        chosen = [score[i] for i in e.sample_ids]
        rest = [s for i, s in score.items() if i not in set(e.sample_ids)]
        assert min(chosen) >= max(rest)
        assert np.mean(chosen) > np.mean(rest)
    # the uniform stream of the same seed forgets typical samples mostly
    events_u, _ = _generate(_digits("uniform"), seed=2)
    e, pool = next(_requests_with_pools(events_u))
    score = dict(zip(pool.tolist(), atypicality(x[pool], y[pool]).tolist()))
    assert np.mean([score[i] for i in e.sample_ids]) < 1


def test_concentrated_requests_cover_the_fewest_classes_possible() -> None:
    for seed, fraction in ((0, 0.1), (1, 0.3), (2, 0.45)):
        events, data = _generate(_digits("concentrated", fraction=fraction), seed=seed)
        y = data.train_labels
        for e, pool in _requests_with_pools(events):
            covered = set(y[list(e.sample_ids)].tolist())
            assert len(covered) == fewest_classes(np.unique(y[pool], return_counts=True)[1], len(e.sample_ids))
        assert max(len(set(y[list(e.sample_ids)].tolist())) for e, _ in _requests_with_pools(events)) >= (
            1 if fraction < 0.3 else 2
        )


def test_explicit_requests_take_a_selection() -> None:
    data = _digits(None)
    del data["schedule"]["rules"]
    data["schedule"]["requests"] = [
        {"after_task": 2, "kind": "random_sample", "count": 30, "selection": "concentrated"},
        {"after_task": 3, "kind": "random_sample", "count": 20, "selection": "atypical"},
    ]
    events, d = _generate(data)
    reqs = [e for e in events if isinstance(e, UnlearnRequest)]
    assert [(e.selection, len(e.sample_ids)) for e in reqs] == [("concentrated", 30), ("atypical", 20)]
    assert len(set(d.train_labels[list(reqs[0].sample_ids)].tolist())) == 1


def test_atypical_needs_the_inputs() -> None:
    spec = scenario_from_dict(_digits("atypical"))
    d = load_dataset(spec.data)
    with pytest.raises(ValueError, match=r"schedule.rules\[0\]: atypical selection needs the train inputs"):
        generate(spec, 0, d.train_labels, d.learnable_ids, d.num_classes)
    # the other selections do not
    spec = scenario_from_dict(_digits("concentrated"))
    assert generate(spec, 0, d.train_labels, d.learnable_ids, d.num_classes)


@settings(max_examples=20, deadline=None)
@given(
    selection=st.sampled_from(["uniform", "atypical", "concentrated"]),
    n_features=st.sampled_from([8, 80]),  # 80: above PROJECTED_DIMS, so the projection is used
    size=st.one_of(st.fixed_dictionaries({"fraction": st.floats(0.01, 1.0)}),
                   st.fixed_dictionaries({"count": st.integers(1, 400)})),
    start_after=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_selection_generates_a_valid_stream_or_fails_cleanly(selection, n_features, size, start_after, seed) -> None:
    data = {"name": "gen", "data": {"name": "synthetic", "n_samples": 300, "n_features": n_features, "n_classes": 6},
            "split": {"n_tasks": 3, "classes_per_task": 2},
            "schedule": {"rules": [{"kind": "random_sample", "start_after": start_after, "selection": selection, **size}]}}
    try:
        events, d = _generate(data, seed)
    except ConfigError as e:
        assert e.key == "schedule.rules[0]" and "retained samples; need 1 .." in str(e)
        return
    check_stream(events, d.train_labels, d.val_ids)
    y = d.train_labels
    for e, pool in _requests_with_pools(events):
        assert e.selection == (None if selection == "uniform" else selection)
        if selection == "concentrated":
            counts = np.unique(y[pool], return_counts=True)[1]
            assert len(set(y[list(e.sample_ids)].tolist())) == fewest_classes(counts, len(e.sample_ids))
    assert events == _generate(data, seed)[0]


# --- events.jsonl and clu events --------------------------------------------------------------------------


def test_the_selection_is_written_and_read_back() -> None:
    events, _ = _generate(_digits("atypical"))
    req = next(e for e in events if isinstance(e, UnlearnRequest))
    line = to_json(req)
    assert json.loads(line)["selection"] == "atypical" and list(json.loads(line))[-1] == "selection"
    assert from_json(line) == req
    # a line written before selections existed reads as a uniform request
    old = '{"type":"unlearn","step":2,"kind":"random_sample","target_classes":[],"sample_ids":[3,8],"request_id":0,' \
          '"target_task":null}'
    back = from_json(old)
    assert back.selection is None and to_json(back) == old


def test_clu_events_shows_the_selection(capsys, tmp_path) -> None:
    path = tmp_path / "conc.toml"
    path.write_text((SCENARIO_DIR / "digits-random-sample.toml").read_text() + '\n')
    text = path.read_text().replace("fraction = 0.1\n", 'fraction = 0.1\nselection = "concentrated"\n')
    path.write_text(text)
    assert main(["events", str(path)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["step", "kind", "task", "classes", "samples", "selection"]
    assert [r.split()[-1] for r in rows[1:] if "random_sample" in r] == ["concentrated"] * 4
    assert main(["events", "digits-random-sample"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[-1] for r in rows[1:] if "random_sample" in r] == ["uniform"] * 4
    assert main(["events", "digits-class"]) == 0  # no random_sample request: no selection column
    assert capsys.readouterr().out.splitlines()[0].split() == ["step", "kind", "task", "classes", "samples"]


# --- bad values ---------------------------------------------------------------------------------------------

BAD = {
    "unknown": ('fraction = 0.1\n', 'fraction = 0.1\nselection = "typical"\n', "schedule.rules[0].selection",
                "'typical' is not allowed; choose 'uniform' | 'atypical' | 'concentrated'"),
    "not_a_string": ('fraction = 0.1\n', 'fraction = 0.1\nselection = 3\n', "schedule.rules[0].selection",
                     "3 is not allowed"),
    "class_rule": ('kind = "random_sample"\nstart_after = 2\nevery = 1\nfraction = 0.1\n',
                   'kind = "class"\nstart_after = 2\nevery = 1\nselection = "atypical"\n',
                   "schedule.rules[0].selection", "selection applies to random_sample, not class"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_selections_are_clean_errors(case, tmp_path, capsys) -> None:
    old, new, key, words = BAD[case]
    text = (SCENARIO_DIR / "digits-random-sample.toml").read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as e:
        load_scenario(path)
    assert str(e.value) == f"{path}: {key}: {words}" or str(e.value).startswith(f"{path}: {key}: {words}")
    for argv in (["events", str(path)], ["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.strip().splitlines()[-1].startswith(f"clu: error: {path}: {key}: ")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # nothing written


# --- the shipped files ------------------------------------------------------------------------------------------


def _strip(name: str) -> dict:
    data = read_toml(SCENARIO_DIR / f"{name}.toml")
    assert data["name"] == name and data["description"]
    del data["name"], data["description"]
    return data


@pytest.mark.parametrize("selection", ["atypical", "concentrated"])
def test_the_selection_files_are_mnist5k_random_sample_with_a_selection(selection) -> None:
    data, base = _strip(f"mnist5k-{selection}"), _strip("mnist5k-random-sample")
    assert data["schedule"]["rules"][0].pop("selection") == selection
    assert data == base


def test_the_memorise_file_is_mnist5k_random_sample_with_more_epochs() -> None:
    data, base = _strip("mnist5k-memorise"), _strip("mnist5k-random-sample")
    assert data["training"].pop("epochs") > base["training"].pop("epochs")
    assert data == base


def test_the_many_requests_file_asks_after_every_task() -> None:
    events, data = _generate(read_toml(SCENARIO_DIR / "synthetic-many-requests.toml"))
    check_stream(events, data.train_labels, data.val_ids)
    kinds = [("L" if isinstance(e, LearnTask) else e.kind) for e in events]
    assert kinds == ["L", "random_sample", "L", "class"] * 5
    assert load_scenario(SCENARIO_DIR / "synthetic-many-requests.toml").evaluation.shadows == 0  # CPU-cheap
