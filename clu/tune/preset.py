"""Strategy preset files written by ``clu tune``: each searched configuration and the chosen one.

A preset lists ``strategy = ...`` (and optionally ``label``) then only the values that differ from what
:func:`clu.strategies.resolve_strategy` gives without them: the config class defaults, and the strategy's
shipped preset, which :func:`clu.strategies.strategy_config` applies first. The text is checked to load back
to exactly the config it was written for.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Sequence

from clu.config import dump_toml, to_dict
from clu.files import write_atomic
from clu.strategies import StrategyConfig, get_entry, strategy_config


def preset_values(name: str, config: StrategyConfig) -> dict[str, Any]:
    """The fields of ``config`` a preset of strategy ``name`` must list: those differing from the config class
    defaults or from the shipped preset."""
    defaults = get_entry(name).config_class()
    shipped = strategy_config(name)
    return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(defaults, f.name)
            or getattr(config, f.name) != getattr(shipped, f.name)}


def preset_text(name: str, config: StrategyConfig, *, label: str | None = None,
                header: Sequence[str] = ()) -> str:
    """The preset file of ``config``: ``header`` lines as comments, then ``strategy``, ``label`` and the values.

    Raises RuntimeError if the text would not load back to ``config`` (a bug, not bad input)."""
    body = dump_toml({"strategy": name, **({"label": label} if label is not None else {}),
                      **preset_values(name, config)})
    text = "".join(f"# {line}\n" for line in header) + body
    data = tomllib.loads(text)  # what resolve_strategy does with the file
    data.pop("strategy"), data.pop("label", None)
    back = strategy_config(name, data)
    if back != config:
        raise RuntimeError(f"the preset of {name} does not load back to its config: {back} != {config}")
    return text


def write_preset(path: Path, text: str) -> Path:
    """Write a preset text atomically (the folder is created)."""
    write_atomic(path, text)
    return path
