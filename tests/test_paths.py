"""clu/paths.py: the shipped scenario files and presets (package data), name resolution, the runs folder;
and the rule that a preset lists only what differs from its config class's defaults."""

from __future__ import annotations

import dataclasses
from importlib.resources import files
from pathlib import Path

import pytest

from clu.config import ConfigError, read_toml
from clu.paths import DEFAULT_SCENARIO, SCENARIO_DIR, STRATEGY_DIR, default_runs_dir, resolve_scenario
from clu.strategies import get_entry, resolve_strategy, strategy_config

PRESETS = sorted(p for p in STRATEGY_DIR.rglob("*.toml") if p.parent.name != "spaces")  # spaces: clu tune's


def test_the_folders_are_the_data_packages() -> None:
    assert SCENARIO_DIR == files("clu.scenarios") and STRATEGY_DIR == files("clu.presets")
    assert (SCENARIO_DIR / f"{DEFAULT_SCENARIO}.toml").is_file()
    assert (STRATEGY_DIR / "ugclu.toml").is_file() and list((STRATEGY_DIR / "ablations").glob("*.toml"))


def test_a_scenario_resolves_by_name_or_path(tmp_path: Path) -> None:
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        assert resolve_scenario(path.stem) == path
        assert resolve_scenario(str(path)) == path
    with pytest.raises(ConfigError, match="unknown scenario 'nope'; give a .toml file or one of: .*digits-class"):
        resolve_scenario("nope")
    with pytest.raises(ConfigError, match="no such scenario file"):
        resolve_scenario(tmp_path / "missing.toml")


def test_runs_go_under_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_runs_dir() == tmp_path / "runs"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.relative_to(STRATEGY_DIR).as_posix())
def test_a_preset_lists_only_what_differs_from_its_config_defaults(path: Path) -> None:
    assert path.read_text().startswith("#"), "a preset starts with a comment saying what it is and how it was tuned"
    data = dict(read_toml(path))
    entry = get_entry(data.pop("strategy"))
    data.pop("label", None)
    defaults = {f.name: f.default for f in dataclasses.fields(entry.config_class)}
    same = sorted(k for k, v in data.items() if k in defaults and defaults[k] == v)
    assert not same, f"{path.name} restates defaults of {entry.config_class.__name__}: {same}"
    # a shipped preset sits on the config defaults; any other file (an ablation) on the shipped preset
    if path.parent.name == "paper":  # a preset family (issue 15): it sits on the config defaults too
        from clu.runconfig import resolve_in_family

        assert resolve_in_family(str(path), "default").config == dataclasses.replace(entry.config_class(), **data)
        return
    base = entry.config_class() if path == entry.preset else strategy_config(entry.name)
    assert resolve_strategy(str(path)).config == dataclasses.replace(base, **data)


def test_every_shipped_search_space_loads() -> None:
    from clu.tune import load_space

    spaces = sorted((STRATEGY_DIR / "spaces").glob("*.toml"))
    assert {p.stem for p in spaces} == {"ugclu", "er-ft", "er-ga", "er-rl", "er-salun", "er-sfron"}
    for p in spaces:
        assert load_space(p).params, p


def test_each_top_level_preset_is_the_preset_of_the_strategy_it_names() -> None:
    for path in sorted(STRATEGY_DIR.glob("*.toml")):
        name = read_toml(path)["strategy"]
        assert get_entry(name).preset == path, f"{path.name} would be ignored: {name}'s preset is another file"
        assert strategy_config(name) == resolve_strategy(str(path)).config
