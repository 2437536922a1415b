"""--checkpoints all|last|none (issue 17): what a run keeps, that --resume and the audit read it, and that
result files and folders follow the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import clu
from clu import resolve_config
from clu.audit import audit_run
from clu.checkpoints import POLICIES
from clu.cli import main
from clu.results import read_checkpoint_policy
from tiny import TINY


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny scenario with naive, once per policy, under umask 022."""
    tmp = tmp_path_factory.mktemp("checkpoints")
    (tmp / "tiny.toml").write_text(TINY)
    cfg = resolve_config(str(tmp / "tiny.toml"), ["naive"], 0, "cpu")
    old = os.umask(0o022)
    try:
        return {p: clu.run(cfg, out=tmp / p, checkpoints=p).out for p in POLICIES}
    finally:
        os.umask(old)


def _kept(run: Path) -> dict[str, list[str]]:
    return {d.name: sorted(f.name for f in d.glob("event-*.pt")) for d in sorted((run / "checkpoints").iterdir())}


@pytest.mark.slow
def test_each_policy_keeps_what_it_says_and_records_it(runs: dict[str, Path]) -> None:
    n_events = len((runs["all"] / "events.jsonl").read_text().splitlines())
    every = [f"event-{k:03d}.pt" for k in range(n_events)]
    assert _kept(runs["all"]) == {"naive": every, "retrain": every, "retrain-twin": every}
    assert _kept(runs["last"]) == {"naive": every[-1:], "retrain": every[-1:], "retrain-twin": every[-1:]}
    assert not (runs["none"] / "checkpoints").exists()
    assert {p: read_checkpoint_policy(runs[p]) for p in POLICIES} == {p: p for p in POLICIES}
    # the results do not depend on the policy
    assert (runs["last"] / "metrics.csv").read_text().count("\n") == (runs["all"] / "metrics.csv").read_text().count("\n")


@pytest.mark.slow
def test_the_audit_says_what_it_could_not_check(runs: dict[str, Path]) -> None:
    reports = {p: audit_run(runs[p]) for p in POLICIES}
    assert all(r.ok for r in reports.values())
    assert not any("checkpoint" in n for n in reports["all"].notes)
    assert any("--checkpoints last" in n and "earlier events could not be checked" in n for n in reports["last"].notes)
    assert any("--checkpoints none" in n and "could not be checked" in n for n in reports["none"].notes)
    assert reports["none"].checkpoints == 0 and "in the 0 checkpoint(s) kept" in reports["none"].render()


@pytest.mark.slow
def test_resume_keeps_the_runs_policy(runs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--resume", str(runs["last"]), "--checkpoints", "all", "--quiet"]) == 2
    assert "--checkpoints all: the run being resumed keeps last" in capsys.readouterr().err


@pytest.mark.slow
def test_run_files_and_folders_follow_the_umask(runs: dict[str, Path]) -> None:
    """0644 files and 0755 folders under umask 022 (atomic writes used to leave mkstemp's 0600)."""
    modes = {p.relative_to(runs["all"]).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in runs["all"].rglob("*")}
    assert any(k.endswith(".pt") for k in modes) and "metrics.csv" in modes and "config.toml" in modes
    wrong = {k: oct(m) for k, m in modes.items() if m != (0o755 if (runs["all"] / k).is_dir() else 0o644)}
    assert not wrong
