"""The wheel: built from a clean copy of the source files, it holds every module, scenario file and preset,
and an installed (non-editable) copy runs `clu run` from an empty folder without the source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from tiny import TINY

REPO = Path(__file__).resolve().parents[1]
DATA = {"scenarios": "clu/scenarios", "strategies": "clu/presets"}
"""Source folder → where its files land in the wheel."""


def _source_files() -> list[str]:
    """The files a commit would hold: tracked or new, not ignored, present in the working tree."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return sorted(f for f in set(out.split("\0")) if f and (REPO / f).is_file())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A wheel built offline from a copy of the source files (no build/ or egg-info left over)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist = tmp / "src", tmp / "dist"
    files = _source_files()
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                    str(src), "-w", str(dist)], check=True, capture_output=True)
    [whl] = dist.glob("*.whl")
    return whl, files


@pytest.mark.slow
def test_the_wheel_holds_every_module_scenario_and_preset(wheel: tuple[Path, list[str]]) -> None:
    whl, files = wheel
    names = set(zipfile.ZipFile(whl).namelist())
    modules = [f for f in files if f.startswith("clu/") and f.endswith(".py")]
    data = [f"{DATA[f.split('/', 1)[0]]}/{f.split('/', 1)[1]}" for f in files
            if f.split("/", 1)[0] in DATA and f.endswith(".toml")]
    assert len(data) >= 25 and "clu/presets/ablations/ugclu-joint.toml" in data
    missing = sorted(set(modules + data) - names)
    assert not missing, f"not in the wheel (a new subpackage goes into pyproject's packages): {missing}"


@pytest.mark.slow
def test_an_installed_copy_runs_from_an_empty_folder(wheel: tuple[Path, list[str]], tmp_path: Path) -> None:
    whl, _ = wheel
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site),
                    str(whl)], check=True, capture_output=True)
    cwd = tmp_path / "empty"
    cwd.mkdir()
    tiny = tmp_path / "tiny.toml"  # the shipped scenarios resolve by name (events); the run is kept short
    tiny.write_text(TINY)
    # -I: no current folder, PYTHONPATH or user site on sys.path; the installed copy goes before the editable one
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import clu, clu.paths\n"
        "print(clu.__file__, clu.paths.SCENARIO_DIR, clu.paths.STRATEGY_DIR, sep='\\n')\n"
        "from clu.cli import main\n"
        "assert main(['events', 'digits-class', '--format', 'jsonl']) == 0\n"
        "sys.exit(main(['run', sys.argv[2], '--strategy', 'ugclu', '--seed', '0']))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(site), str(tiny)], cwd=cwd, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    where = [Path(p) for p in lines[:3]]
    assert all(p.is_relative_to(site) for p in where), where
    assert sum(line.startswith('{"type":"unlearn"') for line in lines) == 4  # digits-class: a request after tasks 2-5
    [run] = (cwd / "runs").iterdir()  # the default output folder: ./runs under the working directory
    assert (run / "metrics.csv").is_file()
    config = tomllib.loads((run / "config.toml").read_text())
    ugclu = next(s for s in config["strategies"] if s.get("label", s.get("strategy")) == "ugclu")
    preset = tomllib.loads((Path(__file__).resolve().parent.parent / "strategies" / "ugclu.toml").read_text())
    preset.pop("strategy")
    assert preset  # the tuned preset differs from the config defaults, so reading it is observable
    assert {k: ugclu[k] for k in preset} == preset  # the shipped preset's values, not the config defaults
