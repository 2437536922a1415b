"""The strategy registry and preset files (DESIGN §7, §12: bad input names the file and the key)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from clu.config import ConfigError, read_toml
from clu.strategies import (
    STRATEGIES,
    ERGAConfig,
    ERSFRonConfig,
    ReplayConfig,
    StrategyConfig,
    StrategyEntry,
    UGCLUConfig,
    register,
    resolve_strategy,
    strategy_config,
)
from clu.strategies.base import CLUStrategy
from clu.strategies.er import ER


def test_importing_the_registry_and_resolving_every_preset_loads_no_torch():
    code = textwrap.dedent(
        """
        import sys
        import clu.strategies as s
        for name, entry in s.STRATEGIES.items():
            s.resolve_strategy(name)
            assert entry.summary and entry.config_class
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "avalanche", "ray"))
        print(heavy[:5])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_duplicate_registration_raises_and_keeps_the_first():
    before = dict(STRATEGIES)
    with pytest.raises(ValueError, match="'er'.*already registered"):
        register(StrategyEntry("er", "an impostor", StrategyConfig, "clu.strategies.naive:Naive"))
    assert STRATEGIES == before
    assert STRATEGIES["er"].load() is ER


def test_every_registered_strategy_loads_and_has_its_preset_and_a_valid_default_config():
    for name, entry in STRATEGIES.items():
        assert entry.load().name == name
        assert entry.preset.is_file(), f"{name}: no preset {entry.preset}"
        cfg = strategy_config(name)
        assert isinstance(cfg, entry.config_class)


def _preset_values(path) -> tuple[str, dict]:
    """The strategy a preset file names and the values it sets."""
    data = dict(read_toml(path))
    data.pop("label", None)
    return data.pop("strategy"), data


def test_a_bare_config_is_its_own_method():
    """No preset needed: each config class carries its method's defaults (a preset only tunes them; that it
    lists only non-default values is tests/test_paths.py's check)."""
    for name, entry in STRATEGIES.items():
        _, values = _preset_values(entry.preset)
        if not values:
            assert strategy_config(name) == entry.config_class(), name
    assert ERGAConfig().unlearn_iters == 5
    sfron = ERSFRonConfig()  # SFR-on, not the project's kl_proxy extension
    assert (sfron.forget_loss, sfron.alpha_u, sfron.lam, sfron.adaptive_weights, sfron.mask) == (
        "ga_weighted", 10.0, 0.5, True, "balanced")
    assert (sfron.forget_freq, sfron.clip, sfron.unlearn_lr, sfron.order) == (5, 7.0, 0.01, "fast_slow")
    assert UGCLUConfig().forget_loss == "kl_proxy"
    assert STRATEGIES["er"].config_class is ReplayConfig and STRATEGIES["retrain_stream"].config_class is ReplayConfig
    assert STRATEGIES["er_sfron"].config_class is ERSFRonConfig


class Mine(CLUStrategy):
    name = "mine"


def test_an_entry_may_name_its_config_and_class_as_strings_or_give_them(monkeypatch):
    entry = StrategyEntry("mine", "a user strategy", "clu.strategies.configs:UGCLUConfig", f"{__name__}:Mine")
    assert entry.config_class is UGCLUConfig and entry.load() is Mine
    monkeypatch.setitem(STRATEGIES, "mine", entry)
    assert isinstance(strategy_config("mine", {"alpha_u": 2.0}), UGCLUConfig)  # no preset: the defaults
    assert StrategyEntry("mine", "", UGCLUConfig, Mine).load() is Mine


def test_a_broken_strategy_file_is_one_error_naming_it(tmp_path, monkeypatch):
    """A user's strategy file with a bug (the README example copied without its imports) stops the commands
    that resolve it with one line naming the module and the error, not a traceback (issue 17)."""
    (tmp_path / "broken_strategy.py").write_text("class MyConfig(UnlearnConfig):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(STRATEGIES, "mine", StrategyEntry("mine", "broken", "broken_strategy:MyConfig",
                                                           "broken_strategy:Mine"))
    with pytest.raises(ConfigError, match=r"cannot import broken_strategy \(NameError: name 'UnlearnConfig'"):
        strategy_config("mine")
    monkeypatch.setitem(STRATEGIES, "gone", StrategyEntry("gone", "moved", "no_such_module_here:C", "x:Y"))
    with pytest.raises(ConfigError, match="cannot import no_such_module_here"):
        strategy_config("gone")


def test_an_entry_whose_class_has_another_name_or_kind_is_refused():
    with pytest.raises(TypeError, match="Mine.name is 'mine'"):
        StrategyEntry("yours", "", StrategyConfig, Mine).load()
    with pytest.raises(TypeError, match="not a CLUStrategy"):
        StrategyEntry("mine", "", StrategyConfig, "clu.strategies.configs:StrategyConfig").load()
    with pytest.raises(TypeError, match="not a StrategyConfig"):
        _ = StrategyEntry("mine", "", "clu.strategies.er:ER", Mine).config_class
    with pytest.raises(ValueError, match="module:Class"):
        StrategyEntry("mine", "", StrategyConfig, "clu.strategies.er.ER").load()


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


def test_ugclu_paper_is_the_published_form_without_its_preset() -> None:
    """UG-CLU as the papers describe it: SFR-on's weighted ascent under the balanced mask, fast-slow order,
    adaptive weights, cosine coefficient; its preset changes nothing (it is not tuned)."""
    from clu.strategies import UGCLUPaperConfig, resolve_strategy

    bare = UGCLUPaperConfig()
    assert (bare.forget_loss, bare.mask, bare.order, bare.adaptive_weights) == ("ga_weighted", "balanced",
                                                                               "fast_slow", True)
    assert (bare.alpha_u, bare.lam, bare.forget_freq, bare.unlearn_iters, bare.clip) == (10.0, 0.5, 5, 100, 7.0)
    assert resolve_strategy("ugclu_paper").config == bare
    assert resolve_strategy("ugclu").config.forget_loss == "kl_proxy"  # the project's variant
