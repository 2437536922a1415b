"""The config loader (clu.config): unknown keys and wrong types become one clean ConfigError naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from clu.config import ConfigError, from_dict, read_toml, replace_from, to_dict
from clu.paths import SCENARIO_DIR
from clu.scenario import ScenarioSpec, load_scenario, scenario_from_dict


@dataclass(frozen=True)
class Inner:
    size: int = 1
    rate: float = 0.5
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outer:
    name: str
    mode: Literal["fast", "slow"] = "fast"
    flag: bool = False
    maybe: int | None = None
    inner: Inner = field(default_factory=Inner)
    items: tuple[Inner, ...] = ()
    pair: tuple[int, str] = (0, "a")


def _error(cls, data) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        from_dict(cls, data)
    return info.value


# --- happy path -----------------------------------------------------------------------------------


def test_from_dict_converts_lists_and_tables() -> None:
    obj = from_dict(Outer, {"name": "x", "inner": {"size": 3, "rate": 2, "names": ["a", "b"]},
                            "items": [{"size": 4}], "pair": [1, "b"], "maybe": 7})
    assert obj == Outer("x", inner=Inner(3, 2.0, ("a", "b")), items=(Inner(4),), pair=(1, "b"), maybe=7)
    assert isinstance(obj.inner.rate, float)  # an int is accepted for a float and converted


def test_to_dict_round_trips() -> None:
    obj = from_dict(Outer, {"name": "x", "items": [{"size": 4}], "mode": "slow"})
    assert from_dict(Outer, to_dict(obj)) == obj


def test_replace_from_validates_overrides() -> None:
    obj = Outer("x")
    assert replace_from(obj, {"flag": True}).flag is True
    with pytest.raises(ConfigError, match="flag"):
        replace_from(obj, {"flag": "yes"})


# --- unknown keys -----------------------------------------------------------------------------------


def test_unknown_top_level_key_is_named_with_the_allowed_ones() -> None:
    e = _error(Outer, {"name": "x", "colour": 1})
    assert e.key == "colour"
    assert "unknown key" in str(e)
    assert "allowed keys here: flag, inner, items, maybe, mode, name, pair" in str(e)


def test_unknown_nested_key_names_the_dotted_path() -> None:
    assert _error(Outer, {"name": "x", "inner": {"sise": 2}}).key == "inner.sise"
    assert _error(Outer, {"name": "x", "items": [{}, {"rat": 1.0}]}).key == "items[1].rat"


def test_unknown_key_in_a_scenario_names_the_dotted_key_and_the_file() -> None:
    data = read_toml(SCENARIO_DIR / "digits-class.toml")
    data["schedule"]["rules"][0]["n_clases"] = 2
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(data, "my.toml")
    assert info.value.key == "schedule.rules[0].n_clases"
    assert str(info.value).startswith("my.toml: schedule.rules[0].n_clases: unknown key")
    assert "n_classes" in str(info.value)  # the allowed keys are listed

    data = read_toml(SCENARIO_DIR / "digits-class.toml")
    data["split"]["task"] = [[0, 1]]
    with pytest.raises(ConfigError, match=r"split\.task: unknown key"):
        scenario_from_dict(data)


# --- wrong types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"name": 3}, "name", "expected a string, got 3"),
        ({"name": "x", "flag": 1}, "flag", "expected true or false, got 1"),
        ({"name": "x", "inner": {"size": "3"}}, "inner.size", "expected a whole number, got '3'"),
        ({"name": "x", "inner": {"size": True}}, "inner.size", "expected a whole number, got True"),
        ({"name": "x", "inner": {"size": 1.5}}, "inner.size", "expected a whole number, got 1.5"),
        ({"name": "x", "inner": {"rate": "fast"}}, "inner.rate", "expected a number"),
        ({"name": "x", "inner": {"names": "ab"}}, "inner.names", "expected a list of str"),
        ({"name": "x", "inner": {"names": ["a", 2]}}, "inner.names[1]", "expected a string"),
        ({"name": "x", "inner": 4}, "inner", "expected a table"),
        ({"name": "x", "mode": "medium"}, "mode", "choose 'fast' | 'slow'"),
        ({"name": "x", "maybe": "n"}, "maybe", "is not int or nothing"),
        ({"name": "x", "pair": [1]}, "pair", "expected a list [int, str]"),
    ],
)
def test_wrong_type_message_names_key_and_what_is_allowed(data, key, words) -> None:
    e = _error(Outer, data)
    assert e.key == key
    assert words in str(e)
    assert str(e).startswith(f"{key}: ")


def test_missing_required_key() -> None:
    e = _error(Outer, {})
    assert e.key == "name"
    assert "required key is missing" in str(e)


def test_wrong_type_in_scenario_file(tmp_path) -> None:
    text = (SCENARIO_DIR / "digits-class.toml").read_text().replace("epochs = 5", 'epochs = "five"')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: training.epochs: expected a whole number, got 'five'"


def test_validate_errors_are_nested_under_their_table() -> None:
    data = read_toml(SCENARIO_DIR / "digits-class.toml")
    data["training"]["batch_size"] = 0
    with pytest.raises(ConfigError) as info:
        from_dict(ScenarioSpec, data)
    assert info.value.key == "training.batch_size"


# --- files and the error object ---------------------------------------------------------------------


def test_read_toml_missing_file_and_syntax_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such file") as info:
        read_toml(tmp_path / "nope.toml")
    assert info.value.file == str(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        read_toml(bad)
    assert info.value.file == str(bad)


def test_config_error_in_file_and_under() -> None:
    e = ConfigError("must be positive", key="epochs")
    assert str(e) == "epochs: must be positive"
    assert str(e.under("training")) == "training.epochs: must be positive"
    assert str(e.in_file("a.toml")) == "a.toml: epochs: must be positive"
    assert str(e.in_file("a.toml").in_file("b.toml")) == "a.toml: epochs: must be positive"  # first file wins
    assert isinstance(e, ValueError)


def test_every_ready_scenario_file_loads() -> None:
    files = sorted(SCENARIO_DIR.glob("*.toml"))
    assert len(files) >= 12
    for f in files:
        spec = load_scenario(f)
        assert spec.name == f.stem
        assert spec.description
