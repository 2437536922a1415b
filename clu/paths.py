"""Where the ready scenario and strategy preset files live, and how a name becomes a file."""

from __future__ import annotations

from pathlib import Path

from clu.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DIR = REPO_ROOT / "scenarios"
STRATEGY_DIR = REPO_ROOT / "strategies"
DEFAULT_SCENARIO = "digits-class"


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A scenario file path, or the name of a file in ``scenarios/`` (``digits-class``)."""
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
