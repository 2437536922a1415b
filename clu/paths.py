"""Where the shipped scenario files and strategy presets live, how a name becomes a file, where runs go.

Both folders are package data: the top-level ``scenarios/`` and ``strategies/`` folders of the source tree
are installed as the packages ``clu.scenarios`` and ``clu.presets`` (pyproject.toml maps them; an editable
install maps them back onto the source folders). They are read as plain files, so the package must be
installed unzipped, which pip always does.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from clu.config import ConfigError


def _package_dir(package: str) -> Path:
    """The folder of a data package, as a file-system path."""
    folder = files(package)
    if not isinstance(folder, Path):
        raise RuntimeError(f"{package} is not a folder on disk (a zipped install?); install clu-sim with pip")
    return folder


SCENARIO_DIR = _package_dir("clu.scenarios")
"""The ready scenario files (``digits-class.toml``, ...)."""
STRATEGY_DIR = _package_dir("clu.presets")
"""The strategy presets (``ugclu.toml``, ...; ablation files in ``ablations/``)."""
DEFAULT_SCENARIO = "digits-class"


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A scenario file path, or the name of a shipped scenario file (``digits-class``)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError("no such scenario file", file=p)
        return p
    candidate = SCENARIO_DIR / f"{p.name}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(f.stem for f in SCENARIO_DIR.glob("*.toml")))
    raise ConfigError(f"unknown scenario {str(name_or_path)!r}; give a .toml file or one of: {known}")


def default_runs_dir() -> Path:
    """Where runs and sweeps go without ``--out``: ``./runs`` under the working directory."""
    return Path.cwd() / "runs"
