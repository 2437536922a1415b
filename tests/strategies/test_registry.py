"""The strategy registry and preset files (DESIGN §7, §12: bad input names the file and the key)."""

from __future__ import annotations

import pytest

from clu.config import ConfigError
from clu.strategies import STRATEGIES, CLUStrategy, register_strategy, resolve_strategy, strategy_config
from clu.strategies.er import ER
from clu.strategies.er_ga import ERGAConfig


def test_duplicate_registration_raises_and_keeps_the_first():
    before = dict(STRATEGIES)

    class Impostor(CLUStrategy):
        pass

    with pytest.raises(ValueError, match="'er'.*already registered"):
        register_strategy("er", "an impostor")(Impostor)
    assert STRATEGIES == before
    assert STRATEGIES["er"].cls is ER
    assert Impostor.name != "er"


def test_every_registered_strategy_has_its_preset_and_a_valid_default_config():
    for name, entry in STRATEGIES.items():
        assert entry.cls.name == name
        assert entry.preset.is_file(), f"{name}: no preset {entry.preset}"
        cfg = strategy_config(name)
        assert isinstance(cfg, entry.cls.config_class)


def test_unknown_strategy_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as e:
        resolve_strategy("er_magic")
    assert "er_magic" in str(e.value)
    assert "ugclu" in str(e.value)  # and lists what is known
    with pytest.raises(ConfigError, match="er_magic"):
        strategy_config("er_magic")


def test_preset_name_resolves_to_the_registry_preset():
    choice = resolve_strategy("er_ga")
    assert (choice.name, choice.label) == ("er_ga", "er_ga")
    assert isinstance(choice.config, ERGAConfig)


def test_preset_file_with_an_override(tmp_path):
    path = tmp_path / "my-ga.toml"
    path.write_text('strategy = "er_ga"\nunlearn_iters = 7\nlr = 0.02\n')
    choice = resolve_strategy(str(path))
    assert choice.name == "er_ga"
    assert choice.label == "my-ga"  # the file name, unless the file gives a label
    assert isinstance(choice.config, ERGAConfig)
    assert choice.config.unlearn_iters == 7 and choice.config.lr == 0.02  # the overrides
    default = strategy_config("er_ga")
    assert choice.config.unlearn_lr == default.unlearn_lr and choice.config.clip == default.clip  # the rest


def test_preset_file_with_a_label(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('strategy = "er"\nlabel = "er-slow"\nlr = 0.001\n')
    choice = resolve_strategy(str(path))
    assert (choice.name, choice.label, choice.config.lr) == ("er", "er-slow", 0.001)


def test_unknown_key_in_a_preset_names_file_and_key(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('strategy = "er_ga"\nunlearn_itres = 7\n')
    with pytest.raises(ConfigError) as e:
        resolve_strategy(str(path))
    assert e.value.file == str(path)
    assert e.value.key == "unlearn_itres"
    assert str(path) in str(e.value) and "unlearn_itres" in str(e.value)
    assert "unlearn_iters" in str(e.value)  # and says what is allowed


def test_bad_value_in_a_preset_names_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('strategy = "er_ga"\nlr = -1.0\n')
    with pytest.raises(ConfigError) as e:
        resolve_strategy(str(path))
    assert e.value.file == str(path) and e.value.key == "lr"


def test_preset_file_naming_an_unknown_strategy(tmp_path):
    path = tmp_path / "nope.toml"
    path.write_text('strategy = "er_magic"\n')
    with pytest.raises(ConfigError) as e:
        resolve_strategy(str(path))
    assert e.value.file == str(path) and "er_magic" in str(e.value)


def test_preset_file_without_a_strategy(tmp_path):
    path = tmp_path / "anon.toml"
    path.write_text("lr = 0.1\n")
    with pytest.raises(ConfigError) as e:
        resolve_strategy(str(path))
    assert e.value.file == str(path) and e.value.key == "strategy"


def test_missing_preset_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        resolve_strategy(str(tmp_path / "absent.toml"))
    assert "absent.toml" in str(e.value)
