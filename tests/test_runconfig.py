"""clu.runconfig: the one TOML reader/writer of run configs, its validation, and resolve_config."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from clu import RunConfig, resolve_config
from clu.config import ConfigError
from clu.runconfig import load_run_config, run_config_from_toml
from tiny import TINY


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> RunConfig:
    d = tmp_path_factory.mktemp("runconfig")
    (d / "tiny.toml").write_text(TINY)
    (d / "fast.toml").write_text('strategy = "ugclu"\nlabel = "ugclu-fast"\nunlearn_iters = 7\n')
    return resolve_config(str(d / "tiny.toml"), ["er", str(d / "fast.toml")], 4, "cpu")


def test_round_trip_with_and_without_the_version_stamp(config: RunConfig, tmp_path: Path) -> None:
    plain = config.to_toml(versions=False)
    assert run_config_from_toml(plain, "x") == config
    assert "versions" not in tomllib.loads(plain) and not plain.startswith("#")
    stamped = config.to_toml()
    assert stamped.startswith("# clu-sim run config")
    raw = tomllib.loads(stamped)
    assert set(raw["versions"]) == {"clu", "python", "torch", "avalanche"}
    (tmp_path / "config.toml").write_text(stamped)
    again = load_run_config(tmp_path / "config.toml")
    assert again == config and [c.label for c in again.strategies] == ["retrain", "er", "ugclu-fast"]
    assert again.strategies[2].config.unlearn_iters == 7


@pytest.mark.parametrize("edit, key, words", [
    (lambda t: t + "\nextra = 1\n", "extra", "unknown key"),
    (lambda t: t.replace('device = "cpu"', 'device = "tpu"'), "device", "choose auto, cpu or cuda"),
    (lambda t: t.replace("seed = 4", "seed = -1"), "seed", "whole number >= 0"),
    (lambda t: t.replace('strategy = "er"', 'strategy = "er_gaa"'), "strategies[1]", "unknown strategy"),
    (lambda t: t.replace("unlearn_iters = 7", "unlearn_iters = -7"), "strategies[2].unlearn_iters", "must be >= 0"),
    (lambda t: t.replace("[scenario]", "[scenario]\nbogus = 1"), "scenario.bogus", "unknown key"),
    (lambda t: t.replace("replicas = 1", "replicas = 0"), "replicas", "whole number >= 1"),
    (lambda t: t.replace("replicas = 1", "replicas = 1\nshadows = -2"), "shadows", "whole number >= 0"),
    (lambda t: t.replace("shadows = 0", "shadows = 0\nstride = 2"), "scenario.evaluation.stride", "unknown key"),
])
def test_every_reader_validates_the_same(config: RunConfig, tmp_path: Path, edit, key: str, words: str) -> None:
    text = edit(config.to_toml(versions=False))
    (tmp_path / "config.toml").write_text(text)
    for read in (lambda: run_config_from_toml(text, "trial x"), lambda: load_run_config(tmp_path / "config.toml")):
        with pytest.raises(ConfigError, match=words) as e:
            read()
        assert key in str(e.value)


def test_broken_toml_names_the_source() -> None:
    with pytest.raises(ConfigError, match="trial x: not valid TOML"):
        run_config_from_toml("seed = ", "trial x")


def test_replicas_and_shadows_round_trip(config: RunConfig, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(config.to_toml())
    more = resolve_config(str(tmp_path / "config.toml"), [], None, None, replicas=3, shadows=5)
    assert (more.replicas, more.shadows, more.n_shadows) == (3, 5, 5)
    assert run_config_from_toml(more.to_toml(versions=False), "x") == more
    assert (config.replicas, config.shadows, config.n_shadows) == (1, None, 0)  # the scenario's [evaluation]
    (tmp_path / "more.toml").write_text(more.to_toml())
    assert resolve_config(str(tmp_path / "more.toml"), [], None, None).replicas == 3  # a run config's defaults
    with pytest.raises(ConfigError, match="--shadows"):
        resolve_config(str(tmp_path / "config.toml"), [], None, None, shadows=-1)


def test_resolve_config_from_a_run_config(config: RunConfig, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(config.to_toml())
    same = resolve_config(str(tmp_path / "config.toml"), [], None, None)
    assert same == config  # its strategies, seed and device are the defaults
    other = resolve_config(str(tmp_path / "config.toml"), ["naive"], 9, "auto")
    assert [c.label for c in other.strategies] == ["retrain", "naive"] and (other.seed, other.device) == (9, "auto")
    with pytest.raises(ConfigError, match="choose auto, cpu or cuda"):
        resolve_config(str(tmp_path / "config.toml"), [], None, "gpu")


def test_runconfig_imports_no_heavy_module() -> None:
    code = ("import sys, clu.runconfig, clu.cli, clu.report\n"
            "print(sorted({'torch', 'avalanche', 'ray', 'matplotlib'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------ preset families, amp, --dry-run (issue 15)


def test_paper_scenarios_resolve_their_paper_presets_and_fall_back_to_the_default() -> None:
    from clu.strategies import resolve_strategy

    cfg = resolve_config("cifar10-class", ["er_sfron", "naive", "ugclu_paper"], None, "cpu")
    assert cfg.scenario.training.presets == "paper" and cfg.scenario.training.augment == "crop_flip"
    by = {c.label: c.config for c in cfg.strategies}
    sfron = by["er_sfron"]  # SFR-on's CIFAR-10 reference settings, not the digits-tuned preset
    assert (sfron.unlearn_iters, sfron.alpha_u, sfron.unlearn_lr, sfron.forget_freq, sfron.clip, sfron.lam,
            sfron.gamma) == (1500, 25.0, 0.01, 5, 7.0, 0.5, 1.0)
    assert cfg.scenario.training.batch_size == 128
    assert by["naive"] == resolve_strategy("naive").config and by["retrain"] == resolve_strategy("retrain").config
    assert by["ugclu_paper"].unlearn_iters == 1500
    assert resolve_config("digits-class", ["er_sfron"], None, "cpu").strategies[1].config.unlearn_iters == 100


def test_every_paper_preset_names_its_strategy_and_its_source() -> None:
    from clu.paths import STRATEGY_DIR
    from clu.runconfig import resolve_in_family

    files = sorted((STRATEGY_DIR / "paper").glob("*.toml"))
    assert len(files) >= 4
    for f in files:
        name = f.stem.replace("-", "_")
        assert resolve_in_family(name, "paper").name == name
        assert resolve_in_family(str(f), "default") == resolve_in_family(name, "paper")  # by path: the same
        assert "Unified-Unlearning-w-Remain-Geometry" in f.read_text()  # SFR-on's public code, named


def test_an_explicit_preset_file_wins_over_the_family_and_bad_family_files_name_the_file(tmp_path: Path) -> None:
    from clu.runconfig import resolve_in_family

    (tmp_path / "mine.toml").write_text('strategy = "er_sfron"\nunlearn_iters = 9\n')
    assert resolve_in_family(str(tmp_path / "mine.toml"), "paper").config.unlearn_iters == 9
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("buffer_size = 50", 'buffer_size = 50\npresets = "cifar"'))
    with pytest.raises(ConfigError, match="training.presets"):
        resolve_config(str(bad), [], None, "cpu")


def test_new_keys_stay_out_of_existing_configs_and_amp_round_trips(config: RunConfig) -> None:
    from dataclasses import replace

    plain = config.to_toml(versions=False)
    keys = set(tomllib.loads(plain)) | set(tomllib.loads(plain)["scenario"]["training"])
    assert not keys & {"augment", "presets", "amp"}  # existing configs (and trial fingerprints) unchanged
    on = replace(config, amp=True)
    assert "amp = true" in on.to_toml(versions=False)
    assert run_config_from_toml(on.to_toml(versions=False), "x") == on
    with pytest.raises(ConfigError, match="amp"):
        run_config_from_toml(plain.replace('device = "cpu"', 'device = "cpu"\namp = 1'), "x")


def test_dry_run_prints_the_resolved_config_without_data_or_torch(tmp_path: Path) -> None:
    code = ("import sys; from clu.cli import main; rc = main(['run', 'cifar10-class', '--dry-run', '--amp', "
            f"'--strategy', 'er_sfron', '--out', {str(tmp_path / 'out')!r}]); "
            "assert 'torch' not in sys.modules; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cfg = run_config_from_toml(done.stdout, "stdout")
    assert cfg.amp and cfg.scenario.name == "cifar10-class" and cfg.strategies[1].config.unlearn_iters == 1500
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------- config.toml writes what applies (issue 17, 9)


def _tables(text: str) -> dict:
    raw = tomllib.loads(text)
    return {"top": raw, "scenario": raw["scenario"], "data": raw["scenario"]["data"],
            "model": raw["scenario"]["model"]}


def test_config_toml_has_one_scenario_seed_and_only_the_fields_that_apply() -> None:
    """mnist5k + MLP: no synthetic-only sizes, no torchvision root/download, no CNN width, one seed."""
    cfg = resolve_config("mnist5k-class", ["er"], 3, "cpu")
    text = cfg.to_toml(versions=False)
    t = _tables(text)
    assert set(t["data"]) == {"name", "val_fraction", "test_fraction"}
    assert set(t["model"]) == {"name", "hidden"}
    assert t["top"]["scenario_seed"] == 3 and "seed" not in t["top"] and "seed" not in t["scenario"]
    assert "training_seeds" not in t["top"]  # one replica: it trains with the scenario seed
    assert text.startswith("scenario_seed = 3  # the event stream")
    assert run_config_from_toml(text, "x") == cfg


def test_config_toml_keeps_what_other_data_and_models_read() -> None:
    from dataclasses import replace

    from clu.specs import DataSpec, ModelSpec

    cfg = resolve_config("mnist5k-class", ["er"], 0, "cpu")
    for data, model, keys in (
        (DataSpec("synthetic"), ModelSpec("cnn"), ({"n_samples", "n_features", "n_classes", "test_fraction"},
                                                   {"width"})),
        (DataSpec("cifar10"), ModelSpec("resnet18"), ({"root", "download"}, set())),
        (DataSpec("digits", root="elsewhere"), ModelSpec("mlp", width=64), ({"root", "test_fraction"},
                                                                             {"hidden", "width"})),
    ):
        other = replace(cfg, scenario=replace(cfg.scenario, data=data, model=model))
        t = _tables(other.to_toml(versions=False))
        assert set(t["data"]) == {"name", "val_fraction", *keys[0]}  # a set value that does not apply: kept
        assert set(t["model"]) == {"name", *keys[1]}
        assert run_config_from_toml(other.to_toml(versions=False), "x") == other


def test_every_builtin_dataset_is_in_the_field_table() -> None:
    from clu.data import DATASETS
    from clu.specs import BUILTIN_DATASETS

    assert BUILTIN_DATASETS == set(DATASETS)


def test_replicas_list_their_training_seeds_and_the_earlier_form_still_reads(tmp_path: Path) -> None:
    from dataclasses import replace

    from clu import seeding

    cfg = resolve_config("mnist5k-class", ["er"], 3, "cpu", replicas=3)
    text = cfg.to_toml(versions=False)  # the stamp imports torch
    seeds = [seeding.training_seed(3, k) for k in (1, 2, 3)]
    assert tomllib.loads(text)["training_seeds"] == seeds == cfg.training_seeds
    assert "training_seeds = " in text and "# per replica: initial weights" in text
    (tmp_path / "config.toml").write_text(text)
    assert load_run_config(tmp_path / "config.toml") == cfg
    with pytest.raises(ConfigError, match="training_seeds: is derived from scenario_seed"):
        run_config_from_toml(text.replace(f"[3, {seeds[1]}", "[4, 5"), "x")
    with pytest.raises(ConfigError, match="give the seed once"):
        run_config_from_toml("seed = 3\n" + text, "x")
    # config.toml's earlier form (every field, `seed`, the scenario's own seed): what a trial carries
    assert run_config_from_toml(cfg.full_toml(), "x") == cfg
    assert tomllib.loads(cfg.full_toml())["seed"] == 3 and "seed" in tomllib.loads(cfg.full_toml())["scenario"]
    scenario_seed_7 = replace(cfg, scenario=replace(cfg.scenario, seed=7))  # a file whose default seed is 7
    assert run_config_from_toml(scenario_seed_7.to_toml(versions=False), "x") == scenario_seed_7
