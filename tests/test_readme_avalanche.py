"""The README's "Use with Avalanche" snippet runs as written (on the tiny scenario) and logs true numbers."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tiny import TINY

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet() -> str:
    section = README.read_text().split("## Use with Avalanche", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_use_with_avalanche_snippet_runs_and_logs_the_epoch_accuracy(tmp_path: Path, monkeypatch) -> None:
    code = _snippet()
    assert '"digits-class"' in code
    (tmp_path / "tiny.toml").write_text(TINY)
    monkeypatch.chdir(tmp_path)  # the snippet's relative paths land here
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code.replace('"digits-class"', '"tiny.toml"'), "README.md", "exec"), {})
    acc = float(printed.getvalue().strip().splitlines()[-1])
    assert 0.0 < acc <= 1.0  # Avalanche's evaluator saw the training batches (it read 0.0 before issue 16)
    log = (tmp_path / "avalanche-log.txt").read_text()
    assert "Top1_Acc_Epoch/train_phase/train_stream" in log and (tmp_path / "runs/avalanche-demo/metrics.csv").exists()
