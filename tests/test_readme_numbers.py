"""README numbers come from committed result files: the floor table is what results/floor.py prints."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_floor_table_is_regenerated_from_results() -> None:
    floor = runpy.run_path(str(ROOT / "results" / "floor.py"))
    readme = (ROOT / "README.md").read_text()
    block = readme.split(floor["BEGIN"], 1)[1].split(floor["END"], 1)[0].strip()
    table = floor["table"]()
    assert len(table.splitlines()) == 2 + 6  # header, rule, the six CPU scenarios
    assert block == table


def test_readme_klom_table_is_regenerated_from_results() -> None:
    floor = runpy.run_path(str(ROOT / "results" / "floor.py"))
    readme = (ROOT / "README.md").read_text()
    block = readme.split(floor["KLOM_BEGIN"], 1)[1].split(floor["KLOM_END"], 1)[0].strip()
    assert "retrain (twin)" in block
    assert block == floor["klom_table"]()
