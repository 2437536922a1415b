"""clu.grid: ``--set KEY=V1,V2,...`` parsed, applied to a scenario's raw table and validated like a file."""

from __future__ import annotations

import tomllib

import pytest

from clu.config import ConfigError
from clu.grid import Grid, apply_setting, expand, make_grid, parse_grid, parse_setting, short_names, split_values, \
    value_slug
from tiny import TINY

RAW = tomllib.loads(TINY.replace('kind = "class"', 'kind = "random_sample"\nfraction = 0.1'))


def test_parse_setting_reads_toml_values_and_bare_words() -> None:
    s = parse_setting("schedule.rules[0].fraction=0.01, 0.5")
    assert (s.key, s.path, s.values, s.texts) == ("schedule.rules[0].fraction", ("schedule", "rules", 0, "fraction"),
                                                  (0.01, 0.5), ("0.01", "0.5"))
    assert parse_setting("model.hidden=[128],[64, 64]").values == ([128], [64, 64])  # commas inside brackets stay
    assert parse_setting("split.class_order=natural,\"seeded\"").values == ("natural", "seeded")
    assert parse_setting("schedule.attach=true,false").values == (True, False)
    assert split_values('a,"b,c",{x = 1, y = 2}') == ["a", '"b,c"', "{x = 1, y = 2}"]


@pytest.mark.parametrize("arg, words", [
    ("training.epochs", "KEY=V1,V2"),
    ("=3", "KEY=V1,V2"),
    ("training..epochs=3", "not a field path"),
    ("schedule.rules[-1].fraction=0.1", "not a field path"),
    ("training.epochs=3,,5", "non-empty"),
    ("training.epochs=", "non-empty"),
    ("training.epochs=3,3", "given twice"),
    ("schedule.rules[0].fraction=1,1.0", "given twice"),
    ("name=a,b", "grid names each scenario"),
    ("seed=1,2", "--seeds"),
    ("schedule.rules[0].fraction=inf", "finite number"),
    ("description=1979-05-27", "finite number"),
])
def test_malformed_settings_are_errors_naming_the_argument(arg: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_setting(arg)
    assert e.value.key == f"--set {arg}" and words in e.value.detail


def test_one_field_twice_is_an_error() -> None:
    with pytest.raises(ConfigError, match="already a grid axis"):
        parse_grid(["training.epochs=1", "training.epochs=2"])


def test_short_names_are_the_shortest_distinct_tails() -> None:
    got = short_names(parse_grid(["schedule.rules[0].fraction=0.1", "schedule.rules[1].fraction=0.2",
                                  "training.epochs=3", "split.n_tasks=5"]))
    assert got == {"schedule.rules[0].fraction": "rules.0.fraction", "schedule.rules[1].fraction": "rules.1.fraction",
                   "training.epochs": "epochs", "split.n_tasks": "n_tasks"}
    assert [value_slug(v) for v in (0.05, 3, True, "a b/c", [128, 64], 1e-05)] == [
        "0.05", "3", "true", "a-b-c", "128-64", "1e-05"]


def test_expand_makes_the_cartesian_product_validated_like_a_file() -> None:
    settings = parse_grid(["schedule.rules[0].fraction=0.05,0.2", "training.epochs=3,15", "evaluation.shadows=2"])
    grid = expand(RAW, "tiny.toml", settings)
    names = [g.point.scenario for g in grid]
    assert names == ["tiny+fraction=0.05+epochs=3+shadows=2", "tiny+fraction=0.05+epochs=15+shadows=2",
                     "tiny+fraction=0.2+epochs=3+shadows=2", "tiny+fraction=0.2+epochs=15+shadows=2"]
    spec = grid[1].spec
    assert (spec.name, spec.schedule.rules[0].fraction, spec.training.epochs) == (names[1], 0.05, 15)
    assert spec.evaluation.shadows == 2  # a table the file does not have is created
    assert spec.split == grid[0].spec.split and spec.model == grid[0].spec.model  # the rest as in the file
    assert grid[2].point.values == (("schedule.rules[0].fraction", 0.2), ("training.epochs", 3),
                                    ("evaluation.shadows", 2))
    assert RAW["schedule"]["rules"][0]["fraction"] == 0.1 and "evaluation" not in RAW  # the input is not changed
    g = make_grid(settings, grid)
    assert Grid.from_record(g.record()) == g
    assert g.record()["axes"][0] == {"key": "schedule.rules[0].fraction", "field": "fraction", "values": [0.05, 0.2]}


@pytest.mark.parametrize("arg, key, words", [
    ("training.epoch=3", "--set training.epoch=3", "unknown key"),
    ("trainin.epochs=3", "--set trainin.epochs=3", "trainin: unknown key"),
    ("schedule.rules[1].fraction=0.1", "--set schedule.rules[1].fraction=0.1", "out of range: schedule.rules has 1"),
    ("split.tasks[0]=[1]", "--set split.tasks[0]=[1]", "out of range: split.tasks has no items"),
    ("training.epochs.x=3", "--set training.epochs.x=3", "training.epochs is not a table"),
    ("training[0]=3", "--set training[0]=3", "training is not a list"),
    ("training.epochs=3,2.5", "--set training.epochs=2.5", "expected a whole number, got 2.5"),
    ("training.epochs=three", "--set training.epochs=three", "expected a whole number, got 'three'"),
    ("schedule.rules[0].fraction=0.5,1.5", "--set schedule.rules[0].fraction=1.5", "must be in (0, 1]"),
    ("setting=task_aware", "--set setting=task_aware", "schedule.sequence: the task_aware setting needs"),
])
def test_bad_values_are_errors_naming_the_file_and_the_set_argument(arg: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        expand(RAW, "tiny.toml", parse_grid([arg]))
    assert (e.value.file, e.value.key) == ("tiny.toml", key)
    assert words in e.value.detail


def test_a_bad_combination_names_every_setting_of_the_grid_point() -> None:
    with pytest.raises(ConfigError) as e:
        expand(RAW, "tiny.toml", parse_grid(["schedule.rules[0].kind=class", "schedule.rules[0].count=0,3"]))
    # the file's fraction = 0.1 on what is now a class rule: no one setting is at fault, the grid point is
    assert e.value.key == "--set schedule.rules[0].kind=class --set schedule.rules[0].count=0"
    assert e.value.detail.startswith("schedule.rules[0].fraction: fraction/count apply to random_sample")


def test_values_that_give_one_name_are_an_error() -> None:
    with pytest.raises(ConfigError, match="both named 'tiny\\+description=a-b'"):
        expand(RAW, "tiny.toml", parse_grid(["description=a b,a/b"]))


def test_apply_setting_writes_in_place() -> None:
    raw = {"schedule": {"rules": [{"kind": "class"}]}}
    apply_setting(raw, parse_setting("schedule.rules[0].start_after=3"), 3, "--set x")
    assert raw == {"schedule": {"rules": [{"kind": "class", "start_after": 3}]}}
