"""bench/gpu.py runs end to end on the CPU in its smoke mode (the GPU figures need a lent GPU)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"


@pytest.mark.slow
def test_gpu_bench_smoke_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_gpu", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    figures = module.main(["--smoke", "--device", "cpu", "--md", str(tmp_path / "gpu.md")])
    assert figures["samples_per_s"] > 0 and figures["samples_per_s_amp"] > 0
    assert figures["retrain_s"] > 0 and figures["ratio"] == figures["ugclu_s"] / figures["retrain_s"]
    assert 0.0 <= figures["ugclu_FA"] <= 1.0 and figures["forget"] > 0
    block = (tmp_path / "gpu.md").read_text()
    assert block.startswith("### GPU") and "no GPU lent" in block and "smoke run" in block
