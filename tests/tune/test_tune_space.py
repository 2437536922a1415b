"""The search-space file of ``clu tune``: parsing, every refusal (file, key and value in the message), sampling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from clu.config import ConfigError, replace_from
from clu.paths import STRATEGY_DIR
from clu.strategies import strategy_config
from clu.tune.space import load_space, sample

SPACE = """
strategy = "ugclu"
[space]
unlearn_iters = { choice = [2, 5, 10, 20, 50] }
unlearn_lr = { loguniform = [0.001, 0.1] }
alpha_u = { uniform = [1.0, 20.0] }
sparsity = { choice = [0.3, 0.5, 0.7] }
gamma = { randint = [1, 4] }
"""


def _space(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parse(tmp_path: Path) -> None:
    space = load_space(_space(tmp_path, SPACE))
    assert space.start.name == "ugclu" and space.start.config == strategy_config("ugclu")
    assert space.names == ("unlearn_iters", "unlearn_lr", "alpha_u", "sparsity", "gamma")
    assert [p.kind for p in space.params] == ["choice", "loguniform", "uniform", "choice", "randint"]
    assert space.to_dict()["gamma"] == {"randint": [1, 4]}
    assert space.to_inline().startswith("{ unlearn_iters = { choice = [2, 5, 10, 20, 50] }, unlearn_lr = ")


@pytest.mark.parametrize("path", sorted((STRATEGY_DIR / "spaces").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_spaces_load(path: Path) -> None:
    assert load_space(path).params


def test_a_shipped_space_by_name() -> None:
    assert load_space("er_ga").source == STRATEGY_DIR / "spaces" / "er-ga.toml"
    with pytest.raises(ConfigError, match="no such file"):
        load_space("nope")


def test_strategy_as_a_preset_next_to_the_space(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('strategy = "er_ga"\nunlearn_iters = 7\n')
    space = load_space(_space(tmp_path, 'strategy = "mine.toml"\n[space]\nunlearn_lr = { uniform = [0.001, 0.01] }\n'))
    assert space.start.name == "er_ga" and space.start.label == "mine" and space.start.config.unlearn_iters == 7


BAD = [
    ('strategy = "nope"\n[space]\nclip = { choice = [1.0] }\n', "strategy", "'nope'"),
    ('[space]\nclip = { choice = [1.0] }\n', "strategy", "missing"),
    ('strategy = "er_ga"\n', "space", "[space]"),
    ('strategy = "er_ga"\nbudget = 3\n[space]\nclip = { choice = [1.0] }\n', "budget", "unknown key"),
    ('strategy = "er_ga"\n[space]\nalpha_u = { uniform = [1.0, 2.0] }\n', "space.alpha_u", "not a field of ERGAConfig"),
    ('strategy = "er_ga"\n[space]\nclip = { normal = [1.0, 2.0] }\n', "space.clip", "{'normal': [1.0, 2.0]}"),
    ('strategy = "er_ga"\n[space]\nclip = 3.0\n', "space.clip", "3.0: expected one distribution"),
    ('strategy = "er_ga"\n[space]\nclip = { uniform = [5.0, 1.0] }\n', "space.clip", "low < high"),
    ('strategy = "er_ga"\n[space]\nclip = { uniform = [1.0] }\n', "space.clip", "[low, high]"),
    ('strategy = "er_ga"\n[space]\nunlearn_lr = { loguniform = [0.0, 0.1] }\n', "space.unlearn_lr", "low > 0"),
    ('strategy = "er_ga"\n[space]\nunlearn_iters = { randint = [1.5, 4] }\n', "space.unlearn_iters", "whole numbers"),
    ('strategy = "er_ga"\n[space]\nclip = { choice = [] }\n', "space.clip", "non-empty"),
    ('strategy = "er_ga"\n[space]\nclip = { choice = [1.0, 1.0] }\n', "space.clip", "distinct"),
    # the config's own validate(): every choice value and both bounds
    ('strategy = "er_ga"\n[space]\nclip = { choice = [1.0, -1.0] }\n', "space.clip", "-1.0 is not a valid clip"),
    ('strategy = "er_ga"\n[space]\nunlearn_lr = { uniform = [-0.1, 0.1] }\n', "space.unlearn_lr", "-0.1 is not a valid"),
    ('strategy = "er_salun"\n[space]\nsparsity = { uniform = [0.5, 1.5] }\n', "space.sparsity", "1.5 is not a valid"),
    ('strategy = "ugclu"\n[space]\nmask = { choice = ["balanced", "bogus"] }\n', "space.mask", "'bogus' is not a valid"),
    ('strategy = "er_ga"\n[space]\nunlearn_iters = { uniform = [1.0, 5.0] }\n', "space.unlearn_iters", "whole number"),
]


@pytest.mark.parametrize(("text", "key", "fragment"), BAD)
def test_refused_with_file_key_and_value(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = _space(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_space(path)
    assert e.value.file == str(path) and e.value.key == key and fragment in str(e.value)
    assert str(e.value).startswith(f"{path}: {key}: ")


@pytest.mark.parametrize("key", ["lr", "momentum", "weight_decay", "learner"])
def test_learner_settings_are_refused(tmp_path: Path, key: str) -> None:
    path = _space(tmp_path, f'strategy = "ugclu"\n[space]\n{key} = {{ choice = [0.01, 0.1] }}\n')
    with pytest.raises(ConfigError, match="learner's settings are fixed by the scenario") as e:
        load_space(path)
    assert e.value.key == f"space.{key}" and e.value.file == str(path)


def test_sampling_is_deterministic_and_starts_from_the_start(tmp_path: Path) -> None:
    space = load_space(_space(tmp_path, SPACE))
    a, b = sample(space, 16, 0), sample(space, 16, 0)
    assert a == b and len(a) == 16
    assert sample(space, 16, 1) != a and sample(space, 16, 1)[0] == a[0]
    assert a[0] == {n: getattr(strategy_config("ugclu"), n) for n in space.names}
    assert sample(space, 4, 0) == a[:4]  # a smaller budget is a prefix
    assert len({tuple(c.values()) for c in a}) == 16
    for c in a[1:]:
        assert c["unlearn_iters"] in (2, 5, 10, 20, 50) and c["sparsity"] in (0.3, 0.5, 0.7)
        assert 0.001 <= c["unlearn_lr"] <= 0.1 and 1.0 <= c["alpha_u"] <= 20.0
        assert float(f"{c['unlearn_lr']:.4g}") == c["unlearn_lr"] and float(f"{c['alpha_u']:.4g}") == c["alpha_u"]
        assert isinstance(c["gamma"], int) and 1 <= c["gamma"] <= 4
        replace_from(strategy_config("ugclu"), c)  # every draw is a valid config
    assert {c["gamma"] for c in a[1:]} == {1, 2, 3, 4}  # randint includes both ends
    lr = sorted(math.log10(c["unlearn_lr"]) for c in sample(space, 64, 0)[1:])
    assert lr[0] < -2.3 and lr[-1] > -1.7  # log-uniform over three decades, not bunched at the top


def test_a_finite_space_smaller_than_the_budget_is_refused(tmp_path: Path) -> None:
    space = load_space(_space(tmp_path, 'strategy = "er_ga"\n[space]\nunlearn_iters = { choice = [1, 2] }\n'))
    assert sorted(c["unlearn_iters"] for c in sample(space, 3, 0)) == [1, 2, 5]  # the start (5) is outside
    with pytest.raises(ConfigError, match="only 3 distinct") as e:
        sample(space, 4, 0)
    assert e.value.key == "--budget"
    with pytest.raises(ConfigError, match=">= 1"):
        sample(space, 0, 0)
